"""A session driven from asyncio: :class:`SessionRunner`.

Audio comes in on the event loop (``await runner.feed(pcm)``); the VAD and the encoder run on a worker thread so
the loop stays free; when a turn ends, the answer is generated on another worker thread while listening goes on, so
the user can barge in. When the user pauses, that thread starts the answer ahead (``AgentSession.prepare``) while
the end-of-turn silence runs out. Every event, from either thread, goes out through one queue in order to one ``send``
coroutine (a WebSocket's, the Gradio demo's, or a list in a test), never two sends at once.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Awaitable, Callable

import numpy as np

from s2slib.agent.session import AgentSession, Event

Send = Callable[[Event], Awaitable[None]]


class SessionRunner:
    """One session on an event loop. ``answers``: the executor that runs answers (default: one thread of the
    runner's own). Listening has a thread of its own: an answer paced to its playback holds its thread for seconds,
    and a pool shared with listening (the loop's default one has only cores + 4 threads) would make the
    microphones of the other sessions wait behind it."""

    def __init__(self, session: AgentSession, send: Send, answers: Executor | None = None):
        self.session = session
        self._send = send
        self._own = [ThreadPoolExecutor(1, thread_name_prefix="listen")]
        self._listen = self._own[0]
        if answers is None:
            answers = ThreadPoolExecutor(1, thread_name_prefix="answer")
            self._own.append(answers)
        self._answers = answers
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._writer = asyncio.create_task(self._write())
        self._answer: asyncio.Future | None = None
        self.closed = False

    async def _write(self) -> None:
        while True:
            ev = await self._queue.get()
            if ev is None:
                return
            await self._send(ev)

    def _put(self, ev: Event) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, ev)

    @property
    def answering(self) -> bool:
        return self._answer is not None and not self._answer.done()

    async def feed(self, pcm: np.ndarray) -> None:
        """Listen to the next chunk; start answering when a turn ends."""
        for ev in await self._loop.run_in_executor(self._listen, self.session.feed, pcm):
            self.emit(ev)
        self._maybe_answer()

    def _maybe_answer(self) -> None:
        if self.answering or self.closed:
            return
        if self.session.turn_ready:
            self._answer = self._loop.run_in_executor(self._answers, self._run_answer)
        elif self.session.prepare_wanted:  # the user paused: start the answer while the end of turn is decided
            self._answer = self._loop.run_in_executor(self._answers, self._run_prepare)

    def _run_prepare(self) -> None:
        try:
            self.session.prepare()
        except Exception:  # nothing is lost: the answer is generated from scratch at the end of turn
            pass
        self._loop.call_soon_threadsafe(self._maybe_answer)  # the turn may have ended meanwhile

    def _run_answer(self) -> None:
        try:
            for ev in self.session.respond():
                if self.closed:
                    break
                self._put(ev)
        except Exception as exc:  # a failed answer is reported, the session goes on
            self._put(Event("error", {"code": "answer_failed", "message": f"{type(exc).__name__}: {exc}"}))
        self._loop.call_soon_threadsafe(self._maybe_answer)  # a turn that ended meanwhile

    async def control(self, kind: str, value: str | None = None) -> None:
        """``voice``/``emotion`` (for the next answer), ``reset``, ``interrupt``; errors go out as events."""
        s = self.session
        if kind in ("voice", "emotion"):
            (s.set_voice if kind == "voice" else s.set_emotion)(value)
            events = [Event("settings", {"voice": s.voice, "emotion": s.emotion})]
        elif kind == "reset":
            events = s.reset()
        elif kind == "interrupt":
            events = s.interrupt(reason="client")
        else:
            raise ValueError(f"unknown control {kind!r}")
        for ev in events:
            self.emit(ev)

    def emit(self, ev: Event) -> None:
        self._queue.put_nowait(ev)

    async def close(self) -> None:
        """Stop answering, send what is queued, and end."""
        self.closed = True
        self.session.interrupt(reason="closed")
        if self._answer is not None:
            await asyncio.wait({self._answer})
        self._queue.put_nowait(None)
        await self._writer
        for pool in self._own:
            pool.shutdown(wait=False)
