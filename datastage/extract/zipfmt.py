"""zip, with members inflated, written and hashed in parallel worker threads.

Owns: reading zip members into SafeWriter. Every name is checked (and its folders made) in
this thread, in archive order, before any worker writes; each worker then opens its own
ZipFile handle (zlib, crc32, sha256 and file writes all release the GIL), so N cores inflate N
members at once. zipfile stops each member at its declared size and checks its CRC, and
SafeWriter's budget stops the total at what the central directory declares.

Read as unzip and bsdtar read them: bytes before the first local header (self-extracting
stubs) are fine; MS-DOS/Windows zips that mark folders only by attribute 0x10 have folders; a
local header whose name differs from the central directory's (encoding flag quirks) defers to
the central directory; names without the UTF-8 flag are decoded by encodings.py. A symlink
member's target is at most 4096 bytes, and never read whole to find out.
"""

from __future__ import annotations

import contextlib
import copy
import stat
import struct
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

from ..core.errors import UnsupportedArchive
from . import external
from .encodings import CANDIDATES, decode_raw
from .streams import BadData
from .tarfmt import MAX_LINK_TARGET
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
_UTF8_FLAG = 0x800
_MSDOS_DIRECTORY = 0x10
#: "version made by" hosts whose attributes are MS-DOS ones: MS-DOS, NTFS, VFAT
_MSDOS_HOSTS = (0, 11, 14)


def declared_size(path: Path) -> Optional[int]:
    try:
        with zipfile.ZipFile(path) as zf:
            return sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return None  # extraction reports the damage


def extract_zip(path: Path, writer: SafeWriter, on_bytes: Callable[[int], None]) -> None:
    try:
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, ValueError, struct.error, EOFError) as e:
            # unzip and bsdtar read zips whose central directory zipfile refuses
            if external.bsdtar() is None:
                raise zipfile.BadZipFile(str(e)) from e
            external.extract_with_bsdtar(path, writer)
            return
        with zf:
            # One ZipFile for every worker: zipfile reads members of a shared handle under its
            # own lock and inflates outside it, so members still inflate in parallel; a handle
            # per thread re-parsed the central directory per thread (seconds, ~100 MB at 300k).

            def member_chunks(info: zipfile.ZipInfo) -> Iterator[bytes]:
                with _open(zf, info) as member:
                    while chunk := member.read(READ_CHUNK):
                        yield chunk

            infos = zf.infolist()
            names = _names(infos, writer.archive)
            for info in infos:  # every name is checked before a byte is written
                writer.check_name(names[id(info)])
            odd = _unreadable_member(infos, names, writer)
            if odd is not None:
                _by_bsdtar(path, odd, names[id(odd)], writer)
                return
            for info in infos:
                _member(zf, info, names[id(info)], writer, member_chunks)
                on_bytes(info.compress_size)
            writer.drain()
    finally:
        writer.abort()


def _unreadable_member(
    infos: list[zipfile.ZipInfo], names: dict[int, str], writer: SafeWriter
) -> Optional[zipfile.ZipInfo]:
    """Encryption is UnsupportedArchive up front. A member compressed with a method zipfile
    cannot inflate (Windows writes Deflate64 for big files; others zstd, xz, PPMd) is
    returned: bsdtar then reads the archive, or the error names the method."""
    for info in infos:
        if info.flag_bits & 0x1:
            raise UnsupportedArchive(
                f"{writer.archive}: member {names[id(info)]!r} is encrypted; "
                "password-protected zips are not supported"
            )
    return next(
        (i for i in infos if i.compress_type not in _READABLE_METHODS and not _is_dir(i)), None
    )


def _by_bsdtar(path: Path, info: zipfile.ZipInfo, name: str, writer: SafeWriter) -> None:
    """Read the zip with bsdtar (libarchive knows more methods); if it cannot either (or is
    not installed), say which method zipfile could not read."""
    method = _ZIP_METHODS.get(info.compress_type, f"method {info.compress_type}")
    error = UnsupportedArchive(
        f"{writer.archive}: member {name!r} is compressed with {method}, "
        "which Python's zipfile cannot read",
        hint="install bsdtar (apt-get install libarchive-tools), which datastage then uses, "
        "or re-pack it as a standard zip (deflate) or a tar.gz",
    )
    if external.bsdtar() is None:
        raise error
    try:
        external.extract_with_bsdtar(path, writer)
    except BadData as e:
        error.message += f" (nor could bsdtar: {e})"
        raise error from e


def _names(infos: list[zipfile.ZipInfo], archive: str) -> dict[int, str]:
    """Each member's name: UTF-8-flagged as zipfile read it; else the UTF-8 name of an
    Info-ZIP Unicode Path field (0x7075) that matches it, as unzip does; the others decoded
    once for the whole archive (zipfile read them as cp437, which maps every byte back)."""
    names = {id(i): i.filename for i in infos}
    raw = {}
    for i in infos:
        if i.flag_bits & _UTF8_FLAG or i.filename.isascii():
            continue
        unicode_path = _unicode_path(i)
        if unicode_path is not None:
            names[id(i)] = unicode_path
        else:
            raw[id(i)] = i.filename.encode("cp437")
    decoded = decode_raw(raw.values(), archive) if raw else {}
    for key, value in raw.items():
        names[key] = decoded.get(value, names[key])
    return names


def _unicode_path(info: zipfile.ZipInfo) -> Optional[str]:
    """The Info-ZIP Unicode Path extra field's name, when its CRC is the raw name's."""
    extra, raw_name = info.extra, info.filename.encode("cp437")
    while len(extra) >= 4:
        kind, size = struct.unpack("<HH", extra[:4])
        body, extra = extra[4 : 4 + size], extra[4 + size :]
        if kind == 0x7075 and len(body) > 5 and body[0] == 1:
            (crc,) = struct.unpack("<I", body[1:5])
            if crc == zlib.crc32(raw_name):
                try:
                    return body[5:].decode("utf-8")
                except UnicodeDecodeError:
                    return None
    return None


def _open(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Any:
    """zipfile refuses a member whose local header names it differently from the central
    directory; bsdtar and unzip use the central directory's name (the local one differs by
    its encoding flag, seen in the wild). Match the local name so zipfile reads the data."""
    try:
        return zf.open(info)
    except zipfile.BadZipFile as e:
        if "differ" not in str(e):
            raise
    assert zf.fp is not None
    # the handle is shared by the workers: read the local header under zipfile's own lock
    with getattr(zf, "_lock", contextlib.nullcontext()):
        zf.fp.seek(info.header_offset)
        header = zf.fp.read(30)
        (name_length,) = struct.unpack("<H", header[26:28]) if len(header) >= 30 else (0,)
        local_name = zf.fp.read(name_length)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename!r}")
    if not _same_name(local_name, info):
        raise zipfile.BadZipFile(
            f"member {info.filename!r} is named {local_name!r} in its local header"
        )
    # zipfile decodes the local name by the local header's own flag: expect exactly that
    (local_flags,) = struct.unpack("<H", header[6:8])
    patched = copy.copy(info)
    try:
        patched.orig_filename = local_name.decode(
            "utf-8"
            if local_flags & _UTF8_FLAG
            else getattr(zf, "metadata_encoding", None) or "cp437"
        )
    except UnicodeDecodeError as e:
        raise zipfile.BadZipFile(f"undecodable local name for {info.filename!r}") from e
    return zf.open(patched)


def _same_name(local: bytes, info: zipfile.ZipInfo) -> bool:
    """The local header's name is the central directory's, in some encoding (the UTF-8 flag
    set in one header only): not another name."""
    central = info.orig_filename.encode("utf-8" if info.flag_bits & _UTF8_FLAG else "cp437")

    def readings(raw: bytes) -> set[str]:
        texts = set()
        for encoding in ("utf-8", *CANDIDATES):
            with contextlib.suppress(UnicodeDecodeError):
                texts.add(raw.decode(encoding))
        return texts

    return local == central or bool(readings(local) & readings(central))


def _is_dir(info: zipfile.ZipInfo) -> bool:
    """A trailing '/', or (MS-DOS and Windows zippers) the directory attribute 0x10."""
    if info.is_dir():
        return True
    dos = info.create_system in _MSDOS_HOSTS or not info.external_attr >> 16
    return dos and bool(info.external_attr & _MSDOS_DIRECTORY) and info.file_size == 0


def _member(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    name: str,
    writer: SafeWriter,
    member_chunks: Callable[[zipfile.ZipInfo], Iterator[bytes]],
) -> None:
    unix_mode = info.external_attr >> 16
    kind = stat.S_IFMT(unix_mode)
    if _is_dir(info):
        writer.directory(name)
    elif kind == stat.S_IFLNK:
        writer.symlink(name, _link_target(zf, info, name, writer))
    elif kind in (stat.S_IFCHR, stat.S_IFBLK) or (_is_special(kind) and not info.file_size):
        writer.special(name, "device or FIFO")
    else:
        # `zip -` records its stdin's mode (a FIFO) for the data it read: that data is a file,
        # as bsdtar and unzip write it; a FIFO with no data stays refused
        mode = stat.S_IMODE(unix_mode) or 0o644
        writer.file_later(name, lambda: member_chunks(info), mode, _mtime(info))


def _link_target(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, writer: SafeWriter) -> str:
    """A symlink's target is its data: refuse one over MAX_LINK_TARGET before reading it."""
    too_long = writer.refuse(name, f"symlink target longer than {MAX_LINK_TARGET} bytes")
    if info.file_size > MAX_LINK_TARGET:
        raise too_long
    with _open(zf, info) as member:
        target: bytes = member.read(MAX_LINK_TARGET + 1)
    if len(target) > MAX_LINK_TARGET:
        raise too_long
    return target.decode("utf-8", "surrogateescape")


def _is_special(kind: int) -> bool:
    return kind in (stat.S_IFIFO, stat.S_IFSOCK)


def _mtime(info: zipfile.ZipInfo) -> Optional[float]:
    try:
        return time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return None
