"""Spectral front ends shared by the codec's losses and the metrics: multi-scale mel and multi-resolution STFT
magnitudes, and the floor put under them before a logarithm.

Why several window sizes: a single STFT trades time resolution for frequency resolution; comparing spectra at several
sizes at once removes the artefacts one size alone lets through (Yamamoto et al. 2020, Parallel WaveGAN; Kumar et al.
2023, DAC).

Why a *relative* floor: ``log(magnitude)`` needs a floor, since digital silence (exact zeros, common in eSpeak output
and in zero-padded batches) has magnitude 0. With an absolute floor (1e-5), a silent reference bin sits at
``log10(1e-5) = -5`` and an estimate with a whisper of noise there (1e-3) is two decades away: the error is large,
and its gradient ``1 / (magnitude * ln 10)`` is larger still, so silent samples end up owning most of the gradient.
:func:`relative_floor` puts the floor ``floor_db`` below the loudest bin of the *reference*, per example and per scale
(``max(absolute_floor, peak * 10^(-floor_db / 20))``), and :func:`floored_pair` applies that same floor to reference
and estimate. Anything quieter than that is treated as silence by both, whatever the clip's level.

This module is the bottom layer: it imports nothing from :mod:`s2slib.codec` or :mod:`s2slib.metrics`, which both
build on it.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

MEL_WINDOW_LENGTHS = (64, 128, 256, 512, 1024, 2048)  # samples (DAC's mel loss scales)
MEL_N_MELS = (5, 10, 20, 40, 80, 160)  # mel bands per window: no band narrower than an FFT bin
STFT_FFT_SIZES = (512, 1024, 2048)  # FFT sizes of the multi-resolution STFT (Parallel WaveGAN)
MEL_FLOOR = 1e-5  # absolute floor under mel magnitudes (DAC's)
STFT_FLOOR = 1e-7  # absolute floor under STFT magnitudes


def mono_batch(wav: Tensor) -> Tensor:
    """``(B, 1, T)`` or ``(B, T)`` -> ``(B, T)`` float32 (spectra are computed in float32, even under autocast)."""
    if wav.ndim == 3:
        if wav.shape[1] != 1:
            raise ValueError(f"spectra take mono audio (B, 1, T), got {tuple(wav.shape)}; mix down or pick a channel.")
        wav = wav[:, 0]  # (B, T)
    if wav.ndim != 2:
        raise ValueError(f"spectra take (B, 1, T) or (B, T) waveforms, got {tuple(wav.shape)}.")
    return wav.float()


def relative_floor(ref_mag: Tensor, absolute_floor: float, floor_db: float | None) -> Tensor:
    """The magnitude floor of each example: ``max(absolute_floor, amax(ref_mag[b]) * 10^(-floor_db / 20))``.

    Parameters
    ----------
    ref_mag: ``Tensor[B, F, N]``, magnitudes (not power) of the reference, ``F`` bins by ``N`` frames.
    absolute_floor: the smallest floor, whatever the level (1e-5 for mel, 1e-7 for STFT magnitudes).
    floor_db: how far below the example's loudest bin the floor sits (60 dB: bins 1000x quieter than the peak count
        as silence). ``None`` or 0: the absolute floor alone (the behaviour before level-relative floors).

    Returns
    -------
    ``Tensor[B, 1, 1]``, detached: the floor is a threshold, not something to optimise.
    """
    if not floor_db:
        return ref_mag.new_full((ref_mag.shape[0], 1, 1), absolute_floor)
    if floor_db < 0:
        raise ValueError(f"floor_db is a distance below the peak and must be >= 0 (or None), got {floor_db}.")
    peak = ref_mag.detach().amax(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    return (peak * 10 ** (-floor_db / 20)).clamp_min(absolute_floor)


def floored_pair(ref_mag: Tensor, est_mag: Tensor, absolute_floor: float,
                 floor_db: float | None) -> tuple[Tensor, Tensor, Tensor]:
    """Reference and estimate magnitudes ``Tensor[B, F, N]`` raised to the reference's :func:`relative_floor`.

    Returns ``(ref, est, floor)``: both magnitudes with ``max(mag, floor)`` applied, ready for a logarithm, and the
    floor ``Tensor[B, 1, 1]``. The *same* floor is used for both, so a bin silent in both compares equal, and the
    estimate gets no gradient in bins where it is below the floor.
    """
    floor = relative_floor(ref_mag, absolute_floor, floor_db)  # (B, 1, 1)
    return torch.maximum(ref_mag, floor), torch.maximum(est_mag, floor), floor


class MultiScaleMel(nn.Module):
    """Magnitude mel spectrograms at several window sizes.

    Scale ``s`` uses a Hann window of ``window_lengths[s]`` samples, hop ``window / 4``, ``n_mels[s]`` bands (HTK
    mel scale, triangular filters of peak 1: torchaudio's defaults) and ``power=1`` (magnitudes). The small windows
    resolve transients, the large ones pitch and harmonics. Signals are zero-padded at the edges (``center=True``),
    so any length works, even one shorter than the largest window.

    Shapes: ``wav: Tensor[B, 1, T]`` (or ``(B, T)``) -> a list with one ``Tensor[B, n_mels[s], frames_s]`` per
    scale, ``frames_s = T // (window_lengths[s] // 4) + 1``, in float32 (autocast is turned off inside).
    """

    def __init__(self, sample_rate: int, window_lengths=MEL_WINDOW_LENGTHS, n_mels=MEL_N_MELS):
        super().__init__()
        if len(window_lengths) != len(n_mels):
            raise ValueError(f"one n_mels per window length: got {len(window_lengths)} windows, {len(n_mels)} n_mels.")
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=w, win_length=w, hop_length=w // 4, n_mels=m, power=1.0,
                center=True, pad_mode="constant",
            )
            for w, m in zip(window_lengths, n_mels)
        )

    def forward(self, wav: Tensor) -> list[Tensor]:
        wav = mono_batch(wav)  # (B, T)
        with torch.autocast(device_type=wav.device.type, enabled=False):
            return [mel(wav) for mel in self.mels]  # each (B, n_mels, frames)


class MultiResolutionSTFT(nn.Module):
    """STFT magnitudes at several FFT sizes (Yamamoto et al. 2020, Parallel WaveGAN).

    Size ``n`` uses a Hann window of ``n`` samples and hop ``n / 4``, zero-padded at the edges (``center=True``).

    Shapes: ``wav: Tensor[B, 1, T]`` (or ``(B, T)``) -> a list with one ``Tensor[B, n // 2 + 1, frames_n]`` per size,
    ``frames_n = T // (n // 4) + 1``, in float32 (autocast is turned off inside).
    """

    def __init__(self, fft_sizes=STFT_FFT_SIZES):
        super().__init__()
        self.fft_sizes = tuple(fft_sizes)
        for n in self.fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def spectra(self, wav: Tensor) -> list[Tensor]:
        """The complex STFTs, one ``Tensor[B, n // 2 + 1, frames_n]`` (complex64) per size."""
        wav = mono_batch(wav)  # (B, T)
        with torch.autocast(device_type=wav.device.type, enabled=False):
            return [
                torch.stft(wav, n, hop_length=n // 4, win_length=n, window=getattr(self, f"window_{n}"), center=True,
                           pad_mode="constant", return_complex=True)  # (B, n // 2 + 1, frames)
                for n in self.fft_sizes
            ]

    def forward(self, wav: Tensor) -> list[Tensor]:
        return [spec.abs() for spec in self.spectra(wav)]
