"""Reference points for the metrics: degraded copies of a clip whose sound a learner can name.

A metric means little until you have heard what its numbers sound like. Each function here returns a copy of a mono
float32 waveform ``(T,)`` with one known defect, and :func:`reference_table` measures them all with
:mod:`s2slib.metrics`, so notebook 02 can place a codec's figures among copies whose sound the learner has heard:

=====================  ================================  ==========================================================
copy                   sounds like                       what it teaches
=====================  ================================  ==========================================================
original               the clip itself                   the ceiling: mel distance 0, STOI 1, comb ratio 1
1 ms delay             identical to the original         SNR and SI-SDR collapse for a copy nobody can tell apart:
                                                         they compare waveforms sample by sample, so they are not
                                                         quality measures for codecs that do not reproduce phase
Griffin-Lim phase      the same voice, slightly phasey   the original magnitude with invented phase: mel distance
                       or metallic                       small, STOI high, SNR near 0 dB or below. What a
                                                         magnitude-only codec could at best achieve
noise-excited          a whisper with the right vowels   the spectral envelope without harmonics: mel distance
                                                         large, STOI lower, the harmonics gone (comb share at the
                                                         pitch falls to the white-noise value): intelligibility
                                                         without voice. Its comb ratio at 200 Hz drifts from 1
                                                         (1.4 on a synthesized Telugu clip) although it adds no
                                                         comb: a flatter spectrum moves it too, so read only
                                                         clearly larger ratios as an added comb
exact magnitudes,      rough and breathy                 the ceiling of a decoder that renders every magnitude of
random phase                                             codec v2's 40 ms frames exactly but no phase: STOI about
                                                         0.83 on real speech, so phase matters for intelligibility
exact magnitudes,      the same voice, a little hollow   the same magnitudes with a phase made from them alone,
peak-locked phase                                        causally (:mod:`s2slib.codec.peak_phase`): STOI about 0.93,
                                                         so a decoder whose magnitudes keep the harmonics gets most
                                                         of the phase for free
=====================  ================================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torchaudio

from s2slib import metrics

_N_FFT_SECONDS = 0.032  # analysis window of Griffin-Lim and of the noise-excited copy (512 samples at 16 kHz)


def _mono(wav, name: str = "wav") -> np.ndarray:
    """``wav`` as a 1-D float32 numpy array, or a clear error."""
    wav = np.asarray(wav.detach().cpu() if isinstance(wav, torch.Tensor) else wav, dtype=np.float32)
    if wav.ndim != 1 or wav.size == 0:
        raise ValueError(f"{name} must be a non-empty mono waveform (T,), got shape {wav.shape}.")
    return wav


def _stft_sizes(sample_rate: int) -> tuple[int, int]:
    """``(n_fft, hop_length)``: a power of two near 32 ms, hop a quarter of it."""
    n_fft = 2 ** round(np.log2(_N_FFT_SECONDS * sample_rate))
    return n_fft, n_fft // 4


def delayed_copy(wav, sample_rate: int, ms: float = 1.0) -> np.ndarray:
    """``wav`` delayed by ``ms`` milliseconds (zeros in front, the end cut off): same length, float32.

    A 1 ms delay is inaudible, yet it is half a cycle at 500 Hz (the error there is twice the signal) and a
    whole number of cycles only at multiples of 1 kHz: SNR and SI-SDR drop to around 0 dB or below.
    """
    wav = _mono(wav)
    shift = int(round(ms * sample_rate / 1000))
    if not 0 <= shift < wav.size:
        raise ValueError(f"a delay of {ms} ms is {shift} samples: it must be >= 0 and shorter than the clip "
                         f"({wav.size} samples).")
    return np.concatenate([np.zeros(shift, np.float32), wav[: wav.size - shift]])


def griffin_lim_copy(wav, sample_rate: int, n_iter: int = 64, seed: int = 0) -> np.ndarray:
    """``wav``'s own STFT magnitude with phase found by Griffin-Lim: same length, float32.

    Griffin & Lim 1984, "Signal estimation from modified short-time Fourier transform": start from random phase,
    then alternate inverse STFT and STFT, keeping the phase of each new estimate and restoring the known magnitude,
    here ``n_iter`` times with momentum 0.99 (Perraudin et al. 2013, torchaudio's default). Hann window of ~32 ms,
    hop a quarter of it. ``seed`` makes the random start, hence the result, reproducible.
    """
    wav = _mono(wav)
    n_fft, hop = _stft_sizes(sample_rate)
    x = torch.from_numpy(wav)
    magnitude = torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=hop, power=1.0)(x)  # (n_fft/2+1, frames)
    griffin_lim = torchaudio.transforms.GriffinLim(n_fft=n_fft, hop_length=hop, power=1.0, n_iter=n_iter,
                                                   length=wav.size)
    with torch.random.fork_rng(devices=[]):  # its random initial phase, without touching the caller's generator
        torch.manual_seed(seed)
        return griffin_lim(magnitude).numpy().astype(np.float32)


def noise_excited_copy(wav, sample_rate: int, lifter_ms: float = 1.5, seed: int = 0) -> np.ndarray:
    """White noise shaped, frame by frame, by ``wav``'s smoothed spectral envelope: a whisper, same length, float32.

    The envelope is found by cepstral smoothing (homomorphic analysis, Oppenheim & Schafer, *Discrete-Time Signal
    Processing*, ch. 13): take ``log |X|`` of each ~32 ms frame, keep its cepstrum below ``lifter_ms`` of quefrency
    (1.5 ms removes the harmonics of any voice under ~660 Hz pitch), and exponentiate. The envelope multiplies the
    STFT of unit-variance white noise; each frame is scaled to the original frame's energy, and the inverse STFT
    gives the copy. The vowels (formants) and the loudness contour survive; the pitch harmonics do not.
    """
    wav = _mono(wav)
    n_fft, hop = _stft_sizes(sample_rate)
    window = torch.hann_window(n_fft, dtype=torch.float64)
    spec = torch.stft(torch.from_numpy(wav).double(), n_fft, hop_length=hop, window=window,
                      return_complex=True)  # (n_fft/2+1, frames)
    power = spec.abs() ** 2  # (F, N)
    cepstrum = torch.fft.irfft(torch.log(power.clamp_min(1e-20)) / 2, n=n_fft, dim=0)  # (n_fft, N) real cepstrum
    cutoff = max(1, int(lifter_ms * sample_rate / 1000))
    lifter = torch.zeros(n_fft, 1, dtype=torch.float64)
    lifter[:cutoff] = 1.0  # low quefrencies: the envelope ...
    lifter[n_fft - cutoff + 1:] = 1.0  # ... and their mirror image (the cepstrum of a real spectrum is symmetric)
    envelope = torch.exp(torch.fft.rfft(cepstrum * lifter, dim=0).real)  # (F, N) smoothed magnitude
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(wav.size, generator=generator, dtype=torch.float64)
    noise_spec = torch.stft(noise, n_fft, hop_length=hop, window=window, return_complex=True)  # (F, N)
    noise_spec = noise_spec / window.pow(2).sum().sqrt()  # E|noise_spec|^2 = 1 in every bin
    shaped = noise_spec * envelope
    # each frame gets the original frame's energy (the smoothed envelope is a geometric, not an arithmetic, mean)
    gain = (power.sum(dim=0) / (shaped.abs() ** 2).sum(dim=0).clamp_min(1e-20)).sqrt()  # (N,)
    out = torch.istft(shaped * gain, n_fft, hop_length=hop, window=window, length=wav.size)
    return out.numpy().astype(np.float32)


def random_phase_copy(wav, sample_rate: int, hop_s: float = 0.02, seed: int = 0) -> np.ndarray:
    """``wav``'s exact magnitudes in codec v2's framing (Hann windows of two hops, ``hop_s`` = 20 ms) with a random
    phase in every bin of every frame, overlap-added: same length, float32.

    This is what a decoder that gets every magnitude right but models no phase would produce: the ceiling of a
    codec trained on magnitude losses alone. Measured on the course's real Telugu test clips (STOI): exact phase
    0.97, random phase 0.83, zero phase 0.75.
    """
    def random_phase(magnitude: torch.Tensor, hop: int, n_fft: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return 2 * torch.pi * torch.rand(magnitude.shape, generator=generator, dtype=torch.float64)

    return _resynthesised(wav, sample_rate, hop_s, random_phase)


def peak_locked_copy(wav, sample_rate: int, hop_s: float = 0.02) -> np.ndarray:
    """``wav``'s exact magnitudes in codec v2's framing with the phase :mod:`s2slib.codec.peak_phase` makes from
    them (each spectral peak carried on at its frequency, every bin locked to its nearest peak; no lookahead):
    same length, float32.

    What a decoder that gets every magnitude right and makes its phase from them would produce (codec v2's
    ``phase="peaks"`` head with perfect magnitudes): STOI about 0.93 on the course's real test clips, against 0.83
    for a random phase. It sounds like the voice, a little hollow where harmonics glide.
    """
    from s2slib.codec.peak_phase import peak_locked_phase

    def locked(magnitude: torch.Tensor, hop: int, n_fft: int) -> torch.Tensor:
        log_mag = magnitude.clamp_min(1e-9).log().T[None]  # (1, K, N)
        return peak_locked_phase(log_mag, hop, n_fft)[0][0].T.double()  # (N, K)

    return _resynthesised(wav, sample_rate, hop_s, locked)


def _resynthesised(wav, sample_rate: int, hop_s: float, make_phase) -> np.ndarray:
    """``wav``'s magnitudes in Hann windows of two hops (causal framing) under the phase
    ``make_phase(magnitude Tensor[N, K], hop, n_fft) -> Tensor[N, K]``, weighted-overlap-added: same length, float32."""
    wav = _mono(wav)
    hop = int(round(hop_s * sample_rate))
    n_fft = 2 * hop
    window = torch.hann_window(n_fft, dtype=torch.float64)
    x = torch.nn.functional.pad(torch.from_numpy(wav).double(), (n_fft - hop, n_fft))  # whole frames, causal framing
    frames = x.unfold(0, n_fft, hop)  # (N, n_fft)
    magnitude = torch.fft.rfft(frames * window).abs()  # (N, n_fft/2+1)
    phase = make_phase(magnitude, hop, n_fft)
    resynth = torch.fft.irfft(torch.polar(magnitude, phase), n=n_fft) * window  # (N, n_fft), Hann^2 overlap below
    out = torch.zeros(x.numel(), dtype=torch.float64)
    norm = torch.zeros(x.numel(), dtype=torch.float64)
    for i in range(frames.shape[0]):  # weighted overlap-add: divide by the sum of squared windows
        out[i * hop: i * hop + n_fft] += resynth[i]
        norm[i * hop: i * hop + n_fft] += window ** 2
    out = out / norm.clamp_min(1e-3)
    return out[n_fft - hop: n_fft - hop + wav.size].numpy().astype(np.float32)


REFERENCE_POINTS = {  # name -> (function, what it sounds like)
    "original": (lambda wav, sample_rate: _mono(wav), "the clip itself"),
    "1 ms delay": (delayed_copy, "identical to the original"),
    "Griffin-Lim phase": (griffin_lim_copy, "the same voice, a little phasey or metallic"),
    "noise-excited": (noise_excited_copy, "a whisper with the right vowels and no pitch"),
    "exact magnitudes, random phase": (random_phase_copy, "rough and breathy: what a decoder without a phase model "
                                                          "makes of perfect magnitudes"),
    "exact magnitudes, peak-locked phase": (peak_locked_copy, "the same voice, a little hollow: perfect magnitudes "
                                                              "with a phase made from them"),
}


def reference_table(clips: Sequence, sample_rate: int,
                    comb_spacings: Sequence[float] = (200.0, 50.0)) -> list[dict]:
    """Every reference point of every clip, measured: one row per copy, means over ``clips``.

    Parameters
    ----------
    clips: mono waveforms ``(T,)``; clips shorter than 0.5 s give no STOI and no 200 Hz comb (listed in ``skipped``).
    sample_rate: their rate in Hz.
    comb_spacings: spacings (Hz) for :func:`s2slib.metrics.comb_ratio`; the defaults are the 200 Hz frame rate of
        the course codec and 50 Hz, a common speech-codec frame rate.

    Returns
    -------
    ``[{"name", "sounds like", "snr", "si_sdr", "mel_distance", "stoi", "comb_ratio", "skipped"}, ...]`` in the order
    of the module docstring's table (which says what each row teaches); metric values are means over the clips where
    they are defined (``None`` if none).
    """
    if not len(clips):
        raise ValueError("reference_table needs at least one clip.")
    rows = []
    for name, (make, sounds_like) in REFERENCE_POINTS.items():
        means = metrics.MetricMeans(metrics.PAIR_METRICS, comb_spacings=comb_spacings)
        for i, clip in enumerate(clips):
            clip = _mono(clip, f"clips[{i}]")
            means.add(f"clip {i}", clip, make(clip, sample_rate), sample_rate)
        rows.append({"name": name, "sounds like": sounds_like, **means.means(), "skipped": means.skipped})
    return rows
