"""Segmented downloads over real loopback HTTP: ranges, resume after kill -9, stalls, fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import datastage
from datastage.core.digests import Digest
from datastage.core.errors import UsageError
from datastage.core.progress import Reporter
from datastage.obtain.cache import Cache
from datastage.obtain.download import download
from datastage.resolve.manifest import FileEntry
from datastage.settings import config
from tests.conftest import payload, run_cli, sha256, write_manifest
from tests.procs import kill9, wait_for
from tests.servers.http_server import FileServer

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split from 2 MiB (8 x 256 KiB) so small fixtures exercise the segmented path."""
    monkeypatch.setenv("DATASTAGE_MIN_SEGMENT", "256K")
    monkeypatch.setenv("DATASTAGE_PROBE", "0")
    monkeypatch.setenv("DATASTAGE_CONNECTIONS", "4")


def _manifest(tmp_path: Path, url: str, data: bytes, name: str = "one", **extra: object) -> Path:
    entry = {"url": url, "sha256": sha256(data), "size": len(data), "extract": False, **extra}
    return write_manifest(tmp_path, name, [entry])


def _ranges(log) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    out = []
    for r in log:
        start, _, end = r.range.removeprefix("bytes=").partition("-")
        out.append((int(start), int(end)))
    return out


def test_big_file_comes_in_ranged_segments(tmp_path, server):
    data = payload(4 * MIB + 1234)
    url = server.add("/big.bin", data)
    (blob,) = datastage.fetch(str(_manifest(tmp_path, url, data)))
    assert blob.read_bytes() == data
    log = server.requests_for("/big.bin")  # in the order the answers ended
    (first,) = [r for r in log if r.range is None]
    rest = [r for r in log if r.range]
    assert first.status == 200
    assert len(rest) >= 3, "the other segments come over their own connections"
    assert all(r.status == 206 and r.if_range for r in rest)
    for start, end in _ranges(rest):
        assert 0 < start <= end < len(data)


def test_small_file_uses_one_connection(tmp_path, server):
    data = payload(MIB)
    url = server.add("/small.bin", data)
    (blob,) = datastage.fetch(str(_manifest(tmp_path, url, data)))
    assert blob.read_bytes() == data
    assert [r.range for r in server.requests_for("/small.bin")] == [None]


def test_connections_flag_of_one_means_one_stream(tmp_path, server):
    data = payload(4 * MIB)
    url = server.add("/big.bin", data)
    done = run_cli("fetch", str(_manifest(tmp_path, url, data)), "-j", "1")
    assert done.returncode == 0, done.stderr
    assert [r.range for r in server.requests_for("/big.bin")] == [None]


def test_a_fast_single_connection_is_left_alone(tmp_path, server, monkeypatch):
    monkeypatch.setenv("DATASTAGE_PROBE", "0.25")
    data = payload(4 * MIB)
    url = server.add("/big.bin", data)
    (blob,) = datastage.fetch(str(_manifest(tmp_path, url, data)))
    assert blob.read_bytes() == data
    assert [r.range for r in server.requests_for("/big.bin")] == [None]


def test_a_throttled_connection_gets_company_after_the_probe(tmp_path, server, monkeypatch):
    monkeypatch.setenv("DATASTAGE_PROBE", "0.25")
    data = payload(4 * MIB)
    url = server.add("/big.bin", data, rate=1_000_000)
    (blob,) = datastage.fetch(str(_manifest(tmp_path, url, data)))
    assert blob.read_bytes() == data
    log = server.requests_for("/big.bin")  # in the order the answers ended
    rest = [r for r in log if r.range]
    assert len(log) - len(rest) == 1 and len(rest) >= 3
    assert min(start for start, _ in _ranges(rest)) > 0, "what the probe got is kept"


def test_a_connection_dropped_during_the_probe_still_gets_company(tmp_path, server, monkeypatch):
    monkeypatch.setenv("DATASTAGE_PROBE", "0.25")
    data = payload(4 * MIB)
    url = server.add("/big.bin", data, rate=1_000_000, drop_after=100_000, drop_times=1)
    (blob,) = datastage.fetch(str(_manifest(tmp_path, url, data)))
    assert blob.read_bytes() == data
    log = server.requests_for("/big.bin")
    assert sum(1 for r in log if r.range is None) == 1, "never restarted"
    assert sum(1 for r in log if r.range) >= 3, "the resumed stream was split"


def test_a_server_limiting_connections_gets_fewer_not_a_failure(tmp_path, capsys):
    limited = FileServer(connection_limit=2)
    try:
        data = payload(4 * MIB)
        url = limited.add("/big.bin", data, rate=4_000_000)
        (blob,) = datastage.fetch(str(_manifest(tmp_path, url, data)))
        assert blob.read_bytes() == data
        assert any(r.status == 503 for r in limited.log), "the limit was hit"
        assert "continuing big.bin with fewer connections" in capsys.readouterr().err
    finally:
        limited.close()


@pytest.mark.slow
def test_kill_9_resumes_only_the_missing_segments(tmp_path, server, cache_dir):
    data = payload(8 * MIB)
    url = server.add("/big.bin", data, rate=1_000_000)
    manifest = _manifest(tmp_path, url, data, name="big")
    proc = subprocess.Popen(
        [sys.executable, "-m", "datastage", "fetch", str(manifest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    state_path = cache_dir / "partial" / f"sha256-{sha256(data)}.json"

    def saved_progress() -> int:
        try:
            plan = json.loads(state_path.read_text()).get("segments") or []
        except (OSError, ValueError):
            return 0
        return sum(pos - start for start, pos, _ in plan)

    wait_for(lambda: saved_progress() >= 2 * MIB, proc)
    kill9(proc)
    plan = json.loads(state_path.read_text())["segments"]
    missing = [(pos, end - 1) for _, pos, end in plan if pos < end]
    assert missing and sum(b - a + 1 for a, b in missing) < len(data)
    deadline = time.monotonic() + 10
    while server.active and time.monotonic() < deadline:  # the killed run's answers end
        time.sleep(0.01)
    before = len(server.requests_for("/big.bin"))

    server.faults("/big.bin")  # full speed now
    done = run_cli("fetch", str(manifest))
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).read_bytes() == data
    assert "resuming big.bin" in done.stderr
    again = server.requests_for("/big.bin")[before:]
    assert all(r.status == 206 and r.if_range for r in again), again
    asked = _ranges(again)
    for start, end in asked:  # nothing already on disk travels again
        assert any(a <= start and end <= b for a, b in missing), (start, end, missing)
    for a, _ in missing:  # and every missing part was asked for from where it stopped
        assert any(start == a for start, _ in asked), (a, asked)


@pytest.mark.slow
def test_stalled_segment_is_taken_over(tmp_path, server):
    data = payload(4 * MIB)
    url = server.add("/big.bin", data, stall_after=300_000, stall_times=1)
    (blob,) = datastage.fetch(str(_manifest(tmp_path, url, data)))
    assert blob.read_bytes() == data
    log = server.requests_for("/big.bin")
    (first,) = [r for r in log if r.range is None]  # the file is never restarted
    rest = [r for r in log if r.range]
    assert first.sent == 300_000, "the first connection stalled"
    assert any(0 < start < 300_000 + 1 for start, _ in _ranges(rest)), (
        "the stalled bytes were asked for again on another connection"
    )


def test_server_ignoring_ranges_falls_back_to_one_stream(tmp_path, server, capsys):
    data = payload(4 * MIB + 7)
    url = server.add("/big.bin", data, ignore_range=True)
    (blob,) = datastage.fetch(str(_manifest(tmp_path, url, data)))
    assert blob.read_bytes() == data
    assert {r.status for r in server.requests_for("/big.bin")} == {200}
    assert "ignores byte ranges; using one connection" in capsys.readouterr().err


def test_server_ignoring_ranges_with_drops_still_completes(tmp_path, server):
    data = payload(4 * MIB)
    url = server.add("/big.bin", data, ignore_range=True, drop_after=1_500_000, drop_times=2)
    (blob,) = datastage.fetch(str(_manifest(tmp_path, url, data)))
    assert blob.read_bytes() == data


def test_segment_dropped_mid_way_resumes_that_segment(tmp_path, server):
    data = payload(4 * MIB)
    url = server.add("/big.bin", data, drop_after=200_000, drop_times=3)
    (blob,) = datastage.fetch(str(_manifest(tmp_path, url, data)))
    assert blob.read_bytes() == data
    log = server.requests_for("/big.bin")
    assert sum(1 for r in log if r.range is None) == 1, "the file is never restarted"


@pytest.mark.parametrize("size", [MIB + 5, 4 * MIB + 5], ids=["one-stream", "segmented"])
def test_prefix_hook_is_monotonic_and_ends_at_the_size(tmp_path, server, cache_dir, size):
    data = payload(size)
    url = server.add("/f.bin", data, drop_after=700_000, drop_times=1)
    entry = FileEntry(url=url, name="f.bin", digests=(Digest("sha256", sha256(data)),), size=size)
    cache = Cache(cache_dir)
    part, _ = cache.partial_paths(entry)
    seen: list[int] = []

    def on_prefix(n: int) -> None:
        with open(part, "rb") as f:  # "written" means a reader of the .part sees those bytes
            f.seek(max(0, n - 64))
            assert f.read(n - max(0, n - 64)) == data[max(0, n - 64) : n]
        seen.append(n)

    blob = download(entry, cache, config.resolve(), Reporter(quiet=True), on_prefix=on_prefix)
    assert blob.path.read_bytes() == data
    assert seen == sorted(seen) and seen[-1] == size and len(seen) > 2


def test_several_files_at_once_share_one_connection_budget(tmp_path, server, monkeypatch):
    monkeypatch.setenv("DATASTAGE_CONNECTIONS", "3")
    files = {f"/f{i}.bin": payload(300_000, seed=i) for i in range(7)}
    entries = [
        {"url": server.add(path, data, rate=1_000_000), "sha256": sha256(data), "extract": False}
        for path, data in files.items()
    ]
    blobs = datastage.fetch(str(write_manifest(tmp_path, "many", entries)))
    assert [b.read_bytes() for b in blobs] == list(files.values())
    assert server.max_active == 3, "files download in parallel, never beyond the budget"


def test_a_big_file_and_small_ones_together(tmp_path, server, monkeypatch):
    monkeypatch.setenv("DATASTAGE_CONNECTIONS", "3")
    files = {f"/f{i}.bin": payload(300_000, seed=i) for i in range(4)}
    files["/big.bin"] = payload(3 * MIB, seed=9)
    entries = [
        {"url": server.add(path, data, rate=2_000_000), "sha256": sha256(data), "extract": False}
        for path, data in files.items()
    ]
    done = run_cli("get", str(write_manifest(tmp_path, "mixed", entries)), "--to", str(tmp_path))
    assert done.returncode == 0, done.stderr
    staged = tmp_path / "mixed"
    for path, data in files.items():
        assert (staged / path.lstrip("/")).read_bytes() == data
    assert any(r.range for r in server.requests_for("/big.bin")), "the big one was segmented"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("4MiB", 4 * MIB), ("4M", 4_000_000), ("512Ki", 512 * 1024), ("1GiB", 1 << 30), ("100", 100)],
)
def test_min_segment_takes_human_sizes(monkeypatch, raw, expected):
    monkeypatch.setenv("DATASTAGE_MIN_SEGMENT", raw)
    assert config.resolve().min_segment == expected


@pytest.mark.parametrize("name", ["DATASTAGE_MIN_SEGMENT", "DATASTAGE_CONNECTIONS"])
def test_bad_transfer_settings_are_usage_errors(monkeypatch, name):
    monkeypatch.setenv(name, "0")
    with pytest.raises(UsageError, match=f"{name}='0' is not a valid value"):
        config.resolve()
