"""The conversation context: what the agent remembers of a conversation, and how it becomes the encoder's input.

One object serves fine-tuning (notebook 06 builds its training examples with :func:`source_codes`), evaluation and
the live agent (notebook 07 keeps one :class:`ConversationContext` per session)::

    ctx = ConversationContext(max_turns=10)
    ctx.append("user", question_codes, speaker="user")
    ctx.append("agent", answer_codes, speaker="Priya", emotion="happy")
    src = ctx.source(next_question_codes, config)      # int64[n_q, S]: the encoder's input for the next answer
    text = ctx.to_json(); same = ConversationContext.from_json(text)

The encoder reads the earlier turns (at most ``max_turns``, user and agent alike) and then the user's new turn, in
order, with one **separator frame** between turns: a frame whose every codebook holds the EOS id, the token that
ends speech in the decoder's streams, so "a turn ended here" has one symbol throughout the model. When the whole
does not fit ``config.max_source_frames``, the oldest turns go first; if the new turn alone is too long, its last
frames are kept.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from s2slib.s2s.config import S2SConfig

ROLES = ("user", "agent")
DEFAULT_MAX_TURNS = 10  # the seed plan's conversation memory


@dataclass
class ContextTurn:
    """One remembered turn: its codes ``int[n_q, F]`` and who said it how. ``truncated``: an agent answer that was
    interrupted (barge-in) and is remembered as far as it was played."""

    role: str
    codes: np.ndarray
    speaker: str | None = None
    emotion: str | None = None
    text: str | None = None
    truncated: bool = False

    @property
    def n_frames(self) -> int:
        return int(self.codes.shape[-1])

    def to_dict(self) -> dict[str, Any]:
        codes = np.ascontiguousarray(self.codes, dtype=np.int16)
        return {"role": self.role, "speaker": self.speaker, "emotion": self.emotion, "text": self.text,
                "truncated": self.truncated, "shape": list(codes.shape),
                "codes": base64.b64encode(codes.tobytes()).decode("ascii")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ContextTurn":
        try:
            shape = tuple(int(n) for n in data["shape"])
            raw = base64.b64decode(data["codes"], validate=True)
            codes = np.frombuffer(raw, dtype=np.int16).reshape(shape).copy()
            return cls(_check_role(data["role"]), codes, data.get("speaker"), data.get("emotion"), data.get("text"),
                       bool(data.get("truncated", False)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a serialised context turn ({type(exc).__name__}: {exc}); expected the keys "
                             "role, shape, codes (base64 int16) and optionally speaker, emotion, text, "
                             "truncated") from exc


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"a turn's role must be one of {ROLES}, got {role!r}")
    return role


def _check_codes(codes: Any, n_q: int | None = None) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"turn codes must be an integer array of shape (n_q, frames), got {codes.dtype} "
                         f"{codes.shape}")
    if n_q is not None and codes.shape[0] < n_q:
        raise ValueError(f"turn codes have {codes.shape[0]} codebooks; the model reads {n_q}")
    return codes


def _with_levels(codes: np.ndarray, n_q: int, pad_id: int) -> np.ndarray:
    """``codes`` cut or padded to ``n_q`` levels: an agent answer of a model that speaks fewer codebooks than it hears
    (``S2SConfig.speak_q``) gets PAD on the finer levels, which the encoder's latent input leaves out."""
    if codes.shape[0] >= n_q:
        return codes[:n_q]
    return np.concatenate([codes, np.full((n_q - codes.shape[0], codes.shape[1]), pad_id, dtype=codes.dtype)])


def question_frames(frames: int, config: S2SConfig) -> int:
    """How many of a ``frames``-long user turn :func:`source_codes` keeps: all, or its last
    ``config.max_source_frames`` (0: no limit) when it is longer."""
    limit = config.max_source_frames
    return min(frames, limit) if limit else frames


def source_codes(history: list[np.ndarray], user: np.ndarray, config: S2SConfig,
                 roles: list[str] | None = None) -> np.ndarray:
    """The encoder input for one answer: earlier turns' codes ``history`` (oldest first; an earlier answer may have
    fewer levels, see :func:`_with_levels`) and the user's new turn ``user`` (each ``int[n_q, F]``), joined with
    separator frames, fitted to ``config.max_source_frames`` (module
    docstring) -> ``int64[n_q, S]``. ``roles`` (one per earlier turn): the agent's turns keep only the codebooks the
    model speaks (``config.spoken_q``), so an answer from the data reads as one the model said itself."""
    n_q, limit = config.n_q, config.max_source_frames
    if roles is None:
        roles = [None] * len(history)
    elif len(roles) != len(history):
        raise ValueError(f"{len(roles)} roles for {len(history)} earlier turns")
    user = _check_codes(user, n_q)[:n_q]
    user = user[:, user.shape[1] - question_frames(user.shape[1], config):]
    segments, total = [user], user.shape[1]
    for codes, role in zip(reversed(history), reversed(roles)):  # newest first, until the next one would not fit
        codes = _check_codes(codes)
        codes = _with_levels(codes[: config.spoken_q] if role == "agent" else codes, n_q, config.pad_id)
        if limit and total + codes.shape[1] + 1 > limit:
            break
        segments.insert(0, codes)
        total += codes.shape[1] + 1
    sep = np.full((n_q, 1), config.eos_id, dtype=np.int64)
    parts: list[np.ndarray] = []
    for k, codes in enumerate(segments):
        if k:
            parts.append(sep)
        parts.append(codes.astype(np.int64))
    return np.concatenate(parts, axis=1)


class ConversationContext:
    """The last ``max_turns`` turns of a conversation (see the module docstring)."""

    def __init__(self, max_turns: int = DEFAULT_MAX_TURNS):
        if not isinstance(max_turns, int) or max_turns < 0:
            raise ValueError(f"max_turns must be an integer >= 0, got {max_turns!r}")
        self.max_turns = max_turns
        self._turns: list[ContextTurn] = []

    @property
    def turns(self) -> tuple[ContextTurn, ...]:
        return tuple(self._turns)

    def __len__(self) -> int:
        return len(self._turns)

    def append(self, role: str, codes: np.ndarray, speaker: str | None = None, emotion: str | None = None,
               text: str | None = None, truncated: bool = False) -> ContextTurn:
        """Remember one more turn (``codes`` ``int[n_q, F]``); the oldest is forgotten beyond ``max_turns``."""
        turn = ContextTurn(_check_role(role), _check_codes(codes).astype(np.int16), speaker, emotion, text, truncated)
        self._turns.append(turn)
        del self._turns[: max(0, len(self._turns) - self.max_turns)]
        return turn

    def reset(self) -> None:
        """Forget everything (a new conversation)."""
        self._turns.clear()

    def source(self, user: np.ndarray, config: S2SConfig) -> np.ndarray:
        """The encoder input for answering ``user`` (``int[n_q, F]``) after the remembered turns: :func:`source_codes`."""
        turns = self._turns
        return source_codes([t.codes for t in turns], user, config, [t.role for t in turns])

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return {"max_turns": self.max_turns, "turns": [t.to_dict() for t in self._turns]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConversationContext":
        if not isinstance(data, dict) or not isinstance(data.get("turns"), list):
            raise ValueError("not a serialised conversation context: expected {'max_turns': int, 'turns': [...]}")
        ctx = cls(int(data.get("max_turns", DEFAULT_MAX_TURNS)))
        for turn in data["turns"]:
            t = ContextTurn.from_dict(turn)
            ctx.append(t.role, t.codes, t.speaker, t.emotion, t.text, t.truncated)
        return ctx

    @classmethod
    def from_json(cls, text: str) -> "ConversationContext":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a serialised conversation context: invalid JSON ({exc})") from exc
        return cls.from_dict(data)
