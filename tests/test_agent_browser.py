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


def test_the_gradio_demo_hears_the_microphone_and_plays_the_answer(browser_setup):
    browser, srv = browser_setup
    page = browser.new_page()
    page.goto(srv.url + "/demo/")
    page.locator("#mic button", has_text="Record").first.click(timeout=60000)
    page.wait_for_function(
        "document.querySelector('#status textarea') && "
        "document.querySelector('#status textarea').value.startsWith('answered turn')", timeout=90000)
    page.wait_for_function(  # the streamed answer is playing (or has played) in the agent's player
        "[...document.querySelectorAll('#agent-audio audio')].some(a => a.currentTime > 0)", timeout=30000)
    page.wait_for_function(  # the question the agent heard and its answer, as two audio players in the chat
        "document.querySelectorAll(\"#conversation [data-testid='user'], #conversation [data-testid='bot']\").length"
        " >= 2 && document.querySelectorAll(\"#conversation [data-testid='waveform-Audio']\").length >= 2",
        timeout=30000)
    assert "end-to-end ms" in page.locator("#latency-table").inner_text()
    page.close()
