"""The CRC-32 a RAR archive records for each file, read from its headers (RAR 4 and RAR 5).

Owns: nothing but that parse. bsdtar does not check the CRC of stored RAR members, so a
damaged RAR it extracts would be staged with exit 0; external.py compares each extracted
file's CRC with these before moving it into place. Any header this parser does not
understand ends the parse: the members it did read are still checked, the others are not
(never a false alarm).
"""

from __future__ import annotations

import struct
from pathlib import Path

RAR4 = b"Rar!\x1a\x07\x00"
RAR5 = b"Rar!\x1a\x07\x01\x00"
_RAR4_FILE = 0x74
_RAR4_LONG_BLOCK = 0x8000
_RAR4_LARGE = 0x100
_RAR4_UNICODE = 0x200
_RAR4_DIRECTORY = 0xE0
_RAR4_SPLIT = 0x03  # continued from / in the next volume: the CRC is of the whole file


def file_crcs(path: Path, limit: int = 1 << 16) -> dict[str, int]:
    """name -> CRC-32 of each regular file whose header could be read (at most ``limit``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if head.startswith(RAR5):
                return _rar5(f, limit)
            if head.startswith(RAR4):
                f.seek(len(RAR4))
                return _rar4(f, limit)
    except (OSError, struct.error, ValueError, UnicodeDecodeError):
        pass
    return {}


def _rar4(f, limit: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    crcs: dict[str, int] = {}
    while len(crcs) < limit:
        start = f.tell()
        base = f.read(7)
        if len(base) < 7:
            break
        _crc, kind, flags, size = struct.unpack("<HBHH", base)
        if size < 7:
            break
        body = f.read(size - 7)
        extra = 0
        if flags & _RAR4_LONG_BLOCK and len(body) >= 4:
            extra = struct.unpack("<I", body[:4])[0]
        if kind == _RAR4_FILE and len(body) >= 25:
            (pack, _unp, _os, crc, _time, _ver, _method, name_len, _attr) = struct.unpack(
                "<IIBIIBBHI", body[:25]
            )
            offset = 25 + (8 if flags & _RAR4_LARGE else 0)
            if flags & _RAR4_LARGE:
                pack += struct.unpack("<I", body[25:29])[0] << 32
            raw = body[offset : offset + name_len]
            if flags & _RAR4_UNICODE and b"\0" in raw:
                raw = b""  # the name's Unicode form is packed: leave it unchecked
            directory = flags & _RAR4_DIRECTORY == _RAR4_DIRECTORY
            if raw and not directory and not flags & _RAR4_SPLIT:
                crcs[raw.decode("utf-8").replace("\\", "/")] = crc
            extra = pack
        f.seek(start + size + extra)
    return crcs


def _vint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
        if shift > 63:
            raise ValueError("vint too long")


def _rar5(f, limit: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    crcs: dict[str, int] = {}
    f.seek(len(RAR5))
    while len(crcs) < limit:
        prefix = f.read(4 + 3)
        if len(prefix) < 5:
            break
        size, pos = _vint(prefix, 4)
        f.seek(f.tell() - len(prefix) + pos)
        header = f.read(size)
        if len(header) < size:
            break
        kind, p = _vint(header, 0)
        flags, p = _vint(header, p)
        data_size = 0
        if flags & 0x1:
            _extra, p = _vint(header, p)
        if flags & 0x2:
            data_size, p = _vint(header, p)
        if kind == 2:  # file header
            file_flags, p = _vint(header, p)
            _unpacked, p = _vint(header, p)
            _attributes, p = _vint(header, p)
            if file_flags & 0x2:
                p += 4  # mtime
            crc = None
            if file_flags & 0x4:
                crc = struct.unpack("<I", header[p : p + 4])[0]
                p += 4
            _compression, p = _vint(header, p)
            _host, p = _vint(header, p)
            name_len, p = _vint(header, p)
            name = header[p : p + name_len].decode("utf-8")
            split = flags & 0x18  # continued from / in another volume
            if crc is not None and not file_flags & 0x1 and not split:
                crcs[name] = crc
        elif kind == 5:  # end of archive
            break
        f.seek(f.tell() + data_size)
    return crcs
