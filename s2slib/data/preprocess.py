"""Preprocessing: any decodable recording -> clean 16 kHz mono segments, or a reject with its reason.

For every input (a file in wav/flac/mp3/ogg, or an array with its sample rate) :func:`preprocess_one`

1. decodes and mixes to mono; rejects corrupt or empty input and NaN/inf samples;
2. rejects heavily clipped input (more than ``max_clipped_fraction`` of samples at full scale) and all-silent input;
3. resamples to ``sample_rate`` (16 kHz) with torchaudio's windowed-sinc resampler;
4. trims leading and trailing silence (frames more than ``trim_db`` below the loudest frame, with a margin);
5. splits recordings longer than ``max_segment_s`` at the quietest frame near each boundary;
6. normalises each segment's RMS to ``target_dbfs`` (the seed's -16 dBFS) unless that would push a peak past
   ``peak_dbfs`` (peak guard), and writes it as 16-bit WAV.

:func:`preprocess_many` runs this over a corpus with a process pool and a progress bar, caches results by content so
a rerun is cheap, drops exact duplicates (identical processed samples) and returns the rejects with their reasons.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from s2slib import atomic
from s2slib.audio import AudioError, load_audio, resample, save_audio
from s2slib.data.manifest import Utterance

CACHE_VERSION = 1


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of :func:`preprocess_one` (the seed values by default)."""

    sample_rate: int = 16000  # Hz, the course's working rate
    target_dbfs: float = -16.0  # RMS loudness target
    peak_dbfs: float = -1.0  # peak guard: never amplify a peak above this
    trim_db: float = 40.0  # frames this far below the loudest frame count as silence at the edges
    silence_dbfs: float = -60.0  # a recording whose loudest frame is below this is all silence
    margin_s: float = 0.05  # silence kept before and after the speech
    min_duration_s: float = 0.3  # shorter speech (after trimming) is rejected
    max_segment_s: float = 15.0  # longer recordings are split into segments no longer than this
    max_clipped_fraction: float = 0.01  # more samples than this at full scale = heavily clipped


@dataclass
class Reject:
    """An input that was not used, and why."""

    id: str
    source: str
    reason: str
    audio: str | None = None


def _db(x: np.ndarray | float) -> np.ndarray | float:
    return 20.0 * np.log10(np.maximum(x, 1e-10))


def frame_rms_db(wav: np.ndarray, sample_rate: int, frame_s: float = 0.02, hop_s: float = 0.01) -> np.ndarray:
    """RMS level in dBFS of overlapping frames: ``wav (T,)`` -> ``(n_frames,)``."""
    frame, hop = max(1, int(frame_s * sample_rate)), max(1, int(hop_s * sample_rate))
    if len(wav) < frame:
        return np.array([_db(np.sqrt(np.mean(wav**2)) if len(wav) else 0.0)])
    n = 1 + (len(wav) - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]  # (n_frames, frame)
    return _db(np.sqrt(np.mean(wav[idx] ** 2, axis=1)))


def trim_silence(wav: np.ndarray, sample_rate: int, cfg: PreprocessConfig) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``max - trim_db`` (keeping ``margin_s`` on each side)."""
    levels = frame_rms_db(wav, sample_rate)
    threshold = max(levels.max() - cfg.trim_db, cfg.silence_dbfs)
    loud = np.flatnonzero(levels > threshold)
    if len(loud) == 0:
        return wav[:0]
    hop = int(0.01 * sample_rate)
    margin = int(cfg.margin_s * sample_rate)
    start = max(0, loud[0] * hop - margin)
    end = min(len(wav), (loud[-1] + 1) * hop + int(0.02 * sample_rate) + margin)
    return wav[start:end]


def split_segments(wav: np.ndarray, sample_rate: int, max_s: float) -> list[np.ndarray]:
    """Split ``wav`` into pieces of at most ``max_s`` seconds, cutting at the quietest 10 ms frame in the last 40%
    of each piece's allowed span (a pause between words, for speech)."""
    max_len = int(max_s * sample_rate)
    pieces = []
    start = 0
    hop = int(0.01 * sample_rate)
    while len(wav) - start > max_len:
        window = wav[start + int(0.6 * max_len) : start + max_len]
        levels = frame_rms_db(window, sample_rate)
        quietest = len(levels) - 1 - int(np.argmin(levels[::-1]))  # the last of equally quiet frames: longer pieces
        cut = start + int(0.6 * max_len) + quietest * hop
        pieces.append(wav[start:cut])
        start = cut
    pieces.append(wav[start:])
    return pieces


def normalize_loudness(wav: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Scale ``wav`` to RMS ``target_dbfs``, lowering the gain if the peak would exceed ``peak_dbfs``."""
    rms = float(np.sqrt(np.mean(wav**2)))
    peak = float(np.max(np.abs(wav)))
    gain = 10 ** (cfg.target_dbfs / 20) / max(rms, 1e-10)
    gain = min(gain, 10 ** (cfg.peak_dbfs / 20) / max(peak, 1e-10))  # peak guard
    return (wav * gain).astype(np.float32)


def clean_audio(wav: np.ndarray, sample_rate: int, cfg: PreprocessConfig) -> list[np.ndarray]:
    """Checks, resampling, trimming, splitting and loudness for one decoded mono recording.

    ``wav (T,)`` float at ``sample_rate`` -> list of segments ``(T_k,)`` at ``cfg.sample_rate``.
    Raises ``ValueError`` with the reason when the recording must be rejected.
    """
    if wav.size == 0:
        raise ValueError("empty: no samples")
    if not np.all(np.isfinite(wav)):
        raise ValueError(f"non-finite samples: {int(np.sum(~np.isfinite(wav)))} NaN/inf values")
    clipped = float(np.mean(np.abs(wav) >= 0.999))
    if clipped > cfg.max_clipped_fraction:
        raise ValueError(f"heavily clipped: {100 * clipped:.1f}% of samples at full scale")
    wav = resample(wav, sample_rate, cfg.sample_rate)
    if frame_rms_db(wav, cfg.sample_rate).max() < cfg.silence_dbfs:
        raise ValueError(f"silent: no frame louder than {cfg.silence_dbfs:.0f} dBFS")
    wav = trim_silence(wav, cfg.sample_rate, cfg)
    if len(wav) < cfg.min_duration_s * cfg.sample_rate:
        raise ValueError(f"too short: {len(wav) / cfg.sample_rate:.2f} s of sound after trimming silence")
    segments = split_segments(wav, cfg.sample_rate, cfg.max_segment_s)
    return [normalize_loudness(s, cfg) for s in segments if len(s) >= cfg.min_duration_s * cfg.sample_rate]


def _input_identity(item) -> str:
    if getattr(item, "audio_array", None) is not None:
        arr = np.ascontiguousarray(item.audio_array, dtype=np.float32)
        return f"array:{item.sample_rate}:{hashlib.sha256(arr.tobytes()).hexdigest()}"
    stat = Path(item.audio_path).stat()
    return f"file:{Path(item.audio_path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _clean_cached(item, out_dir: Path, cfg: PreprocessConfig) -> dict[str, Any]:
    """The audio work for one input, cached by input identity and configuration.

    Returns ``{"segments": [{"path", "duration", "content_sha1"}, ...], "reason": None}`` or ``{"segments": [],
    "reason": why it was rejected}``.
    """
    try:
        identity = _input_identity(item)
    except FileNotFoundError:
        return {"segments": [], "reason": f"missing: no such audio file {item.audio_path}"}
    except OSError as exc:
        return {"segments": [], "reason": f"unreadable: {exc}"}
    key = hashlib.sha256(json.dumps([CACHE_VERSION, asdict(cfg), identity]).encode()).hexdigest()[:24]
    record = out_dir / key[:2] / f"{key}.json"
    if record.exists():
        cached = json.loads(record.read_text(encoding="utf-8"))
        if all(Path(seg["path"]).is_file() for seg in cached["segments"]):
            return cached
    try:
        if getattr(item, "audio_array", None) is not None:
            wav = np.asarray(item.audio_array, dtype=np.float32)
            wav = wav.mean(axis=0) if wav.ndim == 2 else wav
            sr = int(item.sample_rate)
        else:
            wav, sr = load_audio(item.audio_path)
        segments = clean_audio(wav, sr, cfg)
        if not segments:
            raise ValueError("too short: no segment long enough after splitting")
    except AudioError as exc:
        result = {"segments": [], "reason": f"corrupt: {exc}"}
    except ValueError as exc:
        result = {"segments": [], "reason": str(exc)}
    else:
        result = {"segments": [], "reason": None}
        for k, seg in enumerate(segments):
            path = save_audio(out_dir / key[:2] / f"{key}_{k}.wav", seg, cfg.sample_rate)
            pcm = np.round(np.clip(seg, -1, 1) * 32767).astype(np.int16)
            result["segments"].append(
                {
                    "path": str(path.resolve()),
                    "duration": round(len(seg) / cfg.sample_rate, 4),
                    "content_sha1": hashlib.sha1(pcm.tobytes()).hexdigest(),
                }
            )
    atomic.write_json(record, result)
    return result


def preprocess_one(item, out_dir: str | os.PathLike, cfg: PreprocessConfig = PreprocessConfig()) -> dict[str, Any]:
    """Preprocess one raw utterance (a ``RawUtterance``-like object: ``id, speaker, text, source, emotion, meta``
    and either ``audio_path`` or ``audio_array`` + ``sample_rate``).

    Returns ``{"utterances": [Utterance as dict, ...], "reject": Reject as dict or None}``. The audio work is cached
    under ``out_dir`` by input identity and configuration, so a rerun decodes nothing.
    """
    cleaned = _clean_cached(item, Path(out_dir), cfg)
    audio_ref = str(item.audio_path) if getattr(item, "audio_path", None) else None
    if cleaned["reason"] is not None:
        return {"utterances": [], "reject": asdict(Reject(item.id, item.source, cleaned["reason"], audio_ref))}
    segments = cleaned["segments"]
    utts = []
    for k, seg in enumerate(segments):
        meta = dict(getattr(item, "meta", None) or {})
        meta["content_sha1"] = seg["content_sha1"]
        if len(segments) > 1:
            meta.update(segment=k, n_segments=len(segments), text_of_recording=item.text)
        utt = Utterance(
            id=item.id if len(segments) == 1 else f"{item.id}#{k}",
            audio_path=seg["path"],
            duration=seg["duration"],
            sample_rate=cfg.sample_rate,
            speaker=item.speaker,
            text=item.text if len(segments) == 1 else "",
            source=item.source,
            emotion=getattr(item, "emotion", None),
            meta=meta,
        )
        utts.append(asdict(utt))
    return {"utterances": utts, "reject": None}


def _worker(args):
    item, out_dir, cfg = args
    return preprocess_one(item, out_dir, cfg)


def preprocess_many(
    items: Iterable,
    out_dir: str | os.PathLike,
    cfg: PreprocessConfig = PreprocessConfig(),
    num_workers: int = 1,
    progress: bool = True,
    desc: str = "preprocess",
) -> tuple[list[Utterance], list[Reject]]:
    """Preprocess many raw utterances in parallel; bad input never stops the run.

    Returns ``(utterances, rejects)``: kept segments in input order, with exact duplicates (identical processed
    samples) dropped in favour of the first occurrence and reported as rejects.
    """
    items = list(items)
    jobs = [(item, str(out_dir), cfg) for item in items]
    if num_workers > 1 and len(jobs) > 1:
        # spawn, not fork: forking a process whose torch thread pools are running can deadlock the children
        with ProcessPoolExecutor(max_workers=num_workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(tqdm(pool.map(_worker, jobs, chunksize=8), total=len(jobs), desc=desc, disable=not progress))
    else:
        results = [_worker(j) for j in tqdm(jobs, desc=desc, disable=not progress)]
    kept: list[Utterance] = []
    rejects: list[Reject] = []
    seen: dict[str, str] = {}
    for res in results:
        if res["reject"] is not None:
            rejects.append(Reject(**res["reject"]))
        for row in res["utterances"]:
            utt = Utterance(**row)
            digest = utt.meta.get("content_sha1")
            if digest in seen:
                rejects.append(Reject(utt.id, utt.source, f"duplicate of {seen[digest]}", utt.audio_path))
                continue
            seen[digest] = utt.id
            kept.append(utt)
    return kept, rejects
