"""Reading, writing and resampling audio: the one place the course touches audio files.

Files are decoded with ``soundfile`` (libsndfile: wav, flac, ogg/vorbis, mp3); resampling uses
``torchaudio.functional.resample`` (windowed-sinc interpolation). ``torchaudio.load`` is deliberately not used:
it needs torchcodec and FFmpeg, which a fresh machine does not have.

Conventions: a waveform is ``wav: np.ndarray[float32]`` of shape ``(T,)`` (mono) or ``(C, T)``, values in [-1, 1],
with its ``sample_rate`` in Hz passed beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from s2slib.atomic import atomic_path

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus")


class AudioError(ValueError):
    """An audio file that cannot be used: the message names the file, what was wrong and what to do."""


def load_audio(path: str | os.PathLike, sample_rate: int | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Decode an audio file.

    Parameters
    ----------
    path: any file libsndfile decodes (wav, flac, mp3, ogg).
    sample_rate: resample to this rate (Hz); ``None`` keeps the file's rate.
    mono: average the channels into one.

    Returns
    -------
    (wav, sample_rate): ``wav`` is float32, ``(T,)`` when ``mono`` else ``(C, T)``.

    Raises
    ------
    AudioError: the file is missing, cannot be decoded, or holds no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file.")
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except Exception as exc:  # libsndfile raises several types for corrupt input
        raise AudioError(
            f"{path}: could not decode audio ({type(exc).__name__}: {exc}). "
            f"Expected one of {', '.join(AUDIO_EXTENSIONS)}; the file may be corrupt or truncated."
        ) from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file decodes to zero samples.")
    wav = data.T  # (C, T)
    if mono:
        wav = wav.mean(axis=0)  # (T,)
    if sample_rate is not None and sample_rate != file_sr:
        wav = resample(wav, file_sr, sample_rate)
        file_sr = sample_rate
    return np.ascontiguousarray(wav, dtype=np.float32), int(file_sr)


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``wav`` (``(T,)`` or ``(C, T)``, float) from ``orig_sr`` to ``target_sr`` Hz; returns float32."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return np.asarray(wav, dtype=np.float32)
    out = AF.resample(torch.from_numpy(np.asarray(wav, dtype=np.float32)), int(orig_sr), int(target_sr))
    return out.numpy().astype(np.float32, copy=False)


def save_audio(path: str | os.PathLike, wav: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write ``wav`` (``(T,)`` or ``(C, T)``, float in [-1, 1]) to ``path`` atomically.

    The file is written under a temporary name in the same folder and renamed into place, so a killed process never
    leaves a half-written file under the final name. The format follows the extension (``.wav``, ``.flac``).
    """
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 2:
        wav = wav.T  # soundfile wants (T, C)
    if subtype.startswith("PCM"):
        wav = np.clip(wav, -1.0, 1.0)
    path = Path(path)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), wav, int(sample_rate), subtype=subtype, format=path.suffix.lstrip(".").upper())
    return path


def audio_info(path: str | os.PathLike) -> tuple[float, int]:
    """(duration in seconds, sample rate) read from the header, without decoding the samples."""
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise AudioError(f"{path}: could not read the audio header ({exc}).") from exc
    return float(info.frames) / float(info.samplerate), int(info.samplerate)
