"""Errors carry what a caller acts on as fields (issue 12): expected/actual/url/failures/path,
and nothing is decided by matching an error's text. Over real HTTP on loopback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import datastage
from datastage.core.errors import (
    AllMirrorsFailed,
    ChecksumMismatch,
    CorruptArchive,
    RemoteNotFound,
    SizeMismatch,
)
from tests.archives import make_tar
from tests.conftest import payload, run_cli, sha256, write_manifest
from tests.servers.http_server import FileServer


def _forget_blobs(cache: Path) -> None:
    """A cache that lost its blobs but kept its pins (an evicted cache, another machine's)."""
    for folder in ("blobs", "index"):
        shutil.rmtree(cache / folder, ignore_errors=True)


def test_a_broken_pin_names_both_digests_in_fields(tmp_path, server, cache_dir):
    old, new = payload(20_000, seed=1), payload(20_000, seed=2)
    url = server.add("/data.bin", old)
    manifest = write_manifest(tmp_path, "tofu", [{"url": url, "pinned": False}])
    datastage.fetch(str(manifest))
    _forget_blobs(cache_dir)
    server.change("/data.bin", new)  # same size: only the digest can tell
    with pytest.raises(ChecksumMismatch) as caught:
        datastage.fetch(str(manifest))
    error = caught.value
    assert (error.expected, error.actual) == (f"sha256:{sha256(old)}", f"sha256:{sha256(new)}")
    assert "(expected value pinned on first use, " in str(error)
    assert "datastage unpin" in (error.hint or "")


def test_an_announced_size_names_the_url_redacted(tmp_path, server, cache_dir):
    url = server.add("/data.bin", payload(30_000)) + "?token=s3cr3t-value"
    manifest = write_manifest(tmp_path, "tofu", [{"url": url, "pinned": False}])
    datastage.fetch(str(manifest))
    _forget_blobs(cache_dir)
    server.change("/data.bin", payload(70_000, seed=3))
    with pytest.raises(SizeMismatch) as caught:
        datastage.fetch(str(manifest))
    error = caught.value
    assert (error.expected, error.actual) == (30_000, 70_000)
    assert error.url == url.replace("s3cr3t-value", "***")
    assert "s3cr3t" not in str(error) and "pinned on first use" in str(error)


@pytest.fixture
def server2(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A second server; the mirrors are tried in the manifest's order (not ranked by speed)."""
    monkeypatch.setenv("DATASTAGE_MIRROR", "listed")
    s = FileServer()
    yield s
    s.close()


def _pinned_mirrors(tmp_path: Path, server, server2, cache_dir: Path) -> tuple[Path, list[str]]:  # type: ignore[no-untyped-def]
    """A first-use pinned file with two URLs whose path says "mismatch", its blob evicted."""
    data = payload(20_000, seed=4)
    urls = [s.add("/mismatch/f.bin", data) for s in (server, server2)]
    entry = {"url": urls[0], "mirrors": urls[1:], "pinned": False, "extract": False}
    manifest = write_manifest(tmp_path, "m", [entry])
    datastage.fetch(str(manifest))
    _forget_blobs(cache_dir)
    return manifest, urls


def test_mirrors_that_are_gone_are_not_blamed_on_the_pin(tmp_path, server, server2, cache_dir):
    """No mirror served other bytes: the failure says nothing of the pin, whatever words its
    URLs hold (the old check matched "mismatch" in the message)."""
    manifest, urls = _pinned_mirrors(tmp_path, server, server2, cache_dir)
    for s in (server, server2):
        s.faults("/mismatch/f.bin", statuses=[404] * 5)
    with pytest.raises(AllMirrorsFailed) as caught:
        datastage.fetch(str(manifest))
    error = caught.value
    assert "pinned on first use" not in str(error)
    assert "unpin" not in (error.hint or "")
    assert [url for url, _ in error.failures] == urls
    assert all(isinstance(failure, RemoteNotFound) for _, failure in error.failures)


def test_a_mirror_with_other_bytes_is_blamed_on_the_pin(tmp_path, server, server2, cache_dir):
    manifest, urls = _pinned_mirrors(tmp_path, server, server2, cache_dir)
    server.faults("/mismatch/f.bin", statuses=[404] * 5)
    server2.change("/mismatch/f.bin", payload(20_000, seed=5))
    with pytest.raises(AllMirrorsFailed) as caught:
        datastage.fetch(str(manifest))
    error = caught.value
    assert [(url, type(failure)) for url, failure in error.failures] == [
        (urls[0], RemoteNotFound),
        (urls[1], ChecksumMismatch),
    ]
    assert "(expected value pinned on first use, " in str(error)
    assert "datastage unpin" in (error.hint or "")


def test_a_corrupt_archive_names_it_in_a_field(tmp_path, server):
    whole = make_tar({"a.txt": payload(50_000)}, "gz")
    damaged = whole[: len(whole) // 2]
    url = server.add("/d.tar.gz", damaged)
    entry = {"url": url, "sha256": sha256(damaged), "size": len(damaged)}
    manifest = write_manifest(tmp_path, "ca", [entry])
    with pytest.raises(CorruptArchive) as caught:
        datastage.get(str(manifest), to=tmp_path / "out")
    assert caught.value.path is not None and caught.value.path.endswith("d.tar.gz")
    assert caught.value.path in str(caught.value)


def test_amend_redacts_and_keeps_type_and_fields():
    error = ChecksumMismatch("checksum mismatch", expected="sha256:aa", actual="sha256:bb")
    error.amend(" via https://user:pw1234@host/x", hint="see https://host/y?token=abcdef12")
    assert isinstance(error, ChecksumMismatch) and error.expected == "sha256:aa"
    assert str(error) == error.args[0] == "checksum mismatch via https://***@host/x"
    assert error.hint == "see https://host/y?token=***"


def test_every_hf_endpoint_that_failed_is_named(tmp_path):
    """The first endpoint's error, amended with the others' (type, status and hint kept)."""
    pytest.importorskip("huggingface_hub")
    from tests.servers.hf_server import HFServer

    mirrors = [HFServer(), HFServer()]
    try:
        for mirror in mirrors:
            mirror.down = True
        result = run_cli(
            "get", "hf://datasets/org/speech/archive.bin", "--to", str(tmp_path),
            "--hf-endpoint", ",".join(m.base for m in mirrors), env={"DATASTAGE_RETRIES": "0"},
        )  # fmt: skip
    finally:
        for mirror in mirrors:
            mirror.close()
    assert result.returncode == 4, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "; then " in errors[0], result.stderr
    assert all(m.base.split("//")[1] in errors[0] for m in mirrors), errors[0]
