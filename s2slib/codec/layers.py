"""Causal building blocks of the codec, each runnable offline (``forward``) or chunk by chunk (``step``).

Streaming API
-------------
Every module here is a :class:`Streamable`. Besides ``forward(x)`` on a whole signal it has

* ``initial_state(batch_size, device, dtype) -> state``: the state before any audio, and
* ``step(x, state) -> (y, new_state)``: process the next chunk ``x`` (any length, even 0) and return the outputs
  that chunk completes.

The state is explicit and owned by the caller (tensors, tuples of states, or ``None`` for stateless layers), so
one model can serve many streams at once and nothing hidden changes between calls. Concatenating the outputs of
successive ``step`` calls gives ``forward`` of the concatenated inputs (up to float rounding), whatever the chunk
boundaries, because every layer is causal:

* :class:`CausalConv1d` pads on the left only, so output ``t`` uses inputs up to the end of its own stride; its
  state is the tail of past input that later outputs still need (initially the zeros ``forward`` pads with).
* :class:`CausalConvTranspose1d` keeps the first ``stride`` samples of each input frame's output and carries the
  overlapping tail into the next frame (overlap-add); its state is that tail.
* :class:`CausalUpsample` repeats each frame ``stride`` times, then runs a :class:`CausalConv1d`; its state is
  that conv's.

Two ways to upsample in the decoder
-----------------------------------
A transposed convolution with stride ``s`` applies ``s`` different sub-filters (its polyphase components), one to
each output position within a frame. Anything constant from frame to frame -- a bias, the mean ``1 / (2 alpha)``
of Snake's ``sin**2`` -- therefore comes out as a pattern repeating every ``s`` samples: a comb at the input frame
rate and its harmonics (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts"). Measured on the laptop
preset at initialisation (:func:`s2slib.codec.diagnostics.decoder_comb_shares`, seed 0), a white latent put 69 % of
the decoder's output power within 8 Hz of the multiples of 200 Hz (white noise: 8 %). Repeating each frame and then
convolving at the output rate (:class:`CausalUpsample`, the "resize-convolution" that article recommends) treats
every output position alike, so a constant input gives a constant output and no comb: 1.5 % on the same test.
``DecoderBlock(..., upsampler="nearest")`` is the default; ``"transposed"`` keeps the original design for
comparison (:mod:`s2slib.codec.diagnostics` measures both).

Inference
---------
:func:`fold_weight_norm` returns a copy whose weight-normed convolutions hold their computed weight as a plain
parameter, so inference does not recompute ``g * v / ||v||`` on every call.

Weight normalisation uses ``torch.nn.utils.parametrizations.weight_norm`` (Salimans & Kingma 2016). Convolutions
keep PyTorch's default initialisation (each output channel's weight vector has norm ~0.6 whatever the width).
DAC's truncated normal with std 0.02 gives norms of ``0.02 * sqrt(C * K)``, ~0.1 for narrow layers: stacked
through the tiny and laptop presets the latent of a fresh model shrank to ~1e-5 and its codes carried nothing.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _WeightNorm
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

State = Any  # a tensor, a tuple of states, or None


class Streamable(nn.Module):
    """Base class of the causal layers: ``forward`` for whole signals, ``step`` for chunks with explicit state."""

    def initial_state(self, batch_size: int, device: torch.device | None = None,
                      dtype: torch.dtype | None = None) -> State:
        """State before the first chunk."""
        raise NotImplementedError

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """Process chunk ``x`` (B, C, t) given ``state``; return the completed outputs and the new state."""
        raise NotImplementedError


class Stateless(Streamable):
    """A pointwise layer: ``step`` is ``forward`` and the state is ``None``."""

    def initial_state(self, batch_size, device=None, dtype=None) -> None:
        return None

    def step(self, x: Tensor, state: None) -> tuple[Tensor, None]:
        return self(x), None


class Snake1d(Stateless):
    """Snake activation: ``y = x + sin(alpha * x)**2 / (alpha + eps)``, one learnable ``alpha`` per channel.

    From Ziyin, Hartwig & Ueda 2020, "Neural Networks Fail to Learn Periodic Functions and How to Fix It"; used
    in BigVGAN (Lee et al. 2022) and DAC (Kumar et al. 2023) because audio is periodic. ``alpha`` sets the
    frequency of the ripple; ``eps`` keeps ``1 / alpha`` finite if an alpha is driven to 0.

    Parameters
    ----------
    channels: number of channels ``C``; ``alpha`` has shape (1, C, 1) and starts at 1.

    Shapes: ``x: Tensor[B, C, T] -> Tensor[B, C, T]``.
    """

    def __init__(self, channels: int, eps: float = 1e-9):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x + (self.alpha + self.eps).reciprocal() * torch.sin(self.alpha * x).pow(2)


class ELU1d(Stateless):
    """ELU, the activation of SEANet/EnCodec; here so ``CodecConfig.activation="elu"`` can be compared to Snake."""

    def __init__(self, channels: int):
        super().__init__()
        del channels  # same signature as Snake1d

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(x)


class Tanh(Stateless):
    """``tanh``, keeping the decoded waveform inside (-1, 1)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x)


def make_activation(name: str, channels: int) -> Stateless:
    """The activation named by ``CodecConfig.activation`` for ``channels`` channels."""
    if name == "snake":
        return Snake1d(channels)
    if name == "elu":
        return ELU1d(channels)
    raise ValueError(f"unknown activation {name!r}; expected 'snake' or 'elu'.")


class CausalConv1d(Streamable):
    """1-D convolution that never looks ahead: ``padding = dilation * (kernel_size - 1) + 1 - stride`` zeros on the
    left, none on the right.

    Output ``t`` reads inputs ``[t * stride - padding, (t + 1) * stride - 1]``: it exists as soon as the last input
    of its own stride has arrived. On ``T`` inputs ``forward`` returns ``T // stride`` outputs.

    Streaming: the state holds the input samples future outputs still need (``padding`` zeros at the start). A
    ``step`` appends the chunk, computes every output whose window is complete, and keeps the unconsumed tail.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, dilation: as ``nn.Conv1d``; the receptive field
        ``dilation * (kernel_size - 1) + 1`` must be at least ``stride``.
    weight_norm: wrap the weight in weight normalisation.

    Shapes: ``x: Tensor[B, in_channels, T] -> Tensor[B, out_channels, T // stride]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 weight_norm: bool = True):
        super().__init__()
        self.receptive_field = dilation * (kernel_size - 1) + 1
        if self.receptive_field < stride:
            raise ValueError(
                f"CausalConv1d: receptive field {self.receptive_field} (kernel {kernel_size}, dilation {dilation}) "
                f"is smaller than stride {stride}; samples would be skipped. Use kernel_size >= stride."
            )
        self.stride = stride
        self.padding = self.receptive_field - stride
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        self.conv = _weight_norm(conv) if weight_norm else conv

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (self.padding, 0)))

    def initial_state(self, batch_size, device=None, dtype=None) -> Tensor:
        return torch.zeros(batch_size, self.conv.in_channels, self.padding, device=device, dtype=dtype)

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        buf = torch.cat([state, x], dim=-1)  # (B, C_in, padding_left_over + t)
        n_out = 0 if buf.shape[-1] < self.receptive_field else (buf.shape[-1] - self.receptive_field) // self.stride + 1
        if n_out == 0:
            y = buf.new_zeros(buf.shape[0], self.conv.out_channels, 0)
            return y, buf
        used = (n_out - 1) * self.stride + self.receptive_field  # inputs the n_out windows cover
        y = self.conv(buf[..., :used])  # (B, C_out, n_out)
        return y, buf[..., n_out * self.stride:]  # keep what the next windows overlap


class CausalConvTranspose1d(Streamable):
    """Transposed 1-D convolution (upsampling by ``stride``) trimmed on the right so it stays causal.

    Input frame ``t`` spreads over outputs ``[t * stride, t * stride + kernel_size - 1]``. Keeping only the first
    ``T * stride`` outputs, output block ``t`` (samples ``t * stride .. (t + 1) * stride - 1``) depends on input
    frames ``<= t`` only, so one input frame yields ``stride`` outputs at once, with no look-ahead.

    Streaming: each ``step`` overlap-adds the tail (``kernel_size - stride`` samples, no bias) left by the previous
    frames onto the new output, emits ``stride`` samples per input frame and keeps the new tail as state.

    Weight norm is taken per output channel (``dim=1``, since a transposed conv's weight is (C_in, C_out, K)).

    Shapes: ``x: Tensor[B, in_channels, T] -> Tensor[B, out_channels, T * stride]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, weight_norm: bool = True):
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"CausalConvTranspose1d: kernel_size {kernel_size} must be >= stride {stride}.")
        self.stride = stride
        self.kernel_size = kernel_size
        conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride)
        self.conv = _weight_norm(conv, dim=1) if weight_norm else conv

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)  # (B, C_out, (T - 1) * stride + kernel_size)
        return y[..., : x.shape[-1] * self.stride]  # drop the tail that belongs to future frames

    def initial_state(self, batch_size, device=None, dtype=None) -> Tensor:
        tail = self.kernel_size - self.stride
        return torch.zeros(batch_size, self.conv.out_channels, tail, device=device, dtype=dtype)

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        n_in = x.shape[-1]
        if n_in == 0:
            return x.new_zeros(x.shape[0], self.conv.out_channels, 0), state
        y = F.conv_transpose1d(x, self.conv.weight, None, stride=self.stride)  # (B, C_out, (n-1)*stride + K), no bias
        tail = state.shape[-1]
        y = torch.cat([y[..., :tail] + state, y[..., tail:]], dim=-1)  # overlap-add what earlier frames left
        n_out = n_in * self.stride
        out = y[..., :n_out]
        if self.conv.bias is not None:
            out = out + self.conv.bias[None, :, None]  # bias once per output sample, as in forward
        return out, y[..., n_out:]


class CausalUpsample(Streamable):
    """Nearest-neighbour upsampling by ``stride`` followed by a causal convolution at the output rate.

    Each input frame is repeated ``stride`` times, then a :class:`CausalConv1d` (stride 1, ``kernel_size``
    samples, default ``2 * stride`` so it spans two input frames) mixes channels and smooths the steps. Output
    block ``t`` (samples ``t * stride .. (t + 1) * stride - 1``) reads repeated samples of frames ``<= t`` only, so
    one input frame yields ``stride`` outputs at once, with no look-ahead, exactly like
    :class:`CausalConvTranspose1d`. Unlike it, every output position sees the same filter, so a frame-constant
    input (a bias, Snake's mean) gives a constant output instead of a comb at the input rate (Odena et al. 2016,
    "Deconvolution and Checkerboard Artifacts"; see the module docstring). The price: the convolution runs at the
    output rate, ``stride`` times the multiply-adds of a transposed conv with the same kernel.

    Streaming: repeating is pointwise in time, so a ``step`` repeats its chunk and hands it to the conv's ``step``;
    the state is the conv's (the last ``kernel_size - 1`` repeated samples).

    Shapes: ``x: Tensor[B, in_channels, T] -> Tensor[B, out_channels, T * stride]``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel_size: int | None = None,
                 weight_norm: bool = True):
        super().__init__()
        self.stride = stride
        self.conv = CausalConv1d(in_channels, out_channels, kernel_size or 2 * stride, weight_norm=weight_norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x.repeat_interleave(self.stride, dim=-1))  # (B, C_in, T * stride) -> (B, C_out, T * stride)

    def initial_state(self, batch_size, device=None, dtype=None) -> Tensor:
        return self.conv.initial_state(batch_size, device, dtype)

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return self.conv.step(x.repeat_interleave(self.stride, dim=-1), state)


def make_upsampler(name: str, in_channels: int, out_channels: int, stride: int,
                   weight_norm: bool = True) -> Streamable:
    """The upsampler named by ``CodecConfig.upsampler``: ``"nearest"`` (:class:`CausalUpsample`) or
    ``"transposed"`` (:class:`CausalConvTranspose1d`), both with kernel ``2 * stride``."""
    if name == "nearest":
        return CausalUpsample(in_channels, out_channels, stride, 2 * stride, weight_norm=weight_norm)
    if name == "transposed":
        return CausalConvTranspose1d(in_channels, out_channels, 2 * stride, stride=stride, weight_norm=weight_norm)
    raise ValueError(f"unknown upsampler {name!r}; expected 'nearest' or 'transposed'.")


class StreamingSequential(Streamable):
    """``nn.Sequential`` for :class:`Streamable` layers; its state is the tuple of its layers' states."""

    def __init__(self, *layers: Streamable):
        super().__init__()
        for layer in layers:
            if not isinstance(layer, Streamable):
                raise TypeError(f"StreamingSequential takes Streamable layers, got {type(layer).__name__}.")
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def initial_state(self, batch_size, device=None, dtype=None) -> tuple:
        return tuple(layer.initial_state(batch_size, device, dtype) for layer in self.layers)

    def step(self, x: Tensor, state: tuple) -> tuple[Tensor, tuple]:
        new_state = []
        for layer, s in zip(self.layers, state):
            x, s = layer.step(x, s)
            new_state.append(s)
        return x, tuple(new_state)


class ResidualUnit(Streamable):
    """``y = x + Conv1x1(act(DilatedCausalConv(act(x))))``, the residual unit of SEANet/DAC.

    The dilated conv has ``kernel_size`` (7) and ``dilation`` (1, 3 or 9 across a stage's units), so a stage of
    three units sees ``1 + 6 * (1 + 3 + 9) = 79`` past samples. Both convs have stride 1, so the branch returns as
    many samples as it receives, in ``forward`` and in every ``step``, and the skip needs no cropping.

    Shapes: ``x: Tensor[B, dim, T] -> Tensor[B, dim, T]``.
    """

    def __init__(self, dim: int, dilation: int, kernel_size: int = 7, activation: str = "snake",
                 weight_norm: bool = True):
        super().__init__()
        self.block = StreamingSequential(
            make_activation(activation, dim),
            CausalConv1d(dim, dim, kernel_size, dilation=dilation, weight_norm=weight_norm),
            make_activation(activation, dim),
            CausalConv1d(dim, dim, 1, weight_norm=weight_norm),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)

    def initial_state(self, batch_size, device=None, dtype=None) -> tuple:
        return self.block.initial_state(batch_size, device, dtype)

    def step(self, x: Tensor, state: tuple) -> tuple[Tensor, tuple]:
        y, state = self.block.step(x, state)
        return x + y, state


class EncoderBlock(StreamingSequential):
    """One encoder stage: residual units at ``in_dim`` (one per dilation), activation, strided causal conv.

    The strided conv has kernel ``2 * stride`` (DAC) and maps ``in_dim`` to ``out_dim`` channels.

    Shapes: ``x: Tensor[B, in_dim, T] -> Tensor[B, out_dim, T // stride]``.
    """

    def __init__(self, in_dim: int, out_dim: int, stride: int, dilations=(1, 3, 9), kernel_size: int = 7,
                 activation: str = "snake", weight_norm: bool = True):
        super().__init__(
            *[ResidualUnit(in_dim, d, kernel_size, activation, weight_norm) for d in dilations],
            make_activation(activation, in_dim),
            CausalConv1d(in_dim, out_dim, 2 * stride, stride=stride, weight_norm=weight_norm),
        )


class DecoderBlock(StreamingSequential):
    """One decoder stage: activation, causal upsampling by ``stride``, residual units at ``out_dim``.

    ``upsampler`` picks the upsampling layer (:func:`make_upsampler`): ``"nearest"`` (default; repeat, then a
    causal conv) or ``"transposed"`` (the seed design's causal transposed conv, which leaves a comb at the input
    rate; see the module docstring). Both have kernel ``2 * stride``.

    Shapes: ``x: Tensor[B, in_dim, T] -> Tensor[B, out_dim, T * stride]``.
    """

    def __init__(self, in_dim: int, out_dim: int, stride: int, dilations=(1, 3, 9), kernel_size: int = 7,
                 activation: str = "snake", weight_norm: bool = True, upsampler: str = "nearest"):
        super().__init__(
            make_activation(activation, in_dim),
            make_upsampler(upsampler, in_dim, out_dim, stride, weight_norm),
            *[ResidualUnit(out_dim, d, kernel_size, activation, weight_norm) for d in dilations],
        )


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` in which every weight-normalised tensor is a plain parameter holding its value.

    Weight norm (Salimans & Kingma 2016) stores ``g`` and ``v`` and computes ``weight = g * v / ||v||`` on every
    access; for inference that is wasted work, repeated for every conv on every call. The copy computes it once
    (``remove_parametrizations(..., leave_parametrized=True)``) and gives the same outputs to float rounding.
    Other parametrizations are left alone; ``module`` itself is not changed. Works on any module tree, with or
    without weight norm. Train the original, not the copy: the copy no longer has ``g`` and ``v``.

    Examples
    --------
    >>> fast = fold_weight_norm(codec).eval()
    >>> wav_hat = fast.decode(fast.encode(wav))
    """
    folded = copy.deepcopy(module)
    for submodule in list(folded.modules()):  # a list: removing a parametrization edits the tree
        if not parametrize.is_parametrized(submodule):
            continue
        # A parametrized module's class is one ``parametrize`` made for it, holding the weight's property, and
        # deepcopy shares that class with the original; removing the parametrization deletes the property from the
        # class, which would break the original. So the copy first gets a class of its own.
        cls = type(submodule)
        own = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
        submodule.__class__ = type(cls.__name__, cls.__bases__, own)
        for name, chain in list(submodule.parametrizations.items()):
            if all(isinstance(p, _WeightNorm) for p in chain):
                parametrize.remove_parametrizations(submodule, name, leave_parametrized=True)
    return folded


def quantize_decoder_int8(codec: nn.Module) -> nn.Module:
    """A deep copy of ``codec`` (fold weight norm first) whose **decoder**'s ``nn.Linear`` layers compute in int8.

    Dynamic quantization (``torch.ao.quantization.quantize_dynamic``, the fbgemm kernels on x86): the weights are
    stored as int8 with one scale per layer, and each call quantizes its input with that input's own range. At batch
    one, as in streaming, a step reads every weight once, so reading a quarter of the bytes is most of the gain
    (``python -m s2slib.bench codec`` times both decoders; the README gives the figures and the quality check on
    real clips). The encoder stays in float, so the codes (what the S2S model reads
    and writes) are exactly those of the float codec. Because each call scales its own input, a streaming decode and
    an offline decode of the same codes now differ by quantization noise instead of float rounding.
    """
    quantized = copy.deepcopy(codec)
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of the separate torchao package, yet ships and works in the
        # pinned torch 2.11; the warning would repeat on every load
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.ao.quantization.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="torch.ao.quantization")
        quantized.decoder = torch.ao.quantization.quantize_dynamic(quantized.decoder, {nn.Linear}, dtype=torch.qint8)
    return quantized
