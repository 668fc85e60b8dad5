"""Voice activity: Silero VAD run on a stream, and the turn detector built on it.

:class:`VoiceActivity` wraps one Silero VAD model (the ``silero-vad`` package ships it; nothing is downloaded). It
takes audio in chunks of any size, scores every complete 32 ms window (512 samples at 16 kHz) and keeps its
recurrent state between calls, so each session needs its own (loading one takes about 30 ms).

:class:`TurnDetector` turns the per-window speech decisions into events on the stream's sample clock:
``speech_started`` once ``min_speech_ms`` of speech has run, ``speech_ended`` (end of turn) after
``end_of_turn_ms`` of silence. It is pure bookkeeping (no model), so tests drive it with hand-made decisions.

:func:`speech_pauses` measures the silences inside utterances, the numbers the default end-of-turn silence is
chosen from (notebook 07).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from s2slib.agent.config import SAMPLE_RATE, VAD_WINDOW, AgentConfig


class VoiceActivity:
    """Streaming Silero VAD: ``push(float32[n]) -> float32[k]``, the speech probability of each window completed."""

    def __init__(self) -> None:
        from silero_vad import load_silero_vad

        self.model = load_silero_vad(onnx=False)
        self._pending = np.zeros(0, dtype=np.float32)

    def reset(self) -> None:
        self.model.reset_states()
        self._pending = np.zeros(0, dtype=np.float32)

    @torch.inference_mode()
    def push(self, wav: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self._pending, np.asarray(wav, dtype=np.float32).reshape(-1)])
        n = len(buf) // VAD_WINDOW
        probs = np.empty(n, dtype=np.float32)
        for i in range(n):
            window = torch.from_numpy(buf[i * VAD_WINDOW:(i + 1) * VAD_WINDOW])
            probs[i] = float(self.model(window, SAMPLE_RATE))
        self._pending = buf[n * VAD_WINDOW:].copy()
        return probs


@dataclass
class TurnEvent:
    """``kind``: ``speech_started`` or ``speech_ended``; ``sample``: where on the stream's clock it was decided;
    ``speech_start``/``speech_end``: the sample span of the speech the VAD heard (end: after the last speech window).
    """

    kind: str
    sample: int
    speech_start: int
    speech_end: int


class TurnDetector:
    """Per-window speech decisions -> turn events (see the module docstring).

    Also answers "has the user been speaking for ``ms``?" (:meth:`speaking_for`), which barge-in uses.
    """

    def __init__(self, config: AgentConfig):
        self.config = config
        self.start_windows = config.windows(config.min_speech_ms)
        self.end_windows = config.windows(config.end_of_turn_ms)
        self.max_windows = config.windows(config.max_turn_s * 1000)
        self.reset()

    def reset(self, clock: int = 0) -> None:
        self.clock = clock  # samples of the stream whose windows were scored
        self.in_turn = False
        self.run = 0  # consecutive speech windows (before a turn starts) or silent windows (inside one)
        self.speech_start = 0
        self.speech_end = 0
        self._candidate = 0  # where the current speech run began
        self.current_run = 0  # consecutive speech windows right now, in or out of a turn

    def speaking_for(self) -> float:
        """Milliseconds of uninterrupted speech up to now."""
        return self.current_run * VAD_WINDOW * 1000 / SAMPLE_RATE

    def step(self, is_speech: bool) -> TurnEvent | None:
        """Account for one more window; return the event it completes, if any."""
        start = self.clock
        self.clock += VAD_WINDOW
        self.current_run = self.current_run + 1 if is_speech else 0
        if not self.in_turn:
            if is_speech:
                if self.run == 0:
                    self._candidate = start
                self.run += 1
                if self.run >= self.start_windows:
                    self.in_turn, self.run = True, 0
                    self.speech_start, self.speech_end = self._candidate, self.clock
                    return TurnEvent("speech_started", self.clock, self.speech_start, self.speech_end)
            else:
                self.run = 0
            return None
        if is_speech:
            self.run = 0
            self.speech_end = self.clock
        else:
            self.run += 1
        too_long = (self.clock - self.speech_start) >= self.max_windows * VAD_WINDOW
        if self.run >= self.end_windows or too_long:
            self.in_turn, self.run = False, 0
            return TurnEvent("speech_ended", self.clock, self.speech_start, self.speech_end)
        return None


def speech_pauses(wav: np.ndarray, threshold: float = 0.5, vad: VoiceActivity | None = None) -> np.ndarray:
    """Lengths in seconds of the silences between the first and the last speech window of ``wav`` (16 kHz)."""
    vad = vad or VoiceActivity()
    vad.reset()
    speech = vad.push(np.concatenate([wav, np.zeros(VAD_WINDOW, np.float32)])) > threshold
    idx = np.flatnonzero(speech)
    if len(idx) < 2:
        return np.zeros(0)
    inner = speech[idx[0]:idx[-1] + 1]
    pauses, run = [], 0
    for s in inner:
        if s:
            if run:
                pauses.append(run)
            run = 0
        else:
            run += 1
    return np.asarray(pauses, dtype=float) * VAD_WINDOW / SAMPLE_RATE
