"""Test fixtures for corpus acquisition: a local HTTP file server with range support, and tiny corpora built in the
real on-disk formats (SLR66 zip, LibriSpeech tar.gz, Common Voice TSV + MP3, LJSpeech, VCTK, a saved HF dataset).

Everything is made in temporary folders and served from 127.0.0.1 only; no test reaches the internet.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import socket
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000


def tone(seconds: float = 0.1, freq: float = 220.0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A quiet sine: float32 ``(T,)``."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def audio_bytes(fmt: str, seconds: float = 0.1, freq: float = 220.0, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A tone encoded as ``fmt`` ("WAV", "FLAC" or "MP3") in memory."""
    buf = io.BytesIO()
    subtype = {"MP3": "MPEG_LAYER_III", "WAV": "PCM_16", "FLAC": "PCM_16"}[fmt]
    sf.write(buf, tone(seconds, freq, sample_rate), sample_rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released): connecting to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------------------
# A file server that understands Range, and can misbehave on purpose
# ---------------------------------------------------------------------------------------------------------------------


class _LoopbackServer:
    """Runs a request handler class on 127.0.0.1 (a free port) in a thread, for use as a context manager."""

    def _serve(self, handler: type[http.server.BaseHTTPRequestHandler]):
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"


@dataclass
class FileServer(_LoopbackServer):
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1 with ``Range: bytes=N-`` support (RFC 9110 section 14).

    ``drop_after``: send the full headers, then only this many body bytes, then close the connection (an interrupted
    download). ``ignore_range``: answer every request with ``200`` and the whole file, as some servers do.
    ``requests`` records ``(path, Range header or None)`` for every request received.
    """

    files: dict[str, bytes]
    drop_after: int | None = None
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    def __enter__(self) -> FileServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                range_header = self.headers.get("Range")
                owner.requests.append((self.path, range_header))
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404, "not found")
                    return
                start, status = 0, 200
                match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
                if match and not owner.ignore_range:
                    start = int(match.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                payload = body[start:]
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if owner.drop_after is not None:
                    self.wfile.write(payload[: owner.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)  # the peer sees the connection end mid-body
                    return
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        return self._serve(Handler)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


# ---------------------------------------------------------------------------------------------------------------------
# Corpora in their real formats. Each builder returns what a correct parser must find.
# ---------------------------------------------------------------------------------------------------------------------


def _tar_add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def slr66_zip(path: Path, speakers: dict[str, list[tuple[str, str]]], *, wav_dir: bool,
              bad_lines: tuple[str, ...] = (), unlisted_audio: tuple[str, ...] = ()) -> Path:
    """An SLR66-style zip: ``line_index.tsv`` (``file_id<TAB>text``) with ``<file_id>.wav`` at the top level (as the
    published archives are) or under ``wav/``. ``speakers`` maps a speaker id (``tef_00001``) to (suffix, text)."""
    lines, wavs = [], {}
    for spk, utts in speakers.items():
        for n, (suffix, text) in enumerate(utts):
            file_id = f"{spk}_{suffix}"
            lines.append(f"{file_id}\t{text}")
            if file_id not in unlisted_audio:
                wavs[file_id] = audio_bytes("WAV", freq=200 + 40 * n)
    lines[1:1] = bad_lines
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("line_index.tsv", "\n".join(lines) + "\n")
        zf.writestr("LICENSE", "CC BY-SA 4.0\n")
        for file_id, data in wavs.items():
            zf.writestr(f"wav/{file_id}.wav" if wav_dir else f"{file_id}.wav", data)
    return path


def librispeech_tar(path: Path, subset: str, chapters: dict[tuple[str, str], list[str]],
                    bad_lines: tuple[str, ...] = ()) -> Path:
    """A LibriSpeech-style ``.tar.gz``: ``LibriSpeech/<subset>/<spk>/<chap>/<spk>-<chap>.trans.txt`` + FLAC files."""
    with tarfile.open(path, "w:gz") as tf:
        for (spk, chap), texts in chapters.items():
            folder = f"LibriSpeech/{subset}/{spk}/{chap}"
            lines = [f"{spk}-{chap}-{n:04d} {text}" for n, text in enumerate(texts)]
            for n in range(len(texts)):
                _tar_add(tf, f"{folder}/{spk}-{chap}-{n:04d}.flac", audio_bytes("FLAC", freq=300 + 50 * n))
            lines[1:1] = bad_lines
            _tar_add(tf, f"{folder}/{spk}-{chap}.trans.txt", ("\n".join(lines) + "\n").encode())
        _tar_add(tf, "LibriSpeech/LICENSE.TXT", b"CC BY 4.0\n")
    return path


def common_voice_dir(root: Path, *, release: bool, rows: list[dict[str, str]],
                     bad_rows: tuple[str, ...] = ()) -> Path:
    """A Common Voice folder. ``release=True``: ``validated.tsv`` with ``client_id`` and clips in ``clips/``;
    ``release=False``: the course's ``clips.tsv`` (path speaker age gender sentence) with MP3 files beside it."""
    columns = (["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "locale"] if release
               else ["path", "speaker", "age", "gender", "sentence"])
    clip_dir = root / "clips" if release else root
    clip_dir.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(columns)]
    for n, row in enumerate(rows):
        if row.get("_write_audio", "yes") == "yes":
            (clip_dir / row["path"]).write_bytes(audio_bytes("MP3", freq=250 + 30 * n))
        if release:
            row = {"client_id": row["speaker"], "up_votes": "2", "down_votes": "0", "locale": "te", **row}
        lines.append("\t".join(row.get(c, "") for c in columns))
    lines[2:2] = bad_rows
    (root / ("validated.tsv" if release else "clips.tsv")).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def ljspeech_tree(root: Path, rows: list[tuple[str, str, str]], bad_lines: tuple[str, ...] = ()) -> Path:
    """``LJSpeech-1.1/metadata.csv`` (``id|text|normalized``) and ``LJSpeech-1.1/wavs/<id>.wav``."""
    corpus = root / "LJSpeech-1.1"
    (corpus / "wavs").mkdir(parents=True)
    lines = []
    for n, (utt_id, text, normalized) in enumerate(rows):
        (corpus / "wavs" / f"{utt_id}.wav").write_bytes(audio_bytes("WAV", freq=400 + 25 * n, sample_rate=22_050,
                                                                    seconds=0.05))
        lines.append(f"{utt_id}|{text}|{normalized}")
    lines[1:1] = bad_lines
    (corpus / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def vctk_tree(root: Path, utterances: dict[str, list[str]], *, mic2_only: tuple[str, ...] = (),
              empty_text: tuple[str, ...] = ()) -> Path:
    """``txt/<spk>/<spk>_<n>.txt`` + ``wav48_silence_trimmed/<spk>/<spk>_<n>_mic{1,2}.flac`` + ``speaker-info.txt``."""
    info = ["ID  AGE  GENDER  ACCENTS  REGION COMMENTS"]
    for spk, texts in utterances.items():
        info.append(f"{spk}  23  F    English    Southern  England")
        (root / "txt" / spk).mkdir(parents=True)
        (root / "wav48_silence_trimmed" / spk).mkdir(parents=True)
        for n, text in enumerate(texts, start=1):
            utt_id = f"{spk}_{n:03d}"
            (root / "txt" / spk / f"{utt_id}.txt").write_text("" if utt_id in empty_text else f"{text}\n")
            mics = ("mic2",) if utt_id in mic2_only else ("mic1", "mic2")
            for mic in mics:
                (root / "wav48_silence_trimmed" / spk / f"{utt_id}_{mic}.flac").write_bytes(
                    audio_bytes("FLAC", freq=500 + 20 * n))
    (root / "speaker-info.txt").write_text("\n".join(info) + "\n")
    return root


def hf_dataset_dir(path: Path, rows: list[dict], *, split: str | None = None) -> Path:
    """A ``datasets.save_to_disk`` folder whose ``audio`` column is a real ``Audio`` feature, as on the Hub.

    ``rows``: dicts with ``audio`` as ``{"bytes": ..., "path": ...}`` plus text columns. The column is built as a plain
    struct and then cast to ``Audio()`` (an Arrow-level cast): encoding through the feature would need torchcodec.
    ``split``: save a ``DatasetDict`` with that one split instead of a bare ``Dataset``.
    """
    from datasets import Audio, Dataset, DatasetDict

    ds = Dataset.from_dict({k: [r[k] for r in rows] for k in rows[0]}).cast_column("audio", Audio())
    (DatasetDict({split: ds}) if split else ds).save_to_disk(str(path))
    return path


@dataclass
class GatedHub(_LoopbackServer):
    """A stand-in for the Hugging Face Hub on 127.0.0.1 that refuses every request the way the Hub refuses a gated
    repository to a user without access: ``401`` with ``X-Error-Code: GatedRepo``. Point ``HF_ENDPOINT`` at ``url``."""

    requests: list[str] = field(default_factory=list)

    def __enter__(self) -> GatedHub:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _refuse(self) -> None:
                owner.requests.append(f"{self.command} {self.path}")
                body = b'{"error": "Access to this dataset is restricted. You must be authenticated to access it."}'
                self.send_response(401)
                self.send_header("X-Error-Code", "GatedRepo")
                self.send_header("X-Error-Message", "Access to this dataset is restricted.")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = _refuse  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        return self._serve(Handler)

    @property
    def url(self) -> str:
        return self.base_url
