"""The records datastage keeps in a staged folder: the completion marker and the file list.

    DIR/<name>/.datastage-files.json   every file's size and sha256 (read by verify only)
    DIR/<name>/.datastage.json         written last: manifest key, sources, size + sha256 of the
                                       file list (small: a repeated `get` reads only this)

Both are data anyone who can write DIR controls: read only as regular files, never through a
link, and trusted only as far as they check out (a list whose bytes the marker names, a digest
that is 64 hex digits). A marker may also hold the list inline (format 1, and ``stage SRC``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from ..core.fsutil import write_atomic
from ..core.names import FILE_LIST, MARKER, RESERVED_NAMES
from ..core.redact import redact_url
from ..core.version import __version__
from ..obtain.cache import Blob
from ..resolve.manifest import FileEntry, Manifest

#: 2: the file list lives in FILE_LIST; 1 (and folders staged by ``stage SRC``) kept it inline
#: under "files". Both are read: an old staging stays staged (its sizes checked as before).
MARKER_FORMAT = 2
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Never follow a link, never block on a FIFO, never leak the descriptor to a child.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC


def read_record(path: Path) -> Any:
    """The JSON of a record of ours (a marker, a damage note). Anyone who can write the folder
    can put something else under that name: only a regular file is read, never through a link
    (a FIFO would block the reader forever, a link to /dev/zero fill its memory).
    OSError or ValueError when it is not one."""
    with open(os.open(path, _READ_FLAGS), "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError(f"{path} is not a regular file")
        return json.load(f)


def read_marker(folder: Path) -> Optional[dict[str, Any]]:
    """The completion marker of ``folder``, or None if it has none or it is damaged.

    A format-2 marker is small: its file list is not read here (see ``read_files``). An inline
    list (format 1, ``stage SRC``) is checked entry by entry, as before.
    """
    try:
        marker = read_record(folder / MARKER)
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("format") not in (1, MARKER_FORMAT):
        return None
    if "files" in marker:
        files = marker["files"]
        if not isinstance(files, dict) or not all(map(valid_record, files.values())):
            return None  # damaged by hand or by a tool: not a marker we can trust
        return marker
    listing = marker.get("file_list")
    if not isinstance(listing, dict) or not all(
        isinstance(listing.get(key), kind)
        for key, kind in (("size", int), ("sha256", str), ("count", int))
    ):
        return None
    return marker


def read_files(folder: Path, marker: dict[str, Any]) -> Optional[dict[str, Any]]:
    """Every staged file's record (rel -> {size, sha256} or {symlink}); None if damaged.

    The list is trusted only if its bytes are the ones the marker names (size and sha256).
    """
    if "files" in marker:
        return dict(marker["files"])
    listing = marker["file_list"]
    try:  # a regular file only, never through a link (as read_record)
        with open(os.open(folder / FILE_LIST, _READ_FLAGS), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            data = f.read(listing["size"] + 1)
    except OSError:
        return None
    if len(data) != listing["size"] or hashlib.sha256(data).hexdigest() != listing["sha256"]:
        return None
    try:
        files = json.loads(data).get("files")
    except (ValueError, AttributeError):
        return None
    if not isinstance(files, dict) or not all(map(valid_record, files.values())):
        return None
    return files


def valid_record(record: Any) -> bool:
    """One file's entry in a marker: {"size": int, "sha256": str} or {"symlink": str}."""
    if not isinstance(record, dict):
        return False
    if "symlink" in record:
        return isinstance(record["symlink"], str)
    return isinstance(record.get("size"), int) and isinstance(record.get("sha256"), str)


def marker_naming(folder: Path, name: str) -> Optional[dict[str, Any]]:
    """The folder's marker, if it parses (as any marker format of ours) and names dataset
    ``name``. Deliberately not read_marker: a marker too old or too new to be trusted as
    current still proves the folder is a staging of ours."""
    try:
        marker = read_record(folder / MARKER)
    except (OSError, ValueError):
        return None
    if (
        isinstance(marker, dict)
        and isinstance(marker.get("format"), int)
        and marker.get("name") == name
    ):
        return marker
    return None


def built_from(marker: dict[str, Any]) -> list[tuple[str, str, int]]:
    """The cache blobs a staging was built from, as the marker records them:
    (file name, sha256, size) for each ``sources`` entry. The marker is a file anyone who can
    write the dataset folder can edit, and a digest becomes a cache path that ``--repair`` may
    delete: only a real sha256 (64 lowercase hex digits) is taken, never a path."""
    found = []
    sources = marker.get("sources")
    for source in sources if isinstance(sources, list) else ():
        if not isinstance(source, dict):
            continue
        sha, size = source.get("sha256"), source.get("size")
        if isinstance(sha, str) and _SHA256.fullmatch(sha) and isinstance(size, int):
            found.append((str(source.get("name", "")), sha, size))
    return found


def write_marker(
    manifest: Manifest,
    blobs: Sequence[tuple[FileEntry, Blob]],
    partial: Path,
    record: dict[str, Any],
) -> None:
    """Write the file list, then the small marker that vouches for it: the marker comes last,
    so a folder with a marker is complete."""
    # a data file named like ours is replaced by it, so it cannot be listed
    files = {k: v for k, v in record.items() if k not in RESERVED_NAMES}
    # compact and sort_keys: json's C encoder (indent falls back to pure Python: 10x slower)
    listing = json.dumps({"files": files}, sort_keys=True, separators=(",", ":")).encode()
    del files
    write_atomic(partial / FILE_LIST, listing)
    marker = {
        "format": MARKER_FORMAT,
        "name": manifest.name,
        "content_key": manifest.content_key,
        "root": manifest.root,
        "datastage": __version__,
        "staged_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sources": [
            {"name": e.name, "url": redact_url(e.url), "size": b.size, "sha256": b.sha256}
            for e, b in blobs
        ],
        "file_list": {
            "name": FILE_LIST,
            "count": sum(1 for k in record if k not in RESERVED_NAMES),
            "size": len(listing),
            "sha256": hashlib.sha256(listing).hexdigest(),
        },
    }
    write_atomic(partial / MARKER, json.dumps(marker, indent=1).encode())
    # mkstemp/mkdtemp make them private; a dataset is for every user of the machine, like a
    # folder tar would have made, within what the user's umask allows
    from ..extract.writer import without_umask

    for made in (partial / FILE_LIST, partial / MARKER):
        os.chmod(made, without_umask(0o644))
    os.chmod(partial, without_umask(0o755))
