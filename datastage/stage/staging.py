"""Putting a dataset in place: build it beside the target, write the marker last, rename.

    DIR/
    ├── <name>/                        the staged dataset; the printed path is DIR/<name>/<root>
    │   ├── .datastage-files.json      every file's size and sha256 (read by verify only)
    │   └── .datastage.json            completion marker, written last: manifest key, sources,
    │                                  size + sha256 of the file list (small: a repeated `get`
    │                                  reads only this, whatever the number of files)
    ├── .<name>.partial-XXXX/          work in progress, never under the final name
    ├── .<name>.old-XXXX/              a previous staging being replaced (removed right away)
    └── .<name>.damaged                written by a failed ``verify``: the next ``get`` re-stages
    (lock: one stager per dataset folder, across processes: lock_for(DIR/<name>), on local
     disk under ranks.lock_dir(), never in DIR, which may be a mount without working flock)

Owns: deciding whether a staged copy is current, building a new one from verified cache blobs
(extracting archives, copying plain files), the marker, the swap into place, and ``verify``.
A folder without a marker is never trusted; a folder that is not ours is never deleted: only
a marker that parses and names the folder's dataset proves ownership (an empty folder is
replaced by an atomic rename, which fails rather than delete anything that appeared in it).
Whatever built the tree (archives, nested archives, several files, ``stage SRC``), its links
are checked as a whole just before it is committed (links.py). A cache blob that this run did
not verify itself is re-hashed beside the extraction; a damaged one fails the staging with
DamagedBlob (api.py drops it, fetches it again and re-stages).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ..core.errors import (
    ArchiveError,
    DamagedBlob,
    ManifestError,
    UnsafeArchiveMember,
    UnsupportedArchive,
    UsageError,
    VerifyFailed,
)
from ..core.fsutil import disk_full_as_error, ensure_free, fsync_dir, remove_tree, write_atomic
from ..core.names import FILE_LIST, MARKER, RESERVED_NAMES
from ..core.progress import Reporter
from ..core.redact import redact_url
from ..core.version import __version__
from ..obtain.cache import Blob, damaged
from ..resolve.manifest import FileEntry, Manifest
from .links import check_links

if TYPE_CHECKING:  # the extract package (tarfile, zipfile, subprocess, ...) and filelock load
    # only when something is staged: a repeated `get` of a staged dataset needs neither
    from ..extract import Format

#: 2: the file list lives in FILE_LIST; 1 (and folders staged by ``stage SRC``) kept it inline
#: under "files". Both are read: an old staging stays staged (its sizes checked as before).
MARKER_FORMAT = 2
MAX_LISTED_PROBLEMS = 5
#: Threads re-hashing files in ``verify`` (hashlib releases the GIL; more hides disk latency).
VERIFY_THREADS = max(2, min(8, 2 * (os.cpu_count() or 1)))
_SHA256 = re.compile(r"[0-9a-f]{64}")


def dataset_dir(manifest: Manifest, to: Path) -> Path:
    return to / manifest.name


def lock_for(target: Path) -> Path:
    """The lock of the staging of ``target`` (``get``, ``stage`` and overlap share it).
    Keyed by the real folder that holds it: ``--to out`` and ``--to link-to-out`` (or
    ``out/../out``) are one folder, and a second stager would take the first's partial
    folder for a dead run's leftover and delete it."""
    from ..settings.ranks import lock_path

    return lock_path("stage", os.path.join(os.path.realpath(target.parent), target.name))


def root_of(manifest: Manifest, to: Path) -> Path:
    """The path users get: the dataset folder, or the root folder the manifest names in it
    (for a one-liner's archive: its single top folder, found in the marker's listing)."""
    folder = dataset_dir(manifest, to)
    if manifest.root:
        return folder / manifest.root
    if manifest.detect_root:
        return folder / _single_top_folder(folder)
    return folder


def _single_top_folder(folder: Path) -> str:
    """The one top folder of a staged one-liner's archive, or "" (the dataset folder itself).

    Read from the folder's own listing (a few entries, whatever the number of files; the
    marker is not parsed): an empty folder, a link or a hidden file beside the top folder is
    part of the dataset, and the top folder must be a real folder, never a link that could
    lead elsewhere.
    """
    try:
        entries = set(os.listdir(folder)) - RESERVED_NAMES
    except OSError:
        return ""
    if len(entries) != 1:
        return ""
    (top,) = entries
    real_folder = (folder / top).is_dir() and not (folder / top).is_symlink()
    return top if real_folder else ""


def _read_record(path: Path) -> Any:
    """The JSON of a record of ours (a marker, a damage note). Anyone who can write the folder
    can put something else under that name: only a regular file is read, never through a link
    (a FIFO would block the reader forever, a link to /dev/zero fill its memory).
    OSError or ValueError when it is not one."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
    with open(os.open(path, flags), "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError(f"{path} is not a regular file")
        return json.load(f)


def read_marker(folder: Path) -> Optional[dict[str, Any]]:
    """The completion marker of ``folder``, or None if it has none or it is damaged.

    A format-2 marker is small: its file list is not read here (see ``read_files``). An inline
    list (format 1, ``stage SRC``) is checked entry by entry, as before.
    """
    try:
        marker = _read_record(folder / MARKER)
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
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
    try:  # a regular file only, never through a link (as _read_record)
        with open(os.open(folder / FILE_LIST, flags), "rb") as f:
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
    """True if DIR/<name> holds a complete staging of this manifest that no ``verify`` has
    found damaged since.

    Costs a few small reads whatever the number of files: the marker and the presence of its
    file list, not the list itself (``verify`` re-checks every file, and a ``verify`` that
    finds a difference leaves a damage note, so the next ``get`` stages again). An old
    (format 1) marker is still trusted after checking every file's size, as it was then.
    """
    folder = dataset_dir(manifest, to)
    marker = read_marker(folder)
    if not marker or marker.get("content_key") != manifest.content_key:
        return False
    if damage_reported(folder):
        return False
    if "files" in marker:
        return not _problems(folder, marker["files"], rehash=False, limit=1)
    try:
        return bool(os.stat(folder / FILE_LIST).st_size == marker["file_list"]["size"])
    except OSError:
        return False


def stage(
    manifest: Manifest,
    blobs: Sequence[tuple[FileEntry, Blob]],
    to: Path,
    reporter: Reporter,
    lock_timeout: Optional[float] = None,
    *,
    force: bool = False,
) -> Path:
    """Build DIR/<name> from verified blobs and return the root path users should get.
    ``force``: build it again even if a current staging is in place."""
    to.mkdir(parents=True, exist_ok=True)
    lock = lock_for(dataset_dir(manifest, to))
    from ..core import locks

    with locks.hold(lock, f"staging {manifest.name} in {to}", lock_timeout, reporter.say):
        if not force and is_current(manifest, to):
            return root_of(manifest, to)
        _remove_leftovers(manifest, to)
        target = dataset_dir(manifest, to)
        owned = _refuse_foreign(target)
        check = BlobCheck([blob for _, blob in blobs])
        partial: Optional[Path] = None
        try:
            items = [_Item(entry, blob, _format_of(entry, blob)) for entry, blob in blobs]
            needed = sum(item.unpacked_size() or 0 for item in items)
            ensure_free(to, needed, f"to stage {manifest.name}")
            partial = Path(tempfile.mkdtemp(dir=to, prefix=f".{manifest.name}.partial-"))
            with disk_full_as_error(to, needed or None, f"to stage {manifest.name}"):
                record = _build(items, partial, reporter)
                check.raise_if_damaged()
                check_links(partial)
                _check_root(manifest, partial)
                _check_layout(manifest, partial, reporter)
                _write_marker(manifest, blobs, partial, record)
            _swap_into_place(partial, target, owned, links_checked=True)
        except (ArchiveError, ManifestError):
            check.raise_if_damaged()  # a cache file altered on disk explains the damage better
            raise
        except BaseException:
            check.cancel()
            raise
        finally:
            if partial is not None and partial.exists():
                remove_tree(partial)
    return root_of(manifest, to)


class BlobCheck:
    """Re-hashes, in a thread beside the extraction, the cache blobs this run did not verify
    itself (``Blob.fresh`` False): a blob altered on disk must not become a staging whose
    marker vouches for it. Reading a file the extraction also reads costs little (page cache).
    """

    def __init__(self, blobs: Sequence[Blob]) -> None:
        unique = {b.path: b for b in blobs if not b.fresh}
        self._blobs = list(unique.values())
        self._stop = threading.Event()
        self._damaged: list[tuple[Blob, str]] = []
        self._thread: Optional[threading.Thread] = None
        if self._blobs:
            self._thread = threading.Thread(target=self._run, name="datastage-blobcheck")
            self._thread.daemon = True  # Ctrl-C must not wait for a multi-GB hash
            self._thread.start()

    def _run(self) -> None:
        for blob in self._blobs:
            why = damaged(blob, stop=self._stop)
            if self._stop.is_set():
                return
            if why is not None:
                self._damaged.append((blob, why))

    def raise_if_damaged(self) -> None:
        """Wait for the hashes; raise DamagedBlob naming every blob that does not match."""
        if self._thread is not None:
            self._thread.join()
        if self._damaged:
            raise damaged_blobs_error(self._damaged)

    def cancel(self) -> None:
        self._stop.set()


def damaged_blobs_error(found: Sequence[tuple[Blob, str]]) -> DamagedBlob:
    listed = "; ".join(f"{blob.path} ({why})" for blob, why in found)
    return DamagedBlob(
        f"{len(found)} cached file(s) no longer matching their sha256: {listed}",
        tuple(blob for blob, _ in found),
        hint="the cache's disk may be failing; datastage drops such files and downloads "
        "them again (re-run the command)",
    )


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
        from ..extract import declared_size

        return declared_size(self.blob.path, self.fmt)


def _format_of(entry: FileEntry, blob: Blob) -> Optional[Format]:
    if entry.extract is False:
        return None
    from ..extract import detect, refuse_unrecognised

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
    from ..extract.nesting import Step, unpack

    record: dict[str, Any] = {}
    for entry, blob, fmt in ((i.entry, i.blob, i.fmt) for i in items):
        folder = _entry_folder(partial, entry)
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
            _copy_blob(blob.path, folder / entry.name, entry)
            rel = f"{entry.dest}/{entry.name}" if entry.dest else entry.name
            record[rel] = {"size": blob.size, "sha256": blob.sha256}
    return record


def _entry_folder(partial: Path, entry: FileEntry) -> Path:
    """The folder an entry lands in, made one component at a time. An earlier entry's links
    are only checked once the tree is finished (links.py), and a later one may re-target them,
    so nothing is ever written through a link: a ``dest`` that goes through one is refused."""
    folder = partial
    for part in entry.dest.split("/") if entry.dest else ():
        folder = folder / part
        try:
            os.mkdir(folder, 0o755)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                raise _written_through(entry, folder.relative_to(partial)) from None
    return folder


def _copy_blob(source: Path, path: Path, entry: FileEntry) -> None:
    """Copy a cache blob to ``path`` as a new file, never through a link of that name."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:  # an earlier archive's member of that name (a link included) is replaced
        if stat.S_ISDIR(st.st_mode):
            raise _written_through(entry, Path(entry.dest or ".", entry.name))
        os.unlink(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    os.close(os.open(path, flags, 0o644))  # ours now, in a private folder: copy in place
    shutil.copyfile(source, path)
    from ..extract.writer import without_umask

    os.chmod(path, without_umask(0o644))


def _written_through(entry: FileEntry, rel: Path) -> UnsafeArchiveMember:
    return UnsafeArchiveMember(
        f"{entry.name} would be written through {rel.as_posix()!r}, which an earlier file of "
        "the dataset made a symlink or a file; nothing was staged",
        hint="the data may be malicious or damaged; get it from a trusted source",
    )


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


def _swap_into_place(
    partial: Path, target: Path, owned: Optional[Owned] = None, links_checked: bool = False
) -> None:
    """Rename the finished folder into place; an older staging of ours is moved aside first.

    The one door into place, so it checks what every caller must: the tree's links
    (unless the caller just did) and that whatever is at ``target`` is ours to replace
    (decided again at the swap, and once more on the folder moved aside: ``owned``, what
    ``_refuse_foreign`` saw before the build, is not enough, as files may be saved meanwhile).
    """
    if not links_checked:
        check_links(partial)
    try:  # nothing there, or an empty folder: replaced atomically, nothing can be lost
        os.rename(partial, target)
    except OSError as e:
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise
        # decided now, not only before the build: a user may have saved a file in the folder
        # meanwhile (``owned`` only tells that it was ours then; kept for the callers)
        new_marker = read_marker(partial)
        new = (read_files(partial, new_marker) if new_marker else None) or {}
        _refuse_foreign(target, instead=new)
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, old / target.name)
        _put_back_unless_ours(old / target.name, target, new)
        os.rename(partial, target)
        fsync_dir(target.parent)
        remove_tree(old)
    else:
        fsync_dir(target.parent)
    with contextlib.suppress(OSError):  # a report about the staging just replaced
        os.unlink(_damage_note(target))


def _put_back_unless_ours(moved: Path, target: Path, new: dict[str, Any]) -> None:
    """Check the folder just moved aside once more (a file saved into it between the check and
    the move is there now, and no longer reachable by its old path): if it is not all ours,
    it goes back where it was, untouched, and the staging fails."""
    try:
        _refuse_foreign(moved, shown=target, instead=new)
    except UsageError:
        with contextlib.suppress(OSError):
            os.rename(moved, target)
            os.rmdir(moved.parent)
        raise


@dataclass(frozen=True)
class Owned:
    """What proved a folder ours: its identity and its marker's, to notice a later swap."""

    folder: tuple[int, int]
    marker: tuple[int, int, int]

    @classmethod
    def of(cls, target: Path) -> Optional[Owned]:
        try:
            f, m = os.lstat(target), os.lstat(target / MARKER)
        except OSError:
            return None
        return cls((f.st_dev, f.st_ino), (m.st_ino, m.st_size, m.st_mtime_ns))

    def unchanged(self, target: Path) -> bool:
        return Owned.of(target) == self


def _refuse_foreign(
    target: Path, shown: Optional[Path] = None, instead: Optional[dict[str, Any]] = None
) -> Optional[Owned]:
    """Raise UsageError (exit 2) unless ``target`` is missing, an empty folder, or a staging
    of ours: a folder holding a marker that parses and names this dataset, and no file the
    marker does not list (a user's results saved inside a dataset are not ours to delete).
    Deletes nothing. Returns what proved it ours (None: nothing to replace).
    ``shown``: the path to name in the error (``target`` itself unless it was moved aside).
    ``instead``: the files that may be replaced when the marker has no listing (damaged by
    hand): the new staging's, at the swap (nothing is lost that is not staged again); None
    before the build, when the new listing is not known yet and the swap decides."""
    shown = shown or target
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        with os.scandir(target) as entries:
            if next(entries, None) is None:
                return None
        owned = Owned.of(target)
        marker = _marker_naming(target, target.name) if owned is not None else None
        if marker is not None:
            _refuse_unlisted(target, marker, shown, instead)
            return owned
    raise UsageError(
        f"{shown} exists and is not a datastage dataset; move it or choose another --to",
        hint=f"only a folder holding a valid {MARKER} that names {target.name!r} is replaced",
    )


def _refuse_unlisted(
    target: Path, marker: dict[str, Any], shown: Path, instead: Optional[dict[str, Any]]
) -> None:
    """A staging of ours that holds files its marker does not list: refuse to replace it."""
    listed = marker.get("files")
    if not isinstance(listed, dict) or not all(map(_valid_record, listed.values())):
        current = read_marker(target)  # a marker that keeps its listing elsewhere
        listed = read_files(target, current) if current is not None else None
        if listed is None:
            if instead is None:  # damaged: no listing to go by
                return  # ours; which of its files are is decided at the swap
            listed = instead
    extra = _unlisted(target, listed, strict=True)  # deciding what may go: see everything
    if extra:
        names = ", ".join(sorted(extra)[:MAX_LISTED_PROBLEMS])
        more = f" and {len(extra) - MAX_LISTED_PROBLEMS} more" if len(extra) > 5 else ""
        raise UsageError(
            f"{shown} holds {len(extra)} file(s) datastage did not stage ({names}{more}); "
            "it is not replaced while they are there",
            hint="move them out of the dataset folder (or the folder elsewhere), then try again",
        )


def refuse_foreign(manifest: Manifest, to: Path) -> None:
    """Fail before any download when DIR/<name> is a folder datastage may not replace."""
    _refuse_foreign(dataset_dir(manifest, to))


def _marker_naming(folder: Path, name: str) -> Optional[dict[str, Any]]:
    """The folder's marker, if it parses (as any marker format of ours) and names dataset
    ``name``. Deliberately not read_marker: a marker too old or too new to be trusted as
    current still proves the folder is a staging of ours."""
    try:
        marker = _read_record(folder / MARKER)
    except (OSError, ValueError):
        return None
    if (
        isinstance(marker, dict)
        and isinstance(marker.get("format"), int)
        and marker.get("name") == name
    ):
        return marker
    return None


def _remove_leftovers(manifest: Manifest, to: Path) -> None:
    """Partial and old folders of dead runs (we hold the lock, so no live run owns them).
    Only real folders named as ``tempfile.mkdtemp`` names ours, never a link or a file; an
    old folder only if what it holds is still a staging of ours alone (a folder moved aside
    by a run killed while it checked the folder again, with a user's file in it, is kept)."""
    ours = re.compile(rf"\.{re.escape(manifest.name)}\.(partial|old)-[a-z0-9_]+")
    for pattern in (f".{manifest.name}.partial-*", f".{manifest.name}.old-*"):
        for leftover in to.glob(pattern):
            if ours.fullmatch(leftover.name) and leftover.is_dir() and not leftover.is_symlink():
                if ".old-" in leftover.name and not _only_our_staging(leftover, manifest.name):
                    continue
                remove_tree(leftover)


def _only_our_staging(old: Path, name: str) -> bool:
    """True if ``old`` (a ``.<name>.old-*`` folder) is empty or holds just a staging of ours."""
    try:
        held = os.listdir(old)
        if held and held != [name]:
            return False
        if held:
            _refuse_foreign(old / name, instead={})
    except (OSError, UsageError):
        return False
    return True


# -- damage reported by verify ---------------------------------------------------------------


def _damage_note(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.damaged"


def record_damage(folder: Path, problems: str) -> None:
    """Remember that ``verify`` found this staging damaged, so the next ``get`` re-stages it
    (a same-size change is invisible to the size check that keeps a repeated ``get`` instant).
    The note names the folder's identity: a newer staging in its place is not affected."""
    try:
        st = os.stat(folder)
        note = {"folder": [st.st_dev, st.st_ino], "problems": problems}
        write_atomic(_damage_note(folder), json.dumps(note).encode())
    except OSError:
        pass  # a read-only DIR: `get --repair` still repairs it


def clear_damage(folder: Path) -> None:
    """A ``verify`` found the staging intact (again): forget an earlier report."""
    with contextlib.suppress(OSError):
        os.unlink(_damage_note(folder))


def damage_reported(folder: Path) -> bool:
    """True when a ``verify`` found this very staging (not an older one) damaged."""
    try:
        note = _read_record(_damage_note(folder))
        st = os.stat(folder)
    except (OSError, ValueError):
        return False
    return isinstance(note, dict) and note.get("folder") == [st.st_dev, st.st_ino]


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


# -- verify ----------------------------------------------------------------------------------


def verify(manifest: Manifest, to: Path, reporter: Reporter) -> Path:
    """Re-hash every staged file against the marker; raise VerifyFailed listing what differs.

    Files in the folder that the marker does not list are reported (a warning), not a failure:
    they may be the user's. A difference leaves a damage note (record_damage): the next
    ``get`` stages again.
    """
    folder = dataset_dir(manifest, to)
    marker = read_marker(folder)
    if marker is None:
        raise VerifyFailed(
            f"{folder} is not a complete staging of {manifest.name} (no valid {MARKER})",
            hint=f"run: {get_command(manifest, to)}",
        )
    if marker.get("content_key") != manifest.content_key:
        raise VerifyFailed(
            f"{folder} was staged from a different version of the {manifest.name} manifest",
            hint=f"run: {get_command(manifest, to)}",
        )
    files = read_files(folder, marker)
    if files is None:
        _mark_damaged(folder)
        raise VerifyFailed(
            f"the file list of {folder} ({FILE_LIST}) is missing or damaged",
            hint=f"re-stage with: {get_command(manifest, to)}",
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
            hint=f"re-stage with: {get_command(manifest, to)}",
        )
    return root_of(manifest, to)


def get_command(manifest: Manifest, to: Path) -> str:
    """The command that stages ``manifest`` again, with the target as the user typed it."""
    named = f" --name {shlex.quote(manifest.typed_name)}" if manifest.typed_name else ""
    return f"datastage get {shlex.quote(manifest.target)}{named} --to {shlex.quote(str(to))}"


def _mark_damaged(folder: Path) -> None:
    """Make the next ``get`` stage again (the damage note beside the folder: record_damage)."""
    record_damage(folder, "verify found files that differ from the marker")


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
    return _unlisted(folder, files, strict=False)


def _unlisted(folder: Path, listed: Any, *, strict: bool) -> list[str]:
    """Files and links under ``folder`` that ``listed`` does not name (our records at the top
    excluded). ``strict``: a folder that cannot be read is an error, not skipped."""
    extra: list[str] = []
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        try:
            entries = list(os.scandir(folder / rel_dir if rel_dir else folder))
        except OSError:
            if strict:
                raise
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                pending.append(rel)
            elif rel not in listed and not (not rel_dir and entry.name in RESERVED_NAMES):
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
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the hash, a link lead elsewhere
        return "not a regular file"
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
READ_CHUNK = 1 << 20
