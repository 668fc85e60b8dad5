"""Objective measures of audio quality and of codebook use, shared by every notebook.

Waveform metrics take a reference ``ref`` and an estimate ``est``: 1-D numpy arrays or torch tensors (a leading
axis of size 1, as in ``(1, T)`` or ``(1, 1, T)``, is squeezed away). If the lengths differ, both are trimmed to
the shorter, since a codec's output is often a few samples longer or shorter than its input. Each returns a float;
``nan`` (with a warning that says why) where the metric is undefined, e.g. STOI of a clip under 0.4 s.
:class:`MetricMeans` averages them over clips, leaving such values out and listing them, for JSON reports.

=============  =====================================================  ===========================
metric         what it measures                                      better
=============  =====================================================  ===========================
snr            energy of the error relative to the signal             higher (dB)
si_sdr         the same after the best rescaling of ``est``           higher (dB)
mel_distance   multi-scale log-mel L1 where there is sound, at a      lower
               fixed level (what the ear roughly weighs)
stoi           short-time objective intelligibility, 0..1             higher
comb_ratio     power at multiples of a decoder stage's rate that      1 (none added); higher is
               ``ref`` did not have (transposed-convolution tones)    worse
=============  =====================================================  ===========================

SNR and SI-SDR compare waveforms sample by sample, so a copy that sounds identical but is shifted by 1 ms or has
different phase scores badly on them (see :mod:`s2slib.reference_points`); mel distance and STOI ignore phase.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from s2slib.spectral import MEL_FLOOR, MultiScaleMel, floored_pair

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


MEL_DISTANCE_LEVEL_DBFS = -20.0  # both signals are scaled so that the reference has this RMS level
MEL_DISTANCE_FLOOR_DB = 60.0  # mel bins this far below the reference's loudest bin (per scale) count as silence


@functools.lru_cache(maxsize=4)
def _multi_scale_mel(sample_rate: int) -> MultiScaleMel:
    return MultiScaleMel(sample_rate).eval()  # the scales of the codec's mel loss (s2slib.spectral defaults)


def mel_distance(ref, est, sample_rate: int, floor_db: float = MEL_DISTANCE_FLOOR_DB) -> float:
    """Multi-scale log-mel distance that neither the level of a clip nor its silences change.

    1. **Level**: both signals are multiplied by the same gain, the one that brings ``ref`` to an RMS of
       ``MEL_DISTANCE_LEVEL_DBFS`` (-20 dBFS), so a quiet recording and a loud one of the same codec output score
       alike (a gain error of ``est`` relative to ``ref`` still counts).
    2. **Floor**: for each scale ``s`` of :class:`s2slib.spectral.MultiScaleMel` (windows 64 to 2048 samples, the
       codec's mel loss), magnitudes are raised to ``f_s = max(1e-5, max M_s(ref) * 10^(-floor_db / 20))``
       (:func:`s2slib.spectral.relative_floor`), the same floor for both.
    3. **Where there is sound**: ``d_s = mean |log10 M_s(ref) - log10 M_s(est)|`` over the mel bins and frames where
       ``ref`` *or* ``est`` is above ``f_s``. Padding silence in both is left out (it would dilute the mean), while
       noise the codec adds in a silence still counts.

    Returns ``mean_s d_s`` (0 for identical signals, and for two silences); in decades of magnitude (0.1 = about
    2 dB average error over the active bins).
    """
    ref, est = _aligned(ref, est)
    rms = math.sqrt(float(np.mean(ref**2)))
    gain = 10 ** (MEL_DISTANCE_LEVEL_DBFS / 20) / rms if rms > 0 else 1.0
    pair = torch.from_numpy(np.stack([ref, est]) * gain).float()  # (2, T): row 0 ref, row 1 est
    total = 0.0
    mel = _multi_scale_mel(int(sample_rate))
    with torch.inference_mode():
        spectra = mel(pair)  # one (2, n_mels, frames) per scale
        for spec in spectra:
            ref_mag, est_mag, floor = floored_pair(spec[:1], spec[1:], MEL_FLOOR, floor_db)  # (1, n_mels, frames)
            active = (ref_mag > floor) | (est_mag > floor)  # bins where either has sound
            if active.any():
                total += float((ref_mag.log10() - est_mag.log10()).abs()[active].mean())
    return total / len(spectra)


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


def comb_share(wav, sample_rate: int, spacing_hz: float, width_hz: float | None = None) -> float:
    """Share of ``wav``'s power lying within ``width_hz`` of the multiples of ``spacing_hz`` (a comb).

    A decoder that upsamples with transposed convolutions repeats a pattern at each stage's input rate, which adds
    fixed tones at the multiples of that rate (the "checkerboard" artefact, Odena et al. 2016; for audio, Pons et
    al. 2021, "Upsampling artifacts in neural audio synthesis"). This measures how much power sits on such a comb.

    Method: a Welch power spectral density (Hann windows, 50 % overlap, mean removed per segment) with segments of
    ``ceil(4 sample_rate / width_hz)`` samples, so a bin is at most ``width_hz / 4`` wide; each bin is weighted by
    the fraction of it lying inside a band ``[k spacing - width, k spacing + width)`` for ``k = 1, 2, ...`` with
    ``k spacing <= sample_rate / 2``; the weighted power is divided by the total power without the DC bin.
    White noise gives about ``2 width / spacing`` (0.08 at the default width).

    Parameters
    ----------
    wav: mono waveform ``(T,)`` (numpy or torch).
    spacing_hz: the comb's spacing, e.g. a decoder stage's input rate (200 Hz frames).
    width_hz: half-width of each band; default ``spacing_hz / 25`` (8 Hz at 200 Hz). Must be below half the spacing.

    Returns the share in [0, 1], or ``nan`` with a warning if the clip is shorter than one Welch segment
    (0.5 s at 200 Hz spacing) or has no power.
    """
    from scipy.signal import welch

    wav = _as_1d(wav, "wav")
    width = spacing_hz / 25 if width_hz is None else float(width_hz)
    nyquist = sample_rate / 2
    if not 0 < spacing_hz <= nyquist:
        raise ValueError(f"comb spacing must be in (0, {nyquist:g}] Hz (the Nyquist frequency), got {spacing_hz}.")
    if not 0 < width < spacing_hz / 2:
        raise ValueError(f"comb width must be in (0, spacing / 2) = (0, {spacing_hz / 2:g}) Hz so bands do not "
                         f"overlap, got {width}.")
    nperseg = math.ceil(4 * sample_rate / width)  # at least 4 bins per band half-width
    if wav.size < nperseg:
        warnings.warn(
            f"comb: clip of {wav.size / sample_rate:.2f} s is too short to resolve +-{width:g} Hz around multiples of "
            f"{spacing_hz:g} Hz (needs {nperseg / sample_rate:.2f} s); returning nan.", RuntimeWarning, stacklevel=2,
        )
        return float("nan")
    freqs, psd = welch(wav, fs=sample_rate, window="hann", nperseg=nperseg, noverlap=nperseg // 2,
                       detrend="constant")  # (nperseg // 2 + 1,) each
    df = freqs[1] - freqs[0]
    k = np.maximum(np.round(freqs / spacing_hz), 1)  # the nearest multiple (bands do not overlap)
    centre = k * spacing_hz
    overlap = np.minimum(freqs + df / 2, centre + width) - np.maximum(freqs - df / 2, centre - width)
    weight = np.where(centre <= nyquist, np.clip(overlap / df, 0.0, 1.0), 0.0)  # fraction of each bin in a band
    total = psd[1:].sum()  # DC bin excluded
    if not total > 0:
        warnings.warn("comb: the clip is silent (no power outside DC); returning nan.", RuntimeWarning, stacklevel=2)
        return float("nan")
    return float((weight[1:] * psd[1:]).sum() / total)


def comb_ratios(ref, est, sample_rate: int, spacings: Sequence[float]) -> dict[float, float]:
    """``{spacing: comb_share(est) / comb_share(ref)}`` for each spacing (Hz), the default width of :func:`comb_share`.

    1 means ``est`` has the same share of its power on that comb as ``ref``; a decoder adding tones at multiples of
    a stage's rate gives several (6.8 measured at 200 Hz on a codec with an audible buzz, against 0.6 at an
    unrelated 137 Hz). ``nan`` (warned) where :func:`comb_share` is undefined.
    """
    ref, est = _aligned(ref, est)
    out = {}
    for spacing in spacings:
        ref_share = comb_share(ref, sample_rate, spacing)
        est_share = comb_share(est, sample_rate, spacing)
        out[float(spacing)] = est_share / ref_share if ref_share > 0 else float("nan")
    return out


def comb_ratio(ref, est, sample_rate: int, spacings: Sequence[float]) -> float:
    """The largest of :func:`comb_ratios` over ``spacings``: the worst comb ``est`` adds (1: none).

    Pass the rates at which the decoder repeats itself, ``codec.config.comb_frequencies()`` for the course codec.
    ``nan`` if any spacing is undefined (a clip shorter than 0.5 s at 200 Hz spacing), so a short clip never
    silently drops the spacing that matters most; use :func:`comb_ratios` for the value at each spacing.
    """
    if not len(spacings):
        raise ValueError("comb_ratio needs at least one spacing in Hz, e.g. codec.config.comb_frequencies().")
    values = list(comb_ratios(ref, est, sample_rate, spacings).values())
    return float("nan") if any(math.isnan(v) for v in values) else max(values)


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


PAIR_METRICS = ("snr", "si_sdr", "mel_distance", "stoi", "comb_ratio")


def pair_metric(name: str, ref, est, sample_rate: int, comb_spacings: Sequence[float] | None = None) -> float:
    """One waveform metric of ``est`` against ``ref`` by its name in :data:`PAIR_METRICS` (``comb_ratio`` needs
    ``comb_spacings``)."""
    if name == "snr":
        return snr(ref, est)
    if name == "si_sdr":
        return si_sdr(ref, est)
    if name == "mel_distance":
        return mel_distance(ref, est, sample_rate)
    if name == "stoi":
        return stoi(ref, est, sample_rate)
    if name == "comb_ratio":
        if not comb_spacings:
            raise ValueError("comb_ratio needs comb_spacings (Hz), e.g. codec.config.comb_frequencies().")
        return comb_ratio(ref, est, sample_rate, comb_spacings)
    raise ValueError(f"unknown metric {name!r}; the waveform metrics are {PAIR_METRICS}.")


def evaluate_pair(ref, est, sample_rate: int, comb_spacings: Sequence[float] | None = None) -> dict[str, float]:
    """All waveform metrics of ``est`` against ``ref``: ``{"snr", "si_sdr", "mel_distance", "stoi"}``, plus
    ``"comb_ratio"`` when ``comb_spacings`` (Hz) are given. Undefined values are ``nan`` (warned)."""
    names = PAIR_METRICS if comb_spacings else PAIR_METRICS[:-1]
    return {name: pair_metric(name, ref, est, sample_rate, comb_spacings) for name in names}


class MetricMeans:
    """Means of waveform metrics over clips, for reports that must stay valid JSON.

    ``add(clip, ref, est, sample_rate, names)`` computes each named metric (:func:`pair_metric`); a value that is not
    finite (STOI of a clip under 0.4 s, a comb on a clip under 0.5 s, a NaN in ``est``) is left out of its mean and
    listed under ``skipped[name]`` as ``"<clip>: <the warning that explained it>"``. :meth:`means` gives ``None``
    for a metric no clip defined, never ``nan``, so ``json.dumps(..., allow_nan=False)`` always works.
    """

    def __init__(self, names: Sequence[str] = PAIR_METRICS[:-1], comb_spacings: Sequence[float] | None = None):
        unknown = [n for n in names if n not in PAIR_METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; the waveform metrics are {PAIR_METRICS}.")
        self.names = tuple(names)
        self.comb_spacings = comb_spacings
        self.values: dict[str, list[float]] = {n: [] for n in self.names}
        self.skipped: dict[str, list[str]] = {}

    def add(self, clip: str, ref, est, sample_rate: int) -> dict[str, float]:
        """Measure one clip (``clip`` names it in ``skipped``); returns its values, ``nan`` where undefined."""
        row = {}
        for name in self.names:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value = float(pair_metric(name, ref, est, sample_rate, self.comb_spacings))
            row[name] = value
            if math.isfinite(value):
                self.values[name].append(value)
            else:
                reason = "; ".join(dict.fromkeys(str(w.message) for w in caught)) or f"{name} is {value}"
                self.skipped.setdefault(name, []).append(f"{clip}: {reason}")
        return row

    def means(self) -> dict[str, float | None]:
        """``{name: mean over the clips where it was defined, or None}``."""
        return {name: float(np.mean(v)) if v else None for name, v in self.values.items()}
