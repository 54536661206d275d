"""Side-by-side timings of datastage's sources against the tools users run today.

    python scripts/bench_sources.py [--mb 64]

* Hugging Face: ``datastage fetch hf://...`` vs ``huggingface_hub.hf_hub_download``, both
  against the loopback Hub of the tests (tests/servers/hf_server.py) via HF_ENDPOINT.
* Local/mounted copy: ``datastage fetch /path`` vs ``cp`` of the same file.

Each tool runs in a fresh subprocess with an empty cache; the best of ``--runs`` is printed with
the ratio (peer time / datastage time; > 1 means datastage is faster). Loopback numbers measure
overhead (hashing, bookkeeping), not network behaviour.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import payload  # noqa: E402
from tests.servers.hf_server import HFServer  # noqa: E402


def timed(args: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(args, check=True, env=env, capture_output=True)
    return time.perf_counter() - began


def best(runs: int, make: object) -> float:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as scratch:
            times.append(make(Path(scratch)))  # type: ignore[operator]
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    data = payload(opts.mb * 1024 * 1024, seed=1)
    env = {**os.environ, "DATASTAGE_QUIET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    py = sys.executable

    hub = HFServer()
    hub.add_repo("bench/speech", {"big.bin": data}, lfs={"big.bin"})
    env["HF_ENDPOINT"] = hub.base
    ours = best(opts.runs, lambda d: timed(
        [py, "-m", "datastage", "fetch", "hf://datasets/bench/speech/big.bin", "--cache", str(d)],
        env))  # fmt: skip
    peer_code = (
        "import sys; from huggingface_hub import hf_hub_download; "
        "hf_hub_download('bench/speech', 'big.bin', repo_type='dataset', cache_dir=sys.argv[1])"
    )
    peer = best(opts.runs, lambda d: timed([py, "-c", peer_code, str(d)], env))
    hub.close()
    print(f"hf   {opts.mb} MB: datastage {ours:.2f}s  hf_hub_download {peer:.2f}s  "
          f"ratio {peer / ours:.2f}")  # fmt: skip

    with tempfile.TemporaryDirectory() as mount:
        src = Path(mount) / "big.bin"
        src.write_bytes(data)
        ours = best(opts.runs, lambda d: timed(
            [py, "-m", "datastage", "fetch", str(src), "--cache", str(d)], env))  # fmt: skip
        cp = shutil.which("cp") or "cp"
        peer = best(opts.runs, lambda d: timed([cp, str(src), str(d / "big.bin")], env))
    print(f"local {opts.mb} MB: datastage {ours:.2f}s  cp {peer:.2f}s  ratio {peer / ours:.2f}")


if __name__ == "__main__":
    main()
