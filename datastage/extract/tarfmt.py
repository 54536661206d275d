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
    # "r:" over a forward-only reader, not "r|": tarfile's stream mode copies the rest of its
    # read buffer on every read (three per member), which cost more than the member itself.
    forward = ForwardReader(stream)
    with tarfile.open(fileobj=forward, mode="r:") as tar:  # type: ignore[call-overload]
        while (member := tar.next()) is not None:
            _member(tar, member, writer)
            tar.members.clear()  # tarfile keeps every header otherwise: ~200 MB at 300k files


class ForwardReader:
    """A non-seekable stream as tarfile's "r:" mode needs it: ``tell`` and forward ``seek``
    (reading and dropping the bytes between), each read copying only what it returns."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._buf = b""
        self._at = 0  # offset of the next unread byte in _buf
        self._pos = 0  # offset of the next unread byte in the stream

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            rest = self._buf[self._at :] + self._raw.read()
            self._buf, self._at = b"", 0
            self._pos += len(rest)
            return rest
        end = self._at + n
        if end <= len(self._buf):
            data = self._buf[self._at : end]
            self._at = end
        else:
            parts = [self._buf[self._at :]]
            need = n - len(parts[0])
            self._buf, self._at = b"", 0
            while need > 0:
                chunk = self._raw.read(max(need, READ_CHUNK))
                if not chunk:
                    break
                if len(chunk) > need:
                    parts.append(chunk[:need])
                    self._buf, self._at = chunk, need
                    break
                parts.append(chunk)
                need -= len(chunk)
            data = b"".join(parts)
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self._pos + offset if whence == 1 else -1
        if target < self._pos:
            raise OSError(f"cannot seek backwards in a stream (to {offset}, whence {whence})")
        while self._pos < target:
            if not self.read(min(target - self._pos, READ_CHUNK)):
                break  # tarfile's next read sees the end and reports the truncation
        return self._pos

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return True


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo, writer: SafeWriter) -> None:
    if member.isreg():
        if member.size <= WHOLE_MEMBER and member.sparse is None:
            # read straight from the stream: extractfile builds two file objects per member
            tar.fileobj.seek(member.offset_data)  # type: ignore[union-attr]
            data = tar.fileobj.read(member.size)  # type: ignore[union-attr]
            if len(data) != member.size:
                raise tarfile.ReadError(f"unexpected end of data in {member.name!r}")
            writer.file_later(member.name, lambda: (data,), member.mode, member.mtime, len(data))
            return
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
