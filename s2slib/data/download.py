"""Fetching a corpus file over HTTP: cached, resumable, checksum-verified; and unpacking archives safely.

``download`` guarantees that a file under its final name is complete and verified:

1. If ``dest`` already exists and its SHA-256 matches, nothing touches the network (idempotent, and the way to use a
   file downloaded by hand on another machine: put it at ``dest``).
2. Bytes arrive in ``dest.part``. An interrupted run leaves the ``.part`` behind; the next run asks the server for the
   rest with an HTTP range request (``Range: bytes=N-``, RFC 9110 section 14). ``206 Partial Content`` means append;
   ``200 OK`` means the server ignored the range, so the part is restarted from byte 0; ``416 Range Not Satisfiable``
   usually means the part is already whole, which the checksum then decides.
3. The SHA-256 of the part is checked *before* ``os.replace`` renames it into place (an atomic rename on POSIX and
   Windows), so a half-written or corrupt file is never taken for a finished one.

Where a corpus publishes no SHA-256 (``sha256=None``), the digest computed on the first successful download is recorded
in a sidecar ``<dest>.sha256`` (``sha256sum`` format) and every later run verifies against it ("trust on first use").
That guards against later corruption, not against a bad first download; the registry says which files are in this case.

Only the standard library speaks HTTP here (``urllib.request``), so the course needs no extra client.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from s2slib import atomic

CHUNK_BYTES = 1 << 20  # read and hash in 1 MiB pieces
USER_AGENT = "s2slib-course-downloader/0.1 (+urllib)"
EXTRACTED_MARKER = ".extracted"


class DownloadError(RuntimeError):
    """A file could not be fetched. The message names the source, the URL(s) and where to place the file by hand."""


class ChecksumError(DownloadError):
    """A file's SHA-256 differs from the expected one. The message gives both digests."""


class ArchiveError(ValueError):
    """An archive that cannot be unpacked safely: unknown format, or a member that would land outside the target."""


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def _part_path(dest: Path) -> Path:
    return dest.with_suffix(dest.suffix + ".part")


def _sidecar_path(dest: Path) -> Path:
    return dest.with_suffix(dest.suffix + ".sha256")


def _read_sidecar(dest: Path) -> str | None:
    sidecar = _sidecar_path(dest)
    if not sidecar.is_file():
        return None
    fields = sidecar.read_text(encoding="utf-8").split()
    if fields and re.fullmatch(r"[0-9a-f]{64}", fields[0]):
        return fields[0]
    return None


def _write_sidecar(dest: Path, digest: str) -> None:
    atomic.write_text(_sidecar_path(dest), f"{digest}  {dest.name}\n")  # sha256sum's format


def _manual_hint(dest: Path, expected: str | None) -> str:
    check = f"verify its SHA-256 ({expected})" if expected else "record its SHA-256 in a .sha256 file beside it"
    return (
        f"If this machine is offline, download the file on another machine and place it at\n"
        f"    {dest.resolve()}\n"
        f"The next run finds it there, will {check}, and goes on."
    )


def download(
    url: str | Sequence[str],
    dest: str | os.PathLike,
    sha256: str | None,
    *,
    source: str,
    expected_size: int | None = None,
    progress: bool = True,
    timeout: float = 30,
) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there; return ``dest``.

    Parameters
    ----------
    url: one URL, or several mirrors tried in order until one delivers a verified file.
    dest: final path of the file. ``dest.part`` holds the bytes while they arrive.
    sha256: the published hex digest, or ``None`` when none is published (see the module docstring: the first digest
        is then recorded in ``dest.sha256`` and later runs verify against it).
    source: registry name of the corpus (``"slr66-te"``), used in messages.
    expected_size: approximate size in bytes, only for the progress bar when the server sends no length.
    progress: show a tqdm bar in bytes.
    timeout: seconds to wait on a silent socket before giving up on that mirror.

    Raises
    ------
    ChecksumError: the file (downloaded, or placed at ``dest`` by hand) does not have the expected digest.
    DownloadError: no mirror could be reached or all answered with an error; the message says where to put a file
        downloaded by hand.
    """
    dest = Path(dest)
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise ValueError(f"[{source}] no URL given for {dest.name}")
    expected = sha256.lower() if sha256 else _read_sidecar(dest)

    if dest.is_file():
        actual = sha256_of(dest)
        if expected is None:  # placed by hand, nothing published: trust it and remember it from now on
            _write_sidecar(dest, actual)
            return dest
        if actual == expected:
            return dest
        raise ChecksumError(
            f"[{source}] {dest} exists but its SHA-256 does not match.\n"
            f"    expected {expected}\n    actual   {actual}\n"
            f"It may be truncated, corrupt or a different release; it was left as it is. Replace it with a complete\n"
            f"copy of the release from\n    {urls[0]}\nor point the course at another data folder (S2S_DATA_DIR)."
        )

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    failures: list[str] = []
    checksum_failures: list[str] = []
    for u in urls:
        resumed = part.exists()
        try:
            _fetch(u, part, source=source, name=dest.name, expected_size=expected_size, progress=progress,
                   timeout=timeout)
            actual = sha256_of(part)
            if resumed and expected is not None and actual != expected:
                # The bytes kept from an earlier run may be from another release or corrupt: one clean retry.
                part.unlink()
                _fetch(u, part, source=source, name=dest.name, expected_size=expected_size, progress=progress,
                       timeout=timeout)
                actual = sha256_of(part)
        except DownloadError as exc:
            failures.append(f"  - {u}: {exc}")
            continue
        if expected is not None and actual != expected:
            part.unlink(missing_ok=True)
            checksum_failures.append(f"  - {u}:\n      expected {expected}\n      actual   {actual}")
            continue
        os.replace(part, dest)  # atomic: the final name only ever holds a verified file
        if sha256 is None:
            _write_sidecar(dest, actual)
        return dest

    if checksum_failures:
        raise ChecksumError(
            f"[{source}] the download of {dest.name} does not match its SHA-256 checksum; the bad file was deleted "
            f"and nothing was kept under {dest}.\n" + "\n".join(checksum_failures + failures) + "\n"
            "A mirror may serve a corrupt or different release; try again later.\n" + _manual_hint(dest, expected)
        )
    kept = f"\nThe bytes received so far are kept in {part}; the next run resumes from there." if part.exists() else ""
    raise DownloadError(
        f"[{source}] could not download {dest.name}. Tried:\n" + "\n".join(failures) + kept + "\n"
        + _manual_hint(dest, expected)
    )


def _fetch(url: str, part: Path, *, source: str, name: str, expected_size: int | None, progress: bool,
           timeout: float) -> None:
    """Bring ``part`` up to the full file from one URL, resuming what is there; raise DownloadError on failure."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        # A fresh opener per request reads the proxy settings (http_proxy, no_proxy) as they are now.
        response = urllib.request.build_opener().open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Nothing left to send from byte `offset`: the part is probably whole. If the server says how long the
            # file is and that differs, the part is from something else: start over.
            total = re.search(r"/(\d+)\s*$", exc.headers.get("Content-Range", "") or "")
            exc.close()
            if total and int(total.group(1)) != offset:
                part.unlink()
                return _fetch(url, part, source=source, name=name, expected_size=expected_size, progress=progress,
                              timeout=timeout)
            return None
        raise DownloadError(f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"unreachable ({reason})") from exc

    with response:
        if response.status == 206:
            start = re.match(r"bytes\s+(\d+)-", response.headers.get("Content-Range", "") or "")
            if start is None or int(start.group(1)) != offset:
                # The server sent some other slice than the one asked for: the kept bytes cannot be extended.
                response.close()
                part.unlink()
                return _fetch(url, part, source=source, name=name, expected_size=expected_size, progress=progress,
                              timeout=timeout)
            mode = "ab"
        else:  # 200: the server ignored the range (or there was none): the whole file comes again
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else expected_size
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=f"{source}: {name}", disable=not progress)
        try:
            with open(part, mode) as f, bar:
                while chunk := response.read(CHUNK_BYTES):
                    f.write(chunk)
                    bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
        except (OSError, http.client.HTTPException) as exc:  # dropped connection, IncompleteRead, timeout
            raise DownloadError(f"connection lost after {part.stat().st_size} bytes ({exc!r})") from exc
    if length is not None and part.stat().st_size != offset + int(length):
        raise DownloadError(f"short read: {part.stat().st_size} of {offset + int(length)} bytes")
    return None


def extract(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Unpack a ``.zip``, ``.tar``, ``.tar.gz``/``.tgz`` or ``.tar.bz2`` archive into ``dest_dir``; return ``dest_dir``.

    Idempotent: a marker file ``dest_dir/.extracted`` naming the archive is written only after every member is out, so
    an interrupted extraction is simply redone and a finished one is skipped.

    Raises
    ------
    ArchiveError: unknown archive type, or a member whose path (or link target) would escape ``dest_dir``
        (absolute paths, ``..``: the "zip slip" attack). Nothing is extracted from such an archive.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    marker = dest_dir / EXTRACTED_MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == archive.name:
        return dest_dir
    dest_dir.mkdir(parents=True, exist_ok=True)
    root = dest_dir.resolve()

    def check(member: str, link_target: str | None = None) -> None:
        target = (root / member).resolve()
        if os.path.isabs(member) or not target.is_relative_to(root):
            raise ArchiveError(f"{archive}: member {member!r} would be written outside {dest_dir}; refusing to unpack.")
        if link_target is not None:
            linked = (target.parent / link_target).resolve()
            if os.path.isabs(link_target) or not linked.is_relative_to(root):
                raise ArchiveError(f"{archive}: link {member!r} -> {link_target!r} points outside {dest_dir}; "
                                   f"refusing to unpack.")

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                check(info.filename)
            zf.extractall(dest_dir)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:  # mode "r:*" detects gz / bz2 / xz
            members = tf.getmembers()
            for m in members:
                if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
                    raise ArchiveError(f"{archive}: member {m.name!r} is a device or fifo; refusing to unpack.")
                check(m.name, m.linkname if m.issym() else None)
                if m.islnk():
                    check(m.linkname)
            # The "data" filter (PEP 706) repeats these checks inside tarfile and drops unsafe permission bits.
            tf.extractall(dest_dir, members=members, filter="data")
    else:
        raise ArchiveError(f"{archive}: not a zip or tar archive (is the download complete?).")
    marker.write_text(archive.name + "\n", encoding="utf-8")
    return dest_dir
