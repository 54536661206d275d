"""Cache management: ``datastage cache ls / rm / prune / dir``.

    $DATASTAGE_CACHE/names/<dataset>.json   which blobs a dataset used, and when (written by get)

Blobs are content-addressed and know nothing of datasets, so every ``get``/``fetch`` records
the blobs it used under the dataset's name; ``ls`` joins that record with the blobs on disk,
``rm`` deletes the blobs of one dataset (not those another dataset also uses), ``prune``
deletes stale partial downloads (unlocked and older than an age) and then least recently used
datasets until the cache fits ``max_size``. Blobs no dataset claims count as least recently used.

Two datasets may use the same blob (a subset and its whole dataset, two manifests of one
archive): a row shows all its files (and how much of that is shared), but every total counts a
blob once, and ``prune`` counts only the bytes a removal really frees, so it stops as soon as
the cache fits.
A ``get`` or ``fetch`` holds the cache's use lock (shared, ``in_use``) from its first
download to the end of staging: until then its blobs are recorded nowhere (or only under an
older dataset), so ``rm`` and ``prune`` take the lock exclusively (``_exclusive``) and wait for
running gets rather than delete what one of them is about to stage.
Does not own: the cache layout (cache.py).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from filelock import FileLock, Timeout

from ..core.errors import DatasetNotFound
from ..core.fsutil import write_atomic
from ..resolve.manifest import FileEntry, Manifest
from .cache import Blob, Cache

UNNAMED = "(unnamed)"
PARTIAL = "(partial)"
DEFAULT_PARTIAL_AGE = 24 * 3600.0


@dataclass(frozen=True)
class Row:
    name: str
    size: int  # every file of the dataset, shared ones included
    files: int
    last_used: Optional[float]
    paths: tuple[Path, ...]
    shared: int = 0  # bytes of those files that another dataset uses too


def total_size(rows: Sequence[Row]) -> int:
    """Bytes on disk: each blob once, however many datasets use it."""
    return sum(_size(p) for p in {p for r in rows for p in r.paths})


def verified_size(store: Cache) -> int:
    """Bytes of verified downloads (partial files excluded): what ``--max-size`` limits."""
    return total_size([r for r in ls(store) if r.name != PARTIAL])


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
    records = _records(store)
    uses = _uses(records, blobs)
    users: dict[str, int] = {}
    for shas in uses.values():
        for sha in shas:
            users[sha] = users.get(sha, 0) + 1
    claimed: set[str] = set(users)
    rows = []
    for name, record in records.items():
        present = [blobs[sha] for sha in uses[name]]
        if present:
            size = sum(_size(p) for p in present)
            shared = sum(_size(p) for p in present if users[p.name] > 1)
            used = record.get("used")
            rows.append(Row(name, size, len(present), used, tuple(present), shared))
    unclaimed = [p for sha, p in blobs.items() if sha not in claimed]
    if unclaimed:
        size = sum(_size(p) for p in unclaimed)
        rows.append(Row(UNNAMED, size, len(unclaimed), None, tuple(unclaimed)))
    partials = _partials(store)
    if partials:
        size = sum(_size(p) for p in partials)
        rows.append(Row(PARTIAL, size, len(partials), None, tuple(partials)))
    return rows


def _uses(records: dict[str, dict[str, Any]], blobs: dict[str, Path]) -> dict[str, list[str]]:
    """Each recorded dataset -> the sha256 of its blobs that are on disk (each listed once)."""
    return {
        name: list(dict.fromkeys(f["sha256"] for f in record["files"] if f.get("sha256") in blobs))
        for name, record in records.items()
    }


@contextlib.contextmanager
def in_use(store: Cache) -> Iterator[None]:
    """Held (shared) by every get/fetch while it downloads and stages: rm and prune wait."""
    with _use_lock(store, exclusive=False):
        yield


@contextlib.contextmanager
def _exclusive(store: Cache) -> Iterator[None]:
    """No get or fetch is running on this cache for the block (waiting for them, saying so)."""
    with _use_lock(store, exclusive=True):
        yield


@contextlib.contextmanager
def _use_lock(store: Cache, exclusive: bool) -> Iterator[None]:
    import fcntl

    path = store.root / ".locks" / "in-use.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # a read-only cache: nothing here can be removed either
        yield
        return
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if exclusive:
                print(
                    f"waiting for the datastage get/fetch using {store.root} to finish",
                    file=sys.stderr,
                    flush=True,
                )
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # releases the lock


def rm(store: Cache, name: str) -> int:
    """Delete the blobs of dataset ``name`` that no other dataset uses; return bytes freed."""
    with _exclusive(store):
        return _rm(store, name)


def _rm(store: Cache, name: str) -> int:
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
    store: Cache,
    max_size: Optional[int] = None,
    partial_age: float = DEFAULT_PARTIAL_AGE,
    dry_run: bool = False,
) -> list[tuple[str, int]]:
    """Remove stale partial files, then least recently used datasets down to ``max_size``;
    return what was removed (or, with ``dry_run``, what would be) and the bytes it frees."""
    removed: list[tuple[str, int]] = []
    now = time.time()
    for path in _partials(store):
        key = path.name.split(".", 1)[0]
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime >= partial_age and not _locked(store, key):
                size = _size(path)
                if not dry_run:
                    path.unlink()
                removed.append((str(path), size))
    if max_size is None:
        return removed
    if dry_run:
        return removed + [(row.name, freed) for row, freed in _plan(store, max_size)]
    with _exclusive(store):
        for row, freed in _plan(store, max_size):
            if row.name == UNNAMED:
                for path in row.paths:
                    path.unlink()
            else:
                freed = _rm(store, row.name)
            removed.append((row.name, freed))
    return removed


def _plan(store: Cache, max_size: int) -> list[tuple[Row, int]]:
    """What to remove, oldest first, and what each removal frees, until the blobs fit.

    Unclaimed blobs go first (nothing uses them), then datasets by last use. A blob is freed
    only with the last dataset that uses it, so each step subtracts what it really frees.
    """
    rows = [r for r in ls(store) if r.name != PARTIAL]
    total = total_size(rows)
    users: dict[Path, int] = {}
    for row in rows:
        for path in row.paths:
            users[path] = users.get(path, 0) + 1
    rows.sort(key=lambda r: (r.name != UNNAMED, r.last_used or 0.0))
    plan: list[tuple[Row, int]] = []
    for row in rows:
        if total <= max_size:
            break
        freed = 0
        for path in row.paths:
            users[path] -= 1
            if users[path] == 0:
                freed += _size(path)
        total -= freed
        plan.append((row, freed))
    return plan


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
