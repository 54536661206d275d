"""tar (plain, gz, bz2, xz, zst) read as a stream: one pass, no seeking, bounded memory.

Owns: turning tar members into SafeWriter calls. Takes any readable binary file object, so the
same code reads a cached file, a decompressor's pipe or (later) bytes still downloading.
Small members are read here and written + hashed by SafeWriter's worker threads while this
thread parses the next header; large ones stream through in 1 MiB chunks.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import IO

from .writer import SafeWriter

READ_CHUNK = 1 << 20
#: Members up to this size are handed to a worker thread whole.
WHOLE_MEMBER = 8 * 1024 * 1024


def extract_tar_stream(stream: IO[bytes], writer: SafeWriter) -> None:
    with tarfile.open(fileobj=stream, mode="r|", bufsize=READ_CHUNK) as tar:
        while (member := tar.next()) is not None:
            _member(tar, member, writer)
            tar.members.clear()  # tarfile keeps every header otherwise: ~200 MB at 300k files


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo, writer: SafeWriter) -> None:
    if member.isreg():
        f = tar.extractfile(member)
        assert f is not None
        if member.size <= WHOLE_MEMBER:
            data = f.read()
            if len(data) != member.size:
                raise tarfile.ReadError(f"unexpected end of data in {member.name!r}")
            writer.file_later(member.name, lambda: (data,), member.mode, member.mtime, len(data))
        else:
            writer.file(member.name, _chunks(f), member.mode, member.mtime)
    elif member.isdir():
        writer.directory(member.name)
    elif member.issym():
        writer.symlink(member.name, member.linkname)
    elif member.islnk():
        writer.hardlink(member.name, member.linkname)
    elif member.ischr() or member.isblk():
        writer.special(member.name, "device")
    elif member.isfifo():
        writer.special(member.name, "FIFO")
    else:
        writer.special(member.name, f"type {member.type!r}")


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(READ_CHUNK):
        yield chunk
