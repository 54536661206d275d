"""Small archives made in memory for tests: deterministic bytes (fixed mtimes, no timestamps in
the compressed headers), so the same members always give the same sha256."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile

MTIME = 1_700_000_000  # a recorded member time in the past, checked by test_extract

_COMPRESS = {
    "": lambda data: data,
    "gz": lambda data: gzip.compress(data, mtime=0),
    "bz2": bz2.compress,
    "xz": lzma.compress,
}


def make_tar(members: dict[str, bytes], compression: str = "") -> bytes:
    """A tar of regular files (``compression``: "", "gz", "bz2" or "xz")."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = MTIME
            tar.addfile(info, io.BytesIO(data))
    return _COMPRESS[compression](raw.getvalue())


def make_zip(members: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return raw.getvalue()
