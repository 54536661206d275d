"""Decompressed byte streams, using every core the machine has when a fast backend exists.

Owns: choosing a decompressor for gz/bz2/xz/zst and turning its failures into CorruptArchive.
Every opener takes a binary file object, which need not be seekable (a pipe, a socket, a file
still being downloaded), so the tar path can later consume bytes as they arrive.

Measured on 2 cores (116 MB of WAV, tar.bz2 94 MB / tar.gz 103 MB, read to /dev/null):

    bz2 (stdlib) 5.4 s   indexed_bzip2 (2 threads) 2.2 s   lbzip2 -d pipe 2.1 s
    gzip (stdlib) 0.54 s rapidgzip (2 threads) 0.29 s      pigz -d pipe  0.56 s

and for a whole extraction of the tar.bz2 (parse, write, hash) on the busy shared machine,
lbzip2 through a pipe took 4.8-6.5 s (5.8-7.2 CPU s) where indexed_bzip2 took 6.3-8.7 s
(7.3-8.3 CPU s): decoding in another process keeps it off our GIL. So: bz2 goes to lbzip2
when installed, else indexed_bzip2; gz goes to pigz, else rapidgzip (whose memory grows with
the archive); a non-seekable stream
never goes to the libraries (below); the standard library is the last resort.
``DATASTAGE_DECOMPRESSOR`` = stdlib / pipe / library forces a choice (benchmarks, tests).
rapidgzip lets a gzip file cut short pass without a word, so its output is checked against
the gzip trailer here.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import shutil
import signal
import subprocess
import threading
import zlib
from collections.abc import Iterator
from typing import IO, Any, Optional, cast

from ..core.errors import MissingDependency, install_hint

READ_CHUNK = 1 << 20
THREADS = os.cpu_count() or 1


class ReadStream:
    """A read-only, non-seekable file object: subclasses define ``read``; ``readinto`` (which
    tarfile and io.BufferedReader use) follows from it."""

    def read(self, n: int = -1) -> bytes:
        raise NotImplementedError

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


class BadData(Exception):
    """A decompressor rejected its input (the caller names the archive)."""


#: Exceptions that mean "the compressed bytes are bad" from every backend we use.
DECOMPRESSION_ERRORS: tuple[type[BaseException], ...] = (
    BadData,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    gzip.BadGzipFile,
)

PR_SET_PDEATHSIG = 1


def child_dies_with_us() -> None:
    """preexec_fn: the kernel kills the child when its parent dies (Linux; no-op elsewhere).
    For every tool extraction runs: lbzip2/pigz here, 7z and bsdtar (external.py)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


_PIPE_TOOLS = {"bz2": ("lbzip2", "-d", "-c", "-n"), "gz": ("pigz", "-d", "-c", "-p")}
#: Environment switch for benchmarks and tests: "stdlib", "pipe", "library" or "" (auto).
BACKEND_ENV = "DATASTAGE_DECOMPRESSOR"


@contextlib.contextmanager
def decompressed(raw: IO[bytes], compression: Optional[str], what: str) -> Iterator[IO[bytes]]:
    """Yield a readable stream of ``raw`` decompressed; always closes what it opened."""
    if compression is None:
        yield raw
        return
    stream = _open(raw, compression)
    try:
        yield stream
    finally:
        with contextlib.suppress(Exception):
            stream.close()


def _open(raw: IO[bytes], compression: str) -> IO[bytes]:
    choice = os.environ.get(BACKEND_ENV, "")
    if compression in ("bz2", "gz") and choice != "stdlib":
        tool = _PIPE_TOOLS[compression]
        pipe_ok = shutil.which(tool[0]) is not None and (THREADS > 1 or choice == "pipe")
        # bz2: lbzip2 in its own process beat indexed_bzip2 inside a busy Python process;
        # gz: so did pigz (rapidgzip's memory grows with the archive: 453 MB peak RSS staging a
        # 279 MB tar.gz of 100k files, 117 MB through pigz, for the same CPU time)
        if pipe_ok and choice != "library":
            return cast(IO[bytes], _PipeReader(raw, [*tool, str(THREADS)]))
        if THREADS > 1:
            fast = _parallel_library(raw, compression)
            if fast is not None:
                return fast
        if pipe_ok:
            return cast(IO[bytes], _PipeReader(raw, [*tool, str(THREADS)]))
    if compression == "gz":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if compression == "bz2":
        return bz2.BZ2File(raw, "rb")  # type: ignore[return-value]
    if compression == "xz":
        return lzma.LZMAFile(raw, "rb")  # type: ignore[return-value]
    if compression == "zst":
        return zstd_reader(raw)
    raise ValueError(f"unknown compression {compression!r}")


def _parallel_library(raw: IO[bytes], compression: str) -> Optional[IO[bytes]]:
    # Both libraries read a Python file object from their own threads. A pipe fed by another
    # Python thread can then deadlock on the GIL (seen with indexed_bzip2), so they only get
    # seekable files; a stream goes to lbzip2/pigz or the standard library.
    if not _seekable(raw):
        return None
    try:
        if compression == "bz2":
            import indexed_bzip2

            reader = indexed_bzip2.open(raw, parallelization=THREADS)
        else:
            import rapidgzip

            trailer = _gzip_trailer(raw)
            reader = _CheckedGzip(rapidgzip.open(raw, parallelization=THREADS), raw, trailer)
    except ImportError:
        return None
    return cast(IO[bytes], _RuntimeErrorsAsCorrupt(reader))


def _seekable(raw: IO[bytes]) -> bool:
    try:
        return bool(raw.seekable())
    except (AttributeError, ValueError, OSError):
        return False


def _gzip_trailer(raw: IO[bytes]) -> bytes:
    start = raw.tell()
    raw.seek(-8, os.SEEK_END)
    trailer = raw.read(8)
    raw.seek(start)
    return trailer


class _CheckedGzip:
    """rapidgzip accepts a gzip file cut short (no trailer) without a word: check it ourselves.

    The last 8 bytes of a gzip file are the CRC32 and length (mod 2**32) of its last member.
    For the usual one-member file they must match all the output. A multi-member file (bgzip,
    ``cat a.gz b.gz``) does not match; then the standard library re-reads the input to decide.
    """

    def __init__(self, inner: Any, raw: IO[bytes], trailer: bytes) -> None:
        self._inner = inner
        self._raw = raw
        self._start = raw.tell()
        self._trailer = trailer
        self._crc = 0
        self._size = 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._inner.read(n)
        if data:
            self._crc = zlib.crc32(data, self._crc)
            self._size += len(data)
        else:
            self._check()
        return data

    def _check(self) -> None:
        expected = self._crc.to_bytes(4, "little") + (self._size & 0xFFFFFFFF).to_bytes(4, "little")
        if self._trailer == expected:
            return
        self._raw.seek(self._start)
        try:
            with gzip.GzipFile(fileobj=self._raw, mode="rb") as f:
                while f.read(READ_CHUNK):
                    pass
        except (EOFError, OSError, zlib.error) as e:
            raise BadData(f"gzip data ends early or is damaged: {e}") from e

    def close(self) -> None:
        self._inner.close()


def zstd_reader(raw: IO[bytes]) -> IO[bytes]:
    try:
        import zstandard
    except ImportError:
        raise MissingDependency(
            "zstandard is needed for .zst archives", hint=install_hint("zstd")
        ) from None
    return cast(IO[bytes], _RuntimeErrorsAsCorrupt(_ZstdStream(raw), zstandard.ZstdError))


class _ZstdStream:
    """zstd frames one after another (``zstd -T0`` and ``cat`` make several), checked for an
    end cut short, which zstandard's stream_reader lets pass in silence.

    Input goes in ZSTD_FEED bytes at a time: output per step is then at most ~32768 times that
    (zstd's best ratio), which bounds memory whatever the file.
    """

    ZSTD_FEED = 2048

    def __init__(self, raw: IO[bytes]) -> None:
        import zstandard

        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._in_frame = False
        self._pending = memoryview(b"")
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        want = READ_CHUNK if n is None or n < 0 else n
        while self._buffered < want and not self._eof:
            self._step()
        data = b"".join(self._chunks)
        self._chunks = [data[want:]] if len(data) > want else []
        self._buffered = max(0, len(data) - want)
        return data[:want]

    def _step(self) -> None:
        if not self._pending:
            self._pending = memoryview(self._raw.read(READ_CHUNK))
            if not self._pending:
                if self._in_frame:
                    raise BadData("zstd data ends in the middle of a frame (truncated)")
                self._eof = True
                return
        feed, self._pending = self._pending[: self.ZSTD_FEED], self._pending[self.ZSTD_FEED :]
        self._in_frame = True
        out = self._obj.decompress(feed)
        self._chunks.append(out)
        self._buffered += len(out)
        if self._obj.eof:  # a frame ended: what follows is the next frame
            rest = bytes(self._obj.unused_data) + bytes(self._pending)
            self._pending = memoryview(rest)
            self._obj = self._dctx.decompressobj()
            self._in_frame = False

    def close(self) -> None:
        pass


class _RuntimeErrorsAsCorrupt(ReadStream):
    """indexed_bzip2/rapidgzip raise RuntimeError (a C++ essay) or ValueError (CRC) on bad data."""

    def __init__(self, inner: Any, error: Any = (RuntimeError, ValueError)) -> None:
        self._inner = inner
        self._error = error

    def read(self, n: int = -1) -> bytes:
        try:
            data: bytes = self._inner.read(n)
        except self._error as e:
            raise BadData(_first_line(e)) from e
        return data

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> _RuntimeErrorsAsCorrupt:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PipeReader(ReadStream):
    """Decompress through a system tool: a thread feeds ``raw`` in, we read its stdout."""

    def __init__(self, raw: IO[bytes], argv: list[str]) -> None:
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=child_dies_with_us,
        )
        self._argv0 = argv[0]
        self._feed_error: Optional[BaseException] = None
        self._feeder = threading.Thread(target=self._feed, args=(raw,), daemon=True)
        self._feeder.start()

    def _feed(self, raw: IO[bytes]) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            while chunk := raw.read(READ_CHUNK):
                stdin.write(chunk)
        except BrokenPipeError:
            pass  # the tool stopped early; its exit status tells why
        except BaseException as e:
            self._feed_error = e
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def read(self, n: int = -1) -> bytes:
        assert self._proc.stdout is not None
        data = self._proc.stdout.read(n) if n >= 0 else self._proc.stdout.read()
        if not data:
            self._check_exit()
        return data

    def _check_exit(self) -> None:
        self._feeder.join()
        if self._feed_error is not None:
            raise self._feed_error
        assert self._proc.stderr is not None
        code = self._proc.wait()
        if code != 0:
            message = self._proc.stderr.read().decode("utf-8", "replace").strip()
            raise BadData(f"{self._argv0}: {_first_line(message)}")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for f in (self._proc.stdout, self._proc.stderr):
            if f is not None:
                f.close()


def _first_line(e: object) -> str:
    text = str(e).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(e).__name__
