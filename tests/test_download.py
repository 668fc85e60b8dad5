"""download(): cached, resumable, verified; extract(): idempotent and safe. All traffic stays on 127.0.0.1."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile

import pytest

from s2slib.data.download import ArchiveError, ChecksumError, DownloadError, download, extract, sha256_of
from fixtures_corpora import FileServer, closed_port, sha256_bytes

PAYLOAD = os.urandom(300_000)  # random, so a wrong byte anywhere changes the digest
DIGEST = sha256_bytes(PAYLOAD)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # A proxy configured on the machine must not intercept the loopback server.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server():
    with FileServer({"/corpus.bin": PAYLOAD}) as srv:
        yield srv


def _download(server, dest, sha256=DIGEST, **kw):
    return download(server.url("/corpus.bin"), dest, sha256, source="test-corpus", progress=False, timeout=5, **kw)


def test_fresh_download_is_verified_and_atomic(server, tmp_path):
    dest = tmp_path / "corpus.bin"
    assert _download(server, dest) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "corpus.bin.part").exists()
    assert server.requests == [("/corpus.bin", None)]


def test_second_call_makes_no_request(server, tmp_path):
    dest = tmp_path / "corpus.bin"
    _download(server, dest)
    _download(server, dest)
    assert len(server.requests) == 1


def test_interrupted_download_resumes_with_range(server, tmp_path):
    dest, part = tmp_path / "corpus.bin", tmp_path / "corpus.bin.part"
    server.drop_after = 100_000
    with pytest.raises(DownloadError, match="resumes"):
        _download(server, dest)
    assert not dest.exists(), "a half-written file must never appear under the final name"
    assert part.stat().st_size == 100_000

    server.drop_after = None
    _download(server, dest)
    assert server.requests[-1] == ("/corpus.bin", "bytes=100000-")
    assert sha256_of(dest) == DIGEST
    assert not part.exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    dest, part = tmp_path / "corpus.bin", tmp_path / "corpus.bin.part"
    part.write_bytes(b"x" * 5000)  # not even a prefix of the file: appending would corrupt it
    server.ignore_range = True
    _download(server, dest)
    assert server.requests == [("/corpus.bin", "bytes=5000-")]
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_answered_with_416_is_verified_and_kept(server, tmp_path):
    dest, part = tmp_path / "corpus.bin", tmp_path / "corpus.bin.part"
    part.write_bytes(PAYLOAD)
    _download(server, dest)
    assert server.requests == [("/corpus.bin", f"bytes={len(PAYLOAD)}-")]
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_is_rejected_and_nothing_kept(server, tmp_path):
    dest = tmp_path / "corpus.bin"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as err:
        _download(server, dest, sha256=wrong)
    message = str(err.value)
    assert "test-corpus" in message and server.url("/corpus.bin") in message
    assert wrong in message and DIGEST in message
    assert not dest.exists() and not (tmp_path / "corpus.bin.part").exists()


def test_unreachable_url_names_source_and_manual_path(tmp_path):
    dest = tmp_path / "sub" / "corpus.bin"
    url = f"http://127.0.0.1:{closed_port()}/corpus.bin"
    with pytest.raises(DownloadError) as err:
        download(url, dest, DIGEST, source="test-corpus", progress=False, timeout=5)
    message = str(err.value)
    assert "test-corpus" in message and url in message
    assert str(dest.resolve()) in message
    assert not dest.exists()


def test_http_error_then_mirror(server, tmp_path):
    dest = tmp_path / "corpus.bin"
    urls = [f"http://127.0.0.1:{closed_port()}/corpus.bin", server.url("/missing.bin"), server.url("/corpus.bin")]
    download(urls, dest, DIGEST, source="test-corpus", progress=False, timeout=5)
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("/missing.bin"), tmp_path / "other.bin", None, source="test-corpus", progress=False)


def test_manually_placed_file_is_used_and_verified(server, tmp_path):
    dest = tmp_path / "corpus.bin"
    dest.write_bytes(PAYLOAD)
    _download(server, dest)
    assert server.requests == []
    dest.write_bytes(PAYLOAD[:-1])
    with pytest.raises(ChecksumError, match="does not match"):
        _download(server, dest)


def test_unpublished_checksum_is_recorded_on_first_download(server, tmp_path):
    dest = tmp_path / "corpus.bin"
    _download(server, dest, sha256=None)
    sidecar = tmp_path / "corpus.bin.sha256"
    assert sidecar.read_text().split() == [DIGEST, "corpus.bin"]
    # later runs verify against the recorded digest
    dest.write_bytes(b"corrupted")
    with pytest.raises(ChecksumError, match=DIGEST):
        _download(server, dest, sha256=None)


# ---------------------------------------------------------------------------------------------------------------------
# extract
# ---------------------------------------------------------------------------------------------------------------------


def _tar(path, members: dict[str, bytes], symlinks: dict[str, str] | None = None, mode="w:gz"):
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return path


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar.bz2"])
def test_extract_is_idempotent(tmp_path, kind):
    archive = tmp_path / f"corpus.{kind}"
    members = {"corpus/a.txt": b"alpha", "corpus/sub/b.txt": b"beta"}
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
    else:
        _tar(archive, members, mode="w:" + kind.split(".")[1])
    out = tmp_path / "out"
    assert extract(archive, out) == out
    assert (out / "corpus/sub/b.txt").read_bytes() == b"beta"
    (out / "corpus/a.txt").write_bytes(b"edited")
    extract(archive, out)  # finished before: must not unpack again
    assert (out / "corpus/a.txt").read_bytes() == b"edited"


def test_interrupted_extraction_is_redone(tmp_path):
    archive = _tar(tmp_path / "c.tar.gz", {"c/a.txt": b"alpha"})
    out = tmp_path / "out"
    (out / "c").mkdir(parents=True)
    (out / "c/a.txt").write_bytes(b"al")  # a previous run died here, before the marker
    extract(archive, out)
    assert (out / "c/a.txt").read_bytes() == b"alpha"


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil-abs.txt", "ok/../../evil.txt"])
def test_extract_refuses_path_traversal(tmp_path, name):
    out = tmp_path / "deep" / "out"
    zpath, tpath = tmp_path / "bad.zip", tmp_path / "bad.tar.gz"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("fine.txt", b"ok")
        zf.writestr(name, b"pwned")
    _tar(tpath, {"fine.txt": b"ok", name: b"pwned"})
    for archive in (zpath, tpath):
        with pytest.raises(ArchiveError, match="outside"):
            extract(archive, out)
    assert not (tmp_path / "deep" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not (out / "fine.txt").exists(), "nothing is extracted from an unsafe archive"


def test_extract_refuses_escaping_symlink(tmp_path):
    archive = _tar(tmp_path / "link.tar.gz", {"a.txt": b"a"}, symlinks={"link": "../../etc/passwd"})
    with pytest.raises(ArchiveError, match="points outside"):
        extract(archive, tmp_path / "out")


def test_extract_rejects_non_archive(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"this is an HTML error page, not a zip")
    with pytest.raises(ArchiveError, match="not a zip or tar"):
        extract(junk, tmp_path / "out")
