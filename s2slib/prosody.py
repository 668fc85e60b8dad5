"""Measuring prosody: pitch (F0), speaking time and loudness of an utterance.

Used to check that the synthetic voices and emotions differ as designed (notebook 01, tests) and, later, to compare
what a model says with how it was asked to say it. F0 is estimated with the YIN algorithm (de Cheveigné & Kawahara,
"YIN, a fundamental frequency estimator for speech and music", JASA 2002) as implemented by ``librosa.yin``; frames
count as voiced where the frame is within 30 dB of the loudest one.
"""

from __future__ import annotations

import numpy as np


def measure_prosody(wav: np.ndarray, sample_rate: int, fmin: float = 60.0, fmax: float = 500.0) -> dict[str, float]:
    """Prosody of a mono utterance ``wav (T,)``.

    Returns ``f0_mean_hz`` and ``f0_median_hz`` over voiced frames, ``f0_range_semitones`` (90th minus 10th
    percentile, in semitones: the pitch *range*), ``duration_s``, ``speech_s`` (time in frames within 30 dB of the
    loudest) and ``rms_dbfs`` (RMS over those frames).
    """
    import librosa

    wav = np.asarray(wav, dtype=np.float32)
    frame, hop = 1024, 256
    f0 = librosa.yin(wav, fmin=fmin, fmax=fmax, sr=sample_rate, frame_length=frame, hop_length=hop)
    rms = librosa.feature.rms(y=wav, frame_length=frame, hop_length=hop)[0]
    n = min(len(f0), len(rms))
    f0, rms = f0[:n], rms[:n]
    level = 20 * np.log10(np.maximum(rms, 1e-8))
    voiced = level > level.max() - 30
    f0v = f0[voiced] if voiced.any() else f0
    lo, hi = np.percentile(f0v, [10, 90])
    return {
        "f0_mean_hz": float(np.mean(f0v)),
        "f0_median_hz": float(np.median(f0v)),
        "f0_range_semitones": float(12 * np.log2(hi / lo)),
        "duration_s": len(wav) / sample_rate,
        "speech_s": float(voiced.sum() * hop / sample_rate),
        "rms_dbfs": float(20 * np.log10(np.sqrt(np.mean(rms[voiced] ** 2)) + 1e-10)),
    }
