"""Discriminators for adversarial codec training: multi-period (waveform) and multi-scale STFT (spectrogram).

- **Multi-period discriminator** (MPD, HiFi-GAN: Kong et al. 2020). For each period ``p`` in (2, 3, 5, 7, 11) the
  waveform ``(B, 1, T)`` is folded into a 2-D grid ``(B, 1, T / p, p)``: column ``j`` holds samples ``j, j + p,
  j + 2p, ...``. Convolutions with kernels ``(k, 1)`` then compare samples exactly one period apart, which is where
  periodic artefacts (a buzz at the wrong pitch, smeared harmonics) show. Prime periods overlap as little as possible.
- **Multi-scale STFT discriminator** (MS-STFTD, EnCodec: Défossez et al. 2022). For each FFT size in
  (2048, 1024, 512) the complex STFT, real and imaginary parts as two channels ``(B, 2, frames, freqs)``, goes
  through 2-D convolutions dilated along time. Long windows see fine frequency detail (harmonics), short ones see
  timing (onsets); the complex input lets it judge phase, which magnitude losses ignore.

Each sub-discriminator returns its logits and the feature maps of every layer (for the feature-matching loss).
Shapes are noted per layer; ``forward(wav)`` returns ``(logits: list[Tensor], features: list[list[Tensor]])`` with
one entry per sub-discriminator.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from s2slib.codec.config import dataclass_from_dict


@dataclass
class DiscriminatorConfig:
    """Sizes of both discriminators (the seed design by default)."""

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)  # MPD periods
    mpd_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)  # channels of the MPD's strided layers
    fft_sizes: tuple[int, ...] = (2048, 1024, 512)  # MS-STFTD window sizes (hop = fft / 4)
    stft_channels: int = 32  # channels of every MS-STFTD layer
    stft_dilations: tuple[int, ...] = (1, 2, 4)  # time dilations of the MS-STFTD's middle layers
    leaky_slope: float = 0.1

    def __post_init__(self) -> None:
        self.periods = tuple(self.periods)
        self.mpd_channels = tuple(self.mpd_channels)
        self.fft_sizes = tuple(self.fft_sizes)
        self.stft_dilations = tuple(self.stft_dilations)
        if not self.periods and not self.fft_sizes:
            raise ValueError("DiscriminatorConfig needs at least one period or one FFT size")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DiscriminatorConfig":
        return dataclass_from_dict(cls, data)

    @classmethod
    def seed(cls) -> "DiscriminatorConfig":
        """HiFi-GAN's MPD widths and EnCodec's MS-STFTD at FFT sizes 2048, 1024, 512."""
        return cls()

    @classmethod
    def laptop(cls) -> "DiscriminatorConfig":
        """The same periods and scales with narrow layers, so a CPU step stays affordable."""
        return cls(mpd_channels=(16, 32, 64, 128, 128), stft_channels=16)

    @classmethod
    def tiny(cls) -> "DiscriminatorConfig":
        """For unit tests: every period and scale, a handful of channels."""
        return cls(mpd_channels=(4, 8, 8, 8, 8), stft_channels=4)

    @classmethod
    def preset(cls, name: str) -> "DiscriminatorConfig":
        presets = {"seed": cls.seed, "laptop": cls.laptop, "tiny": cls.tiny}
        if name not in presets:
            raise ValueError(f"unknown discriminator preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]()


def _convolve(x: Tensor, layers: nn.ModuleList, out: nn.Module, slope: float) -> tuple[Tensor, list[Tensor]]:
    """Run a branch's layers with leaky ReLUs, keeping every layer's output for feature matching: returns the
    flattened logits ``(B, n)`` and the feature maps."""
    features = []
    for layer in layers:
        x = F.leaky_relu(layer(x), slope)
        features.append(x)
    x = out(x)
    features.append(x)
    return x.flatten(1), features


class PeriodDiscriminator(nn.Module):
    """One MPD branch: fold the waveform by ``period`` and look along each column with ``(5, 1)`` kernels."""

    def __init__(self, period: int, channels: tuple[int, ...], slope: float):
        super().__init__()
        self.period = period
        self.slope = slope
        layers, c_in = [], 1
        for i, c in enumerate(channels):
            stride = (3, 1) if i < len(channels) - 1 else (1, 1)
            layers.append(weight_norm(nn.Conv2d(c_in, c, (5, 1), stride, padding=(2, 0))))
            c_in = c
        self.layers = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(c_in, 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        B, C, T = wav.shape
        x = F.pad(wav, (0, -T % self.period), mode="reflect" if T > self.period else "constant")
        x = x.view(B, C, -1, self.period)  # (B, 1, T / period, period): column j = samples j, j + p, ...
        return _convolve(x, self.layers, self.out, self.slope)  # logits (B, frames * period), features


class STFTDiscriminator(nn.Module):
    """One MS-STFTD branch: 2-D convolutions over the complex spectrogram ``(B, 2, frames, n_fft // 2 + 1)``."""

    def __init__(self, n_fft: int, channels: int, dilations: tuple[int, ...], slope: float):
        super().__init__()
        self.n_fft, self.hop = n_fft, n_fft // 4
        self.slope = slope
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layers = [weight_norm(nn.Conv2d(2, channels, (3, 9), padding=(1, 4)))]
        for d in dilations:  # dilated along time, stride 2 along frequency
            layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(d, 4), dilation=(d, 1))))
        layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.layers = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        spec = torch.stft(wav.squeeze(1).float(), self.n_fft, self.hop, window=self.window, normalized=True,
                          return_complex=True)  # (B, freqs, frames)
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # (B, 2, frames, freqs)
        return _convolve(x, self.layers, self.out, self.slope)


class Discriminators(nn.Module):
    """All sub-discriminators of :class:`DiscriminatorConfig`: MPD branches first, then MS-STFTD branches.

    ``forward(wav: Tensor[B, 1, T])`` -> ``(logits, features)``: ``logits[i]`` is ``(B, n_i)``; ``features[i]`` is the
    list of that branch's layer outputs.
    """

    def __init__(self, config: DiscriminatorConfig | None = None):
        super().__init__()
        self.config = config or DiscriminatorConfig()
        c = self.config
        self.branches = nn.ModuleList(
            [PeriodDiscriminator(p, c.mpd_channels, c.leaky_slope) for p in c.periods]
            + [STFTDiscriminator(n, c.stft_channels, c.stft_dilations, c.leaky_slope) for n in c.fft_sizes]
        )
        self.names = [f"mpd_p{p}" for p in c.periods] + [f"stft_{n}" for n in c.fft_sizes]

    def forward(self, wav: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        logits, features = [], []
        for branch in self.branches:
            y, f = branch(wav)
            logits.append(y)
            features.append(f)
        return logits, features

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
