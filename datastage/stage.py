"""Putting a dataset in place: build it beside the target, write the marker last, rename.

    DIR/
    ├── <name>/                        the staged dataset; the printed path is DIR/<name>/<root>
    │   ├── .datastage-files.json      every file's size and sha256 (read by verify only)
    │   └── .datastage.json            completion marker, written last: manifest key, sources,
    │                                  size + sha256 of the file list (small: a repeated `get`
    │                                  reads only this, whatever the number of files)
    ├── .<name>.partial-XXXX/          work in progress, never under the final name
    └── .<name>.old-XXXX/              a previous staging being replaced (removed right away)
    (lock: one stager per dataset folder, across processes: lock_for(DIR/<name>), on local
     disk under ranks.lock_dir(), never in DIR, which may be a mount without working flock)

Owns: deciding whether a staged copy is current, building a new one from verified cache blobs
(extracting archives, copying plain files), the marker, the swap into place, and ``verify``.
A folder without a marker is never trusted; a folder that is not ours is never deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from . import __version__
from .cache import Blob
from .errors import ManifestError, UnsupportedArchive, UsageError, VerifyFailed
from .fsutil import disk_full_as_error, ensure_free, fsync_dir, remove_tree, write_atomic
from .manifest import FileEntry, Manifest
from .progress import Reporter

if TYPE_CHECKING:  # the extract package (tarfile, zipfile, subprocess, ...) and filelock load
    # only when something is staged: a repeated `get` of a staged dataset needs neither
    from .extract import Format

MARKER = ".datastage.json"
#: The per-file record the marker vouches for (by size and sha256).
FILE_LIST = ".datastage-files.json"
#: Left by ``verify`` when files differ from their record: the next ``get`` stages again.
DAMAGED = ".datastage-damaged"
#: 2: the file list lives in FILE_LIST; 1 (and folders staged by ``stage SRC``) kept it inline
#: under "files". Both are read: an old staging stays staged (its sizes checked as before).
MARKER_FORMAT = 2
MAX_LISTED_PROBLEMS = 5
#: Threads re-hashing files in ``verify`` (hashlib releases the GIL; more hides disk latency).
VERIFY_THREADS = max(2, min(8, 2 * (os.cpu_count() or 1)))


def dataset_dir(manifest: Manifest, to: Path) -> Path:
    return to / manifest.name


def lock_for(target: Path) -> Path:
    """The lock of the staging of ``target`` (``get``, ``stage`` and overlap share it)."""
    from .ranks import lock_path

    return lock_path("stage", str(target))


def root_of(manifest: Manifest, to: Path) -> Path:
    """The path users get: the dataset folder, or the root folder the manifest names in it."""
    folder = dataset_dir(manifest, to)
    return folder / manifest.root if manifest.root else folder


def read_marker(folder: Path) -> Optional[dict[str, Any]]:
    """The completion marker of ``folder``, or None if it has none or it is damaged.

    A format-2 marker is small: its file list is not read here (see ``read_files``). An inline
    list (format 1, ``stage SRC``) is checked entry by entry, as before.
    """
    try:
        marker = json.loads((folder / MARKER).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("format") not in (1, MARKER_FORMAT):
        return None
    if "files" in marker:
        files = marker["files"]
        if not isinstance(files, dict) or not all(map(_valid_record, files.values())):
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
    try:
        with open(folder / FILE_LIST, "rb") as f:
            data = f.read(listing["size"] + 1)
    except OSError:
        return None
    if len(data) != listing["size"] or hashlib.sha256(data).hexdigest() != listing["sha256"]:
        return None
    try:
        files = json.loads(data).get("files")
    except (ValueError, AttributeError):
        return None
    if not isinstance(files, dict) or not all(map(_valid_record, files.values())):
        return None
    return files


def _valid_record(record: Any) -> bool:
    """One file's entry in a marker: {"size": int, "sha256": str} or {"symlink": str}."""
    if not isinstance(record, dict):
        return False
    if "symlink" in record:
        return isinstance(record["symlink"], str)
    return isinstance(record.get("size"), int) and isinstance(record.get("sha256"), str)


def is_current(manifest: Manifest, to: Path) -> bool:
    """True if DIR/<name> holds a complete staging of this manifest.

    Costs a few small reads whatever the number of files: the marker and the presence of its
    file list, not the list itself (``verify`` re-checks every file, and a ``verify`` that
    finds a difference leaves DAMAGED behind, so the next ``get`` stages again). An old
    (format 1) marker is still trusted after checking every file's size, as it was then.
    """
    folder = dataset_dir(manifest, to)
    marker = read_marker(folder)
    if not marker or marker.get("content_key") != manifest.content_key:
        return False
    if os.path.lexists(folder / DAMAGED):
        return False
    if "files" in marker:
        return not _problems(folder, marker["files"], rehash=False, limit=1)
    try:
        return os.stat(folder / FILE_LIST).st_size == marker["file_list"]["size"]
    except OSError:
        return False


def stage(
    manifest: Manifest,
    blobs: Sequence[tuple[FileEntry, Blob]],
    to: Path,
    reporter: Reporter,
    lock_timeout: Optional[float] = None,
) -> Path:
    """Build DIR/<name> from verified blobs and return the root path users should get."""
    to.mkdir(parents=True, exist_ok=True)
    lock = lock_for(dataset_dir(manifest, to))
    from . import locks

    with locks.hold(lock, f"staging {manifest.name} in {to}", lock_timeout, reporter.say):
        if is_current(manifest, to):
            return root_of(manifest, to)
        _remove_leftovers(manifest, to)
        target = dataset_dir(manifest, to)
        _refuse_foreign(target)
        items = [_Item(entry, blob, _format_of(entry, blob)) for entry, blob in blobs]
        needed = sum(item.unpacked_size() or 0 for item in items)
        ensure_free(to, needed, f"to stage {manifest.name}")
        partial = Path(tempfile.mkdtemp(dir=to, prefix=f".{manifest.name}.partial-"))
        try:
            with disk_full_as_error(to, needed or None, f"to stage {manifest.name}"):
                record = _build(items, partial, reporter)
                _check_root(manifest, partial)
                _check_layout(manifest, partial, reporter)
                _write_marker(manifest, blobs, partial, record)
            _swap_into_place(partial, target)
        except BaseException:
            remove_tree(partial)
            raise
    return root_of(manifest, to)


@dataclass(frozen=True)
class _Item:
    """One verified file and what staging will do with it (``fmt`` None: copy as is)."""

    entry: FileEntry
    blob: Blob
    fmt: Optional[Format]

    def unpacked_size(self) -> Optional[int]:
        """Bytes it will occupy once staged, when that is known without unpacking."""
        if self.entry.unpacked_size is not None:
            return self.entry.unpacked_size
        if self.fmt is None:
            return self.blob.size
        from .extract import declared_size

        return declared_size(self.blob.path, self.fmt)


def _format_of(entry: FileEntry, blob: Blob) -> Optional[Format]:
    if entry.extract is False:
        return None
    from .extract import detect

    fmt = detect(blob.path)
    if fmt.is_archive:
        return fmt
    if entry.extract:
        raise UnsupportedArchive(
            f"{entry.name} is not an archive datastage recognises, "
            "but the manifest says extract = true"
        )
    return None


def _build(items: Sequence[_Item], partial: Path, reporter: Reporter) -> dict[str, Any]:
    from .extract.steps import Step, unpack
    from .extract.writer import without_umask

    record: dict[str, Any] = {}
    for entry, blob, fmt in ((i.entry, i.blob, i.fmt) for i in items):
        folder = partial / entry.dest if entry.dest else partial
        folder.mkdir(parents=True, exist_ok=True)
        if fmt is not None:
            step = Step(
                entry.name,
                entry.dest,
                entry.strip_components,
                entry.nested,
                entry.extract_nested,
                entry.unpacked_size,
            )
            unpack(step, blob.path, fmt, partial, record, reporter.bar)
        else:
            shutil.copyfile(blob.path, folder / entry.name)
            os.chmod(folder / entry.name, without_umask(0o644))
            rel = f"{entry.dest}/{entry.name}" if entry.dest else entry.name
            record[rel] = {"size": blob.size, "sha256": blob.sha256}
    return record


def _check_root(manifest: Manifest, partial: Path) -> None:
    if manifest.root and not (partial / manifest.root).is_dir():
        found = sorted(p.name for p in partial.iterdir())[:10]
        raise ManifestError(
            f"manifest {manifest.path or manifest.name}: root: folder {manifest.root!r} is not in "
            f"the extracted data (top level holds: {', '.join(found) or 'nothing'})"
        )


def _check_layout(manifest: Manifest, partial: Path, reporter: Reporter) -> None:
    """Warn (not fail) when the staged tree differs from the manifest's expected layout."""
    if not manifest.layout:
        return
    from .layout import problems

    found = problems(manifest.layout, partial / manifest.root if manifest.root else partial)
    if found:
        reporter.warn(
            f"{manifest.address} does not look as its manifest expects: {'; '.join(found)} "
            "(the files passed their checks; the manifest may be out of date)"
        )


def _write_marker(
    manifest: Manifest,
    blobs: Sequence[tuple[FileEntry, Blob]],
    partial: Path,
    record: dict[str, Any],
) -> None:
    """Write the file list, then the small marker that vouches for it: the marker comes last,
    so a folder with a marker is complete."""
    # a data file named like ours is replaced by it, so it cannot be listed
    files = {k: v for k, v in record.items() if k not in _RESERVED}
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
            {"name": e.name, "url": e.url, "size": b.size, "sha256": b.sha256} for e, b in blobs
        ],
        "file_list": {
            "name": FILE_LIST,
            "count": sum(1 for k in record if k not in _RESERVED),
            "size": len(listing),
            "sha256": hashlib.sha256(listing).hexdigest(),
        },
    }
    write_atomic(partial / MARKER, json.dumps(marker, indent=1).encode())
    # mkstemp/mkdtemp make them private; a dataset is for every user of the machine, like a
    # folder tar would have made, within what the user's umask allows
    from .extract.writer import without_umask

    for made in (partial / FILE_LIST, partial / MARKER):
        os.chmod(made, without_umask(0o644))
    os.chmod(partial, without_umask(0o755))


def _swap_into_place(partial: Path, target: Path) -> None:
    """Rename the finished folder into place; an older staging of ours is moved aside first."""
    old = None
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, old / target.name)
    os.rename(partial, target)
    fsync_dir(target.parent)
    if old is not None:
        remove_tree(old)


def _refuse_foreign(target: Path) -> None:
    """Never replace a folder datastage did not make (an empty one is fine)."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise UsageError(f"{target} exists and is not a folder staged by datastage; move it away")
    if target.is_dir() and not (target / MARKER).exists() and any(target.iterdir()):
        raise UsageError(
            f"{target} exists but was not staged by datastage (no {MARKER}); "
            "move it away or choose another --to",
        )


def _remove_leftovers(manifest: Manifest, to: Path) -> None:
    """Partial and old folders of dead runs (we hold the lock, so no live run owns them)."""
    for pattern in (f".{manifest.name}.partial-*", f".{manifest.name}.old-*"):
        for leftover in to.glob(pattern):
            remove_tree(leftover)


# -- verify ----------------------------------------------------------------------------------


def verify(manifest: Manifest, to: Path, reporter: Reporter) -> Path:
    """Re-hash every staged file against the marker; raise VerifyFailed listing what differs.

    Files in the folder that the marker does not list are reported (a warning), not a failure:
    they may be the user's. A difference leaves DAMAGED behind so the next ``get`` re-stages.
    """
    folder = dataset_dir(manifest, to)
    marker = read_marker(folder)
    if marker is None:
        raise VerifyFailed(
            f"{folder} is not a complete staging of {manifest.name} (no valid {MARKER})",
            hint=f"run: datastage get {manifest.name} --to {to}",
        )
    if marker.get("content_key") != manifest.content_key:
        raise VerifyFailed(
            f"{folder} was staged from a different version of the {manifest.name} manifest",
            hint=f"run: datastage get {manifest.name} --to {to}",
        )
    files = read_files(folder, marker)
    if files is None:
        _mark_damaged(folder)
        raise VerifyFailed(
            f"the file list of {folder} ({FILE_LIST}) is missing or damaged",
            hint=f"re-stage with: datastage get {manifest.name} --to {to}",
        )
    _warn_extra(folder, files, reporter)
    total = sum(v.get("size", 0) for v in files.values())
    bar = reporter.bar(f"verifying {manifest.name}", total)
    try:
        problems = _problems(folder, files, rehash=True, limit=None, on_bytes=bar.update)
    finally:
        bar.close()
    if problems:
        _mark_damaged(folder)
        listed = ", ".join(problems[:MAX_LISTED_PROBLEMS])
        more = (
            f" and {len(problems) - MAX_LISTED_PROBLEMS} more"
            if len(problems) > MAX_LISTED_PROBLEMS
            else ""
        )
        raise VerifyFailed(
            f"{len(problems)} of {len(files)} staged files in {folder} differ: {listed}{more}",
            hint=f"re-stage with: datastage get {manifest.name} --to {to}",
        )
    return root_of(manifest, to)


def _mark_damaged(folder: Path) -> None:
    """Make the next ``get`` stage again (best effort: a read-only copy just stays as it is)."""
    with contextlib.suppress(OSError):
        write_atomic(folder / DAMAGED, b"verify found files that differ from the marker\n")


def _warn_extra(folder: Path, files: dict[str, Any], reporter: Reporter) -> None:
    extra = sorted(_extra_files(folder, files))
    if extra:
        listed = ", ".join(extra[:MAX_LISTED_PROBLEMS])
        more = f" and {len(extra) - MAX_LISTED_PROBLEMS} more" if len(extra) > 5 else ""
        reporter.warn(
            f"{len(extra)} file(s) in {folder} are not part of the staged dataset "
            f"(left alone, not checked): {listed}{more}"
        )


def _extra_files(folder: Path, files: dict[str, Any]) -> list[str]:
    """Files and links under ``folder`` that the record does not list (ours excluded)."""
    extra: list[str] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            entries = list(os.scandir(folder / rel_dir if rel_dir else folder))
        except OSError:
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                stack.append(rel)
            elif rel not in files and not (not rel_dir and entry.name in _RESERVED):
                extra.append(rel)
    return extra


def _problems(
    folder: Path, files: dict[str, Any], rehash: bool, limit: Optional[int], on_bytes: Any = None
) -> list[str]:
    """What differs between ``files`` and the tree (in the record's order).

    Without ``rehash`` (sizes only) it stops at ``limit`` problems; with it, files are hashed
    by VERIFY_THREADS threads, a slice of the list each task.
    """
    if not rehash:
        problems: list[str] = []
        for rel, expected in files.items():
            problem = _problem(os.path.join(folder, rel), expected, False)
            if problem:
                problems.append(f"{rel} ({problem})")
                if limit is not None and len(problems) >= limit:
                    break
        return problems
    from concurrent.futures import ThreadPoolExecutor

    base = os.fspath(folder)
    items = list(files.items())
    step = max(1, min(256, len(items) // (4 * VERIFY_THREADS) or 1))

    def check(start: int) -> list[tuple[int, str]]:
        found = []
        done = 0
        for i in range(start, min(start + step, len(items))):
            rel, expected = items[i]
            problem = _problem(f"{base}/{rel}", expected, True)
            if problem:
                found.append((i, f"{rel} ({problem})"))
            done += expected.get("size", 0)
        if on_bytes is not None:
            on_bytes(done)
        return found

    with ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="datastage-verify") as pool:
        found = [p for part in pool.map(check, range(0, len(items), step)) for p in part]
    found.sort()
    return [text for _, text in found][:limit] if limit is not None else [t for _, t in found]


def _problem(path: str, expected: dict[str, Any], rehash: bool) -> Optional[str]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return e.strerror or "unreadable"
    if "symlink" in expected:
        if not stat.S_ISLNK(st.st_mode) or os.readlink(path) != expected["symlink"]:
            return "link changed"
        return None
    if st.st_size != expected["size"]:
        return f"size {st.st_size}, expected {expected['size']}"
    if rehash:
        actual = _sha256(path, st.st_size)
        if actual is None:
            return "unreadable"
        if actual != expected["sha256"]:
            return "content changed"
    return None


def _sha256(path: str, size: int) -> Optional[str]:
    """The file's sha256 (None if it cannot be read): a small file costs one open, two reads
    and a close, no Python file object."""
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        want = min(size + 1, READ_CHUNK)
        while chunk := os.read(fd, want):
            digest.update(chunk)
            want = READ_CHUNK
    except OSError:
        return None
    finally:
        os.close(fd)
    return digest.hexdigest()


#: Our own files at the top of a staged folder (extract/writer.py leaves these names to us).
_RESERVED = frozenset({MARKER, FILE_LIST, DAMAGED})
READ_CHUNK = 1 << 20
