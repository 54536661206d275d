"""Downloads over real HTTP on loopback: resume, retries, validators, verification, HTML pages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import datastage
import datastage.resolve.manifest
from datastage.core.errors import (
    AccessDenied,
    ChecksumMismatch,
    HTTPStatusError,
    NetworkError,
    RemoteNotFound,
    SizeMismatch,
    UnexpectedHTML,
)
from datastage.obtain.cache import Cache
from tests.conftest import payload, sha256, write_manifest

SIZE = 3 * 1024 * 1024 + 123


def _fetch_one(tmp_path: Path, url: str, data: bytes, **extra: object) -> Path:
    entry = {"url": url, "sha256": sha256(data), "size": len(data), "extract": False, **extra}
    manifest = write_manifest(tmp_path, "one", [entry])
    (blob,) = datastage.fetch(str(manifest))
    return blob


def test_download_is_verified_and_cached_once(tmp_path, server):
    data = payload(SIZE)
    url = server.add("/f.bin", data)
    blob = _fetch_one(tmp_path, url, data)
    assert blob.read_bytes() == data
    assert blob.name == sha256(data)
    _fetch_one(tmp_path, url, data)
    assert len(server.requests_for("/f.bin")) == 1, "a cached file must not be downloaded again"


def test_dropped_connection_resumes_with_range(tmp_path, server):
    data = payload(SIZE)
    url = server.add("/f.bin", data, drop_after=1_000_000, drop_times=2)
    blob = _fetch_one(tmp_path, url, data)
    assert blob.read_bytes() == data
    log = server.requests_for("/f.bin")
    assert [r.range for r in log] == [None, "bytes=1000000-", "bytes=2000000-"]
    assert [r.status for r in log] == [200, 206, 206]
    assert all(r.if_range for r in log[1:]), "resumed requests must carry If-Range"


def test_server_ignoring_range_restarts_cleanly(tmp_path, server):
    data = payload(SIZE)
    url = server.add("/f.bin", data, drop_after=500_000, ignore_range=True)
    blob = _fetch_one(tmp_path, url, data)
    assert blob.read_bytes() == data
    assert [r.status for r in server.requests_for("/f.bin")] == [200, 200]


def test_file_changed_on_server_restarts_from_zero(tmp_path, server, cache_dir):
    old, new = payload(SIZE, seed=1), payload(SIZE, seed=2)
    url = server.add("/f.bin", old, drop_after=700_000, drop_times=1)
    manifest = write_manifest(tmp_path, "one", [{"url": url, "extract": False}])  # unpinned
    server.faults("/f.bin", drop_after=700_000, drop_times=1)
    server.change("/f.bin", old)  # new validators, so the first response's ETag is what we hold
    # Interrupt the first download for good (no retries), then change the file.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATASTAGE_RETRIES", "0")
        with pytest.raises(NetworkError):
            datastage.fetch(str(manifest))
    assert next((cache_dir / "partial").glob("*.part")).stat().st_size == 700_000
    server.change("/f.bin", new)
    (blob,) = datastage.fetch(str(manifest))
    assert blob.read_bytes() == new
    resumed = server.requests_for("/f.bin")[-1]
    assert resumed.range == "bytes=700000-" and resumed.if_range and resumed.status == 200


def test_retry_after_is_honoured_for_503_and_429(tmp_path, server):
    data = payload(10_000)
    url = server.add("/f.bin", data, statuses=[503, 429], retry_after="0")
    blob = _fetch_one(tmp_path, url, data)
    assert blob.read_bytes() == data
    assert [r.status for r in server.requests_for("/f.bin")] == [503, 429, 200]


def test_persistent_5xx_gives_a_clear_error(tmp_path, server):
    url = server.add("/f.bin", b"x", statuses=[500] * 10)
    with pytest.raises(HTTPStatusError, match=r"HTTP 500 .* for http://127\.0\.0\.1:\d+/f\.bin"):
        _fetch_one(tmp_path, url, b"x")
    assert len(server.requests_for("/f.bin")) == 4  # first try + DATASTAGE_RETRIES=3


@pytest.mark.parametrize(("status", "error"), [(404, RemoteNotFound), (403, AccessDenied)])
def test_client_errors_are_not_retried(tmp_path, server, status, error):
    url = server.add("/f.bin", b"x", statuses=[status])
    with pytest.raises(error):
        _fetch_one(tmp_path, url, b"x")
    assert len(server.requests_for("/f.bin")) == 1


def test_checksum_mismatch_shows_both_digests_and_keeps_nothing(tmp_path, server, cache_dir):
    data = payload(20_000)
    url = server.add("/f.bin", data)
    wrong = "0" * 64
    manifest = write_manifest(tmp_path, "one", [{"url": url, "sha256": wrong, "extract": False}])
    with pytest.raises(ChecksumMismatch) as e:
        datastage.fetch(str(manifest))
    assert f"expected sha256:{wrong}" in str(e.value)
    assert f"got sha256:{sha256(data)}" in str(e.value)
    assert (
        not list(cache_dir.rglob("*.part"))
        and not (cache_dir / "blobs" / "sha256" / sha256(data)[:2]).exists()
    )


def test_md5_pinned_file_is_accepted_and_aliased(tmp_path, server):
    import hashlib

    data = payload(5000)
    url = server.add("/f.bin", data)
    manifest = write_manifest(
        tmp_path, "one", [{"url": url, "md5": hashlib.md5(data).hexdigest(), "extract": False}]
    )
    (blob,) = datastage.fetch(str(manifest))
    assert blob.read_bytes() == data
    datastage.fetch(str(manifest))
    assert len(server.requests_for("/f.bin")) == 1


def test_html_page_instead_of_file_is_refused(tmp_path, server, cache_dir):
    data = payload(5000)
    url = server.add("/f.bin", data, html=True)
    manifest = write_manifest(tmp_path, "one", [{"url": url, "extract": False}])  # unpinned
    with pytest.raises(UnexpectedHTML, match=r"returned an HTML page instead of f\.bin"):
        datastage.fetch(str(manifest))
    assert not list(cache_dir.rglob("*.part")) and not (cache_dir / "blobs").exists()


def test_wrong_announced_size_is_caught_before_downloading(tmp_path, server):
    data = payload(50_000)
    url = server.add("/f.bin", data, wrong_length=10)
    with pytest.raises(SizeMismatch, match="expected 50000 bytes, the server announces 10"):
        _fetch_one(tmp_path, url, data)


def test_resume_after_partial_file_complete_uses_416(tmp_path, server, cache_dir):
    """A run killed after the last byte but before the commit finishes without re-downloading."""
    data = payload(100_000)
    url = server.add("/f.bin", data)
    # Let one download fail verification, keeping nothing; then lay down what a run killed
    # between its last write and its commit leaves behind: a full .part and its state.
    entry = {"url": url, "sha256": sha256(data), "size": len(data), "extract": False}
    manifest = datastage.resolve.manifest.load(write_manifest(tmp_path, "one", [entry]))
    part, state = Cache(cache_dir).partial_paths(manifest.files[0])
    part.parent.mkdir(parents=True)
    part.write_bytes(data)
    etag = server.files["/f.bin"].etag
    state.write_text(
        json.dumps({"url": url, "size": len(data), "etag": etag, "last_modified": None})
    )
    (blob,) = datastage.fetch(str(manifest.path))
    assert blob.read_bytes() == data
    assert server.requests_for("/f.bin") == [], "the manifest's sha256 decides, no request"


def test_a_complete_part_without_a_digest_is_confirmed_with_a_416(tmp_path, server, cache_dir):
    """Without a digest to check locally, the server confirms the file is unchanged (416)."""
    data = payload(100_000)
    url = server.add("/f.bin", data)
    entry = {"url": url, "size": len(data), "extract": False, "pinned": False}
    manifest = datastage.resolve.manifest.load(write_manifest(tmp_path, "one", [entry]))
    part, state = Cache(cache_dir).partial_paths(manifest.files[0])
    part.parent.mkdir(parents=True)
    part.write_bytes(data)
    etag = server.files["/f.bin"].etag
    state.write_text(
        json.dumps({"url": url, "size": len(data), "etag": etag, "last_modified": None})
    )
    (blob,) = datastage.fetch(str(manifest.path))
    assert blob.read_bytes() == data
    (only,) = server.requests_for("/f.bin")
    assert only.range == f"bytes={len(data)}-" and only.if_range == etag and only.status == 416


def test_stalled_connection_times_out_and_resumes(tmp_path, server, monkeypatch):
    monkeypatch.setenv("DATASTAGE_TIMEOUT", "0.5")
    data = payload(SIZE)
    url = server.add("/f.bin", data, stall_after=1_200_000)
    blob = _fetch_one(tmp_path, url, data)
    assert blob.read_bytes() == data
    first, resumed = server.requests_for("/f.bin")
    assert first.range is None and first.sent == 1_200_000
    # Bytes read but not yet written when the timeout hit are fetched again.
    start = int(resumed.range.split("=")[1].rstrip("-"))
    assert 0 < start <= 1_200_000 and resumed.status == 206


def test_proxy_from_environment_is_used(tmp_path, server, monkeypatch):
    data = payload(10_000)
    server.add("/f.bin", data)
    # The origin host does not exist: only the loopback proxy can answer for it.
    monkeypatch.setenv("http_proxy", server.base)
    blob = _fetch_one(tmp_path, "http://dataset.invalid/f.bin", data)
    assert blob.read_bytes() == data
    assert server.requests_for("/f.bin")[0].via_proxy


def test_no_proxy_is_honoured(tmp_path, server, monkeypatch):
    data = payload(10_000)
    url = server.add("/f.bin", data)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert _fetch_one(tmp_path, url, data).read_bytes() == data
    assert not server.requests_for("/f.bin")[0].via_proxy


def test_unreachable_host_fails_after_retries_with_one_line(tmp_path):
    with pytest.raises(NetworkError, match=r"cannot reach 127\.0\.0\.1"):
        _fetch_one(tmp_path, "http://127.0.0.1:9/f.bin", b"x")
