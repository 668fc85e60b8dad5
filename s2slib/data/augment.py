"""Augmentation of training crops: the rooms, microphones, channels and levels real recordings come through.

Why: a codec trained on clean eSpeak speech only reconstructs clean eSpeak speech well (STOI 0.83 on synthetic test
speech, 0.63 on real voices in the course's measurement). Real input has passed through a room (reverberation), a
microphone and a channel (uneven frequency response, band limits such as the telephone band), background noise and
an arbitrary recording level. :func:`augment` applies a random draw of those to a crop, in the order a recording
chain applies them:

1. **reverberation** (:func:`add_reverb`): a short room, RT60 0.1-0.4 s, a small wet share;
2. **equalisation** (:func:`eq_filter`): peaking and shelf filters, the colouring of a microphone or loudspeaker;
3. **band limits** (:func:`band_limit`): a low-pass, a high-pass, or the 300-3400 Hz telephone band;
4. **additive noise** (:func:`add_noise`): white or pink noise at a random signal-to-noise ratio;
5. **gain** (:func:`apply_gain`): the recording level;
6. **dither** (:func:`add_dither`): triangular noise near -75 dBFS, so no crop holds exact digital zeros (a codec
   that has only seen perfect silence in padding does odd things with a real microphone's noise floor);
7. a **peak guard** (:func:`peak_guard`): the result is scaled down if it would peak above ``peak_dbfs``, so
   augmentation never clips.

``augment(wav, sample_rate, config, rng)`` is a pure function of its inputs: every random choice comes from
``rng``, so the same generator state gives the same output (the loader derives one generator per crop from
``(seed, step, rank, index in batch)``, see :class:`s2slib.data.loader.CropSampler`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy import signal

TELEPHONE_BAND_HZ = (300.0, 3400.0)  # the classic narrowband telephone channel (ITU-T G.712)
# the AugmentConfig fields that switch a transform on (pink_p only picks the colour of noise that is already on)
TRANSFORM_PROBABILITIES = ("reverb_p", "eq_p", "lowpass_p", "highpass_p", "telephone_p", "noise_p", "gain_p",
                           "dither_p")


@dataclass
class AugmentConfig:
    """Per-transform probabilities (``*_p``, each drawn independently per crop) and parameter ranges ``(low, high)``.

    The defaults leave about a third of crops with no transform but dither, so the codec still sees clean speech
    most of the time. :meth:`none` turns every transform off.
    """

    reverb_p: float = 0.3  # chance of a synthetic room
    rt60_s: tuple[float, float] = (0.1, 0.4)  # reverberation time (decay by 60 dB), seconds
    reverb_wet: tuple[float, float] = (0.05, 0.3)  # share of the reverberant signal in the mix
    eq_p: float = 0.4  # chance of an equaliser (1 to eq_max_bands filters)
    eq_max_bands: int = 3  # peaking / low-shelf / high-shelf filters per equaliser
    eq_gain_db: tuple[float, float] = (-9.0, 9.0)  # boost or cut of each filter
    eq_freq_hz: tuple[float, float] = (80.0, 6000.0)  # centre or corner frequency (drawn log-uniformly)
    eq_q: tuple[float, float] = (0.5, 2.5)  # quality factor of peaking filters (shelves use 0.707)
    lowpass_p: float = 0.15  # chance of a low-pass (a duller microphone, a low-rate channel)
    lowpass_hz: tuple[float, float] = (3000.0, 7500.0)  # its cut-off (drawn log-uniformly, capped below Nyquist)
    highpass_p: float = 0.15  # chance of a high-pass (a small microphone's bass roll-off)
    highpass_hz: tuple[float, float] = (50.0, 300.0)  # its cut-off (drawn log-uniformly)
    telephone_p: float = 0.05  # chance of the 300-3400 Hz telephone band
    noise_p: float = 0.3  # chance of additive noise
    snr_db: tuple[float, float] = (15.0, 40.0)  # signal-to-noise ratio of that noise
    pink_p: float = 0.5  # share of noise that is pink (1/f) instead of white
    gain_p: float = 0.5  # chance of a level change
    gain_db: tuple[float, float] = (-18.0, 6.0)  # the level change (the peak guard limits boosts)
    dither_p: float = 1.0  # chance of dither
    dither_dbfs: tuple[float, float] = (-80.0, -70.0)  # RMS level of the dither, dB re full scale
    peak_dbfs: float = -1.0  # peak guard: output never peaks above this (the preprocessing ceiling)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_p") and not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{f.name} is a probability and must be in [0, 1], got {value}")
            if isinstance(value, (tuple, list)):
                if len(value) != 2 or value[0] > value[1]:
                    raise ValueError(f"AugmentConfig.{f.name} must be a range (low, high) with low <= high, "
                                     f"got {value}")
                setattr(self, f.name, (float(value[0]), float(value[1])))
        if self.eq_max_bands < 1:
            raise ValueError(f"AugmentConfig.eq_max_bands must be at least 1, got {self.eq_max_bands}")
        if self.peak_dbfs > 0:
            raise ValueError(f"AugmentConfig.peak_dbfs must be at most 0 dBFS (full scale), got {self.peak_dbfs}")

    @classmethod
    def none(cls) -> AugmentConfig:
        """Every transform off, all else as in the defaults: :func:`augment` returns its input unchanged."""
        return cls(**{name: 0.0 for name in TRANSFORM_PROBABILITIES})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (ranges as lists), for checkpoints and run records."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AugmentConfig:
        """The inverse of :meth:`to_dict`; an unknown key is an error that lists the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown AugmentConfig field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# ------------------------------------------------------------------------------------------------------ transforms


def apply_gain(wav: np.ndarray, gain_db: float) -> np.ndarray:
    """``wav (T,)`` scaled by ``gain_db`` decibels (its RMS changes by exactly that much)."""
    return wav * 10 ** (gain_db / 20)


def eq_filter(kind: str, freq_hz: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """One equaliser biquad as second-order sections ``(1, 6)`` for :func:`scipy.signal.sosfilt`.

    ``kind`` is ``"peak"`` (boost or cut ``gain_db`` around ``freq_hz``, bandwidth set by ``q``), ``"lowshelf"`` or
    ``"highshelf"`` (boost or cut everything below / above ``freq_hz``). Coefficients follow R. Bristow-Johnson's
    "Cookbook formulae for audio EQ biquad filter coefficients".
    """
    a = 10 ** (gain_db / 40)  # square root of the linear gain
    w0 = 2 * math.pi * freq_hz / sample_rate
    cos_w0, alpha = math.cos(w0), math.sin(w0) / (2 * q)
    if kind == "peak":
        b = [1 + alpha * a, -2 * cos_w0, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cos_w0, 1 - alpha / a]
    elif kind in ("lowshelf", "highshelf"):
        sign = 1 if kind == "lowshelf" else -1  # the high shelf mirrors the low shelf's cos(w0) terms
        k = 2 * math.sqrt(a) * alpha
        b = [a * ((a + 1) - sign * (a - 1) * cos_w0 + k), sign * 2 * a * ((a - 1) - sign * (a + 1) * cos_w0),
             a * ((a + 1) - sign * (a - 1) * cos_w0 - k)]
        den = [(a + 1) + sign * (a - 1) * cos_w0 + k, -sign * 2 * ((a - 1) + sign * (a + 1) * cos_w0),
               (a + 1) + sign * (a - 1) * cos_w0 - k]
    else:
        raise ValueError(f"unknown equaliser filter kind {kind!r}; use 'peak', 'lowshelf' or 'highshelf'")
    return np.array([[*(x / den[0] for x in b), 1.0, den[1] / den[0], den[2] / den[0]]])


def band_limit(wav: np.ndarray, sample_rate: int, low_hz: float | None = None, high_hz: float | None = None
               ) -> np.ndarray:
    """``wav (T,)`` through a Butterworth high-pass at ``low_hz`` (2nd order, the gentle roll-off of a small
    microphone) and/or low-pass at ``high_hz`` (8th order, the steep edge of a band-limited channel)."""
    out = wav
    if low_hz is not None:
        out = signal.sosfilt(signal.butter(2, low_hz, "highpass", fs=sample_rate, output="sos"), out)
    if high_hz is not None:
        out = signal.sosfilt(signal.butter(8, high_hz, "lowpass", fs=sample_rate, output="sos"), out)
    return out


def room_impulse_response(sample_rate: int, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: Gaussian noise under an exponential envelope that falls 60 dB in ``rt60_s``; ``(L,)``,
    ``L = rt60_s * sample_rate``, unit energy. (Late reverberation is well modelled as exponentially decaying noise,
    Schroeder 1962; a short one like this sounds like a small furnished room.)"""
    n = max(1, int(rt60_s * sample_rate))
    t = np.arange(n) / sample_rate
    envelope = np.exp(-3 * math.log(10) * t / rt60_s)  # amplitude 10^-3 (-60 dB) at t = rt60
    ir = rng.standard_normal(n) * envelope
    return ir / np.sqrt(np.sum(ir**2))


def add_reverb(wav: np.ndarray, sample_rate: int, rt60_s: float, wet: float, rng: np.random.Generator
               ) -> np.ndarray:
    """``(1 - wet) * wav + wet * (wav convolved with a room)``, cut to ``wav``'s length ``(T,)``."""
    reverberant = signal.fftconvolve(wav, room_impulse_response(sample_rate, rt60_s, rng))[: len(wav)]
    return (1 - wet) * wav + wet * reverberant


def coloured_noise(n: int, pink: bool, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise ``(n,)``: white (flat spectrum) or pink (power falling as 1/f, equal energy per octave)."""
    noise = rng.standard_normal(n)
    if pink:
        spectrum = np.fft.rfft(noise)
        f = np.arange(len(spectrum), dtype=np.float64)
        spectrum[1:] /= np.sqrt(f[1:])  # amplitude 1/sqrt(f) -> power 1/f
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def add_noise(wav: np.ndarray, snr_db: float, pink: bool, rng: np.random.Generator) -> np.ndarray:
    """``wav (T,)`` plus white or pink noise scaled so the signal-to-noise ratio is ``snr_db`` (silence: unchanged)."""
    signal_rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
    if signal_rms == 0.0:
        return wav
    return wav + coloured_noise(len(wav), pink, rng) * signal_rms * 10 ** (-snr_db / 20)


def add_dither(wav: np.ndarray, level_dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """``wav (T,)`` plus triangular (TPDF) dither of RMS ``level_dbfs``: the sum of two uniform noises, bounded at
    ``sqrt(6)`` times its RMS (about 8 dB above it), so -70 dBFS dither never peaks above -62 dBFS."""
    half_width = 10 ** (level_dbfs / 20) * math.sqrt(1.5)  # RMS of the sum of two U(-h, h) is h * sqrt(2/3)
    return wav + rng.uniform(-half_width, half_width, len(wav)) + rng.uniform(-half_width, half_width, len(wav))


def peak_guard(wav: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """``wav (T,)`` scaled down, if needed, so that its peak is at most ``peak_dbfs`` (never clipped)."""
    ceiling = 10 ** (peak_dbfs / 20)
    peak = float(np.max(np.abs(wav))) if len(wav) else 0.0
    return wav * (ceiling / peak) if peak > ceiling else wav


# ------------------------------------------------------------------------------------------------------ the draw


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def augment(wav: np.ndarray, sample_rate: int, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """A random recording chain applied to one crop (see the module docstring for the order and the reasons).

    ``wav``: float ``(T,)`` at ``sample_rate``; returns float32 ``(T,)``, peaking at most ``config.peak_dbfs``.
    Every random choice comes from ``rng`` (same generator state, same output). When no transform fires (as with
    :meth:`AugmentConfig.none`) the crop comes back unchanged.
    """
    if wav.ndim != 1:
        raise ValueError(f"augment takes one mono crop wav (T,), got shape {wav.shape}")
    c = config
    nyquist_cap = 0.45 * sample_rate  # keep filter frequencies clear of Nyquist at any sample rate
    out = wav.astype(np.float64)
    changed = False
    if rng.random() < c.reverb_p:
        out = add_reverb(out, sample_rate, rng.uniform(*c.rt60_s), rng.uniform(*c.reverb_wet), rng)
        changed = True
    if rng.random() < c.eq_p:
        bands = []
        for _ in range(int(rng.integers(1, c.eq_max_bands + 1))):
            kind = ("peak", "lowshelf", "highshelf")[int(rng.integers(3))]
            freq = min(_log_uniform(rng, *c.eq_freq_hz), nyquist_cap)
            q = rng.uniform(*c.eq_q) if kind == "peak" else 1 / math.sqrt(2)
            bands.append(eq_filter(kind, freq, rng.uniform(*c.eq_gain_db), q, sample_rate))
        out = signal.sosfilt(np.concatenate(bands), out)
        changed = True
    low_hz = high_hz = None
    if rng.random() < c.highpass_p:
        low_hz = _log_uniform(rng, *c.highpass_hz)
    if rng.random() < c.lowpass_p:
        high_hz = min(_log_uniform(rng, *c.lowpass_hz), nyquist_cap)
    if rng.random() < c.telephone_p:
        low_hz, high_hz = TELEPHONE_BAND_HZ[0], min(TELEPHONE_BAND_HZ[1], nyquist_cap)
    if low_hz is not None or high_hz is not None:
        out = band_limit(out, sample_rate, low_hz, high_hz)
        changed = True
    if rng.random() < c.noise_p:
        out = add_noise(out, rng.uniform(*c.snr_db), bool(rng.random() < c.pink_p), rng)
        changed = True
    if rng.random() < c.gain_p:
        out = apply_gain(out, rng.uniform(*c.gain_db))
        changed = True
    if rng.random() < c.dither_p:
        out = add_dither(out, rng.uniform(*c.dither_dbfs), rng)
        changed = True
    if not changed:
        return wav.astype(np.float32, copy=True)
    return peak_guard(out, c.peak_dbfs).astype(np.float32)
