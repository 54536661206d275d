"""Review of the fetch branch (issue 15, issue 17 item 2): attacks with real loopback servers."""

from __future__ import annotations

from pathlib import Path

import pytest

import datastage
from tests.conftest import payload, sha256
from tests.servers.http_server import FileServer

MIB = 1 << 20


def _manifest(tmp_path: Path, url: str, data: bytes, name: str = "f.bin") -> Path:
    path = tmp_path / "ds.toml"
    path.write_text(
        f'name = "ds"\n[[files]]\nurl = "{url}"\nname = "{name}"\n'
        f'sha256 = "{sha256(data)}"\nsize = {len(data)}\nextract = false\n'
    )
    return path


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
        (blob,) = datastage.fetch(str(_manifest(tmp_path, url, data)))
        assert blob.read_bytes() == data
        err = capsys.readouterr().err
        refused = [r for r in limited.log if r.status == 503]
        assert refused, "the limit was hit"
        assert "retry" not in err, err
        assert len(refused) <= 16 + 2, len(refused)
    finally:
        limited.close()
