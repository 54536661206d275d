#!/usr/bin/env python3
"""Joining a split archive from a local folder: datastage vs the shell recipe.

    python scripts/bench_parts.py [--size 400M] [--parts 4] [--runs 3] [--work bench-parts]

A file of ``--size`` random bytes (a stored zip's worth of incompressible data) is cut into
``--parts`` pieces in WORK/dl. Timed, median of ``--runs``, on the same disk:

    shell      md5sum of every part, then `cat parts > joined` and md5sum of the joined file
               (what VoxCeleb's instructions and the toolkits' scripts do)
    datastage  `datastage fetch M --from WORK/dl` into an empty cache: each part's md5 and the
               joined file's md5 + sha256 in one read, temporary file, fsync, rename

``extract = false``, so only the join is timed (staging would add the same extraction to both).
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

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _size(text: str) -> int:
    units = {"K": 10**3, "M": 10**6, "G": 10**9}
    last = text[-1].upper()
    return int(float(text[:-1]) * units[last]) if last in units else int(text)


def _prepare(work: Path, size: int, parts: int) -> Path:
    dl = work / "dl"
    if dl.is_dir():
        shutil.rmtree(dl)
    dl.mkdir(parents=True)
    step = -(-size // parts)
    whole = hashlib.md5(usedforsecurity=False)
    entries = []
    with open("/dev/urandom", "rb") as rnd:
        for i in range(parts):
            data = rnd.read(min(step, size - i * step))
            name = f"big_part{chr(97 + i)}"
            (dl / name).write_bytes(data)
            whole.update(data)
            md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
            entries.append(f'{{ name = "{name}", md5 = "{md5}" }}')
    manifest = work / "big.toml"
    manifest.write_text(
        'name = "big"\naccess = "gated"\nregister = "https://example.org/"\n[[files]]\n'
        f'name = "big.bin"\nextract = false\nmd5 = "{whole.hexdigest()}"\n'
        f"parts = [{', '.join(entries)}]\n"
    )
    return manifest


def _timed(command: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, shell=True, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="400M")
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("bench-parts"))
    args = parser.parse_args()
    work = args.work.resolve()
    manifest = _prepare(work, _size(args.size), args.parts)
    dl, joined, cache = work / "dl", work / "joined.bin", work / "cache"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATASTAGE_QUIET": "1"}
    shell = f"md5sum {dl}/big_part* && cat {dl}/big_part* > {joined} && md5sum {joined}"
    ours = f"{PY} -m datastage fetch {manifest} --from {dl} --cache {cache}"
    rows: dict[str, list[float]] = {"shell (md5sum parts, cat, md5sum)": [], "datastage": []}
    for _ in range(args.runs):
        for path in (joined, cache):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        rows["shell (md5sum parts, cat, md5sum)"].append(_timed(shell, env))
        rows["datastage"].append(_timed(ours, env))
    print(f"{args.size} in {args.parts} parts, median of {args.runs}:")
    for name, times in rows.items():
        print(f"  {name:36} {statistics.median(times):6.2f} s")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
