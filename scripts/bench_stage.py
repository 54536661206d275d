"""Benchmark: `datastage stage` and `pack` of a many-file folder on a slow (Drive-like) FUSE mount.

    python scripts/bench_stage.py                      # LJSpeech shape: 13,100 files, ~200 KB each
    python scripts/bench_stage.py --files 1000 10000 100000 --mean-size 4000   # the sweep

Builds a corpus at run time (never committed) like LJSpeech-1.1 (wavs/*.wav with sizes spread
around --mean-size, plus metadata.csv), and serves it through a read-only FUSE passthrough
(tests/servers/slowfs.py) that sleeps --latency on every open and caps the mount's total
bandwidth at --rate bytes/s, like a Google Drive mount. Then, for each --files N, times each
command into an empty folder on local disk, with its peak RSS (from wait4):

    cp -r MOUNT/corpus                       the usual way (the baseline of the ratios)
    rsync -a / tar c | tar x                 the other usual ways, when installed
    datastage stage MOUNT/corpus             many files at once, verified, resumable
    tar -cf OUT MOUNT/corpus                 the peer of pack
    datastage pack MOUNT/corpus              one tar + manifest, read ahead by threads
    datastage get OUT/<name>.toml            the packed archive: one sequential read + extract

and prints seconds, time per file, peak RSS and speed-up against ``cp -r``. Needs FUSE
(/dev/fuse, fusepy, libfuse2; root in a container). The machine is shared: numbers are noisy, so
compare ratios from one run.
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
PER_FOLDER = 500  # LJSpeech is one folder; folders of 500 keep 100k-file runs realistic


def make_corpus(folder: Path, files: int, mean: int, seed: int = 0) -> int:
    """WAV-like files (a 44-byte header and random samples) named like LJSpeech; total bytes."""
    rng = random.Random(seed)
    block = os.urandom(1 << 20)
    total = 0
    lines = []
    for i in range(files):
        size = max(1_000, int(rng.gauss(mean, mean * 0.35)))
        start = rng.randrange(0, len(block) - 1)
        body = (block[start:] + block)[: size - 44]
        name = f"LJ{1 + i // PER_FOLDER:03d}-{i % PER_FOLDER:04d}"
        wavs = folder / "wavs" / f"{1 + i // PER_FOLDER:03d}"
        if i % PER_FOLDER == 0:
            wavs.mkdir(parents=True)
        (wavs / f"{name}.wav").write_bytes(b"RIFF" + bytes(40) + body)
        lines.append(f"{name}|transcript {i}|transcript {i}")
        total += size
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    return total


def timed(
    label: str, args: list[str], env: dict[str, str], shell: bool = False
) -> tuple[float, int]:
    """Seconds and peak RSS (MB) of one command; exits on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        args if not shell else ["sh", "-c", args[0]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed ({proc.returncode}): {err.strip()[-500:]}")
    return seconds, usage.ru_maxrss // 1024


def run_scale(a: argparse.Namespace, files: int, work: Path) -> None:
    backing = work / "drive"
    total = make_corpus(backing / "LJSpeech-1.1", files, a.mean_size)
    env = {**os.environ, "DATASTAGE_QUIET": "1", "DATASTAGE_CONFIG": str(work / "cfg.toml")}
    env.pop("DATASTAGE_PERSISTENT_CACHE", None)
    env["PYTHONPATH"] = str(ROOT)
    ds = [sys.executable, "-m", "datastage"]
    print(
        f"\n{files} files, {total / 1e6:.0f} MB; mount: {a.latency * 1000:g} ms per open, "
        f"{a.rate / 1e6:g} MB/s; datastage: {a.workers} threads",
        flush=True,
    )
    out = work / "out"
    out.mkdir()
    with SlowMount(backing, work / "mnt", open_latency=a.latency, rate=a.rate) as mnt:
        src = mnt / "LJSpeech-1.1"
        runs: dict[str, tuple[list[str], bool]] = {
            "cp -r": (["cp", "-r", str(src), str(out / "cp")], False),
        }
        if shutil.which("rsync") and not a.cp_only:
            runs["rsync -a"] = (["rsync", "-a", f"{src}/", str(out / "rsync")], False)
        if not a.cp_only:
            tar_c = f"tar -C '{mnt}' -cf - LJSpeech-1.1"
            runs["tar c | tar x"] = (
                [f"mkdir -p '{out}/x' && {tar_c} | tar -C '{out}/x' -xf -"],
                True,
            )
        stage = [*ds, "stage", str(src), "--to", str(out / "st"), "--workers", str(a.workers)]
        runs["datastage stage"] = (stage, False)
        if not a.cp_only:
            tar_cf = f"tar -C '{mnt}' -cf '{out}/x.tar' LJSpeech-1.1"
            runs["tar -cf (pack peer)"] = ([tar_cf], True)
        runs["datastage pack"] = ([*ds, "pack", str(src), "--to", str(backing)], False)
        results: dict[str, tuple[float, int]] = {}

        def show(label: str, seconds: float, rss: int) -> None:
            base = results["cp -r"][0]
            print(
                f"  {label:26} {seconds:8.2f} {seconds / files * 1000:8.3f} {rss:7d} MB "
                f"{base / seconds:8.1f}x",
                flush=True,
            )

        print(f"  {'command':26} {'seconds':>8} {'ms/file':>8} {'peak RSS':>9} {'vs cp -r':>9}")
        for label, (args, shell) in runs.items():
            run_env = {**env, "DATASTAGE_CACHE": str(work / f"cache-{len(results)}")}
            results[label] = timed(label, args, run_env, shell)
            show(label, *results[label])
        # the packed archive, served by the same slow mount: what every later session runs
        get = [*ds, "get", str(mnt / "ljspeech-1.1.toml"), "--to", str(out / "get")]
        show(
            "datastage get (packed)",
            *timed("get", get, {**env, "DATASTAGE_CACHE": str(work / "c")}),
        )
        # re-runs: nothing changed (a listing), then one file added (a listing + one copy)
        show("stage again, unchanged", *timed("stage again", stage, env))
        (backing / "LJSpeech-1.1" / "added.wav").write_bytes(os.urandom(a.mean_size))
        show("stage again, 1 file added", *timed("stage again", stage, env))
        base = results["cp -r"][0]
        stage_ratio = base / results["datastage stage"][0]
        pack_ratio = base / results["datastage pack"][0]
        print(
            f"  targets (>= 3x cp -r): stage {stage_ratio:.1f}x "
            f"{'met' if stage_ratio >= 3 else 'NOT met'}; pack {pack_ratio:.1f}x "
            f"{'met' if pack_ratio >= 3 else 'NOT met'}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--files", type=int, nargs="+", default=[LJSPEECH_FILES],
                        help="file counts to run (a sweep: --files 1000 10000 100000)")  # fmt: skip
    parser.add_argument("--mean-size", type=int, default=MEAN_WAV, help="mean file size, bytes")
    parser.add_argument("--latency", type=float, default=0.005, help="seconds per open")
    parser.add_argument("--rate", type=float, default=100e6, help="mount bandwidth, bytes/s")
    parser.add_argument("--workers", type=int, default=32, help="datastage stage threads")
    parser.add_argument(
        "--cp-only", action="store_true", help="only cp -r as a peer (a quicker 100k-file point)"
    )
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (local disk)")
    a = parser.parse_args()
    reason = available()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    for files in a.files:
        work = Path(tempfile.mkdtemp(prefix="bench-stage-", dir=a.work))
        try:
            run_scale(a, files, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
