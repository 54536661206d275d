"""Streamable formats extract from a non-seekable pipe (the hook for extract-while-downloading),
each through the decompressor the policy in datastage/extract/streams.py picks: pigz/lbzip2
when on PATH (else the standard library), lzma for xz, zstandard for zst."""

from __future__ import annotations

import cProfile
import functools
import os
import pstats
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Optional

import pytest

from datastage.extract import Format, SafeWriter, extract_stream
from datastage.extract.streams import BACKEND_ENV, THREADS
from tests.archives import compress, make_tar
from tests.conftest import payload, sha256

FILES = {f"d/f{i}.bin": payload(200_000 + i, seed=i) for i in range(8)}
#: The external tools datastage pipes through, by compression.
TOOLS = {"gz": "pigz", "bz2": "lbzip2"}
#: What decodes each compression in Python: a stdlib module file, or a library's C method.
PYTHON_DECODERS = {"gz": "gzip", "bz2": "bz2", "xz": "lzma", "zst": "zstandard"}


def _pipe_of(data: bytes):
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as w:
            for i in range(0, len(data), 65536):
                w.write(data[i : i + 65536])

    threading.Thread(target=feed, daemon=True).start()
    return os.fdopen(read_fd, "rb")


@functools.cache
def _archive(compression: Optional[str]) -> bytes:
    return compress(make_tar(list(FILES.items())), compression or "")


@pytest.fixture(params=["tools on PATH", "no tools on PATH"])
def tool_log(request, tmp_path: Path, monkeypatch) -> Optional[Path]:
    """PATH is a folder holding only shims of pigz and lbzip2 that log each run, then exec the
    real tool; or an empty folder. Returns the log (None: no tools)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    if request.param == "no tools on PATH":
        return None
    log = tmp_path / "tools-run.log"
    log.touch()
    for tool in TOOLS.values():
        real = shutil.which(tool, path=os.defpath + ":/usr/local/bin")
        if real is None:
            pytest.skip(f"not tested: the {tool} pipe path ({tool} is not installed)")
        shim = bin_dir / tool
        shim.write_text(f'#!/bin/sh\necho {tool} >> "{log}"\nexec "{real}" "$@"\n')
        shim.chmod(0o755)
    return log


def _expected(compression: Optional[str], backend: str, tools: bool) -> set[str]:
    """The policy: a pipe tool for gz/bz2 when on PATH (and several cores, or forced), unless
    stdlib is forced; a stream never goes to the threaded libraries; else the Python decoder."""
    if compression is None:
        return set()
    pipe_tool = compression in TOOLS and backend != "stdlib" and tools
    if pipe_tool and (THREADS > 1 or backend == "pipe"):
        return {TOOLS[compression]}
    return {PYTHON_DECODERS[compression]}


def _python_decoders(profile: cProfile.Profile) -> set[str]:
    """Which Python decoders really ran, seen by the profiler (file of a function, C method)."""
    found = set()
    for filename, _, function in pstats.Stats(profile).stats:  # type: ignore[attr-defined]
        stem = Path(filename).stem
        if stem in ("gzip", "bz2", "lzma"):
            found.add(stem)
        if "zstandard" in function and "Decompress" in function:
            found.add("zstandard")
    return found


@pytest.mark.parametrize("backend", ["", "stdlib", "pipe", "library"])
@pytest.mark.parametrize("compression", [None, "gz", "bz2", "xz", "zst"])
def test_tar_extracts_from_a_pipe(
    tmp_path: Path, monkeypatch, tool_log: Optional[Path], compression, backend
):
    monkeypatch.setenv(BACKEND_ENV, backend)
    data = _archive(compression)
    record: dict = {}
    out = tmp_path / "out"
    out.mkdir()
    writer = SafeWriter(out, "", "stream.tar", record)
    profile = cProfile.Profile()
    with _pipe_of(data) as stream:
        assert not stream.seekable()
        profile.enable()
        try:
            extract_stream(stream, Format("tar", compression), writer)
        finally:
            profile.disable()
    assert {k: v["sha256"] for k, v in record.items()} == {k: sha256(v) for k, v in FILES.items()}
    assert all((out / k).read_bytes() == v for k, v in FILES.items())
    tools_run = set(tool_log.read_text().split()) if tool_log else set()
    used = tools_run | _python_decoders(profile)
    assert used == _expected(compression, backend, tools=tool_log is not None)


_SEEKABLE_PROBE = """
import sys
from pathlib import Path
from datastage.extract import Format, SafeWriter, extract_stream
record = {}
out = Path(sys.argv[2])
out.mkdir()
with open(sys.argv[1], "rb") as f:
    extract_stream(f, Format("tar", sys.argv[3]), SafeWriter(out, "", "a.tar", record))
print(len(record), *sorted(m for m in ("indexed_bzip2", "rapidgzip") if m in sys.modules))
"""


@pytest.mark.skipif(THREADS < 2, reason="not tested: one core never uses the threaded libraries")
@pytest.mark.parametrize("compression", ["gz", "bz2"])
def test_a_seekable_file_goes_to_the_threaded_library_without_the_tool(
    tmp_path: Path, tool_log: Optional[Path], compression: str
):
    """A cached archive (seekable): pigz/lbzip2 when on PATH, else indexed_bzip2/rapidgzip,
    which datastage imports only when it uses them (seen in a fresh interpreter)."""
    archive = tmp_path / f"a.tar.{compression}"
    archive.write_bytes(_archive(compression))
    code = [sys.executable, "-c", _SEEKABLE_PROBE, str(archive), str(tmp_path / "out"), compression]
    done = subprocess.run(code, capture_output=True, text=True, check=True)
    count, *libraries = done.stdout.split()
    assert int(count) == len(FILES)
    assert all((tmp_path / "out" / k).read_bytes() == v for k, v in FILES.items())
    tools_run = set(tool_log.read_text().split()) if tool_log else set()
    if tool_log is not None:
        assert (tools_run, libraries) == ({TOOLS[compression]}, [])
    else:
        library = {"gz": "rapidgzip", "bz2": "indexed_bzip2"}[compression]
        assert (tools_run, libraries) == (set(), [library])
