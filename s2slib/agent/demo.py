"""The Gradio demo: talk to the agent from the microphone, hear it answer.

:func:`build_demo` returns a ``gr.Blocks``: a streaming microphone (its chunks feed an
:class:`~s2slib.agent.session.AgentSession`, one per browser tab), a streaming autoplaying answer, voice and emotion
pickers, reset, the conversation as audio turns (what the agent heard, and what it said) and a per-turn latency
breakdown. When the VAD ends a turn, the answer streams from a generator event while the microphone keeps feeding
the session, so speaking over the answer interrupts it.

Gradio plays streamed audio in segments, which adds its own buffering; the WebSocket page at ``/`` is the
low-latency path, and the latency chart shows the server's own figures.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from s2slib.agent.config import SAMPLE_RATE, AgentConfig
from s2slib.agent.engine import AgentEngine
from s2slib.agent.session import AgentSession

STAGES = (("eot_delay_ms", "end-of-turn wait"), ("encode_ms", "encode"),
          ("first_frame_ms", "first frame"), ("first_audio_ms", "first audio"))
# Gradio's streaming microphone records WAV through a recorder class it loads and registers in the background as the
# page opens; a Record click before that is done fails inside Gradio's click handler (seen as "ge is not a
# constructor" or "Failed to construct 'MediaRecorder': ... audio/wav is not supported", unhandled rejections) and
# leaves a Stop button over a microphone that sends nothing. Seen on a loaded 2-core machine, where a browser test
# clicked Record within a second of the page opening. This page script answers a failure that follows a Record click
# within 5 s the way a person would: Stop, then Record again (at most 3 times; `window.s2sMicRecovery.retries`).
MIC_RECOVERY_JS = """() => {
    if (window.s2sMicRecovery) return;
    const recovery = window.s2sMicRecovery = {retries: 0, clickedAt: -Infinity};
    const mic = () => document.querySelector('#mic');
    const find = (cls, label) => mic()?.querySelector(`button.${cls}`)
        || [...(mic()?.querySelectorAll('button') || [])].find(b => b.innerText.trim().toLowerCase() === label);
    document.addEventListener('click', (event) => {
        const b = event.target.closest && event.target.closest('#mic button');
        if (b && (b.classList.contains('record-button') || b.innerText.trim().toLowerCase() === 'record')) {
            recovery.clickedAt = performance.now();
        }
    }, true);
    window.addEventListener('unhandledrejection', (event) => {
        if (performance.now() - recovery.clickedAt > 5000 || recovery.retries >= 3) return;
        recovery.retries += 1;
        const reason = String(event.reason && (event.reason.message || event.reason));
        console.warn(`starting the microphone failed (${reason}); pressing Stop and Record again`);
        setTimeout(() => {
            find('stop-button', 'stop')?.click();
            setTimeout(() => find('record-button', 'record')?.click(), 700);
        }, 300);
    });
}"""
FIRST_SEGMENT_S = 0.25  # the first answer segment Gradio gets (later ones are bigger: fewer, longer segments)
SEGMENT_S = 0.6


def ensure_ffmpeg() -> str:
    """Gradio encodes streamed audio with ffmpeg. Use the machine's, else the static build the ``imageio-ffmpeg``
    wheel carries (a pip install is all a fresh machine needs), put on ``PATH`` under the name Gradio looks for."""
    import os
    import shutil

    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    exe = Path(imageio_ffmpeg.get_ffmpeg_exe())
    link_dir = Path(tempfile.gettempdir()) / f"s2s-ffmpeg-{os.getuid() if hasattr(os, 'getuid') else 0}"
    link_dir.mkdir(exist_ok=True)
    link = link_dir / "ffmpeg"
    if not link.exists():
        tmp = link_dir / f".ffmpeg-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(exe)
        tmp.replace(link)
    os.environ["PATH"] = f"{link_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    return str(link)


class DemoState:
    """One browser tab's conversation: the session and the audio of the turns shown."""

    def __init__(self, engine: AgentEngine, config: AgentConfig):
        self.session = AgentSession(engine, config)
        self.dir = Path(tempfile.mkdtemp(prefix="s2s-demo-"))
        self.chat: list[dict[str, Any]] = []
        self.turn_signal = 0
        self.status = "listening"


def to_16k(chunk: tuple[int, np.ndarray] | None) -> np.ndarray:
    """A Gradio microphone chunk ``(rate, int16 or float array, mono or stereo)`` as float32 mono at 16 kHz."""
    import torch
    import torchaudio.functional as AF

    if chunk is None:
        return np.zeros(0, np.float32)
    rate, data = chunk
    x = np.asarray(data)
    x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if rate != SAMPLE_RATE and len(x):
        x = AF.resample(torch.from_numpy(x), int(rate), SAMPLE_RATE).numpy()
    return x


def latency_figure(telemetry: list[dict[str, Any]]):
    """Stacked bars: where each turn's time to first audio went."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.8))
    turns = [t["turn"] for t in telemetry]
    bottom = np.zeros(len(turns))
    for key, label in STAGES:
        prev = {"eot_delay_ms": None, "encode_ms": None, "first_frame_ms": "encode_ms",
                "first_audio_ms": "first_frame_ms"}[key]
        vals = np.array([max(0.0, (t.get(key) or 0.0) - ((t.get(prev) or 0.0) if prev else 0.0)) for t in telemetry])
        ax.bar(turns, vals, bottom=bottom, label=label)
        bottom += vals
    ax.set_xlabel("turn")
    ax.set_ylabel("ms from end of speech")
    ax.set_title("Latency per turn (end of speech to first answer audio)")
    if turns:
        ax.set_xticks(turns)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    plt.close(fig)
    return fig


def mount_demo(app, engine: AgentEngine, config: AgentConfig | None = None, path: str = "/demo"):
    """Mount :func:`build_demo` on the FastAPI ``app`` at ``path`` with the page script :data:`MIC_RECOVERY_JS`;
    returns the app."""
    import gradio as gr

    return gr.mount_gradio_app(app, build_demo(engine, config), path=path, js=MIC_RECOVERY_JS)


def build_demo(engine: AgentEngine, config: AgentConfig | None = None):
    """The demo's ``gr.Blocks`` (see the module docstring); launch it or mount it on a FastAPI app."""
    import gradio as gr
    import soundfile as sf

    config = config or AgentConfig()
    ensure_ffmpeg()

    def state_of(state: DemoState | None) -> DemoState:
        return state if state is not None else DemoState(engine, config)

    def on_mic(chunk, state):
        state = state_of(state)
        for ev in state.session.feed(to_16k(chunk)):
            if ev.type == "speech_started":
                state.status = "listening to you…"
            elif ev.type == "speech_ended":
                state.status = f"thinking (question {ev.data['question_s']:.1f} s)…"
                state.turn_signal += 1
            elif ev.type == "interrupted":
                state.status = "interrupted: listening…"
        return state, state.status, str(state.turn_signal)

    def speak(state):
        if state is None or not state.session.turn_ready:
            return
        pending, first = [], True
        for ev in state.session.respond():
            if ev.type != "audio":
                continue
            pending.append(ev.audio)
            if sum(len(p) for p in pending) >= (FIRST_SEGMENT_S if first else SEGMENT_S) * SAMPLE_RATE:
                yield SAMPLE_RATE, (np.concatenate(pending) * 32767).astype(np.int16)
                pending, first = [], False
        if pending:
            yield SAMPLE_RATE, (np.concatenate(pending) * 32767).astype(np.int16)

    def after_answer(state):
        if state is None or not state.session.telemetry:
            return state, state.status if state else "", state.chat if state else [], gr.skip(), gr.skip()
        import torch

        s, tel = state.session, state.session.telemetry[-1]
        for turn in s.context.turns[-2:]:  # this exchange: what the agent heard, and what it said
            with torch.inference_mode():
                wav = engine.codec.decode(torch.from_numpy(turn.codes.astype(np.int64)).unsqueeze(0)).view(-1).numpy()
            path = state.dir / f"turn{tel.turn:03d}_{turn.role}.wav"
            sf.write(path, wav, SAMPLE_RATE)
            state.chat.append({"role": "user" if turn.role == "user" else "assistant",
                               "content": {"path": str(path), "mime_type": "audio/wav"}})
        state.status = (f"answered turn {tel.turn} in {tel.e2e_ms:.0f} ms from the end of your speech"
                        + (" (interrupted)" if tel.interrupted else ""))
        rows = [t.to_dict() for t in s.telemetry]
        table = [[r["turn"], r["eot_delay_ms"], r["encode_ms"], r["first_frame_ms"], r["first_audio_ms"],
                  r["e2e_ms"], r["answer_s"], r["rtf"], r["interrupted"]] for r in rows]
        return state, state.status, state.chat, latency_figure(rows), table

    def set_voice(voice, state):
        state = state_of(state)
        state.session.set_voice(voice)
        return state

    def set_emotion(emotion, state):
        state = state_of(state)
        state.session.set_emotion(emotion)
        return state

    def reset(state):
        state = state_of(state)
        state.session.reset()
        state.chat = []
        state.status = "conversation reset: listening"
        return state, state.status, [], latency_figure([]), []

    with gr.Blocks(title="Telugu voice agent") as demo:
        gr.Markdown("## Telugu voice agent\nPress **Record**, ask a question in Telugu and pause: the agent answers "
                    "in the chosen voice. Speak over it to interrupt. It remembers the last 10 turns until **Reset**.")
        state = gr.State(None)
        with gr.Row():
            voice = gr.Dropdown(list(engine.voices), value=config.voice, label="Voice")
            emotion = gr.Dropdown(list(engine.emotions), value=config.emotion, label="Emotion")
            reset_btn = gr.Button("Reset conversation")
        with gr.Row():
            mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Your microphone",
                           elem_id="mic")
            speaker = gr.Audio(streaming=True, autoplay=True, interactive=False, label="Agent",
                               elem_id="agent-audio")
        status = gr.Textbox("press Record and speak", label="Status", interactive=False, elem_id="status")
        signal = gr.Textbox("0", visible="hidden", elem_id="turn-signal")
        chat = gr.Chatbot(label="Conversation (what the agent heard, what it said)", elem_id="conversation")
        with gr.Row():
            plot = gr.Plot(label="Latency breakdown", elem_id="latency-plot")
            table = gr.Dataframe(headers=["turn", "end-of-turn ms", "encode ms", "first frame ms", "first audio ms",
                                          "end-to-end ms", "answer s", "RTF", "interrupted"],
                                 label="Latency per turn", elem_id="latency-table")
        mic.stream(on_mic, [mic, state], [state, status, signal], stream_every=0.1, concurrency_limit=None,
                   show_progress="hidden")
        signal.change(speak, [state], [speaker], concurrency_limit=None, show_progress="hidden").then(
            after_answer, [state], [state, status, chat, plot, table], show_progress="hidden")
        voice.change(set_voice, [voice, state], [state])
        emotion.change(set_emotion, [emotion, state], [state])
        reset_btn.click(reset, [state], [state, status, chat, plot, table])
    return demo
