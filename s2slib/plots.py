"""Plots shared by the notebooks: waveforms and spectrograms drawn the same way everywhere."""

from __future__ import annotations

import numpy as np
import torch


def log_spectrogram(wav: np.ndarray, n_fft: int = 512, hop_length: int = 128) -> np.ndarray:
    """Log-magnitude STFT in dB: ``wav (T,)`` -> ``(n_fft // 2 + 1, frames)`` (Hann window)."""
    x = torch.as_tensor(np.asarray(wav, dtype=np.float32))
    spec = torch.stft(x, n_fft, hop_length, window=torch.hann_window(n_fft), return_complex=True)
    return (20 * torch.log10(spec.abs() + 1e-5)).numpy()


def draw_spectrogram(ax, wav: np.ndarray, sample_rate: int, title: str | None = None, floor_db: float = 80.0):
    """Draw the log spectrogram of ``wav`` on ``ax`` (time in s, frequency in kHz, ``floor_db`` of dynamic range)."""
    db = log_spectrogram(wav)
    seconds = len(wav) / sample_rate
    image = ax.imshow(db, origin="lower", aspect="auto", extent=(0, seconds, 0, sample_rate / 2000),
                      vmin=db.max() - floor_db, vmax=db.max(), cmap="magma")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("kHz")
    if title:
        ax.set_title(title, fontsize=9)
    return image


def draw_waveform(ax, wav: np.ndarray, sample_rate: int, title: str | None = None):
    """Draw ``wav`` against time on ``ax`` with a fixed [-1, 1] scale (so loudness differences show)."""
    t = np.arange(len(wav)) / sample_rate
    ax.plot(t, wav, linewidth=0.4)
    ax.set_xlim(0, t[-1] if len(t) else 1)
    ax.set_ylim(-1, 1)
    if title:
        ax.set_title(title, fontsize=9)
