"""Tests of s2slib.metrics on signals whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from s2slib.metrics import (bitrate_kbps, codebook_usage, evaluate_pair, mel_distance, si_sdr, snr, stoi)

SR = 16000


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Harmonics at 120 Hz under a 4 Hz syllable-rate envelope, plus a little noise: (T,) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    voiced = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    return (0.2 * envelope * voiced + 0.001 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("level_db", [0.0, 10.0, 30.0])
def test_snr_of_noise_at_known_level(level_db):
    rng = np.random.default_rng(1)
    t = np.arange(10 * SR) / SR
    x = np.sin(2 * np.pi * 440 * t)  # power 1/2
    noise = rng.standard_normal(t.size) * math.sqrt(0.5 / 10 ** (level_db / 10))  # power 1/2 / 10^(L/10)
    assert snr(x, x + noise) == pytest.approx(level_db, abs=0.1)


def test_snr_of_a_gain_error():
    x = _speechlike(1.0)
    assert snr(x, 0.5 * x) == pytest.approx(20 * math.log10(2), abs=1e-6)  # error = x / 2 -> 6.02 dB
    assert snr(x, x) > 100  # identical: large but finite


def test_si_sdr_is_scale_invariant_and_matches_snr_for_orthogonal_noise():
    rng = np.random.default_rng(2)
    x = _speechlike(1.0)
    noisy = x + 0.01 * rng.standard_normal(x.size).astype(np.float32)
    reference = si_sdr(x, noisy)
    for gain in (0.1, 3.0, -2.0):
        assert si_sdr(x, gain * noisy) == pytest.approx(reference, abs=1e-6)
    assert si_sdr(x, 0.5 * x) > 100  # a pure gain error is no distortion ...
    assert snr(x, 0.5 * x) < 7  # ... although SNR punishes it
    assert si_sdr(x, noisy) == pytest.approx(snr(x, noisy), abs=0.2)  # white noise is ~orthogonal to x


def test_inputs_numpy_or_torch_and_lengths_trimmed():
    x = _speechlike(0.5)
    y = x + 0.01 * np.random.default_rng(3).standard_normal(x.size).astype(np.float32)
    as_numpy = snr(x, y)
    assert snr(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(as_numpy, abs=1e-6)
    assert snr(torch.from_numpy(x)[None, None], y[None]) == pytest.approx(as_numpy, abs=1e-6)  # (1, 1, T), (1, T)
    assert snr(x, np.concatenate([y, np.ones(37, np.float32)])) == pytest.approx(as_numpy, abs=1e-6)
    with pytest.raises(ValueError, match="1-D waveform"):
        snr(np.zeros((2, 100)), np.zeros(100))


def test_stoi_identical_is_one_and_noise_lowers_it():
    x = _speechlike(2.0)
    rng = np.random.default_rng(4)
    assert stoi(x, x, SR) == pytest.approx(1.0, abs=1e-6)
    noisy = x + 0.2 * rng.standard_normal(x.size).astype(np.float32)
    assert stoi(x, noisy, SR) < 0.9


def test_stoi_of_a_short_or_silent_clip_is_nan_with_a_warning():
    with pytest.warns(RuntimeWarning, match="too short"):
        assert math.isnan(stoi(_speechlike(0.2), _speechlike(0.2), SR))
    silence = np.zeros(SR, np.float32)
    silence[:100] = 0.5  # one click, then nothing: fewer than 30 non-silent frames
    with pytest.warns(RuntimeWarning, match="non-silent"):
        assert math.isnan(stoi(silence, silence, SR))


def test_mel_distance():
    x = _speechlike(1.0)
    rng = np.random.default_rng(5)
    assert mel_distance(x, x, SR) == pytest.approx(0.0, abs=1e-6)
    small = mel_distance(x, x + 0.005 * rng.standard_normal(x.size), SR)
    large = mel_distance(x, x + 0.05 * rng.standard_normal(x.size), SR)
    assert 0 < small < large
    assert mel_distance(x[:300], x[:300], SR) == pytest.approx(0.0, abs=1e-6)  # shorter than the largest window


def test_evaluate_pair_keys():
    x = _speechlike(1.0)
    result = evaluate_pair(x, x + 0.01 * np.random.default_rng(6).standard_normal(x.size), SR)
    assert set(result) == {"snr", "si_sdr", "mel_distance", "stoi"}
    assert all(isinstance(v, float) for v in result.values())
    assert 0 < result["stoi"] < 1 and result["mel_distance"] > 0


def test_codebook_usage_uniform_and_collapsed():
    K = 64
    uniform = torch.arange(K).repeat(2, 3, 4)  # (2, 3, 256): each level uses every entry equally often
    stats = codebook_usage(uniform, K)
    assert torch.allclose(stats["perplexity"], torch.full((3,), float(K)), rtol=1e-5)
    assert torch.equal(stats["usage"], torch.ones(3))
    collapsed = torch.zeros(1, 2, 100, dtype=torch.long)
    collapsed[:, 1, :50] = 1  # level 1 uses two entries half the time each
    stats = codebook_usage(collapsed.numpy(), K)  # numpy works too
    assert torch.allclose(stats["perplexity"], torch.tensor([1.0, 2.0]))
    assert torch.allclose(stats["usage"], torch.tensor([1 / K, 2 / K]))
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        codebook_usage(torch.full((1, 1, 3), 64), K)


def test_bitrate():
    assert bitrate_kbps(8, 1024, 200) == pytest.approx(16.0)
    assert bitrate_kbps(8, 1024, 50) == pytest.approx(4.0)
    assert bitrate_kbps(1, 2048, 75) == pytest.approx(0.825)
