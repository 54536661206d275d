"""Disk space: checked before any byte moves, and a disk that fills up mid-way on a real tmpfs."""

from __future__ import annotations

import gzip
import io
import tarfile
import time

import pytest

import datastage
from datastage.core.errors import InsufficientSpace
from tests.conftest import payload, run_cli, sha256, write_manifest


def _zeros_tar_gz(size: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))
    return gzip.compress(raw.getvalue())


def test_declared_size_larger_than_the_disk_fails_before_any_request(tmp_path, server):
    url = server.add("/huge.bin", b"x")
    manifest = write_manifest(tmp_path, "huge", [{"url": url, "size": 10**15, "extract": False}])
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 7
    assert done.stderr.startswith("error: not enough disk space in ")
    assert "need 1.0 PB" in done.stderr and " free" in done.stderr
    assert server.log == [], "no request may be made when the space is known to be missing"


def test_server_announced_size_is_checked_against_the_cache_disk(
    tmp_path, server, small_disk, monkeypatch
):
    monkeypatch.setenv("DATASTAGE_CACHE", str(small_disk / "cache"))
    url = server.add("/f.bin", payload(6 * 1024 * 1024))
    manifest = write_manifest(tmp_path, "f", [{"url": url, "extract": False}])  # size unknown
    with pytest.raises(InsufficientSpace, match=r"need 6\.3 MB"):
        datastage.get(str(manifest), to=tmp_path / "out")
    # the server logs a request once it stops sending, a moment after the client hung up
    deadline = time.monotonic() + 10
    while not server.requests_for("/f.bin") and time.monotonic() < deadline:
        time.sleep(0.02)
    (request,) = server.requests_for("/f.bin")
    # ``sent`` counts what the kernel's socket buffers took (up to ~4 MB on loopback) before
    # the hang-up was noticed; what matters is the hang-up and that nothing reached the disk.
    assert request.sent < 6 * 1024 * 1024, "the client must hang up, not drain the body"
    parts = list((small_disk / "cache").rglob("*.part"))
    assert sum(p.stat().st_size for p in parts) == 0, "no body bytes may reach the disk"


def test_disk_full_mid_download_keeps_the_partial_file(tmp_path, server, small_disk, monkeypatch):
    monkeypatch.setenv("DATASTAGE_CACHE", str(small_disk / "cache"))
    data = payload(6 * 1024 * 1024)
    url = server.add("/f.bin", data, no_length=True)  # nobody knows the size in advance
    manifest = write_manifest(
        tmp_path, "f", [{"url": url, "sha256": sha256(data), "extract": False}]
    )
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 7, done.stderr
    assert done.stderr.startswith(f"error: not enough disk space in {small_disk / 'cache'}")
    assert "Traceback" not in done.stderr
    parts = list((small_disk / "cache" / "partial").glob("*.part"))
    assert parts and parts[0].stat().st_size > 1024 * 1024, "what was downloaded is kept to resume"


def test_disk_full_mid_extraction_stages_nothing_and_keeps_the_cache(tmp_path, server, small_disk):
    archive = _zeros_tar_gz(8 * 1024 * 1024)  # ~8 KB compressed, 8 MB extracted
    url = server.add("/z.tar.gz", archive)
    manifest = write_manifest(tmp_path, "z", [{"url": url, "sha256": sha256(archive)}])
    done = run_cli("get", str(manifest), "--to", str(small_disk))
    assert done.returncode == 7, done.stderr
    assert done.stderr.startswith(f"error: not enough disk space in {small_disk}")
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == [], "no half-staged dataset"

    roomy = tmp_path / "roomy"
    again = run_cli("get", str(manifest), "--to", str(roomy))
    assert again.returncode == 0, again.stderr
    assert (roomy / "z" / "zeros.bin").stat().st_size == 8 * 1024 * 1024
    assert len(server.requests_for("/z.tar.gz")) == 1, "the verified archive stayed in the cache"


def test_declared_unpacked_size_is_checked_before_extracting(tmp_path, server, small_disk):
    archive = _zeros_tar_gz(1024)
    url = server.add("/z.tar.gz", archive)
    manifest = write_manifest(
        tmp_path, "z", [{"url": url, "sha256": sha256(archive), "unpacked_size": 50 * 1024 * 1024}]
    )
    with pytest.raises(InsufficientSpace, match=r"need 52\.4 MB"):
        datastage.get(str(manifest), to=small_disk)
    assert server.log == [], "the unpacked size is known up front, so nothing is downloaded"
