"""The shape of a segmented download on a throttling host (issue 15): enough connections to fill
the host's bandwidth, each asking for its next piece before the current one ends. Asserted from
the loopback server's request log (order of events, counts), never from durations."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import file_manifest, payload, run_cli
from tests.servers.http_server import FileServer

MIB = 1 << 20


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASTAGE_MIN_SEGMENT", "1M")
    monkeypatch.setenv("DATASTAGE_PROBE", "0")


def test_a_throttled_host_gets_more_than_8_connections_by_default(tmp_path, small_pieces):
    """8 connections at 20 MB/s cannot fill a 200 MB/s host: the default goes beyond."""
    data = payload(32 * MIB)
    # 1 MB/s per connection: every 1 MiB piece lasts a second, so the connections overlap even
    # on a loaded machine that opens them slowly (at 20 MB/s a CI runner under load saw 7).
    server = FileServer(rate=1_000_000)
    try:
        url = server.add("/big.bin", data)
        done = run_cli("fetch", str(file_manifest(tmp_path, url, data)))
        assert done.returncode == 0, done.stderr
        assert Path(done.stdout.strip()).read_bytes() == data
        assert server.max_active > 8, server.max_active
    finally:
        server.close()


def test_the_next_piece_is_asked_for_before_the_current_one_ends(tmp_path, small_pieces):
    """With a far-away host (latency on every answer), each connection's next request is on
    its way while its current piece still arrives: more requests are open at once than there
    are connections, and the file is exact."""
    data = payload(8 * MIB)
    server = FileServer(rate=4_000_000, latency=0.2)
    try:
        url = server.add("/big.bin", data)
        done = run_cli("fetch", str(file_manifest(tmp_path, url, data)), "-j", "2")
        assert done.returncode == 0, done.stderr
        assert Path(done.stdout.strip()).read_bytes() == data
        # Answers sent whole (a piece cut short by a split or a takeover ends late, at the
        # server's next write): without asking ahead, a connection's next request comes
        # only after its current answer was read to the end.
        gets = [r for r in server.requests_for("/big.bin") if r.status == 206 and _whole(r)]
        events = sorted([(r.began, 1) for r in gets] + [(r.ended, -1) for r in gets])
        open_now = most = 0
        for _, step in events:
            open_now += step
            most = max(most, open_now)
        assert most > 2, (most, [(r.range, r.began, r.ended) for r in gets])
    finally:
        server.close()


def _whole(request) -> bool:  # type: ignore[no-untyped-def]
    first, _, last = request.range.removeprefix("bytes=").partition("-")
    return bool(last) and request.sent == int(last) - int(first) + 1
