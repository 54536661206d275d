"""Benchmark: staging an LJSpeech-shaped corpus from a slow (Drive-like) FUSE mount.

    sudo python scripts/bench_stage.py --scale 0.1 [--latency 0.005] [--rate 100e6]

Builds a corpus like LJSpeech-1.1 (13,100 WAV-sized files at --scale 1, sizes spread around the
real ~200 KB mean, plus metadata.csv), packs it with ``datastage pack``, and serves both through
a read-only FUSE passthrough (tests/servers/slowfs.py) that sleeps --latency on every open and
caps the mount's total bandwidth at --rate bytes/s, like a Google Drive mount. Then times, each
into an empty folder on local disk:

    cp -r MOUNT/corpus                       the usual way
    rsync -a MOUNT/corpus/                   the other usual way
    datastage stage MOUNT/corpus             many files at once, verified, resumable
    datastage get MOUNT/<name>.toml          the packed archive: one sequential read + extract

and prints seconds and speed-ups against ``cp -r``. The first line, a plain read of the packed
archive, is the floor the mount's bandwidth sets for any one-archive method.
Needs root (FUSE), fusepy and libfuse2.
Numbers on a shared, noisy machine vary; run it a few times.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers.slowfs import SlowMount, available  # noqa: E402

LJSPEECH_FILES = 13_100
MEAN_WAV = 200_000  # bytes: 2.6 GB / 13,100 clips


def make_corpus(folder: Path, files: int, mean: int, seed: int = 0) -> int:
    """WAV-like files (a 44-byte header and random samples) named like LJSpeech; total bytes."""
    rng = random.Random(seed)
    wavs = folder / "wavs"
    wavs.mkdir(parents=True)
    block = os.urandom(1 << 20)
    total = 0
    lines = []
    for i in range(files):
        size = max(2_000, int(rng.gauss(mean, mean * 0.35)))
        start = rng.randrange(0, len(block) - 1)
        body = (block[start:] + block)[: size - 44]
        name = f"LJ{1 + i // 500:03d}-{i % 500:04d}"
        (wavs / f"{name}.wav").write_bytes(b"RIFF" + bytes(40) + body)
        lines.append(f"{name}|transcript {i}|transcript {i}")
        total += size
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    return total


def timed(label: str, args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{label} failed: {done.stderr.strip()[-500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=0.1, help="1.0 = 13,100 files")
    parser.add_argument("--mean-size", type=int, default=MEAN_WAV, help="mean file size, bytes")
    parser.add_argument("--latency", type=float, default=0.005, help="seconds per open")
    parser.add_argument("--rate", type=float, default=100e6, help="mount bandwidth, bytes/s")
    parser.add_argument("--workers", type=int, default=32, help="datastage stage threads")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (local disk)")
    a = parser.parse_args()
    reason = available()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    if not shutil.which("rsync"):
        raise SystemExit("cannot run: rsync is not installed")

    work = Path(tempfile.mkdtemp(prefix="bench-stage-", dir=a.work))
    try:
        backing = work / "drive"
        files = max(10, round(LJSPEECH_FILES * a.scale))
        total = make_corpus(backing / "LJSpeech-1.1", files, a.mean_size)
        env = {**os.environ, "DATASTAGE_QUIET": "1", "DATASTAGE_CONFIG": str(work / "cfg.toml")}
        env.pop("DATASTAGE_PERSISTENT_CACHE", None)
        ds = [sys.executable, "-m", "datastage"]
        subprocess.run([*ds, "pack", str(backing / "LJSpeech-1.1"), "--to", str(backing)],
                       check=True, env=env, cwd=ROOT, capture_output=True)  # fmt: skip
        print(
            f"corpus: {files} files, {total / 1e6:.0f} MB; mount: {a.latency * 1000:g} ms per "
            f"open, {a.rate / 1e6:g} MB/s; datastage stage: {a.workers} threads",
            flush=True,
        )
        results: dict[str, float] = {}
        with SlowMount(backing, work / "mnt", open_latency=a.latency, rate=a.rate) as mnt:
            src = mnt / "LJSpeech-1.1"
            runs = {
                "(floor) cat packed .tar": [
                    "dd",
                    f"if={mnt / 'ljspeech-1.1.tar'}",
                    "of=/dev/null",
                    "bs=8M",
                ],
                "cp -r (folder)": ["cp", "-r", str(src), str(work / "cp")],
                "rsync -a (folder)": ["rsync", "-a", f"{src}/", str(work / "rsync")],
                "datastage stage (folder)": [
                    *ds,
                    "stage",
                    str(src),
                    "--to",
                    str(work / "st"),
                    "--workers",
                    str(a.workers),
                ],
                "datastage get (packed .tar)": [
                    *ds,
                    "get",
                    str(mnt / "ljspeech-1.1.toml"),
                    "--to",
                    str(work / "get"),
                ],
            }
            for label, args in runs.items():
                run_env = {**env, "DATASTAGE_CACHE": str(work / f"cache-{len(results)}")}
                results[label] = timed(label, args, {**run_env, "PYTHONPATH": str(ROOT)})
                print(f"  {label:30} {results[label]:7.2f} s", flush=True)
        base = results["cp -r (folder)"]
        print("\nspeed-up vs cp -r of the folder:")
        for label, seconds in results.items():
            print(f"  {label:30} {base / seconds:6.1f}x")
        ok = (
            base / results["datastage get (packed .tar)"] >= 10,
            base / results["datastage stage (folder)"] >= 3,
        )
        print(f"\ntargets: packed >= 10x: {'met' if ok[0] else 'NOT met'}; "
              f"stage >= 3x: {'met' if ok[1] else 'NOT met'}")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
