"""Tests of s2slib.metrics (and of the reference points that calibrate them) on signals whose answer is known."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s2slib.metrics import (PAIR_METRICS, MetricMeans, bitrate_kbps, codebook_usage, comb_ratio, comb_ratios,
                            comb_share, evaluate_pair, mel_distance, si_sdr, snr, stoi)
from s2slib.reference_points import (REFERENCE_POINTS, delayed_copy, griffin_lim_copy, noise_excited_copy,
                                     reference_table)

SR = 16000
ROOT = Path(__file__).resolve().parents[1]


def _no_nan(token: str):
    raise ValueError(f"{token} in JSON output")


@pytest.fixture(scope="module")
def telugu() -> np.ndarray:
    """A real synthesized Telugu sentence at 16 kHz (about 2.6 s): (T,) float32."""
    from s2slib.audio import resample
    from s2slib.data import synth

    wav = synth.synthesize("ఈ రోజు వాతావరణం చాలా బాగుంది.", "Priya")
    return resample(wav, synth.SAMPLE_RATE, SR).astype(np.float32)


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
    assert mel_distance(np.zeros(SR), np.zeros(SR), SR) == 0.0  # two silences: nothing to compare


def test_mel_distance_ignores_level_and_padding_silence(telugu):
    rng = np.random.default_rng(7)
    rms = float(np.sqrt(np.mean(telugu**2)))
    est = telugu + (0.03 * rms * rng.standard_normal(telugu.size)).astype(np.float32)  # noise at -30 dB
    base = mel_distance(telugu, est, SR)
    quiet = mel_distance(0.03 * telugu, 0.03 * est, SR)  # the same pair 30 dB quieter
    pad = np.zeros(SR, np.float32)
    padded = mel_distance(np.concatenate([pad, telugu, pad]), np.concatenate([pad, est, pad]), SR)  # 1 s each side
    assert quiet == pytest.approx(base, rel=0.05)  # measured: equal to 1e-7 (0.1138)
    assert padded == pytest.approx(base, rel=0.05)  # measured 0.114 and 0.114 (0.06 % apart)
    assert mel_distance(telugu, telugu, SR) == 0.0
    noisier = telugu + (0.1 * rms * rng.standard_normal(telugu.size)).astype(np.float32)  # noise at -20 dB
    assert mel_distance(telugu, noisier, SR) > 1.5 * base  # measured 0.29
    hiss = np.concatenate([pad, est, pad]) + (1e-2 * rms * rng.standard_normal(telugu.size + 2 * SR)).astype(np.float32)
    assert mel_distance(np.concatenate([pad, telugu, pad]), hiss, SR) > 1.3 * padded  # hiss in the silence counts: 0.19


def _harmonics(n: int, spacing_hz: float) -> np.ndarray:
    """Equal-amplitude cosines at every multiple of ``spacing_hz`` below Nyquist: power on the comb only."""
    t = np.arange(n) / SR
    ks = np.arange(1, int(SR / 2 / spacing_hz))
    phases = np.random.default_rng(10).uniform(0, 2 * np.pi, ks.size)
    return np.cos(2 * np.pi * spacing_hz * ks[:, None] * t + phases[:, None]).sum(axis=0)


def test_comb_ratio_finds_an_added_comb(telugu):
    power = float(np.mean(telugu**2))
    rng = np.random.default_rng(8)
    train = np.zeros(telugu.size, np.float32)
    train[::80] = 1.0  # an impulse train at 16000 / 80 = 200 Hz, like a decoder stage repeating every frame
    train *= np.sqrt(0.5 * power / np.mean(train**2))  # the comb at -3 dB re the speech
    noise = np.sqrt(1e-3 * power) * rng.standard_normal(telugu.size)  # and noise at -30 dB
    buzzy = (telugu + train + noise).astype(np.float32)
    ratios = comb_ratios(telugu, buzzy, SR, [200, 137])
    assert ratios[200.0] > 4  # measured 5.8
    assert 0.7 < ratios[137.0] < 1.4  # a spacing the comb does not share: measured 1.07
    assert comb_ratio(telugu, buzzy, SR, [137, 200]) == ratios[200.0]  # the worst spacing
    assert comb_ratio(telugu, telugu, SR, [200, 137, 1000]) == 1.0


@pytest.mark.parametrize("spacing, width", [(200, None), (137, None), (1000, 20.0)])
def test_comb_share_of_white_noise_is_the_bands_share_of_the_spectrum(spacing, width):
    noise = np.random.default_rng(9).standard_normal(10 * SR)
    width = width or spacing / 25
    nyquist = SR / 2
    centres = spacing * np.arange(1, int(nyquist // spacing) + 1)
    expected = np.sum(np.minimum(centres + width, nyquist) - (centres - width)) / nyquist  # ~2 width / spacing
    assert comb_share(noise, SR, spacing, width) == pytest.approx(expected, rel=0.05)
    assert comb_share(_harmonics(SR, spacing), SR, spacing) > 0.95  # a harmonic series is all comb


def test_comb_needs_enough_audio_and_sane_bands(telugu):
    with pytest.warns(RuntimeWarning, match="too short"):
        assert math.isnan(comb_share(telugu[: SR // 4], SR, 200))  # 0.25 s cannot resolve +-8 Hz
    with pytest.warns(RuntimeWarning, match="too short"):
        assert math.isnan(comb_ratio(telugu[: SR // 4], telugu[: SR // 4], SR, [4000, 200]))  # never hides 200 Hz
    assert comb_share(telugu[: SR // 4], SR, 4000) > 0  # 4 kHz bands of +-160 Hz need only 25 ms
    with pytest.raises(ValueError, match="width"):
        comb_share(telugu, SR, 200, 150)
    with pytest.raises(ValueError, match="spacing"):
        comb_share(telugu, SR, 9000)
    with pytest.raises(ValueError, match="at least one spacing"):
        comb_ratio(telugu, telugu, SR, [])


def test_evaluate_pair_keys():
    x = _speechlike(1.0)
    result = evaluate_pair(x, x + 0.01 * np.random.default_rng(6).standard_normal(x.size), SR)
    assert set(result) == {"snr", "si_sdr", "mel_distance", "stoi"}
    assert all(isinstance(v, float) for v in result.values())
    assert 0 < result["stoi"] < 1 and result["mel_distance"] > 0
    with_comb = evaluate_pair(x, x, SR, comb_spacings=[200.0])
    assert set(with_comb) == set(PAIR_METRICS) and with_comb["comb_ratio"] == 1.0


def test_metric_means_skip_undefined_values_and_say_why():
    long, short = _speechlike(1.0), _speechlike(0.2)
    means = MetricMeans(("snr", "stoi", "comb_ratio"), comb_spacings=[200.0])
    means.add("long.wav", long, long + 0.01, SR)
    row = means.add("short.wav", short, short, SR)
    assert math.isnan(row["stoi"]) and math.isnan(row["comb_ratio"]) and row["snr"] > 100
    result = means.means()
    assert result["stoi"] == pytest.approx(stoi(long, long + 0.01, SR))  # the short clip is left out
    assert result["snr"] == pytest.approx((snr(long, long + 0.01) + row["snr"]) / 2)
    assert len(means.skipped["stoi"]) == 1 and means.skipped["stoi"][0].startswith("short.wav: ")
    assert "too short" in means.skipped["stoi"][0] and "too short" in means.skipped["comb_ratio"][0]
    assert "snr" not in means.skipped
    json.loads(json.dumps({**result, "skipped": means.skipped}, allow_nan=False), parse_constant=_no_nan)
    assert MetricMeans().means() == {"snr": None, "si_sdr": None, "mel_distance": None, "stoi": None}
    with pytest.raises(ValueError, match="unknown metric"):
        MetricMeans(("pesq",))


def test_codec_eval_json_lists_short_clips_and_never_prints_nan(tmp_path, telugu):
    import soundfile as sf

    from s2slib.codec.__main__ import evaluate_folder
    from s2slib.codec.config import CodecConfig
    from s2slib.codec.model import Codec
    from s2slib.codec.train import export_codec

    codec = Codec(CodecConfig.tiny()).eval()
    only_short = tmp_path / "only_short"
    only_short.mkdir()
    sf.write(only_short / "short.wav", telugu[: int(0.3 * SR)], SR)
    result = evaluate_folder(codec, only_short, None)
    assert result["n_files"] == 1 and result["stoi"] is None and result["comb_ratio"] is None
    assert result["mel_distance"] is not None
    assert result["skipped"]["stoi"][0].startswith(str(only_short / "short.wav") + ": ")

    export_codec(codec, tmp_path / "codec.pt")
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "long.wav", telugu, SR)
    sf.write(audio / "short.wav", telugu[: int(0.3 * SR)], SR)
    (audio / "broken.flac").write_bytes(b"fLaC but not really")
    proc = subprocess.run([sys.executable, "-m", "s2slib.codec", "eval", "--checkpoint", str(tmp_path / "codec.pt"),
                           "--audio", str(audio)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout, parse_constant=_no_nan)  # NaN or Infinity would raise
    assert out["n_files"] == 2
    assert all(isinstance(out[k], float) for k in PAIR_METRICS)  # the short clip is skipped, not averaged as NaN
    assert out["comb_ratio"] >= 0
    assert [s.split(": ")[0] for s in out["skipped"]["stoi"]] == [str(audio / "short.wav")]
    assert "too short" in out["skipped"]["stoi"][0]
    assert str(audio / "broken.flac") in out["skipped"]  # decode errors are still reported, by file


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


# ------------------------------------------------------------------------------------- reference points (notebook 02)
@pytest.mark.parametrize("name", list(REFERENCE_POINTS))
def test_reference_points_keep_length_and_dtype(name, telugu):
    make, _ = REFERENCE_POINTS[name]
    for wav in (telugu, torch.from_numpy(telugu[:5001])):  # numpy or torch, any length
        out = make(wav, SR)
        assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (len(wav),)
        assert np.all(np.isfinite(out))


def test_a_1ms_delay_sounds_identical_but_ruins_snr(telugu):
    late = delayed_copy(telugu, SR)
    assert np.array_equal(late[16:], telugu[:-16]) and not late[:16].any()  # 1 ms = 16 samples at 16 kHz
    assert stoi(telugu, late, SR) > 0.95  # measured 0.997
    assert snr(telugu, late) < 3 and si_sdr(telugu, late) < 0  # measured -2.6 and -20.8 dB
    with pytest.raises(ValueError, match="shorter than the clip"):
        delayed_copy(telugu[:10], SR)


def test_noise_excitation_keeps_the_envelope_but_not_the_harmonics(telugu):
    harmonic = _speechlike(2.0)  # harmonics of 120 Hz (the 4 Hz syllable envelope spreads them a little)
    shares = {name: comb_share(make(harmonic, SR), SR, 120) for name, make in
              (("original", lambda w, sr: w), ("Griffin-Lim", griffin_lim_copy), ("noise", noise_excited_copy))}
    assert shares["original"] > 0.6 and shares["Griffin-Lim"] > 0.5  # measured 0.72 and 0.67
    assert shares["noise"] < 0.12  # measured 0.065, white noise's share is 0.08: the harmonics are gone
    gl, whisper = stoi(telugu, griffin_lim_copy(telugu, SR), SR), stoi(telugu, noise_excited_copy(telugu, SR), SR)
    assert gl > 0.9 and whisper < gl - 0.1  # measured 0.997 and 0.74
    assert mel_distance(telugu, noise_excited_copy(telugu, SR), SR) > 3 * mel_distance(
        telugu, griffin_lim_copy(telugu, SR), SR)  # measured 0.35 and 0.043


def test_reference_table_rows(telugu):
    rows = reference_table([telugu, telugu[: int(0.3 * SR)]], SR)
    assert [r["name"] for r in rows] == list(REFERENCE_POINTS)
    assert set(rows[0]) == {"name", "sounds like", "snr", "si_sdr", "mel_distance", "stoi", "comb_ratio", "skipped"}
    original, delayed = rows[0], rows[1]
    assert original["mel_distance"] == pytest.approx(0, abs=1e-6) and original["stoi"] == pytest.approx(1) and original["comb_ratio"] == 1
    assert delayed["snr"] < 10 < 100 < original["snr"] and delayed["stoi"] > 0.95
    assert original["skipped"]["stoi"][0].startswith("clip 1: ")  # the 0.3 s clip has no STOI
    json.loads(json.dumps(rows, allow_nan=False), parse_constant=_no_nan)
