"""tar (plain, gz, bz2, xz, zst) read as a stream: one pass, no seeking, bounded memory.

Owns: turning tar members into SafeWriter calls. Takes any readable binary file object, so the
same code reads a cached file, a decompressor's pipe or (later) bytes still downloading.
Small members are read here and written + hashed by SafeWriter's worker threads while this
thread parses the next header; large ones stream through in 1 MiB chunks.

Dialects read as bsdtar reads them: GNU sparse members (old GNU, pax 0.0/0.1/1.0) become sparse
files of their real size (holes are seeked over, never written); metadata members that carry
no file (GNU volume label ``V``, Solaris ACL ``A``) are skipped; other unknown vendor types are
regular files, as POSIX says; names that are not UTF-8 are decoded (encodings.py).
"""

from __future__ import annotations

import logging
import re
import tarfile
from collections.abc import Iterator
from tarfile import ReadError
from typing import IO, Any, Union

from .encodings import decode_name
from .writer import SafeWriter

READ_CHUNK = 1 << 20
#: Members up to this size are handed to a worker thread whole.
WHOLE_MEMBER = 8 * 1024 * 1024
#: Longest symlink target accepted (Linux PATH_MAX); a longer one refuses the archive.
MAX_LINK_TARGET = 4096
#: Member types that describe the archive, not a file: skipped, as bsdtar skips them.
METADATA_TYPES = {b"V": "GNU volume label", b"A": "Solaris ACL"}

log = logging.getLogger("datastage.extract")


def extract_tar_stream(stream: IO[bytes], writer: SafeWriter) -> None:
    # "r:" over a forward-only reader, not "r|": tarfile's stream mode copies the rest of its
    # read buffer on every read (three per member), which cost more than the member itself.
    try:
        with tarfile.open(  # type: ignore[call-overload]
            fileobj=ForwardReader(stream), mode="r:", tarinfo=_CheckedTarInfo
        ) as tar:
            while (member := tar.next()) is not None:
                _member(tar, member, writer)
                tar.members.clear()  # tarfile keeps every header otherwise: ~200 MB at 300k files
    except (ValueError, OverflowError, KeyError) as e:
        # tarfile's own parsing of odd headers (a modified sparse map, a bad pax record)
        raise tarfile.ReadError(f"bad tar header: {e}") from e


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
    name = decode_name(member.name, writer.archive)
    if member.type in METADATA_TYPES:
        log.debug("%s: skipped %s member %r", writer.archive, METADATA_TYPES[member.type], name)
    elif member.issparse():
        _sparse(tar, member, name, writer)
    elif member.isreg() or member.type not in _KNOWN_TYPES:
        _regular(tar, member, name, writer)
    elif member.isdir() or member.type == b"D":  # D: a GNU incremental dump's directory
        writer.directory(name)
    elif member.issym():
        writer.symlink(name, _link_target(member, writer))
    elif member.islnk():
        writer.hardlink(name, decode_name(_link_target(member, writer), writer.archive))
    elif member.ischr() or member.isblk():
        writer.special(name, "device")
    elif member.isfifo():
        writer.special(name, "FIFO")
    else:
        writer.special(name, f"type {member.type!r}")


_KNOWN_TYPES = {*tarfile.SUPPORTED_TYPES, b"D", *METADATA_TYPES}
_GNU_MAGIC = b"ustar  \0"
_PAX_RECORD = re.compile(rb"(\d+) [^=\n]+=")


class _CheckedTarInfo(tarfile.TarInfo):
    """tarfile stops reading a pax header at the first malformed record and goes on without a
    word: a damaged header then renames or un-sparses a member (bsdtar reports it). Check
    every record first, then let tarfile parse the same bytes."""

    @classmethod
    def frombuf(cls, buf: Union[bytes, bytearray], encoding: str, errors: str) -> Any:
        """tarfile takes a damaged header after the first for the end of the archive and
        stops without a word (a partial tree, exit 0); bsdtar reports it. So do we. (A block
        of zeros, the real end, and no block at all, a missing end, stay tarfile's.)"""
        try:
            info = super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as e:
            if type(e).__name__ in ("TruncatedHeaderError", "InvalidHeaderError"):
                raise ReadError(f"damaged tar header ({e})") from e
            raise
        if buf[257:265] == _GNU_MAGIC and info.type not in tarfile.GNU_TYPES:
            # a GNU header has no ustar prefix: those bytes hold atime and ctime (GNU tar -g
            # writes them), which tarfile would put in front of the name; bsdtar does not
            prefix = tarfile.nts(bytes(buf[345:500]), encoding, errors)  # type: ignore[attr-defined]
            if prefix and info.name.startswith(prefix + "/"):
                info.name = info.name[len(prefix) + 1 :]
        return info

    def _proc_pax(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        inner = tarfile.fileobj
        buf = inner.read(self._block(self.size))  # type: ignore[union-attr,attr-defined]
        if not _valid_pax(buf[: self.size]):
            raise ReadError(f"malformed pax extended header before member {self.name!r}")
        tarfile.fileobj = _Replay(buf, inner)  # type: ignore[assignment]
        try:
            return super()._proc_pax(tarfile)  # type: ignore[misc,no-any-return]
        finally:
            tarfile.fileobj = inner


def _valid_pax(data: bytes) -> bool:
    """Every record is "LEN key=value\n" with LEN its exact length, up to the end."""
    pos = 0
    while pos < len(data) and data[pos:].strip(b"\0"):
        match = _PAX_RECORD.match(data, pos)
        if not match:
            return False
        end = pos + int(match.group(1))
        if end <= match.end() or end > len(data) or data[end - 1 : end] != b"\n":
            return False
        pos = end
    return True


class _Replay:
    """The bytes already read, served again, then the stream itself."""

    def __init__(self, buf: bytes, inner: Any) -> None:
        self._buf = buf
        self._inner: IO[bytes] = inner

    def read(self, n: int = -1) -> bytes:
        if not self._buf:
            return self._inner.read(n)
        if n < 0:
            data, self._buf = self._buf + self._inner.read(), b""
            return data
        data, self._buf = self._buf[:n], self._buf[n:]
        return data + self._inner.read(n - len(data)) if len(data) < n else data

    def tell(self) -> int:
        return self._inner.tell() - len(self._buf)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _link_target(member: tarfile.TarInfo, writer: SafeWriter) -> str:
    target = member.linkname
    if len(target.encode("utf-8", "surrogateescape")) > MAX_LINK_TARGET:
        raise writer.refuse(member.name, f"link target longer than {MAX_LINK_TARGET} bytes")
    return decode_name(target, writer.archive)


def _regular(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, writer: SafeWriter) -> None:
    if not member.isreg():
        log.debug("%s: member %r of type %r read as a file", writer.archive, name, member.type)
        member.type = tarfile.REGTYPE  # POSIX: an unknown type is read as a regular file
    if member.size <= WHOLE_MEMBER:
        # read straight from the stream: extractfile builds two file objects per member
        tar.fileobj.seek(member.offset_data)  # type: ignore[union-attr]
        data = tar.fileobj.read(member.size)  # type: ignore[union-attr]
        if len(data) != member.size:
            raise tarfile.ReadError(f"unexpected end of data in {member.name!r}")
        writer.file_later(name, lambda: (data,), member.mode, member.mtime, len(data))
        return
    f = tar.extractfile(member)
    assert f is not None
    writer.file(name, _chunks(f), member.mode, member.mtime)


def _sparse(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, writer: SafeWriter) -> None:
    """Write the data regions at their offsets and seek over the holes between them."""
    regions = _checked_map(member)
    f = tar.extractfile(member)
    assert f is not None
    raw = f.raw  # type: ignore[attr-defined]  # tarfile's _FileInFile: seeks within the map
    _allow_holes(writer, name, member.size - sum(n for _, n in regions))
    sink = writer.sink(name, member.mode)
    if sink is None:
        return
    try:
        position = 0
        for offset, length in regions:
            sink.skip(offset - position)
            raw.seek(offset)
            left = length
            while left:
                chunk = raw.read(min(left, READ_CHUNK))
                if not chunk:
                    raise tarfile.ReadError(f"unexpected end of data in {member.name!r}")
                sink.write(chunk)
                left -= len(chunk)
            position = offset + length
        sink.skip(member.size - position)
    finally:
        sink.close()


def _allow_holes(writer: SafeWriter, name: str, holes: int) -> None:
    """The budget counts a sparse file's real size. A tar's own size bounds what its members
    store, not their holes: those are allowed on top, as far as the free space would hold
    them written out (a declared map of a petabyte is refused, not hashed for days)."""
    from ..core.errors import ArchiveTooLarge
    from ..core.fsutil import free_bytes
    from ..core.units import human_bytes

    budget = writer.budget
    if budget is None or holes <= 0:
        return
    free = free_bytes(writer.root)
    if holes > free:
        raise ArchiveTooLarge(
            f"{writer.archive}: sparse member {name!r} declares {human_bytes(holes)} of holes, "
            f"more than the {human_bytes(free)} free; extraction stopped",
            hint="nothing was staged; the archive may be damaged or hostile",
        )
    if budget.free_space_of is None and not budget.declared_by.startswith("the manifest"):
        budget.limit += holes


def _checked_map(member: tarfile.TarInfo) -> list[tuple[int, int]]:
    """The sparse map, in order, inside the real size: anything else is a damaged header."""
    sparse: Any = member.sparse or []  # typeshed does not describe the map
    regions = [(int(o), int(n)) for o, n in sparse if n]
    position = 0
    for offset, length in regions:
        if offset < position or length < 0 or offset + length > member.size:
            raise tarfile.ReadError(f"damaged sparse map in {member.name!r}")
        position = offset + length
    return regions


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(READ_CHUNK):
        yield chunk
