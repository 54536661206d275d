"""Formats datastage reads only through bsdtar (libarchive), recognised by their bytes.

Owns: the magic numbers of the archive formats and compression filters libarchive reads and
datastage does not (cpio, ar, ISO 9660, cab, LHA, xar, WARC; compress .Z, lz4, lzip, lzop,
lrzip, uuencode), and self-extracting 7z/RAR executables (a stub before the signature, as
bsdtar finds them). They are extracted by re-packing through bsdtar into our tar reader
(external.extract_with_bsdtar), so every SafeWriter rule still applies.

A compression filter only counts as an archive when bsdtar can list what it holds: a single
``notes.csv.Z`` stays a plain file, as it always was. mtree is never read (its entries name
files on this machine, not data in the archive).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

from . import external

_ARCHIVES = (
    ((b"070707", b"070701", b"070702", b"\xc7\x71", b"\x71\xc7"), "cpio"),
    ((b"!<arch>\n",), "ar"),
    ((b"MSCF\0\0\0\0",), "cab"),
    ((b"xar!",), "xar"),
    ((b"WARC/",), "warc"),
)
_FILTERS = (
    ((b"\x1f\x9d",), "compress (.Z)"),
    ((b"\x04\x22\x4d\x18", b"\x02\x21\x4c\x18"), "lz4"),
    ((b"LZIP",), "lzip"),
    ((b"\x89LZO\x00\r\n\x1a\n",), "lzop"),
    ((b"LRZI",), "lrzip"),
    ((b"begin ", b"begin-base64 "), "uuencode"),
)
_SFX_SIGNATURES = (
    (b"7z\xbc\xaf\x27\x1c", "7z (self-extracting)"),
    (b"Rar!\x1a\x07", "RAR (self-extracting)"),
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
        if head.startswith(magics):
            return name if _bsdtar_lists(path) else None
    if head.startswith((b"MZ", b"\x7fELF")):
        return _self_extracting(path)
    return None


def _at(path: Path, offset: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def _self_extracting(path: Path) -> Optional[str]:
    with open(path, "rb") as f:
        data = f.read(_SFX_SEARCH)
    for signature, name in _SFX_SIGNATURES:
        if data.find(signature, 1) > 0 and _bsdtar_lists(path):
            return name
    return None


def _bsdtar_lists(path: Path) -> bool:
    tool = external.bsdtar()
    if tool is None:
        return False
    done = subprocess.run(
        [tool, "-t", "-f", str(path)],
        capture_output=True,
        preexec_fn=external.child_dies_with_us,
    )
    return done.returncode == 0 and bool(done.stdout.strip())
