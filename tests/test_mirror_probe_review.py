"""Review of the mirror probe (issue 16): hostile records, odd servers, secrets, proxies.

The record ``index/mirrors.json`` is only a hint: whatever is found under that name (wrong
types, numbers no float holds, deep nesting, a FIFO, a huge file) must never break ``get`` or
``info``; the download goes on as if nothing had been measured."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import payload, run_cli, sha256, write_manifest
from tests.servers.http_server import FileServer

HOST_FIELDS = ("host", "url", "url_sha256", "measured_at", "ttfb", "rate", "error")


@pytest.fixture
def two() -> Iterator[tuple[FileServer, FileServer]]:
    a, b = FileServer(), FileServer()
    yield a, b
    a.close()
    b.close()


def _manifest(tmp_path: Path, urls: list[str], data: bytes) -> Path:
    entry = {
        "url": urls[0],
        "mirrors": urls[1:],
        "name": "f.bin",
        "sha256": sha256(data),
        "size": len(data),
        "extract": False,
    }
    return write_manifest(tmp_path, "ds", [entry])


def _stored(host: str, **over: object) -> dict[str, object]:
    good = {"host": host, "url": host + "/f.bin", "url_sha256": "0" * 64}
    good.update(measured_at=time.time(), ttfb=0.01, rate=1000, error=None, url_specific=False)
    good.update(over)
    return good


def _hostile_records(host: str) -> dict[str, str]:
    """Record texts a damaged or foreign cache may hold, by what is wrong with them."""
    as_json = {
        "measured_at a string": _stored(host, measured_at="yesterday"),
        "rate a string": _stored(host, rate="fast"),
        "ttfb a list": _stored(host, ttfb=[1]),
        "url null": _stored(host, url=None),
        "rate beyond a float": _stored(host, rate=10**400),
        "measured_at infinite": _stored(host, measured_at=float("inf")),  # JSON's Infinity
        "rate NaN": _stored(host, rate=float("nan")),
    }
    texts = {why: json.dumps({"hosts": {host: m}}) for why, m in as_json.items()}
    texts["nested 100,000 deep"] = "[" * 100_000 + "]" * 100_000
    return texts


def test_a_hostile_mirror_record_breaks_neither_info_nor_get(tmp_path, two, datastage_cli):
    data = payload(200_000)
    a, b = two
    manifest = _manifest(tmp_path, [a.add("/f.bin", data), b.add("/f.bin", data)], data)
    for n, (why, text) in enumerate(_hostile_records(a.base).items()):
        cache = tmp_path / f"cache{n}"
        (cache / "index").mkdir(parents=True)
        (cache / "index" / "mirrors.json").write_text(text)
        env = {"DATASTAGE_CACHE": str(cache)}
        shown = datastage_cli("info", str(manifest), env=env)
        assert shown.returncode == 0, f"{why}: {shown.stderr}"
        out = tmp_path / f"out{n}"
        done = datastage_cli("get", str(manifest), "--to", str(out), env=env)
        assert done.returncode == 0, f"{why}: {done.stderr}"
        assert (out / "ds" / "f.bin").read_bytes() == data, why
        record = json.loads((cache / "index" / "mirrors.json").read_text())
        assert set(record["hosts"]) == {a.base, b.base}, f"{why}: replaced by a fresh probe"
        for m in record["hosts"].values():
            assert set(m) >= set(HOST_FIELDS)


def test_a_good_entry_survives_a_bad_neighbour(tmp_path, two, datastage_cli):
    """One damaged host entry is dropped alone: the others are still shown (and reused)."""
    data = payload(1000)
    a, b = two
    manifest = _manifest(tmp_path, [a.add("/f.bin", data), b.add("/f.bin", data)], data)
    record = {"hosts": {a.base: _stored(a.base, rate="fast"), b.base: _stored(b.base, rate=5000)}}
    (tmp_path / "cache" / "index").mkdir(parents=True)
    (tmp_path / "cache" / "index" / "mirrors.json").write_text(json.dumps(record))
    shown = datastage_cli("info", str(manifest))
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if line.startswith("mirror:")]
    assert len(lines) == 1 and b.base in lines[0] and "5.0 kB/s" in lines[0], lines


@pytest.mark.parametrize("kind", ["fifo", "huge"])
def test_a_record_that_is_a_fifo_or_huge_is_not_read(tmp_path, two, kind):
    """A FIFO under the record's name blocked ``get`` and ``info`` for ever (a link to
    /dev/zero filled the memory); a 150 MB one took a gigabyte and half a minute."""
    data = payload(1000)
    a, b = two
    manifest = _manifest(tmp_path, [a.add("/f.bin", data), b.add("/f.bin", data)], data)
    record = tmp_path / "cache" / "index" / "mirrors.json"
    record.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(record)
    else:
        entry = json.dumps(_stored("h", measured_at=time.time()))
        with open(record, "w") as f:  # ~3 MB: over any sane record, quick to parse anyway
            f.write('{"hosts": {' + ",".join(f'"h{i}": {entry}' for i in range(12_000)) + "}}")
    shown = run_cli("info", str(manifest), timeout=20)
    assert shown.returncode == 0, shown.stderr
    assert "mirror:" not in shown.stdout
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"), timeout=20)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "ds" / "f.bin").read_bytes() == data
    assert record.is_file() and record.stat().st_size < 10_000, "a fresh record of two hosts"


class Silent:
    """A host that accepts connections and never answers: a probe of it lasts the whole
    probe time. ``accepted`` is set once a client connected (its probe is under way)."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/f.bin"
        self.base = self.url.rsplit("/", 1)[0]
        self.accepted = threading.Event()
        self.held: list[object] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()


def test_two_gets_sharing_a_cache_keep_each_others_measurements(tmp_path, two):
    """Each process saved the record it had read before probing plus its own hosts: the one
    saving last dropped the other's (``info`` showed half, the next run probed again)."""
    import subprocess
    import sys

    a, b = two
    silent = [Silent(), Silent()]
    procs = []
    try:
        for n, (server, hole) in enumerate(zip((a, b), silent)):
            data = payload(1000, seed=n)
            folder = tmp_path / f"m{n}"
            folder.mkdir()
            manifest = _manifest(folder, [server.add(f"/{n}.bin", data), hole.url], data)
            command = [sys.executable, "-m", "datastage", "get", str(manifest)]
            command += ["--to", str(tmp_path / f"out{n}")]
            procs.append(subprocess.Popen(command, stderr=subprocess.PIPE, text=True))
        for hole in silent:  # both probes under way: both read the record before either saved
            assert hole.accepted.wait(30)
        for p in procs:
            assert p.wait(60) == 0, p.stderr.read() if p.stderr else ""
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            if p.stderr:
                p.stderr.close()
        for hole in silent:
            hole.close()
    record = json.loads((tmp_path / "cache" / "index" / "mirrors.json").read_text())
    assert set(record["hosts"]) == {a.base, b.base, silent[0].base, silent[1].base}


class BurstThenCrawl(FileServer):
    """A host that sends the first ``burst`` bytes of every answer at once, then ``rate``
    bytes per second (nginx's ``limit_rate_after``, a CDN's burst allowance)."""

    def __init__(self, burst: int, rate: float) -> None:
        super().__init__(rate=rate, burst=burst)


def test_a_mirror_fast_only_for_the_probe_does_not_serve_the_whole_file(tmp_path):
    from datastage.obtain.mirrors import PROBE_BYTES

    data = payload(PROBE_BYTES * 3)  # 768 KiB: one connection
    crawl = BurstThenCrawl(burst=PROBE_BYTES, rate=256 * 1024)  # 2 s for the rest
    steady = FileServer(rate=2 * 1024 * 1024)  # 0.4 s for all of it, slower in the probe
    try:
        urls = [crawl.add("/f.bin", data), steady.add("/f.bin", data)]
        done = run_cli("get", str(_manifest(tmp_path, urls, data)), "--to", str(tmp_path / "o"))
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "o" / "ds" / "f.bin").read_bytes() == data
        assert steady.sent >= len(data) // 2, "the steady mirror served most of the file"
        assert "slowed to" in done.stderr and "continuing from" in done.stderr, done.stderr
        # What the crawling host really kept is recorded: the next file goes to the steady one
        # at once (the measurements are fresh: no probe), the crawling host is not even asked.
        more = payload(PROBE_BYTES * 3, seed=7)
        urls = [crawl.add("/g.bin", more), steady.add("/g.bin", more)]
        (tmp_path / "g").mkdir()
        manifest = _manifest(tmp_path / "g", urls, more)
        done = run_cli("get", str(manifest), "--to", str(tmp_path / "g-out"))
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "g-out" / "ds" / "f.bin").read_bytes() == more
        assert crawl.requests_for("/g.bin") == [], "the host that crawled was picked again"
    finally:
        crawl.close()
        steady.close()


def test_a_mirror_that_keeps_a_good_pace_is_not_left(tmp_path):
    """Slower than its own probe (which saw a burst) is no reason to leave a mirror: what
    counts is the next mirror's promise. 1 MiB/s against a 512 KiB/s alternative stays."""
    from datastage.obtain.mirrors import PROBE_BYTES

    data = payload(PROBE_BYTES * 6)  # 1.5 MiB: 1.25 s after the burst
    holds = BurstThenCrawl(burst=PROBE_BYTES, rate=1024 * 1024)
    other = FileServer(rate=512 * 1024)
    try:
        urls = [holds.add("/f.bin", data), other.add("/f.bin", data)]
        done = run_cli("get", str(_manifest(tmp_path, urls, data)), "--to", str(tmp_path / "o"))
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "o" / "ds" / "f.bin").read_bytes() == data
        assert "slowed to" not in done.stderr, done.stderr
        assert holds.sent >= len(data), "the first-ranked mirror served the whole file"
        assert other.sent <= PROBE_BYTES, "the other one only its probe"
    finally:
        holds.close()
        other.close()


def test_an_unpinned_file_left_for_a_faster_mirror_starts_over(tmp_path):
    """An unpinned file is pinned by its first download: the bytes of the mirror that crawled
    must not be spliced with the other mirror's (two servers, same size, other bytes here:
    a splice would be pinned as neither). The file starts over and is the faster mirror's."""
    from datastage.obtain.mirrors import PROBE_BYTES

    theirs, ours = payload(PROBE_BYTES * 4, seed=3), payload(PROBE_BYTES * 4, seed=4)
    crawl = BurstThenCrawl(burst=PROBE_BYTES, rate=256 * 1024)
    steady = FileServer(rate=2 * 1024 * 1024)
    try:
        urls = [crawl.add("/f.bin", theirs), steady.add("/f.bin", ours)]
        entry = {"url": urls[0], "mirrors": urls[1:], "name": "f.bin", "pinned": False}
        manifest = write_manifest(tmp_path, "ds", [{**entry, "extract": False}])
        done = run_cli("get", str(manifest), "--to", str(tmp_path / "o"))
        assert done.returncode == 0, done.stderr
    finally:
        crawl.close()
        steady.close()
    assert "starting over from" in done.stderr, done.stderr
    assert (tmp_path / "o" / "ds" / "f.bin").read_bytes() == ours
    assert f"pinned on first use (size {len(ours)}, sha256:{sha256(ours)})" in done.stderr


@pytest.mark.parametrize("preferred", ["mirror.example.org", " "])
def test_a_mirror_choice_no_url_matches_still_ranks_by_speed(tmp_path, preferred):
    """``--mirror HOST`` with a host none of the file's URLs is on (a typo, or a dataset whose
    files that host does not serve) forced nothing, and silently turned the probe off: the
    listed (here: slow) URL served the file."""
    from datastage.obtain.mirrors import PROBE_BYTES

    data = payload(PROBE_BYTES * 2)
    slow, fast = FileServer(rate=64 * 1024), FileServer()
    try:
        urls = [slow.add("/f.bin", data), fast.add("/f.bin", data)]
        manifest = _manifest(tmp_path, urls, data)
        done = run_cli("get", str(manifest), "--to", str(tmp_path / "o"), "--mirror", preferred)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "o" / "ds" / "f.bin").read_bytes() == data
        assert fast.sent >= len(data), "the fast mirror served the file"
        assert slow.sent < len(data), "the slow one only its probe"
    finally:
        slow.close()
        fast.close()


def test_a_hostile_reason_phrase_reaches_no_terminal(tmp_path):
    """A mirror answering ``404 <ESC>]0;title<BEL><ESC>[2J...``: the probe's reason was stored
    and printed by ``info`` as sent, escape sequences and all (a window title set, a screen
    cleared on the user's terminal)."""
    import socket
    import threading

    def serve(sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 404 \x1b]0;pwned\x07\x1b[2JGone\x1b[31m away\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
            conn.close()

    hostile = socket.socket()
    hostile.bind(("127.0.0.1", 0))
    hostile.listen(8)
    threading.Thread(target=serve, args=(hostile,), daemon=True).start()
    good = FileServer()
    data = payload(1000)
    try:
        urls = [f"http://127.0.0.1:{hostile.getsockname()[1]}/f.bin", good.add("/f.bin", data)]
        manifest = _manifest(tmp_path, urls, data)
        done = run_cli("get", str(manifest), "--to", str(tmp_path / "o"))
        assert done.returncode == 0, done.stderr
        shown = run_cli("info", str(manifest))
    finally:
        hostile.close()
        good.close()
    lines = [line for line in shown.stdout.splitlines() if "failed: HTTP 404" in line]
    assert len(lines) == 1 and "Gone" in lines[0] and "away" in lines[0], shown.stdout
    record = json.loads((tmp_path / "cache" / "index" / "mirrors.json").read_text())
    stored = " ".join(m["error"] or "" for m in record["hosts"].values())
    assert "Gone away" in stored
    for text in (shown.stdout, shown.stderr, done.stderr, stored):
        assert "\x1b" not in text and "\x07" not in text


def test_an_unpinned_file_is_not_pinned_to_another_file_a_fast_mirror_serves(tmp_path):
    """A file without a size or digest is pinned by its first download. With the probe, the
    fastest host served it, even when it announced another size than the manifest's own URL
    (an old release, a truncated copy): that other file became the pin."""
    from datastage.obtain.mirrors import PROBE_BYTES

    data, other = payload(PROBE_BYTES * 2, seed=1), payload(PROBE_BYTES * 2 + 17, seed=2)
    listed, fast = FileServer(rate=1024 * 1024), FileServer()
    try:
        urls = [listed.add("/f.bin", data), fast.add("/f.bin", other)]
        entry = {"url": urls[0], "mirrors": urls[1:], "name": "f.bin", "pinned": False}
        manifest = write_manifest(tmp_path, "ds", [{**entry, "extract": False}])
        done = run_cli("get", str(manifest), "--to", str(tmp_path / "o"))
        assert done.returncode == 0, done.stderr
    finally:
        listed.close()
        fast.close()
    assert (tmp_path / "o" / "ds" / "f.bin").read_bytes() == data
    assert f"pinned on first use (size {len(data)}, sha256:{sha256(data)})" in done.stderr
