"""Settings of the live agent (:class:`AgentConfig`) and of its server (:class:`ServerLimits`).

The end-of-turn silence is the setting a listener feels most: the agent cannot answer before it has decided that
the user stopped. Notebook 07 measures the pauses *inside* Telugu utterances (eSpeak's and the bundled Common Voice
clips) with the same VAD and picks the default above nearly all of them; see ``DEFAULT_END_OF_TURN_MS``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SAMPLE_RATE = 16000
VAD_WINDOW = 512  # samples: Silero VAD's window at 16 kHz (32 ms)

# Measured with this VAD (notebook 07, "How long a silence ends a turn?"; `speech_pauses`): the pauses inside 60
# held-out eSpeak questions of the laptop run are all <= 0.256 s; inside the 45 bundled Common Voice clips, 12 of
# the 15 pauses are <= 0.32 s, and 3 clips hold one reading hesitation of 0.54, 0.83 and 1.02 s. 352 ms (11 VAD
# windows) waits out every synthetic pause and 12 of the 15 real ones while keeping the answer within about
# 450 ms of the end of speech on a 2-core CPU; covering the 1 s hesitation would double that. A turn cut at such a
# hesitation is not lost: the user's next words interrupt the answer (barge-in) and become the next turn, with the
# first part in the context.
DEFAULT_END_OF_TURN_MS = 352


@dataclass
class AgentConfig:
    """How a session listens and answers.

    vad_threshold: Silero speech probability above which a 32 ms window is speech.
    min_speech_ms: speech needed before a turn starts (shorter blips are ignored).
    end_of_turn_ms: silence after speech that ends the user's turn (see ``DEFAULT_END_OF_TURN_MS``).
    barge_in_min_ms: speech during an answer needed to interrupt it; coughs and clicks are shorter.
    pre_roll_ms: audio kept from before the VAD fired, so the turn's first syllable is not cut.
    tail_ms: audio kept after the last speech window (the VAD's decision lags the sound a little).
    max_turn_s: a turn this long is answered even without a pause.
    max_answer_s: the longest answer.
    min_answer_s: the shortest: the end of speech is not sampled before it (0.2 s, the model's own default).
    chunk_frames: answer frames decoded into the first audio chunk sent (1 frame = 20 ms at 50 frames/s): small,
        so the answer starts soon.
    later_chunk_frames: frames per chunk after the first. The client already has audio to play by then, and every
        codec call has a fixed cost: 8 frames cost about 1.5 times what 2 frames cost (measured on the laptop codec,
        one thread), so several sessions at once keep up.
    encode_every_ms: the user's audio goes to the codec encoder in pieces of at least this much (the same fixed
        cost: 80 ms cost 1.5 times what 20 ms cost). The turn's codes are complete whenever they are needed: the
        rest is pushed when the answer is prepared and at the end of turn.
    max_lead_s: how far the answer's audio may run ahead of its playback (wall time since the first chunk went
        out); generation waits beyond it (0: no limit). A client buffers what runs ahead, so a small lead loses
        nothing, wastes less work on an answer that is interrupted, and spreads the work of several sessions
        evenly instead of in bursts that make the others' listening late.
    prepare_after_ms: silence after speech at which the answer's first frame is computed ahead, while the
        end-of-turn silence runs out: kept when the turn then ends with no more speech, dropped when the user goes
        on (0, or not below ``end_of_turn_ms``: nothing is prepared). It must leave room for ``tail_ms`` and the
        codec encoder's 40 ms, which the turn's codes need first.
    temperature, top_k, seed: sampling (``seed=None``: a fresh draw each turn).
    voice, emotion: the defaults; each session may change them between turns.
    """

    vad_threshold: float = 0.5
    min_speech_ms: int = 96
    end_of_turn_ms: int = DEFAULT_END_OF_TURN_MS
    barge_in_min_ms: int = 192
    pre_roll_ms: int = 160
    tail_ms: int = 96
    max_turn_s: float = 20.0
    max_answer_s: float = 8.0
    min_answer_s: float = 0.2
    chunk_frames: int = 2
    later_chunk_frames: int = 8
    encode_every_ms: int = 80
    max_lead_s: float = 1.0
    prepare_after_ms: int = 192
    temperature: float = 0.8
    top_k: int = 50
    seed: int | None = 0
    voice: str = "Priya"
    emotion: str = "neutral"

    def __post_init__(self) -> None:
        if not 0.0 < self.vad_threshold < 1.0:
            raise ValueError(f"vad_threshold must be in (0, 1), got {self.vad_threshold}")
        for name in ("min_speech_ms", "end_of_turn_ms", "barge_in_min_ms", "chunk_frames", "later_chunk_frames",
                     "encode_every_ms"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("pre_roll_ms", "tail_ms", "prepare_after_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_lead_s < 0:
            raise ValueError(f"max_lead_s must be >= 0, got {self.max_lead_s}")
        if self.max_turn_s <= 0 or self.max_answer_s <= 0:
            raise ValueError("max_turn_s and max_answer_s must be positive")
        if not 0 <= self.min_answer_s <= self.max_answer_s:
            raise ValueError(f"min_answer_s must be in [0, max_answer_s], got {self.min_answer_s}")

    @staticmethod
    def windows(ms: float) -> int:
        """How many 32 ms VAD windows cover ``ms`` (at least one)."""
        return max(1, -(-int(round(ms * SAMPLE_RATE / 1000)) // VAD_WINDOW))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ServerLimits:
    """What one server accepts; beyond it a client gets an error event or a clean close, never a crash.

    max_frame_bytes: largest WebSocket message (binary audio or JSON); bigger closes with code 1009.
    max_sessions: concurrent WebSocket sessions; one more is refused with code 1013 (try again later).
    idle_timeout_s: a session that sends nothing this long is closed (1000, with an ``error`` event first).
    max_messages_per_s: a client sending more messages than this per second, on average, is closed with code 1008.
    message_burst_s: how many seconds' worth of messages (at ``max_messages_per_s``) may come at once without
        counting as a flood: a client catching up after a stall (a busy machine, a browser tab in the background)
        sends its backlog in one burst, which is not an attack (a token bucket of this size).
    max_audio_rate: audio samples per second of wall time a client may send (x real time) before it counts as a
        flood; a session cannot be fed much faster than it can listen.
    """

    max_frame_bytes: int = 64 * 1024
    max_sessions: int = 8
    idle_timeout_s: float = 120.0
    max_messages_per_s: int = 200
    message_burst_s: float = 2.0
    max_audio_rate: float = 4.0

    def __post_init__(self) -> None:
        if self.max_frame_bytes < 64 or self.max_sessions < 1 or self.idle_timeout_s <= 0 \
                or self.max_messages_per_s < 1 or self.max_audio_rate <= 0 \
                or self.max_messages_per_s * self.message_burst_s < 1:
            raise ValueError(f"invalid server limits: {self}")
