"""Augmentation of training crops (s2slib.data.augment) and its hook in the loader (CropSampler)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from s2slib.data.augment import TRANSFORM_PROBABILITIES, AugmentConfig, augment, eq_filter
from s2slib.data.loader import CropSampler, read_crop
from s2slib.data.manifest import Utterance
from s2slib.metrics import snr

SR = 16000
OFF = AugmentConfig.none()


def _noise(seconds: float = 1.0, level: float = 0.1, seed: int = 0) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-30))


def _band_energy_db(x: np.ndarray, low_hz: float, high_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(10 * np.log10(spectrum[(f >= low_hz) & (f < high_hz)].sum() + 1e-30))


def test_gain_changes_rms_by_the_drawn_gain():
    x = _noise(level=0.01)
    for gain_db in (-12.0, 4.0):
        y = augment(x, SR, replace(OFF, gain_p=1.0, gain_db=(gain_db, gain_db)), np.random.default_rng(0))
        assert _db(y) - _db(x) == pytest.approx(gain_db, abs=0.01)


def test_peak_guard_never_lets_a_boost_clip():
    x = np.clip(_noise(level=0.3), -0.89, 0.89)
    y = augment(x, SR, replace(OFF, gain_p=1.0, gain_db=(20.0, 20.0)), np.random.default_rng(0))
    assert np.abs(y).max() <= 10 ** (-1 / 20) + 1e-6
    loud = replace(AugmentConfig(), eq_gain_db=(9.0, 9.0), gain_db=(6.0, 6.0), snr_db=(15.0, 15.0))
    for k in range(20):
        y = augment(x, SR, loud, np.random.default_rng(k))
        assert y.dtype == np.float32 and y.shape == x.shape and np.isfinite(y).all()
        assert np.abs(y).max() <= 10 ** (-1 / 20) + 1e-6


def test_equaliser_filters_have_the_asked_gain():
    for kind, probe_hz, gain_db in [("peak", 1000.0, 6.0), ("peak", 1000.0, -9.0), ("lowshelf", 20.0, 6.0),
                                    ("highshelf", 7900.0, -6.0)]:
        sos = eq_filter(kind, 1000.0, gain_db, 1.0, SR)
        _, h = signal.sosfreqz(sos, worN=[probe_hz, 7999.0 if kind != "highshelf" else 20.0], fs=SR)
        assert 20 * np.log10(abs(h[0])) == pytest.approx(gain_db, abs=0.1)
        assert 20 * np.log10(abs(h[1])) == pytest.approx(0.0, abs=0.2)  # far from the band: untouched
    with pytest.raises(ValueError, match="peak"):
        eq_filter("notch", 1000.0, 6.0, 1.0, SR)


def test_low_pass_removes_energy_above_its_cut_off():
    x = _noise()
    y = augment(x, SR, replace(OFF, lowpass_p=1.0, lowpass_hz=(2000.0, 2000.0)), np.random.default_rng(0))
    assert _band_energy_db(y, 4000, 8000) < _band_energy_db(x, 4000, 8000) - 40
    assert _band_energy_db(y, 100, 1000) == pytest.approx(_band_energy_db(x, 100, 1000), abs=1.0)
    phone = augment(x, SR, replace(OFF, telephone_p=1.0), np.random.default_rng(0))
    assert _band_energy_db(phone, 0, 100) < _band_energy_db(x, 0, 100) - 20
    assert _band_energy_db(phone, 5000, 8000) < _band_energy_db(x, 5000, 8000) - 40


def test_reverb_lengthens_the_decay():
    burst = np.zeros(SR, np.float32)
    burst[: SR // 10] = _noise(0.1, 0.3)
    tail = slice(SR // 10 + SR // 20, SR // 10 + SR // 5)  # 50 to 200 ms after the burst ends

    def tail_db(rt60):
        cfg = replace(OFF, reverb_p=1.0, rt60_s=(rt60, rt60), reverb_wet=(0.3, 0.3))
        y = augment(burst, SR, cfg, np.random.default_rng(0))
        return _db(y[tail]) - _db(y[: SR // 10])

    assert not burst[tail].any()
    short, long = tail_db(0.1), tail_db(0.4)
    assert -60 < short < long < -10  # an audible tail, longer for the longer room


@pytest.mark.parametrize("pink", [False, True])
def test_noise_lowers_the_snr_to_the_drawn_value(pink):
    x = _noise(level=0.05)
    cfg = replace(OFF, noise_p=1.0, snr_db=(20.0, 20.0), pink_p=float(pink))
    y = augment(x, SR, cfg, np.random.default_rng(0))
    assert snr(x, y) == pytest.approx(20.0, abs=0.1)
    noise = y - x
    low, high = _band_energy_db(noise, 250, 500), _band_energy_db(noise, 4000, 8000)
    if pink:  # equal energy per octave
        assert low == pytest.approx(high, abs=3.0)
    else:  # equal energy per hertz: the 4 kHz wide band holds 16 times the 250 Hz wide one
        assert high - low == pytest.approx(10 * np.log10(16), abs=3.0)


def test_dither_leaves_no_exact_zeros_and_stays_quiet():
    silence = np.zeros(SR, np.float32)
    y = augment(silence, SR, replace(OFF, dither_p=1.0), np.random.default_rng(0))
    assert np.count_nonzero(y == 0) == 0
    assert -81 < _db(y) < -69
    assert 20 * np.log10(np.abs(y).max()) < -60
    padded = augment(np.concatenate([_noise(0.2), np.zeros(SR // 5, np.float32)]), SR, AugmentConfig(),
                     np.random.default_rng(1))  # the default mix always dithers
    assert np.count_nonzero(padded == 0) == 0


def test_augment_is_a_pure_function_of_the_generator():
    x = _noise()
    always = AugmentConfig(**{name: 1.0 for name in TRANSFORM_PROBABILITIES})
    a = augment(x, SR, always, np.random.default_rng(7))
    assert np.array_equal(a, augment(x, SR, always, np.random.default_rng(7)))
    assert not np.array_equal(a, augment(x, SR, always, np.random.default_rng(8)))
    assert not np.array_equal(a, x)
    assert np.array_equal(x, _noise())  # the input is not modified


def test_none_changes_nothing_and_the_config_round_trips():
    x = _noise()
    assert np.array_equal(augment(x, SR, OFF, np.random.default_rng(0)), x)
    defaults = AugmentConfig()
    assert all(getattr(OFF, name) == 0.0 for name in TRANSFORM_PROBABILITIES)
    assert replace(OFF, **{name: getattr(defaults, name) for name in TRANSFORM_PROBABILITIES}) == defaults
    assert AugmentConfig.from_dict(json.loads(json.dumps(defaults.to_dict()))) == defaults
    with pytest.raises(ValueError, match="known fields"):
        AugmentConfig.from_dict({"reverb": 0.5})
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(noise_p=1.5)
    with pytest.raises(ValueError, match="low <= high"):
        AugmentConfig(snr_db=(40.0, 15.0))


@pytest.fixture(scope="module")
def utterances(tmp_path_factory):
    root = tmp_path_factory.mktemp("crops")
    utts = []
    for i, seconds in enumerate((0.6, 1.0, 0.2)):  # the last is shorter than a crop: zero-padded
        path = root / f"u{i}.wav"
        sf.write(path, _noise(seconds, 0.1, seed=i), SR, subtype="PCM_16")
        utts.append(Utterance(f"u{i}", str(path), seconds, SR, "spk", "", "test"))
    return utts


def test_crop_sampler_augmented_batches_depend_only_on_seed_step_and_rank(utterances):
    def sampler(augment=AugmentConfig()):
        return CropSampler(utterances, segment_length=4000, batch_size=4, seed=3, augment=augment)

    a = sampler().batch(5, rank=0)
    assert a.shape == (4, 1, 4000) and a.dtype.is_floating_point
    assert np.array_equal(a.numpy(), sampler().batch(5, rank=0).numpy())  # a resumed run sees the same batch
    assert not np.array_equal(a.numpy(), sampler().batch(5, rank=1).numpy())
    assert not np.array_equal(a.numpy(), sampler().batch(6, rank=0).numpy())
    assert (a != 0).all()  # dithered, padding included

    plain = CropSampler(utterances, segment_length=4000, batch_size=4, seed=3)
    assert plain.indices(5) == sampler().indices(5)  # augmentation does not change which crops are drawn
    raw = np.stack([read_crop(utterances[i].audio_path, s, 4000) for i, s in plain.indices(5)])
    assert np.array_equal(plain.batch(5).numpy()[:, 0], raw)  # without augment: the crops exactly as read
    assert np.array_equal(sampler(OFF).batch(5).numpy(), plain.batch(5).numpy())
    assert not np.array_equal(a.numpy()[:, 0], raw)
