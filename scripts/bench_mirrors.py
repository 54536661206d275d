"""What choosing mirrors by speed buys, and what the probe costs, on loopback servers.

    python scripts/bench_mirrors.py [--mb 32] [--runs 3] [-j 16]

Three hosts serve the same pinned file: a "far" one listed first (per-connection rate capped
at ``--slow`` MB/s, 150 ms latency), a dead one (closed port), and a near one (``--fast``
MB/s). ``datastage fetch`` runs with ``--mirror listed`` (the manifest's order, as before) and
with ``--mirror auto`` (the default: probe, then the fastest). A last row fetches a file whose
URLs are on two equally fast hosts: the probe's cost when there is nothing to win. The
"burst" rows: a host that sends 256 KiB at once (what the probe sees) then ``--crawl`` MB/s
(nginx ``limit_rate_after``), against a steady ``--steady`` MB/s host, for a ``--burst-mb``
file (one connection): ``auto`` starts on the burst host and must leave it. Each run is a
fresh subprocess with an empty cache (so a fresh probe); best of ``--runs``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import payload, write_manifest  # noqa: E402
from tests.servers.http_server import FileServer  # noqa: E402

MB = 1_000_000
CONNECTIONS = 16


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(urls: list[str], data: bytes, mirror: str, runs: int) -> float:
    env = {**os.environ, "DATASTAGE_QUIET": "1", "DATASTAGE_MIRROR": mirror}
    best = float("inf")
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            entry = {
                "url": urls[0],
                "mirrors": urls[1:],
                "name": "f.bin",
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "extract": False,
            }
            manifest = write_manifest(folder, "bench", [entry])
            args = [sys.executable, "-m", "datastage", "fetch", str(manifest)]
            began = time.perf_counter()
            cache = ["--cache", str(folder / "cache"), "-j", str(CONNECTIONS)]
            subprocess.run([*args, *cache], check=True, env=env, capture_output=True)
            best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=32)
    parser.add_argument("--slow", type=float, default=2.0, help="far host, MB/s per connection")
    parser.add_argument("--fast", type=float, default=40.0, help="near host, MB/s")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--burst-mb", type=int, default=8, help="file of the burst rows, MiB")
    parser.add_argument("--crawl", type=float, default=0.1, help="burst host after 256 KiB, MB/s")
    parser.add_argument("--steady", type=float, default=2.0, help="steady host, MB/s")
    parser.add_argument("-j", "--connections", type=int, default=16)
    opts = parser.parse_args()
    global CONNECTIONS
    CONNECTIONS = opts.connections
    data = payload(opts.mb * 1024 * 1024, seed=3)
    far = FileServer(rate=opts.slow * MB, latency=0.15)
    near = FileServer(rate=opts.fast * MB)
    twin = FileServer(rate=opts.fast * MB)
    urls = [
        far.add("/f.bin", data),
        f"http://127.0.0.1:{closed_port()}/f.bin",
        near.add("/f.bin", data),
    ]
    rows = [
        ("far host first, --mirror listed", fetch(urls, data, "listed", opts.runs)),
        ("far host first, --mirror auto", fetch(urls, data, "auto", opts.runs)),
    ]
    equal = [near.add("/g.bin", data), twin.add("/g.bin", data)]
    rows.append(("two equal hosts, --mirror listed", fetch(equal, data, "listed", opts.runs)))
    rows.append(("two equal hosts, --mirror auto", fetch(equal, data, "auto", opts.runs)))
    small = payload(opts.burst_mb * 1024 * 1024, seed=4)
    bursty = FileServer(rate=opts.crawl * MB, burst=256 * 1024)
    steady = FileServer(rate=opts.steady * MB)
    burst = [bursty.add("/b.bin", small), steady.add("/b.bin", small)]
    rows.append(("burst host first, --mirror listed", fetch(burst, small, "listed", 1)))
    rows.append(("burst host first, --mirror auto", fetch(burst, small, "auto", opts.runs)))
    print(
        f"burst rows: {opts.burst_mb} MiB; burst host 256 KiB then {opts.crawl:g} MB/s, "
        f"steady host {opts.steady:g} MB/s"
    )
    print(
        f"{opts.mb} MiB pinned file, -j {opts.connections}; "
        f"far {opts.slow:g} MB/s/conn, near {opts.fast:g} MB/s/conn"
    )
    print(f"| {'case':34} | seconds |")
    print(f"|{'-' * 36}|---------|")
    for name, seconds in rows:
        print(f"| {name:34} | {seconds:7.2f} |")
    for server in (far, near, twin, bursty, steady):
        server.close()


if __name__ == "__main__":
    main()
