"""torchrun-style ranks on one machine stage once; locks of killed processes never block."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from datastage.settings import ranks
from tests.conftest import payload, run_cli, sha256, write_manifest

ROOT = Path(__file__).resolve().parents[1]


def _archive() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for i in range(3):
            data = payload(200_000, i)
            info = tarfile.TarInfo(f"ds/f{i}.wav")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _rank(
    rank: int,
    manifest: Path,
    to: Path,
    world: int = 4,
    quiet: bool = True,
    **extra_env: str,
) -> subprocess.Popen[str]:
    code = (
        "import sys, datastage; "
        f"print(datastage.get(sys.argv[1], to=sys.argv[2], quiet={quiet}), flush=True)"
    )
    env = {
        **os.environ,
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(world),
        "DATASTAGE_LOCK_TIMEOUT": "60",
        **extra_env,
    }
    return subprocess.Popen(
        [sys.executable, "-c", code, str(manifest), str(to)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def test_four_ranks_stage_once(tmp_path, server):
    archive = _archive()
    # Slow enough that every rank starts while the first download is still running.
    url = server.add("/ds.tar", archive, rate=600_000)
    manifest = write_manifest(
        tmp_path, "ds", [{"url": url, "sha256": sha256(archive), "size": len(archive)}], root="ds"
    )
    to = tmp_path / "fast"
    procs = [_rank(r, manifest, to) for r in (3, 1, 2, 0)]  # rank 0 last: it still goes first
    outs = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [o[1] for o in outs]
    assert {o[0].strip() for o in outs} == {str(to / "ds" / "ds")}
    gets = server.requests_for("/ds.tar")
    assert len(gets) == 1 and gets[0].status == 200
    assert sorted(p.name for p in to.iterdir()) == ["ds"]  # one staging, no leftovers
    assert (to / "ds" / "ds" / "f2.wav").read_bytes() == payload(200_000, 2)


def _holder(lock_kind: str, key: str) -> subprocess.Popen[str]:
    """A process that takes a datastage lock, says so, and sleeps until killed."""
    code = (
        "import sys, time; from datastage.core import locks; from datastage.settings import ranks; "
        "cm = locks.hold(ranks.lock_path(sys.argv[1], sys.argv[2]), 'test'); cm.__enter__(); "
        "print('locked', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, lock_kind, key],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_machine_lock_of_a_killed_rank_is_recovered(tmp_path, server):
    data = payload(10_000)
    url = server.add("/a.bin", data)
    manifest = write_manifest(tmp_path, "a", [{"url": url, "sha256": sha256(data)}])
    to = (tmp_path / "fast").absolute()
    holder = _holder("machine", f"get a {to}")
    # The rank says it waits for another datastage process: it found THE lock the holder took
    # (a rank with a lock of its own would not wait, and would download at once).
    waiting = _rank(1, manifest, to, quiet=False)
    assert waiting.stderr is not None
    said: list[str] = []
    while not any("waiting for another datastage process" in line for line in said):
        line = waiting.stderr.readline()
        assert line, f"the rank never waited on the holder's lock: {said}"
        said.append(line)
    released = time.monotonic()
    os.kill(holder.pid, signal.SIGKILL)  # kill -9: no cleanup code runs
    holder.wait()
    out, err = waiting.communicate(timeout=60)
    err = "".join(said) + err
    assert waiting.returncode == 0, err
    assert (Path(out.strip()) / "a.bin").read_bytes() == data
    (got,) = server.requests_for("/a.bin")
    assert got.began > released, "the rank downloaded only once the holder's lock was released"
    assert ranks_lock_files(tmp_path)  # the stale lock file is still there, and harmless


def ranks_lock_files(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "locks").glob("machine-*.lock"))


def test_stage_lock_of_a_killed_process_is_recovered(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.txt").write_text("hello")
    to = (tmp_path / "fast").absolute()
    holder = _holder("stage", str(to / "src"))
    command = [sys.executable, "-m", "datastage", "stage", str(src), "--to", str(to)]
    # While the holder lives, stage times out on THE lock it holds (exit 8, the lock named)
    blocked = run_cli(*command[3:], env={"DATASTAGE_LOCK_TIMEOUT": "0.5"}, cwd=ROOT)
    assert blocked.returncode == 8, blocked.stderr
    assert "\nerror: timed out after 0.5s waiting for another process" in blocked.stderr
    assert str(ranks.lock_path("stage", str(to / "src"))) in blocked.stderr
    assert not (to / "src").exists()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert (to / "src" / "x.txt").read_text() == "hello"


def test_rank_variables_are_read_without_torch(tmp_path):
    assert ranks.distributed({"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"})
    assert not ranks.distributed({"LOCAL_RANK": "0", "WORLD_SIZE": "1"})
    assert not ranks.distributed({})
    assert ranks.local_rank({"RANK": "2"}) == 2
    # A rank's whole get, with an importable ``torch`` that leaves a trace when imported.
    fake = tmp_path / "fake-site" / "torch"
    fake.mkdir(parents=True)
    imported = tmp_path / "torch-was-imported"
    (fake / "__init__.py").write_text(f"open({str(imported)!r}, 'w').close()\n")
    probe = subprocess.run(
        [sys.executable, "-c", "import torch"],
        env={**os.environ, "PYTHONPATH": str(fake.parent)},
        check=True,
    )
    assert probe.returncode == 0 and imported.exists(), "the fake torch is importable"
    imported.unlink()
    data = payload(1000)
    (tmp_path / "a.bin").write_bytes(data)
    manifest = write_manifest(tmp_path, "a", [{"url": "a.bin", "sha256": sha256(data)}])
    path = os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", str(ROOT))])
    rank = _rank(0, manifest, tmp_path / "fast", world=2, PYTHONPATH=path)
    out, err = rank.communicate(timeout=60)
    assert rank.returncode == 0, err
    assert (Path(out.strip()) / "a.bin").read_bytes() == data
    assert not imported.exists(), "datastage imported torch"
