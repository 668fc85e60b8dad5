"""Manifests: the JSON Lines files that list a split's utterances, and deterministic train/val/test splits.

One line per utterance::

    {"id": "synthetic-te/sent_0042/Priya/happy", "audio_path": "../../../data/cache/processed/ab/cd.wav",
     "duration": 2.71, "sample_rate": 16000, "speaker": "Priya", "text": "...", "source": "synthetic-te",
     "emotion": "happy", "split": "train"}

``audio_path`` is stored relative to the manifest's folder when it can be (so a run directory and its cache can move
together to another machine) and resolved to an absolute path on reading.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from s2slib import atomic

SPLITS = ("train", "val", "test")


@dataclass
class Utterance:
    """One preprocessed utterance: 16 kHz mono audio on disk plus what is known about it."""

    id: str
    audio_path: str
    duration: float
    sample_rate: int
    speaker: str
    text: str
    source: str
    emotion: str | None = None
    split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


REQUIRED = ("id", "audio_path", "duration", "sample_rate", "speaker", "text", "source")


def write_manifest(path: str | os.PathLike, utterances: Iterable[Utterance]) -> Path:
    """Write ``utterances`` as JSON Lines to ``path`` atomically; audio paths become relative to its folder."""
    path = Path(path)
    base = path.parent.resolve()
    lines = []
    for utt in utterances:
        row = asdict(utt)
        audio = Path(utt.audio_path)
        if audio.is_absolute():
            try:
                row["audio_path"] = os.path.relpath(audio, base)
            except ValueError:  # another drive on Windows: keep it absolute
                pass
        if not row["meta"]:
            del row["meta"]
        lines.append(json.dumps(row, ensure_ascii=False))
    atomic.write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return path


def iter_jsonl(path: str | os.PathLike, what: str = "JSON Lines file") -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-empty line of a JSON Lines file.

    Raises ``FileNotFoundError`` naming ``what`` when the file is missing and ``ValueError`` naming file and line
    for a line that is not JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc


def read_manifest(path: str | os.PathLike, check_audio: bool = False) -> list[Utterance]:
    """Read a manifest written by :func:`write_manifest`; audio paths come back absolute.

    Raises ``ValueError`` naming the file and line for malformed lines, ``FileNotFoundError`` for a missing manifest
    (and, with ``check_audio``, for a listed audio file that is gone).
    """
    path = Path(path)
    base = path.parent.resolve()
    out = []
    for lineno, row in iter_jsonl(path, "manifest"):
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise ValueError(f"{path}:{lineno}: missing field(s) {missing}")
        row["audio_path"] = str((base / row["audio_path"]).resolve())
        if check_audio and not Path(row["audio_path"]).is_file():
            raise FileNotFoundError(f"{path}:{lineno}: audio file {row['audio_path']} is missing")
        known = {k: row.pop(k) for k in list(row) if k in Utterance.__dataclass_fields__}
        known.setdefault("meta", {}).update(row)  # unknown keys are kept, not lost
        out.append(Utterance(**known))
    return out


def stable_fraction(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by ``key`` and ``seed``: the same item lands in the same split on every machine."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(
    utterances: list[Utterance],
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    seed: int = 0,
    by_speaker: bool = False,
    group_key: str | None = None,
) -> list[Utterance]:
    """Set ``utt.split`` deterministically (a hash of the id, or of the speaker when ``by_speaker``).

    Hashing instead of shuffling keeps each item's split stable when the corpus grows. With ``by_speaker`` the
    splits are speaker-disjoint (no voice of val/test is heard in training). ``group_key`` (a ``meta`` key such as
    ``"sentence_id"``) keeps every rendition of one sentence in one split, so test sentences are unseen texts.
    Utterances whose ``split`` is already set are left alone.
    """
    if not 0 <= val_fraction + test_fraction < 1:
        raise ValueError(f"val_fraction + test_fraction must be in [0, 1), got {val_fraction + test_fraction}")
    for utt in utterances:
        if utt.split is not None:
            continue
        if by_speaker:
            key = f"speaker:{utt.speaker}"
        elif group_key and group_key in utt.meta:
            key = f"group:{utt.meta[group_key]}"
        else:
            key = f"id:{utt.id}"
        u = stable_fraction(key, seed)
        utt.split = "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"
    return utterances


def write_splits(folder: str | os.PathLike, utterances: list[Utterance], prefix: str = "") -> dict[str, Path]:
    """Write ``<folder>/<prefix><split>.jsonl`` for every split in ``SPLITS`` (empty splits give empty files)."""
    folder = Path(folder)
    written = {}
    for split in SPLITS:
        rows = sorted((u for u in utterances if u.split == split), key=lambda u: u.id)
        written[split] = write_manifest(folder / f"{prefix}{split}.jsonl", rows)
    return written


def real_test_sets(utterances: Iterable[Utterance], limit: int = 0) -> dict[str, list[Utterance]]:
    """The real recordings of a test manifest, grouped by what training knew of them.

    ``{"real, unseen speaker": [...], "real, seen speaker": [...]}``: both hold utterances never trained on; the
    first are by speakers training never heard at all (``meta["speaker_seen_in_training"]`` false, set by
    :func:`s2slib.data.build.build_dataset` for the bundled clips), the second by a speaker whose other clips were
    trained on. Only real (non-``synthetic-te``) rows count; ``limit`` (> 0) keeps the first ``limit`` of each
    group. A group with no rows is left out.
    """
    groups: dict[str, list[Utterance]] = {"real, unseen speaker": [], "real, seen speaker": []}
    for utt in utterances:
        if utt.source == "synthetic-te" or utt.split not in (None, "test"):
            continue
        seen = bool(utt.meta.get("speaker_seen_in_training", False))
        groups["real, seen speaker" if seen else "real, unseen speaker"].append(utt)
    return {name: (rows[:limit] if limit > 0 else rows) for name, rows in groups.items() if rows}
