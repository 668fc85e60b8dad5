"""Codec tokens (s2slib.s2s.tokens): batched == alone, resume, codec-keyed folders, rejects, atomic writes, CLI."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from s2slib.audio import load_audio, save_audio
from s2slib.baseline import untrained_encodec
from s2slib.codec.config import CodecConfig
from s2slib.codec.model import Codec
from s2slib.codec.train import export_codec, load_codec
from s2slib.data.conversations import Conversation, SpokenTurn, write_conversations
from s2slib.data.manifest import Utterance, write_manifest
from s2slib.s2s.tokens import (TokenCache, codec_fingerprint, load_token_index, main, tokenize_conversations,
                               tokenize_files, tokenize_manifest)

SR = 16000
LENGTHS = (12345, 9001, 6400, 4000, 2900)  # samples: all different; 6400 is exactly 20 frames of 320, the rest not


def _export(path, seed: int, config: CodecConfig | None = None):
    torch.manual_seed(seed)
    return export_codec(Codec(config or CodecConfig.fast50_tiny()).eval(), path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("codec") / "codec.pt", seed=0)


@pytest.fixture
def codec(checkpoint):
    return load_codec(checkpoint)


@pytest.fixture
def cache(tmp_path, checkpoint):
    return TokenCache(tmp_path / "tokens", codec_fingerprint(checkpoint))


def _audio(folder, lengths=LENGTHS, sample_rate=SR) -> list[str]:
    """Tone-plus-noise clips of the given lengths (different on every file), written as 16-bit wav."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, n in enumerate(lengths):
        rng = np.random.default_rng(i)
        t = np.arange(n) / sample_rate
        wav = 0.4 * np.sin(2 * np.pi * (150 + 60 * i) * t) + 0.1 * rng.standard_normal(n)
        paths.append(str(save_audio(folder / f"clip{i}.wav", wav.astype(np.float32), sample_rate)))
    return paths


def _manifest(path, audio_paths: list[str]):
    utts = [Utterance(f"utt{i}", p, 0.5, SR, f"spk{i % 2}", f"వాక్యం {i}", "test", emotion="neutral", split="train")
            for i, p in enumerate(audio_paths)]
    return write_manifest(path, utts)


def _alone(codec, audio_path) -> np.ndarray:
    """The codes of one file encoded by itself: (n_q, ceil(T / hop))."""
    wav, _ = load_audio(audio_path)
    with torch.inference_mode():
        return codec.encode(torch.from_numpy(wav).view(1, 1, -1))[0].numpy()  # (n_q, F)


def test_course_codec_codes_ignore_zero_right_padding(codec):
    wav = 0.3 * torch.randn(1, 1, 5000)
    with torch.inference_mode():
        alone = codec.encode(wav)  # (1, n_q, 16)
        padded = codec.encode(torch.nn.functional.pad(wav, (0, 3000)))  # (1, n_q, 25)
    assert alone.shape == (1, 4, 16) and padded.shape[-1] == 25
    assert torch.equal(padded[..., :16], alone)


def test_batched_codes_equal_each_file_encoded_alone(codec, cache, tmp_path, monkeypatch):
    paths = _audio(tmp_path / "audio")
    shapes = []
    encode = codec.encode
    monkeypatch.setattr(codec, "encode", lambda wav: shapes.append(tuple(wav.shape)) or encode(wav))
    items = [(f"u{i}", paths[i]) for i in (2, 4, 0, 3, 1)]  # not sorted by length
    report = tokenize_files(codec, cache, items, batch_size=3, progress=False)
    assert (report.encoded, report.cached, report.rejected) == (5, 0, [])
    assert shapes == [(3, 1, 12345), (2, 1, 4000)]  # longest first; shorter files zero-padded in their batch
    for path, n in zip(paths, LENGTHS):
        codes = cache.load(path)
        assert codes.dtype == np.int16 and codes.shape == (4, -(-n // 320))
        np.testing.assert_array_equal(codes, _alone(codec, path))
    assert report.frames == sum(-(-n // 320) for n in LENGTHS)
    shapes.clear()  # max_batch_s caps the padded seconds of a batch: 2 x 0.25 s > 0.45 s, so every file goes alone
    tokenize_files(codec, TokenCache(tmp_path / "capped", cache.fingerprint), items, batch_size=3, max_batch_s=0.45,
                   progress=False)
    assert [s[0] for s in shapes] == [1, 1, 1, 1, 1]
    info = json.loads((cache.path / "codec.json").read_text())
    assert info["fingerprint"] == cache.fingerprint
    assert (info["kind"], info["n_q"], info["codebook_size"], info["frame_rate"]) == ("course", 4, 64, 50.0)


def test_second_run_encodes_nothing_and_returns_the_same_rows(codec, cache, tmp_path):
    paths = _audio(tmp_path / "audio", LENGTHS[:3])
    copy = tmp_path / "elsewhere" / "same_audio.wav"
    copy.parent.mkdir()
    shutil.copy(paths[0], copy)
    manifest = _manifest(tmp_path / "train.jsonl", [*paths, str(copy)])
    rows, first = tokenize_manifest(codec, cache, manifest, batch_size=2, progress=False)
    assert (first.encoded, first.cached, first.rejected) == (4, 0, [])
    assert rows[0]["codes_path"] == rows[3]["codes_path"]  # same bytes, same tokens
    assert len(list((cache.path / "codes").rglob("*.npy"))) == 3
    assert [r["id"] for r in rows] == ["utt0", "utt1", "utt2", "utt3"]
    assert rows[1]["n_frames"] == -(-LENGTHS[1] // 320) and rows[1]["speaker"] == "spk1"
    again, second = tokenize_manifest(codec, cache, manifest, batch_size=2, progress=False)
    assert (second.encoded, second.cached, second.frames) == (0, 4, 0)
    assert again == rows
    assert load_token_index(cache.path / "index" / "train.jsonl") == rows


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")  # inside the encodec package
def test_new_weights_get_a_new_folder_and_a_foreign_folder_is_refused(codec, cache, checkpoint, tmp_path):
    other = _export(tmp_path / "other" / "codec.pt", seed=1)
    fingerprint = codec_fingerprint(checkpoint)
    assert fingerprint == cache.fingerprint == codec_fingerprint(str(checkpoint), "course")
    assert codec_fingerprint(other) != fingerprint
    assert TokenCache(cache.root, codec_fingerprint(other)).path != cache.path
    assert codec_fingerprint(checkpoint, "encodec", bandwidth=6.0) != codec_fingerprint(checkpoint, "encodec",
                                                                                         bandwidth=12.0)
    with pytest.raises(ValueError, match="untrained"):
        codec_fingerprint(None, "encodec")
    with pytest.raises(FileNotFoundError):
        codec_fingerprint(tmp_path / "nothing.pt")

    tokenize_files(codec, cache, [("a", _audio(tmp_path / "audio", [3000])[0])], progress=False)
    forged = fingerprint[:16] + ("0" if fingerprint[16] != "0" else "1") + fingerprint[17:]
    with pytest.raises(ValueError, match="another codec"):
        TokenCache(cache.root, forged)
    fewer_levels = Codec(dataclasses.replace(CodecConfig.fast50_tiny(), n_q=2)).eval()
    with pytest.raises(ValueError, match="n_q"):
        tokenize_files(fewer_levels, cache, [], progress=False)
    with pytest.raises(ValueError, match="eval"):
        tokenize_files(codec.train(), cache, [], progress=False)
    with pytest.raises(ValueError, match="untrained"):
        tokenize_files(untrained_encodec(), TokenCache(tmp_path / "enc", fingerprint), [], progress=False)


def test_corrupt_and_missing_audio_are_reported_while_good_files_are_encoded(codec, cache, tmp_path):
    good = _audio(tmp_path / "audio", LENGTHS[:2])
    corrupt = tmp_path / "audio" / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00 not really a wave file" * 20)
    missing = tmp_path / "audio" / "missing.wav"
    manifest = _manifest(tmp_path / "mixed.jsonl", [good[0], str(corrupt), str(missing), good[1]])
    rows, report = tokenize_manifest(codec, cache, manifest, progress=False)
    assert report.encoded == 2 and report.cached == 0
    reasons = {r["id"]: r["reason"] for r in report.rejected}
    assert set(reasons) == {"utt1", "utt2"}
    assert "could not" in reasons["utt1"] and "corrupt.wav" in reasons["utt1"]
    assert "no such audio file" in reasons["utt2"]
    logged = [json.loads(line) for line in (cache.path / "rejects.jsonl").read_text().splitlines()]
    assert {(r["id"], r["audio_path"]) for r in logged} == {("utt1", str(corrupt)), ("utt2", str(missing))}
    assert [r["id"] for r in rows] == ["utt0", "utt3"]


def test_audio_at_another_sample_rate_is_rejected_naming_both_rates(codec, cache, tmp_path):
    good = _audio(tmp_path / "audio", [4000])[0]
    slow = _audio(tmp_path / "audio8k", [4000], sample_rate=8000)[0]
    report = tokenize_files(codec, cache, [("good", good), ("slow", slow)], progress=False)
    assert report.encoded == 1 and cache.has(good) and not cache.has(slow)
    [rejected] = report.rejected
    assert rejected["id"] == "slow" and "8000 Hz" in rejected["reason"] and "16000 Hz" in rejected["reason"]


def test_killed_run_leaves_no_partial_token_file_and_the_rerun_completes(codec, cache, tmp_path, monkeypatch):
    paths = _audio(tmp_path / "audio")
    items = [(f"u{i}", p) for i, p in enumerate(paths)]
    real_save, writes = np.save, []

    class Killed(BaseException):
        pass

    def dying_save(file, arr, *args, **kwargs):
        if np.asarray(arr).dtype != np.int16:  # the codec's latent table (latent.npy), written once per cache
            return real_save(file, arr, *args, **kwargs)
        writes.append(arr.shape)
        if len(writes) == 3:  # the first file of the second batch: half written, then the process dies
            file.write(b"\x93NUMPY\x01\x00partial header")
            raise Killed
        return real_save(file, arr, *args, **kwargs)

    monkeypatch.setattr(np, "save", dying_save)
    with pytest.raises(Killed):
        tokenize_files(codec, cache, items, batch_size=2, progress=False)
    monkeypatch.setattr(np, "save", real_save)
    on_disk = [p for p in (cache.path / "codes").rglob("*") if p.is_file()]
    assert len(on_disk) == 2 and all(not p.name.startswith(".") for p in on_disk)  # no partial or temporary file
    for p in on_disk:
        np.load(p)  # every token file under its final name is complete
    report = tokenize_files(codec, cache, items, batch_size=2, progress=False)
    assert (report.encoded, report.cached) == (3, 2)
    for path in paths:
        np.testing.assert_array_equal(cache.load(path), _alone(codec, path))


def test_conversation_turns_are_tokenized_and_unsynthesized_turns_reported(codec, cache, tmp_path):
    question, answer = _audio(tmp_path / "audio", LENGTHS[3:])
    convs = [
        Conversation("p1/train/u", "pair", "p1", "train", "greeting",
                     [SpokenTurn("user", "q", "u", audio_path=question), SpokenTurn("agent", "a", "a", "happy",
                                                                                    audio_path=answer)]),
        Conversation("p2/train/u", "pair", "p2", "train", "greeting",
                     [SpokenTurn("user", "q", "u", audio_path=question), SpokenTurn("agent", "b", "a", "sad")]),
    ]
    files = write_conversations(tmp_path / "conversations", convs)
    rows, report = tokenize_conversations(codec, cache, files["pairs_train"], progress=False)
    assert report.encoded == 3 and cache.has(question) and cache.has(answer)
    [rejected] = report.rejected
    assert rejected["id"] == "p2/train/u/turn1" and "no audio_path" in rejected["reason"]
    # one indexed row per turn with tokens, carrying who speaks, how, and where in the conversation
    assert [(r["id"], r["role"], r["speaker"], r["emotion"], r["turn"]) for r in rows] == [
        ("p1/train/u/turn0", "user", "u", None, 0), ("p1/train/u/turn1", "agent", "a", "happy", 1),
        ("p2/train/u/turn0", "user", "u", None, 0)]
    assert rows[1]["codes_path"] == str(cache.codes_path(answer))
    assert load_token_index(cache.path / "index" / "pairs_train.jsonl") == rows


def test_command_line_tokenizes_a_manifest(checkpoint, tmp_path, capsys):
    paths = _audio(tmp_path / "audio", LENGTHS[:2])
    corrupt = tmp_path / "audio" / "corrupt.wav"
    corrupt.write_bytes(b"garbage" * 50)
    manifest = _manifest(tmp_path / "val.jsonl", [*paths, str(corrupt)])
    args = ["--codec-kind", "course", "--checkpoint", str(checkpoint), "--manifest", str(manifest),
            "--cache", str(tmp_path / "tokens"), "--batch-size", "2", "--no-progress"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["encoded"], summary["cached"], summary["rejected"]) == (2, 0, 1)
    assert "rejected utt2" in err and "corrupt.wav" in err
    assert summary["fingerprint"] == codec_fingerprint(checkpoint)
    rows = load_token_index(summary["indexes"][0])
    assert [r["id"] for r in rows] == ["utt0", "utt1"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cached"] == 2

    assert main(["--checkpoint", str(tmp_path / "none.pt"), "--manifest", str(manifest),
                 "--cache", str(tmp_path / "tokens")]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["--checkpoint", str(checkpoint), "--cache", str(tmp_path / "tokens")])
    assert usage.value.code == 2
