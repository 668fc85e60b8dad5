"""Tests of s2slib.data.synth: Telugu eSpeak NG synthesis, its voices and emotions, and the cached batch synthesis.

The acoustic tests measure what a listener would notice: mean F0 over voiced frames (pYIN, Mauch & Dixon 2014, via
``librosa.pyin``), duration and RMS. Thresholds were set from measurements on eSpeak NG 1.52 (see the numbers in each
test) with a margin, so they catch a voice or an emotion whose design has collapsed, not rounding noise.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys

import librosa
import numpy as np
import pytest

from s2slib.audio import load_audio
from s2slib.data import synth
from s2slib.data.synth import (
    AGENT_VOICES,
    EMOTION_PROSODY,
    EMOTIONS,
    SAMPLE_RATE,
    USER_VOICES,
    VOICES,
    SynthesisError,
    SynthJob,
    job_key,
    synthesize,
    synthesize_many,
)

TEXT = "నమస్కారం, మీకు ఎలా సహాయం చేయగలను?"  # "Hello, how can I help you?"


def features(wav: np.ndarray) -> tuple[float, float, float]:
    """(mean F0 in Hz over pYIN-voiced frames, duration in s, RMS) of a ``(T,)`` waveform at SAMPLE_RATE."""
    f0, voiced, _ = librosa.pyin(wav, fmin=50, fmax=500, sr=SAMPLE_RATE, frame_length=1024, hop_length=256)
    assert voiced.mean() > 0.3, "fewer than 30 % of frames voiced: the audio is not speech-like"
    return float(np.mean(f0[voiced])), len(wav) / SAMPLE_RATE, float(np.sqrt(np.mean(wav**2)))


@pytest.fixture(scope="module")
def measured() -> dict[tuple[str, str], tuple[float, float, float]]:
    """Features of TEXT for every agent voice (neutral) and every emotion of Arjun and Priya."""
    combos = {(v, "neutral") for v in AGENT_VOICES} | {(v, e) for v in ("Arjun", "Priya") for e in EMOTIONS}
    return {(v, e): features(synthesize(TEXT, v, e)) for v, e in sorted(combos)}


# ---------------------------------------------------------------------------------------------- the design


def test_voice_inventory():
    assert list(AGENT_VOICES) == ["Arjun", "Ravi", "Priya", "Lakshmi"]
    assert [AGENT_VOICES[n].gender for n in AGENT_VOICES] == ["male", "male", "female", "female"]
    assert len(USER_VOICES) >= 6
    assert {v.gender for v in USER_VOICES.values()} == {"male", "female"}
    assert len({v.age for v in USER_VOICES.values()}) >= 3
    assert VOICES == {**AGENT_VOICES, **USER_VOICES} and len(VOICES) == len(AGENT_VOICES) + len(USER_VOICES)
    assert all(v.role == "agent" for v in AGENT_VOICES.values())
    assert all(v.role == "user" for v in USER_VOICES.values())
    assert all(name == v.name for name, v in VOICES.items())
    # no user can be mistaken for the agent: (variant, pitch) pairs are disjoint, and in fact so are the variants
    agent_pairs = {(v.variant, v.pitch) for v in AGENT_VOICES.values()}
    assert not agent_pairs & {(v.variant, v.pitch) for v in USER_VOICES.values()}
    assert not {v.variant for v in AGENT_VOICES.values()} & {v.variant for v in USER_VOICES.values()}
    # voices differ in their parameters, not only in name
    assert len({(v.variant, v.pitch, v.pitch_range, v.rate) for v in VOICES.values()}) == len(VOICES)


def test_emotions_and_prosody_table():
    assert EMOTIONS == ("neutral", "happy", "sad", "angry", "surprised", "fearful", "calm", "excited", "empathetic")
    assert tuple(EMOTION_PROSODY) == EMOTIONS
    assert EMOTION_PROSODY["neutral"] == synth.Prosody()
    assert len(set(EMOTION_PROSODY.values())) == len(EMOTIONS)


def test_emotions_match_text_module():
    text = pytest.importorskip("s2slib.data.text", reason="s2slib.data.text is not written yet")
    assert EMOTIONS == text.EMOTIONS


# ---------------------------------------------------------------------------------------------- synthesize


def test_every_voice_speaks():
    for name in VOICES:
        wav = synthesize(TEXT, name)
        assert wav.dtype == np.float32 and wav.ndim == 1
        assert 1.5 < len(wav) / SAMPLE_RATE < 6.0, name
        assert 0.02 < np.sqrt(np.mean(wav**2)) and np.abs(wav).max() < 0.99, name  # audible, not clipped


def test_agent_voices_and_emotions_plausible(measured):
    for (voice, emotion), (f0, duration, rms) in measured.items():
        # a 5-word sentence: 2.2-5.3 s measured over these voices and emotions
        assert 1.5 < duration < 6.5, (voice, emotion, duration)
        assert rms > 0.02, (voice, emotion, rms)
        assert 55 < f0 < 400, (voice, emotion, f0)


def test_agent_voices_differ_in_pitch(measured):
    f0 = {v: measured[v, "neutral"][0] for v in AGENT_VOICES}  # measured: Arjun 105, Ravi 78, Priya 214, Lakshmi 157
    assert min(f0["Priya"], f0["Lakshmi"]) > 1.3 * max(f0["Arjun"], f0["Ravi"])
    assert f0["Ravi"] < 0.85 * f0["Arjun"]
    assert f0["Priya"] > 1.15 * f0["Lakshmi"]


@pytest.mark.parametrize("voice", ["Arjun", "Priya"])
def test_emotion_contrasts(measured, voice):
    f0 = {e: measured[voice, e][0] for e in EMOTIONS}
    duration = {e: measured[voice, e][1] for e in EMOTIONS}
    rms = {e: measured[voice, e][2] for e in EMOTIONS}
    # measured for Arjun: excited 129 Hz / 2.3 s vs sad 87 Hz / 4.5 s; angry RMS 0.121 vs sad 0.047
    assert f0["excited"] > 1.25 * f0["sad"]
    assert duration["excited"] < 0.7 * duration["sad"]
    assert rms["angry"] > 2.0 * rms["sad"]
    assert max(f0, key=f0.get) == "surprised"
    assert min(f0, key=f0.get) == "sad" and max(duration, key=duration.get) == "sad"
    assert max(rms, key=rms.get) == "angry" and min(duration, key=duration.get) == "excited"


@pytest.mark.parametrize("voice", ["Arjun", "Priya"])
def test_emotions_move_features_as_designed(measured, voice):
    """Each emotion shifts F0, duration and RMS away from neutral in the direction its Prosody says."""
    f0_0, dur_0, rms_0 = measured[voice, "neutral"]
    for emotion, p in EMOTION_PROSODY.items():
        f0, dur, rms = measured[voice, emotion]
        if p.pitch_shift:
            assert np.sign(f0 - f0_0) == np.sign(p.pitch_shift), (emotion, f0, f0_0)
        if p.rate_scale != 1:  # faster speech is shorter (word gaps only lengthen the slow ones further)
            assert np.sign(dur_0 - dur) == np.sign(p.rate_scale - 1), (emotion, dur, dur_0)
        if p.volume_scale != 1:
            assert np.sign(rms - rms_0) == np.sign(p.volume_scale - 1), (emotion, rms, rms_0)


@pytest.mark.parametrize("voice", ["Arjun", "Priya"])
def test_emotions_pairwise_distinct(measured, voice):
    """Every two emotions differ by more than 7 % in F0, duration or RMS (closest pair measured: 13 %)."""
    logs = {e: np.log(measured[voice, e]) for e in EMOTIONS}
    for a, b in itertools.combinations(EMOTIONS, 2):
        assert np.abs(logs[a] - logs[b]).max() > np.log(1.07), (a, b, measured[voice, a], measured[voice, b])


def test_deterministic_regardless_of_history():
    first = synthesize(TEXT, "Anjali", "happy")  # f5 has breath noise: checks the noise seed too
    synthesize("వేరే వాక్యం", "Divya", "excited")  # eSpeak state from another utterance must not leak
    synthesize(TEXT, "Venkat", "sad")
    assert np.array_equal(first, synthesize(TEXT, "Anjali", "happy"))


def test_jitter_changes_output_reproducibly():
    plain = synthesize(TEXT, "Lakshmi")
    a, a2, b = (synthesize(TEXT, "Lakshmi", jitter_seed=s) for s in (7, 7, 8))
    assert np.array_equal(a, a2)
    assert not np.array_equal(a, b) and not np.array_equal(a, plain)
    for wav in (a, b):  # +-3 % in rate stays within +-6 % in length
        assert abs(len(wav) / len(plain) - 1) < 0.06
    settings = [synth.espeak_settings("Lakshmi", jitter_seed=s) for s in range(50)]
    base = synth.espeak_settings("Lakshmi")
    assert {s.rate for s in settings} != {base.rate} and {s.pitch for s in settings} != {base.pitch}
    assert all(abs(s.rate / base.rate - 1) <= 0.035 and abs(s.pitch / base.pitch - 1) <= 0.035 for s in settings)


def test_bad_input_raises_helpful_errors():
    with pytest.raises(ValueError, match="unknown voice 'Nobody'.*Arjun.*Lakshmi"):
        synthesize(TEXT, "Nobody")
    with pytest.raises(ValueError, match="unknown emotion 'bored'.*neutral.*empathetic"):
        synthesize(TEXT, "Arjun", "bored")
    for empty in ("", "   "):
        with pytest.raises(ValueError, match="non-empty"):
            synthesize(empty)


def test_missing_library_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # makes `import espeakng_loader` fail
    with pytest.raises(SynthesisError, match="pip install espeakng-loader"):
        synth._ESpeak()


# ---------------------------------------------------------------------------------------------- batches and cache


def test_job_key_covers_what_changes_the_audio():
    job = SynthJob("a", TEXT, "Arjun", "neutral")
    key = job_key(job)
    assert len(key) == 64 and job_key(SynthJob("other-id", TEXT, "Arjun", "neutral")) == key
    assert job_key(SynthJob("a", TEXT, VOICES["Arjun"], "neutral")) == key
    variants = [
        SynthJob("a", TEXT + " ", "Arjun"), SynthJob("a", TEXT, "Ravi"), SynthJob("a", TEXT, "Arjun", "sad"),
        SynthJob("a", TEXT, "Arjun", jitter_seed=0),
        SynthJob("a", TEXT, dataclasses.replace(VOICES["Arjun"], rate=166)),
    ]
    assert len({key, *map(job_key, variants)}) == len(variants) + 1


def _jobs() -> list[SynthJob]:
    return [
        SynthJob("greet", TEXT, "Arjun"),
        SynthJob("user-q", "నాకు టికెట్ కావాలి.", "Kiran", "angry", jitter_seed=3),
        SynthJob("ack", "సరే, ఒక్క నిమిషం.", "Priya", "calm"),
        SynthJob("old", "ధన్యవాదాలు.", "Venkat", "sad", jitter_seed=11),
        SynthJob("breathy", "మీ పేరు ఏమిటి?", "Anjali", "surprised"),
    ]


def test_synthesize_many_writes_matching_wavs_and_caches(tmp_path, monkeypatch):
    jobs = _jobs()
    paths = synthesize_many(jobs, tmp_path, progress=False)
    assert [p.name for p in paths] == [f"{job_key(j)}.wav" for j in jobs]
    for job, path in zip(jobs, paths):
        wav, sample_rate = load_audio(path)
        assert sample_rate == SAMPLE_RATE
        expected = synthesize(job.text, job.voice, job.emotion, jitter_seed=job.jitter_seed)
        assert len(wav) == len(expected) and np.abs(wav - expected).max() < 1e-4  # 16-bit file of the same audio

    mtimes = [p.stat().st_mtime_ns for p in paths]

    def must_not_run(job):
        raise AssertionError(f"cache miss for {job.id}")

    monkeypatch.setattr(synth, "_run_job", must_not_run)
    assert synthesize_many(jobs, tmp_path, progress=False) == paths
    assert [p.stat().st_mtime_ns for p in paths] == mtimes


def test_synthesize_many_parallel_equals_serial(tmp_path):
    jobs = _jobs()
    serial = synthesize_many(jobs, tmp_path / "serial", num_workers=1, progress=False)
    parallel = synthesize_many(jobs, tmp_path / "parallel", num_workers=2, progress=False)
    assert [p.name for p in serial] == [p.name for p in parallel]
    for s, p in zip(serial, parallel):
        assert s.read_bytes() == p.read_bytes(), s.name


def test_synthesize_many_names_the_failing_job(tmp_path, monkeypatch):
    jobs = _jobs()
    real = synth._run_job

    def fail_on_ack(job):
        if job.id == "ack":
            raise RuntimeError("boom")
        return real(job)

    monkeypatch.setattr(synth, "_run_job", fail_on_ack)
    with pytest.raises(SynthesisError, match="job 'ack' \\(text 'సరే, ఒక్క నిమిషం.'\\).*boom"):
        synthesize_many(jobs, tmp_path, progress=False)
    with pytest.raises(ValueError, match="job 'bad'.*unknown emotion"):
        synthesize_many([SynthJob("bad", TEXT, "Arjun", "bored")], tmp_path, progress=False)
    with pytest.raises(ValueError, match="job 'empty' has empty text"):
        synthesize_many([SynthJob("empty", " ", "Arjun")], tmp_path, progress=False)
