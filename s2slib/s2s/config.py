"""The speech-to-speech transformer's configuration: sizes, the token layout and the conditioning labels.

One dataclass with named presets (``smoke``, ``laptop``, ``gpu``), stored in every checkpoint so a checkpoint always
rebuilds its own model. The token layout follows the codec the tokens come from (``n_q`` codebooks of
``codebook_size`` codes at ``frame_rate`` frames/s); :meth:`S2SConfig.for_codec` fills it in from a token cache's
``codec.json``.

Token ids of one codebook stream (:mod:`s2slib.s2s.delay` builds the streams)::

    0 .. codebook_size-1   codec codes
    codebook_size          EOS  end of speech (also a class the decoder predicts)
    codebook_size + 1      PAD  no token here (before a delayed codebook starts, after it ends)
    codebook_size + 2      BOS  the decoder's first input
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from s2slib.codec.config import dataclass_from_dict
from s2slib.data.synth import AGENT_VOICES, EMOTIONS

SPEAKERS: tuple[str, ...] = tuple(AGENT_VOICES)  # the agent's four voices: Arjun, Ravi, Priya, Lakshmi
NO_LABEL = 0  # conditioning index for "any other voice" / "no emotion given"


@dataclass(frozen=True)
class S2SConfig:
    """Architecture of :class:`s2slib.s2s.model.S2SModel` (a Conformer encoder, a causal decoder)."""

    n_q: int = 8  # codebooks per frame (the codec's residual VQ levels used)
    codebook_size: int = 1024  # codes per codebook
    frame_rate: float = 50.0  # codec frames per second (for timing and lengths in seconds)
    d_model: int = 256  # width of both stacks
    n_heads: int = 4  # attention heads (d_model / n_heads = head size; RoPE needs it even)
    encoder_layers: int = 4  # Conformer blocks
    decoder_layers: int = 4  # causal decoder blocks
    ff_mult: int = 4  # feed-forward width = ff_mult * d_model
    conv_kernel: int = 15  # depthwise convolution of the Conformer's conv module (frames; 15 = 300 ms at 50 Hz)
    dropout: float = 0.1
    rope_base: float = 10000.0  # RoPE's theta (Su et al. 2021)
    max_frames: int = 1500  # longest decoder output in frames (30 s at 50 Hz); also the KV cache's size
    max_source_frames: int = 1500  # longest encoder input (30 s); older turns are cut first (0: no limit)
    speakers: tuple[str, ...] = SPEAKERS  # speaker embedding rows 1..len; row 0 is "any other voice"
    emotions: tuple[str, ...] = EMOTIONS  # emotion embedding rows 1..len; row 0 is "not given"
    latent_dim: int = 0  # width of the codec's latent: > 0 makes the encoder hear code frames as the codec's latent
    # vectors normalised per turn (s2slib.s2s.frontend); 0: learned code embeddings (the seed design)
    speak_q: int = 0  # codebooks the decoder speaks, coarse to fine (0: all n_q). The finer ones are PAD in its input,
    # never a target and never drawn; the codec decodes the spoken ones alone (its bit-rate ladder). The encoder still
    # hears every codebook. Fewer spoken codebooks: far fewer codes to learn per second, and a draw from a sharper
    # distribution (notebook 06)
    text_vocab: int = 0  # characters of the encoder's transcription head (s2slib.s2s.transcript); 0: no head.
    # Used only as an auxiliary training loss (fine-tuning); generation never reads it

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model ({self.d_model}) must split into n_heads ({self.n_heads}) heads of an even "
                             "size (rotary embeddings rotate pairs of channels)")
        if self.n_q < 1 or self.codebook_size < 2:
            raise ValueError(f"need n_q >= 1 and codebook_size >= 2, got {self.n_q} and {self.codebook_size}")
        if not 0 <= self.speak_q <= self.n_q:
            raise ValueError(f"speak_q must lie in [0, n_q] = [0, {self.n_q}] (0: every codebook), got {self.speak_q}")

    # ------------------------------------------------------------------ token ids
    @property
    def eos_id(self) -> int:
        return self.codebook_size

    @property
    def pad_id(self) -> int:
        return self.codebook_size + 1

    @property
    def bos_id(self) -> int:
        return self.codebook_size + 2

    @property
    def input_vocab(self) -> int:
        """Ids a stream can hold: codes, EOS, PAD, BOS."""
        return self.codebook_size + 3

    @property
    def output_vocab(self) -> int:
        """Classes the decoder predicts per codebook: codes and EOS."""
        return self.codebook_size + 1

    @property
    def spoken_q(self) -> int:
        """Codebooks the decoder writes: ``speak_q``, or all ``n_q`` when it is 0."""
        return self.speak_q or self.n_q

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def speaker_index(self, speaker: str | None) -> int:
        """Row of ``speaker`` in the speaker embedding: 1.. for the agent voices, 0 for anyone else."""
        return self.speakers.index(speaker) + 1 if speaker in self.speakers else NO_LABEL

    def emotion_index(self, emotion: str | None) -> int:
        """Row of ``emotion`` in the emotion embedding: 1.. for the known labels, 0 for none. An unknown label is an
        error (a typo would otherwise silently mean "no emotion")."""
        if emotion is None or emotion == "":
            return NO_LABEL
        if emotion not in self.emotions:
            raise ValueError(f"unknown emotion {emotion!r}; the model knows {', '.join(self.emotions)}")
        return self.emotions.index(emotion) + 1

    # ------------------------------------------------------------------ presets
    @classmethod
    def smoke(cls, **kw: Any) -> "S2SConfig":
        """A tiny model for tests and the smoke profile (seconds to train)."""
        return cls(**{**dict(d_model=32, n_heads=2, encoder_layers=1, decoder_layers=1, ff_mult=2, conv_kernel=5,
                             dropout=0.0, max_frames=400), **kw})

    @classmethod
    def laptop(cls, **kw: Any) -> "S2SConfig":
        """A few million parameters: pretrains on a 2-core CPU in about 18 minutes. No dropout: 18 minutes
        of CPU sees the data about twice, too little to overfit, and dropout's masks cost a fifth of the step."""
        return cls(**{**dict(d_model=192, n_heads=4, encoder_layers=3, decoder_layers=4, ff_mult=3, conv_kernel=15,
                             dropout=0.0, max_frames=750), **kw})

    @classmethod
    def gpu(cls, **kw: Any) -> "S2SConfig":
        """The seed design's sizes: 12 encoder and 12 decoder layers at width 768 (12 heads)."""
        return cls(**{**dict(d_model=768, n_heads=12, encoder_layers=12, decoder_layers=12, ff_mult=4,
                             conv_kernel=31, dropout=0.1, max_frames=1500), **kw})

    @classmethod
    def preset(cls, name: str, **kw: Any) -> "S2SConfig":
        presets = {"smoke": cls.smoke, "laptop": cls.laptop, "gpu": cls.gpu}
        if name not in presets:
            raise ValueError(f"unknown S2S preset {name!r}; choose one of {', '.join(presets)}")
        return presets[name](**kw)

    @classmethod
    def for_codec(cls, preset: str, codec_info: dict[str, Any], **kw: Any) -> "S2SConfig":
        """A preset sized for the tokens of one codec: ``codec_info`` holds ``n_q``, ``codebook_size`` and
        ``frame_rate`` (a token cache's ``codec.json``), and ``latent_dim`` when the cache keeps the codec's latent
        table (then the encoder hears the codec's latent: :mod:`s2slib.s2s.frontend`)."""
        return cls.preset(preset, **{**dict(n_q=int(codec_info["n_q"]), codebook_size=int(codec_info["codebook_size"]),
                                            frame_rate=float(codec_info["frame_rate"]),
                                            latent_dim=int(codec_info.get("latent_dim", 0))), **kw})

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["speakers"], out["emotions"] = list(self.speakers), list(self.emotions)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "S2SConfig":
        return dataclass_from_dict(cls, data)
