"""Cache management: ``datastage cache ls / rm / prune / dir``.

    $DATASTAGE_CACHE/names/<dataset>.json   which blobs a dataset used, and when (written by get)

Blobs are content-addressed and know nothing of datasets, so every ``get``/``fetch`` records
the blobs it used under the dataset's name; ``ls`` joins that record with the blobs on disk,
``rm`` deletes the blobs of one dataset (not those another dataset also uses), ``prune``
deletes stale partial downloads (unlocked and older than an age) and then least recently used
datasets until the cache fits ``max_size``. Blobs no dataset claims count as least recently used.
Does not own: the cache layout (cache.py).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from filelock import FileLock, Timeout

from .cache import Blob, Cache
from .errors import DatasetNotFound
from .fsutil import write_atomic
from .manifest import FileEntry, Manifest

UNNAMED = "(unnamed)"
PARTIAL = "(partial)"
DEFAULT_PARTIAL_AGE = 24 * 3600.0


@dataclass(frozen=True)
class Row:
    name: str
    size: int
    files: int
    last_used: Optional[float]
    paths: tuple[Path, ...]


def record_use(store: Cache, manifest: Manifest, blobs: Sequence[tuple[FileEntry, Blob]]) -> None:
    record = {
        "name": manifest.name,
        "used": time.time(),
        "files": [{"name": e.name, "sha256": b.sha256, "size": b.size} for e, b in blobs],
    }
    write_atomic(_record_path(store, manifest.name), json.dumps(record, indent=1).encode())


def _record_path(store: Cache, name: str) -> Path:
    return store.root / "names" / f"{name}.json"


def _records(store: Cache) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((store.root / "names").glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(record, dict) and isinstance(record.get("files"), list):
                out[path.stem] = record
    return out


def _blobs(store: Cache) -> dict[str, Path]:
    return {p.name: p for p in store.root.glob("blobs/*/*/*") if p.is_file()}


def _partials(store: Cache) -> list[Path]:
    return sorted(p for p in (store.root / "partial").glob("*") if p.is_file())


def ls(store: Cache) -> list[Row]:
    """One row per dataset with blobs in the cache, then unclaimed blobs, then partial files."""
    blobs = _blobs(store)
    claimed: set[str] = set()
    rows = []
    for name, record in _records(store).items():
        present = [blobs[f["sha256"]] for f in record["files"] if f.get("sha256") in blobs]
        claimed.update(p.name for p in present)
        if present:
            size = sum(_size(p) for p in present)
            rows.append(Row(name, size, len(present), record.get("used"), tuple(present)))
    unclaimed = [p for sha, p in blobs.items() if sha not in claimed]
    if unclaimed:
        size = sum(_size(p) for p in unclaimed)
        rows.append(Row(UNNAMED, size, len(unclaimed), None, tuple(unclaimed)))
    partials = _partials(store)
    if partials:
        size = sum(_size(p) for p in partials)
        rows.append(Row(PARTIAL, size, len(partials), None, tuple(partials)))
    return rows


def rm(store: Cache, name: str) -> int:
    """Delete the blobs of dataset ``name`` that no other dataset uses; return bytes freed."""
    records = _records(store)
    if name not in records:
        close = difflib.get_close_matches(name, list(records), n=3)
        raise DatasetNotFound(
            f"{name} is not in the cache {store.root}",
            hint=f"did you mean: {', '.join(close)}" if close else "see: datastage cache ls",
        )
    others = {f.get("sha256") for other, r in records.items() if other != name for f in r["files"]}
    blobs = _blobs(store)
    freed = 0
    for f in records[name]["files"]:
        path = blobs.get(f.get("sha256", ""))
        if path is not None and path.name not in others:
            freed += _size(path)
            path.unlink()
    _record_path(store, name).unlink()
    return freed


def prune(
    store: Cache, max_size: Optional[int] = None, partial_age: float = DEFAULT_PARTIAL_AGE
) -> list[tuple[str, int]]:
    """Remove stale partial files, then least recently used datasets down to ``max_size``."""
    removed: list[tuple[str, int]] = []
    now = time.time()
    for path in _partials(store):
        key = path.name.split(".", 1)[0]
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime >= partial_age and not _locked(store, key):
                size = _size(path)
                path.unlink()
                removed.append((str(path), size))
    if max_size is None:
        return removed
    rows = [r for r in ls(store) if r.name != PARTIAL]
    total = sum(r.size for r in rows)
    # Unclaimed blobs first (nothing uses them), then datasets by last use, oldest first.
    rows.sort(key=lambda r: (r.name != UNNAMED, r.last_used or 0.0))
    for row in rows:
        if total <= max_size:
            break
        if row.name == UNNAMED:
            for path in row.paths:
                path.unlink()
            freed = row.size
        else:
            freed = rm(store, row.name)
        total -= freed
        removed.append((row.name, freed))
    return removed


def _locked(store: Cache, key: str) -> bool:
    """True while a live process holds the download lock for ``key`` (flock: dies with it)."""
    path = store.root / ".locks" / f"{key}.lock"
    if not path.exists():
        return False
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
