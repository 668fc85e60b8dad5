"""Pitch (F0) and voicing of each codec frame, for codec v2's pitch-locked iSTFT head.

A voiced sound is a sum of harmonics at whole multiples of its fundamental frequency F0. If the decoder knows F0, it
can turn each STFT bin's phase at the rate of the harmonic nearest to that bin, frame after frame, instead of at the
bin's own centre frequency; the harmonics then come out at the speaker's pitch and not on a comb of bin centres
(:class:`s2slib.codec.stft_io.ISTFTHead`, ``phase="pitch"``). This module measures F0 and voicing on the training
audio, frame by frame, as the target the decoder learns to predict from the codes.

F0 comes from YIN (de Cheveigné & Kawahara, "YIN, a fundamental frequency estimator for speech and music", JASA 2002),
batched in torch: for each frame, the cumulative-mean-normalised difference function ``d'(tau)`` over the lags of
``fmin .. fmax``; the first dip below ``threshold`` (else the deepest one), refined by a parabola. A frame is voiced
where that dip is below ``voicing_threshold`` (a periodic frame: near 0; noise: near 1) and the frame is within
``floor_db`` of the clip's loudest frame. The frames are the codec's: frame ``t`` holds the ``n_fft`` samples ending
at ``(t + 1) * hop`` (:class:`s2slib.codec.stft_io.CausalSTFT`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

F0_MIN_HZ, F0_MAX_HZ = 50.0, 500.0  # the range the head can say (the tracker looks at fmin..fmax inside it)


def f0_from_logit(logit: Tensor) -> Tensor:
    """The pitch head's F0 channel to Hz: ``F0_MIN_HZ * (F0_MAX_HZ / F0_MIN_HZ) ** sigmoid(logit)`` (50 to 500 Hz,
    even steps in octaves)."""
    return F0_MIN_HZ * (F0_MAX_HZ / F0_MIN_HZ) ** torch.sigmoid(logit)


def causal_frames(wav: Tensor, hop: int, n_fft: int) -> Tensor:
    """``wav: Tensor[B, T]`` (``T`` a multiple of ``hop``) -> ``Tensor[B, T // hop, n_fft]``: frame ``t`` is the
    ``n_fft`` samples ending at ``(t + 1) * hop``, zeros before the start."""
    return F.pad(wav, (n_fft - hop, 0)).unfold(-1, n_fft, hop)


def frame_spectrum(frames: Tensor, window: Tensor | None = None) -> Tensor:
    """The codec's analysis of ``frames: Tensor[..., n_fft]``: the orthonormal ``rfft`` of each frame times a
    periodic Hann ``window`` (made here when not given), ``Tensor[..., n_fft // 2 + 1]`` complex."""
    n_fft = frames.shape[-1]
    if window is None:
        window = torch.hann_window(n_fft, periodic=True, device=frames.device)
    return torch.fft.rfft(frames * window, norm="ortho")


def causal_spectrum(wav: Tensor, hop: int, n_fft: int) -> Tensor:
    """``wav: Tensor[B, T]`` (``T`` a multiple of ``hop``) -> ``Tensor[B, T // hop, n_fft // 2 + 1]`` complex: the
    spectrum of each causal frame (:func:`causal_frames`, :func:`frame_spectrum`), as codec v2's front end sees it."""
    return frame_spectrum(causal_frames(wav.float(), hop, n_fft))


@torch.no_grad()
def frame_pitch(wav: Tensor, sample_rate: int, hop: int, n_fft: int, fmin: float = 60.0, fmax: float = 400.0,
                threshold: float = 0.15, voicing_threshold: float = 0.3,
                floor_db: float = 40.0) -> tuple[Tensor, Tensor]:
    """F0 in Hz and voicing of each codec frame.

    Parameters
    ----------
    wav: ``Tensor[B, 1, T]`` or ``Tensor[B, T]``, ``T`` a multiple of ``hop``.
    sample_rate, hop, n_fft: the codec's framing (16000, 320, 640 for codec v2).
    fmin, fmax: the F0 range searched. The frame must hold ``sample_rate / fmin`` samples of lag plus some to
        compare: ``n_fft`` of 640 at 16 kHz leaves 373 samples at 60 Hz.
    threshold: YIN's absolute threshold on ``d'``.
    voicing_threshold: frames whose dip is above this are unvoiced.
    floor_db: frames this far below the clip's loudest are unvoiced (silence and breath).

    Returns
    -------
    ``(f0, voiced)``: ``Tensor[B, F]`` float32 Hz (unvoiced frames hold their best guess anyway) and ``Tensor[B, F]``
    bool.
    """
    if wav.ndim == 3:
        wav = wav[:, 0]
    if wav.ndim != 2:
        raise ValueError(f"frame_pitch takes (B, 1, T) or (B, T) audio, got {tuple(wav.shape)}.")
    if not 0 < fmin < fmax < sample_rate / 2:
        raise ValueError(f"need 0 < fmin < fmax < sample_rate / 2, got fmin={fmin}, fmax={fmax}.")
    tau_min, tau_max = int(sample_rate // fmax), int(math.ceil(sample_rate / fmin))
    width = n_fft - tau_max - 1  # samples compared at each lag (lags up to tau_max + 1 for the parabola)
    if width < tau_max // 2:
        raise ValueError(f"a frame of {n_fft} samples is too short for fmin={fmin} Hz at {sample_rate} Hz "
                         f"(lags up to {tau_max} need at least {tau_max + tau_max // 2} samples).")
    x = causal_frames(wav.float(), hop, n_fft)  # (B, F, n_fft)
    n = 1 << (n_fft + width - 1).bit_length()  # FFT size for linear (not circular) correlation
    head = torch.fft.rfft(x[..., :width], n)
    corr = torch.fft.irfft(head.conj() * torch.fft.rfft(x, n), n)[..., : tau_max + 2]  # (B, F, tau_max + 2)
    power = F.pad(torch.cumsum(x * x, dim=-1), (1, 0))  # (B, F, n_fft + 1): power[i] = sum of x[:i]^2
    lags = torch.arange(tau_max + 2, device=x.device)
    shifted = power[..., lags + width] - power[..., lags]  # sum of x[tau : tau + width]^2
    diff = (power[..., width:width + 1] + shifted - 2 * corr).clamp_min(0)  # (B, F, tau_max + 2), d(0) = 0
    running = torch.cumsum(diff[..., 1:], dim=-1)  # sum of d(1..tau)
    cmnd = torch.ones_like(diff)
    cmnd[..., 1:] = diff[..., 1:] * lags[1:] / running.clamp_min(1e-12)
    search = cmnd[..., tau_min: tau_max + 1]  # (B, F, L)
    nxt = cmnd[..., tau_min + 1: tau_max + 2]
    dips = (search < threshold) & (search <= nxt)  # below threshold and a local minimum
    first = torch.argmax(dips.int(), dim=-1)  # first dip (0 where none)
    best = torch.where(dips.any(dim=-1), first, torch.argmin(search, dim=-1)) + tau_min  # (B, F)
    # a parabola through d'(tau - 1), d'(tau), d'(tau + 1) refines the lag below one sample
    at = lambda k: cmnd.gather(-1, (best + k).clamp(1, tau_max + 1)[..., None])[..., 0]  # noqa: E731
    left, mid, right = at(-1), at(0), at(1)
    curve = left - 2 * mid + right
    shift = torch.where(curve > 1e-9, 0.5 * (left - right) / curve.clamp_min(1e-9), torch.zeros_like(curve))
    f0 = sample_rate / (best.float() + shift.clamp(-1, 1))
    rms = x.pow(2).mean(dim=-1).sqrt()  # (B, F)
    loud = rms > rms.amax(dim=-1, keepdim=True) * 10 ** (-floor_db / 20)
    voiced = (mid < voicing_threshold) & loud & (rms > 1e-4)
    return f0.clamp(F0_MIN_HZ, F0_MAX_HZ), voiced


def pitch_loss(logits: Tensor, f0: Tensor, voiced: Tensor) -> dict[str, Tensor]:
    """How far the head's pitch channels are from the measured pitch.

    ``logits: Tensor[B, 2, F]`` (F0 then voicing, as :meth:`s2slib.codec.stft_io.ISTFTHead.pitch_logits` returns them), ``f0, voiced:
    Tensor[B, F]`` from :func:`frame_pitch`. Returns ``{"f0": L1 in octaves over the voiced frames, "voicing":
    binary cross-entropy over all frames}`` (scalars; ``f0`` is 0 in a batch without voiced frames).
    """
    logits = logits.float()
    pred = torch.log2(f0_from_logit(logits[:, 0]))
    err = (pred - torch.log2(f0)).abs()
    mask = voiced.float()
    return {"f0": (err * mask).sum() / mask.sum().clamp_min(1.0),
            "voicing": F.binary_cross_entropy_with_logits(logits[:, 1], mask)}
