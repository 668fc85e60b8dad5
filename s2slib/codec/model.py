"""The streaming codec: causal encoder, residual VQ, causal decoder; offline and chunk-by-chunk.

Architecture: DAC (Kumar et al. 2023, "High-Fidelity Audio Compression with Improved RVQGAN") with every
convolution causal, as in EnCodec's streaming model (Défossez et al. 2022) and SoundStream (Zeghidour et al. 2021).

Latency
-------
The algorithmic latency is one frame, ``hop_length`` samples (5 ms for the seed and laptop presets):

* Encoder: every conv pads on the left only, and a strided conv with kernel ``2 * stride`` and left padding
  ``stride`` reads, for output ``t``, inputs up to ``(t + 1) * stride - 1``. Composed over the stages, code frame
  ``t`` depends on samples ``< (t + 1) * hop_length`` and nothing later: the encoder emits it the moment the last
  sample of its frame arrives.
* Decoder: the transposed convs are trimmed on the right, so output block ``t`` of each stage depends on input
  frames ``<= t``; code frame ``t`` yields its ``hop_length`` samples immediately.

So sample ``n`` of frame ``t`` is reconstructed once sample ``(t + 1) * hop_length - 1`` has arrived: at most
``hop_length - 1`` samples of waiting, plus compute time.

Streaming
---------
``Codec.streaming_encoder()`` and ``Codec.streaming_decoder()`` return :class:`StreamingEncoder` and
:class:`StreamingDecoder`, stateful objects fed chunks of any size (one sample, 37 samples, three frames). The
codes and samples they return equal what :meth:`Codec.encode` and :meth:`Codec.decode` give for the whole signal
(waveform to float rounding, ~1e-6). Several independent streams can share one model: each object keeps its own
state, built from the layers' explicit ``initial_state``/``step`` API (:mod:`s2slib.codec.layers`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from s2slib.codec.config import CodecConfig
from s2slib.codec.layers import (CausalConv1d, DecoderBlock, EncoderBlock, StreamingSequential, Tanh,
                                 make_activation)
from s2slib.codec.convnext import FrameStack
from s2slib.codec.quantize import ResidualVectorQuantizer
from s2slib.codec.stft_io import CausalSTFT, ISTFTHead


class Encoder(StreamingSequential):
    """Waveform to latent: input conv, one :class:`EncoderBlock` per stride, activation, conv to ``latent_dim``
    (the ``conv`` architecture, the seed design).

    Shapes: ``wav: Tensor[B, channels, T] -> latent: Tensor[B, latent_dim, T // hop_length]``.
    """

    def __init__(self, config: CodecConfig):
        c = config
        if c.architecture == "stft":
            raise ValueError("Encoder builds the 'conv' architecture; use FrameEncoder for 'stft'.")
        dims = c.encoder_channels()  # (len(strides) + 1,) channels into each stage and after the last
        super().__init__(
            CausalConv1d(c.channels, dims[0], c.kernel_size, weight_norm=c.weight_norm),
            *[
                EncoderBlock(dims[i], dims[i + 1], s, c.dilations, c.residual_kernel_size, c.activation, c.weight_norm)
                for i, s in enumerate(c.strides)
            ],
            make_activation(c.activation, dims[-1]),
            CausalConv1d(dims[-1], c.latent_dim, c.latent_kernel_size, weight_norm=c.weight_norm),
        )


class Decoder(StreamingSequential):
    """Latent to waveform: input conv, one :class:`DecoderBlock` per stride (reversed), activation, output conv,
    ``tanh`` (if ``tanh_output``); the ``conv`` architecture.

    Each decoder block upsamples with ``config.upsampler``: ``"nearest"`` (repeat each frame, then a convolution)
    or ``"transposed"`` (a transposed convolution: anything constant from frame to frame comes out as a comb at
    the stage's input rate; notebook 02 measures it).

    Shapes: ``latent: Tensor[B, latent_dim, F] -> wav: Tensor[B, channels, F * hop_length]``.
    """

    def __init__(self, config: CodecConfig):
        c = config
        dims = c.decoder_channels()  # widest first
        super().__init__(
            CausalConv1d(c.latent_dim, dims[0], c.kernel_size, weight_norm=c.weight_norm),
            *[
                DecoderBlock(dims[i], dims[i + 1], s, c.dilations, c.residual_kernel_size, c.activation, c.weight_norm,
                             upsampler=c.upsampler)
                for i, s in enumerate(reversed(c.strides))
            ],
            make_activation(c.activation, dims[-1]),
            CausalConv1d(dims[-1], c.channels, c.kernel_size, weight_norm=c.weight_norm),
            *([Tanh()] if c.tanh_output else []),
        )

    def finish(self, state: tuple) -> Tensor | None:
        """Samples still pending at the end of a stream: none, every sample is final when its frame decodes."""
        return None


class FrameEncoder(StreamingSequential):
    """The ``stft`` architecture's encoder: :class:`~s2slib.codec.stft_io.CausalSTFT` features, then a
    :class:`~s2slib.codec.convnext.FrameStack` of ``encoder_blocks`` causal ConvNeXt blocks to ``latent_dim``.

    Shapes: ``wav: Tensor[B, 1, T] -> latent: Tensor[B, latent_dim, T // hop_length]``.
    """

    def __init__(self, config: CodecConfig):
        c = config
        stft = CausalSTFT(c.hop_length, c.window_length)
        super().__init__(
            stft,
            FrameStack(stft.out_channels, c.frame_dim, c.latent_dim, c.encoder_blocks, c.block_kernel_size,
                       c.block_expansion),
        )


class FrameDecoder(StreamingSequential):
    """The ``stft`` architecture's decoder: a :class:`~s2slib.codec.convnext.FrameStack` of ``decoder_blocks``
    causal ConvNeXt blocks predicting each frame's log magnitude and phase, then the
    :class:`~s2slib.codec.stft_io.ISTFTHead` (inverse FFT and overlap-add).

    Shapes: ``latent: Tensor[B, latent_dim, F] -> wav: Tensor[B, 1, F * hop_length]``.
    """

    def __init__(self, config: CodecConfig):
        c = config
        head = ISTFTHead(c.hop_length, c.window_length, c.phase, c.sample_rate, c.phase_rotation, c.synthesis)
        super().__init__(
            FrameStack(c.latent_dim, c.frame_dim, head.in_channels, c.decoder_blocks, c.block_kernel_size,
                       c.block_expansion),
            head,
        )

    def finish(self, state: tuple) -> Tensor:
        """The overlap-add tail still pending at the end of a stream (see :meth:`ISTFTHead.finish`)."""
        return self.head.finish(state[-1])

    @property
    def head(self) -> ISTFTHead:
        return self.layers[-1]

    def forward_with_head(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`forward` plus the head's input ``Tensor[B, head.in_channels, F]``, from which the trainer reads
        the head's phases (:meth:`ISTFTHead.phases`) and pitch channels (:meth:`ISTFTHead.pitch_logits`)."""
        frames = self.layers[0](latent)  # (B, head.in_channels, F)
        return self.head(frames), frames


@dataclass
class CodecOutput:
    """What :meth:`Codec.forward` returns.

    Attributes
    ----------
    wav_hat: Tensor[B, channels, T] reconstruction, trimmed to the input length.
    codes: Tensor[B, n_q, F] int64, ``F = ceil(T / hop_length)``.
    latent: Tensor[B, latent_dim, F] encoder output before quantization.
    latent_q: Tensor[B, latent_dim, F] quantized latent fed to the decoder.
    vq_loss: scalar, commitment loss weighted by ``commitment_weight``; add it to the reconstruction loss.
    commitment_loss: Tensor[n_q] unweighted commitment loss per level.
    n_q_used: Tensor[B] levels used for each example (random under quantizer dropout).
    codebook_usage: Tensor[n_q] fraction of each codebook used in the batch.
    perplexity: Tensor[n_q] perplexity of each level's codes.
    head_input: Tensor[B, head.in_channels, F] what codec v2's decoder hands its iSTFT head (log magnitudes and
        the phase mode's channels: :class:`s2slib.codec.stft_io.ISTFTHead`); None for the seed design.
    """

    wav_hat: Tensor
    codes: Tensor
    latent: Tensor
    latent_q: Tensor
    vq_loss: Tensor
    commitment_loss: Tensor
    n_q_used: Tensor
    codebook_usage: Tensor
    perplexity: Tensor
    head_input: Tensor | None = None


class FramedCodec(nn.Module):
    """What every codec of the course exposes from its ``config`` (``sample_rate``, ``hop_length``, ``frame_rate``):
    the properties and the parameter count, written once for :class:`Codec` and for the baselines trained through
    the same loop (:class:`s2slib.encodec_scratch.EncodecScratch`)."""

    config: object

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    def num_parameters(self, trainable_only: bool = True) -> int:
        """Number of parameters (codebooks are EMA buffers, not parameters, and are not counted)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


class Codec(FramedCodec):
    """Streaming neural audio codec: :class:`Encoder`, :class:`ResidualVectorQuantizer`, :class:`Decoder`.

    Parameters
    ----------
    config: the architecture; ``CodecConfig.seed()`` if omitted. Stored as ``codec.config``; save
        ``config.to_dict()`` with the weights.

    Examples
    --------
    >>> codec = Codec(CodecConfig.tiny()).eval()
    >>> wav = torch.randn(1, 1, 16000).clamp(-1, 1)
    >>> codes = codec.encode(wav)                 # (1, n_q, 200)
    >>> wav_hat = codec.decode(codes, length=16000)
    """

    def __init__(self, config: CodecConfig | None = None):
        super().__init__()
        self.config = config or CodecConfig.seed()
        stft = self.config.architecture == "stft"
        self.encoder = FrameEncoder(self.config) if stft else Encoder(self.config)
        self.quantizer = ResidualVectorQuantizer.from_config(self.config)
        self.decoder = FrameDecoder(self.config) if stft else Decoder(self.config)

    # ------------------------------------------------------------------ helpers
    def _check_wav(self, wav: Tensor) -> None:
        if not isinstance(wav, Tensor):
            raise TypeError(
                f"wav must be a torch.Tensor of shape (B, {self.config.channels}, T), got {type(wav).__name__}."
            )
        if wav.ndim != 3 or wav.shape[1] != self.config.channels:
            hint = " (for a 1-D waveform use wav.view(1, 1, -1))" if wav.ndim == 1 else ""
            raise ValueError(
                f"wav must have shape (B, {self.config.channels}, T), got {tuple(wav.shape)}{hint}."
            )
        if wav.shape[-1] == 0:
            raise ValueError("wav is empty (T = 0).")

    def _pad(self, wav: Tensor) -> Tensor:
        """Right-pad ``wav`` (B, C, T) with zeros to a whole number of frames: (B, C, ceil(T / hop) * hop)."""
        extra = -wav.shape[-1] % self.hop_length
        return F.pad(wav, (0, extra)) if extra else wav

    # ------------------------------------------------------------------ offline API
    def encode(self, wav: Tensor, n_q: int | None = None) -> Tensor:
        """``wav: Tensor[B, channels, T]`` -> ``codes: Tensor[B, n_q, ceil(T / hop_length)]`` (int64).

        ``n_q`` levels (default: all). The input is right-padded with zeros to whole frames. Never changes the
        codebooks, in training mode or not.
        """
        return self.quantizer.encode(self.latent(wav), n_q)

    def latent(self, wav: Tensor) -> Tensor:
        """``wav: Tensor[B, channels, T]`` -> the encoder's output before quantization, ``Tensor[B, D, F]``."""
        self._check_wav(wav)
        return self.encoder(self._pad(wav))

    def dequantize(self, codes: Tensor) -> Tensor:
        """``codes: Tensor[B, n_q, F]`` -> the latent the decoder reads, ``Tensor[B, D, F]`` (the sum of the levels'
        entries)."""
        return self.quantizer.decode(codes)

    def decode(self, codes: Tensor, length: int | None = None) -> Tensor:
        """``codes: Tensor[B, n_q, F]`` (any ``n_q`` from 1 to ``config.n_q``) -> ``wav: Tensor[B, channels, F * hop]``,
        cut to ``length`` samples if given (pass the original ``T`` to undo the padding of :meth:`encode`)."""
        wav = self.bounded(self.decoder(self.dequantize(codes)))
        return wav if length is None else wav[..., :length]

    def bounded(self, wav: Tensor) -> Tensor:
        """Decoded audio as a listener gets it: clipped to [-1, 1] where the decoder has no ``tanh`` (the ``stft``
        family). Training (:meth:`forward`) sees the unclipped output, so out-of-range samples still get gradients."""
        if self.config.architecture == "stft" or not self.config.tanh_output:
            return wav.clamp(-1.0, 1.0)
        return wav

    def forward(self, wav: Tensor, n_q: int | None = None) -> CodecOutput:
        """Encode, quantize and decode ``wav: Tensor[B, channels, T]`` (the training pass).

        In training mode the codebooks are updated (EMA, k-means on the first batch, dead-code reset) and, when
        ``n_q`` is None, quantizer dropout picks the levels per example. ``n_q`` fixes the number of levels.
        """
        latent = self.latent(wav)  # (B, D, F); checks wav
        length = wav.shape[-1]
        q = self.quantizer(latent, n_q)
        if isinstance(self.decoder, FrameDecoder):
            wav_hat, head_input = self.decoder.forward_with_head(q.z_q)
        else:
            wav_hat, head_input = self.decoder(q.z_q), None
        return CodecOutput(
            wav_hat=wav_hat[..., :length], codes=q.codes, latent=latent, latent_q=q.z_q, vq_loss=q.vq_loss,
            commitment_loss=q.commitment_loss, n_q_used=q.n_q_used, codebook_usage=q.usage, perplexity=q.perplexity,
            head_input=head_input,
        )

    # ------------------------------------------------------------------ streaming API
    def streaming_encoder(self, batch_size: int = 1, n_q: int | None = None) -> "StreamingEncoder":
        """A :class:`StreamingEncoder` over this model for ``batch_size`` parallel streams."""
        return StreamingEncoder(self, batch_size, n_q)

    def streaming_decoder(self, batch_size: int = 1) -> "StreamingDecoder":
        """A :class:`StreamingDecoder` over this model for ``batch_size`` parallel streams."""
        return StreamingDecoder(self, batch_size)


def _device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(module.parameters())
    return p.device, p.dtype


class StreamingEncoder:
    """Turns audio arriving in chunks of any size into codes, one frame as soon as its samples are in.

    ``push(chunk)`` returns the codes of every frame the chunk completes (possibly none): feeding a signal in any
    split gives, concatenated along time, exactly ``codec.encode(signal)`` for the complete frames. ``flush()``
    zero-pads the last partial frame as :meth:`Codec.encode` does, returns its code and starts a new stream.

    Runs under ``torch.inference_mode``; weight-norm weights are computed once per ``push``, and the quantizer's
    tables (:meth:`~s2slib.codec.quantize.ResidualVectorQuantizer.lookup`) once per stream, when it starts: a model
    changed during a stream is seen after :meth:`reset`.

    Parameters
    ----------
    codec: the model (its weights are shared, not copied; put it in eval mode).
    batch_size: number of parallel streams ``B``.
    n_q: levels to emit (default: all).

    Examples
    --------
    >>> enc = codec.streaming_encoder()
    >>> codes = torch.cat([enc.push(chunk) for chunk in wav.split(37, dim=-1)] + [enc.flush()], dim=-1)
    """

    def __init__(self, codec: Codec, batch_size: int = 1, n_q: int | None = None):
        self.codec = codec
        self.batch_size = batch_size
        self.n_q = codec.quantizer.check_n_q(n_q)
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next sample pushed is sample 0 of a new stream."""
        device, dtype = _device_dtype(self.codec)
        self._state = self.codec.encoder.initial_state(self.batch_size, device, dtype)
        self._lookup = self.codec.quantizer.lookup()  # the quantizer's tables, once per stream
        self.samples_pending = 0  # samples received since the last complete frame

    def push(self, wav: Tensor) -> Tensor:
        """``wav: Tensor[B, channels, t]`` (any ``t >= 0``) -> ``codes: Tensor[B, n_q, f]`` for the ``f`` frames it
        completes."""
        c = self.codec.config
        if wav.ndim != 3 or wav.shape[0] != self.batch_size or wav.shape[1] != c.channels:
            raise ValueError(
                f"StreamingEncoder.push expects a chunk of shape ({self.batch_size}, {c.channels}, t), "
                f"got {tuple(wav.shape)}."
            )
        device, dtype = _device_dtype(self.codec)
        with torch.inference_mode(), parametrize.cached():
            latent, self._state = self.codec.encoder.step(wav.to(device, dtype), self._state)  # (B, D, f)
            if latent.shape[-1]:
                codes = self._lookup.encode(latent, self.n_q)  # (B, n_q, f)
            else:  # no frame completed (convs refuse empty inputs, so skip the quantizer)
                codes = torch.zeros(self.batch_size, self.n_q, 0, dtype=torch.long, device=device)
        self.samples_pending = (self.samples_pending + wav.shape[-1]) % self.codec.hop_length
        return codes

    def flush(self) -> Tensor:
        """Codes of the trailing partial frame (zero-padded), ``Tensor[B, n_q, 0 or 1]``; then :meth:`reset`."""
        if self.samples_pending:
            device, dtype = _device_dtype(self.codec)
            pad = self.codec.hop_length - self.samples_pending
            codes = self.push(torch.zeros(self.batch_size, self.codec.config.channels, pad, device=device, dtype=dtype))
        else:
            codes = torch.zeros(self.batch_size, self.n_q, 0, dtype=torch.long, device=_device_dtype(self.codec)[0])
        self.reset()
        return codes


class StreamingDecoder:
    """Turns codes arriving a few frames at a time into audio, as soon as each sample is final.

    ``push(codes)`` returns the samples the new frames complete; ``flush()`` returns what is still pending at the
    end of the stream and starts a new one. Concatenated, pushes and flush equal ``codec.decode(all_codes)`` to
    float rounding.

    * ``conv`` architecture: every push of ``f`` frames returns ``f * hop_length`` samples at once; flush returns
      nothing.
    * ``stft`` architecture: a frame's synthesis window overlaps the next ``window_length - hop_length`` samples,
      so the stream runs that many samples behind: the first push returns ``window_length - hop_length`` fewer
      samples, and flush returns the overlap-add tail (what an offline decode ends with).

    Parameters
    ----------
    codec: the model (shared, not copied).
    batch_size: number of parallel streams ``B``.
    """

    def __init__(self, codec: Codec, batch_size: int = 1):
        self.codec = codec
        self.batch_size = batch_size
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next frame pushed is frame 0 of a new stream."""
        device, dtype = _device_dtype(self.codec)
        self._state = self.codec.decoder.initial_state(self.batch_size, device, dtype)
        self._lookup = self.codec.quantizer.lookup()  # the quantizer's tables, once per stream

    def push(self, codes: Tensor) -> Tensor:
        """``codes: Tensor[B, n_q, f]`` (any ``f >= 0``, any ``1 <= n_q <= config.n_q``) ->
        ``wav: Tensor[B, channels, f * hop_length]``."""
        if codes.ndim != 3 or codes.shape[0] != self.batch_size:
            raise ValueError(
                f"StreamingDecoder.push expects codes of shape ({self.batch_size}, n_q, f), got {tuple(codes.shape)}."
            )
        device, dtype = _device_dtype(self.codec)
        if codes.shape[-1] == 0:
            return torch.zeros(self.batch_size, self.codec.config.channels, 0, device=device, dtype=dtype)
        with torch.inference_mode(), parametrize.cached():
            latent = self._lookup.decode(codes.to(device))  # (B, D, f)
            wav, self._state = self.codec.decoder.step(latent, self._state)  # (B, C, samples completed)
        return self.codec.bounded(wav)

    def flush(self) -> Tensor:
        """Samples still pending (``Tensor[B, channels, n]``, ``n = 0`` for the ``conv`` architecture); then
        :meth:`reset`."""
        device, dtype = _device_dtype(self.codec)
        with torch.inference_mode():
            tail = self.codec.decoder.finish(self._state)
        if tail is None:
            tail = torch.zeros(self.batch_size, self.codec.config.channels, 0, device=device, dtype=dtype)
        self.reset()
        return self.codec.bounded(tail)
