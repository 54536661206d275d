"""`datastage cache ls / rm / prune / dir` on a real cache filled by real downloads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import datastage
from tests.conftest import payload, run_cli, sha256, write_manifest

ROOT = Path(__file__).resolve().parents[1]


def _two_datasets(tmp_path, server):
    a, b = payload(30_000, 1), payload(50_000, 2)
    ma = write_manifest(tmp_path, "alpha", [{"url": server.add("/a.bin", a), "sha256": sha256(a)}])
    mb = write_manifest(tmp_path, "beta", [{"url": server.add("/b.bin", b), "sha256": sha256(b)}])
    datastage.get(str(ma), to=tmp_path / "fast")
    time.sleep(0.01)  # distinct "last used" times
    datastage.get(str(mb), to=tmp_path / "fast")
    return ma, mb, a, b


def _ls(cache: Path) -> dict[str, dict]:
    done = run_cli("cache", "ls", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["cache"] == str(cache)
    return {e["name"]: e for e in out["entries"]}


def test_cache_dir_and_ls(tmp_path, server, cache_dir):
    _two_datasets(tmp_path, server)
    assert run_cli("cache", "dir").stdout.strip() == str(cache_dir)
    entries = _ls(cache_dir)
    assert {k: v["size"] for k, v in entries.items()} == {"alpha": 30_000, "beta": 50_000}
    assert entries["alpha"]["paths"][0].startswith(str(cache_dir / "blobs"))
    text = run_cli("cache", "ls").stdout
    assert "alpha" in text and "beta" in text and "total" in text


def test_cache_rm_removes_one_dataset_only(tmp_path, server, cache_dir):
    _, _, a, _ = _two_datasets(tmp_path, server)
    done = run_cli("cache", "rm", "alpha")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "removed alpha: 30.0 kB freed"
    assert set(_ls(cache_dir)) == {"beta"}
    assert not (cache_dir / "blobs" / "sha256" / sha256(a)[:2] / sha256(a)).exists()
    missing = run_cli("cache", "rm", "alpha")
    assert missing.returncode == 3 and missing.stderr.startswith("error: alpha is not in the cache")
    # The staged copy is untouched, and a new get downloads it again.
    assert (tmp_path / "fast" / "alpha" / "a.bin").read_bytes() == a


def test_cache_prune_to_a_size_removes_least_recently_used(tmp_path, server, cache_dir):
    _two_datasets(tmp_path, server)
    done = run_cli("cache", "prune", "--max-size", "60K")
    assert done.returncode == 0, done.stderr
    assert "removed alpha" in done.stdout
    assert set(_ls(cache_dir)) == {"beta"}
    assert run_cli("cache", "prune", "--max-size", "0").returncode == 0
    assert _ls(cache_dir) == {}
    bad = run_cli("cache", "prune", "--max-size", "lots")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --max-size: 'lots' is not a size")


def test_cache_prune_removes_stale_partials_but_not_locked_ones(tmp_path, cache_dir):
    partial = cache_dir / "partial"
    partial.mkdir(parents=True)
    stale, live = partial / "sha256-aaaa.part", partial / "sha256-bbbb.part"
    for path in (stale, live):
        path.write_bytes(b"x" * 100)
        os.utime(path, (time.time() - 3 * 86400,) * 2)
    lock = cache_dir / ".locks" / "sha256-bbbb.lock"
    code = (
        "import sys, time; from filelock import FileLock; l = FileLock(sys.argv[1]); l.acquire();"
        " print('locked', flush=True); time.sleep(600)"
    )
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        done = run_cli("cache", "prune")
        assert done.returncode == 0, done.stderr
        assert not stale.exists() and live.exists()
        assert str(stale) in done.stdout
    finally:
        holder.kill()
        holder.wait()
    fresh = partial / "sha256-cccc.part"
    fresh.write_bytes(b"new")
    run_cli("cache", "prune")
    assert fresh.exists()  # younger than --partial-age: a download may resume it
