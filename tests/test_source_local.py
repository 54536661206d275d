"""Local and mounted paths as sources: files, folders, and a slow mount killed mid-copy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import payload, run_cli, sha256
from tests.procs import kill9, wait_for

SLOW_MOUNT = str(Path(__file__).resolve().parent / "slowmount")


def _root(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1])


def test_folder_on_a_mount_is_copied_as_a_tree(tmp_path: Path) -> None:
    mount = tmp_path / "autodl-pub" / "speech"
    (mount / "wavs").mkdir(parents=True)
    (mount / "wavs" / "a.wav").write_bytes(payload(3000, 1))
    (mount / "meta.csv").write_text("a|hello\n")
    result = run_cli("get", str(mount), "--to", str(tmp_path / "out"), "-q")
    assert result.returncode == 0, result.stderr
    root = _root(result.stdout)
    assert root == tmp_path / "out" / "speech"
    assert (root / "wavs" / "a.wav").read_bytes() == payload(3000, 1)
    assert (root / "meta.csv").read_text() == "a|hello\n"


def test_file_url_with_wrong_sha256_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "clip.bin"
    src.write_bytes(b"abc" * 1000)
    result = run_cli("get", src.as_uri(), "--to", str(tmp_path / "out"), "--sha256", "0" * 64)
    assert result.returncode == 5
    assert result.stderr.startswith("error: ") and "0" * 64 in result.stderr
    assert not (tmp_path / "out" / "clip").exists()


def test_missing_path_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_cli("get", str(tmp_path / "nope" / "x.tar"), "--to", str(tmp_path))
    assert result.returncode == 4
    assert result.stderr == f"error: no such file: {tmp_path / 'nope' / 'x.tar'}\n"


def test_slow_mount_copy_resumes_after_kill(tmp_path: Path, cache_dir: Path) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    data = payload(6 * 1024 * 1024, 5)
    (mount / "big.bin").write_bytes(data)
    env = {**os.environ, "PYTHONPATH": SLOW_MOUNT, "SLOW_MOUNT_DIR": str(mount)}
    args = [sys.executable, "-m", "datastage", "get", str(mount / "big.bin"), "--to", str(tmp_path)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def parts() -> list[Path]:
        return [p for p in cache_dir.rglob("*.part") if p.stat().st_size > 1024 * 1024]

    wait_for(lambda: bool(parts()), proc, what="1 MB copied")
    kill9(proc)
    proc.communicate()
    part = parts()[0]
    kept = part.stat().st_size
    assert 0 < kept < len(data)

    result = run_cli("get", str(mount / "big.bin"), "--to", str(tmp_path), env=env)
    assert result.returncode == 0, result.stderr
    assert "resum" in result.stderr.lower()  # it went on from the kept bytes
    staged = _root(result.stdout) / "big.bin"
    assert sha256(staged.read_bytes()) == sha256(data)
