"""Atomic file writes: write under a temporary name in the same folder, then rename into place.

A process killed mid-write (SIGKILL, a pod pre-empted) leaves at worst a stray temporary file, never a truncated
file under the final name, because ``os.replace`` within one file system is atomic.

The temporary file of ``folder/name.ext`` is ``folder/.name.ext.<pid>@<host>.<random>.tmp.ext``: hidden, unique, and
naming the process that writes it. Readers only ever open the final name, so a stray temporary file is never
mistaken for the file, and it does not stop the next write (which uses a fresh name). :func:`remove_stale_temps`
deletes the strays of writers that no longer run; :func:`s2slib.checkpoint.save_checkpoint` calls it before every
save, because a checkpoint killed mid-save leaves a stray as large as the checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STALE_AFTER_S = 24 * 3600  # a temporary file nobody wrote to for a day is a stray, whoever made it


def _temp_affixes(path: Path) -> tuple[str, str]:
    """The prefix and suffix every temporary file of ``path`` has (the writer's tag and a random part go between)."""
    return f".{path.name}.", ".tmp" + path.suffix


def _writer_tag() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on error delete it.

    The temporary file is created empty with the usual permissions (``0o666`` less the umask), so the final file is
    as readable as one written directly.

    >>> with atomic_path("out.json") as tmp:
    ...     tmp.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temp_affixes(path)
    while True:
        tmp_path = path.parent / f"{prefix}{_writer_tag()}.{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:  # 32 random bits taken: draw again
            continue
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _running(pid: int) -> bool | None:
    """Whether process ``pid`` runs on this machine; ``None`` where that cannot be asked (not POSIX)."""
    if os.name != "posix":
        return None  # os.kill(pid, 0) would send CTRL_C_EVENT on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed writers of ``path`` left beside it; returns what was deleted.

    A temporary file is stale when the process named in it no longer runs on this machine, or when nobody has
    written to it for :data:`STALE_AFTER_S` (a writer on another machine sharing the folder, such as a pre-empted
    pod's). Files of running writers, of this process and anything not named by :func:`atomic_path` stay.
    """
    path = Path(path)
    prefix, suffix = _temp_affixes(path)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return removed
    host, now = socket.gethostname(), time.time()
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(suffix)):
            continue
        tag = entry.name[len(prefix):-len(suffix)].rpartition(".")[0]  # "<pid>@<host>" (the random part dropped)
        pid, at, writer_host = tag.partition("@")
        if not (at and pid.isdigit()):
            continue  # not one of ours (or the temporary file of another target whose name extends this one)
        try:
            age = now - entry.stat().st_mtime
        except FileNotFoundError:  # its writer finished meanwhile
            continue
        dead = writer_host == host and int(pid) != os.getpid() and _running(int(pid)) is False
        if dead or age > STALE_AFTER_S:
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented UTF-8 JSON (non-ASCII characters such as Telugu kept as they are)."""
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
