"""Reconstruction losses of the codec: multi-scale mel, multi-resolution STFT and waveform L1.

A single STFT trades time resolution for frequency resolution; comparing spectra at several window sizes at once
removes the artefacts one size alone lets through (Yamamoto et al. 2020, Parallel WaveGAN; DAC, Kumar et al. 2023).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from s2slib.codec.config import dataclass_from_dict


def _as_batch(wav: Tensor) -> Tensor:
    """``(B, 1, T)`` or ``(B, T)`` -> ``(B, T)`` float32 (spectra are computed in float32, even under autocast)."""
    if wav.ndim == 3:
        if wav.shape[1] != 1:
            raise ValueError(f"losses take mono audio (B, 1, T), got {tuple(wav.shape)}.")
        wav = wav[:, 0]  # (B, T)
    if wav.ndim != 2:
        raise ValueError(f"losses take (B, 1, T) or (B, T) waveforms, got {tuple(wav.shape)}.")
    return wav.float()


def _check_pair(wav: Tensor, wav_hat: Tensor) -> tuple[Tensor, Tensor]:
    wav, wav_hat = _as_batch(wav), _as_batch(wav_hat)
    if wav.shape != wav_hat.shape:
        raise ValueError(
            f"reference and estimate must have the same shape, got {tuple(wav.shape)} and {tuple(wav_hat.shape)}; "
            "trim the longer one first."
        )
    return wav, wav_hat


def waveform_l1(wav: Tensor, wav_hat: Tensor) -> Tensor:
    """Mean absolute sample difference ``mean |wav - wav_hat|``; ``wav, wav_hat: Tensor[B, 1, T]`` -> scalar."""
    wav, wav_hat = _check_pair(wav, wav_hat)
    return F.l1_loss(wav_hat, wav)


class MultiScaleMelLoss(nn.Module):
    """L1 between log-mel spectrograms at several window sizes (DAC's mel reconstruction loss).

    ``L = mean_s mean |log10 max(M_s(wav), floor) - log10 max(M_s(wav_hat), floor)|`` where ``M_s`` is a magnitude
    mel spectrogram with a Hann window of ``s`` samples, hop ``s / 4`` and ``n_mels[s]`` bands: the small windows
    judge transients, the large ones pitch and harmonics. Band counts grow with the window so that no mel band is
    narrower than an FFT bin. Signals are zero-padded at the edges (``center=True``), so any length works.

    Shapes: ``wav, wav_hat: Tensor[B, 1, T]`` (or ``(B, T)``) -> scalar.
    """

    def __init__(self, sample_rate: int, window_lengths=(64, 128, 256, 512, 1024, 2048),
                 n_mels=(5, 10, 20, 40, 80, 160), floor: float = 1e-5):
        super().__init__()
        if len(window_lengths) != len(n_mels):
            raise ValueError(f"one n_mels per window length: got {len(window_lengths)} windows, {len(n_mels)} n_mels.")
        self.floor = floor
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=w, win_length=w, hop_length=w // 4, n_mels=m, power=1.0,
                center=True, pad_mode="constant",
            )
            for w, m in zip(window_lengths, n_mels)
        )

    def forward(self, wav: Tensor, wav_hat: Tensor) -> Tensor:
        wav, wav_hat = _check_pair(wav, wav_hat)  # (B, T) each
        with torch.autocast(device_type=wav.device.type, enabled=False):
            loss = wav.new_zeros(())
            for mel in self.mels:
                ref = mel(wav).clamp_min(self.floor).log10()  # (B, n_mels, frames)
                est = mel(wav_hat).clamp_min(self.floor).log10()
                loss = loss + F.l1_loss(est, ref)
        return loss / len(self.mels)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence plus log-magnitude L1 at several FFT sizes (Yamamoto et al. 2020, Parallel WaveGAN).

    For each FFT size ``n`` (Hann window ``n``, hop ``n / 4``), with ``S`` and ``S_hat`` the STFT magnitudes::

        spectral convergence = ||S - S_hat||_F / ||S||_F          (norms over the whole batch)
        log magnitude        = mean |log S - log S_hat|

    and the loss is the mean over sizes of their sum. Spectral convergence weighs the loud (harmonic) parts,
    the log term the quiet ones. Taking the norms over the batch, not per example, keeps one silent clip from
    dividing by (almost) zero.

    Shapes: ``wav, wav_hat: Tensor[B, 1, T]`` (or ``(B, T)``) -> scalar.
    """

    def __init__(self, fft_sizes=(512, 1024, 2048), eps: float = 1e-7):
        super().__init__()
        self.fft_sizes = tuple(fft_sizes)
        self.eps = eps
        for n in self.fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def _magnitude(self, wav: Tensor, n: int) -> Tensor:
        spec = torch.stft(wav, n, hop_length=n // 4, win_length=n, window=getattr(self, f"window_{n}"),
                          center=True, pad_mode="constant", return_complex=True)  # (B, n // 2 + 1, frames)
        return spec.abs().clamp_min(self.eps)

    def forward(self, wav: Tensor, wav_hat: Tensor) -> Tensor:
        wav, wav_hat = _check_pair(wav, wav_hat)  # (B, T) each
        with torch.autocast(device_type=wav.device.type, enabled=False):
            loss = wav.new_zeros(())
            for n in self.fft_sizes:
                ref, est = self._magnitude(wav, n), self._magnitude(wav_hat, n)
                sc = torch.linalg.vector_norm(ref - est) / torch.linalg.vector_norm(ref)
                loss = loss + sc + F.l1_loss(est.log(), ref.log())
        return loss / len(self.fft_sizes)


@dataclass
class ReconstructionLossConfig:
    """Weights and scales of :class:`ReconstructionLoss`; a weight of 0 skips that term.

    The mel weight of 15 is DAC's, which puts the quantizer's commitment loss (weight 0.25 inside ``vq_loss``) in
    the same proportion as in DAC's training.
    """

    mel_weight: float = 15.0  # multi-scale log-mel L1
    stft_weight: float = 1.0  # multi-resolution STFT (spectral convergence + log magnitude)
    l1_weight: float = 1.0  # waveform L1
    mel_window_lengths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)  # samples
    mel_n_mels: tuple[int, ...] = (5, 10, 20, 40, 80, 160)  # mel bands per window length
    mel_floor: float = 1e-5  # magnitude floor before log10
    stft_fft_sizes: tuple[int, ...] = (512, 1024, 2048)  # FFT sizes of the STFT loss

    def __post_init__(self) -> None:
        self.mel_window_lengths = tuple(self.mel_window_lengths)
        self.mel_n_mels = tuple(self.mel_n_mels)
        self.stft_fft_sizes = tuple(self.stft_fft_sizes)
        if min(self.mel_weight, self.stft_weight, self.l1_weight) < 0:
            raise ValueError("ReconstructionLossConfig weights must be >= 0.")
        if len(self.mel_window_lengths) != len(self.mel_n_mels):
            raise ValueError("ReconstructionLossConfig: give one mel_n_mels entry per mel_window_lengths entry.")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ReconstructionLossConfig":
        return dataclass_from_dict(cls, data)


class ReconstructionLoss(nn.Module):
    """Weighted sum of :class:`MultiScaleMelLoss`, :class:`MultiResolutionSTFTLoss` and :func:`waveform_l1`.

    ``forward(wav, wav_hat)`` with ``Tensor[B, 1, T]`` inputs returns a dict of scalars: one entry per term with a
    non-zero weight (``"mel"``, ``"stft"``, ``"l1"``, unweighted) and ``"total"``, the weighted sum to minimise.
    """

    def __init__(self, sample_rate: int, config: ReconstructionLossConfig | None = None):
        super().__init__()
        self.config = config or ReconstructionLossConfig()
        c = self.config
        self.mel = (MultiScaleMelLoss(sample_rate, c.mel_window_lengths, c.mel_n_mels, c.mel_floor)
                    if c.mel_weight else None)
        self.stft = MultiResolutionSTFTLoss(c.stft_fft_sizes) if c.stft_weight else None

    def forward(self, wav: Tensor, wav_hat: Tensor) -> dict[str, Tensor]:
        terms: dict[str, Tensor] = {}
        total = wav_hat.new_zeros((), dtype=torch.float32)
        if self.mel is not None:
            terms["mel"] = self.mel(wav, wav_hat)
            total = total + self.config.mel_weight * terms["mel"]
        if self.stft is not None:
            terms["stft"] = self.stft(wav, wav_hat)
            total = total + self.config.stft_weight * terms["stft"]
        if self.config.l1_weight:
            terms["l1"] = waveform_l1(wav, wav_hat)
            total = total + self.config.l1_weight * terms["l1"]
        terms["total"] = total
        return terms


# ---------------------------------------------------------------------------------------------- adversarial losses
# Each takes the per-branch logits of :class:`s2slib.codec.discriminators.Discriminators` (a list of (B, n) tensors)
# and averages over branches, so adding a period or an FFT size does not change the loss scale.


def hinge_discriminator_loss(real: list[Tensor], fake: list[Tensor]) -> Tensor:
    """Hinge loss for the discriminator (Lim & Ye 2017, used by MelGAN and EnCodec):
    ``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``: real logits are pushed above 1, fake ones below -1, and
    logits already past their margin give no gradient."""
    return torch.stack([F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake)]).mean()


def hinge_generator_loss(fake: list[Tensor]) -> Tensor:
    """Generator side of the hinge game (EnCodec's form): ``mean(relu(1 - D(G(z))))``."""
    return torch.stack([F.relu(1 - f).mean() for f in fake]).mean()


def lsgan_discriminator_loss(real: list[Tensor], fake: list[Tensor]) -> Tensor:
    """Least-squares GAN (Mao et al. 2017, HiFi-GAN): ``mean((1 - D(x))^2) + mean(D(G(z))^2)``."""
    return torch.stack([(1 - r).pow(2).mean() + f.pow(2).mean() for r, f in zip(real, fake)]).mean()


def lsgan_generator_loss(fake: list[Tensor]) -> Tensor:
    """Generator side of LSGAN: ``mean((1 - D(G(z)))^2)``."""
    return torch.stack([(1 - f).pow(2).mean() for f in fake]).mean()


ADVERSARIAL_LOSSES = {
    "hinge": (hinge_discriminator_loss, hinge_generator_loss),
    "lsgan": (lsgan_discriminator_loss, lsgan_generator_loss),
}


def feature_matching_loss(real: list[list[Tensor]], fake: list[list[Tensor]]) -> Tensor:
    """L1 distance between the discriminators' feature maps on real and generated audio, each layer's distance
    divided by the mean magnitude of its real features (EnCodec's relative form, so every layer counts alike),
    averaged over layers and branches. The real features are detached: this trains the generator only."""
    terms = []
    for branch_real, branch_fake in zip(real, fake):
        for r, f in zip(branch_real, branch_fake):
            r = r.detach()
            terms.append((f - r).abs().mean() / (r.abs().mean() + 1e-8))
    return torch.stack(terms).mean()
