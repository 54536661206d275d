#!/usr/bin/env python3
"""End-to-end benchmark: extract while downloading (overlap) vs download, then extract.

    python scripts/bench_overlap.py [--scale 0.05] [--runs 3] [--rate 20M] [--work bench-work]
                                    [--formats tar.gz,tar.bz2]

Over a loopback server capping each connection at ``--rate`` bytes/s (tests/servers), times
for each format, median of ``--runs``:

    download    `datastage fetch URL` into an empty cache (download + verify only)
    extract     `datastage get URL` from a warm cache (extract + hash + marker)
    e2e overlap `datastage get URL` into an empty cache, DATASTAGE_OVERLAP=1
    e2e serial  the same with DATASTAGE_OVERLAP=0 (download, then extract)

and prints e2e / max(download, extract): the issue's target is at most 1.15 for the overlap.
The corpus comes from scripts/make_corpus.py and is packed as bench_extract.py packs it
(WORK is shared with that script).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_extract import PY, pack, run, timed  # noqa: E402

from tests.servers.http_server import FileServer  # noqa: E402


def _size(text: str) -> float:
    units = {"K": 1e3, "M": 1e6, "G": 1e9}
    return float(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else float(text)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="0.05", help="fraction of 13,100 clips (0.05)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", default="20M", help="per-connection cap, bytes/s (20M)")
    parser.add_argument("--work", default="bench-work")
    parser.add_argument("--formats", default="tar.gz,tar.bz2")
    args = parser.parse_args()
    work = Path(args.work).absolute()
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "corpus").exists():
        run([PY, str(ROOT / "scripts" / "make_corpus.py"), "--scale", args.scale,
             str(work / "corpus")])  # fmt: skip
    server = FileServer(rate=_size(args.rate))
    print(f"per-connection cap {args.rate}B/s, median of {args.runs} (shared, noisy machine)")
    print(f"{'format':8} {'MB':>6} {'download':>9} {'extract':>8} {'overlap':>8} {'serial':>8} "
          f"{'ovl/max':>8} {'ser/max':>8}")  # fmt: skip
    try:
        for fmt in args.formats.split(","):
            archive = pack(work, fmt)
            url = server.add(f"/corpus.{fmt}", archive)
            digest = _sha256(archive)
            shutil.rmtree(work / "cache-ex", ignore_errors=True)
            base = ["-m", "datastage"]
            times: dict[str, list[float]] = {k: [] for k in ("dl", "ex", "on", "off")}
            for _ in range(args.runs):
                for key in ("dl", "ex", "on", "off"):
                    cache, to = work / f"cache-{key}", work / f"to-{key}"
                    if key != "ex" or not cache.exists():
                        shutil.rmtree(cache, ignore_errors=True)
                    if key == "ex" and not cache.exists():
                        run([PY, *base, "fetch", url, "--sha256", digest, "-q"],
                            env={**os.environ, "DATASTAGE_CACHE": str(cache)})  # fmt: skip
                    shutil.rmtree(to, ignore_errors=True)
                    env = {**os.environ, "DATASTAGE_CACHE": str(cache),
                           "DATASTAGE_OVERLAP": "0" if key == "off" else "1"}  # fmt: skip
                    if key == "dl":
                        argv = [PY, *base, "fetch", url, "--sha256", digest, "-q"]
                    else:
                        argv = [PY, *base, "get", url, "--sha256", digest, "--name", "corpus",
                                "--to", str(to), "-q"]  # fmt: skip
                    times[key].append(timed(argv, env)[0])
            med = {k: statistics.median(v) for k, v in times.items()}
            bound = max(med["dl"], med["ex"])
            mb = archive.stat().st_size / 1e6
            print(
                f"{fmt:8} {mb:6.0f} {med['dl']:8.2f}s {med['ex']:7.2f}s {med['on']:7.2f}s "
                f"{med['off']:7.2f}s {med['on'] / bound:8.2f} {med['off'] / bound:8.2f}"
            )
    finally:
        server.close()


if __name__ == "__main__":
    main()
