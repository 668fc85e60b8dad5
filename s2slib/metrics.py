"""Objective measures of audio quality and of codebook use, shared by every notebook.

Waveform metrics take a reference ``ref`` and an estimate ``est``: 1-D numpy arrays or torch tensors (a leading
axis of size 1, as in ``(1, T)`` or ``(1, 1, T)``, is squeezed away). If the lengths differ, both are trimmed to
the shorter, since a codec's output is often a few samples longer or shorter than its input. Each returns a float.

=============  =====================================================  ===========================
metric         what it measures                                      better
=============  =====================================================  ===========================
snr            energy of the error relative to the signal             higher (dB)
si_sdr         the same after the best rescaling of ``est``           higher (dB)
mel_distance   multi-scale log-mel L1 (what the ear roughly weighs)   lower
stoi           short-time objective intelligibility, 0..1             higher
=============  =====================================================  ===========================
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import torch
from torch import Tensor

_EPS = 1e-12


def _as_1d(x, name: str) -> np.ndarray:
    """``x`` (numpy or torch, 1-D or with size-1 leading axes) as a float64 numpy vector."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    while x.ndim > 1 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-D waveform (T,), got shape {x.shape}; pass one channel of one clip.")
    if x.size == 0:
        raise ValueError(f"{name} is empty.")
    return x


def _aligned(ref, est) -> tuple[np.ndarray, np.ndarray]:
    ref, est = _as_1d(ref, "ref"), _as_1d(est, "est")
    n = min(ref.size, est.size)
    return ref[:n], est[:n]


def snr(ref, est) -> float:
    """Signal-to-noise ratio in dB: ``10 log10(sum ref^2 / sum (ref - est)^2)``.

    Identical signals give a large finite value (a 1e-12 floor keeps the logarithm finite).
    """
    ref, est = _aligned(ref, est)
    return float(10 * np.log10((np.sum(ref**2) + _EPS) / (np.sum((ref - est) ** 2) + _EPS)))


def si_sdr(ref, est) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019, "SDR - half-baked or well done?").

    Both signals are made zero-mean; then ``target = alpha * ref`` with ``alpha = <est, ref> / ||ref||^2`` (the
    projection of ``est`` on ``ref``) and ``SI-SDR = 10 log10(||target||^2 / ||est - target||^2)``. Multiplying
    ``est`` by any non-zero constant leaves it unchanged, so a codec is not punished for a gain error.
    """
    ref, est = _aligned(ref, est)
    ref = ref - ref.mean()
    est = est - est.mean()
    alpha = np.dot(est, ref) / (np.dot(ref, ref) + _EPS)
    target = alpha * ref
    noise = est - target
    return float(10 * np.log10((np.sum(target**2) + _EPS) / (np.sum(noise**2) + _EPS)))


@functools.lru_cache(maxsize=4)
def _mel_loss(sample_rate: int):
    from s2slib.codec.losses import MultiScaleMelLoss  # imported here: the codec package imports this module

    return MultiScaleMelLoss(sample_rate).eval()


def mel_distance(ref, est, sample_rate: int) -> float:
    """Multi-scale log-mel distance: ``mean_s mean |log10 M_s(ref) - log10 M_s(est)|`` over several window sizes.

    ``M_s`` is a magnitude mel spectrogram with window ``s``; the scales and the floor are those of
    :class:`s2slib.codec.losses.MultiScaleMelLoss` (the codec's training loss), so the number is comparable to
    the training curves. 0 for identical signals.
    """
    ref, est = _aligned(ref, est)
    ref_t = torch.from_numpy(ref.astype(np.float32))[None, None]  # (1, 1, T)
    est_t = torch.from_numpy(est.astype(np.float32))[None, None]  # (1, 1, T)
    with torch.inference_mode():
        return float(_mel_loss(int(sample_rate))(ref_t, est_t))


STOI_MIN_SECONDS = 0.4  # pystoi needs 30 frames of 25.6 ms with 50 % overlap after removing silent frames


def stoi(ref, est, sample_rate: int, extended: bool = False) -> float:
    """Short-Time Objective Intelligibility (Taal et al. 2011), via ``pystoi``; ``extended`` gives ESTOI.

    Signals are resampled to 10 kHz inside pystoi, split into 25.6 ms frames, silent frames (40 dB below the
    loudest) dropped, and the correlation of one-third-octave band envelopes over 384 ms segments is averaged:
    about 1 for an intelligible copy of ``ref``, lower as intelligibility drops.

    A clip with fewer than 30 non-silent frames (about 0.4 s) has no defined STOI; pystoi would return 1e-5,
    which reads as "unintelligible". This function warns and returns ``nan`` instead, so averages can skip it.
    """
    from pystoi import stoi as _pystoi  # imported here so the other metrics work without pystoi

    ref, est = _aligned(ref, est)
    if ref.size < STOI_MIN_SECONDS * sample_rate:
        warnings.warn(
            f"stoi: clip of {ref.size / sample_rate:.2f} s is too short (STOI needs about {STOI_MIN_SECONDS} s of "
            "speech); returning nan.", RuntimeWarning, stacklevel=2,
        )
        return float("nan")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = _pystoi(ref, est, int(sample_rate), extended=extended)
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        warnings.warn(
            "stoi: fewer than 30 non-silent frames (the clip is mostly silence); returning nan.",
            RuntimeWarning, stacklevel=2,
        )
        return float("nan")
    return float(value)


def codebook_usage(codes, codebook_size: int) -> dict[str, Tensor]:
    """How much of each codebook a batch of codes uses.

    Parameters
    ----------
    codes: integer codes, ``(B, n_q, T)`` or ``(n_q, T)`` (numpy or torch).
    codebook_size: entries per codebook ``K``.

    Returns
    -------
    ``{"usage": Tensor[n_q], "perplexity": Tensor[n_q]}`` (float32, on the codes' device):
    ``usage`` is the fraction of the ``K`` entries that occur at least once; ``perplexity`` is
    ``exp(-sum_k p_k log p_k)`` of the code histogram ``p``: ``K`` when every entry is equally frequent, 1 when a
    single entry is used. Perplexity well below ``K`` means bits are wasted.
    """
    codes = torch.as_tensor(codes)
    if codes.ndim == 2:
        codes = codes[None]  # (1, n_q, T)
    if codes.ndim != 3:
        raise ValueError(f"codes must have shape (B, n_q, T) or (n_q, T), got {tuple(codes.shape)}.")
    n_q = codes.shape[1]
    flat = codes.transpose(0, 1).reshape(n_q, -1).long()  # (n_q, B*T)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= codebook_size):
        raise ValueError(f"codes must lie in [0, {codebook_size}), got [{int(flat.min())}, {int(flat.max())}].")
    offsets = torch.arange(n_q, device=flat.device)[:, None] * codebook_size  # one histogram per level in one bincount
    counts = torch.bincount((flat + offsets).reshape(-1), minlength=n_q * codebook_size)
    counts = counts.view(n_q, codebook_size).float()  # (n_q, K)
    p = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(dim=1)  # (n_q,) nats
    return {"usage": (counts > 0).float().mean(dim=1), "perplexity": entropy.exp()}


def bitrate_kbps(n_q: int, codebook_size: int, frame_rate: float) -> float:
    """Bit rate of ``n_q`` codebooks of ``codebook_size`` entries at ``frame_rate`` frames/s, in kbit/s:
    ``n_q * log2(codebook_size) * frame_rate / 1000`` (8 levels x 10 bits x 200 Hz = 16 kbps)."""
    return n_q * math.log2(codebook_size) * frame_rate / 1000.0


def evaluate_pair(ref, est, sample_rate: int) -> dict[str, float]:
    """All waveform metrics of ``est`` against ``ref``: ``{"snr", "si_sdr", "mel_distance", "stoi"}``."""
    return {
        "snr": snr(ref, est),
        "si_sdr": si_sdr(ref, est),
        "mel_distance": mel_distance(ref, est, sample_rate),
        "stoi": stoi(ref, est, sample_rate),
    }
