"""A streaming neural audio codec built from scratch (DAC/SEANet-style encoder/decoder with residual VQ).

The pieces, one module each: :mod:`.config` (``CodecConfig`` and its presets), :mod:`.layers` (causal, streamable
building blocks), :mod:`.quantize` (residual VQ with EMA codebooks), :mod:`.model` (``Codec`` and its streaming
encoder/decoder), :mod:`.losses` (reconstruction losses).
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
