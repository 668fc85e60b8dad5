"""Preprocessing and manifests: every kind of bad input is rejected with its reason, good input comes out clean."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s2slib.audio import load_audio
from s2slib.data.manifest import Utterance, assign_splits, read_manifest, write_manifest, write_splits
from s2slib.data.preprocess import PreprocessConfig, frame_rms_db, preprocess_many, preprocess_one


@dataclass
class Raw:
    id: str
    speaker: str = "spk"
    text: str = "నమస్కారం"
    source: str = "test"
    audio_path: Path | None = None
    audio_array: np.ndarray | None = None
    sample_rate: int | None = None
    emotion: str | None = None
    meta: dict = field(default_factory=dict)


def speechlike(seconds: float, sr: int, seed: int = 0, level: float = 0.1) -> np.ndarray:
    """Amplitude-modulated harmonics with pauses: loud syllables, quiet gaps."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 20 * rng.random()
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
    return (level * tone * envelope / 2).astype(np.float32)


def write(path: Path, wav: np.ndarray, sr: int) -> Path:
    sf.write(path, wav, sr)
    return path


def test_good_file_is_resampled_trimmed_and_normalized(tmp_path):
    sr = 22050
    silence = np.zeros(int(0.7 * sr), np.float32)
    wav = np.concatenate([silence, speechlike(2.0, sr), silence])
    item = Raw("a", audio_path=write(tmp_path / "a.wav", wav, sr))
    res = preprocess_one(item, tmp_path / "out")
    assert res["reject"] is None and len(res["utterances"]) == 1
    utt = res["utterances"][0]
    out, out_sr = load_audio(utt["audio_path"])
    assert out_sr == 16000 and utt["sample_rate"] == 16000
    assert 1.9 < utt["duration"] < 2.3  # 1.4 s of leading/trailing silence trimmed, margins kept
    rms_db = 20 * np.log10(np.sqrt(np.mean(out**2)))
    peak_db = 20 * np.log10(np.abs(out).max())
    assert peak_db <= -1.0 + 0.01  # the peak guard holds ...
    assert rms_db == pytest.approx(-16.0, abs=0.2) or peak_db > -1.1  # ... and RMS reaches -16 dBFS unless it binds
    # cached: the second call returns the same record without writing anything new
    before = sorted(p.name for p in (tmp_path / "out").rglob("*"))
    assert preprocess_one(item, tmp_path / "out") == res
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == before


def test_peak_guard_limits_gain_for_peaky_audio(tmp_path):
    sr = 16000
    wav = np.zeros(sr * 2, np.float32)
    wav[::400] = 0.5  # clicks: tiny RMS, high peaks
    wav += speechlike(2.0, sr, level=0.001)
    res = preprocess_one(Raw("p", audio_array=wav, sample_rate=sr), tmp_path)
    out, _ = load_audio(res["utterances"][0]["audio_path"])
    assert 20 * np.log10(np.abs(out).max()) <= -0.99
    assert 20 * np.log10(np.sqrt(np.mean(out**2))) < -16.5  # the guard, not the RMS target, set the gain


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("corrupt", "corrupt"),
        ("empty", "zero samples"),
        ("nan", "non-finite"),
        ("silent", "silent"),
        ("clipped", "clipped"),
        ("short", "too short"),
        ("missing", "no such audio file"),
    ],
)
def test_bad_input_is_rejected_with_reason(tmp_path, kind, reason):
    sr = 16000
    path = tmp_path / f"{kind}.wav"
    if kind == "corrupt":
        good = write(tmp_path / "good.wav", speechlike(1.0, sr), sr).read_bytes()
        path.write_bytes(b"RIFF" + b"\x00" * 40 + good[100:300])  # a truncated header and garbage
    elif kind == "empty":
        write(path, np.zeros(0, np.float32), sr)
    elif kind == "nan":
        wav = speechlike(1.0, sr)
        wav[100:200] = np.nan
        sf.write(path, wav, sr, subtype="FLOAT")
    elif kind == "silent":
        write(path, np.full(sr, 1e-5, np.float32), sr)
    elif kind == "clipped":
        write(path, np.clip(speechlike(1.0, sr, level=3.0), -1, 1), sr)
    elif kind == "short":
        write(path, np.concatenate([np.zeros(sr), speechlike(0.1, sr), np.zeros(sr)]), sr)
    res = preprocess_one(Raw(kind, audio_path=path), tmp_path / "out")
    assert res["utterances"] == []
    assert reason in res["reject"]["reason"], res["reject"]


def test_long_recordings_are_split_at_pauses(tmp_path):
    sr = 16000
    wav = speechlike(37.0, sr)
    cfg = PreprocessConfig(max_segment_s=10.0)
    res = preprocess_one(Raw("long", audio_array=wav, sample_rate=sr), tmp_path, cfg)
    durations = [u["duration"] for u in res["utterances"]]
    assert len(durations) == 4 and max(durations) <= 10.0
    assert sum(durations) == pytest.approx(37.0, abs=0.2)
    ids = [u["id"] for u in res["utterances"]]
    assert ids == ["long#0", "long#1", "long#2", "long#3"]
    # cuts fall in pauses: the first 10 ms of each later segment is quieter than the segment's loudest frame
    for u in res["utterances"][1:]:
        out, _ = load_audio(u["audio_path"])
        levels = frame_rms_db(out, sr)
        assert levels[0] < levels.max() - 20


def test_many_in_parallel_drops_duplicates_and_keeps_going(tmp_path):
    sr = 16000
    items = [Raw(f"u{i}", audio_array=speechlike(1.0, sr, seed=i), sample_rate=sr) for i in range(4)]
    items.append(Raw("dup", audio_array=speechlike(1.0, sr, seed=2), sample_rate=sr))  # same audio as u2
    (tmp_path / "bad.mp3").write_bytes(b"not an mp3 at all")
    items.append(Raw("bad", audio_path=tmp_path / "bad.mp3"))
    kept, rejects = preprocess_many(items, tmp_path / "out", num_workers=2, progress=False)
    assert [u.id for u in kept] == ["u0", "u1", "u2", "u3"]
    reasons = {r.id: r.reason for r in rejects}
    assert reasons["dup"] == "duplicate of u2"
    assert reasons["bad"].startswith("corrupt")
    serial, _ = preprocess_many(items, tmp_path / "out2", num_workers=1, progress=False)
    assert [u.meta["content_sha1"] for u in serial] == [u.meta["content_sha1"] for u in kept]


def test_manifest_round_trip_relative_paths_and_errors(tmp_path):
    audio = tmp_path / "cache" / "x.wav"
    write(audio.parent.mkdir(parents=True) or audio, speechlike(0.5, 16000), 16000)
    utts = [Utterance("x", str(audio), 0.5, 16000, "spk", "తెలుగు", "test", "happy", "train", {"k": 1})]
    path = write_manifest(tmp_path / "run" / "train.jsonl", utts)
    row = json.loads(path.read_text())
    assert row["audio_path"] == "../cache/x.wav" and row["text"] == "తెలుగు"  # relative, Telugu kept as text
    back = read_manifest(path, check_audio=True)
    assert back[0].audio_path == str(audio.resolve()) and back[0].meta == {"k": 1}
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(ValueError, match=r"train.jsonl:2: not valid JSON"):
        read_manifest(path)
    path.write_text('{"id": "y"}\n')
    with pytest.raises(ValueError, match="missing field"):
        read_manifest(path)


def test_splits_are_deterministic_and_optionally_speaker_disjoint(tmp_path):
    def make():
        return [
            Utterance(f"u{i}", "a.wav", 1.0, 16000, f"spk{i % 10}", "t", "s", meta={"sentence_id": i // 3})
            for i in range(600)
        ]

    a = assign_splits(make(), 0.1, 0.1, seed=3)
    b = assign_splits(make(), 0.1, 0.1, seed=3)
    assert [u.split for u in a] == [u.split for u in b]
    counts = {s: sum(u.split == s for u in a) for s in ("train", "val", "test")}
    assert 30 < counts["val"] < 95 and 30 < counts["test"] < 95
    assert [u.split for u in assign_splits(make(), 0.1, 0.1, seed=4)] != [u.split for u in a]

    by_spk = assign_splits(make(), 0.2, 0.2, seed=1, by_speaker=True)
    spk_split = {}
    for u in by_spk:
        assert spk_split.setdefault(u.speaker, u.split) == u.split  # one split per speaker
    grouped = assign_splits(make(), 0.2, 0.2, seed=1, group_key="sentence_id")
    by_sentence = {}
    for u in grouped:
        assert by_sentence.setdefault(u.meta["sentence_id"], u.split) == u.split
    files = write_splits(tmp_path, grouped, prefix="speech_")
    assert sum(len(read_manifest(p)) for p in files.values()) == 600
