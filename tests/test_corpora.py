"""The corpus registry, the parsers on fixtures in each corpus's real format, and acquire/iter_source end to end
against a local HTTP server. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from s2slib.data import corpora, sources
from s2slib.data.corpora import (
    DatasetAccessError,
    ParseReport,
    RawUtterance,
    acquire,
    iter_hf_dataset,
    iter_source,
    parse_common_voice,
    parse_librispeech,
    parse_ljspeech,
    parse_slr66,
    parse_vctk,
)
from s2slib.data.download import ChecksumError
from s2slib.data.sources import SOURCES, get_source
from s2slib.paths import repo_root
from fixtures_corpora import (
    SAMPLE_RATE,
    FileServer,
    GatedHub,
    audio_bytes,
    closed_port,
    common_voice_dir,
    hf_dataset_dir,
    librispeech_tar,
    ljspeech_tree,
    sha256_bytes,
    slr66_zip,
    vctk_tree,
)

REPO_ROOT = repo_root()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def _serve_source(monkeypatch, server: FileServer, name: str, archives: dict[str, bytes],
                  sha256: dict[str, str | None]) -> None:
    """Point the registered source ``name`` at ``server`` (a dead mirror first, to exercise the fallback)."""
    files = tuple(
        sources.RemoteFile(fname, (f"http://127.0.0.1:{closed_port()}/{fname}", server.url(f"/{fname}")),
                           sha256[fname], len(data))
        for fname, data in archives.items()
    )
    server.files.update({f"/{fname}": data for fname, data in archives.items()})
    monkeypatch.setitem(SOURCES, name, dataclasses.replace(SOURCES[name], files=files))


def _assert_decodes(utt: RawUtterance) -> None:
    wav, sr = utt.load()
    assert wav.dtype == np.float32 and wav.ndim == 1 and wav.size > 0
    assert sr > 0 and np.abs(wav).max() > 0.05  # the fixtures are 0.3-amplitude tones, not silence


# ---------------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------------

EXPECTED_SOURCES = {"synthetic-te", "samples-te", "slr66-te", "indictts-te", "commonvoice-te", "kathbath-te",
                    "librispeech-clean-100", "ljspeech", "vctk"}


def test_registry_lists_every_source_with_licence_and_access():
    assert EXPECTED_SOURCES <= set(SOURCES)
    for name, src in SOURCES.items():
        assert src.name == name and src.license and src.description
        if src.kind == "http":
            assert src.files and all(f.urls and all(u.startswith("https://") for u in f.urls) for f in src.files)
            assert all(f.sha256 is None or len(f.sha256) == 64 for f in src.files)
            assert src.parser in corpora.PARSERS
        if src.kind == "huggingface":
            assert src.hf_dataset and src.hub_url.startswith("https://huggingface.co/datasets/")
    assert {n for n, s in SOURCES.items() if s.gated} == {"commonvoice-te", "kathbath-te"}
    assert get_source("slr66-te").license == "CC BY-SA 4.0"
    assert [f.name for f in get_source("slr66-te").files] == ["te_in_female.zip", "te_in_male.zip"]
    assert get_source("commonvoice-te").hf_config == "te"


def test_unknown_source_lists_known_names():
    with pytest.raises(KeyError) as err:
        get_source("slr99")
    assert "slr99" in str(err.value) and "slr66-te" in str(err.value) and "ljspeech" in str(err.value)


def test_synthetic_source_points_to_the_synthesiser(tmp_path):
    for call in (iter_source, acquire):
        with pytest.raises(ValueError, match=r"s2slib\.data\.synth"):
            call("synthetic-te", tmp_path)


def test_raw_utterance_needs_exactly_one_audio():
    with pytest.raises(ValueError, match="exactly one"):
        RawUtterance(id="a", speaker="s", text="t", source="x")
    with pytest.raises(ValueError, match="exactly one"):
        RawUtterance(id="a", speaker="s", text="t", source="x", audio_path=REPO_ROOT, audio_array=np.zeros(3),
                     sample_rate=16000)


# ---------------------------------------------------------------------------------------------------------------------
# SLR66 and LibriSpeech: downloaded, extracted and parsed end to end
# ---------------------------------------------------------------------------------------------------------------------


def test_slr66_acquire_and_parse(tmp_path, monkeypatch, caplog):
    female = slr66_zip(tmp_path / "te_in_female.zip",
                       {"tef_00001": [("00010001", "నమస్కారం"), ("00010002", "మీరు ఎలా ఉన్నారు")],
                        "tef_00002": [("00020001", "ధన్యవాదాలు")]},
                       wav_dir=False, bad_lines=("this line has no tab",))
    male = slr66_zip(tmp_path / "te_in_male.zip",
                     {"tem_00003": [("00030001", "శుభోదయం"), ("00030002", "వర్షం పడుతోంది")]},
                     wav_dir=True, unlisted_audio=("tem_00003_00030002",))
    archives = {"te_in_female.zip": female.read_bytes(), "te_in_male.zip": male.read_bytes()}
    report = ParseReport()
    with FileServer({}) as server, caplog.at_level(logging.WARNING):
        # one archive with a known digest, one without (as on OpenSLR): that one is recorded on first download
        _serve_source(monkeypatch, server, "slr66-te", archives,
                      {"te_in_female.zip": sha256_bytes(archives["te_in_female.zip"]), "te_in_male.zip": None})
        data_dir = tmp_path / "data"
        utts = list(iter_source("slr66-te", data_dir, progress=False, report=report))
        n_requests = len(server.requests)
        assert len(list(iter_source("slr66-te", data_dir, progress=False))) == len(utts)
        assert len(server.requests) == n_requests, "a second run must not touch the network"

    assert {u.id: (u.speaker, u.text) for u in utts} == {
        "tef_00001_00010001": ("tef_00001", "నమస్కారం"),
        "tef_00001_00010002": ("tef_00001", "మీరు ఎలా ఉన్నారు"),
        "tef_00002_00020001": ("tef_00002", "ధన్యవాదాలు"),
        "tem_00003_00030001": ("tem_00003", "శుభోదయం"),
    }
    assert {u.meta["gender"] for u in utts} == {"female", "male"}
    assert all(u.source == "slr66-te" for u in utts)
    assert [(line, reason) for _, line, reason in report.malformed] == [(2, "expected 'file_id<TAB>text'")]
    assert [utt_id for utt_id, _ in report.missing_audio] == ["tem_00003_00030002"]
    assert "line_index.tsv:2" in caplog.text
    assert (data_dir / "slr66-te" / "te_in_male.zip.sha256").read_text().split()[0] == sha256_bytes(
        archives["te_in_male.zip"])
    for u in utts:
        _assert_decodes(u)


def test_librispeech_acquire_and_parse(tmp_path, monkeypatch):
    tar = librispeech_tar(tmp_path / "train-clean-100.tar.gz", "train-clean-100", {
        ("19", "198"): ["NORTHANGER ABBEY", "CHAPTER ONE"],
        ("103", "1240"): ["THE QUICK BROWN FOX"],
    }, bad_lines=("19-198-BROKEN", "not-an-id SOME TEXT"))
    data = tar.read_bytes()
    report = ParseReport()
    with FileServer({}) as server:
        _serve_source(monkeypatch, server, "librispeech-clean-100", {"train-clean-100.tar.gz": data},
                      {"train-clean-100.tar.gz": sha256_bytes(data)})
        root = acquire("librispeech-clean-100", tmp_path / "data", progress=False)
    utts = list(parse_librispeech(root, report=report))
    assert {u.id: (u.speaker, u.text, u.meta["chapter"]) for u in utts} == {
        "19-198-0000": ("19", "NORTHANGER ABBEY", "198"),
        "19-198-0001": ("19", "CHAPTER ONE", "198"),
        "103-1240-0000": ("103", "THE QUICK BROWN FOX", "1240"),
    }
    assert {u.meta["subset"] for u in utts} == {"train-clean-100"}
    assert len(report.malformed) == 4  # two bad lines in each of the two transcripts
    for u in utts:
        _assert_decodes(u)
        assert u.audio_path.suffix == ".flac"


def test_checksum_failure_during_acquire_keeps_nothing(tmp_path, monkeypatch):
    tar = librispeech_tar(tmp_path / "x.tar.gz", "train-clean-100", {("1", "2"): ["A"]})
    with FileServer({}) as server:
        _serve_source(monkeypatch, server, "librispeech-clean-100", {"train-clean-100.tar.gz": tar.read_bytes()},
                      {"train-clean-100.tar.gz": "f" * 64})
        with pytest.raises(ChecksumError, match="librispeech-clean-100"):
            acquire("librispeech-clean-100", tmp_path / "data", progress=False)
    assert not (tmp_path / "data" / "librispeech-clean-100" / "train-clean-100").exists()
    assert not (tmp_path / "data" / "librispeech-clean-100" / "train-clean-100.tar.gz").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Common Voice, LJSpeech, VCTK
# ---------------------------------------------------------------------------------------------------------------------

CV_ROWS = [
    {"path": "common_voice_te_1.mp3", "speaker": "spk_a", "age": "twenties", "gender": "", "sentence": "నేడు వర్షం"},
    {"path": "common_voice_te_2.mp3", "speaker": "spk_a", "age": "twenties", "gender": "", "sentence": "రేపు ఎండ"},
    {"path": "common_voice_te_3.mp3", "speaker": "spk_b", "age": "forties", "gender": "male",
     "sentence": "అతను \"సరే\" అన్నాడు"},  # quotes are text in Common Voice TSVs
    {"path": "common_voice_te_4.mp3", "speaker": "spk_b", "age": "", "gender": "", "sentence": "లేదు",
     "_write_audio": "no"},
]


@pytest.mark.parametrize("release", [False, True], ids=["course-samples-layout", "release-layout"])
def test_common_voice(tmp_path, release):
    root = common_voice_dir(tmp_path / "cv", release=release, rows=[dict(r) for r in CV_ROWS],
                            bad_rows=("only\ttwo",))
    report = ParseReport()
    utts = list(parse_common_voice(root, tsv="validated.tsv" if release else "clips.tsv", report=report))
    assert [(u.id, u.speaker, u.text) for u in utts] == [
        ("common_voice_te_1", "spk_a", "నేడు వర్షం"),
        ("common_voice_te_2", "spk_a", "రేపు ఎండ"),
        ("common_voice_te_3", "spk_b", 'అతను "సరే" అన్నాడు'),
    ]
    assert utts[2].meta["gender"] == "male" and utts[0].meta["age"] == "twenties"
    assert len(report.malformed) == 1 and report.malformed[0][1] == 3
    assert [i for i, _ in report.missing_audio] == ["common_voice_te_4"]
    for u in utts:
        assert u.audio_path.suffix == ".mp3"
        wav, sr = u.load(sample_rate=8000)
        assert sr == 8000 and wav.size == pytest.approx(0.1 * 8000, abs=200)


def test_bundled_samples(tmp_path):
    samples = REPO_ROOT / "data" / "samples"
    if not (samples / "clips.tsv").is_file():
        pytest.skip("data/samples is not in this checkout")
    utts = list(iter_source("samples-te", tmp_path))
    assert len(utts) == 45 and len({u.speaker for u in utts}) == 2
    assert all(u.text and u.audio_path.is_file() for u in utts)
    _assert_decodes(utts[0])


def test_ljspeech(tmp_path):
    root = ljspeech_tree(tmp_path, [
        ("LJ001-0001", "Printing, in the only sense", "Printing, in the only sense"),
        ("LJ001-0002", "in 1453", "in fourteen fifty-three"),
    ], bad_lines=("|no id", "LJ001-0009", "LJ001-0010|a|b|c"))
    report = ParseReport()
    utts = list(parse_ljspeech(root, report=report))
    assert [(u.id, u.speaker, u.text) for u in utts] == [
        ("LJ001-0001", "LJ", "Printing, in the only sense"),
        ("LJ001-0002", "LJ", "in fourteen fifty-three"),
    ]
    assert utts[1].meta["raw_text"] == "in 1453"
    assert [line for _, line, _ in report.malformed] == [2, 3, 4]
    wav, sr = utts[0].load()
    assert sr == 22_050 and wav.size == int(0.05 * 22_050)


def test_vctk(tmp_path):
    vctk_tree(tmp_path / "VCTK-Corpus-0.92", {
        "p225": ["Please call Stella.", "Ask her to bring these things."],
        "p226": ["Six spoons of fresh snow peas.", "With her from the store."],
    }, mic2_only=("p226_002",), empty_text=("p225_002",))
    report = ParseReport()
    utts = list(parse_vctk(tmp_path, report=report))
    assert [(u.id, u.speaker, u.text) for u in utts] == [
        ("p225_001", "p225", "Please call Stella."),
        ("p226_001", "p226", "Six spoons of fresh snow peas."),
    ]
    assert utts[0].audio_path.name == "p225_001_mic1.flac" and utts[0].meta["gender"] == "F"
    assert [i for i, _ in report.missing_audio] == ["p226_002"]
    assert len(report.malformed) == 1
    for u in utts:
        _assert_decodes(u)


def test_missing_corpus_folder_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="acquire"):
        list(parse_slr66(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="line_index.tsv"):
        list(parse_slr66(tmp_path))


# ---------------------------------------------------------------------------------------------------------------------
# Hugging Face datasets: local copies, and the errors a learner meets (gated, offline, unreachable)
# ---------------------------------------------------------------------------------------------------------------------


def _hf_rows():
    return [
        {"audio": {"bytes": audio_bytes("WAV", seconds=0.2), "path": "te_f_0001.wav"}, "text": "ఒకటి",
         "gender": "female"},
        {"audio": {"bytes": audio_bytes("FLAC", seconds=0.1), "path": "te_m_0001.flac"}, "text": "రెండు",
         "gender": "male"},
        {"audio": {"bytes": audio_bytes("MP3", seconds=0.1), "path": "te_m_0002.mp3"}, "text": "",
         "gender": "male"},
    ]


def test_iter_hf_dataset_from_disk(tmp_path):
    path = hf_dataset_dir(tmp_path / "ds", _hf_rows(), split="train")
    report = ParseReport()
    utts = list(iter_hf_dataset("SPRINGLab/IndicTTS-Telugu", split="train", local_path=path, text_column="text",
                                speaker_column="gender", source="indictts-te", report=report))
    assert [(u.id, u.speaker, u.text) for u in utts] == [
        ("te_f_0001", "female", "ఒకటి"),
        ("te_m_0001", "male", "రెండు"),
    ]
    assert len(report.malformed) == 1  # the row with an empty transcript
    assert utts[0].audio_path is None and utts[0].sample_rate == SAMPLE_RATE
    assert utts[0].audio_array.shape == (int(0.2 * SAMPLE_RATE),)
    wav, sr = utts[1].load(sample_rate=8000)
    assert sr == 8000 and wav.shape == (800,)
    with pytest.raises(ValueError, match="no column 'sentence'"):
        iter_hf_dataset("x", split="train", local_path=path)


def test_iter_source_reads_a_saved_hf_copy(tmp_path):
    hf_dataset_dir(tmp_path / "data" / "indictts-te" / "hf", _hf_rows())
    utts = list(iter_source("indictts-te", tmp_path / "data"))
    assert [u.speaker for u in utts] == ["female", "male"] and all(u.source == "indictts-te" for u in utts)


def test_unreachable_hub_fails_fast_with_advice(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with pytest.raises(DatasetAccessError, match="unreachable") as err:
        iter_source("commonvoice-te", "/nonexistent-data-dir")
    assert "HF_HUB_OFFLINE=1" in str(err.value) and "local_path" in str(err.value)


_HF_SCRIPT = textwrap.dedent("""
    from s2slib.data.corpora import DatasetAccessError, iter_source
    try:
        iter_source("kathbath-te", "/nonexistent-data-dir")
    except DatasetAccessError as exc:
        print(exc)
""")


@pytest.mark.slow
def test_gated_and_offline_hub_errors_are_explained(tmp_path):
    """Run in fresh interpreters: huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE when it is imported."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    base.update(HF_HOME=str(tmp_path / "hf-home"), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    with GatedHub() as hub:
        gated_env = dict(base, HF_ENDPOINT=hub.url)
        offline_env = dict(base, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", HF_HUB_OFFLINE="1")
        procs = [subprocess.Popen([sys.executable, "-c", _HF_SCRIPT], env=env, cwd=REPO_ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for env in (gated_env, offline_env)]
        (gated, gated_err), (offline, offline_err) = (p.communicate(timeout=120) for p in procs)
    assert hub.requests, "the gated check must have reached the stand-in hub"
    assert "gated" in gated and "accept its terms" in gated, gated_err
    assert f"{hub.url}/datasets/ai4bharat/kathbath" in gated and "HF_TOKEN" in gated and "hf auth login" in gated
    assert "offline mode is on" in offline and "local_path" in offline, offline_err
