"""Diagnostics of a codec's decoder that need no training and no data: what it does to white noise.

The comb at initialisation
--------------------------
A decoder stage that upsamples with a transposed convolution applies a different sub-filter to each output
position within a frame, so whatever is constant from frame to frame (biases, the mean of Snake's ``sin**2``)
repeats every frame: the output carries a comb at that stage's input rate and its harmonics. Feeding the decoder of
a fresh model a white Gaussian latent shows it before any training: white noise has no comb, so any share of power
near multiples of a stage's rate above the white-noise share is made by the decoder itself.
:func:`decoder_comb_shares` measures that share at each rate of ``config.comb_frequencies()`` and
:func:`white_noise_comb_shares` gives what white noise of the same length scores: the share of a flat spectrum
that the comb's bands cover (~0.08 at 200 Hz). A decoder whose output is not flat can score below it.

Measured at initialisation (seed 0, 2 s), share at 200 Hz / at the highest rate:

* laptop preset: ``upsampler="transposed"`` 0.69 / 0.59 (4 kHz), ``"nearest"`` 0.015 / 0.001;
* seed preset: ``"transposed"`` 0.81 / 0.72 (8 kHz), ``"nearest"`` 0.015 / 0.001;
* white noise: 0.080 / 0.058 (4 kHz), 0.043 (8 kHz).

Examples
--------
>>> import dataclasses
>>> from s2slib.codec.config import CodecConfig
>>> from s2slib.codec.model import Codec
>>> for upsampler in ("transposed", "nearest"):
...     codec = Codec(dataclasses.replace(CodecConfig.laptop(), upsampler=upsampler))
...     print(upsampler, decoder_comb_shares(codec))
"""

from __future__ import annotations

import torch
from torch import nn

from s2slib.codec.config import CodecConfig
from s2slib.metrics import comb_share


def _frames(config: CodecConfig, seconds: float) -> int:
    """Latent frames covering ``seconds`` of audio (at least one)."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}.")
    return max(1, round(seconds * config.frame_rate))


@torch.inference_mode()
def decoder_comb_shares(codec: nn.Module, seconds: float = 2.0, seed: int = 0) -> dict[float, float]:
    """Share of the decoder's output power on the comb of each rate it repeats at, for a white Gaussian latent.

    Parameters
    ----------
    codec: a codec with ``config: CodecConfig`` and ``decoder`` (latent ``Tensor[B, latent_dim, F]`` to waveform
        ``Tensor[B, channels, F * hop_length]``), e.g. ``s2slib.codec.model.Codec``; trained or fresh.
    seconds: length of the decoded signal; the latent has ``round(seconds * frame_rate)`` frames.
    seed: seed of the latent, so two decoders can be compared on the same input.

    Returns
    -------
    ``{rate_hz: share}`` for every rate of ``codec.config.comb_frequencies()``: :func:`s2slib.metrics.comb_share`
    of the first channel of the output (power within the default width of multiples of ``rate_hz``, over all
    power). Compare with :func:`white_noise_comb_shares` of the same config, seconds and seed.
    """
    config = codec.config
    param = next(codec.parameters())
    generator = torch.Generator().manual_seed(seed)
    latent = torch.randn(1, config.latent_dim, _frames(config, seconds), generator=generator)  # (1, D, F)
    wav = codec.decoder(latent.to(param.device, param.dtype))  # (1, channels, F * hop)
    signal = wav[0, 0].float().cpu().numpy()  # (F * hop,)
    return {rate: comb_share(signal, config.sample_rate, rate) for rate in config.comb_frequencies()}


def white_noise_comb_shares(config: CodecConfig, seconds: float = 2.0, seed: int = 0) -> dict[float, float]:
    """What :func:`decoder_comb_shares` would report for white Gaussian noise of the same length: the floor a comb
    share is read against (the share of the spectrum the comb's bands cover). ``{rate_hz: share}``."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(_frames(config, seconds) * config.hop_length, generator=generator).numpy()  # (F * hop,)
    return {rate: comb_share(noise, config.sample_rate, rate) for rate in config.comb_frequencies()}
