#!/usr/bin/env python3
"""Extraction benchmark: `datastage get` from a cached archive vs tar/pigz/lbzip2/unzip/7z/bsdtar.

    python scripts/bench_extract.py                       # LJSpeech shape: 13,100 WAVs, ~600 MB
    python scripts/bench_extract.py --files 100000        # 100k files of 1-8 KB, folders of 50
    python scripts/bench_extract.py --sweep 1000,10000,100000,300000
    options: [--runs 3] [--work /work/tmp/bench] [--formats tar.gz,tar.bz2,zip,7z] [--clean]

1. generates the corpus at run time (never committed) in WORK and packs it as tar.gz (pigz),
   tar.bz2 (lbzip2), zip (zip -6) and 7z (7z a);
2. puts each archive in a private datastage cache once (`get`, not timed);
3. per run, in turn: removes the staged folder and times `datastage get` (extract, sha256 of
   every file, file list, marker, rename), then every peer extracting into a fresh folder;
4. prints the median wall time of the runs, datastage / peer (<= 1: datastage is as fast or
   faster), CPU seconds, and peak RSS. With --files/--sweep it also times a repeated `get` of
   the staged folder and `datastage verify` against `find | xargs -0 -P2 sha256sum`.

datastage does more than its peers (hashes every file, checks every name, writes a marker).
The page cache is warm for everyone (the archive was just written). The machine may be shared:
compare ratios within one run, not absolute times across runs. Peers not installed are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
LJ_TOP = "LJSpeech-1.1"
SMALL_TOP = "corpus"
FULL_CLIPS = 13100
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def timed(
    argv: list[str], env: dict[str, str] | None = None, shell: bool = False
) -> tuple[float, int, float]:
    """Wall time, peak RSS (bytes) and CPU seconds (user + system) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, shell=shell
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed ({status}): {argv}\n{proc.stderr.read().decode()}")  # type: ignore[union-attr]
    return elapsed, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


# -- corpora ----------------------------------------------------------------------------------


def make_ljspeech(root: Path, clips: int, seconds: float) -> None:
    """LJSpeech-shaped: speech-like 16-bit WAVs (make_corpus.py), ``seconds`` long on average."""
    sys.path.insert(0, str(REPO / "scripts"))
    import numpy as np
    from make_corpus import clip  # type: ignore[import-not-found]

    rng = np.random.default_rng(1)
    wavs = root / LJ_TOP / "wavs"
    wavs.mkdir(parents=True)
    lines = []
    for i in range(clips):
        ident = f"LJ{i // 300 + 1:03d}-{i % 300 + 1:04d}"
        length = float(np.clip(rng.normal(seconds, seconds / 3), seconds / 6, seconds * 1.6))
        (wavs / f"{ident}.wav").write_bytes(clip(rng, length))
        lines.append(f"{ident}|synthetic|synthetic")
    (root / LJ_TOP / "metadata.csv").write_text("\n".join(lines) + "\n")
    (root / LJ_TOP / "README").write_text("Synthetic LJSpeech-shaped corpus.\n")


def make_small(root: Path, files: int) -> None:
    """``files`` files of 1-8 KB in folders of 50 (LibriSpeech-like), half random, half text."""
    rng = random.Random(1)
    words = b"the of printing in a which was and to art from by with that as were it is".split()
    text = b" ".join(rng.choice(words) for _ in range(8192))
    top = root / SMALL_TOP
    for i in range(files):
        folder = top / f"{i // 2500:03d}" / f"{i // 50:05d}"
        if i % 50 == 0:
            folder.mkdir(parents=True)
        size = rng.randint(1024, 8192)
        start = rng.randrange(len(text) - size)
        (folder / f"{i:07d}.txt").write_bytes(
            os.urandom(size // 2) + text[start : start + size // 2 + 1]
        )


def pack(work: Path, top: str, fmt: str) -> Path:
    corpus = work / "corpus"
    out = work / f"corpus.{fmt}"
    if out.exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "tar.bz2":
        run(["tar", "-I", "lbzip2" if have("lbzip2") else "bzip2", "-cf", str(tmp), top], corpus)
    elif fmt == "tar.gz":
        run(["tar", "-I", "pigz" if have("pigz") else "gzip", "-cf", str(tmp), top], corpus)
    elif fmt == "zip":
        run(["zip", "-q", "-6", "-r", str(tmp), top], corpus)
    elif fmt == "7z":
        run(["7z", "a", "-bd", "-t7z", "-mmt=2", str(tmp), top], corpus)
    os.replace(tmp, out)
    return out


def peers(fmt: str, archive: Path) -> dict[str, list[str]]:
    """Peer name -> command extracting ``archive`` into the current folder."""
    a = str(archive)
    table: dict[str, tuple[str, list[str]]] = {
        "tar.bz2": {
            "tar -I lbzip2": ("lbzip2", ["tar", "-I", "lbzip2", "-xf", a]),
            "bsdtar": ("bsdtar", ["bsdtar", "-xf", a]),
        },
        "tar.gz": {
            "tar -I pigz": ("pigz", ["tar", "-I", "pigz", "-xf", a]),
            "bsdtar": ("bsdtar", ["bsdtar", "-xf", a]),
        },
        "zip": {
            "unzip -q": ("unzip", ["unzip", "-q", a]),
            "bsdtar": ("bsdtar", ["bsdtar", "-xf", a]),
        },
        "7z": {"7z x": ("7z", ["7z", "x", "-bd", "-y", a])},
    }[fmt]  # type: ignore[assignment]
    return {name: argv for name, (needs, argv) in table.items() if have(needs)}


def manifest_for(work: Path, fmt: str, archive: Path, root: str) -> Path:
    digest = hashlib.sha256()
    with open(archive, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    name = "bench-" + fmt.replace(".", "-")
    path = work / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nroot = "{root}"\n[[files]]\nurl = "{archive}"\n'
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


# -- one format -------------------------------------------------------------------------------


def bench(work: Path, fmt: str, top: str, runs: int, extras: bool) -> dict[str, float]:
    """Print one table; return the medians (and datastage's peak RSS as 'rss')."""
    archive = pack(work, top, fmt)
    manifest = manifest_for(work, fmt, archive, top)
    staged = work / "staged"
    env = {**ENV, "DATASTAGE_CACHE": str(work / "cache"), "DATASTAGE_QUIET": "1"}
    ours = [PY, "-m", "datastage", "get", str(manifest), "--to", str(staged)]
    run(ours, env=env)  # into the cache once (not timed)
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
    medians = {k: statistics.median(v) for k, v in times.items()}
    ref = medians["datastage get"]
    size = archive.stat().st_size / 1e6
    print(f"\n{fmt}  ({size:.0f} MB archive, median of {runs}; ratio = datastage / peer)")
    for name, med in medians.items():
        extra = f"  peak RSS {peak / 1e6:.0f} MB" if name == "datastage get" else ""
        ratio = "" if name == "datastage get" else f"x{ref / med:5.2f}"
        used = statistics.median(cpu[name])
        print(f"  {name:22s} {med:7.2f} s  {ratio:6s}  cpu {used:6.2f} s{extra}")
    if extras:
        medians.update(bench_staged(work, manifest, staged / manifest.stem, env, runs))
    shutil.rmtree(staged, ignore_errors=True)
    medians["rss"] = peak
    return medians


def bench_staged(
    work: Path, manifest: Path, folder: Path, env: dict[str, str], runs: int
) -> dict[str, float]:
    """A repeated `get` of the staged folder and `verify` vs find | xargs sha256sum."""
    again = [PY, "-m", "datastage", "get", str(manifest), "--to", str(folder.parent)]
    verify = [PY, "-m", "datastage", "verify", str(manifest), "--to", str(folder.parent)]
    peer = f"cd {folder} && find . -type f -print0 | xargs -0 -P2 -n 5000 sha256sum >/dev/null"
    results: dict[str, list[float]] = {"repeated get": [], "datastage verify": [], "sha256sum": []}
    offline = {**env, "DATASTAGE_OFFLINE": "1"}
    for _ in range(runs):
        results["repeated get"].append(timed(again, offline)[0])
        results["datastage verify"].append(timed(verify, env)[0])
        results["sha256sum"].append(timed(peer, shell=True)[0])  # type: ignore[arg-type]
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"  {'repeated get (staged)':22s} {med['repeated get']:7.2f} s")
    print(
        f"  {'datastage verify':22s} {med['datastage verify']:7.2f} s  "
        f"x{med['datastage verify'] / med['sha256sum']:5.2f} of find|xargs -P2 sha256sum "
        f"({med['sha256sum']:.2f} s)"
    )
    return med


def corpus(work: Path, files: int | None, seconds: float) -> tuple[str, int]:
    """Make WORK/corpus unless it is there; its top folder and file count."""
    top = SMALL_TOP if files else LJ_TOP
    if not (work / "corpus" / top).exists():
        shutil.rmtree(work / "corpus", ignore_errors=True)
        if files:
            make_small(work / "corpus", files)
        else:
            make_ljspeech(work / "corpus", FULL_CLIPS, seconds)
    count = sum(len(names) for _, _, names in os.walk(work / "corpus"))
    return top, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--files", type=int, help="small-file corpus of N files (default: LJSpeech)"
    )
    parser.add_argument("--sweep", help="comma-separated file counts, e.g. 1000,10000,100000")
    parser.add_argument("--seconds", type=float, default=1.1, help="mean WAV length (~600 MB)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/work/tmp/bench-extract"))
    parser.add_argument("--formats", help="default: tar.gz,tar.bz2,zip,7z (tar.gz,zip for --files)")
    parser.add_argument("--clean", action="store_true", help="remove WORK when done")
    args = parser.parse_args()
    counts = [int(n) for n in args.sweep.split(",")] if args.sweep else [args.files]
    default = "tar.gz,zip" if args.sweep or args.files else "tar.gz,tar.bz2,zip,7z"
    formats = (args.formats or default).split(",")
    sweep: list[tuple[int, str, dict[str, float]]] = []
    for files in counts:
        work = (args.work / (f"files-{files}" if files else "ljspeech")).resolve()
        work.mkdir(parents=True, exist_ok=True)
        top, count = corpus(work, files, args.seconds)
        load = os.getloadavg()[0]
        print(f"\n== corpus: {count} files ({top}), {os.cpu_count()} CPUs, load {load:.1f}")
        for fmt in formats:
            if fmt == "7z" and not have("7z"):
                print("\n7z: skipped (no 7z installed to pack the corpus)")
                continue
            sweep.append((count, fmt, bench(work, fmt, top, args.runs, extras=bool(files))))
        if args.clean:
            shutil.rmtree(work)
    if len(counts) > 1:
        print("\nsweep (datastage get; per file = median wall time / files)")
        print(
            f"  {'files':>8s} {'format':7s} {'time':>8s} {'per file':>9s} {'peer':>8s} "
            f"{'ratio':>6s} {'peak RSS':>9s}"
        )
        for count, fmt, med in sweep:
            peer = next((v for k, v in med.items() if k in ("tar -I pigz", "unzip -q")), 0.0)
            ours = med["datastage get"]
            print(
                f"  {count:8d} {fmt:7s} {ours:7.2f}s {ours / count * 1e6:7.0f}us "
                f"{peer:7.2f}s {ours / peer if peer else 0:5.2f}x {med['rss'] / 1e6:7.0f}MB"
            )


if __name__ == "__main__":
    main()
