#!/usr/bin/env python3
"""Benchmark: downloads over loopback, datastage side by side with aria2c, wget and curl.

    python scripts/bench_download.py                       # 64 MB and 400 MB, capped
    python scripts/bench_download.py --big                 # ... and 2 GB
    python scripts/bench_download.py --latency 100         # 100 ms before every answer
    python scripts/bench_download.py --before /tmp/ef6f16c # also a "datastage (before)" row
    python scripts/bench_download.py --only datastage,aria2c --sizes 400M

Generates random files on disk (never in memory) and serves them from the test file server
(``tests/servers/http_server.py``) capped like a throttling dataset host: ``--rate`` per
connection (20 MB/s) and ``--total`` for the whole server (200 MB/s), optionally ``--latency``
ms before each answer (Colab to a European host: ~100). Sizes and rates are decimal (1 MB =
10^6 bytes), so the *floor* is size / total cap: 2.0 s for 400 MB at 200 MB/s.

Each tool downloads each file into a fresh folder ``--repeats`` times (median). The table
shows wall time, throughput, time / aria2c's time (<= 1.0 means datastage is at least as
fast), time / floor, and peak RSS (the child's VmHWM). datastage's time includes the
interpreter start-up, verifying the sha256 and committing to its cache; the peers verify
nothing. Targets (issue 15): datastage <= 1.0x ``aria2c -x8 -s8`` at every size, with and
without latency; <= 1.15x the floor from 400 MB up; peak RSS < 150 MB.

The machine may be shared: the load average (``uptime``) is printed before and after; compare
ratios from one run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers.http_server import FileServer  # noqa: E402

MB = 1_000_000
UNITS = {"K": 10**3, "M": 10**6, "G": 10**9}
ARIA2 = "aria2c -x8 -s8"


def parse_size(text: str) -> int:
    text = text.strip().upper().rstrip("B")
    factor = UNITS.get(text[-1:], 1)
    return int(float(text[:-1] if factor > 1 else text) * factor)


def make_file(path: Path, size: int) -> str:
    """Random bytes, written in 8 MiB blocks; returns the sha256."""
    digest = hashlib.sha256()
    block = 8 << 20
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(block, left))
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run ``argv``; return (wall seconds, peak RSS in bytes). Raises on a non-zero exit.

    The peak is the child's own ``VmHWM`` polled from /proc (``ru_maxrss`` would also count
    the Python parent's pages the child had between fork and exec).
    """
    began = time.monotonic()
    # cwd "/": `python -m` puts the working folder first on sys.path, ahead of PYTHONPATH, so
    # run from a checkout the "before" row would import the checkout's datastage
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd="/"
    )
    status_file = Path(f"/proc/{proc.pid}/status")
    peak = 0
    while True:
        try:
            for line in status_file.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except (OSError, ValueError):
            pass
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - began
    code = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if code != 0:
        raise RuntimeError(f"{argv[0]} exited {code}: {err.strip()[-500:]}")
    return elapsed, peak


class Tool:
    def __init__(
        self,
        name: str,
        binary: Optional[str],
        run: Callable[[str, Path], list[str]],
        pythonpath: Optional[str] = None,
    ):
        self.name, self.binary, self.run, self.pythonpath = name, binary, run, pythonpath


def tools(sha256: str, size: int, before: Optional[str]) -> list[Tool]:
    def datastage(url: str, out: Path) -> list[str]:
        manifest = out / "bench.toml"
        manifest.write_text(
            'name = "bench"\n[[files]]\n'
            f'url = "{url}"\nsha256 = "{sha256}"\nsize = {size}\nextract = false\n'
        )
        return [sys.executable, "-m", "datastage", "fetch", str(manifest), "-q"]

    out_file = "file.bin"
    aria2 = ["aria2c", "-x8", "-s8", "-q", "--allow-overwrite=true", "-o", out_file]
    found = [
        Tool("datastage", sys.executable, datastage, str(ROOT)),
        Tool(ARIA2, shutil.which("aria2c"), lambda u, o: [*aria2, "-d", str(o), u]),
        Tool(
            "curl", shutil.which("curl"), lambda u, o: ["curl", "-sf", "-o", str(o / out_file), u]
        ),
        Tool("wget", shutil.which("wget"), lambda u, o: ["wget", "-q", "-O", str(o / out_file), u]),
    ]
    if before:
        found.insert(1, Tool("datastage (before)", sys.executable, datastage, before))
    return found


def run_tools(
    url: str, all_tools: list[Tool], work: Path, repeats: int, sha256: str
) -> dict[str, tuple[float, int]]:
    """Each repeat runs every tool once, in turn: a change of load hits them all alike."""
    times: dict[str, list[float]] = {}
    peaks: dict[str, int] = {}
    present = [t for t in all_tools if t.binary is not None]
    for tool in all_tools:
        if tool.binary is None:
            print(f"  {tool.name}: not installed, skipped", file=sys.stderr)
    for i in range(repeats):
        for tool in present:
            out = work / f"run-{tool.name.split()[0]}-{i}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            env = dict(os.environ, DATASTAGE_CACHE=str(out / "cache"))
            for name in list(env):
                if name.lower() in ("http_proxy", "all_proxy", "https_proxy"):
                    env.pop(name)
            if tool.pythonpath:
                env["PYTHONPATH"] = tool.pythonpath
            elapsed, rss = timed(tool.run(url, out), env)
            times.setdefault(tool.name, []).append(elapsed)
            peaks[tool.name] = max(peaks.get(tool.name, 0), rss)
            if tool.name.startswith("datastage"):
                blob = out / "cache" / "blobs" / "sha256" / sha256[:2] / sha256
                assert blob.stat().st_size > 0, "datastage left no verified blob"
            shutil.rmtree(out)
            print(f"  {tool.name} run {i + 1}: {elapsed:.2f}s", file=sys.stderr)
    return {name: (statistics.median(t), peaks[name]) for name, t in times.items()}


def table(label: str, results: dict[str, tuple[float, int]], size: int, floor: float) -> None:
    aria = results.get(ARIA2, (0.0, 0))[0]
    print(f"\n{label}  (floor {floor:.2f} s)")
    print(f"  {'tool':<20}{'s':>8}{'MB/s':>9}{'/aria2c':>9}{'/floor':>8}{'peak RSS':>11}")
    for name, (seconds, rss) in results.items():
        vs_aria = f"{seconds / aria:.2f}x" if aria else "-"
        print(
            f"  {name:<20}{seconds:>8.2f}{size / seconds / MB:>9.1f}{vs_aria:>9}"
            f"{seconds / floor:>7.2f}x{rss / MB:>8.0f} MB"
        )


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="64M,400M", help="comma-separated (default 64M,400M; 0: none)"
    )
    parser.add_argument("--big", action="store_true", help="add 2G to the sizes")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--rate", default="20M", help="per-connection cap, bytes/s (20M)")
    parser.add_argument("--total", default="200M", help="whole-server cap, bytes/s (200M)")
    parser.add_argument("--latency", type=float, default=0.0, help="ms before each answer")
    parser.add_argument("--before", default=None, help="PYTHONPATH of an older datastage")
    parser.add_argument("--work", default=None, help="folder for the files and downloads")
    parser.add_argument("--only", default="", help="tools by first word: datastage,aria2c")
    parser.add_argument("--skip", default="", help="tools by first word, e.g. wget,curl")
    args = parser.parse_args()
    sizes = [size for size in (parse_size(s) for s in args.sizes.split(",") if s) if size > 0]
    if args.big:
        sizes.append(2000 * MB)
    rate, total = parse_size(args.rate), parse_size(args.total)
    only = {n for n in args.only.split(",") if n}
    skip = {n for n in args.skip.split(",") if n}

    print(f"load average before: {load()}, {os.cpu_count()} CPUs", file=sys.stderr)
    began_load = load()
    work = Path(tempfile.mkdtemp(prefix="datastage-bench-", dir=args.work))
    server = FileServer(rate=rate, total_rate=total, latency=args.latency / 1000 or None)
    reports = []
    try:
        for size in sizes:
            source = work / "file.bin"
            print(f"generating {size / MB:.0f} MB ...", file=sys.stderr)
            sha256 = make_file(source, size)
            chosen = [
                t
                for t in tools(sha256, size, args.before)
                if t.name.split()[0] not in skip and (not only or t.name.split()[0] in only)
            ]
            url = server.add(f"/file-{size}.bin", source)
            label = (
                f"{size / MB:.0f} MB, {rate / MB:.0f} MB/s per connection, "
                f"{total / MB:.0f} MB/s in all, {args.latency:.0f} ms latency"
            )
            print(label, file=sys.stderr)
            reports.append((label, run_tools(url, chosen, work, args.repeats, sha256), size))
            source.unlink()
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nmedian of {args.repeats}; load average before {began_load}, after {load()}")
    for label, results, size in reports:
        table(label, results, size, size / total)


if __name__ == "__main__":
    main()
