"""One decoder thread for every session's answer: :class:`DecodeService`.

Each session used to run its own decoder loop on its own thread, one step per frame. On a CPU the small model's step
is mostly fixed cost (Python, operator dispatch, the GIL), so four sessions took four times as long per frame and
missed real time. The service runs a :class:`s2slib.s2s.batching.BatchedDecoder` on one thread: every answer in
progress advances by one frame per batched step, and answers join and leave between steps.

    stream = service.frames(src, "Priya", "happy", sampling)   # encodes src on the caller's thread
    for frame in stream:                                       # s2slib.s2s.generate.Frame, one item
        ...
    stream.cancel()                                            # barge-in: the service drops it at its next step

The service pauses while every answer in progress has ``max_queued`` frames waiting to be read: a session that
paces its answer to playback (``AgentConfig.max_lead_s``) then leaves the CPU to the others instead of finishing its
answer in one burst.
A stream ends (``StopIteration``) when its answer does; an error in the decoder reaches every stream in progress as
the exception, and the service goes on with the next answers.
"""

from __future__ import annotations

import queue
import threading

import torch
from torch import Tensor

from s2slib.s2s.batching import BatchedDecoder, start_stream
from s2slib.s2s.generate import Frame, SamplingConfig
from s2slib.s2s.model import S2SModel

_END = object()


class _Sink:
    """The service's end of a stream: the frames made so far, and whether they are still wanted."""

    def __init__(self):
        self.queue: queue.Queue = queue.Queue()
        self.cancelled = False


class FrameStream:
    """The frames of one answer as the service makes them (an iterator of one-item :class:`Frame`). Dropping the
    last reference to it cancels the answer too."""

    def __init__(self, service: "DecodeService", sink: _Sink):
        self._service = service
        self._sink = sink
        self._index = 0
        self.finished = False

    def __iter__(self) -> "FrameStream":
        return self

    def __next__(self) -> Frame:
        if self.finished:
            raise StopIteration
        item = self._sink.queue.get()
        if item is _END:
            self.finished = True
            raise StopIteration
        if isinstance(item, BaseException):
            self.finished = True
            raise item
        frame = Frame(item.view(1, -1), torch.ones(1, dtype=torch.bool), self._index)
        self._index += 1
        return frame

    @property
    def cancelled(self) -> bool:
        return self._sink.cancelled

    def cancel(self) -> None:
        """Stop making this answer (safe from any thread, any number of times)."""
        if not self._sink.cancelled:
            self._sink.cancelled = True
            self._service._wake()

    def __del__(self) -> None:  # an answer nobody reads any more (a prepared answer that was not used)
        self._sink.cancelled = True


class DecodeService:
    """The decoder thread shared by every session of an engine (see the module docstring). ``slots``: rows the
    batched decoder starts with (it grows when more answers run at once). ``max_queued``: when every answer in
    progress has this many frames made and not yet taken, the service waits for a reader (0: never waits); a
    session that paces its answer to playback then paces the decoder too."""

    def __init__(self, model: S2SModel, slots: int = 4, max_queued: int = 25):
        self.model = model
        self._slots = slots
        self.max_queued = max_queued
        self._cond = threading.Condition()
        self._joining: list[tuple[_Sink, object]] = []
        self._closed = False
        self._thread: threading.Thread | None = None
        self.steps = 0  # batched decoder steps taken (for the benchmark's record)
        self.stream_steps = 0  # stream-steps among them: steps_per_batch = stream_steps / steps

    def frames(self, src: Tensor, speaker: str | None, emotion: str | None,
               sampling: SamplingConfig | None = None) -> FrameStream:
        """Start answering ``src: LongTensor[1, n_q, S]``; the encoder runs here, on the caller's thread."""
        start = start_stream(self.model, src, speaker, emotion, sampling)
        sink = _Sink()
        with self._cond:
            if self._closed:
                raise RuntimeError("the decode service is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="s2s-decoder", daemon=True)
                self._thread.start()
            self._joining.append((sink, start))
            self._cond.notify()
        return FrameStream(self, sink)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def close(self) -> None:
        """End the thread; answers in progress end with an error."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        with torch.inference_mode():
            decoder = BatchedDecoder(self.model, self._slots)
            streams: dict[int, _Sink] = {}
            while True:
                with self._cond:
                    while not self._closed and not self._joining and not streams:
                        self._cond.wait()
                    if self._closed:
                        break
                    joining, self._joining = self._joining, []
                try:
                    for sink, start in joining:
                        if sink.cancelled:
                            sink.queue.put(_END)
                        else:
                            streams[decoder.add(start)] = sink
                    for h in [h for h, s in streams.items() if s.cancelled]:
                        decoder.remove(h)
                        streams.pop(h).queue.put(_END)  # a reader still waiting on it stops
                    if not streams:
                        continue
                    if self.max_queued and all(s.queue.qsize() >= self.max_queued for s in streams.values()):
                        with self._cond:  # every answer is far enough ahead of its reader
                            self._cond.wait(timeout=0.01)
                        continue
                    n = decoder.active
                    out = decoder.step()
                    self.steps += 1
                    self.stream_steps += n
                    for h, codes in out.items():
                        if codes is None:
                            streams.pop(h).queue.put(_END)
                        else:
                            streams[h].queue.put(codes.clone())
                except Exception as exc:  # every answer in progress hears of it; the next ones start afresh
                    for sink in streams.values():
                        sink.queue.put(exc)
                    streams = {}
                    decoder = BatchedDecoder(self.model, self._slots)
            for sink in list(streams.values()) + [s for s, _ in self._joining]:
                sink.queue.put(RuntimeError("the decode service was closed"))
