"""Formats datastage reads only through bsdtar (libarchive), recognised by their bytes.

Owns: the magic numbers of the archive formats and compression filters libarchive reads and
datastage does not (cpio, ar, ISO 9660, cab, LHA, xar, WARC; compress .Z, lz4, lzip, lzop,
lrzip, uuencode, legacy .lzma), any of them inside gz/bz2/xz/zst (inner_archive), and
self-extracting 7z/RAR executables (a stub before the signature, as bsdtar finds them).
bsdtar extracts them (external.extract_with_bsdtar: listed, checked, extracted into a private
folder, checked again), so every SafeWriter rule still applies.

A compression filter only counts as an archive when bsdtar can list what it holds: a single
``notes.csv.Z`` stays a plain file, as it always was. mtree is never read (its entries name
files on this machine, not data in the archive).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

from . import external
from .streams import child_dies_with_us

_ARCHIVES: tuple[tuple[tuple[bytes, ...], str], ...] = (
    ((b"070707", b"070701", b"070702", b"\xc7\x71", b"\x71\xc7"), "cpio"),
    ((b"!<arch>\n",), "ar"),
    ((b"MSCF\0\0\0\0",), "cab"),
    ((b"xar!",), "xar"),
    ((b"WARC/",), "warc"),
)
_FILTERS: tuple[tuple[tuple[bytes, ...], str], ...] = (
    ((b"\x1f\x9d",), "compress (.Z)"),
    ((b"\x04\x22\x4d\x18", b"\x02\x21\x4c\x18"), "lz4"),
    ((b"LZIP",), "lzip"),
    ((b"\x89LZO\x00\r\n\x1a\n",), "lzop"),
    ((b"LRZI",), "lrzip"),
    ((b"begin ", b"begin-base64 "), "uuencode"),
)
#: Inside a compressed stream only (a zip, 7z or compressed file on its own is found
#: earlier); bsdtar reads a zip streamed through a filter.
_INNER_ONLY: tuple[tuple[tuple[bytes, ...], str], ...] = (
    ((b"PK\x03\x04",), "zip"),
    ((b"\x1f\x8b",), "gzip"),
    ((b"BZh",), "bzip2"),
    ((b"\xfd7zXZ\x00",), "xz"),
    ((b"\x28\xb5\x2f\xfd",), "zstd"),
)
_SFX_SIGNATURES = (
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
)
#: How far into an executable a self-extracting archive's signature is looked for.
_SFX_SEARCH = 4 * 1024 * 1024
_ISO_MAGIC_AT = 0x8001


def detect_other(path: Path, head: bytes) -> Optional[str]:
    """The name of the libarchive-only format ``path`` is in, or None."""
    for magics, name in _ARCHIVES:
        if head.startswith(magics):
            return name
    if len(head) >= 7 and head[2:4] == b"-l" and head[6:7] == b"-":
        return "lha"
    if _at(path, _ISO_MAGIC_AT, 5) == b"CD001":
        return "iso9660"
    for magics, name in _FILTERS:
        if head.startswith(magics):  # an archive inside (even one cut short): bsdtar's
            return name if _bsdtar_lists(path, partial_ok=True) else None
    if _is_lzma_alone(head):
        return "lzma" if _bsdtar_lists(path, partial_ok=True) else None
    return None


def inner_archive(path: Path, inner_head: bytes) -> Optional[str]:
    """What archive a gz/bz2/xz/zst stream holds, when it is not a tar: ``cpio``, ``zip``,
    ``iso9660``, another compressed layer, ... (bsdtar unpacks it where a plain decompressor
    would stage one opaque file), or None for a compressed single file. The magic is only a
    hint: bsdtar must list members."""
    name = magic_name(inner_head)
    if name is None and inner_head[_ISO_MAGIC_AT : _ISO_MAGIC_AT + 5] == b"CD001":
        name = "iso9660"
    if name is None or not _bsdtar_lists(path, partial_ok=True):
        return None
    return name


def magic_name(head: bytes) -> Optional[str]:
    for magics, name in (*_ARCHIVES, *_INNER_ONLY, *_FILTERS):
        if head.startswith(magics):
            return name
    if len(head) >= 7 and head[2:4] == b"-l" and head[6:7] == b"-":
        return "lha"
    if _is_lzma_alone(head):
        return "lzma"
    return None


def _is_lzma_alone(head: bytes) -> bool:
    """The legacy .lzma ("LZMA alone") header, as libarchive's bidder checks it: the usual
    properties byte, a dictionary size of 2^n or 2^n + 2^(n-1), an unknown or sane size."""
    if len(head) < 13 or head[0] != 0x5D:
        return False
    dictionary = int.from_bytes(head[1:5], "little")
    sizes = {1 << n for n in range(12, 31)} | {(1 << n) + (1 << (n - 1)) for n in range(12, 31)}
    size = int.from_bytes(head[5:13], "little")
    return dictionary in sizes and (size == (1 << 64) - 1 or size < (1 << 40))


def self_extracting(path: Path, head: bytes) -> Optional[str]:
    """ "7z" or "rar" for a self-extracting executable whose archive a reader can list: the
    7z tool (it finds the archive after any stub), else bsdtar ("libarchive")."""
    if not head.startswith((b"MZ", b"\x7fELF")):
        return None
    with open(path, "rb") as f:
        data = f.read(_SFX_SEARCH)
    for signature, kind in _SFX_SIGNATURES:
        if data.find(signature, 1) < 0:
            continue
        tool = external.seven_zip()
        if tool is not None and _lists(tool, ["l", "-ba"], path):
            return kind
        if _bsdtar_lists(path):
            return "libarchive"
    return None


def _at(path: Path, offset: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def _bsdtar_lists(path: Path, partial_ok: bool = False) -> bool:
    tool = external.bsdtar()
    return tool is not None and _lists(tool, ["-t", "-f"], path, partial_ok)


def _lists(tool: str, argv: list[str], path: Path, partial_ok: bool = False) -> bool:
    """The tool lists members (``partial_ok``: some, before it failed on damage)."""
    done = subprocess.run(
        [tool, *argv, str(path)], capture_output=True, preexec_fn=child_dies_with_us
    )
    return (done.returncode == 0 or partial_ok) and bool(done.stdout.strip())
