"""Extract while downloading (overlap.py), watched from outside through real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from datastage.stage.streaming import detect_head
from tests.archives import compress, make_tar, make_zip
from tests.conftest import payload, run_cli, sha256, tree, write_manifest
from tests.procs import kill9

SLOW_MOUNT = str(Path(__file__).resolve().parent / "slowmount")
FILES = {f"top/f{i:02d}.bin": payload(400_000, seed=i) for i in range(10)}  # 4 MB


def _tar_gz() -> bytes:
    return make_tar(list(FILES.items()), "gz")


def _start(manifest: Path, out: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "datastage", "get", str(manifest), "--to", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def _partial_files(out: Path, name: str) -> list[Path]:
    return [p for d in out.glob(f".{name}.partial-*") for p in d.rglob("*") if p.is_file()]


def _watch_until_partial_has_files(
    proc: subprocess.Popen[str], out: Path, name: str, part: Path
) -> int:
    """Poll until a member lands in the partial folder; return the .part size at that moment."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _partial_files(out, name):
            return part.stat().st_size  # FileNotFoundError: the download had already finished
        if proc.poll() is not None:
            raise AssertionError(f"ended before any member was staged: {proc.stderr.read()}")  # type: ignore[union-attr]
        time.sleep(0.005)
    raise AssertionError("no member appeared in time")


def test_members_appear_while_the_archive_is_still_arriving(tmp_path, server, cache_dir):
    data = _tar_gz()
    url = server.add("/a.tar.gz", data, rate=1_000_000)
    manifest = write_manifest(tmp_path, "ds", [{"url": url, "sha256": sha256(data)}])
    out = tmp_path / "out"
    part = cache_dir / "partial" / f"sha256-{sha256(data)}.part"
    proc = _start(manifest, out, DATASTAGE_CONNECTIONS="1")
    seen_at = _watch_until_partial_has_files(proc, out, "ds", part)
    assert seen_at < len(data), "a member was extracted before the download finished"
    assert proc.wait(timeout=60) == 0, proc.stderr.read()  # type: ignore[union-attr]
    overlapped = tree(out / "ds")

    plain_out = tmp_path / "plain"
    again = run_cli("get", str(manifest), "--to", str(plain_out), env={"DATASTAGE_OVERLAP": "0"})
    assert again.returncode == 0, again.stderr
    serial = tree(plain_out / "ds")
    marker = ".datastage.json"  # holds the staging time: compare what it lists instead
    assert {k: v for k, v in overlapped.items() if k != marker} == {
        k: v for k, v in serial.items() if k != marker
    }
    listed = [
        json.loads((d / "ds" / ".datastage-files.json").read_text()) for d in (out, plain_out)
    ]
    assert listed[0] == listed[1]
    assert {k: overlapped[f"{k}"] for k in FILES} == {k: sha256(v) for k, v in FILES.items()}


def test_segmented_download_with_overlap_gives_the_same_tree(tmp_path, server):
    data = make_tar(list(FILES.items()), "bz2")
    url = server.add("/a.tar.bz2", data, rate=2_000_000)
    manifest = write_manifest(tmp_path, "ds", [{"url": url, "sha256": sha256(data)}])
    out = tmp_path / "out"
    done = run_cli(
        "get", str(manifest), "--to", str(out),
        env={"DATASTAGE_CONNECTIONS": "4", "DATASTAGE_MIN_SEGMENT": "262144",
             "DATASTAGE_PROBE": "0"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {k: sha256((out / "ds" / k).read_bytes()) for k in FILES} == {
        k: sha256(v) for k, v in FILES.items()
    }


def test_digest_mismatch_discards_the_partial_staging(tmp_path, server, cache_dir):
    data = _tar_gz()
    url = server.add("/a.tar.gz", data, rate=1_000_000)
    manifest = write_manifest(tmp_path, "ds", [{"url": url, "sha256": "0" * 64}])
    out = tmp_path / "out"
    part = cache_dir / "partial" / f"sha256-{'0' * 64}.part"
    proc = _start(manifest, out, DATASTAGE_CONNECTIONS="1")
    _watch_until_partial_has_files(proc, out, "ds", part)  # extraction was under way ...
    assert proc.wait(timeout=60) == 5
    stderr = proc.stderr.read()  # type: ignore[union-attr]
    assert "mismatch" in stderr and "Traceback" not in stderr, stderr
    assert not (out / "ds").exists()  # ... and was thrown away
    assert not list(out.glob(".ds.partial-*"))
    assert not [p for p in cache_dir.rglob("*") if p.is_file() and "blobs" in p.parts]
    assert not list((cache_dir / "partial").glob("*.part")), "bytes that failed are not kept"


def test_corrupt_archive_mid_stream_stops_the_download(tmp_path, server, cache_dir):
    data = bytearray(make_tar(list(FILES.items()), "bz2"))  # bz2 checks each block's CRC
    middle = len(data) // 4
    data[middle : middle + 4096] = b"\x00" * 4096
    url = server.add("/a.tar.gz", bytes(data), rate=1_000_000)
    manifest = write_manifest(tmp_path, "ds", [{"url": url, "sha256": sha256(bytes(data))}])
    out = tmp_path / "out"
    done = run_cli("get", str(manifest), "--to", str(out), env={"DATASTAGE_CONNECTIONS": "1"})
    assert done.returncode == 6, done.stderr
    assert "damaged" in done.stderr and "Traceback" not in done.stderr
    assert not (out / "ds").exists() and not list(out.glob(".ds.partial-*"))
    sent = sum(r.sent for r in server.requests_for("/a.tar.gz"))
    assert sent < len(data), "the download stopped when the archive turned out broken"
    assert not [p for p in (cache_dir / "blobs").rglob("*") if p.is_file()]


def test_kill_9_mid_way_then_rerun_gives_the_exact_tree(tmp_path, server, cache_dir):
    data = _tar_gz()
    url = server.add("/a.tar.gz", data, rate=1_000_000)
    manifest = write_manifest(tmp_path, "ds", [{"url": url, "sha256": sha256(data)}])
    out = tmp_path / "out"
    part = cache_dir / "partial" / f"sha256-{sha256(data)}.part"
    proc = _start(manifest, out, DATASTAGE_CONNECTIONS="1")
    _watch_until_partial_has_files(proc, out, "ds", part)
    kill9(proc)
    assert not (out / "ds").exists()
    kept = part.stat().st_size
    assert 0 < kept < len(data)

    server.faults("/a.tar.gz")
    done = run_cli("get", str(manifest), "--to", str(out))
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr
    assert not list(out.glob(".ds.partial-*"))
    assert {k: sha256((out / "ds" / k).read_bytes()) for k in FILES} == {
        k: sha256(v) for k, v in FILES.items()
    }
    assert sorted(tree(out / "ds")) == sorted(
        [".datastage.json", ".datastage-files.json", "top", *FILES]
    ), "nothing more, nothing less"


def test_local_path_on_a_slow_mount_overlaps_too(tmp_path, cache_dir):
    data = make_tar(list(FILES.items()), "xz")
    mount = tmp_path / "mount"
    mount.mkdir()
    src = mount / "a.tar.xz"
    src.write_bytes(data)
    manifest = write_manifest(tmp_path, "ds", [{"url": str(src), "sha256": sha256(data)}])
    out = tmp_path / "out"
    part = cache_dir / "partial" / f"sha256-{sha256(data)}.part"
    slow = {"PYTHONPATH": SLOW_MOUNT, "SLOW_MOUNT_DIR": str(mount), "SLOW_MOUNT_RATE": "1000000"}
    proc = _start(manifest, out, DATASTAGE_CONNECTIONS="1", **slow)
    seen_at = _watch_until_partial_has_files(proc, out, "ds", part)
    assert seen_at < len(data), "a member was extracted before the copy finished"
    assert proc.wait(timeout=60) == 0, proc.stderr.read()  # type: ignore[union-attr]
    assert {k: sha256((out / "ds" / k).read_bytes()) for k in FILES} == {
        k: sha256(v) for k, v in FILES.items()
    }


def test_zip_takes_the_usual_path(tmp_path, server):
    data = make_zip(list(FILES.items()))
    url = server.add("/a.zip", data, rate=4_000_000)
    manifest = write_manifest(tmp_path, "ds", [{"url": url, "sha256": sha256(data)}])
    out = tmp_path / "out"
    done = run_cli("get", str(manifest), "--to", str(out))
    assert done.returncode == 0, done.stderr
    assert {k: sha256((out / "ds" / k).read_bytes()) for k in FILES} == {
        k: sha256(v) for k, v in FILES.items()
    }


def test_detect_head_matches_detect_on_first_bytes():
    tar = make_tar(list(FILES.items()))
    assert str(detect_head(tar[:512], False)) == "tar"
    for c in ("gz", "bz2", "xz"):
        assert str(detect_head(compress(tar, c), True)) == f"tar.{c}"
        assert str(detect_head(compress(b"hello " * 200, c), True)) == c
    assert detect_head(compress(tar, "bz2")[:100], False) is None  # needs a whole block
    assert detect_head(make_zip([("a", b"x")]), True).kind == "zip"  # type: ignore[union-attr]
    assert str(detect_head(b"just text", True)) == "plain"


def test_a_damaged_mirror_falls_back_to_the_next_while_overlapping(tmp_path, server):
    good = _tar_gz()
    bad = bytearray(make_tar(list(FILES.items()), "bz2"))
    bad_url = server.add("/bad.tar.bz2", bytes(bad[: len(bad) // 2]) + b"\x00" * (len(bad) // 2))
    good_url = server.add("/good.tar.gz", good)
    entry = {"url": bad_url, "mirrors": [good_url], "sha256": sha256(good), "name": "a.tar.gz"}
    manifest = write_manifest(tmp_path, "ds", [entry])
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "trying the next mirror" in done.stderr
    staged = tree(tmp_path / "out" / "ds")
    assert {k: v for k, v in staged.items() if k in FILES} == {
        k: sha256(v) for k, v in FILES.items()
    }
