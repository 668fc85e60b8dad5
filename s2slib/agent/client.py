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


def run_sync(coro):
    """Run a coroutine to completion from synchronous code, also inside Jupyter (whose event loop is already
    running: the coroutine then runs on its own loop in a helper thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


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
    max_lag_ms: float = 0.0  # how far the client fell behind its real-time sending schedule (the machine keeping up)
    # playback that had to wait for audio: a player starting with the first chunk, playing every chunk at once when
    # it arrives after the previous one ran out (0: the answer never stalled)
    underrun_ms: float = 0.0
    _played_until: float | None = field(default=None, repr=False)

    def arrived(self, wav: np.ndarray, now: float) -> None:
        """An answer chunk arrived at ``now``: keep it and play it after what is queued."""
        start = now if self._played_until is None else max(now, self._played_until)
        if self._played_until is not None and now > self._played_until:
            self.underrun_ms += 1000 * (now - self._played_until)
        self._played_until = start + len(wav) / SAMPLE_RATE
        self.answer = np.concatenate([self.answer, wav])

    @property
    def answered(self) -> bool:
        return len(self.answer) > 0


# A session stays real time when its client never falls this far behind the audio it sends, no answer leaves its
# player waiting this long in all, and every answer takes less time to make than to play (:func:`kept_real_time`).
REALTIME_SLACK_MS = 100.0


def kept_real_time(results: list[TurnResult], session: Any) -> bool:
    """Whether one session kept real time (see ``REALTIME_SLACK_MS``): every question answered, every answer of
    ``session`` (an :class:`~s2slib.agent.session.AgentSession`) made faster than it plays, the client never
    ``REALTIME_SLACK_MS`` behind its schedule, no answer that was not interrupted kept its player waiting that long."""
    return (all(r.answered for r in results)
            and all(np.isfinite(t.rtf) and t.rtf < 1.0 for t in session.telemetry)
            and all(r.max_lag_ms < REALTIME_SLACK_MS for r in results)
            and all(r.underrun_ms < REALTIME_SLACK_MS for r in results if not r.interrupted))


Message = tuple[str, Any, float]  # ("audio", float32 array, arrival) or ("event", dict, arrival perf_counter())


async def talk(send: Callable[[np.ndarray], Awaitable[None]], inbox: asyncio.Queue, questions: list[np.ndarray],
               chunk_ms: int = 20, lead_s: float = 0.4, max_wait_s: float = 12.0,
               barge_in: dict[int, tuple[float, np.ndarray]] | None = None,
               before_turn: Callable[[int], Awaitable[None]] | None = None) -> list[TurnResult]:
    """Stream ``questions`` (float32, 16 kHz) in real time, one turn each; see the module docstring.

    barge_in: ``{question index: (seconds after the first answer audio, audio to speak then)}``: interrupt that
    answer with the given speech (which is then the next turn's question; its result is the next entry).
    before_turn: called with the question's index before it is streamed (to set the voice, say).
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
        elif results:
            results[-1].max_lag_ms = max(results[-1].max_lag_ms, -1000 * wait)
        await send(block)
        sent += len(block)
        return time.perf_counter()

    def take(res: TurnResult, t_end: float | None) -> bool:
        """Handle what arrived; True when the answer has ended."""
        done = False
        while not inbox.empty():
            kind, payload, now = inbox.get_nowait()  # now: when it arrived
            if kind == "audio":
                if not res.answered and t_end is not None:
                    res.e2e_ms = 1000 * (now - t_end)
                    eot = next((e["_t"] for e in res.events if e["type"] == "speech_ended"), None)
                    res.after_eot_ms = 1000 * (now - eot) if eot is not None else None
                res.arrived(payload, now)
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
        if before_turn is not None and i < len(questions):
            await before_turn(i)
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
                          voice: str | None = None, emotion: str | None = None,
                          settings: list[tuple[str, str | None]] | None = None,
                          **kwargs) -> tuple[list[TurnResult], Any]:
    """:func:`talk` through a :class:`~s2slib.agent.runner.SessionRunner` in this process: ``(results, session)``.
    ``settings``: a ``(voice, emotion)`` per question, set before it is asked."""
    from s2slib.agent.runner import SessionRunner
    from s2slib.agent.session import AgentSession

    # built on a worker thread, as the server builds its sessions: loading a session's VAD takes about 40 ms, which on
    # the event loop would stall every other session's audio (sessions joining mid-conversation)
    session = await asyncio.to_thread(AgentSession, engine, config, voice, emotion)
    inbox: asyncio.Queue = asyncio.Queue()

    async def receive(ev) -> None:
        inbox.put_nowait(("audio", ev.audio, time.perf_counter()) if ev.type == "audio"
                         else ("event", {"type": ev.type, **ev.data}, time.perf_counter()))

    runner = SessionRunner(session, receive)

    async def before_turn(i: int) -> None:
        v, e = settings[i]
        await runner.control("voice", v)
        await runner.control("emotion", e or "neutral")

    try:
        results = await talk(runner.feed, inbox, questions, before_turn=before_turn if settings else None, **kwargs)
    finally:
        await runner.close()
    return results, session


async def talk_ws(url: str, questions: list[np.ndarray], controls: list[dict] | None = None,
                  **kwargs) -> list[TurnResult]:
    """:func:`talk` over the server's WebSocket at ``url`` (``ws://host:port/ws``); ``controls`` are sent first."""
    import websockets

    inbox: asyncio.Queue = asyncio.Queue()
    async with websockets.connect(url, max_size=None) as ws:
        errors: list[dict] = []  # the server's error events, to say why it closed the session if it does

        async def receive() -> None:
            async for msg in ws:
                if isinstance(msg, bytes):
                    inbox.put_nowait(("audio", decode_audio(msg), time.perf_counter()))
                else:
                    event = json.loads(msg)
                    if event.get("type") == "error":
                        errors.append(event)
                    inbox.put_nowait(("event", event, time.perf_counter()))

        reader = asyncio.create_task(receive())
        for c in controls or []:
            await ws.send(json.dumps(c))

        async def send(block: np.ndarray) -> None:
            await ws.send(np.clip(np.round(block * 32767), -32768, 32767).astype("<i2").tobytes())

        try:
            return await talk(send, inbox, questions, **kwargs)
        except websockets.ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            raise ConnectionError(f"the server closed the session (code {code}); its error events: {errors}") from exc
        finally:
            reader.cancel()


@dataclass
class Question:
    """A held-out question: its text and audio (float32, 16 kHz), and the answer the data set gives it (text,
    agent voice, emotion)."""

    text: str
    wav: np.ndarray
    answer: str
    voice: str
    emotion: str | None
    source_id: str = ""


def heldout_questions(run: str | Path, n: int = 20, kind: str = "pair",
                      sources: set[str] | frozenset[str] | None = None) -> list[Question]:
    """The first ``n`` held-out (test split) user questions of a run, with their answers; with ``sources``, only
    those of the written pairs the model learnt (their answers, in other user voices: ``AgentEngine.sources``)."""
    from s2slib.audio import load_audio

    path = Path(run) / "data" / "conversations" / f"{kind}s_test.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run notebook 01 for {run}")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if sources and row.get("source_id") not in sources:
            continue
        user, agent = row["turns"][0], row["turns"][1]
        wav, _ = load_audio((path.parent / user["audio_path"]).resolve(), SAMPLE_RATE)
        out.append(Question(user["text"], wav.astype(np.float32), agent["text"], agent["speaker"], agent.get("emotion"),
                            row.get("source_id", "")))
        if len(out) >= n:
            break
    return out
