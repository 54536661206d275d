"""zip, with members inflated, written and hashed in parallel worker threads.

Owns: reading zip members into SafeWriter. Every name is checked (and its folders made) in
this thread, in archive order, before any worker writes; each worker then opens its own
ZipFile handle (zlib, crc32, sha256 and file writes all release the GIL), so N cores inflate N
members at once. zipfile stops each member at its declared size and checks its CRC, and
SafeWriter's budget stops the total at what the central directory declares.
"""

from __future__ import annotations

import stat
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

from ..errors import UnsupportedArchive
from .writer import SafeWriter

READ_CHUNK = 1 << 20
_READABLE_METHODS = {
    zipfile.ZIP_STORED,
    zipfile.ZIP_DEFLATED,
    zipfile.ZIP_BZIP2,
    zipfile.ZIP_LZMA,
}
# zip compression methods Python cannot read, by their number in the zip header
_ZIP_METHODS = {9: "Deflate64", 93: "Zstandard", 95: "xz", 97: "WavPack", 98: "PPMd", 99: "AES"}


def declared_size(path: Path) -> Optional[int]:
    try:
        with zipfile.ZipFile(path) as zf:
            return sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return None  # extraction reports the damage


def extract_zip(path: Path, writer: SafeWriter, on_bytes: Callable[[int], None]) -> None:
    try:
        # One ZipFile for every worker: zipfile reads members of a shared handle under its own
        # lock and inflates outside it, so members still inflate in parallel; a handle per
        # thread re-parsed the central directory per thread (seconds and ~100 MB at 300k files).
        with zipfile.ZipFile(path) as zf:

            def member_chunks(info: zipfile.ZipInfo) -> Iterator[bytes]:
                with zf.open(info) as member:
                    while chunk := member.read(READ_CHUNK):
                        yield chunk

            infos = zf.infolist()
            for info in infos:  # every name (and method) is checked before a byte is written
                writer.check_name(info.filename)
                _check_readable(info, writer)
            for info in infos:
                _member(zf, info, writer, member_chunks)
                on_bytes(info.compress_size)
            writer.drain()
    finally:
        writer.abort()


def _check_readable(info: zipfile.ZipInfo, writer: SafeWriter) -> None:
    """Encryption and methods zipfile cannot inflate (Windows writes Deflate64 for big files)
    are UnsupportedArchive up front, not zipfile's RuntimeError/NotImplementedError mid-way."""
    if info.flag_bits & 0x1:
        raise UnsupportedArchive(
            f"{writer.archive}: member {info.filename!r} is encrypted; "
            "password-protected zips are not supported"
        )
    if info.compress_type not in _READABLE_METHODS:
        method = _ZIP_METHODS.get(info.compress_type, f"method {info.compress_type}")
        raise UnsupportedArchive(
            f"{writer.archive}: member {info.filename!r} is compressed with {method}, "
            "which Python's zipfile cannot read",
            hint="re-pack it as a standard zip (deflate) or a tar.gz",
        )


def _member(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    writer: SafeWriter,
    member_chunks: Callable[[zipfile.ZipInfo], Iterator[bytes]],
) -> None:
    unix_mode = info.external_attr >> 16
    kind = stat.S_IFMT(unix_mode)
    if info.is_dir():
        writer.directory(info.filename)
    elif kind == stat.S_IFLNK:
        writer.symlink(info.filename, zf.read(info).decode("utf-8", "surrogateescape"))
    elif kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
        writer.special(info.filename, "device or FIFO")
    else:
        mode = unix_mode or 0o644
        writer.file_later(info.filename, lambda: member_chunks(info), mode, _mtime(info))


def _mtime(info: zipfile.ZipInfo) -> Optional[float]:
    try:
        return time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return None
