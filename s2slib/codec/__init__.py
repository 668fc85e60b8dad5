"""A streaming neural audio codec built from scratch, in two families.

* ``conv`` (the seed design): a DAC/SEANet-style causal convolutional encoder and decoder at 200 frames/s.
* ``stft`` (codec v2, the ``fast50`` presets): a causal STFT front end, causal ConvNeXt blocks at 50 frames/s and an
  inverse-STFT head; the S2S stages' default.

The pieces, one module each: :mod:`.config` (``CodecConfig`` and its presets), :mod:`.layers` (causal, streamable
building blocks of the seed design), :mod:`.convnext` (the frame-rate blocks of codec v2), :mod:`.stft_io` (its STFT
front end and inverse-STFT head), :mod:`.quantize` (residual VQ with EMA codebooks), :mod:`.model` (``Codec`` and its
streaming encoder/decoder), :mod:`.losses` (reconstruction and adversarial losses), :mod:`.diagnostics` (the comb
test), :mod:`.discriminators`, :mod:`.train` and :mod:`.train_gan`.
"""

from s2slib.codec.config import CodecConfig
from s2slib.codec.losses import (MultiResolutionSTFTLoss, MultiScaleMelLoss, ReconstructionLoss,
                                 ReconstructionLossConfig, waveform_l1)
from s2slib.codec.model import Codec, CodecOutput, Decoder, Encoder, StreamingDecoder, StreamingEncoder
from s2slib.codec.quantize import QuantizerOutput, ResidualVectorQuantizer, VectorQuantizer

__all__ = [
    "Codec", "CodecConfig", "CodecOutput", "Decoder", "Encoder", "MultiResolutionSTFTLoss", "MultiScaleMelLoss",
    "QuantizerOutput", "ReconstructionLoss", "ReconstructionLossConfig", "ResidualVectorQuantizer",
    "StreamingDecoder", "StreamingEncoder", "VectorQuantizer", "waveform_l1",
]
