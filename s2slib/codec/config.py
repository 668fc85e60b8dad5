"""Configuration of the streaming codec: one dataclass, named presets, and a checked dict round trip.

A checkpoint stores ``CodecConfig.to_dict()`` beside the weights, so ``CodecConfig.from_dict(ckpt["config"])``
always rebuilds the model the weights belong to.

The presets
-----------
``seed()``       the course's design: 16 kHz, strides (2, 2, 2, 2, 5) -> hop 80 -> 200 frames/s, 8 x 1024 codes
                 -> 16 kbps; channels 32 doubling to 512, latent 1024. For GPU training.
``seed_50hz()``  the same network with strides (2, 4, 5, 8) -> hop 320 -> 50 frames/s -> 4 kbps at 8 levels:
                 the frame rate a speech language model wants.
``laptop()``     small enough to train on two CPU cores: fewer, wider-strided stages (4, 4, 5) -> the same hop 80,
                 channels 24 -> 96, latent 128, a faster EMA. See its docstring for the measurements behind it.
``tiny()``       a few thousand parameters, for unit tests and smoke runs.

Codec v2 (``architecture="stft"``), the default of the S2S stages:

``fast50()``      50 frames/s, 8 x 1024 codes = 4 kbps, a 384-wide backbone of causal ConvNeXt blocks between a causal
                  STFT front end and an inverse-STFT head; 40 ms of algorithmic latency; trains on a laptop CPU.
``fast50_gpu()``  the same at GPU scale; ``fast50_tiny()`` for tests and smoke runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

ACTIVATIONS = ("snake", "elu")
CODEBOOK_METRICS = ("euclidean", "cosine")
ARCHITECTURES = ("conv", "stft")
UPSAMPLERS = ("nearest", "transposed")
PROJECTIONS = ("orthogonal", "free")
# the iSTFT head's phase (s2slib.codec.stft_io.ISTFTHead)
PHASE_MODES = ("absolute", "integrated", "centred", "pitch", "peaks", "peaks_offset")
SYNTHESIS_WINDOWS = ("hann", "wola")  # the iSTFT head's synthesis window (s2slib.codec.stft_io.ISTFTHead)
MAX_PHASE_ROTATION = math.pi + 1e-4  # the iSTFT head's largest per-frame rotation: pi radians (3.1416 allowed)


def dataclass_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build dataclass ``cls`` from ``data``, refusing keys it does not know.

    Lists are turned back into tuples where the field's default is a tuple (JSON and YAML have no tuples), so
    ``cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg``.

    Raises
    ------
    TypeError: ``data`` is not a mapping.
    ValueError: ``data`` has keys that are not fields of ``cls``; the message lists them and the valid ones.
    """
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(
            f"{cls.__name__}: unknown key(s) {unknown}. Valid keys are {sorted(fields)}. "
            "Was this dict written by a different version of the course library?"
        )
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        )
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


@dataclass
class CodecConfig:
    """Every knob of the codec (encoder, residual VQ, decoder).

    Architecture (follows DAC, Kumar et al. 2023, "High-Fidelity Audio Compression with Improved RVQGAN", made
    causal as in EnCodec's streaming variant, Défossez et al. 2022): an input conv, one encoder stage per stride
    (residual units with dilations ``dilations`` then a strided conv of kernel ``2 * stride``), a conv to
    ``latent_dim``; the decoder mirrors it with transposed convs. Channels of stage ``i`` are
    ``min(base_dim * 2**i, max_dim)``.
    """

    # --- signal ---
    sample_rate: int = 16000  # Hz
    channels: int = 1  # audio channels (mono)
    # --- encoder / decoder ---
    encoder_dim: int = 32  # channels after the encoder's input conv; doubles at every stage
    encoder_max_dim: int = 512  # cap on the encoder's channels
    decoder_dim: int = 32  # channels of the decoder's last stage (mirror of encoder_dim)
    decoder_max_dim: int = 512  # cap on the decoder's channels (its first stages)
    latent_dim: int = 1024  # channels of the latent the quantizer sees
    strides: tuple[int, ...] = (2, 2, 2, 2, 5)  # encoder downsampling per stage; the decoder uses them reversed
    dilations: tuple[int, ...] = (1, 3, 9)  # one residual unit per dilation, in every stage
    kernel_size: int = 7  # input conv of the encoder, input and output convs of the decoder
    residual_kernel_size: int = 7  # dilated conv inside each residual unit
    latent_kernel_size: int = 3  # the encoder's last conv (to latent_dim)
    activation: str = "snake"  # "snake" (periodic, Ziyin et al. 2020) or "elu" (SEANet/EnCodec)
    weight_norm: bool = True  # weight normalisation on every conv (Salimans & Kingma 2016)
    tanh_output: bool = True  # squash the decoded waveform into (-1, 1)
    architecture: str = "conv"  # "conv": the seed design (strided convs); "stft": STFT front end, frame-rate ConvNeXt, iSTFT head
    upsampler: str = "nearest"  # conv decoder: "nearest" (repeat, then conv) or "transposed" (the comb-prone original)
    # --- the "stft" family (Vocos-style; strides must then be one number, the hop) ---
    frame_dim: int = 384  # channels of the frame-rate ConvNeXt backbone
    encoder_blocks: int = 4  # causal ConvNeXt blocks in the encoder
    decoder_blocks: int = 8  # causal ConvNeXt blocks in the decoder
    block_kernel_size: int = 7  # depthwise causal kernel of each block, in frames
    block_expansion: int = 3  # hidden width of each block's MLP, times frame_dim
    n_fft: int = 0  # STFT window of the front end and the iSTFT head; 0: 2 * hop (one hop of overlap)
    phase: str = "absolute"  # iSTFT head: "absolute" phase per frame (Vocos), "centred" (offsets from each bin's
    # centre-frequency phase), "integrated" frequency deviations or "pitch" (each bin turns at its nearest harmonic of
    # a predicted F0; s2slib.codec.stft_io.ISTFTHead), "peaks" (magnitudes only, the phase carried from frame to
    # frame at the frequency of each spectral peak; s2slib.codec.peak_phase) or "peaks_offset" (that phase plus a
    # predicted offset per bin)
    phase_rotation: float = 0.0  # iSTFT head: radians (0 to pi) each frame's phase is turned by, times a fixed
    # pseudo-random pattern, the same in every bin; it breaks the frame-rate comb of a phase that stands still (0: off)
    synthesis: str = "hann"  # iSTFT head's synthesis window: "hann" (the analysis window again, so a clip's own
    # spectrum comes back windowed twice) or "wola" (Hann over the squared windows' overlap sum: a clip's own spectrum
    # comes back exactly)
    # --- residual vector quantizer ---
    n_q: int = 8  # quantizer levels
    codebook_size: int = 1024  # entries per level -> log2(1024) = 10 bits per level per frame
    codebook_dim: int | None = 8  # low-dim lookup space (DAC's factorized codes); None: look up in latent_dim
    codebook_metric: str = "euclidean"  # nearest entry by "euclidean" distance or "cosine" (DAC's normalised lookup)
    quantizer_projection: str = "orthogonal"  # "orthogonal": out_proj = in_proj^T with orthonormal rows; "free": two convs
    commitment_weight: float = 0.25  # beta of the commitment loss (van den Oord et al. 2017)
    ema_decay: float = 0.99  # EMA decay of codebook statistics (VQ-VAE appendix A.1)
    ema_epsilon: float = 1e-5  # Laplace smoothing of the EMA cluster sizes
    kmeans_iters: int = 10  # Lloyd iterations initialising each codebook on the first batch; 0: no k-means
    dead_code_threshold: float = 0.1  # a code whose EMA usage < this fraction of the uniform share is reset
    quantizer_dropout: float = 0.5  # probability that a training example uses a random 1..n_q levels

    # ------------------------------------------------------------------ derived quantities
    @property
    def hop_length(self) -> int:
        """Samples per code frame: the product of the strides."""
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        """Code frames per second: ``sample_rate / hop_length``."""
        return self.sample_rate / self.hop_length

    def bitrate_kbps(self, n_q: int | None = None) -> float:
        """Bit rate at ``n_q`` levels (default: all): ``n_q * log2(codebook_size) * frame_rate / 1000``."""
        from s2slib.metrics import bitrate_kbps

        return bitrate_kbps(self.n_q if n_q is None else n_q, self.codebook_size, self.frame_rate)

    @property
    def window_length(self) -> int:
        """The ``stft`` family's analysis and synthesis window: ``n_fft``, or two hops when it is 0."""
        return self.n_fft or 2 * self.hop_length

    def latency_samples(self) -> int:
        """Algorithmic latency in samples: how long after a sample arrives its reconstruction can exist.

        ``conv``: one frame (a code exists once its frame's last sample is in; its samples decode at once).
        ``stft``: one frame plus the overlap-add lookahead, ``window_length - hop``: the synthesis window of frame
        ``t`` overlaps the next ``window_length / hop - 1`` frames, whose windows must be added before the samples are
        final.
        """
        if self.architecture == "stft":
            return self.window_length
        return self.hop_length

    def comb_frequencies(self) -> list[float]:
        """Rates (Hz) at which a decoder stage repeats itself: the frame rate and, for the ``conv`` decoder, the
        input rate of every upsampling stage. Energy at multiples of these rates that the input did not have is the
        comb artefact :func:`s2slib.metrics.comb_ratio` measures."""
        rates, rate = [], self.frame_rate
        for stride in reversed(self.strides):
            rates.append(rate)
            rate *= stride
            if self.architecture == "stft":
                break
        return rates

    def encoder_channels(self) -> list[int]:
        """Channels entering each encoder stage, plus the channels after the last one: ``len(strides) + 1``."""
        return [min(self.encoder_dim * 2**i, self.encoder_max_dim) for i in range(len(self.strides) + 1)]

    def decoder_channels(self) -> list[int]:
        """Channels entering each decoder stage, plus those after the last one (largest first)."""
        return [min(self.decoder_dim * 2**i, self.decoder_max_dim) for i in range(len(self.strides) + 1)][::-1]

    # ------------------------------------------------------------------ checks and serialisation
    def __post_init__(self) -> None:
        self.strides = tuple(self.strides)
        self.dilations = tuple(self.dilations)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field at fault if the configuration cannot build a model."""
        positive = [
            "sample_rate", "channels", "encoder_dim", "encoder_max_dim", "decoder_dim", "decoder_max_dim",
            "latent_dim", "kernel_size", "residual_kernel_size", "latent_kernel_size", "n_q", "codebook_size",
        ]
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"CodecConfig.{name} must be a positive integer, got {value!r}.")
        if not self.strides or any(not isinstance(s, int) or s <= 0 for s in self.strides):
            raise ValueError(f"CodecConfig.strides must be positive integers, got {self.strides!r}.")
        if any(not isinstance(d, int) or d <= 0 for d in self.dilations):
            raise ValueError(f"CodecConfig.dilations must be positive integers, got {self.dilations!r}.")
        if self.codebook_dim is not None and (not isinstance(self.codebook_dim, int) or self.codebook_dim <= 0):
            raise ValueError(f"CodecConfig.codebook_dim must be a positive integer or None, got {self.codebook_dim!r}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"CodecConfig.activation must be one of {ACTIVATIONS}, got {self.activation!r}.")
        if self.codebook_metric not in CODEBOOK_METRICS:
            raise ValueError(
                f"CodecConfig.codebook_metric must be one of {CODEBOOK_METRICS}, got {self.codebook_metric!r}."
            )
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"CodecConfig.ema_decay must lie in (0, 1), got {self.ema_decay}.")
        if not 0.0 <= self.quantizer_dropout <= 1.0:
            raise ValueError(f"CodecConfig.quantizer_dropout is a probability in [0, 1], got {self.quantizer_dropout}.")
        if self.kmeans_iters < 0 or self.dead_code_threshold < 0 or self.commitment_weight < 0:
            raise ValueError("CodecConfig.kmeans_iters, dead_code_threshold and commitment_weight must be >= 0.")
        if self.ema_epsilon <= 0:
            raise ValueError(f"CodecConfig.ema_epsilon must be > 0, got {self.ema_epsilon}.")
        if not 0.0 <= self.phase_rotation <= MAX_PHASE_ROTATION:
            raise ValueError(f"CodecConfig.phase_rotation must be between 0 and pi radians, got {self.phase_rotation}.")
        for name, allowed in (("architecture", ARCHITECTURES), ("upsampler", UPSAMPLERS),
                              ("quantizer_projection", PROJECTIONS), ("phase", PHASE_MODES),
                              ("synthesis", SYNTHESIS_WINDOWS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"CodecConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}.")
        if self.architecture == "stft":
            if len(self.strides) != 1:
                raise ValueError(
                    f"CodecConfig: the 'stft' architecture works at one frame rate; give strides=(hop,), got "
                    f"{self.strides!r}."
                )
            for name in ("frame_dim", "encoder_blocks", "decoder_blocks", "block_kernel_size", "block_expansion"):
                value = getattr(self, name)
                if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                    raise ValueError(f"CodecConfig.{name} must be a positive integer, got {value!r}.")
            if self.n_fft and (self.n_fft < self.hop_length or self.n_fft % self.hop_length):
                raise ValueError(
                    f"CodecConfig.n_fft must be a multiple of the hop ({self.hop_length}), got {self.n_fft}."
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (tuples become lists) for checkpoints, JSON and YAML."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CodecConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` listing the valid ones.

        A dict written before the comb and projection fixes has no ``upsampler`` or ``quantizer_projection`` key:
        its weights belong to transposed upsamplers and free projections, so those are what it rebuilds.
        """
        data = dict(data)
        if "architecture" not in data:  # a seed-design checkpoint from before codec v2
            data.setdefault("upsampler", "transposed")
            data.setdefault("quantizer_projection", "free")
        return dataclass_from_dict(cls, data)

    # ------------------------------------------------------------------ presets
    @classmethod
    def seed(cls) -> "CodecConfig":
        """The course's design: hop 80 (200 frames/s), 8 x 1024 codes = 16 kbps, channels 32 -> 512, latent 1024."""
        return cls()

    @classmethod
    def seed_50hz(cls) -> "CodecConfig":
        """The seed network at 50 frames/s: strides (2, 4, 5, 8) -> hop 320, 8 x 1024 codes = 4 kbps."""
        return cls(strides=(2, 4, 5, 8))

    @classmethod
    def laptop(cls) -> "CodecConfig":
        """A codec that trains on two CPU cores in about twenty minutes; hop 80, 200 frames/s, 16 kbps, ~1.0 M params.

        Cost per second of audio is dominated by the residual units, ``~8 * C**2 * rate`` multiply-adds each, so
        five stages of doubling width (the seed's layout with channels 16 -> 256, 6.2 M parameters) cost ~7 GMAC
        per second of audio and a training step on 8 x 0.5 s took ~2.2 s here, leaving only ~500 steps in twenty
        minutes. Three stages with strides (4, 4, 5) keep hop 80 while running the widest units at 1 kHz; with
        channels 24 -> 96 the same step takes ~0.55 s on two cores (~2000 steps in twenty minutes). The latent is
        128 wide and the codebooks look up in 8 dimensions, as in the seed.

        ``ema_decay`` is 0.9 instead of 0.99: in a run of a few thousand steps at a high learning rate the encoder
        moves fast, and a codebook averaging over ~100 steps lags behind it; most entries are stranded and the code
        perplexity collapses (measured: ~10 of 1024 for the first 230 steps at 0.99, ~150-250 by step 100 at 0.9).
        """
        return cls(
            encoder_dim=24,
            encoder_max_dim=96,
            decoder_dim=24,
            decoder_max_dim=96,
            latent_dim=128,
            strides=(4, 4, 5),
            ema_decay=0.9,
        )

    @classmethod
    def tiny(cls) -> "CodecConfig":
        """A few thousand parameters for unit tests and smoke runs: hop 80, 4 levels of 64 codes."""
        return cls(
            encoder_dim=4,
            encoder_max_dim=16,
            decoder_dim=4,
            decoder_max_dim=16,
            latent_dim=16,
            strides=(4, 4, 5),
            dilations=(1, 3),
            n_q=4,
            codebook_size=64,
            codebook_dim=4,
            kmeans_iters=3,
        )

    @classmethod
    def fast50(cls) -> "CodecConfig":
        """Codec v2, the S2S stages' default: 50 frames/s, 8 x 1024 codes = 4 kbps, trainable on a laptop CPU.

        A causal STFT front end (window 640, hop 320), causal ConvNeXt blocks that all run at 50 frames/s, the
        residual VQ, more ConvNeXt blocks and a head that predicts each frame's magnitude and phase for an inverse
        STFT (Vocos, Siuzdak 2023; WavTokenizer, Ji et al. 2024). No layer runs at the sample rate, which is what
        makes it several times faster than the seed design and EnCodec. Latency: one frame plus one hop of
        overlap-add, 40 ms.
        """
        return cls(
            architecture="stft", strides=(320,), latent_dim=128, frame_dim=384, encoder_blocks=4,
            decoder_blocks=8, ema_decay=0.9,
        )

    @classmethod
    def fast50_gpu(cls) -> "CodecConfig":
        """:meth:`fast50` at GPU scale: a 768-wide backbone, 8 encoder and 12 decoder blocks."""
        return cls(
            architecture="stft", strides=(320,), latent_dim=256, frame_dim=768, encoder_blocks=8,
            decoder_blocks=12,
        )

    @classmethod
    def fast50_tiny(cls) -> "CodecConfig":
        """:meth:`fast50` in miniature for unit tests and smoke runs: 4 levels of 64 codes."""
        return cls(
            architecture="stft", strides=(320,), latent_dim=16, frame_dim=32, encoder_blocks=1, decoder_blocks=2,
            n_q=4, codebook_size=64, codebook_dim=4, kmeans_iters=3,
        )

    @classmethod
    def preset(cls, name: str) -> "CodecConfig":
        """Look a preset up by name (``"fast50"``, ``"fast50_gpu"``, ``"fast50_tiny"``, ``"seed"``, ``"seed_50hz"``,
        ``"laptop"``, ``"tiny"``)."""
        presets = {"fast50": cls.fast50, "fast50_gpu": cls.fast50_gpu, "fast50_tiny": cls.fast50_tiny,
                   "seed": cls.seed, "seed_50hz": cls.seed_50hz, "laptop": cls.laptop, "tiny": cls.tiny}
        if name not in presets:
            raise ValueError(f"unknown codec preset {name!r}; choose one of {sorted(presets)}.")
        return presets[name]()
