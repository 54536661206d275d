"""`datastage stage` (folders and archives, from a real FUSE slow mount when possible), resume,
and `datastage pack` -> `datastage get <name>.toml` round trips."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import payload, run_cli, tree
from tests.servers import slowfs

ROOT = Path(__file__).resolve().parents[1]


def _corpus(root: Path, n: int = 40, size: int = 3000) -> Path:
    """An LJSpeech-shaped folder: wavs/*.wav, metadata.csv, a nested folder."""
    (root / "wavs").mkdir(parents=True)
    lines = []
    for i in range(n):
        (root / "wavs" / f"LJ001-{i:04d}.wav").write_bytes(payload(size + i, i))
        lines.append(f"LJ001-{i:04d}|text {i}|text {i}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    (root / "extra" / "deep").mkdir(parents=True)
    (root / "extra" / "deep" / "notes.txt").write_text("notes\n")
    return root


def _without_marker(t: dict) -> dict:
    return {k: v for k, v in t.items() if k != ".datastage.json"}


def test_stage_folder_copies_verifies_and_marks(tmp_path):
    src = _corpus(tmp_path / "LJSpeech-1.1")
    done = run_cli("stage", str(src), "--to", str(tmp_path / "fast"))
    assert done.returncode == 0, done.stderr
    staged = tmp_path / "fast" / "ljspeech-1.1"
    assert done.stdout.strip() == str(staged)
    assert _without_marker(tree(staged)) == tree(src)
    marker = json.loads((staged / ".datastage.json").read_text())
    assert marker["source"] == str(src) and len(marker["files"]) == 42
    assert sorted(p.name for p in (tmp_path / "fast").iterdir()) == ["ljspeech-1.1"]
    # A second run is a no-op that prints the same path.
    again = run_cli("stage", str(src), "--to", str(tmp_path / "fast"))
    assert again.returncode == 0 and again.stdout == done.stdout


def test_stage_refuses_a_folder_it_did_not_make(tmp_path):
    src = _corpus(tmp_path / "src", n=2)
    (tmp_path / "fast" / "src").mkdir(parents=True)
    (tmp_path / "fast" / "src" / "mine.txt").write_text("keep me")
    done = run_cli("stage", str(src), "--to", str(tmp_path / "fast"))
    assert done.returncode == 2 and done.stderr.startswith("error: ")
    assert "was not staged by datastage" in done.stderr
    assert (tmp_path / "fast" / "src" / "mine.txt").read_text() == "keep me"


def test_stage_missing_source_is_one_line(tmp_path):
    done = run_cli("stage", str(tmp_path / "nope"), "--to", str(tmp_path / "fast"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {tmp_path / 'nope'}: no such folder or file"


def test_stage_from_a_fuse_slow_mount(tmp_path):
    reason = slowfs.available()
    if reason:
        pytest.skip(reason)
    src = _corpus(tmp_path / "drive-data", n=60)
    mount = tmp_path / "mnt"
    try:
        ctx = slowfs.SlowMount(src, mount, open_latency=0.005, rate=50e6)
        mounted = ctx.__enter__()
    except OSError as e:
        pytest.skip(f"cannot mount FUSE here: {e}")
    try:
        assert os.path.ismount(mounted)
        done = run_cli("stage", str(mounted), "--to", str(tmp_path / "fast"), "--name", "lj")
        assert done.returncode == 0, done.stderr
        assert _without_marker(tree(tmp_path / "fast" / "lj")) == tree(src)
    finally:
        ctx.__exit__()


def test_stage_resumes_after_kill_and_recopies_changed_files(tmp_path):
    src = _corpus(tmp_path / "src", n=1500, size=40_000)
    to = tmp_path / "fast"

    def journal() -> Path:
        found = list(to.glob(".src.partial-*/.datastage-journal.jsonl"))
        return found[0] if found else to / "not yet"

    proc = subprocess.Popen(
        [sys.executable, "-m", "datastage", "stage", str(src), "--to", str(to), "--workers", "1"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal().exists() and journal().read_text().count("\n") >= 50:
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.skip("the copy finished before it could be interrupted")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (to / "src").exists()  # never visible under the final name
    copied = [json.loads(line)["path"] for line in journal().read_text().splitlines() if line]
    assert len(copied) >= 50
    changed = src / copied[0]
    changed.write_bytes(b"edited since the first run")
    done = run_cli("stage", str(src), "--to", str(to))
    assert done.returncode == 0, done.stderr
    resumed = int(done.stderr.split("resuming: ")[1].split(" of ")[0])
    assert len(copied) - 1 <= resumed < 1502
    assert _without_marker(tree(to / "src")) == tree(src)
    assert sorted(p.name for p in to.iterdir()) == ["src"]


def test_pack_then_get_round_trip(tmp_path):
    src = _corpus(tmp_path / "LJSpeech-1.1", n=30)
    drive = tmp_path / "drive" / "packs"
    done = run_cli("pack", str(src), "--to", str(drive))
    assert done.returncode == 0, done.stderr
    manifest = Path(done.stdout.strip())
    assert manifest == drive / "ljspeech-1.1.toml"
    assert sorted(p.name for p in drive.iterdir()) == ["ljspeech-1.1.tar", "ljspeech-1.1.toml"]
    got = run_cli("get", str(manifest), "--to", str(tmp_path / "fast"))
    assert got.returncode == 0, got.stderr
    staged = Path(got.stdout.strip())
    assert staged == tmp_path / "fast" / "ljspeech-1.1"
    assert _without_marker(tree(staged)) == tree(src)
    verified = run_cli("verify", str(manifest), "--to", str(tmp_path / "fast"))
    assert verified.returncode == 0, verified.stderr


def test_packed_archive_is_checked_against_its_manifest(tmp_path):
    src = _corpus(tmp_path / "data", n=5)
    drive = tmp_path / "drive"
    manifest = Path(run_cli("pack", str(src), "--to", str(drive)).stdout.strip())
    archive = drive / "data.tar"
    damaged = bytearray(archive.read_bytes())
    damaged[600] ^= 0xFF
    archive.write_bytes(bytes(damaged))
    got = run_cli("get", str(manifest), "--to", str(tmp_path / "fast"))
    assert got.returncode != 0
    assert "checksum mismatch" in got.stderr
    assert not (tmp_path / "fast" / "data").exists()


def test_stage_an_archive(tmp_path):
    src = _corpus(tmp_path / "data", n=5)
    drive = tmp_path / "drive"
    run_cli("pack", str(src), "--to", str(drive))
    done = run_cli("stage", str(drive / "data.tar"), "--to", str(tmp_path / "fast"))
    assert done.returncode == 0, done.stderr
    assert _without_marker(tree(Path(done.stdout.strip()))) == tree(src)
