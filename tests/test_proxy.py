"""http_proxy / no_proxy through a real loopback forward proxy, for every connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import payload, run_cli, sha256, write_manifest
from tests.servers.proxy import ForwardProxy

MIB = 1024 * 1024


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    p = ForwardProxy()
    yield p
    p.close()


def _manifest(tmp_path: Path, url: str, data: bytes) -> Path:
    entry = {"url": url, "sha256": sha256(data), "extract": False}
    return write_manifest(tmp_path, "p", [entry])


ENV = {"DATASTAGE_MIN_SEGMENT": "256K", "DATASTAGE_CONNECTIONS": "4", "DATASTAGE_PROBE": "0"}


@pytest.mark.parametrize("variable", ["http_proxy", "HTTP_PROXY"])
def test_every_connection_goes_through_the_proxy(tmp_path, server, proxy, variable):
    data = payload(4 * MIB)
    url = server.add("/f.bin", data, drop_after=1_000_000, drop_times=1)
    done = run_cli("fetch", str(_manifest(tmp_path, url, data)), env={**ENV, variable: proxy.url})
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).read_bytes() == data
    through = [r for r in proxy.log if r.url == url]
    assert len(through) == len(server.requests_for("/f.bin")) >= 4, "segments and the retry"
    assert any(r.range for r in through) and through[0].range is None


def test_no_proxy_bypasses_it(tmp_path, server, proxy):
    data = payload(4 * MIB)
    url = server.add("/f.bin", data)
    env = {**ENV, "http_proxy": proxy.url, "no_proxy": "localhost,127.0.0.1"}
    done = run_cli("fetch", str(_manifest(tmp_path, url, data)), env=env)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).read_bytes() == data
    assert not proxy.log and server.requests_for("/f.bin")


def test_a_dead_proxy_is_a_one_line_network_error(tmp_path, server):
    data = payload(MIB)
    url = server.add("/f.bin", data)
    env = {"http_proxy": "http://127.0.0.1:9", "DATASTAGE_RETRIES": "1"}
    done = run_cli("fetch", str(_manifest(tmp_path, url, data)), env=env)
    assert done.returncode == 4
    lines = done.stderr.splitlines()  # each retry said (issue 17), then one error line
    assert lines[-1].startswith("error: ") and "Traceback" not in done.stderr
    assert all(line.startswith("retry ") for line in lines[:-1])
    assert not server.log
