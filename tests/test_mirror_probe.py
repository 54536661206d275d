"""Mirrors chosen by speed (``--mirror auto``, the default) over real loopback servers of
different speeds: the slow one is not chosen, dead / 404 / HTML hosts are skipped, ``--mirror
HOST`` still forces one, ``info`` shows what was measured, and probes are per host, not per file."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from datastage.obtain.mirrors import PROBE_BYTES
from tests.conftest import payload, run_cli, sha256, write_manifest
from tests.servers.http_server import FileServer

MIB = 1024 * 1024
PROBE_RANGE = f"bytes=0-{PROBE_BYTES - 1}"
SLOW_RATE = 128 * 1024  # bytes/s per connection: 2 MiB would take 16 s from here


@pytest.fixture
def fast() -> Iterator[FileServer]:
    s = FileServer()
    yield s
    s.close()


@pytest.fixture
def slow() -> Iterator[FileServer]:
    s = FileServer(rate=SLOW_RATE)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files of 2 MiB are split (so mirrors could share segments); no wait before splitting."""
    monkeypatch.setenv("DATASTAGE_MIN_SEGMENT", "256K")
    monkeypatch.setenv("DATASTAGE_PROBE", "0")
    monkeypatch.setenv("DATASTAGE_CONNECTIONS", "4")


def _entry(urls: list[str], data: bytes, name: str = "f.bin") -> dict[str, object]:
    return {
        "url": urls[0],
        "mirrors": urls[1:],
        "name": name,
        "sha256": sha256(data),
        "size": len(data),
        "extract": False,
    }


def _get(tmp_path: Path, manifest: Path, *args: str):  # type: ignore[no-untyped-def]
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"), *args)
    assert done.returncode == 0, done.stderr
    return done


def _probes(server: FileServer) -> list[str]:
    """The paths of the probe requests ``server`` received (each answer over: see ``_log``)."""
    return [r.path for r in _log(server) if r.range == PROBE_RANGE]


def _log(server: FileServer) -> list:  # type: ignore[type-arg]
    """The server's requests once every answer is over: a probe left a throttled answer
    running (its reader stopped), and the log is written as answers end."""
    for _ in range(200):
        if not server.active:
            break
        time.sleep(0.05)
    return server.log


def _cache(tmp_path: Path, n: int) -> dict[str, str]:
    """The environment of a run with a cache of its own (nothing cached, nothing measured)."""
    return {"DATASTAGE_CACHE": str(tmp_path / f"cache{n}")}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


class HangUp:
    """A host that accepts connections and closes them at once, counting them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_the_slow_mirror_is_not_chosen(tmp_path, fast, slow):
    data = payload(2 * MIB)
    urls = [slow.add("/f.bin", data), fast.add("/f.bin", data)]  # the slow one listed first
    _get(tmp_path, write_manifest(tmp_path, "ds", [_entry(urls, data)]))
    assert (tmp_path / "out" / "ds" / "f.bin").read_bytes() == data
    assert fast.sent >= len(data), "the fast host served the file"
    assert slow.sent <= PROBE_BYTES, "the slow host served only its probe"
    assert _probes(slow) == ["/f.bin"] and _probes(fast) == ["/f.bin"]
    assert [r.range for r in _log(slow)] == [PROBE_RANGE], "no segment from the slow host"


def test_dead_hosts_are_skipped_after_one_try(tmp_path, fast):
    data = payload(MIB)
    hang_up = HangUp()
    try:
        dead = f"http://127.0.0.1:{_closed_port()}/f.bin"
        urls = [dead, f"http://127.0.0.1:{hang_up.port}/f.bin", fast.add("/f.bin", data)]
        done = _get(tmp_path, write_manifest(tmp_path, "ds", [_entry(urls, data)]))
    finally:
        hang_up.close()
    assert (tmp_path / "out" / "ds" / "f.bin").read_bytes() == data
    assert hang_up.accepted == 1, "the probe was the only try"
    assert "retry" not in done.stderr and "trying the next mirror" not in done.stderr
    assert [r.range for r in fast.log].count(None) == 1, "one download, from the live host"


@pytest.mark.parametrize("fault", ["404", "html"])
def test_a_mirror_answering_404_or_html_is_skipped(tmp_path, fast, slow, fault):
    data = payload(MIB)
    bad = FileServer()
    try:
        bad_url = bad.url("/gone.bin") if fault == "404" else bad.add("/f.bin", data, html=True)
        urls = [bad_url, slow.add("/f.bin", data), fast.add("/f.bin", data)]
        done = _get(tmp_path, write_manifest(tmp_path, "ds", [_entry(urls, data)]))
        assert len(bad.log) == 1, "only the probe asked the bad host"
    finally:
        bad.close()
    assert (tmp_path / "out" / "ds" / "f.bin").read_bytes() == data
    assert "trying the next mirror" not in done.stderr
    assert fast.sent >= len(data)


def test_mirror_host_overrides_the_ranking_and_listed_keeps_the_order(tmp_path, fast, slow):
    data = payload(64 * 1024)
    urls = [fast.add("/f.bin", data), slow.add("/f.bin", data)]
    manifest = write_manifest(tmp_path, "ds", [_entry(urls, data)])
    _get(tmp_path, manifest, "--mirror", f"127.0.0.1:{slow.port}")
    assert [r.range for r in _log(slow)] == [None], "the forced host served it, unprobed"
    assert not fast.log, "no probe when a host is forced"

    fast.log.clear()
    slow.log.clear()
    done = run_cli(
        "fetch", str(manifest), env={"DATASTAGE_MIRROR": "listed", **_cache(tmp_path, 2)}
    )
    assert done.returncode == 0, done.stderr
    assert [r.range for r in fast.log] == [None] and not slow.log, "listed order, no probe"

    fast.log.clear()
    done = run_cli("fetch", str(manifest), env=_cache(tmp_path, 3))
    assert done.returncode == 0, done.stderr
    assert _probes(fast) == ["/f.bin"] and _probes(slow) == ["/f.bin"], "auto probes by default"


def test_info_shows_what_was_measured_without_secrets(tmp_path, fast, slow):
    data = payload(MIB)
    secret_url = fast.add("/f.bin", data).replace("http://", "http://alice:hunter2pw@")
    dead = f"http://127.0.0.1:{_closed_port()}/f.bin"
    manifest = write_manifest(
        tmp_path, "ds", [_entry([dead, slow.add("/f.bin", data), secret_url], data)]
    )
    before = run_cli("info", str(manifest))
    assert before.returncode == 0 and "mirror:" not in before.stdout, "nothing measured yet"
    _get(tmp_path, manifest)

    shown = run_cli("info", str(manifest))
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if line.startswith("mirror:")]
    assert len(lines) == 3
    by_host = {line.split()[1]: line for line in lines}
    assert "failed: connection refused" in by_host[dead.rsplit("/", 1)[0]]
    for server in (fast, slow):
        assert "ttfb " in by_host[server.base] and "/s" in by_host[server.base]

    as_json = json.loads(run_cli("info", str(manifest), "--json").stdout)
    hosts = {h["host"]: h for h in as_json["mirrors"]["hosts"]}
    assert hosts[fast.base]["rate"] > hosts[slow.base]["rate"] > 0
    assert hosts[dead.rsplit("/", 1)[0]]["error"]
    record = (tmp_path / "cache" / "index" / "mirrors.json").read_text()
    assert "hunter2pw" not in record + shown.stdout + json.dumps(as_json)
    assert fast.base in record


def test_one_candidate_or_one_host_makes_no_probe(tmp_path, fast):
    one, two = payload(300_000, seed=1), payload(300_000, seed=2)
    entries = [
        _entry([fast.add("/one.bin", one)], one, "one.bin"),  # a single URL
        _entry([fast.add("/a.bin", two), fast.add("/b.bin", two)], two, "two.bin"),  # one host
    ]
    _get(tmp_path, write_manifest(tmp_path, "ds", entries))
    asked = sorted((r.path, r.range) for r in fast.log)
    assert asked == [("/a.bin", None), ("/one.bin", None)], "each file whole, unprobed"
    assert not (tmp_path / "cache" / "index" / "mirrors.json").exists()


def test_probes_are_per_host_and_reused_across_files_and_runs(tmp_path, fast, slow):
    files = {f"f{i}.bin": payload(200_000, seed=i) for i in range(4)}
    entries = [_entry([slow.add(f"/{n}", d), fast.add(f"/{n}", d)], d, n) for n, d in files.items()]
    manifest = write_manifest(tmp_path, "ds", entries)
    _get(tmp_path, manifest)
    for name, data in files.items():
        assert (tmp_path / "out" / "ds" / name).read_bytes() == data
    assert len(_probes(fast)) == 1 and len(_probes(slow)) == 1, "one probe per host"
    assert fast.sent >= sum(map(len, files.values()))
    assert [r.range for r in _log(slow)] == [PROBE_RANGE]

    # every file cached: a new staging makes no request at all
    before = len(fast.log) + len(slow.log)
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "other"))
    assert done.returncode == 0, done.stderr
    assert len(fast.log) + len(slow.log) == before

    # the files gone from the cache, within the measurements' lifetime: no new probe
    shutil.rmtree(tmp_path / "cache" / "blobs")
    done = run_cli("fetch", str(manifest))
    assert done.returncode == 0, done.stderr
    assert len(_probes(fast)) == 1 and len(_probes(slow)) == 1
