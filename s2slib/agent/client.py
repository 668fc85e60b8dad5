"""Talking to the agent without a browser: recorded questions streamed in real time, answers collected.

:func:`talk` drives any transport through two callables (send audio; an inbox of received messages), so the same
timing code measures an in-process session (:func:`talk_in_process`: notebook 07, ``bench agent``) and the real
WebSocket server (:func:`talk_ws`: the tests). Each question is preceded by a little silence and followed by
silence (as a microphone would send) until the answer has played; the client times, on its own clock, the true end
of the question's speech to the first answer audio it receives (``e2e_ms``) and the server's end-of-turn event to
that audio (``after_eot_ms``).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np

from s2slib.agent.config import SAMPLE_RATE, AgentConfig
from s2slib.agent.protocol import decode_audio


def speech_span(wav: np.ndarray, floor_db: float = -35.0, frame: int = 160) -> tuple[int, int]:
    """``(first, last)`` sample of the speech in ``wav``: 10 ms frames within ``floor_db`` of the loudest one."""
    n = len(wav) // frame
    if n == 0:
        return 0, len(wav)
    rms = np.sqrt(np.mean(wav[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > floor_db)
    return int(loud[0] * frame), int((loud[-1] + 1) * frame)


@dataclass
class TurnResult:
    """One question and what came back (times in ms on the client's clock)."""

    question_s: float
    e2e_ms: float | None = None  # true end of the question's speech -> first answer audio received
    after_eot_ms: float | None = None  # end-of-turn event received -> first answer audio received
    answer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    events: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, Any] | None = None
    interrupted: bool = False

    @property
    def answered(self) -> bool:
        return len(self.answer) > 0


Message = tuple[str, Any]  # ("audio", float32 array) or ("event", dict)


async def talk(send: Callable[[np.ndarray], Awaitable[None]], inbox: asyncio.Queue, questions: list[np.ndarray],
               chunk_ms: int = 20, lead_s: float = 0.4, max_wait_s: float = 12.0,
               barge_in: dict[int, tuple[float, np.ndarray]] | None = None) -> list[TurnResult]:
    """Stream ``questions`` (float32, 16 kHz) in real time, one turn each; see the module docstring.

    barge_in: ``{question index: (seconds after the first answer audio, audio to speak then)}``: interrupt that
    answer with the given speech (which is then the next turn's question; its result is the next entry).
    """
    chunk = SAMPLE_RATE * chunk_ms // 1000
    silence = np.zeros(chunk, np.float32)
    barge_in = barge_in or {}
    results: list[TurnResult] = []
    t0 = time.perf_counter()
    sent = 0  # samples sent: the schedule says sample n goes out at t0 + n / SAMPLE_RATE

    async def push(block: np.ndarray) -> float:
        nonlocal sent
        wait = t0 + sent / SAMPLE_RATE - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        await send(block)
        sent += len(block)
        return time.perf_counter()

    def take(res: TurnResult, t_end: float | None) -> bool:
        """Handle what arrived; True when the answer has ended."""
        done = False
        while not inbox.empty():
            kind, payload = inbox.get_nowait()
            now = time.perf_counter()
            if kind == "audio":
                if not res.answered and t_end is not None:
                    res.e2e_ms = 1000 * (now - t_end)
                    eot = next((e["_t"] for e in res.events if e["type"] == "speech_ended"), None)
                    res.after_eot_ms = 1000 * (now - eot) if eot is not None else None
                res.answer = np.concatenate([res.answer, payload])
                continue
            payload = dict(payload, _t=now)
            res.events.append(payload)
            if payload["type"] == "latency":
                res.latency = payload
            elif payload["type"] == "interrupted":
                res.interrupted = True
            elif payload["type"] == "answer_ended":
                done = True
        return done

    queue = list(questions)
    i = 0
    while i < len(queue):
        wav = queue[i]
        _, end = speech_span(wav)
        res = TurnResult(question_s=len(wav) / SAMPLE_RATE)
        results.append(res)
        for _ in range(int(lead_s * SAMPLE_RATE) // chunk):
            await push(silence)
            take(res, None)
        t_end = None
        for s in range(0, len(wav), chunk):
            t = await push(wav[s:s + chunk])
            if t_end is None and s + chunk >= end:
                t_end = t
            take(res, t_end)
        ended, t_first = False, None
        deadline = time.perf_counter() + max_wait_s
        while time.perf_counter() < deadline:
            await push(silence)
            ended = take(res, t_end) or ended
            if res.answered and t_first is None:
                t_first = time.perf_counter()
            if i in barge_in and t_first is not None and time.perf_counter() - t_first >= barge_in[i][0]:
                queue.insert(i + 1, barge_in[i][1])
                break
            played = t_first is not None and time.perf_counter() - t_first >= len(res.answer) / SAMPLE_RATE
            if ended and played:
                break
        i += 1
    await asyncio.sleep(0.05)
    if results:
        take(results[-1], None)
    return results


async def talk_in_process(engine, questions: list[np.ndarray], config: AgentConfig | None = None,
                          voice: str | None = None, emotion: str | None = None, **kwargs) -> tuple[list[TurnResult], Any]:
    """:func:`talk` through a :class:`~s2slib.agent.runner.SessionRunner` in this process: ``(results, session)``."""
    from s2slib.agent.runner import SessionRunner
    from s2slib.agent.session import AgentSession

    session = AgentSession(engine, config, voice, emotion)
    inbox: asyncio.Queue = asyncio.Queue()

    async def receive(ev) -> None:
        inbox.put_nowait(("audio", ev.audio) if ev.type == "audio" else ("event", {"type": ev.type, **ev.data}))

    runner = SessionRunner(session, receive)
    try:
        results = await talk(runner.feed, inbox, questions, **kwargs)
    finally:
        await runner.close()
    return results, session


async def talk_ws(url: str, questions: list[np.ndarray], controls: list[dict] | None = None,
                  **kwargs) -> list[TurnResult]:
    """:func:`talk` over the server's WebSocket at ``url`` (``ws://host:port/ws``); ``controls`` are sent first."""
    import websockets

    inbox: asyncio.Queue = asyncio.Queue()
    async with websockets.connect(url, max_size=None) as ws:
        async def receive() -> None:
            async for msg in ws:
                inbox.put_nowait(("audio", decode_audio(msg)) if isinstance(msg, bytes)
                                 else ("event", json.loads(msg)))

        reader = asyncio.create_task(receive())
        for c in controls or []:
            await ws.send(json.dumps(c))

        async def send(block: np.ndarray) -> None:
            await ws.send(np.clip(np.round(block * 32767), -32768, 32767).astype("<i2").tobytes())

        try:
            return await talk(send, inbox, questions, **kwargs)
        finally:
            reader.cancel()


def heldout_questions(run: str | Path, n: int = 20, kind: str = "pair") -> list[tuple[str, np.ndarray, str]]:
    """Up to ``n`` held-out (test split) user questions of a run: ``(text, float32 at 16 kHz, answer text)``,
    spread over the test voices."""
    from s2slib.audio import load_audio

    path = Path(run) / "data" / "conversations" / f"{kind}s_test.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run notebook 01 for {run}")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        user, agent = row["turns"][0], row["turns"][1]
        wav, _ = load_audio((path.parent / user["audio_path"]).resolve(), SAMPLE_RATE)
        out.append((user["text"], wav.astype(np.float32), agent["text"]))
        if len(out) >= n:
            break
    return out
