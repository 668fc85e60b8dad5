"""Codec tokens: every utterance encoded once into discrete codes, cached on disk for the S2S stages.

The S2S model never sees audio: it reads and writes the codes of a neural codec (the course codec of notebooks
02-03, or the pretrained EnCodec baseline). Encoding the corpus once and caching the codes is what makes S2S
training cheap, so this module does exactly that:

- **Keyed by the codec.** A cache folder is named by :func:`codec_fingerprint`, a SHA-256 over the codec
  checkpoint's bytes, its kind and settings (EnCodec's bandwidth). A retrained codec gets a new folder: its tokens
  never mix with those of the codec before it.
- **Keyed by the audio.** Inside, a file's codes are named by the SHA-1 of the audio file's bytes, so the same audio
  anywhere (copied, listed twice, shared by two manifests) is encoded once and shares its tokens.
- **Resumable and atomic.** Each file's codes are written under a temporary name and renamed into place
  (:mod:`s2slib.atomic`); a killed run leaves no half-written token file under a final name, and the next run
  encodes only what is missing.
- **Nothing dropped silently.** Missing, corrupt or wrongly sampled audio is listed in the report with its reason and
  appended to ``rejects.jsonl``; every input item is either encoded, already cached, or rejected.
- **Batched safely.** Files are sorted by length and encoded in zero right-padded batches. Both codecs are causal
  (a code frame depends only on samples up to its end), so the padding cannot change an item's codes; each item's
  codes are cut to its own ``ceil(T / hop_length)`` frames. ``tests/test_s2s_tokens.py`` checks batched == alone.

Layout of a cache ``<root>/<fingerprint[:16]>/``::

    codec.json                    the codec that wrote the tokens (fingerprint, kind, settings, n_q, codebook_size,
                                  frame_rate, sample_rate, created, latent_dim)
    latent.npy                    float32 (n_q, codebook_size, latent_dim): the codec's codebook vectors, through
                                  which the S2S encoder hears the codes (s2slib.s2s.frontend)
    codes/<sha1[:2]>/<sha1>.npy   int16 codes (n_q, frames) of the audio file whose bytes hash to <sha1>
    index/<manifest stem>.jsonl   one row per tokenized utterance of that manifest (:func:`tokenize_manifest`)
    rejects.jsonl                 a log of the files that could not be tokenized, with why (appended by every run)

Command line::

    python -m s2slib.s2s.tokens --codec-kind course --checkpoint runs/x/codec/codec.pt \\
        --manifest runs/x/manifests/train.jsonl --conversations runs/x/conversations/pairs_train.jsonl \\
        --cache runs/x/tokens
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from s2slib.atomic import atomic_path, write_json, write_text
from s2slib.audio import AudioError, audio_info, load_audio
from s2slib.baseline import EncodecCodec
from s2slib.codec.model import FramedCodec
from s2slib.data.conversations import read_conversations
from s2slib.data.manifest import iter_jsonl, read_manifest
from s2slib.s2s.frontend import codec_latent_table

TOKEN_FORMAT = 1  # bump when the way tokens are made or stored changes: every cache is then rebuilt
CODEC_KINDS = ("course", "encodec")
LATENT_FILE = "latent.npy"  # the codec's codebook vectors beside its tokens (TokenCache.latent_table)
INDEX_FIELDS = ("id", "codes_path", "n_frames", "speaker", "emotion", "source", "split", "text", "duration")


def codec_fingerprint(checkpoint: str | os.PathLike | None, kind: str = "course", **settings: Any) -> str:
    """The hex SHA-256 naming a codec's tokens: over the checkpoint file's bytes, ``kind``, the sorted ``settings``
    and :data:`TOKEN_FORMAT`.

    Parameters
    ----------
    checkpoint: the course codec's ``codec.pt``, or EnCodec's pretrained ``encodec_24khz-d7cc33bc.th``.
    kind: ``"course"`` or ``"encodec"`` (as in :func:`s2slib.baseline.load_audio_codec`).
    settings: what else changes the codes: ``bandwidth=6.0`` for EnCodec; nothing for the course codec (its
        checkpoint fixes everything, and all its levels are stored).

    Raises ``ValueError`` without a checkpoint (untrained weights must never be tokenized for training) and
    ``FileNotFoundError`` for a checkpoint that is not there.
    """
    if kind not in CODEC_KINDS:
        raise ValueError(f"codec kind must be one of {CODEC_KINDS}, got {kind!r}.")
    if checkpoint is None:
        what = "the pretrained encodec_24khz-d7cc33bc.th" if kind == "encodec" else "codec.pt (notebook 02 or 03)"
        raise ValueError(f"a {kind} codec without a checkpoint file has untrained weights, and untrained weights must "
                         f"not be tokenized for training. Pass the path of {what}.")
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"codec checkpoint {path} does not exist.")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    digest.update(json.dumps({"kind": kind, "settings": settings, "token_format": TOKEN_FORMAT},
                             sort_keys=True).encode())
    return digest.hexdigest()


def codec_info(codec) -> dict[str, Any]:
    """What ``codec.json`` records of ``codec``: its kind, settings and the shape of its codes."""
    if isinstance(codec, FramedCodec):
        if getattr(codec, "training", False):
            raise ValueError("the codec is in training mode; call codec.eval() first (tokens come from the "
                             "eval-mode encoder, as load_codec returns it).")
        kind, settings = "course", {}
        n_q, codebook_size = codec.config.n_q, codec.config.codebook_size
    elif isinstance(codec, EncodecCodec):
        if not codec.pretrained:
            raise ValueError(f"this EnCodec has {codec.weights_source} weights: untrained weights must not be "
                             "tokenized for training. Load the pretrained one (s2slib.baseline.load_encodec).")
        kind, settings = "encodec", {"bandwidth": codec.bandwidth}
        n_q, codebook_size = codec.n_q, codec.codebook_size
    else:
        raise TypeError(f"expected the course codec (s2slib.codec.train.load_codec) or an EncodecCodec "
                        f"(s2slib.baseline.load_encodec), got {type(codec).__name__}.")
    if codebook_size > np.iinfo(np.int16).max + 1:
        raise ValueError(f"codes are stored as int16, which holds codebooks of up to 32768 entries; this codec has "
                         f"{codebook_size}.")
    return {"kind": kind, "model": type(codec).__name__, "settings": settings, "n_q": int(n_q),
            "codebook_size": int(codebook_size), "frame_rate": float(codec.frame_rate),
            "sample_rate": int(codec.sample_rate)}


def _n_frames(codec, n_samples: int) -> int:
    """Code frames of ``n_samples`` samples encoded alone: ``ceil(T / hop_length)`` (exact rational for EnCodec,
    which has no integer hop at 16 kHz: ``ceil(T * 75 / 16000)``)."""
    hop = getattr(codec, "hop_length", None)
    if hop:
        return -(-n_samples // hop)
    return math.ceil(Fraction(n_samples) * Fraction(codec.frame_rate) / int(codec.sample_rate))


class TokenCache:
    """The token folder of one codec: ``<root>/<fingerprint[:16]>/`` (layout in the module docstring).

    Parameters
    ----------
    root: the folder holding the caches of every codec (e.g. ``runs/x/tokens``).
    fingerprint: :func:`codec_fingerprint` of the codec whose tokens this is.

    Raises ``ValueError`` when the folder's ``codec.json`` names another fingerprint.
    """

    def __init__(self, root: str | os.PathLike, fingerprint: str):
        if not re.fullmatch(r"[0-9a-f]{64}", str(fingerprint)):
            raise ValueError(f"fingerprint must be the 64 hex digits codec_fingerprint() returns, got {fingerprint!r}.")
        self.root = Path(root)
        self.fingerprint = fingerprint
        self._digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha1: each file hashed once
        info = self.info
        if info is not None and info.get("fingerprint") != fingerprint:
            raise ValueError(
                f"{self.path / 'codec.json'} belongs to the codec with fingerprint {info.get('fingerprint')}, not "
                f"{fingerprint}: its tokens are another codec's. Move or delete {self.path} (or use another root)."
            )

    @property
    def path(self) -> Path:
        """This codec's folder, ``<root>/<fingerprint[:16]>``."""
        return self.root / self.fingerprint[:16]

    @property
    def info(self) -> dict[str, Any] | None:
        """The contents of ``codec.json`` (``n_q``, ``codebook_size``, ``frame_rate``, ...); ``None`` before the
        first tokenization."""
        meta = self.path / "codec.json"
        if not meta.is_file():
            return None
        try:
            return json.loads(meta.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{meta} is not valid JSON ({exc.msg}); delete {self.path} to tokenize again.") from exc

    def record_codec(self, codec) -> dict[str, Any]:
        """Write ``codec.json`` describing ``codec`` on first use; afterwards check that ``codec`` is the one recorded.

        Raises ``ValueError`` when ``codec`` makes codes of another kind or shape than the recorded one (the
        fingerprint given to this cache was computed for another codec).
        """
        info = codec_info(codec)
        recorded = self.info
        if recorded is None:
            recorded = {"fingerprint": self.fingerprint, **info, "token_format": TOKEN_FORMAT,
                        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        differs = {k: (recorded.get(k), v) for k, v in info.items() if recorded.get(k) != v}
        if differs:
            said = ", ".join(f"{k}: {old!r} recorded, {new!r} given" for k, (old, new) in differs.items())
            raise ValueError(f"the codec given is not the one whose tokens are in {self.path} ({said}). Compute the "
                             "cache's fingerprint from this codec's own checkpoint and settings (codec_fingerprint).")
        if "latent_dim" not in recorded or not (self.path / LATENT_FILE).is_file():
            # the codec's codebook vectors, which the S2S encoder hears codes through (s2slib.s2s.frontend); a cache
            # written before they were kept gets them on its next use
            table = codec_latent_table(codec, recorded["n_q"])
            _write_npy(self.path / LATENT_FILE, table)
            recorded = {**recorded, "latent_dim": int(table.shape[-1])}
        if recorded != self.info:
            write_json(self.path / "codec.json", recorded)
        return recorded

    def latent_table(self) -> np.ndarray:
        """The codec's codebook vectors ``float32[n_q, codebook_size, latent_dim]`` kept beside the tokens
        (:func:`s2slib.s2s.frontend.codec_latent_table`); the S2S trainer gives them to a new model."""
        path = self.path / LATENT_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: tokenize with this codec once more (tokenize_run or "
                                    "TokenCache.record_codec writes it)")
        try:
            table = np.load(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable array ({exc}); delete it and tokenize again") from exc
        info = self.info or {}
        want = (info.get("n_q"), info.get("codebook_size"), info.get("latent_dim"))
        if table.ndim != 3 or tuple(table.shape) != want:
            raise ValueError(f"{path} has shape {table.shape}; codec.json says (n_q, codebook_size, latent_dim) = "
                             f"{want}. Delete it and tokenize again.")
        return table

    def _digest(self, audio_path: str | os.PathLike) -> str:
        """SHA-1 of the audio file's bytes (memoized by path, size and modification time)."""
        path = Path(audio_path)
        try:
            st = path.stat()
            key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
            if key not in self._digests:
                with open(path, "rb") as f:
                    self._digests[key] = hashlib.file_digest(f, "sha1").hexdigest()
        except FileNotFoundError:
            raise AudioError(f"{path}: no such audio file.") from None
        except OSError as exc:  # a folder, no permission
            raise AudioError(f"{path}: cannot be read ({exc.strerror or exc}).") from exc
        return self._digests[key]

    def codes_path(self, audio_path: str | os.PathLike) -> Path:
        """Where the codes of ``audio_path`` live: ``codes/<sha1[:2]>/<sha1>.npy`` by the file's content.

        Raises :class:`~s2slib.audio.AudioError` when the audio file does not exist.
        """
        digest = self._digest(audio_path)
        return self.path / "codes" / digest[:2] / f"{digest}.npy"

    def has(self, audio_path: str | os.PathLike) -> bool:
        """Whether the codes of ``audio_path`` are cached (``False`` for a missing audio file)."""
        try:
            return self.codes_path(audio_path).is_file()
        except AudioError:
            return False

    def load(self, audio_path: str | os.PathLike) -> np.ndarray:
        """The cached codes of ``audio_path``: ``int16 (n_q, frames)``."""
        path = self.codes_path(audio_path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokens for {audio_path} in {self.path}; tokenize it first "
                                    "(tokenize_files or python -m s2slib.s2s.tokens).")
        return np.load(path)


@dataclass
class TokenizeReport:
    """What one tokenization did. ``encoded + cached + len(rejected)`` is the number of items given.

    encoded: items whose codes this call wrote (items of identical audio content share one encoding); cached: items
    whose codes were there already; rejected: ``{"audio_path", "id", "reason"}`` per item left without codes;
    seconds, frames: audio seconds encoded and code frames written by this call; wall_s: how long it took.
    """

    encoded: int = 0
    cached: int = 0
    rejected: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    frames: int = 0
    wall_s: float = 0.0

    def summary(self) -> str:
        """One line for a notebook or the command line."""
        speed = f", {self.seconds / self.wall_s:.0f}x real time" if self.seconds and self.wall_s else ""
        return (f"tokens: {self.encoded} encoded, {self.cached} already cached, {len(self.rejected)} rejected; "
                f"{self.seconds:.1f} s of audio -> {self.frames} frames in {self.wall_s:.1f} s{speed}")


def _reject(cache: TokenCache, report: TokenizeReport, group: list[tuple[str, str | None]], reason: str) -> None:
    """List the ``(id, audio_path)`` items of ``group`` as rejected in ``report`` and append them to
    ``rejects.jsonl`` at once (a run killed later still leaves its rejects logged)."""
    rows = [{"audio_path": None if path is None else str(path), "id": item_id, "reason": reason}
            for item_id, path in group]
    report.rejected.extend(rows)
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with open(cache.path / "rejects.jsonl", "a", encoding="utf-8") as log:
        log.writelines(json.dumps({**row, "when": when}, ensure_ascii=False) + "\n" for row in rows)


def _write_npy(path: Path, array: np.ndarray) -> None:
    """Atomically save ``array`` as ``.npy`` (token codes, the codec's latent table): a killed write leaves no file
    under ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def _plan(cache: TokenCache, report: TokenizeReport, items: list[tuple[str, str]], sample_rate: int) -> list[dict]:
    """The files still to encode, longest first: ``{"target", "group", "n_samples"}`` per distinct audio content.

    Counts the cached items into ``report`` and rejects, from the headers alone, what cannot be encoded: missing,
    undecodable, empty, or at another sample rate than ``sample_rate``.
    """
    groups: dict[Path, list[tuple[str, str]]] = {}  # codes path -> the items of that audio content
    for item_id, audio_path in items:
        try:
            target = cache.codes_path(audio_path)
        except AudioError as exc:
            _reject(cache, report, [(item_id, audio_path)], str(exc))
            continue
        if target.is_file():
            report.cached += 1
        else:
            groups.setdefault(target, []).append((item_id, audio_path))
    todo = []
    for target, group in groups.items():
        audio_path = group[0][1]
        try:
            duration, file_sr = audio_info(audio_path)
        except AudioError as exc:
            _reject(cache, report, group, str(exc))
            continue
        if file_sr != sample_rate:
            _reject(cache, report, group, f"{audio_path}: recorded at {file_sr} Hz, but the codec encodes "
                    f"{sample_rate} Hz audio; preprocess it to {sample_rate} Hz mono first (s2slib.data.preprocess, "
                    "notebook 01). Nothing is resampled here.")
        elif duration <= 0:
            _reject(cache, report, group, f"{audio_path}: the file holds no samples.")
        else:
            todo.append({"target": target, "group": group, "n_samples": round(duration * file_sr)})
    # longest first: a batch too large for memory fails at the start, not an hour in
    return sorted(todo, key=lambda item: (-item["n_samples"], str(item["target"])))


def _batches(todo: list[dict], batch_size: int, max_batch_s: float, sample_rate: int) -> list[list[dict]]:
    """Group items (sorted longest first) so a batch holds at most ``batch_size`` items and ``max_batch_s`` seconds
    once padded to its longest item (a longer single item goes alone)."""
    batches: list[list[dict]] = []
    for item in todo:
        batch = batches[-1] if batches else None
        if batch and len(batch) < batch_size and (len(batch) + 1) * batch[0]["n_samples"] <= max_batch_s * sample_rate:
            batch.append(item)
        else:
            batches.append([item])
    return batches


def _encode_batch(codec, cache: TokenCache, report: TokenizeReport, batch: list[dict], device, n_q: int) -> None:
    """Load, pad, encode one batch and write each item's codes, cut to its own length."""
    wavs = []
    for item in batch:
        try:
            wav, _ = load_audio(item["group"][0][1])  # (T,), at the rate _plan checked
        except AudioError as exc:  # a readable header over corrupt samples
            _reject(cache, report, item["group"], str(exc))
            continue
        wavs.append((item, wav))
    if not wavs:
        return
    x = torch.zeros(len(wavs), 1, max(len(wav) for _, wav in wavs))  # (B, 1, T_max), zero right-padding
    for i, (_, wav) in enumerate(wavs):
        x[i, 0, : len(wav)] = torch.from_numpy(wav)
    with torch.inference_mode():
        codes = codec.encode(x.to(device)).cpu().numpy()  # (B, n_q, F_max)
    if codes.shape[1] != n_q:
        raise RuntimeError(f"the codec returned {codes.shape[1]} levels; its codec.json says {n_q}.")
    for i, (item, wav) in enumerate(wavs):
        n = _n_frames(codec, len(wav))
        if codes.shape[-1] < n:
            raise RuntimeError(f"the codec returned {codes.shape[-1]} frames for {x.shape[-1]} samples, fewer than "
                               f"the {n} that {item['group'][0][1]} needs.")
        # causal codec: frames < n never saw the padding, so these are the codes of the file encoded alone
        _write_npy(item["target"], codes[i, :, :n].astype(np.int16))  # (n_q, n)
        report.encoded += len(item["group"])
        report.seconds += len(wav) / codec.sample_rate
        report.frames += n


def tokenize_files(codec, cache: TokenCache, items: list[tuple[str, str]], batch_size: int = 8,
                   device: str | torch.device = "cpu", progress: bool = True,
                   max_batch_s: float = 120.0) -> TokenizeReport:
    """Encode the audio files of ``items`` that are not cached yet and write their codes into ``cache``.

    Parameters
    ----------
    codec: the course codec (eval mode, already on ``device``) or a pretrained :class:`~s2slib.baseline.EncodecCodec`.
    cache: where the codes go; its ``codec.json`` is written on first use and checked against ``codec`` after.
    items: ``(id, audio_path)`` pairs; the id only names the item in rejects.
    batch_size: files per forward pass; ``max_batch_s`` caps a batch's padded audio seconds.

    Audio must already be at ``codec.sample_rate`` (the course's processed audio is 16 kHz): a file at another rate
    is rejected, never resampled silently. Codes are ``codec.encode(wav: Tensor[B, 1, T]) -> Tensor[B, n_q, F]`` cut
    to each file's ``ceil(T / hop_length)`` frames and stored as int16 ``(n_q, frames)``.
    """
    if batch_size < 1 or max_batch_s <= 0:
        raise ValueError(f"batch_size must be >= 1 and max_batch_s > 0, got {batch_size} and {max_batch_s}.")
    start = time.perf_counter()
    info = cache.record_codec(codec)
    if isinstance(codec, torch.nn.Module):
        param = next(codec.parameters(), None)
        if param is not None and param.device.type != torch.device(device).type:
            raise ValueError(f"the codec is on {param.device} but device={device!r}; move it there first "
                             "(load_audio_codec(..., device=device) or codec.to(device)).")
    report = TokenizeReport()
    todo = _plan(cache, report, items, info["sample_rate"])
    with tqdm(total=len(todo), desc="tokenize", unit="file", disable=not progress) as bar:
        for batch in _batches(todo, batch_size, max_batch_s, info["sample_rate"]):
            _encode_batch(codec, cache, report, batch, device, info["n_q"])
            bar.update(len(batch))
    report.wall_s = time.perf_counter() - start
    return report


def _index(cache: TokenCache, entries: list[dict], name: str) -> list[dict]:
    """Rows for the ``entries`` (each with ``audio_path`` and the index fields but ``codes_path``/``n_frames``) that
    have tokens, in order; written atomically to ``<cache.path>/index/<name>.jsonl`` with paths relative to it."""
    rows = []
    for entry in entries:
        audio_path = entry.pop("audio_path")
        if not audio_path or not cache.has(audio_path):
            continue  # rejected: listed in the report and rejects.jsonl
        codes_path = cache.codes_path(audio_path)
        n_frames = int(np.load(codes_path, mmap_mode="r").shape[1])  # reads the header only
        rows.append({"id": entry.pop("id"), "codes_path": str(codes_path), "n_frames": n_frames, **entry})
    index = cache.path / "index" / f"{name}.jsonl"
    base = index.parent.resolve()
    lines = [json.dumps({**row, "codes_path": os.path.relpath(row["codes_path"], base)}, ensure_ascii=False)
             for row in rows]  # relative: the run folder can move to another machine
    write_text(index, "\n".join(lines) + ("\n" if lines else ""))
    return rows


def tokenize_manifest(codec, cache: TokenCache, manifest: str | os.PathLike,
                      **kw: Any) -> tuple[list[dict], TokenizeReport]:
    """Tokenize every utterance of ``manifest`` (:func:`tokenize_files`, same keywords) and index the result.

    Returns ``(rows, report)``: a row ``{"id", "codes_path", "n_frames", "speaker", "emotion", "source", "split",
    "text", "duration"}`` per utterance that has tokens, in manifest order (rejected ones are in the report). The
    rows are also written atomically to ``<cache.path>/index/<manifest stem>.jsonl`` (read it back with
    :func:`load_token_index`), so two manifests with one stem in one cache overwrite each other's index.
    """
    utts = read_manifest(manifest)
    report = tokenize_files(codec, cache, [(u.id, u.audio_path) for u in utts], **kw)
    entries = [{"id": u.id, "audio_path": u.audio_path, "speaker": u.speaker, "emotion": u.emotion,
                "source": u.source, "split": u.split, "text": u.text, "duration": u.duration} for u in utts]
    return _index(cache, entries, Path(manifest).stem), report


def tokenize_conversations(codec, cache: TokenCache, conversations_file: str | os.PathLike,
                           **kw: Any) -> tuple[list[dict], TokenizeReport]:
    """Tokenize the audio of every turn of a conversation file (``conversations/pairs_<split>.jsonl`` or
    ``dialogues_<split>.jsonl``, :func:`s2slib.data.conversations.read_conversations`); keywords as
    :func:`tokenize_files`.

    Returns ``(rows, report)`` as :func:`tokenize_manifest`, one row per turn (id ``<conversation id>/turn<k>``,
    source ``"conversation"``, plus ``role``, ``conversation``, ``turn``, ``kind`` (pair or dialogue), ``source_id``
    (the written pair or dialogue) and ``depends_on`` (the earlier turn a follow-up answer needs)), indexed under
    the file's stem. A turn
    without audio (not synthesized) is rejected with that reason.
    """
    items, unsynthesized, entries = [], [], []
    for conv in read_conversations(conversations_file):
        for k, turn in enumerate(conv.turns):
            turn_id = f"{conv.id}/turn{k}"
            (items if turn.audio_path else unsynthesized).append((turn_id, turn.audio_path))
            entries.append({"id": turn_id, "audio_path": turn.audio_path, "speaker": turn.speaker,
                            "emotion": turn.emotion, "source": "conversation", "split": conv.split,
                            "text": turn.text, "duration": turn.duration, "role": turn.role,
                            "conversation": conv.id, "turn": k, "kind": conv.kind, "source_id": conv.source_id,
                            "depends_on": turn.depends_on})
    report = tokenize_files(codec, cache, items, **kw)
    if unsynthesized:
        _reject(cache, report, unsynthesized, f"{conversations_file}: the turn has no audio_path (not synthesized "
                "yet; notebook 01's s2slib.data.build makes the conversation audio).")
    return _index(cache, entries, Path(conversations_file).stem), report


@dataclass
class RunTokens:
    """A run's tokens by use: ``train`` (the train manifest and the training conversations: every utterance stage 1
    may learn from), ``val`` (the val manifest), ``test`` (the test manifest: held-out sentences, voices and the
    test-only real clips), and ``conversations`` (every conversation file's rows, by file stem, for stage 2)."""

    cache: TokenCache
    train: list[dict]
    val: list[dict]
    test: list[dict]
    conversations: dict[str, list[dict]]
    reports: dict[str, TokenizeReport]

    def summary(self) -> str:
        return "\n".join(f"{name}: {report.summary()}" for name, report in self.reports.items())


def tokenize_run(codec, cache: TokenCache, data_dir: str | os.PathLike, **kw: Any) -> RunTokens:
    """Tokenize what notebook 01 wrote into ``data_dir`` (``manifests/{train,val,test}.jsonl`` and every
    ``conversations/*.jsonl``); keywords as :func:`tokenize_files`. A rerun encodes only what is new."""
    data_dir = Path(data_dir)
    split_rows, reports = {}, {}
    for split in ("train", "val", "test"):
        split_rows[split], reports[f"manifest {split}"] = tokenize_manifest(
            codec, cache, data_dir / "manifests" / f"{split}.jsonl", **kw)
    conversations = {}
    for path in sorted((data_dir / "conversations").glob("*.jsonl")):
        conversations[path.stem], reports[path.stem] = tokenize_conversations(codec, cache, path, **kw)
    train_turns = [r for stem, rows in conversations.items() if stem.endswith("_train") for r in rows]
    return RunTokens(cache, split_rows["train"] + train_turns, split_rows["val"], split_rows["test"], conversations,
                     reports)


def load_token_index(path: str | os.PathLike) -> list[dict]:
    """Read an index written by :func:`tokenize_manifest`; ``codes_path`` comes back absolute."""
    path = Path(path)
    base = path.parent.resolve()
    rows = []
    for lineno, row in iter_jsonl(path, "token index (tokenize_manifest writes it)"):
        missing = [k for k in INDEX_FIELDS if k not in row]
        if missing:
            raise ValueError(f"{path}:{lineno}: missing field(s) {missing}")
        row["codes_path"] = str((base / row["codes_path"]).resolve())
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m s2slib.s2s.tokens",
                                     description="Encode manifests and conversations into cached codec tokens.")
    parser.add_argument("--codec-kind", choices=CODEC_KINDS, default="course")
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="course: codec.pt of notebook 02/03; encodec: the pretrained encodec_24khz-d7cc33bc.th")
    parser.add_argument("--bandwidth", type=float, default=6.0, help="EnCodec bandwidth in kbps (encodec only)")
    parser.add_argument("--manifest", action="append", default=[], type=Path, help="a manifest (repeatable)")
    parser.add_argument("--conversations", action="append", default=[], type=Path,
                        help="a conversations/pairs_<split>.jsonl or dialogues_<split>.jsonl file (repeatable)")
    parser.add_argument("--cache", required=True, type=Path, help="token root; the codec's folder goes inside")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-batch-s", type=float, default=120.0, help="padded audio seconds per batch at most")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not args.manifest and not args.conversations:
        parser.error("give at least one --manifest or --conversations file")
    if args.batch_size < 1 or args.max_batch_s <= 0:
        parser.error("--batch-size must be >= 1 and --max-batch-s > 0")

    from s2slib.baseline import WeightsUnavailable, load_audio_codec
    from s2slib.checkpoint import CheckpointError

    kw = {"batch_size": args.batch_size, "max_batch_s": args.max_batch_s, "device": args.device,
          "progress": not args.no_progress}
    try:
        codec = load_audio_codec(args.codec_kind, args.checkpoint, encodec_weights=args.checkpoint,
                                 bandwidth=args.bandwidth, device=args.device)
        info = codec_info(codec)
        cache = TokenCache(args.cache, codec_fingerprint(args.checkpoint, info["kind"], **info["settings"]))
        reports, indexes = {}, []
        for manifest in args.manifest:
            _rows, reports[str(manifest)] = tokenize_manifest(codec, cache, manifest, **kw)
            indexes.append(str(cache.path / "index" / f"{manifest.stem}.jsonl"))
        for conversations in args.conversations:
            _rows, reports[str(conversations)] = tokenize_conversations(codec, cache, conversations, **kw)
            indexes.append(str(cache.path / "index" / f"{conversations.stem}.jsonl"))
    except (AudioError, CheckpointError, WeightsUnavailable, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rejected = [row for report in reports.values() for row in report.rejected]
    for source, report in reports.items():
        print(f"{source}: {report.summary()}")
    for row in rejected:
        print(f"rejected {row['id']}: {row['reason']}", file=sys.stderr)
    if rejected:
        print(f"{len(rejected)} item(s) rejected, listed in {cache.path / 'rejects.jsonl'}", file=sys.stderr)
    print(json.dumps({
        "cache": str(cache.path), "fingerprint": cache.fingerprint, "indexes": indexes,
        "encoded": sum(r.encoded for r in reports.values()), "cached": sum(r.cached for r in reports.values()),
        "rejected": len(rejected), "seconds": round(sum(r.seconds for r in reports.values()), 3),
        "frames": sum(r.frames for r in reports.values()),
    }, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
