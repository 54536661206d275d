"""Size guard: declared sizes are checked before writing, and output beyond them is stopped."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.archives import pack
from tests.conftest import run_cli, sha256, write_manifest

MB = 1024 * 1024


def _get(tmp_path: Path, name: str, data: bytes, out: Path, **entry: object):
    (tmp_path / name).write_bytes(data)
    manifest = write_manifest(tmp_path, "ds", [{"url": name, "sha256": sha256(data), **entry}])
    return run_cli("get", str(manifest), "--to", str(out))


def _nothing_staged(out: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == [], "nothing half-staged"


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "tar.bz2", "tar.zst", "7z"])
def test_output_beyond_the_manifests_unpacked_size_is_stopped(tmp_path, fmt):
    data = pack(fmt, [("zeros.bin", bytes(24 * MB))], tmp_path)
    assert len(data) < MB, "a bomb: tiny archive, big output"
    out = tmp_path / "out"
    done = _get(tmp_path, f"bomb.{fmt}", data, out, unpacked_size=2 * MB)
    assert done.returncode == 6, done.stderr
    assert done.stderr.startswith(
        f"error: bomb.{fmt} unpacks to more than the 2.1 MB declared by the manifest "
        "(unpacked_size); extraction stopped"
    ), done.stderr
    _nothing_staged(out)


def test_zip_whose_members_lie_about_their_size_is_refused(tmp_path):
    data = bytearray(pack("zip", [("zeros.bin", bytes(8 * MB))], tmp_path))
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 1000)  # "1000 bytes", but it inflates to 8 MB
    out = tmp_path / "out"
    done = _get(tmp_path, "liar.zip", bytes(data), out)
    assert done.returncode == 6, done.stderr
    assert done.stderr.startswith("error: liar.zip is damaged or truncated (zip): ")
    _nothing_staged(out)


@pytest.mark.parametrize("fmt", ["zip", "7z"])
def test_declared_size_beyond_free_space_fails_before_writing(tmp_path, small_disk, fmt):
    data = pack(fmt, [("zeros.bin", bytes(16 * MB))], tmp_path)
    done = _get(tmp_path, f"big.{fmt}", data, small_disk)
    assert done.returncode == 7, done.stderr
    assert done.stderr.startswith(f"error: not enough disk space in {small_disk}")
    assert "need 16.8 MB" in done.stderr
    _nothing_staged(small_disk)


def test_undeclared_bomb_stops_before_the_disk_is_full(tmp_path, small_disk):
    data = pack("tar.gz", [("zeros.bin", bytes(16 * MB))], tmp_path)
    done = _get(tmp_path, "bomb.tar.gz", data, small_disk)
    assert done.returncode == 7, done.stderr
    assert done.stderr.startswith(f"error: not enough disk space in {small_disk}")
    _nothing_staged(small_disk)
