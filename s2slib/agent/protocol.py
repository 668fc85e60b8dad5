"""The agent's WebSocket messages (``/ws``).

Client to server
    * binary: PCM16 little-endian mono samples at 16 kHz, any whole number of samples (20 ms = 640 bytes);
    * text: one JSON object, ``{"type": "voice", "value": "Priya"}``, ``{"type": "emotion", "value": "happy"}``,
      ``{"type": "reset"}``, ``{"type": "interrupt"}`` or ``{"type": "ping"}``.

Server to client
    * binary: answer audio, PCM16 mono at 16 kHz, in the order to play it;
    * text: JSON events ``{"type": ..., ...}``: ``ready`` (on connect: voices, emotions, sample rate, limits),
      ``speech_started``, ``speech_ended``, ``answer_started``, ``answer_ended``, ``latency`` (the turn's
      telemetry), ``interrupted`` (drop the audio not yet played), ``settings``, ``reset``, ``pong`` and ``error``
      (``code`` and ``message``; the session goes on unless the server closes it).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from s2slib.agent.session import Event

CONTROLS = ("voice", "emotion", "reset", "interrupt", "ping")


class ProtocolError(ValueError):
    """A message the server cannot take; ``code`` names the kind for the ``error`` event."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def parse_audio(data: bytes) -> np.ndarray:
    """``int16[n]`` from a binary frame, or :class:`ProtocolError`."""
    if len(data) % 2:
        raise ProtocolError("odd_byte_count", f"audio frames are PCM16 (2 bytes per sample); got {len(data)} bytes, "
                                              "an odd count: frame dropped")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def parse_control(text: str) -> tuple[str, str | None]:
    """``(type, value)`` from a text frame, or :class:`ProtocolError`."""
    try:
        msg = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError("malformed_json", f"control messages are JSON objects; could not parse: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("malformed_message", 'a control message is a JSON object with a string "type"')
    kind = msg["type"]
    if kind not in CONTROLS:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}; known: {', '.join(CONTROLS)}")
    value = msg.get("value")
    if kind in ("voice", "emotion"):
        if not isinstance(value, str) or not value:
            raise ProtocolError("missing_value", f'"{kind}" needs a string "value"')
        return kind, value
    return kind, None


def event_json(kind: str, **data: Any) -> str:
    return json.dumps({"type": kind, **data}, ensure_ascii=False)


def encode_event(ev: Event) -> bytes | str:
    """What goes on the wire for one session event: PCM16 bytes for audio, JSON text for the rest."""
    if ev.type == "audio":
        pcm = np.clip(np.round(ev.audio * 32767.0), -32768, 32767).astype("<i2")
        return pcm.tobytes()
    return event_json(ev.type, **ev.data)


def decode_audio(data: bytes) -> np.ndarray:
    """``float32`` samples of a server audio frame (for clients)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
