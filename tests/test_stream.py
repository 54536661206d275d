"""Streamable formats extract from a non-seekable pipe (the hook for extract-while-downloading)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from datastage.extract import Format, SafeWriter, extract_stream
from datastage.extract.streams import BACKEND_ENV
from tests.archives import compress, make_tar
from tests.conftest import payload, sha256

FILES = {f"d/f{i}.bin": payload(200_000 + i, seed=i) for i in range(8)}


def _pipe_of(data: bytes):
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as w:
            for i in range(0, len(data), 65536):
                w.write(data[i : i + 65536])

    threading.Thread(target=feed, daemon=True).start()
    return os.fdopen(read_fd, "rb")


@pytest.mark.parametrize("backend", ["", "stdlib", "pipe", "library"])
@pytest.mark.parametrize("compression", [None, "gz", "bz2", "xz", "zst"])
def test_tar_extracts_from_a_pipe(tmp_path: Path, monkeypatch, compression, backend):
    if backend == "pipe" and compression not in ("gz", "bz2"):
        pytest.skip("only gz and bz2 have pipe tools")
    monkeypatch.setenv(BACKEND_ENV, backend)
    data = compress(make_tar(list(FILES.items())), compression or "")
    record: dict = {}
    writer = SafeWriter(tmp_path, "", "stream.tar", record)
    with _pipe_of(data) as stream:
        assert not stream.seekable()
        extract_stream(stream, Format("tar", compression), writer)
    assert {k: v["sha256"] for k, v in record.items()} == {k: sha256(v) for k, v in FILES.items()}
    assert all((tmp_path / k).read_bytes() == v for k, v in FILES.items())
