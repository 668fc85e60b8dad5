"""Reading public speech corpora into one record type, ``RawUtterance``, whatever their on-disk layout.

Each parser takes the folder a corpus was extracted to and yields ``RawUtterance`` records lazily, so a 100-hour
corpus never sits in memory. The parsers search below ``root`` for their index files, so ``root`` may be the folder
that holds the archive's top-level directory (``LibriSpeech/``, ``LJSpeech-1.1/``) or that directory itself.

Bad input never stops a parser: a malformed transcript line is skipped with a warning naming the file and line, a
listed utterance whose audio file is missing is skipped with a warning, and both are counted in an optional
``ParseReport`` the caller passes in.

``acquire`` downloads and unpacks an http corpus (``s2slib.data.download``); ``iter_source`` reads any registered
source (``s2slib.data.sources``) through the right parser.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import socket
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from s2slib.audio import AudioError, load_audio, resample
from s2slib.paths import repo_root
from s2slib.data.download import EXTRACTED_MARKER, download, extract
from s2slib.data.sources import Source, get_source

log = logging.getLogger(__name__)


@dataclass
class RawUtterance:
    """One utterance of a corpus, before any preprocessing.

    Exactly one of ``audio_path`` (a file on disk) and ``audio_array`` (float32 ``(T,)``, with ``sample_rate``) is set.
    ``id`` is unique within its source; ``speaker`` is the corpus's own speaker id; ``meta`` holds extra columns
    (gender, age, chapter...).
    """

    id: str
    speaker: str
    text: str
    source: str
    audio_path: Path | None = None
    audio_array: np.ndarray | None = None
    sample_rate: int | None = None
    emotion: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.audio_path is None) == (self.audio_array is None):
            raise ValueError(f"utterance {self.id!r}: set exactly one of audio_path and audio_array.")
        if self.audio_array is not None and not self.sample_rate:
            raise ValueError(f"utterance {self.id!r}: audio_array needs its sample_rate.")

    def load(self, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
        """The waveform as ``(wav: float32 (T,), sample_rate)``, resampled to ``sample_rate`` if given."""
        if self.audio_path is not None:
            return load_audio(self.audio_path, sample_rate=sample_rate)
        wav, sr = self.audio_array, int(self.sample_rate)
        if sample_rate is not None and sample_rate != sr:
            wav, sr = resample(wav, sr, sample_rate), sample_rate
        return wav, sr


@dataclass
class ParseReport:
    """What a parser skipped: ``malformed`` as (file, line number, reason), ``missing_audio`` as (id, expected path)."""

    malformed: list[tuple[str, int, str]] = field(default_factory=list)
    missing_audio: list[tuple[str, str]] = field(default_factory=list)

    def bad_line(self, path: Path, line_no: int, reason: str) -> None:
        self.malformed.append((str(path), line_no, reason))
        log.warning("%s:%d: skipped a malformed line (%s)", path, line_no, reason)

    def no_audio(self, utt_id: str, expected: Path) -> None:
        self.missing_audio.append((utt_id, str(expected)))
        log.warning("%s: audio file missing, utterance skipped (expected %s)", utt_id, expected)


def _find(root: Path, pattern: str) -> list[Path]:
    """Paths matching ``pattern`` in ``root`` or one folder down, else anywhere below it; sorted for a stable order.

    Looking near the top first keeps large corpora (tens of thousands of files) from being walked in full.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such corpus folder. Run acquire() first or check the path.")
    near = sorted(root.glob(pattern)) + sorted(root.glob(f"*/{pattern}"))
    return near or sorted(root.rglob(pattern))


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) of a UTF-8 text file; a BOM is dropped."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        for line_no, line in enumerate(f, start=1):
            yield line_no, line.rstrip("\r\n")


# --------------------------------------------------------------------------------------------------------------------
# OpenSLR SLR66 (and its sibling Google crowdsourced corpora SLR63-SLR80)
# --------------------------------------------------------------------------------------------------------------------


def parse_slr66(root: str | os.PathLike, *, source: str = "slr66-te",
                report: ParseReport | None = None) -> Iterator[RawUtterance]:
    """Google's crowdsourced Telugu TTS corpus (OpenSLR SLR66).

    Layout: every ``line_index.tsv`` below ``root`` holds ``file_id<TAB>text`` lines (some releases carry an empty or
    extra middle field, which is ignored); the audio is ``<file_id>.wav`` beside the index (the published zips) or in a
    ``wav/`` folder next to it. The speaker is the file id without its last ``_`` group
    (``tef_00001_00012345`` -> ``tef_00001``); ``tef``/``tem`` prefixes mark female/male voices.
    """
    report = report if report is not None else ParseReport()
    indexes = _find(Path(root), "line_index.tsv")
    if not indexes:
        raise FileNotFoundError(f"{root}: no line_index.tsv found; is this an extracted SLR66 archive?")
    for index in indexes:
        for line_no, line in _read_lines(index):
            if not line.strip():
                continue
            fields = [f.strip() for f in line.split("\t") if f.strip()]
            if len(fields) < 2 or "_" not in fields[0]:
                report.bad_line(index, line_no, "expected 'file_id<TAB>text'")
                continue
            file_id, text = fields[0], fields[-1]
            candidates = (index.parent / "wav" / f"{file_id}.wav", index.parent / f"{file_id}.wav")
            audio = next((p for p in candidates if p.is_file()), None)
            if audio is None:
                report.no_audio(file_id, candidates[0])
                continue
            speaker = file_id.rsplit("_", 1)[0]
            meta = {"gender": {"f": "female", "m": "male"}[speaker[2]]} if re.match(r"^[a-z]{2}[fm]_", speaker) else {}
            yield RawUtterance(id=file_id, speaker=speaker, text=text, source=source, audio_path=audio, meta=meta)


# --------------------------------------------------------------------------------------------------------------------
# LibriSpeech
# --------------------------------------------------------------------------------------------------------------------

_LIBRI_ID = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def parse_librispeech(root: str | os.PathLike, *, source: str = "librispeech-clean-100",
                      report: ParseReport | None = None) -> Iterator[RawUtterance]:
    """LibriSpeech (Panayotov et al., 2015): ``<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` with
    lines ``<speaker>-<chapter>-<n> <TEXT>`` and audio ``<speaker>-<chapter>-<n>.flac`` beside it."""
    report = report if report is not None else ParseReport()
    transcripts = _find(Path(root), "*.trans.txt")
    if not transcripts:
        raise FileNotFoundError(f"{root}: no *.trans.txt found; is this an extracted LibriSpeech archive?")
    for trans in transcripts:
        subset = trans.parent.parent.parent.name
        for line_no, line in _read_lines(trans):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            match = _LIBRI_ID.match(utt_id)
            if match is None or not text.strip():
                report.bad_line(trans, line_no, "expected '<speaker>-<chapter>-<n> <TEXT>'")
                continue
            audio = trans.parent / f"{utt_id}.flac"
            if not audio.is_file():
                report.no_audio(utt_id, audio)
                continue
            yield RawUtterance(id=utt_id, speaker=match.group(1), text=text.strip(), source=source, audio_path=audio,
                               meta={"chapter": match.group(2), "subset": subset})


# --------------------------------------------------------------------------------------------------------------------
# Common Voice (release TSVs) and the course's bundled samples
# --------------------------------------------------------------------------------------------------------------------


def parse_common_voice(root: str | os.PathLike, tsv: str = "validated.tsv", *, source: str = "commonvoice-te",
                       report: ParseReport | None = None) -> Iterator[RawUtterance]:
    """A Common Voice release folder (Ardila et al., 2020), or the course's ``data/samples`` (``tsv="clips.tsv"``).

    The TSV has a header naming at least ``path`` and ``sentence`` and a speaker column (``client_id`` in releases,
    ``speaker`` in the bundled samples); ``gender``, ``age`` and others go to ``meta``. Clips are looked up in
    ``<root>/clips/`` (releases) and then in ``root`` itself (the bundled samples).
    """
    report = report if report is not None else ParseReport()
    root = Path(root)
    index = root / tsv
    if not index.is_file():
        found = _find(root, tsv)
        if not found:
            raise FileNotFoundError(f"{root}: no {tsv} found; expected a Common Voice release folder.")
        index, root = found[0], found[0].parent
    with open(index, encoding="utf-8-sig", newline="") as f:
        # QUOTE_NONE: sentences contain quotation marks that are text, not CSV quoting
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            return
        columns = {name.strip(): i for i, name in enumerate(header)}
        speaker_col = "client_id" if "client_id" in columns else "speaker" if "speaker" in columns else None
        missing = [c for c in ("path", "sentence") if c not in columns] + ([] if speaker_col else ["client_id/speaker"])
        if missing:
            raise ValueError(f"{index}: header lacks column(s) {', '.join(missing)}; found {', '.join(columns)}.")
        for row in reader:
            line_no = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                report.bad_line(index, line_no, f"{len(row)} fields, the header has {len(header)}")
                continue
            values = {name: row[i].strip() for name, i in columns.items()}
            clip, text = values["path"], values["sentence"]
            if not clip or not text:
                report.bad_line(index, line_no, "empty path or sentence")
                continue
            audio = next((p for p in (root / "clips" / clip, root / clip) if p.is_file()), None)
            if audio is None:
                report.no_audio(Path(clip).stem, root / "clips" / clip)
                continue
            meta = {k: v for k, v in values.items() if k not in ("path", "sentence", speaker_col) and v}
            yield RawUtterance(id=Path(clip).stem, speaker=values[speaker_col], text=text, source=source,
                               audio_path=audio, meta=meta)


# --------------------------------------------------------------------------------------------------------------------
# LJ Speech
# --------------------------------------------------------------------------------------------------------------------


def parse_ljspeech(root: str | os.PathLike, *, source: str = "ljspeech",
                   report: ParseReport | None = None) -> Iterator[RawUtterance]:
    """LJ Speech 1.1 (Ito & Johnson, 2017): ``metadata.csv`` lines ``id|text|normalized text`` and ``wavs/<id>.wav``.

    ``text`` is the normalized transcript (numbers and abbreviations spelled out) when present; the original is kept
    in ``meta["raw_text"]``. One speaker, ``LJ``.
    """
    report = report if report is not None else ParseReport()
    found = _find(Path(root), "metadata.csv")
    if not found:
        raise FileNotFoundError(f"{root}: no metadata.csv found; is this an extracted LJSpeech archive?")
    metadata = found[0]
    for line_no, line in _read_lines(metadata):
        if not line.strip():
            continue
        fields = line.split("|")
        utt_id = fields[0].strip()
        texts = [t.strip() for t in fields[1:3] if t.strip()]
        if not utt_id or not texts or len(fields) > 3:
            report.bad_line(metadata, line_no, "expected 'id|text|normalized text'")
            continue
        audio = metadata.parent / "wavs" / f"{utt_id}.wav"
        if not audio.is_file():
            report.no_audio(utt_id, audio)
            continue
        yield RawUtterance(id=utt_id, speaker="LJ", text=texts[-1], source=source, audio_path=audio,
                           meta={"raw_text": texts[0]})


# --------------------------------------------------------------------------------------------------------------------
# VCTK 0.92
# --------------------------------------------------------------------------------------------------------------------


def _vctk_speaker_info(path: Path) -> dict[str, dict[str, str]]:
    """``speaker-info.txt``: ``ID AGE GENDER ACCENTS REGION...`` per line, header first; ids may lack the ``p``."""
    info: dict[str, dict[str, str]] = {}
    if not path.is_file():
        return info
    for _, line in _read_lines(path):
        fields = line.split()
        if len(fields) < 4 or not fields[1].isdigit():
            continue  # the header, comments, short lines
        spk = fields[0] if fields[0][0].isalpha() else f"p{fields[0]}"
        info[spk] = {"age": fields[1], "gender": fields[2], "accent": fields[3]}
    return info


def parse_vctk(root: str | os.PathLike, *, mic: str = "mic1", source: str = "vctk",
               report: ParseReport | None = None) -> Iterator[RawUtterance]:
    """CSTR VCTK 0.92 (Yamagishi et al., 2019): ``txt/<spk>/<spk>_<n>.txt`` and
    ``wav48_silence_trimmed/<spk>/<spk>_<n>_<mic>.flac``. Utterances without a ``mic`` recording (some exist only for
    the other microphone, and speaker p315 has no text) are skipped."""
    report = report if report is not None else ParseReport()
    txt_dirs = [p for p in _find(Path(root), "txt") if p.is_dir()]
    if not txt_dirs:
        raise FileNotFoundError(f"{root}: no txt/ folder found; is this an extracted VCTK 0.92 archive?")
    corpus = txt_dirs[0].parent
    speakers = _vctk_speaker_info(corpus / "speaker-info.txt")
    for txt in sorted((corpus / "txt").glob("*/*.txt")):
        spk, utt_id = txt.parent.name, txt.stem
        text = txt.read_text(encoding="utf-8", errors="replace").strip()
        if not text or not utt_id.startswith(f"{spk}_"):
            report.bad_line(txt, 1, "empty transcript or a name not '<speaker>_<n>.txt'")
            continue
        audio = corpus / "wav48_silence_trimmed" / spk / f"{utt_id}_{mic}.flac"
        if not audio.is_file():
            report.no_audio(utt_id, audio)
            continue
        yield RawUtterance(id=utt_id, speaker=spk, text=text, source=source, audio_path=audio,
                           meta={"mic": mic, **speakers.get(spk, {})})


# --------------------------------------------------------------------------------------------------------------------
# Hugging Face datasets
# --------------------------------------------------------------------------------------------------------------------


class DatasetAccessError(RuntimeError):
    """A Hugging Face dataset that cannot be read: gated without access, offline, or not found. Says what to do."""


_LOGIN_HINT = (
    "then give this machine a token: set the environment variable HF_TOKEN=<token> (create one at "
    "https://huggingface.co/settings/tokens) or run `hf auth login` (`huggingface-cli login` in older versions)."
)


def _hf_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _hub_reachable(timeout: float = 5.0) -> tuple[bool, str]:
    """Whether a TCP connection to the Hub endpoint opens within ``timeout`` s: fail fast instead of hanging.

    Behind an HTTP proxy a direct connection proves nothing, so the probe is skipped there.
    """
    from huggingface_hub import constants

    endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    if endpoint.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(endpoint.hostname or ""):
        return True, constants.ENDPOINT
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout):
            return True, constants.ENDPOINT
    except OSError as exc:
        return False, f"{constants.ENDPOINT} ({exc})"


def _explain_hf_error(exc: Exception, name: str, config: str | None, gated: bool, token: str | None) -> Exception:
    """Turn an exception from ``datasets``/``huggingface_hub`` into a ``DatasetAccessError`` that says what to do."""
    from huggingface_hub import constants, get_token

    page = f"{constants.ENDPOINT.rstrip('/')}/datasets/{name}"
    text = f"{type(exc).__name__}: {exc}"
    has_token = bool(token or get_token())
    denied = re.search(r"gated|401|403|unauthori[sz]ed|forbidden|authenticated|restricted", text, re.I)
    not_found = re.search(r"not ?found|doesn't exist|does not exist|404", text, re.I)
    if "gated" in text.lower() or (gated and (denied or not_found)):
        state = ("the token in use has no access yet" if has_token else "no Hugging Face token was found")
        return DatasetAccessError(
            f"{name} is a gated dataset and {state}. Open {page}, log in and accept its terms of use, "
            f"{_LOGIN_HINT}\n(underlying error: {text})"
        )
    if re.search(r"offline|connection|resolve|timed? ?out|network|unreachable", text, re.I):
        return DatasetAccessError(
            f"{name}: the Hugging Face Hub cannot be reached and no cached copy was found. Connect to the internet, "
            f"or on a machine that has it run `datasets.load_dataset({name!r}, {config!r})` and "
            f"`.save_to_disk(path)`, copy the folder here and pass local_path=path.\n(underlying error: {text})"
        )
    if not_found:
        return DatasetAccessError(
            f"{name} (config {config!r}) was not found on the Hub. Check the id and config on {page}; "
            f"ids of community mirrors change.\n(underlying error: {text})"
        )
    return DatasetAccessError(f"{name} (config {config!r}) could not be loaded: {text}")


def _load_hf(name: str, config: str | None, split: str | None, *, streaming: bool, token: str | None,
             local_path: str | os.PathLike | None, gated: bool) -> Any:
    import datasets

    if local_path is not None:
        local_path = Path(local_path)
        if not local_path.exists():
            raise FileNotFoundError(f"{local_path}: no dataset saved there (expected a datasets.save_to_disk folder).")
        ds = datasets.load_from_disk(str(local_path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{local_path}: no split {split!r}; it has {', '.join(ds)}.")
            ds = ds[split]
        return ds
    if not _hf_offline():
        reachable, where = _hub_reachable()
        if not reachable:
            raise DatasetAccessError(
                f"{name}: the Hugging Face Hub is unreachable from this machine ({where}). If the dataset is in the "
                f"local cache, set HF_HUB_OFFLINE=1 to use it; otherwise save a copy elsewhere with "
                f"`datasets.load_dataset({name!r}, {config!r}).save_to_disk(path)` and pass local_path=path."
            )
    try:
        return datasets.load_dataset(name, config, split=split, streaming=streaming, token=token)
    except Exception as exc:  # datasets and huggingface_hub raise many types; all are explained the same way
        if _hf_offline():
            raise DatasetAccessError(
                f"{name}: offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and no cached copy was found. "
                f"Unset it and connect to the internet, or pass local_path= to a datasets.save_to_disk folder.\n"
                f"(underlying error: {type(exc).__name__}: {exc})"
            ) from exc
        raise _explain_hf_error(exc, name, config, gated, token) from exc


def _decode_hf_audio(value: Any, utt_id: str, base: Path | None) -> tuple[np.ndarray, int]:
    """Decode an undecoded audio cell (``{"bytes", "path"}`` or a path string) with soundfile; ``(T,)`` float32."""
    data, path = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (None, value)
    try:
        if data:
            wav, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # (T, C)
        elif path:
            local = Path(path) if Path(path).is_absolute() or base is None else base / path
            wav, sr = sf.read(str(local), dtype="float32", always_2d=True)
        else:
            raise AudioError(f"{utt_id}: the audio cell holds neither bytes nor a path.")
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"{utt_id}: could not decode the audio ({type(exc).__name__}: {exc}).") from exc
    return np.ascontiguousarray(wav.mean(axis=1), dtype=np.float32), int(sr)  # (T,)


def iter_hf_dataset(
    name: str,
    config: str | None = None,
    split: str | None = "train",
    *,
    streaming: bool = True,
    token: str | None = None,
    audio_column: str = "audio",
    text_column: str = "sentence",
    speaker_column: str | None = None,
    local_path: str | os.PathLike | None = None,
    source: str | None = None,
    gated: bool = False,
    report: ParseReport | None = None,
) -> Iterator[RawUtterance]:
    """Utterances of a Hugging Face dataset, from the Hub (``datasets.load_dataset``) or from a
    ``save_to_disk`` folder (``local_path``), with ``audio_array`` (float32 ``(T,)``, mono) and ``sample_rate``.

    The audio column is cast to ``Audio(decode=False)`` and decoded here with soundfile: ``datasets`` 4+ decodes
    audio with torchcodec (and FFmpeg), which the course does not require.

    Raises ``DatasetAccessError`` with instructions for gated datasets without access (accept the terms on the
    dataset page, then set ``HF_TOKEN`` or log in), for an unreachable Hub or offline mode, and for unknown ids.
    """
    from datasets import Audio

    # Loading happens here, at call time, so access errors surface at once rather than at the first next().
    ds = _load_hf(name, config, split, streaming=streaming, token=token, local_path=local_path, gated=gated)
    features = getattr(ds, "features", None) or {}
    for column in (audio_column, text_column, speaker_column):
        if column is not None and features and column not in features:
            raise ValueError(f"{name}: no column {column!r}; the dataset has {', '.join(features)}.")
    if isinstance(features.get(audio_column), Audio):
        ds = ds.cast_column(audio_column, Audio(decode=False))
    base = Path(local_path) if local_path is not None else None
    return _iter_hf_rows(ds, name=name, source=source or name, audio_column=audio_column, text_column=text_column,
                         speaker_column=speaker_column, base=base,
                         report=report if report is not None else ParseReport())


def _iter_hf_rows(ds: Any, *, name: str, source: str, audio_column: str, text_column: str,
                  speaker_column: str | None, base: Path | None, report: ParseReport) -> Iterator[RawUtterance]:
    for i, row in enumerate(ds):
        value = row[audio_column]
        path = value.get("path") if isinstance(value, dict) else value
        utt_id = str(row.get("id") or (Path(path).stem if path else f"{source}-{i:07d}"))
        text = str(row.get(text_column) or "").strip()
        if not text:
            report.bad_line(Path(name), i + 1, f"row {i}: empty {text_column!r}")
            continue
        wav, sr = _decode_hf_audio(value, utt_id, base)
        speaker = str(row[speaker_column]) if speaker_column and row.get(speaker_column) is not None else "unknown"
        meta = {k: v for k, v in row.items()
                if k not in (audio_column, text_column, speaker_column) and isinstance(v, (str, int, float, bool))}
        yield RawUtterance(id=utt_id, speaker=speaker, text=text, source=source, audio_array=wav, sample_rate=sr,
                           meta=meta)


# --------------------------------------------------------------------------------------------------------------------
# Registry glue: acquire a source, iterate any source
# --------------------------------------------------------------------------------------------------------------------

PARSERS: dict[str, Callable[..., Iterator[RawUtterance]]] = {
    "slr66": parse_slr66,
    "librispeech": parse_librispeech,
    "common_voice": parse_common_voice,
    "ljspeech": parse_ljspeech,
    "vctk": parse_vctk,
}

_ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")


def _archive_stem(filename: str) -> str:
    """``te_in_female.zip`` -> ``te_in_female``; ``LJSpeech-1.1.tar.bz2`` -> ``LJSpeech-1.1``."""
    for suffix in _ARCHIVE_SUFFIXES:
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


def _synthetic_error(name: str) -> ValueError:
    return ValueError(f"{name!r} is synthetic speech: it is generated, not downloaded or parsed. "
                      f"Use s2slib.data.synth to produce it.")


def acquire(source_name: str, data_dir: str | os.PathLike, *, progress: bool = True, token: str | None = None) -> Path:
    """Make ``source_name`` available locally and return the folder to parse.

    http sources: every file is downloaded (cached, resumable, checksum-verified) to ``<data_dir>/<source>/`` and
    unpacked into ``<data_dir>/<source>/<archive stem>/``; a finished extraction is never redone.
    huggingface sources: the split is downloaded with ``datasets`` and saved to ``<data_dir>/<source>/hf`` (what
    ``iter_source`` then reads). bundled sources: the folder in the repository. synthetic: ``ValueError``.
    """
    src = get_source(source_name)
    root = Path(data_dir) / src.name
    if src.kind == "synthetic":
        raise _synthetic_error(src.name)
    if src.kind == "bundled":
        return _bundled_root(src)
    if src.kind == "huggingface":
        saved = root / "hf"
        if not (saved / "dataset_info.json").is_file():
            from datasets import Audio

            ds = _load_hf(src.hf_dataset, src.hf_config, src.hf_split, streaming=False, token=token, local_path=None,
                          gated=src.gated)
            if isinstance(ds.features.get(src.hf_audio_column), Audio):
                ds = ds.cast_column(src.hf_audio_column, Audio(decode=False))
            ds.save_to_disk(str(saved))
        return saved
    for remote in src.files:
        target = root / _archive_stem(remote.name)
        if (target / EXTRACTED_MARKER).is_file():
            continue  # unpacked from a verified archive earlier: no need to re-hash gigabytes
        archive = download(remote.urls, root / remote.name, remote.sha256, source=src.name,
                           expected_size=remote.size_bytes, progress=progress)
        extract(archive, target)
    return root


def _bundled_root(src: Source) -> Path:
    root = repo_root() / (src.bundled_path or "")
    if not root.is_dir():
        raise FileNotFoundError(f"{src.name}: the bundled folder {root} is missing; it ships with the repository "
                                f"(restore it with `git checkout -- {src.bundled_path}`).")
    return root


def iter_source(
    source_name: str,
    data_dir: str | os.PathLike,
    *,
    download: bool = True,
    streaming: bool = True,
    token: str | None = None,
    progress: bool = True,
    report: ParseReport | None = None,
) -> Iterator[RawUtterance]:
    """Utterances of any registered source, read by its parser (errors in reaching the data are raised at call time).

    http sources are acquired first when ``download`` (else ``<data_dir>/<source>`` must already hold them).
    huggingface sources read ``<data_dir>/<source>/hf`` when ``acquire`` saved a copy there, else the Hub (streamed
    when ``streaming``). bundled sources read the repository folder. synthetic sources raise ``ValueError``: they are
    produced by ``s2slib.data.synth``.
    """
    src = get_source(source_name)
    if src.kind == "synthetic":
        raise _synthetic_error(src.name)
    if src.kind == "huggingface":
        saved = Path(data_dir) / src.name / "hf"
        return iter_hf_dataset(
            src.hf_dataset, src.hf_config, src.hf_split, streaming=streaming, token=token,
            audio_column=src.hf_audio_column, text_column=src.hf_text_column, speaker_column=src.hf_speaker_column,
            local_path=saved if (saved / "dataset_info.json").is_file() else None, source=src.name, gated=src.gated,
            report=report,
        )
    if src.kind == "bundled":
        root = _bundled_root(src)
    elif download:
        root = acquire(src.name, data_dir, progress=progress)
    else:
        root = Path(data_dir) / src.name
    parser = src.parser if callable(src.parser) else PARSERS[src.parser]
    return parser(root, source=src.name, report=report, **dict(src.parser_kwargs))
