"""A file published in split parts (``vox1_dev_wav_partaa`` ... ``partad`` = one zip).

Owns: obtaining the parts of one manifest entry (``FileEntry.parts``), checking each one that
has a checksum, and joining them, in order, into the entry's verified cache blob.
Does not own: fetching bytes (download.py, as for any file) or where the parts are found
(localcopy.py sets ``source`` for ``--from``).

    parts from URLs        each downloaded into the cache (resumable, verified if it has a
                           checksum), then read in order
    parts in a --from folder   read in place, each hashed while it is joined (no copy first)

    $DATASTAGE_CACHE/partial/<key>.XXXX.join   the join in progress (temporary name)
    $DATASTAGE_CACHE/blobs/sha256/...          the joined file, only once it verified

The joined bytes stream into a temporary file in the cache's ``partial/`` folder, hashed as
they are written; the entry's size and digests are checked before ``Cache.commit`` renames it
into the store, so no half-joined or wrong file is ever a blob (a kill -9 leaves only the
temporary file, removed by the next join of that entry, which holds the entry's lock). The
part blobs downloaded for the join are dropped once the joined file is committed: keeping
both would double the space of the largest datasets (VoxCeleb2: ~70 GB).

One thread reads, writes and hashes (sha256 + the entry's and the part's algorithms). Hashing
the joined file in a second thread was tried (scripts/bench_parts.py, 200 MB, 2 cores at load
6): median 2.05 s against 2.25 s, within the noise, so the simpler single thread stayed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from .. import sources
from ..core import locks
from ..core.digests import READ_CHUNK, Hasher, check
from ..core.errors import IntegrityError, SourceError
from ..core.fsutil import disk_full_as_error, ensure_free
from ..core.progress import Reporter
from ..resolve.manifest import FileEntry
from ..settings.config import Settings
from ..sources.local import path_of
from .budget import ConnectionBudget
from .cache import Blob, Cache

JOIN_CHUNK = 8 * READ_CHUNK
JOIN_SUFFIX = ".join"


def join(
    entry: FileEntry,
    store: Cache,
    settings: Settings,
    reporter: Reporter,
    budget: Optional[ConnectionBudget] = None,
) -> Blob:
    """The verified cache blob of ``entry``, made from its parts (a tiers.obtain downloader)."""
    blob = store.find(entry)
    if blob:
        return blob
    with locks.hold(
        store.lock_path(entry), f"join of {entry.name}", settings.lock_timeout, reporter.say
    ):
        blob = store.find(entry)  # another process may have joined it while we waited
        if blob:
            return blob
        _remove_stale_joins(store, entry)
        fetched: list[tuple[FileEntry, Blob]] = []
        inputs: list[tuple[FileEntry, Path, bool]] = []  # part, where to read, check it here
        for part in entry.parts:
            if part.source and sources.scheme_of(part.source) == "file":
                inputs.append((part, path_of(part.source), True))
            else:
                from .download import download

                got = download(part, store, settings, reporter, budget)
                fetched.append((part, got))
                inputs.append((part, got.path, False))  # download verified it
        try:
            blob = _join(entry, inputs, store, reporter)
        except IntegrityError:
            if not all(p.digests for p, _ in fetched):
                _drop(store, fetched)  # an unchecked part may be the bad one: fetch them again
            raise
    _drop(store, fetched)
    return blob


def _join(
    entry: FileEntry, inputs: list[tuple[FileEntry, Path, bool]], store: Cache, reporter: Reporter
) -> Blob:
    sizes = [_size_of(part, path) for part, path, _ in inputs]
    # Parts that cannot add up to the joined file's size are refused from their sizes alone:
    # not a "not enough space" for a wrong terabyte, not a whole join only to fail its check.
    where = f" in {inputs[0][1].parent}" if all(local for _, _, local in inputs) else ""
    check(f"{entry.name} (its {len(inputs)} parts{where} together)", sum(sizes), {},
          entry.size, ())  # fmt: skip
    ensure_free(store.root, sum(sizes), "for the joined file")
    partial = store.root / "partial"
    partial.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=partial, prefix=f"{store.key(entry)}.", suffix=JOIN_SUFFIX)
    whole = Hasher([d.algorithm for d in entry.digests])
    bar = reporter.bar(f"joining {entry.name}", sum(sizes))
    try:
        with (
            disk_full_as_error(store.root, sum(sizes), "for the joined file"),
            os.fdopen(fd, "wb") as out,
        ):
            for number, (part, path, check_here) in enumerate(inputs, 1):
                own = Hasher([d.algorithm for d in part.digests]) if check_here else None
                for chunk in _read(path):
                    out.write(chunk)
                    whole.update(chunk)
                    if own is not None:
                        own.update(chunk)
                    bar.update(len(chunk))
                if own is not None:  # a part read in place: its own checksum, named
                    what = f"{part.name} (part {number} of {len(inputs)} of {entry.name})"
                    check(f"{what} in {path.parent}", own.size, own.hexdigests(),
                          part.size, part.digests)  # fmt: skip
        digests = whole.hexdigests()
        what = f"{entry.name} (joined from {len(inputs)} parts)"
        check(what, whole.size, digests, entry.size, entry.digests)
        return store.commit(Path(tmp), entry, digests, {})  # fsync, then rename into the store
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        bar.close()


def _read(path: Path) -> Iterator[bytes]:
    """A part's bytes; a read error names the part (a source failure, exit 4)."""
    try:
        with open(path, "rb") as src:
            while chunk := src.read(JOIN_CHUNK):
                yield chunk
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from e


def _size_of(part: FileEntry, path: Path) -> int:
    """The part's size on disk; a part whose size differs from the manifest's fails here,
    before anything is read."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from e
    check(f"{part.name} in {path.parent}", size, {}, part.size, ())
    return size


def remove_leftovers(
    entry: FileEntry, store: Cache, settings: Settings, reporter: Reporter
) -> None:
    """Once ``entry`` is a blob another way (the user's own joined copy, or its parts after
    that copy failed): joins of it left by killed runs, and the state of a download of it that
    failed, go. Under the entry's lock, so a live join or download is never touched."""
    partial = store.root / "partial"
    key = store.key(entry)
    if not partial.is_dir() or not any(partial.glob(f"{key}.*")):
        return
    with locks.hold(
        store.lock_path(entry), f"join of {entry.name}", settings.lock_timeout, reporter.say
    ):
        _remove_stale_joins(store, entry)
        for path in store.partial_paths(entry):
            with contextlib.suppress(OSError):
                path.unlink()


def _remove_stale_joins(store: Cache, entry: FileEntry) -> None:
    """Joins of this entry left by a killed process (we hold the entry's lock: none is live)."""
    for stale in (store.root / "partial").glob(f"{store.key(entry)}.*{JOIN_SUFFIX}"):
        with contextlib.suppress(OSError):
            stale.unlink()


def _drop(store: Cache, fetched: list[tuple[FileEntry, Blob]]) -> None:
    """Part blobs are only the way to the joined file: do not keep the dataset twice."""
    for part, blob in fetched:
        store.forget(part)
        with contextlib.suppress(OSError, ValueError):
            store.discard(blob)
