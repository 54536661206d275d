"""Review of the fetch branch (issue 15, issue 17 item 2): attacks with real loopback servers."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import datastage
from tests.conftest import file_manifest, payload, skip_unmountable
from tests.servers.http_server import FileServer
from tests.servers.relay import Relay

MIB = 1 << 20


@pytest.fixture
def read_only_view(request: pytest.FixtureRequest) -> Iterator:
    """``read_only_view(folder)``: the folder bind-mounted read-only onto itself (a read-only
    mount, which root cannot write either); skipped where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(folder: Path) -> Path:
        for command in (
            ["mount", "--bind", str(folder), str(folder)],
            ["mount", "-o", "remount,bind,ro", str(folder)],
        ):
            done = subprocess.run(command, capture_output=True)
            if done.returncode != 0:
                skip_unmountable(request.node, "bind-mount read-only", done.stderr)
            mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_server_taking_2_connections_is_not_backed_off_by_16(tmp_path, monkeypatch, capsys):
    """16 connections against a server that answers 503 beyond 2: the extra connections give
    their pieces back at once (no backoff holding a piece, no retry lines), and the file comes
    whole. Before, each extra connection backed off with its piece in hand (2 MB at 20 MB/s
    per connection: 11.9 s with 16 connections, 4.0 s with 2; 39 refused requests)."""
    monkeypatch.setenv("DATASTAGE_MIN_SEGMENT", "256K")
    monkeypatch.setenv("DATASTAGE_PROBE", "0")
    monkeypatch.setenv("DATASTAGE_CONNECTIONS", "16")
    monkeypatch.setenv("DATASTAGE_BACKOFF", "0.2")
    limited = FileServer(connection_limit=2)
    try:
        data = payload(4 * MIB)
        url = limited.add("/f.bin", data, rate=8_000_000)
        (blob,) = datastage.fetch(str(file_manifest(tmp_path, url, data)))
        assert blob.read_bytes() == data
        err = capsys.readouterr().err
        refused = [r for r in limited.log if r.status == 503]
        assert refused, "the limit was hit"
        assert "retry" not in err, err
        assert len(refused) <= 16 + 2, len(refused)
    finally:
        limited.close()


@pytest.mark.parametrize("read_only", ["to", "cache"])
def test_a_staged_url_on_a_read_only_mount_still_answers(
    tmp_path, server, read_only_view, read_only
):
    """``get URL --to X`` where X (or the cache) is a read-only mount holding the staged data:
    the path, exit 0, no request, as for a manifest or a registry name. The writability check
    that comes before the network refused it (exit 2: cannot write there)."""
    url = server.add("/ds.tar.gz", _tar_gz({"top/a.txt": b"hello" * 1000}))
    to = tmp_path / "out"
    cli = [sys.executable, "-m", "datastage", "get", url, "--to", str(to)]
    first = subprocess.run(cli, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert first.returncode == 0, first.stderr
    staged = Path(first.stdout.strip())
    assert (staged / "a.txt").read_bytes() == b"hello" * 1000
    read_only_view(to if read_only == "to" else Path(os.environ["DATASTAGE_CACHE"]))
    requests = len(server.log)
    again = subprocess.run(cli, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert again.returncode == 0, again.stderr
    assert Path(again.stdout.strip()) == staged
    assert len(server.log) == requests


@pytest.mark.parametrize("connections", ["1", "4"])
def test_a_server_restart_mid_download_is_waited_for(tmp_path, monkeypatch, connections):
    """A host that served bytes and then refuses connections for a few seconds (a restart, a
    network drop) is not a dead host: the shipped backoff carries the download over it, to
    exit 0 with the right bytes. The quick fail-fast tries for a dead host (0.5 + 1 s) ended
    it, exit 4, where ef6f16c's backoff survived."""
    monkeypatch.delenv("DATASTAGE_RETRIES")  # the shipped patience (6 tries, 1 s doubling)
    monkeypatch.delenv("DATASTAGE_BACKOFF")
    monkeypatch.setenv("DATASTAGE_MIN_SEGMENT", "256K")
    monkeypatch.setenv("DATASTAGE_PROBE", "0")
    monkeypatch.setenv("DATASTAGE_CONNECTIONS", connections)
    server = FileServer(rate=2_000_000)
    relay = Relay(server.port)
    try:
        data = payload(4 * MIB)
        server.add("/f.bin", data)
        url = f"http://127.0.0.1:{relay.port}/f.bin"
        proc = subprocess.Popen(
            [sys.executable, "-m", "datastage", "fetch", str(file_manifest(tmp_path, url, data))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        while server.sent < MIB and proc.poll() is None:
            time.sleep(0.01)
        relay.down()
        time.sleep(2.5)  # longer than the quick tries for a dead host
        relay.up()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert Path(out.strip()).read_bytes() == data
        assert "connection refused" in err or "connection reset" in err, "the outage was seen"
    finally:
        relay.close()
        server.close()
