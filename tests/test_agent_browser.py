"""A real browser talks to the agent: headless Chromium with a fake microphone fed from a WAV file opens the plain
page and the Gradio demo, speaks a Telugu question, and checks that an answer arrives and plays.

Chromium is Debian's ``chromium`` package (installed here when missing: Playwright's own browser download is not
reachable), driven by Playwright through ``executable_path``.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from agent_fixtures import SR, make_agent_run, silence, telugu_question
from s2slib.agent.config import AgentConfig

pytestmark = pytest.mark.slow


def chromium() -> str:
    """Debian's Chromium, installed with apt-get when it is not there yet."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if shutil.which("apt-get") is None or (hasattr(os, "geteuid") and os.geteuid() != 0):
        pytest.fail("the browser test needs Debian's chromium: run `sudo apt-get install -y chromium`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"could not install chromium with apt-get: {done.stderr[-2000:]}")
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser_setup(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    from s2slib.agent.engine import AgentEngine
    from s2slib.agent.server import serve_in_thread

    exe = chromium()
    root = tmp_path_factory.mktemp("browser")
    mic = root / "question.wav"  # what the fake microphone says, on a loop: silence, a question, a pause
    sf.write(mic, np.concatenate([silence(0.5), telugu_question(), silence(3.0)]), SR, subtype="PCM_16")
    engine = AgentEngine(make_agent_run(root / "run"))
    srv = serve_in_thread(engine, AgentConfig(max_answer_s=1.5), demo=True)
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={mic}",
            "--autoplay-policy=no-user-gesture-required"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=args, headless=True)
        yield browser, srv
        browser.close()
    srv.stop()


def test_the_plain_page_hears_the_microphone_and_plays_the_answer(browser_setup):
    browser, srv = browser_setup
    page = browser.new_page()
    page.goto(srv.url + "/")
    page.wait_for_function("window.agentStats && window.agentStats.ready", timeout=30000)
    assert page.locator("#voice option").count() == 4
    page.select_option("#voice", "Arjun")
    page.click("#start")
    page.wait_for_function("window.agentStats.latency.length > 0 && window.agentStats.samplesPlayed > 8000",
                           timeout=60000)
    stats = page.evaluate("window.agentStats")
    assert stats["latency"][0]["voice"] == "Arjun" and stats["errors"] == []
    for kind in ("speech_started", "speech_ended", "answer_started", "answer_ended"):
        assert kind in stats["events"]
    assert page.locator("#turns tbody tr").count() >= 1
    page.close()


WATCH_MEDIA_JS = """(() => {  // keeps the page's microphone streams and audio contexts where a failure can show them
    window.__mics = []; window.__contexts = [];
    const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = async (c) => { const s = await gum(c); window.__mics.push(s); return s; };
    const AC = window.AudioContext;
    window.AudioContext = class extends AC { constructor(...a) { super(...a); window.__contexts.push(this); } };
})();"""

DEMO_STATE_JS = """() => ({
    mic_tracks: (window.__mics || []).flatMap(s => s.getTracks()).map(t => `${t.readyState}${t.muted ? ' muted' : ''}`),
    audio_contexts: (window.__contexts || []).map(c => `${c.state} t=${c.currentTime.toFixed(1)}`),
    recorder_retries: window.s2sMicRecovery?.retries,
    status: document.querySelector('#status textarea')?.value,
    turn_signal: document.querySelector('#turn-signal textarea')?.value,
    mic_buttons: [...document.querySelectorAll('#mic button')].map(b => b.innerText.trim()).filter(t => t),
    chat_messages: document.querySelectorAll("#conversation [data-testid='user'], #conversation [data-testid='bot']")
        .length,
    toasts: [...document.querySelectorAll('.toast-body')].map(t => t.innerText.trim()),
})"""


def wait_in_demo(page, condition: str, timeout_ms: int, what: str, console: list[str]) -> None:
    """Wait for ``condition`` in the Gradio page; on a timeout, fail with what the page showed (microphone tracks,
    audio contexts, status, turn signal, microphone buttons, chat, error toasts, console errors and uncaught
    exceptions), so that a failure on CI says where the turn stopped."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(condition, timeout=timeout_ms)
    except PlaywrightTimeout:
        pytest.fail(f"{what} within {timeout_ms / 1000:.0f} s; the page showed {page.evaluate(DEMO_STATE_JS)}, "
                    f"console errors: {console[-10:]}")


def test_the_gradio_demo_hears_the_microphone_and_plays_the_answer(browser_setup):
    browser, srv = browser_setup
    page = browser.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.text} ({msg.location.get('url')})")
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console.append(f"uncaught: {exc}"))
    page.add_init_script(WATCH_MEDIA_JS)
    page.goto(srv.url + "/demo/")
    page.locator("#mic button", has_text="Record").first.click(timeout=60000)
    wait_in_demo(page, "document.querySelector('#status textarea') && "
                 "document.querySelector('#status textarea').value.startsWith('answered turn')", 90000,
                 "no answered turn", console)
    wait_in_demo(page, "[...document.querySelectorAll('#agent-audio audio')].some(a => a.currentTime > 0)", 30000,
                 "the streamed answer did not play in the agent's player", console)
    wait_in_demo(page, "document.querySelectorAll(\"#conversation [data-testid='user'], "
                 "#conversation [data-testid='bot']\").length >= 2 && "
                 "document.querySelectorAll(\"#conversation [data-testid='waveform-Audio']\").length >= 2", 30000,
                 "the chat did not show the question and the answer as two audio players", console)
    assert "end-to-end ms" in page.locator("#latency-table").inner_text()
    page.close()
