"""EnCodec's architecture, trained here from scratch with the course's trainer: a baseline that needs no download.

EnCodec (Défossez et al. 2022, *High Fidelity Neural Audio Compression*) is a SEANet encoder and decoder (causal
convolutions, ELU, weight norm, a two-layer LSTM at the frame rate) around a residual VQ with EMA codebooks.
Meta's pretrained 24 kHz weights cannot be had on an offline machine, but the architecture can: the ``encodec``
package ships its modules, and this module builds the model from them

* ``encodec.modules.SEANetEncoder`` and ``SEANetDecoder``, exactly as ``encodec.EncodecModel`` wires them,
* a residual VQ chosen by ``EncodecScratchConfig.quantizer``: ``"course"``, the course's
  :class:`s2slib.codec.quantize.ResidualVectorQuantizer` (the ``laptop`` and ``tiny`` presets), or ``"encodec"``,
  the package's ``encodec.quantization.ResidualVectorQuantizer`` (the ``paper`` preset, the published recipe),

at 16 kHz with ratios (8, 5, 4, 2): hop 320, **50 frames/s**, so 8 levels x 1024 codes = 4 kbps, the course
codec's default frame rate and bitrate ladder. EnCodec trains with a bandwidth drawn at random for each batch
(quantizer dropout, the paper's variable-bandwidth training): with EnCodec's quantizer :class:`EncodecScratch` draws
the number of levels 1..n_q per batch; the course's quantizer draws it per example (for half of them).

:class:`EncodecScratch` speaks the course codec's language (``forward(wav) -> CodecOutput``, ``encode``,
``decode``, ``config``), so :class:`EncodecScratchTrainer` is the course's :class:`~s2slib.codec.train.CodecTrainer`
with another model: the same data, losses, optimizer, schedule, checkpoints, exact resume and DDP. With
``quantizer="course"`` the scratch model and the course codec share their quantizer too, so the comparison of
notebook 04 isolates the encoder/decoder design (:attr:`EncodecScratch.label` says which quantizer a model has).

    trainer = EncodecScratchTrainer(EncodecScratchConfig.laptop(), CodecTrainConfig(max_steps=2000),
                                    "run/data/manifests/train.jsonl", "run/data/manifests/val.jsonl",
                                    out_dir="run/encodec_scratch")
    trainer.fit()
    model = load_encodec_scratch("run/encodec_scratch/codec.pt")

Where this departs from the paper: only the reconstruction losses of the course trainer (no discriminator, no loss
balancer), the course's optimizer and schedule, 16 kHz speech instead of 24 kHz general audio, and batches far
smaller than the codebooks (8 x 0.5 s = 200 frames for 1024 entries on a laptop). The package's quantizer behaves
differently there, which matters when reading the results:

* it initialises a codebook by k-means on the first batch that reaches it; with fewer frames than entries most
  entries start on duplicated frames, receive no data, and the EMA normalisation (``embed_avg / cluster_size``, with
  a smoothed cluster size of ~1e-5) throws them ~1e5 times too far out, where nothing reaches them until
  ``embed_avg`` has decayed by as much (~1100 steps at ``ema_decay`` 0.99, ~110 at 0.9);
* its dead-code reset writes fresh entries into ``embed`` and the EMA update of the same step overwrites them, so it
  does not revive them (see also facebookresearch/encodec issue #33 on the timing of that reset).

Measured with the ``laptop`` architecture on the course's speech: the package's level 1 used 1 of its 1024 entries
from about step 50 on, and the reconstructions were equally good (equally poor) at every depth, so the bitrate ladder
measured nothing. Both behaviours are the package's and are kept on ``quantizer="encodec"`` (apart from one change: a
training batch brings in at most one level that still needs its k-means initialisation,
:meth:`EncodecScratch._training_depth` says why). This is why the laptop presets use the course's quantizer, whose
k-means, dead-code reset (which sticks: it also resets the EMA statistics) and per-example quantizer dropout were
built for small batches; the ``paper`` preset keeps EnCodec's for GPU runs with the paper's batches.

One more departure, on the ``laptop`` and ``tiny`` presets only (``latent_norm=True``): the latent is standardised
per channel (:class:`LatentStandardizer`, a debiased ``BatchNorm1d`` without affine parameters) before it is quantized. Without it the course quantizer
collapsed too (level-1 perplexity 1-2 from step ~20, validation mel distance stuck at 0.63, SNR -0.2 dB, whatever
the commitment weight, learning rate or gradient clip). The cause, measured: at initialisation SEANet's latent is
almost constant over time, its biases dominate (the spread of the frames around their mean has norm 0.015 against
a mean of norm 0.48 on the course's speech, and it scales with the input level, so it is the signal's share), and
in training the mean drifts faster than the spread grows (0.026 against 4.75 after 80 steps); codebook entries
re-seeded on one batch are left behind by the next and one entry takes every frame. Standardising the latent takes
the drifting mean and scale out of what the codebooks see: level-1 perplexity ~200 by step 300 and validation mel
distance 0.50 at step 450 on the same run (``/tmp`` experiment, laptop profile data, notebook 02's settings). At
inference the running statistics make it a fixed per-channel affine map: causal, so streaming is unaffected.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from s2slib.codec.config import dataclass_from_dict
from s2slib.codec.model import CodecOutput, FramedCodec
from s2slib.codec.train import CodecTrainer, export_codec, load_model
from s2slib.metrics import bitrate_kbps, codebook_usage

NORMS = ("weight_norm", "none")
QUANTIZERS = ("course", "encodec")
KIND = "encodec_scratch"
# dead_code_threshold=None takes the chosen quantizer's own default, in its own unit
DEFAULT_DEAD_CODE_THRESHOLD = {"encodec": 2.0,  # EMA cluster size (frames), encodec's threshold_ema_dead_code
                               "course": 0.1}  # fraction of the uniform share, as CodecConfig.dead_code_threshold


@dataclass
class EncodecScratchConfig:
    """EnCodec's architecture (``encodec.EncodecModel._get_model``), with the knobs the presets change.

    The defaults are the published 24 kHz model's layers run at 16 kHz (:meth:`paper`). Channels double at every
    encoder stage from ``n_filters`` (32 -> 512 in the paper); the LSTM runs at the frame rate on the widest
    channels; the latent is ``dimension`` wide and the codebooks look up in that space.
    """

    # --- signal ---
    sample_rate: int = 16000  # Hz
    channels: int = 1  # audio channels (mono)
    # --- SEANet encoder / decoder ---
    ratios: tuple[int, ...] = (8, 5, 4, 2)  # decoder upsampling ratios; the encoder uses them reversed; hop = product
    n_filters: int = 32  # channels of the first encoder / last decoder stage; doubles at every stage
    n_residual_layers: int = 1  # SEANet residual blocks per stage
    dimension: int = 128  # latent channels the quantizer sees
    lstm_layers: int = 2  # LSTM layers at the frame rate, end of the encoder and start of the decoder (0: none)
    causal: bool = True  # left-only padding, as EnCodec 24 kHz (the streaming model)
    norm: str = "weight_norm"  # "weight_norm" (EnCodec 24 kHz) or "none"
    # --- residual vector quantizer ---
    quantizer: str = "encodec"  # "encodec": encodec.quantization's RVQ; "course": s2slib.codec.quantize's RVQ
    n_q: int = 8  # levels -> 8 x 10 bits x 50 frames/s = 4 kbps
    codebook_size: int = 1024  # entries per level
    ema_decay: float = 0.99  # EMA decay of the codebooks
    kmeans_iters: int = 50  # k-means iterations initialising each codebook on its first batch (0: random init)
    dead_code_threshold: float | None = None  # re-seed entries used less; None: DEFAULT_DEAD_CODE_THRESHOLD[quantizer]
    commitment_weight: float = 1.0  # encodec: lambda_w of the paper (mean over levels); course: beta (sum over levels)
    quantizer_dropout: bool = True  # random depth in training: per batch (encodec), per example with p 0.5 (course)
    latent_norm: bool = False  # standardise the latent per channel before the quantizer (module docstring; not EnCodec's)

    # ------------------------------------------------------------------ derived quantities
    @property
    def hop_length(self) -> int:
        """Samples per code frame: the product of the ratios."""
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> float:
        """Code frames per second: ``sample_rate / hop_length``."""
        return self.sample_rate / self.hop_length

    def bitrate_kbps(self, n_q: int | None = None) -> float:
        """Bit rate at ``n_q`` levels (default: all): ``n_q * log2(codebook_size) * frame_rate / 1000``."""
        return bitrate_kbps(self.n_q if n_q is None else n_q, self.codebook_size, self.frame_rate)

    # ------------------------------------------------------------------ checks and serialisation
    @property
    def resolved_dead_code_threshold(self) -> float:
        """``dead_code_threshold``, or the chosen quantizer's default when it is None (the units differ: an EMA
        cluster size for ``"encodec"``, a fraction of the uniform share for ``"course"``)."""
        if self.dead_code_threshold is None:
            return DEFAULT_DEAD_CODE_THRESHOLD[self.quantizer]
        return self.dead_code_threshold

    def __post_init__(self) -> None:
        self.ratios = tuple(self.ratios)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field at fault if the configuration cannot build a model."""
        for name in ("sample_rate", "channels", "n_filters", "n_residual_layers", "dimension", "n_q",
                     "codebook_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"EncodecScratchConfig.{name} must be a positive integer, got {value!r}.")
        if not self.ratios or any(not isinstance(r, int) or r <= 0 for r in self.ratios):
            raise ValueError(f"EncodecScratchConfig.ratios must be positive integers, got {self.ratios!r}.")
        if self.codebook_size & (self.codebook_size - 1):
            raise ValueError(f"EncodecScratchConfig.codebook_size must be a power of two (whole bits per code), "
                             f"got {self.codebook_size}.")
        if self.norm not in NORMS:
            raise ValueError(f"EncodecScratchConfig.norm must be one of {NORMS}, got {self.norm!r}.")
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"EncodecScratchConfig.quantizer must be one of {QUANTIZERS} (the course's residual VQ or "
                             f"the encodec package's), got {self.quantizer!r}.")
        if self.lstm_layers < 0 or self.kmeans_iters < 0 or (self.dead_code_threshold or 0) < 0:
            raise ValueError("EncodecScratchConfig.lstm_layers, kmeans_iters and dead_code_threshold must be >= 0.")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"EncodecScratchConfig.ema_decay must lie in (0, 1), got {self.ema_decay}.")
        if self.commitment_weight < 0:
            raise ValueError(f"EncodecScratchConfig.commitment_weight must be >= 0, got {self.commitment_weight}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (tuples become lists) for checkpoints, JSON and YAML."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EncodecScratchConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` listing the valid ones.

        A dict without ``quantizer`` (a checkpoint written before the field existed) means ``"encodec"``, the only
        quantizer there was, so old checkpoints rebuild the model they were trained with.
        """
        if isinstance(data, dict) and "quantizer" not in data:
            data = {**data, "quantizer": "encodec"}
        return dataclass_from_dict(cls, data)

    # ------------------------------------------------------------------ presets
    @classmethod
    def paper(cls) -> "EncodecScratchConfig":
        """EnCodec 24 kHz's layers (32 -> 512 channels, 2 LSTM layers, latent 128) at 16 kHz: ~14.9 M parameters,
        50 frames/s, 8 x 1024 codes = 4 kbps, with EnCodec's own quantizer. For GPU training, whose batches are large
        enough for that quantizer's k-means (see the module docstring)."""
        return cls(quantizer="encodec")

    @classmethod
    def laptop(cls) -> "EncodecScratchConfig":
        """Sized to train on two CPU cores in about the time per step of the course's ``fast50`` codec: ~3.9 M
        parameters.

        Half the paper's width (channels 16 -> 256, an LSTM 256 wide) quarters the cost of every convolution and of
        the LSTM; everything else (ratios, two LSTM layers, latent 128, 8 x 1024 codes) is the paper's. Measured
        through the course trainer on a shared, loaded 2-core CPU (batch 8 x 0.5 s of speech, the best rounds of
        several interleaved ones): ~0.58-0.63 s per step, against ~0.61-0.86 s for ``CodecConfig.fast50()``;
        a 20-wide EnCodec took ~0.75-0.8 s and a 24-wide one ~1.8 s.

        ``ema_decay`` is 0.9, as in the course's laptop presets, for the reason given in
        :meth:`s2slib.codec.config.CodecConfig.laptop`: in a short run at a high learning rate, codebooks averaging
        over ~100 steps lag behind the encoder.

        The quantizer is the course's (``commitment_weight`` 0.25 summed over levels, the course codec's), because
        EnCodec's collapses at this batch size (module docstring); the comparison with the course codec is then
        about the encoder and decoder.

        ``latent_norm`` is on: without it the latent's drifting mean collapsed the first codebook (module docstring).
        """
        return cls(n_filters=16, ema_decay=0.9, quantizer="course", commitment_weight=0.25, latent_norm=True)

    @classmethod
    def tiny(cls) -> "EncodecScratchConfig":
        """~46 k parameters for unit tests and smoke runs: 50 frames/s, 4 levels of 64 codes, the course's
        quantizer as :meth:`laptop`."""
        return cls(n_filters=2, dimension=16, lstm_layers=1, n_q=4, codebook_size=64, kmeans_iters=3,
                   quantizer="course", commitment_weight=0.25, latent_norm=True)

    @classmethod
    def preset(cls, name: str) -> "EncodecScratchConfig":
        """Look a preset up by name (``"paper"``, ``"laptop"``, ``"tiny"``)."""
        presets = {"paper": cls.paper, "laptop": cls.laptop, "tiny": cls.tiny}
        if name not in presets:
            raise ValueError(f"unknown EnCodec-from-scratch preset {name!r}; choose one of {sorted(presets)}.")
        return presets[name]()


def _build_seanet(config: EncodecScratchConfig) -> tuple[nn.Module, nn.Module]:
    """``encodec``'s SEANet encoder and decoder for ``config``, with the package's other defaults (ELU, kernels 7 and
    3, dilation base 2, compress 2, reflect padding, convolutional skips), as ``EncodecModel`` builds them."""
    from encodec.modules import SEANetDecoder, SEANetEncoder

    c = config
    kw = dict(channels=c.channels, dimension=c.dimension, n_filters=c.n_filters, n_residual_layers=c.n_residual_layers,
              ratios=list(c.ratios), norm=c.norm, causal=c.causal, lstm=c.lstm_layers)
    with warnings.catch_warnings():
        # the package builds weight norm with torch.nn.utils.weight_norm, deprecated in favour of parametrizations;
        # the layers it builds are the same, so the warning is noise here
        warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
        return SEANetEncoder(**kw), SEANetDecoder(**kw)


# what notebook 04 and the comparison tables call the model, by quantizer: never "EnCodec 24 kHz" or "pretrained"
LABELS = {"course": "EnCodec encoder/decoder, trained here from scratch (course quantizer)",
          "encodec": "EnCodec encoder/decoder, trained here from scratch (EnCodec's quantizer)"}


def _build_quantizer(config: EncodecScratchConfig) -> nn.Module:
    """The residual VQ ``config.quantizer`` names, in the latent space (``dimension`` channels, no projection)."""
    c = config
    if c.quantizer == "course":
        from s2slib.codec.quantize import ResidualVectorQuantizer

        return ResidualVectorQuantizer(dim=c.dimension, n_q=c.n_q, codebook_size=c.codebook_size, codebook_dim=None,
                                       decay=c.ema_decay, kmeans_iters=c.kmeans_iters,
                                       dead_code_threshold=c.resolved_dead_code_threshold,
                                       commitment_weight=c.commitment_weight,
                                       quantizer_dropout=0.5 if c.quantizer_dropout else 0.0)
    from encodec.quantization import ResidualVectorQuantizer

    return ResidualVectorQuantizer(dimension=c.dimension, n_q=c.n_q, bins=c.codebook_size, decay=c.ema_decay,
                                   kmeans_init=c.kmeans_iters > 0, kmeans_iters=c.kmeans_iters,
                                   threshold_ema_dead_code=c.resolved_dead_code_threshold)


class LatentStandardizer(nn.Module):
    """Per-channel standardisation of a latent ``Tensor[B, D, F]``: batch statistics in training, running averages
    at inference, as ``BatchNorm1d(affine=False)``, except that the running averages are *debiased* (divided by the
    weight their exponential average has accumulated, as Adam debiases its moments). A BatchNorm's running mean starts
    at 0 and its variance at 1 and needs ~1/momentum steps to forget them; debiased, the averages are right after the
    first batch, so a short run already encodes at inference what it trained on."""

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("mean_sum", torch.zeros(dim))  # exponentially weighted sums of the batch statistics
        self.register_buffer("var_sum", torch.zeros(dim))
        self.register_buffer("weight", torch.zeros(()))  # the weight those sums carry: 1 - (1 - momentum)^steps

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            mean, var = x.mean(dim=(0, 2)), x.var(dim=(0, 2), unbiased=False)  # (D,)
            with torch.no_grad():
                m = self.momentum
                self.mean_sum.mul_(1 - m).add_(m * mean.detach().float())
                self.var_sum.mul_(1 - m).add_(m * var.detach().float())
                self.weight.mul_(1 - m).add_(m)
        elif float(self.weight) > 0:
            mean, var = self.mean_sum / self.weight, self.var_sum / self.weight
        else:  # never trained: the identity
            return x
        return (x - mean.view(1, -1, 1)) * torch.rsqrt(var.view(1, -1, 1) + self.eps)


class EncodecScratch(FramedCodec):
    """EnCodec's encoder and decoder (built by the ``encodec`` package) around a residual VQ, behind the course codec's
    API.

    Parameters
    ----------
    config: the architecture and the quantizer (default: :meth:`EncodecScratchConfig.paper`).

    Shapes: ``wav: Tensor[B, channels, T] -> codes: Tensor[B, n_q, ceil(T / hop_length)] -> wav: Tensor[B, channels,
    T]``, as :class:`s2slib.codec.model.Codec`. The codebooks are EMA buffers, not parameters.
    """

    def __init__(self, config: EncodecScratchConfig | None = None):
        super().__init__()
        self.config = config or EncodecScratchConfig.paper()
        self.encoder, self.decoder = _build_seanet(self.config)
        # per-channel standardisation of the latent (running statistics at inference: a fixed, causal affine map)
        self.latent_norm = LatentStandardizer(self.config.dimension) if self.config.latent_norm else nn.Identity()
        self.quantizer = _build_quantizer(self.config)

    # ------------------------------------------------------------------ helpers
    @property
    def label(self) -> str:
        """What to call this model in tables and plots; says which quantizer it trains with."""
        return LABELS[self.config.quantizer]

    def _check_wav(self, wav: Tensor) -> None:
        channels = self.config.channels
        if not isinstance(wav, Tensor):
            raise TypeError(f"wav must be a torch.Tensor of shape (B, {channels}, T), got {type(wav).__name__}.")
        if wav.ndim != 3 or wav.shape[1] != channels:
            hint = " (for a 1-D waveform use wav.view(1, 1, -1))" if wav.ndim == 1 else ""
            raise ValueError(f"wav must have shape (B, {channels}, T), got {tuple(wav.shape)}{hint}.")
        if wav.shape[-1] == 0:
            raise ValueError("wav is empty (T = 0).")

    def _check_n_q(self, n_q: int) -> int:
        if not isinstance(n_q, int) or not 1 <= n_q <= self.config.n_q:
            raise ValueError(f"n_q must be an integer from 1 to {self.config.n_q} (the levels this model has), "
                             f"got {n_q!r}.")
        return n_q

    def _pad(self, wav: Tensor) -> Tensor:
        """Right-pad ``wav`` (B, C, T) with zeros to whole frames: (B, C, ceil(T / hop) * hop), as the course codec.
        (SEANet would otherwise pad the last partial frame by reflection.)"""
        extra = -wav.shape[-1] % self.hop_length
        return nn.functional.pad(wav, (0, extra)) if extra else wav

    def initialised_levels(self) -> int:
        """How many leading levels have their codebooks (k-means on the first batch that reached them)."""
        if self.config.quantizer == "course":
            done = [bool(level.initialized) for level in self.quantizer.levels]
        else:
            done = [bool(layer._codebook.inited) for layer in self.quantizer.vq.layers]  # encodec's per-level flag
        return done.index(False) if False in done else len(done)

    def _training_depth(self, device: torch.device) -> int:
        """EnCodec's quantizer only: levels for this training batch, uniform in 1..n_q under quantizer dropout
        (EnCodec's random bandwidth), else all; never more than one level that still needs its k-means initialisation.

        Why the cap: encodec initialises a codebook by k-means on the first batch that reaches it. With fewer frames
        in a batch than codebook entries (400 frames for 8 x 1 s at 50 frames/s, 1024 entries) k-means puts an
        entry on nearly every frame, so that level reconstructs the batch exactly and a level initialised on the
        same batch sees all-zero residuals: its entries collapse onto one point. Bringing in one new level per batch
        gives each level the residuals of data the levels before it were not fitted to; after the first few
        batches (about ``n_q``) the depth is EnCodec's plain random draw.

        Drawn from the global generator, so the trainer's saved RNG state makes resume exact.
        """
        if not self.config.quantizer_dropout:
            n = torch.tensor([self.config.n_q])
        else:
            n = torch.randint(1, self.config.n_q + 1, (1,))
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # every process must run the same levels: encodec's k-means init and dead-code reset broadcast the
            # codebooks of the levels they run, a collective that hangs if the processes disagree
            n = n.to(device)
            dist.broadcast(n, src=0)
        return min(int(n), self.initialised_levels() + 1)  # the flags are the same on every process (broadcast)

    # ------------------------------------------------------------------ the course codec's API
    def encode(self, wav: Tensor, n_q: int | None = None) -> Tensor:
        """``wav: Tensor[B, channels, T]`` -> ``codes: Tensor[B, n_q, ceil(T / hop_length)]`` (int64); ``n_q``
        levels (default: all). Never changes the codebooks."""
        n = self.config.n_q if n_q is None else self._check_n_q(n_q)
        latent = self.latent(wav)  # (B, D, F)
        if self.config.quantizer == "course":
            return self.quantizer.encode(latent.float(), n_q=n)  # (B, n_q, F)
        codes = self.quantizer.vq.encode(latent.float(), n_q=n)  # (n_q, B, F): encodec puts the levels first
        return codes.transpose(0, 1)  # (B, n_q, F)

    def decode(self, codes: Tensor, length: int | None = None) -> Tensor:
        """``codes: Tensor[B, n_q, F]`` (any ``n_q`` from 1 to ``config.n_q``) -> ``wav: Tensor[B, channels, F * hop]``,
        cut to ``length`` samples if given (pass the original ``T`` to undo the padding of :meth:`encode`)."""
        if not isinstance(codes, Tensor) or codes.ndim != 3:
            raise ValueError(f"codes must be a tensor of shape (B, n_q, frames), got "
                             f"{tuple(codes.shape) if isinstance(codes, Tensor) else type(codes).__name__}.")
        self._check_n_q(codes.shape[1])
        if codes.is_floating_point() or codes.is_complex():
            raise TypeError(f"codes must be integers, got {codes.dtype}.")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.config.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.config.codebook_size}), got values in "
                             f"[{int(codes.min())}, {int(codes.max())}].")
        wav = self.decoder(self.dequantize(codes))
        return wav if length is None else wav[..., :length]

    def latent(self, wav: Tensor) -> Tensor:
        """``wav: Tensor[B, channels, T]`` -> what the quantizer reads, ``Tensor[B, D, F]`` (standardised when
        ``latent_norm``)."""
        self._check_wav(wav)
        return self.latent_norm(self.encoder(self._pad(wav)))

    def dequantize(self, codes: Tensor) -> Tensor:
        """``codes: Tensor[B, n_q, F]`` -> the latent the decoder reads, ``Tensor[B, D, F]``."""
        if self.config.quantizer == "course":
            return self.quantizer.decode(codes.long())  # (B, n_q, F) -> (B, D, F)
        return self.quantizer.decode(codes.long().transpose(0, 1))  # encodec's layout: (n_q, B, F) -> (B, D, F)

    def forward(self, wav: Tensor, n_q: int | None = None) -> CodecOutput:
        """Encode, quantize and decode ``wav: Tensor[B, channels, T]`` (the training pass).

        In training mode the codebooks are updated (k-means on a level's first batch, EMA, dead-code reset) and,
        when ``n_q`` is None, quantizer dropout picks the depth. With the course's quantizer this is the course
        codec's pass: every level runs, ``codes`` is ``(B, n_q, F)`` and each example uses its own ``n_q_used``.
        With EnCodec's, one number of levels is drawn for the whole batch (:meth:`_training_depth`) and only those
        levels run: ``codes`` is ``(B, n_q_used, F)`` and the statistics of the other levels are zero.
        """
        latent = self.latent(wav)  # (B, D, F); checks wav
        length, n_levels = wav.shape[-1], self.config.n_q
        if self.config.quantizer == "course":
            n = None if n_q is None else self._check_n_q(n_q)
            with torch.autocast(device_type=latent.device.type, enabled=False):  # codebooks in float32
                q = self.quantizer(latent.float(), n)  # straight-through estimator inside
            return CodecOutput(
                wav_hat=self.decoder(q.z_q)[..., :length], codes=q.codes, latent=latent, latent_q=q.z_q,
                vq_loss=q.vq_loss, commitment_loss=q.commitment_loss, n_q_used=q.n_q_used,
                codebook_usage=q.usage, perplexity=q.perplexity,
            )
        if n_q is not None:
            n = self._check_n_q(n_q)
        else:
            n = self._training_depth(latent.device) if self.training else n_levels
        # the codebooks' distances and EMA statistics in float32 even under mixed precision
        with torch.autocast(device_type=latent.device.type, enabled=False):
            # straight-through estimator inside: latent_q = latent + (q - latent).detach() in training
            latent_q, codes, commitment = self.quantizer.vq(latent.float(), n_q=n)  # (B, D, F), (n, B, F), (n, 1)
        codes = codes.transpose(0, 1)  # (B, n, F)
        wav_hat = self.decoder(latent_q)[..., :length]  # (B, C, T)
        commitment = commitment.view(n)  # (n,)
        stats = codebook_usage(codes.detach(), self.config.codebook_size)  # Tensor[n] each

        def pad(t: Tensor) -> Tensor:  # (n,) -> (n_q,): zeros for the levels this batch did not run
            return nn.functional.pad(t.float(), (0, n_levels - n))

        return CodecOutput(
            wav_hat=wav_hat, codes=codes, latent=latent, latent_q=latent_q,
            vq_loss=self.config.commitment_weight * commitment.mean(),  # EnCodec's penalty: the mean over levels
            commitment_loss=pad(commitment.detach()), n_q_used=torch.full((wav.shape[0],), n, device=wav.device),
            codebook_usage=pad(stats["usage"]), perplexity=pad(stats["perplexity"]),
        )


# ------------------------------------------------------------------------------------------------- training


def export_encodec_scratch(model: EncodecScratch, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Save the model alone (weights + config) as an ``encodec_scratch`` checkpoint."""
    return export_codec(model, path, extra, kind=KIND)


def load_encodec_scratch(path: str | Path, device: str | torch.device = "cpu") -> EncodecScratch:
    """The model in eval mode from its ``codec.pt`` (or a full training ``checkpoint.pt``), rebuilt from its config."""
    return load_model(path, (KIND, EncodecScratchTrainer.kind), EncodecScratch, EncodecScratchConfig,
                      "EnCodec", device)


class EncodecScratchTrainer(CodecTrainer):
    """:class:`~s2slib.codec.train.CodecTrainer` training :class:`EncodecScratch` instead of the course codec.

    Same arguments, same loop, losses, optimizer, schedule, checkpoints (``checkpoint.pt`` of kind
    ``encodec_scratch_train``, resumed exactly), history and DDP; ``codec.pt`` is an ``encodec_scratch`` checkpoint
    that :func:`load_encodec_scratch` reads. ``codec_config`` must be an :class:`EncodecScratchConfig`.
    """

    kind = "encodec_scratch_train"
    progress_desc = "EnCodec from scratch"

    def build_model(self, codec_config) -> EncodecScratch:
        if not isinstance(codec_config, EncodecScratchConfig):
            raise TypeError(f"EncodecScratchTrainer trains an EncodecScratchConfig, got {type(codec_config).__name__}; "
                            "use CodecTrainer for the course codec.")
        return EncodecScratch(codec_config)

    def export(self, path: Path) -> Path:
        return export_encodec_scratch(self.codec, path, {"train_steps": self.step})
