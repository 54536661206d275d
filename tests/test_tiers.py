"""Persistent tier and source folders: used before the network, filled after a download."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import datastage
from tests.archives import make_tar
from tests.conftest import payload, run_cli, sha256, tree, write_manifest


@pytest.fixture
def dataset(tmp_path, server):
    """A pinned one-archive dataset served on loopback; returns (manifest, archive bytes)."""
    archive = make_tar({"ds/a.wav": payload(5000, 1), "ds/b.wav": payload(7000, 2)})
    url = server.add("/ds.tar", archive)
    manifest = write_manifest(
        tmp_path, "ds", [{"url": url, "sha256": sha256(archive), "size": len(archive)}], root="ds"
    )
    return manifest, archive


def _new_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int) -> Path:
    """A fresh runtime: empty cache and empty fast disk (as after a Colab reconnect)."""
    monkeypatch.setenv("DATASTAGE_CACHE", str(tmp_path / f"cache-{n}"))
    return tmp_path / f"fast-{n}"


def test_download_is_saved_to_the_persistent_tier_with_a_sidecar(
    tmp_path, server, dataset, monkeypatch
):
    manifest, archive = dataset
    drive = tmp_path / "drive" / "datastage-cache"
    monkeypatch.setenv("DATASTAGE_PERSISTENT_CACHE", str(drive))
    root = datastage.get(str(manifest), to=_new_session(tmp_path, monkeypatch, 1))
    assert (root / "a.wav").read_bytes() == payload(5000, 1)
    saved = drive / "ds" / "ds.tar"
    assert saved.read_bytes() == archive
    sidecar = json.loads((drive / "ds" / "ds.tar.datastage.json").read_text())
    assert sidecar["size"] == len(archive) and sidecar["digests"]["sha256"] == sha256(archive)
    assert sorted(p.name for p in (drive / "ds").iterdir()) == ["ds.tar", "ds.tar.datastage.json"]


def test_persistent_hit_makes_zero_network_requests(tmp_path, server, dataset, monkeypatch):
    manifest, _ = dataset
    monkeypatch.setenv("DATASTAGE_PERSISTENT_CACHE", str(tmp_path / "drive"))
    first = datastage.get(str(manifest), to=_new_session(tmp_path, monkeypatch, 1))
    requests_after_first = len(server.log)
    assert requests_after_first >= 1

    to = _new_session(tmp_path, monkeypatch, 2)
    done = run_cli("get", str(manifest), "--to", str(to))
    assert done.returncode == 0, done.stderr
    assert "from the persistent tier" in done.stderr
    assert len(server.log) == requests_after_first  # not one request, not even a HEAD
    assert tree(Path(done.stdout.strip())) == tree(first)


def test_persistent_copy_is_always_hashed_on_the_way_in(tmp_path, server, dataset, monkeypatch):
    manifest, archive = dataset
    drive = tmp_path / "drive"
    monkeypatch.setenv("DATASTAGE_PERSISTENT_CACHE", str(drive))
    datastage.get(str(manifest), to=_new_session(tmp_path, monkeypatch, 1))
    saved = drive / "ds" / "ds.tar"
    # Same size, different bytes: only a full hash can tell.
    saved.write_bytes(archive[:-1] + bytes([archive[-1] ^ 1]))
    before = len(server.log)
    root = datastage.get(str(manifest), to=_new_session(tmp_path, monkeypatch, 2))
    assert (root / "b.wav").read_bytes() == payload(7000, 2)
    assert len(server.requests_for("/ds.tar")) > 0 and len(server.log) > before
    assert saved.read_bytes() == archive  # the tier was repaired with the good download


def test_source_folder_hit_needs_no_network(tmp_path, server, dataset, monkeypatch):
    manifest, archive = dataset
    pub = tmp_path / "autodl-pub"
    (pub / "some-group").mkdir(parents=True)
    (pub / "some-group" / "ds.tar").write_bytes(archive)
    monkeypatch.setenv("DATASTAGE_SOURCES", str(pub))
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "fast"))
    assert done.returncode == 0, done.stderr
    assert server.log == []
    assert (Path(done.stdout.strip()) / "a.wav").read_bytes() == payload(5000, 1)


def test_platform_source_folder_is_searched(tmp_path, server, dataset, monkeypatch):
    manifest, archive = dataset
    pub = tmp_path / "platform-root" / "root" / "autodl-pub"
    pub.mkdir(parents=True)
    (pub / "ds.tar").write_bytes(archive)
    root = datastage.get(str(manifest), to=tmp_path / "fast")
    assert server.log == []
    assert (root / "a.wav").exists()


def test_source_folder_with_wrong_bytes_is_ignored(tmp_path, server, dataset, monkeypatch):
    manifest, archive = dataset
    pub = tmp_path / "pub"
    pub.mkdir()
    (pub / "ds.tar").write_bytes(bytes(len(archive)))  # right name and size, wrong content
    monkeypatch.setenv("DATASTAGE_SOURCES", str(pub))
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "fast"))
    assert done.returncode == 0, done.stderr
    assert "warning: ignoring " in done.stderr and "checksum mismatch" in done.stderr
    assert len(server.requests_for("/ds.tar")) >= 1
    assert (pub / "ds.tar").read_bytes() == bytes(len(archive))  # read-only: never touched


def test_offline_get_works_from_the_persistent_tier(tmp_path, server, dataset, monkeypatch):
    manifest, _ = dataset
    monkeypatch.setenv("DATASTAGE_PERSISTENT_CACHE", str(tmp_path / "drive"))
    datastage.get(str(manifest), to=_new_session(tmp_path, monkeypatch, 1))
    server.close()
    monkeypatch.setenv("DATASTAGE_OFFLINE", "1")
    root = datastage.get(str(manifest), to=_new_session(tmp_path, monkeypatch, 2))
    assert (root / "b.wav").read_bytes() == payload(7000, 2)


def test_a_blob_cached_before_the_tier_was_configured_is_saved_later(
    tmp_path, server, dataset, monkeypatch
):
    manifest, archive = dataset
    datastage.get(str(manifest), to=tmp_path / "fast-1")  # no persistent tier yet
    drive = tmp_path / "drive"
    monkeypatch.setenv("DATASTAGE_PERSISTENT_CACHE", str(drive))
    requests = len(server.log)
    datastage.get(str(manifest), to=tmp_path / "fast-2")
    assert len(server.log) == requests  # from the cache
    assert (drive / "ds" / "ds.tar").read_bytes() == archive


def test_persistent_tier_on_a_read_only_fuse_mount(tmp_path, server, dataset, monkeypatch):
    from tests.servers import slowfs

    reason = slowfs.available()
    if reason:
        pytest.skip(reason)
    manifest, _ = dataset
    drive = tmp_path / "drive"
    monkeypatch.setenv("DATASTAGE_PERSISTENT_CACHE", str(drive))
    datastage.get(str(manifest), to=_new_session(tmp_path, monkeypatch, 1))
    requests = len(server.log)
    mount = slowfs.SlowMount(drive, tmp_path / "mnt", open_latency=0.005)
    try:
        mounted = mount.__enter__()
    except OSError as e:
        pytest.skip(f"cannot mount FUSE here: {e}")
    try:
        monkeypatch.setenv("DATASTAGE_PERSISTENT_CACHE", str(mounted))
        done = run_cli("get", str(manifest), "--to", str(_new_session(tmp_path, monkeypatch, 2)))
        assert done.returncode == 0, done.stderr
        assert "from the persistent tier" in done.stderr
        assert len(server.log) == requests
        assert (Path(done.stdout.strip()) / "a.wav").read_bytes() == payload(5000, 1)
    finally:
        mount.__exit__()
