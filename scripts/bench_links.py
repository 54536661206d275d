#!/usr/bin/env python3
"""The checks a staging runs on its finished tree, on a tree the size of a large dataset.

    python scripts/bench_links.py [--files 100000] [--links 10000] [--work bench-links]

Builds WORK/tree: FILES empty files in folders of 100, plus LINKS relative symlinks (half to a
file, half chains through earlier links), and a marker listing them. Then times, best of 3:
- ``links.check_links`` (one scandir pass, memoised resolution): what every staging pays;
- the peer way, ``os.path.realpath`` of every link (what SafeWriter does per archive): the
  kernel walks each chain from scratch, so chains cost their length each time;
- ``ownership.refuse_unless_ours`` on the tree as an existing staging (marker parse + a walk for
  files the marker does not list): what replacing a staging pays, twice.
Leaves WORK for re-runs (--clean removes it). Numbers are wall seconds on a warm page cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datastage.core.names import MARKER
from datastage.stage.links import check_links
from datastage.stage.ownership import refuse_unless_ours


def build(root: Path, n_files: int, n_links: int) -> None:
    files: dict[str, dict[str, object]] = {}
    for i in range(n_files):
        rel = f"d{i // 100:05d}/f{i % 100:02d}.wav"
        if i % 100 == 0:
            (root / rel).parent.mkdir(parents=True)
        (root / rel).touch()
        files[rel] = {"size": 0, "sha256": "0" * 64}
    folders = n_files // 100
    for j in range(n_links):  # chains of up to 20 links, each in the next folder
        rel = f"d{j % folders:05d}/l{j:06d}"
        if j % 20 == 0:
            target = f"f{j % 100:02d}.wav"
        else:
            target = f"../d{(j - 1) % folders:05d}/l{j - 1:06d}"
        os.symlink(target, root / rel)
        files[rel] = {"symlink": target}
    marker = {"format": 1, "name": root.name, "content_key": "bench", "root": "", "files": files}
    (root / MARKER).write_text(json.dumps(marker))


def best(fn: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def realpath_each(root: Path) -> None:
    real = os.path.realpath(root)
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                assert os.path.realpath(path).startswith(real)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--links", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=Path("bench-links"))
    parser.add_argument("--clean", action="store_true")
    args = parser.parse_args()
    root = args.work / "tree"
    if args.clean:
        shutil.rmtree(args.work, ignore_errors=True)
    if not root.exists():
        root.mkdir(parents=True)
        print(f"building {args.files} files and {args.links} links in {root} ...", flush=True)
        build(root, args.files, args.links)
    rows = [
        ("check_links (datastage)", best(lambda: check_links(root))),
        ("realpath of every link (peer)", best(lambda: realpath_each(root))),
        ("refuse_unless_ours (marker + walk)", best(lambda: refuse_unless_ours(root))),
    ]
    print(f"{'check':34} {'seconds':>8}   ({args.files} files, {args.links} links)")
    for name, seconds in rows:
        print(f"{name:34} {seconds:8.3f}")


if __name__ == "__main__":
    main()
