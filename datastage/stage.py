"""Putting a dataset in place: build it beside the target, write the marker last, rename.

    DIR/
    ├── <name>/                        the staged dataset; the printed path is DIR/<name>/<root>
    │   └── .datastage.json            completion marker: manifest key + every file's size/sha256
    ├── .<name>.partial-XXXX/          work in progress, never under the final name
    └── .<name>.old-XXXX/              a previous staging being replaced (removed right away)
    (lock: one stager per dataset folder, across processes: lock_for(DIR/<name>), on local
     disk under ranks.lock_dir(), never in DIR, which may be a mount without working flock)

Owns: deciding whether a staged copy is current, building a new one from verified cache blobs
(extracting archives, copying plain files), the marker, the swap into place, and ``verify``.
A folder without a marker is never trusted; a folder that is not ours is never deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from . import __version__
from .cache import Blob
from .digests import hash_file
from .errors import ManifestError, UnsupportedArchive, UsageError, VerifyFailed
from .fsutil import disk_full_as_error, ensure_free, fsync_dir, remove_tree, write_atomic
from .manifest import FileEntry, Manifest
from .progress import Reporter

if TYPE_CHECKING:  # the extract package (tarfile, zipfile, subprocess, ...) and filelock load
    # only when something is staged: a repeated `get` of a staged dataset needs neither
    from .extract import Format

MARKER = ".datastage.json"
MARKER_FORMAT = 1
MAX_LISTED_PROBLEMS = 5


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
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
        return None
    files = marker.get("files")
    if not isinstance(files, dict) or not all(map(_valid_record, files.values())):
        return None  # damaged by hand or by a tool: not a marker we can trust
    return marker


def _valid_record(record: Any) -> bool:
    """One file's entry in a marker: {"size": int, "sha256": str} or {"symlink": str}."""
    if not isinstance(record, dict):
        return False
    if "symlink" in record:
        return isinstance(record["symlink"], str)
    return isinstance(record.get("size"), int) and isinstance(record.get("sha256"), str)


def is_current(manifest: Manifest, to: Path) -> bool:
    """True if DIR/<name> holds a complete staging of this manifest (sizes checked, not hashes)."""
    folder = dataset_dir(manifest, to)
    marker = read_marker(folder)
    if not marker or marker.get("content_key") != manifest.content_key:
        return False
    return not _problems(folder, marker["files"], rehash=False, limit=1)


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
    from .extract import detect, refuse_unrecognised

    fmt = detect(blob.path)
    if fmt.is_archive:
        return fmt
    refuse_unrecognised(entry.name, fmt)  # named like an archive: never a copy with exit 0
    if entry.extract:
        raise UnsupportedArchive(
            f"{entry.name} is not an archive datastage recognises, "
            "but the manifest says extract = true"
        )
    return None


def _build(items: Sequence[_Item], partial: Path, reporter: Reporter) -> dict[str, Any]:
    from .extract.steps import Step, unpack

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
                entry.name_encoding,
            )
            unpack(step, blob.path, fmt, partial, record, reporter.bar)
        else:
            shutil.copyfile(blob.path, folder / entry.name)
            os.chmod(folder / entry.name, 0o644)
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
        # a data file of that name is replaced by the marker, so it cannot be listed in it
        "files": dict(sorted((k, v) for k, v in record.items() if k != MARKER)),
    }
    write_atomic(partial / MARKER, json.dumps(marker, indent=1).encode())
    # mkdtemp/mkstemp make both private; a dataset is for every user of the machine, like a
    # folder tar would have made
    os.chmod(partial / MARKER, 0o644)
    os.chmod(partial, 0o755)


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
    """Re-hash every staged file against the marker; raise VerifyFailed listing what differs."""
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
    total = sum(v.get("size", 0) for v in marker["files"].values())
    bar = reporter.bar(f"verifying {manifest.name}", total)
    try:
        problems = _problems(folder, marker["files"], rehash=True, limit=None, on_bytes=bar.update)
    finally:
        bar.close()
    if problems:
        listed = ", ".join(problems[:MAX_LISTED_PROBLEMS])
        more = (
            f" and {len(problems) - MAX_LISTED_PROBLEMS} more"
            if len(problems) > MAX_LISTED_PROBLEMS
            else ""
        )
        raise VerifyFailed(
            f"{len(problems)} of {len(marker['files'])} staged files in {folder} differ: "
            f"{listed}{more}",
            hint=f"re-stage with: datastage get {manifest.name} --to {to}",
        )
    return root_of(manifest, to)


def _problems(
    folder: Path, files: dict[str, Any], rehash: bool, limit: Optional[int], on_bytes: Any = None
) -> list[str]:
    problems: list[str] = []
    for rel, expected in files.items():
        problem = _problem(folder / rel, expected, rehash, on_bytes)
        if problem:
            problems.append(f"{rel} ({problem})")
            if limit is not None and len(problems) >= limit:
                break
    return problems


def _problem(path: Path, expected: dict[str, Any], rehash: bool, on_bytes: Any) -> Optional[str]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return e.strerror or "unreadable"
    if "symlink" in expected:
        if not os.path.islink(path) or os.readlink(path) != expected["symlink"]:
            return "link changed"
        return None
    if st.st_size != expected["size"]:
        return f"size {st.st_size}, expected {expected['size']}"
    if rehash:
        actual = hash_file(path, on_bytes=on_bytes).hexdigests()["sha256"]
        if actual != expected["sha256"]:
            return "content changed"
    return None
