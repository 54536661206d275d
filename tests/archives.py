"""Archive fixtures built at test time, in every format datastage reads (and hostile ones).

``members`` is a list of (name, content) where content is bytes (a file), None (a folder),
("symlink", target), ("hardlink", target) or ("device", ""). Each builder returns bytes.
RAR is written by hand (RAR 1.5-4.x layout, "stored" method): no free tool creates RAR, and
the format of stored members is simple enough to write in a few lines.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Union

Content = Union[bytes, None, tuple[str, str]]
Members = list[tuple[str, Content]]
MTIME = 1_700_000_000  # every tar member's recorded time (in the past; test_extract checks it)

TAR_COMPRESSIONS = {"tar": "", "tar.gz": "gz", "tar.bz2": "bz2", "tar.xz": "xz", "tar.zst": "zst"}


def tree_members(files: dict[str, bytes]) -> Members:
    return [(name, data) for name, data in files.items()]


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gz":
        return gzip.compress(data, mtime=0)
    if compression == "bz2":
        return bz2.compress(data)
    if compression == "xz":
        return lzma.compress(data)
    if compression == "zst":
        import zstandard

        return zstandard.ZstdCompressor(write_checksum=True).compress(data)  # as the zstd CLI
    return data


def make_tar(members: Union[Members, dict[str, bytes]], compression: str = "") -> bytes:
    """A tar (``compression``: "", "gz", "bz2", "xz" or "zst"); members as a list or a dict."""
    if isinstance(members, dict):
        members = tree_members(members)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.mtime = MTIME
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif isinstance(content, tuple):
                kind, target = content
                info.type = {
                    "symlink": tarfile.SYMTYPE,
                    "hardlink": tarfile.LNKTYPE,
                    "device": tarfile.CHRTYPE,
                    "fifo": tarfile.FIFOTYPE,
                }[kind]
                info.linkname = target
                tar.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(content))
    return compress(raw.getvalue(), compression)


def make_zip(members: Union[Members, dict[str, bytes]]) -> bytes:
    if isinstance(members, dict):
        members = tree_members(members)
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members:
            if content is None:
                zf.writestr(zipfile.ZipInfo(name.rstrip("/") + "/"), b"")
            elif isinstance(content, tuple):
                kind, target = content
                info = zipfile.ZipInfo(name)
                mode = {"symlink": stat.S_IFLNK | 0o777, "device": stat.S_IFCHR | 0o644}[kind]
                info.external_attr = mode << 16
                info.create_system = 3
                zf.writestr(info, target.encode())
            else:
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 2, 3, 4, 6))
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, content)
    return raw.getvalue()


def make_7z(members: Members, tmp: Path) -> bytes:
    """py7zr reads every member from disk (its in-memory writer cannot store symlinks)."""
    import py7zr

    path = tmp / "fixture.7z"
    scratch = tmp / "7z-src" / "a" / "b" / "c"  # deep, so hostile ../ link targets stay in tmp
    scratch.mkdir(parents=True, exist_ok=True)
    with py7zr.SevenZipFile(path, "w") as archive:
        for i, (name, content) in enumerate(members):
            src = scratch / f"m{i}"
            if content is None:
                src.mkdir(exist_ok=True)
            elif isinstance(content, tuple):
                kind, target = content
                assert kind == "symlink", "7z fixtures hold files, folders and symlinks"
                pointee = scratch / target
                if not pointee.exists():  # py7zr refuses dangling links
                    pointee.parent.mkdir(parents=True, exist_ok=True)
                    pointee.write_bytes(b"")
                os.symlink(target, src)
            else:
                src.write_bytes(content)
            archive.write(src, name)
    data = path.read_bytes()
    path.unlink()
    return data


def make_rar(members: Members) -> bytes:
    """A RAR 4 archive with stored (uncompressed) members."""

    def block(head_type: int, flags: int, body: bytes, data: bytes = b"") -> bytes:
        rest = struct.pack("<BHH", head_type, flags, 7 + len(body)) + body
        return struct.pack("<H", zlib.crc32(rest) & 0xFFFF) + rest + data

    out = b"Rar!\x1a\x07\x00" + block(0x73, 0, b"\0" * 6)
    for name, content in members:
        flags = 0x8000
        if content is None:
            data, attr, flags = b"", stat.S_IFDIR | 0o755, flags | 0xE0
        elif isinstance(content, tuple):
            kind, target = content
            data = target.encode()
            attr = {"symlink": stat.S_IFLNK | 0o777, "device": stat.S_IFCHR | 0o644}[kind]
        else:
            data, attr = content, stat.S_IFREG | 0o644
        encoded = name.encode()
        body = struct.pack(
            "<IIBIIBBHI",
            len(data),  # packed size
            len(data),  # unpacked size
            3,  # host OS: Unix
            zlib.crc32(data),
            0x5A210000,  # DOS time
            20,  # version needed
            0x30,  # method: store
            len(encoded),
            attr,
        )
        out += block(0x74, flags, body + encoded, data)
    return out + block(0x7B, 0x4000, b"")


def pack(fmt: str, members: Members, tmp: Path) -> bytes:
    """Build an archive of ``fmt`` (tar, tar.gz, ..., zip, 7z, rar)."""
    if fmt in TAR_COMPRESSIONS:
        return make_tar(members, TAR_COMPRESSIONS[fmt])
    if fmt == "zip":
        return make_zip(members)
    if fmt == "7z":
        return make_7z(members, tmp)
    if fmt == "rar":
        return make_rar(members)
    raise ValueError(fmt)


def files_of(members: Members) -> dict[str, Any]:
    return {name: content for name, content in members if isinstance(content, bytes)}
