#!/usr/bin/env python3
"""Extraction benchmark: `datastage get` from a cached archive vs tar/lbzip2/pigz/unzip/7z.

    python scripts/bench_extract.py [--scale 0.05] [--runs 3] [--work bench-work]
                                    [--formats tar.bz2,tar.gz,zip,7z]

1. makes an LJSpeech-shaped corpus with scripts/make_corpus.py (needs numpy) unless
   WORK/corpus exists, and packs it as tar.bz2 (lbzip2), tar.gz (pigz), zip (zip -6 or Python)
   and 7z (7z a);
2. stages each archive once with `datastage get` so it sits verified in a private cache;
3. per run, in turn: removes the staged folder and times `datastage get` (cache hit: extract,
   hash every file, marker, rename), and times every peer extracting into a fresh folder;
4. prints the median of the runs, each peer's time / datastage's time (> 1: datastage is
   faster), the CPU seconds each used (less noisy than wall time on a shared machine), and
   datastage's peak RSS.

datastage does more than its peers: it also sha256-hashes every file for the completion marker
and checks every member name. Page cache is warm for everyone (the archive was just written).
Peers that are not installed are skipped. Leaves WORK in place for re-runs (--clean to remove).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
TOP = "LJSpeech-1.1"


def run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, float]:
    """Wall time, peak RSS (bytes) and CPU seconds (user + system) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(argv)}\n{proc.stderr.read().decode()}")  # type: ignore[union-attr]
    return elapsed, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def pack(work: Path, fmt: str) -> Path:
    corpus = work / "corpus"
    out = work / f"corpus.{fmt}"
    if out.exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "tar.bz2":
        tool = "lbzip2" if have("lbzip2") else "bzip2"
        run(["tar", "-I", tool, "-cf", str(tmp), TOP], cwd=corpus)
    elif fmt == "tar.gz":
        tool = "pigz" if have("pigz") else "gzip"
        run(["tar", "-I", tool, "-cf", str(tmp), TOP], cwd=corpus)
    elif fmt == "zip":
        if have("zip"):
            run(["zip", "-q", "-6", "-r", str(tmp), TOP], cwd=corpus)
        else:
            run([PY, "-m", "zipfile", "-c", str(tmp), str(corpus / TOP)])
    elif fmt == "7z":
        run(["7z", "a", "-bd", "-t7z", str(tmp), TOP], cwd=corpus)
    os.replace(tmp, out)
    return out


def peers(fmt: str, archive: Path) -> dict[str, list[str]]:
    """Peer name -> command extracting ``archive`` into the current folder ({} placeholders)."""
    a = str(archive)
    table: dict[str, tuple[str | None, list[str]]] = {
        "tar.bz2": {
            "tar xjf": ("tar", ["tar", "xjf", a]),
            "tar -I lbzip2": ("lbzip2", ["tar", "-I", "lbzip2", "-xf", a]),
            "python tarfile": (
                None,
                [PY, "-c", f"import tarfile; tarfile.open({a!r}).extractall('.')"],
            ),
        },
        "tar.gz": {
            "tar xzf": ("tar", ["tar", "xzf", a]),
            "tar -I pigz": ("pigz", ["tar", "-I", "pigz", "-xf", a]),
            "python tarfile": (
                None,
                [PY, "-c", f"import tarfile; tarfile.open({a!r}).extractall('.')"],
            ),
        },
        "zip": {
            "unzip": ("unzip", ["unzip", "-q", a]),
            "python zipfile": (
                None,
                [PY, "-c", f"import zipfile; zipfile.ZipFile({a!r}).extractall('.')"],
            ),
        },
        "7z": {
            "7z x": ("7z", ["7z", "x", "-bd", "-y", a]),
            "py7zr": (
                "py7zr",
                [PY, "-c", f"import py7zr; py7zr.SevenZipFile({a!r}).extractall('.')"],
            ),
        },
    }[fmt]  # type: ignore[assignment]
    out = {}
    for name, (needs, argv) in table.items():
        if needs == "py7zr":
            try:
                import py7zr  # noqa: F401
            except ImportError:
                continue
        elif needs and not have(needs):
            continue
        out[name] = argv
    return out


def manifest_for(work: Path, fmt: str, archive: Path) -> Path:
    digest = hashlib.sha256()
    with open(archive, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    name = "bench-" + fmt.replace(".", "-")
    path = work / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nroot = "{TOP}"\n[[files]]\nurl = "{archive}"\n'
        f'sha256 = "{digest.hexdigest()}"\n'
    )
    return path


def in_fresh_dir(work: Path, argv: list[str]) -> tuple[float, int, float]:
    target = work / "peer-out"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    cwd = os.getcwd()
    os.chdir(target)
    try:
        return timed(argv)
    finally:
        os.chdir(cwd)
        shutil.rmtree(target, ignore_errors=True)


def bench(work: Path, fmt: str, runs: int) -> None:
    archive = pack(work, fmt)
    manifest = manifest_for(work, fmt, archive)
    staged = work / "staged"
    env = {**os.environ, "DATASTAGE_CACHE": str(work / "cache"), "DATASTAGE_QUIET": "1"}
    ours = [PY, "-m", "datastage", "get", str(manifest), "--to", str(staged)]
    run(ours, env=env)  # fetch into the cache once (not timed)
    others = peers(fmt, archive)
    times: dict[str, list[float]] = {"datastage get": [], **{k: [] for k in others}}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    peak = 0
    for _ in range(runs):
        shutil.rmtree(staged / manifest.stem, ignore_errors=True)
        elapsed, rss, used = timed(ours, env)
        times["datastage get"].append(elapsed)
        cpu["datastage get"].append(used)
        peak = max(peak, rss)
        for name, argv in others.items():
            elapsed, _, used = in_fresh_dir(work, argv)
            times[name].append(elapsed)
            cpu[name].append(used)
    shutil.rmtree(staged, ignore_errors=True)
    ref = statistics.median(times["datastage get"])
    size = archive.stat().st_size / 1e6
    print(f"\n{fmt}  ({size:.0f} MB archive, median of {runs}; ratio = peer / datastage)")
    for name, values in times.items():
        med = statistics.median(values)
        extra = f"  peak RSS {peak / 1e6:.0f} MB" if name == "datastage get" else ""
        used = statistics.median(cpu[name])
        print(f"  {name:16s} {med:7.2f} s   x{med / ref:5.2f}   cpu {used:6.2f} s{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=REPO / "bench-work")
    parser.add_argument("--formats", default="tar.bz2,tar.gz,zip,7z")
    parser.add_argument("--clean", action="store_true", help="remove WORK when done")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "corpus" / TOP).exists():
        run(
            [
                PY,
                str(REPO / "scripts" / "make_corpus.py"),
                str(work / "corpus"),
                "--scale",
                str(args.scale),
            ]
        )
    files = sum(1 for _ in (work / "corpus").rglob("*.wav"))
    print(f"corpus: {files} WAV files, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    for fmt in args.formats.split(","):
        if fmt == "7z" and not have("7z"):
            print("\n7z: skipped (no 7z installed to pack the corpus)")
            continue
        bench(work, fmt, args.runs)
    if args.clean:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
