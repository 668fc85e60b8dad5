"""One conversation with the agent: :class:`AgentSession`, synchronous and transport-free.

Two calls drive it, usually from two threads (:mod:`s2slib.agent.runner` does this; tests and notebook 07 may call
them in turn):

``feed(pcm)``
    the user's audio (16 kHz mono, ``int16`` or ``float32``, any chunk size). Runs the VAD, encodes the turn while
    it is spoken, and returns the events it completes: ``speech_started``, ``speech_ended`` (end of turn; the turn
    is then waiting, :attr:`turn_ready`), ``interrupted`` (barge-in).
``respond()``
    a generator that answers the waiting turn: ``answer_started``, ``audio`` events (``Event.audio``: ``float32``
    at 16 kHz, each ready as soon as its frames are decoded), then ``answer_ended`` and ``latency``. It stops at the
    next chunk after an interruption.
``prepare()`` (optional)
    when :attr:`prepare_wanted` (the user has been silent ``prepare_after_ms``, the end of turn is not yet decided),
    runs the encoder over the context and the question and the decoder up to the answer's first frame, so that
    ``respond()`` starts with it if the turn then ends with no more speech. Speech before the end of turn makes
    the work moot; it is dropped. Skipping ``prepare()`` changes nothing but the latency.

**The session's clock is the input stream.** A client sends audio in real time, so the number of samples received
is the time. An answer is taken to start playing when its first chunk goes out and to play in real time; barge-in
during that span (while generating or while the client is still playing what it was sent) interrupts it, and the
context keeps the answer only as far as it was heard (``truncated``). Because the clock is the stream, a test that
feeds a file faster than real time sees exactly the same events.

While the agent speaks, a new turn needs ``barge_in_min_ms`` of speech instead of ``min_speech_ms``: a cough or a
click during the answer neither interrupts it nor becomes a question.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from s2slib.agent.config import SAMPLE_RATE, VAD_WINDOW, AgentConfig
from s2slib.agent.engine import AgentEngine
from s2slib.agent.vad import TurnDetector, VoiceActivity


@dataclass
class Event:
    """What a session reports: ``type`` (see the module docstring), ``data`` (JSON-able), and ``audio`` for
    ``type == "audio"``."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    audio: np.ndarray | None = None


@dataclass
class TurnTelemetry:
    """Where the time of one answer went (milliseconds unless said).

    eot_delay_ms: from the end of the user's speech (the VAD's last speech window) to the end-of-turn decision,
        on the stream's clock: the end-of-turn silence plus at most one VAD window.
    encode_ms: finishing the question's encoding at the end of the turn (the rest was encoded while it was spoken).
    first_frame_ms: end of turn to the first answer frame (encoder pass over the context, first decoder steps).
    first_audio_ms: end of turn to the first audio chunk ready to send.
    e2e_ms: ``eot_delay_ms + first_audio_ms``: end of speech to the first answer audio.
    rtf: generation and decoding time over the answer's duration (< 1: faster than it plays).
    """

    turn: int
    question_s: float
    eot_delay_ms: float
    encode_ms: float = 0.0
    first_frame_ms: float = float("nan")
    first_audio_ms: float = float("nan")
    e2e_ms: float = float("nan")
    answer_s: float = 0.0
    generate_s: float = 0.0
    rtf: float = float("nan")
    frames: int = 0
    ended_at_eos: bool = False
    interrupted: bool = False
    heard_frames: int = 0
    prepared: bool = False  # the first frame was computed during the end-of-turn silence (prepare())
    context_turns: int = 0
    voice: str = ""
    emotion: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 2) if isinstance(v, float) and np.isfinite(v) else (None if isinstance(v, float)
                                                                                 else v))
                for k, v in asdict(self).items()}


@dataclass
class _Turn:
    codes: np.ndarray  # int64[n_q, F]
    telemetry: TurnTelemetry
    eot_wall: float  # perf_counter() when the end of turn was decided
    early: _Early | None = None  # what prepare() computed for exactly these codes


@dataclass
class _Early:
    """An answer started ahead of the end of turn: for the question's codes up to ``speech_end``."""

    speech_end: int
    codes: np.ndarray
    stream: Any = None  # the answer's FrameStream (AgentEngine.frames) after its first frame
    first: Any = None  # that first Frame (None: the model ended at once)
    ready_wall: float = 0.0
    key: tuple = ()  # (turn number, voice, emotion, context turns) it was computed for


class AgentSession:
    """One conversation (see the module docstring)."""

    def __init__(self, engine: AgentEngine, config: AgentConfig | None = None, voice: str | None = None,
                 emotion: str | None = None):
        from s2slib.s2s.context import ConversationContext

        self.engine = engine
        self.config = config or AgentConfig()
        self.voice = engine.check_voice(voice or self.config.voice)
        self.emotion = engine.check_emotion(emotion or self.config.emotion)
        self.context = ConversationContext()
        self.vad = VoiceActivity()
        self.detector = TurnDetector(self.config)
        self.encoder = engine.codec.streaming_encoder()
        self.telemetry: list[TurnTelemetry] = []
        self._lock = threading.Lock()
        self._hop = engine.hop
        self._pre_roll = int(self.config.pre_roll_ms * SAMPLE_RATE / 1000)
        self._keep = self._pre_roll + self.config.windows(self.config.barge_in_min_ms) * VAD_WINDOW + SAMPLE_RATE
        self._barge_windows = self.config.windows(self.config.barge_in_min_ms)
        self._normal_windows = self.detector.start_windows
        self.received = 0  # samples fed so far: the session's clock
        self._recent = np.zeros(0, dtype=np.float32)  # the last samples fed, for the pre-roll
        self._codes: list[torch.Tensor] = []
        self._unencoded: list[np.ndarray] = []  # the turn's audio not yet given to the encoder (encode_every_ms)
        self._encode_every = int(self.config.encode_every_ms * SAMPLE_RATE / 1000)
        self._origin = 0  # clock of the first sample the encoder got for this turn
        self._pending: _Turn | None = None
        self._answer: dict[str, Any] | None = None  # the answer being generated or played
        self._turns = 0
        self._early: _Early | None = None  # the answer prepared during the current end-of-turn silence
        self._prepare_windows = self.config.windows(self.config.prepare_after_ms) \
            if 0 < self.config.prepare_after_ms < self.config.end_of_turn_ms else 0

    # ------------------------------------------------------------------ settings between turns
    def set_voice(self, voice: str) -> None:
        self.voice = self.engine.check_voice(voice)

    def set_emotion(self, emotion: str) -> None:
        self.emotion = self.engine.check_emotion(emotion)

    def reset(self) -> list[Event]:
        """Forget the conversation (and stop any answer); the stream's clock goes on."""
        events = self.interrupt(reason="reset")
        with self._lock:
            self.context.reset()
            for early in (self._early, self._pending.early if self._pending is not None else None):
                self._drop(early)
            self._pending = None
            self._early = None
        return events + [Event("reset", {"context_turns": 0})]

    # ------------------------------------------------------------------ listening
    @property
    def turn_ready(self) -> bool:
        return self._pending is not None

    @property
    def speaking(self) -> bool:
        """True while an answer is being generated or is still playing on the client (by the stream's clock)."""
        a = self._answer
        if a is None or a["interrupted"]:
            return False
        return not a["done"] or (a["play_start"] is not None and self.received < a["play_start"] + a["samples"])

    def feed(self, pcm: np.ndarray) -> list[Event]:
        """Take the user's next audio (see the module docstring); return the events it completes."""
        wav = np.asarray(pcm)
        if wav.dtype == np.int16:
            wav = wav.astype(np.float32) / 32768.0
        elif wav.dtype != np.float32:
            raise TypeError(f"feed takes int16 or float32 samples at {SAMPLE_RATE} Hz, got {wav.dtype}")
        wav = wav.reshape(-1)
        if not np.all(np.isfinite(wav)):
            raise ValueError("audio contains NaN or infinite samples")
        events: list[Event] = []
        self.received += len(wav)
        self._recent = np.concatenate([self._recent, wav])[-self._keep:]
        if self.detector.in_turn:
            self._push_codes(wav)
        probs = self.vad.push(wav)
        for p in probs:
            self.detector.start_windows = self._barge_windows if self.speaking else self._normal_windows
            speech = bool(p > self.config.vad_threshold)
            was_speaking = self.speaking
            ev = self.detector.step(speech)
            if ev is None:
                continue
            if ev.kind == "speech_started":
                if was_speaking:
                    events += self.interrupt(reason="barge_in")
                self._start_turn(ev.speech_start)
                events.append(Event("speech_started", {"t": ev.speech_start / SAMPLE_RATE}))
            else:
                events.append(self._end_turn(ev.speech_start, ev.speech_end, ev.sample))
        self._note_silence()
        return events

    # ------------------------------------------------------------------ answering ahead of the end of turn
    def _note_silence(self) -> None:
        """Once the user has been silent ``prepare_after_ms`` inside a turn, offer its codes so far to prepare()."""
        d = self.detector
        if not self._prepare_windows or not d.in_turn or d.run < self._prepare_windows or self.speaking \
                or self._pending is not None or (self._early is not None and self._early.speech_end == d.speech_end):
            return
        n = self._turn_frames(d.speech_end)
        self._encode_pending()
        if not self._codes or sum(c.shape[-1] for c in self._codes) < n:
            return  # the streaming encoder has not caught up yet (it will by the end of turn)
        merged = torch.cat(self._codes, dim=-1)
        self._codes = [merged]
        codes = merged[:, :n].numpy()
        with self._lock:
            self._early = _Early(d.speech_end, codes)

    @property
    def prepare_wanted(self) -> bool:
        e = self._early
        return e is not None and e.stream is None and self._pending is None

    def prepare(self) -> bool:
        """Compute the first frame of the answer to the turn so far (see the module docstring); True if it did."""
        with self._lock:
            e = self._early
            if e is None or e.stream is not None or self._pending is not None:
                return False
            key = (self._turns + 1, self.voice, self.emotion, len(self.context))
            src = self.context.source(e.codes, self.engine.model.config)
        stream = self.engine.frames(torch.from_numpy(src).unsqueeze(0), key[1], key[2], self._sampling(key[0]))
        first = next(stream, None)
        with self._lock:
            taken = self._pending is not None and self._pending.early is e  # the turn ended meanwhile, on these codes
            if self._early is not e and not taken:  # the user went on: the work is moot
                stream.cancel()
                return False
            e.stream, e.first, e.ready_wall, e.key = stream, first, time.perf_counter(), key
        return True

    def _sampling(self, turn: int):
        from s2slib.s2s.generate import SamplingConfig

        cfg, model = self.config, self.engine.model
        max_frames = min(model.config.max_frames, int(cfg.max_answer_s * self.engine.frame_rate))
        return SamplingConfig(temperature=cfg.temperature, top_k=cfg.top_k, max_frames=max_frames,
                              min_frames=min(max_frames, int(round(cfg.min_answer_s * self.engine.frame_rate))),
                              seed=None if cfg.seed is None else cfg.seed + turn)

    def _turn_frames(self, speech_end: int) -> int:
        """Code frames of the turn that ends its speech at sample ``speech_end``: from the pre-roll to ``tail_ms``
        after the speech."""
        return int(np.ceil((speech_end + self.config.tail_ms * SAMPLE_RATE / 1000 - self._origin) / self._hop))

    def _push_codes(self, wav: np.ndarray) -> None:
        """The turn's next audio, to the encoder once ``encode_every_ms`` of it has gathered."""
        self._unencoded.append(wav)
        if sum(len(w) for w in self._unencoded) >= self._encode_every:
            self._encode_pending()

    def _encode_pending(self) -> None:
        if not self._unencoded:
            return
        wav = np.concatenate(self._unencoded)
        self._unencoded = []
        codes = self.encoder.push(torch.from_numpy(np.ascontiguousarray(wav)).view(1, 1, -1))
        if codes.shape[-1]:
            self._codes.append(codes[0].cpu())

    @staticmethod
    def _drop(early: _Early | None) -> None:
        """An answer prepared for a turn that went on (or was reset): stop its decoding."""
        if early is not None and early.stream is not None:
            early.stream.cancel()

    def _start_turn(self, speech_start: int) -> None:
        """Begin encoding at the pre-roll before the speech; the samples of this chunk are in ``_recent``."""
        self.encoder.reset()
        self._codes = []
        self._unencoded = []
        with self._lock:
            self._drop(self._early)
            self._early = None
        first = self.received - len(self._recent)
        self._origin = max(first, speech_start - self._pre_roll)
        self._push_codes(self._recent[self._origin - first:])

    def _end_turn(self, speech_start: int, speech_end: int, decided: int) -> Event:
        t0 = time.perf_counter()
        n = self._turn_frames(speech_end)
        self._encode_pending()
        have = sum(c.shape[-1] for c in self._codes)
        if have < n:
            self._codes.append(self.encoder.flush()[0].cpu())
        codes = torch.cat(self._codes, dim=-1)[:, :n].numpy() if self._codes else np.zeros((1, 0), np.int64)
        self._codes = []
        self._turns += 1
        tel = TurnTelemetry(turn=self._turns, question_s=(speech_end - speech_start) / SAMPLE_RATE,
                            eot_delay_ms=1000 * (decided - speech_end) / SAMPLE_RATE,
                            encode_ms=1000 * (time.perf_counter() - t0))
        with self._lock:
            early, self._early = self._early, None
            same = early is not None and early.speech_end == speech_end and np.array_equal(early.codes, codes)
            if not same:
                self._drop(early)
            self._pending = _Turn(codes, tel, time.perf_counter(), early if same else None)
        return Event("speech_ended", {"t": speech_end / SAMPLE_RATE, "question_s": round(tel.question_s, 3),
                                      "eot_delay_ms": round(tel.eot_delay_ms, 1), "frames": int(codes.shape[-1])})

    # ------------------------------------------------------------------ barge-in
    def interrupt(self, reason: str = "barge_in") -> list[Event]:
        """Stop the current answer (if any): generation stops at its next chunk, the client drops what it has not
        played, and the context keeps the answer as far as it was heard."""
        with self._lock:
            a = self._answer
            if a is None or not self.speaking:  # nothing playing, or already interrupted
                return []
            a["cancel"].set()
            heard = 0 if a["play_start"] is None else min(self.received - a["play_start"], a["samples"])
            a["heard_frames"] = max(0, heard) // self._hop
            a["interrupted"] = True
            if a["done"] and a["turn"] is not None:  # already remembered whole: cut it to what was heard
                a["turn"].codes = a["turn"].codes[:, :a["heard_frames"]]
                a["turn"].truncated = True
            a["telemetry"].interrupted = True
            a["telemetry"].heard_frames = a["heard_frames"]
        return [Event("interrupted", {"reason": reason, "heard_s": round(heard / SAMPLE_RATE, 3),
                                      "turn": a["telemetry"].turn})]

    # ------------------------------------------------------------------ answering
    def respond(self) -> Iterator[Event]:
        """Answer the waiting turn (see the module docstring); nothing when no turn waits."""
        with self._lock:
            turn, self._pending = self._pending, None
            if turn is None:
                return
            tel = turn.telemetry
            tel.voice, tel.emotion = self.voice, self.emotion
            a = {"cancel": threading.Event(), "done": False, "play_start": None, "play_wall": None, "samples": 0,
                 "waited_s": 0.0, "turn": None, "interrupted": False, "heard_frames": 0, "telemetry": tel}
            self._answer = a
            src = self.context.source(turn.codes, self.engine.model.config)
            early = turn.early
            if early is not None and (early.stream is None
                                      or early.key != (tel.turn, self.voice, self.emotion, len(self.context))):
                self._drop(early)
                early = None  # never prepared, or prepared for other settings or another context
        codec, cfg = self.engine.codec, self.config
        sampling = self._sampling(tel.turn)
        max_frames = sampling.max_frames
        decoder = codec.streaming_decoder()
        frames: list[torch.Tensor] = []
        pending: list[torch.Tensor] = []
        t_gen = time.perf_counter()
        ended = False
        frame_stream = None
        try:  # however the consumer leaves (done, interrupted, or dropping this generator), the exchange is remembered
            yield Event("answer_started", {"turn": tel.turn, "voice": self.voice, "emotion": self.emotion,
                                           "context_turns": len(self.context)})
            if early is not None:  # the first frame was computed during the silence: generation goes on from it
                tel.prepared = True
                tel.first_frame_ms = 1000 * max(0.0, early.ready_wall - turn.eot_wall)
                frame_stream = early.stream
                stream = itertools.chain([early.first] if early.first is not None else [], frame_stream)
            else:
                frame_stream = self.engine.frames(torch.from_numpy(src).unsqueeze(0), self.voice, self.emotion,
                                                  sampling)
                stream = frame_stream
            for fr in stream:
                if a["cancel"].is_set():
                    break
                if not bool(fr.alive[0]):
                    ended = True
                    break
                if not frames and not tel.prepared:
                    tel.first_frame_ms = 1000 * (time.perf_counter() - turn.eot_wall)
                frames.append(fr.codes[0].cpu())
                pending.append(fr.codes[0])
                if len(pending) < (cfg.later_chunk_frames if a["play_start"] is not None else cfg.chunk_frames):
                    continue
                wav = decoder.push(torch.stack(pending, dim=-1).unsqueeze(0)).view(-1).float().cpu().numpy()
                pending = []
                if wav.size and not a["cancel"].is_set():
                    yield self._audio(a, tel, turn, wav)
                    self._keep_pace(a)
            else:
                ended = len(frames) < max_frames
            if not a["cancel"].is_set():
                tail = [decoder.push(torch.stack(pending, dim=-1).unsqueeze(0))] if pending else []
                tail.append(decoder.flush())
                wav = torch.cat(tail, dim=-1).view(-1).float().cpu().numpy()
                if wav.size:
                    yield self._audio(a, tel, turn, wav)
        finally:
            if frame_stream is not None:
                frame_stream.cancel()  # interrupted or abandoned: the decoder stops making it (no-op when it ended)
            tel.generate_s = time.perf_counter() - t_gen - a["waited_s"]  # the work, not the waits for playback
            self._remember(a, turn, frames)
        tel.frames, tel.ended_at_eos = len(frames), ended
        tel.answer_s = a["samples"] / SAMPLE_RATE
        tel.rtf = tel.generate_s / tel.answer_s if tel.answer_s else float("nan")
        tel.e2e_ms = tel.eot_delay_ms + tel.first_audio_ms
        tel.context_turns = len(self.context)
        self.telemetry.append(tel)
        yield Event("answer_ended", {"turn": tel.turn, "answer_s": round(tel.answer_s, 3), "frames": tel.frames,
                                     "ended_at_eos": ended, "interrupted": tel.interrupted,
                                     "context_turns": tel.context_turns})
        yield Event("latency", tel.to_dict())

    def _keep_pace(self, a: dict) -> None:
        """Wait while the answer's audio is more than ``max_lead_s`` ahead of its playback; an interruption ends
        the wait at once."""
        lead = self.config.max_lead_s
        if lead > 0 and a["play_wall"] is not None:
            ahead = a["samples"] / SAMPLE_RATE - (time.perf_counter() - a["play_wall"])
            if ahead > lead:
                t0 = time.perf_counter()
                a["cancel"].wait(ahead - lead)
                a["waited_s"] += time.perf_counter() - t0

    def _audio(self, a: dict, tel: TurnTelemetry, turn: _Turn, wav: np.ndarray) -> Event:
        with self._lock:
            if a["play_start"] is None:
                a["play_start"] = self.received
                a["play_wall"] = time.perf_counter()
                tel.first_audio_ms = 1000 * (time.perf_counter() - turn.eot_wall)
            a["samples"] += len(wav)
        return Event("audio", {"turn": tel.turn, "samples": int(len(wav))}, wav.astype(np.float32))

    def _remember(self, a: dict, turn: _Turn, frames: list[torch.Tensor]) -> None:
        """Put the exchange in the context: the question, and the answer as far as it was heard."""
        codes = torch.stack(frames, dim=-1).numpy() if frames else np.zeros((turn.codes.shape[0], 0), np.int64)
        with self._lock:
            a["done"] = True
            if turn.codes.shape[-1]:
                self.context.append("user", turn.codes, speaker="user")
            if a["interrupted"]:
                codes = codes[:, :a["heard_frames"]]
            if codes.shape[-1]:
                a["turn"] = self.context.append("agent", codes, speaker=self.voice, emotion=self.emotion,
                                                truncated=a["interrupted"])

    def summary(self) -> dict[str, Any]:
        """Medians of this session's telemetry (milliseconds) and the turn count."""
        done = [t for t in self.telemetry if np.isfinite(t.first_audio_ms)]
        out: dict[str, Any] = {"turns": len(self.telemetry), "context_turns": len(self.context)}
        for key in ("eot_delay_ms", "encode_ms", "first_frame_ms", "first_audio_ms", "e2e_ms", "rtf"):
            vals = [getattr(t, key) for t in done]
            out[key] = round(float(np.median(vals)), 2) if vals else None
        return out
