"""The user's own data: ``datastage stage SRC --to DIR`` (``pack`` is in pack.py).

stage (a folder) — from a slow mount (Drive, autodl-fs, NFS) to fast disk:

    DIR/<name>/                          the copy; .datastage.json (marker) written last
    DIR/.<name>.partial-XXXXXXXX/        work in progress of one run (mkdtemp: 0700, ours)
        .datastage-partial.json          "made by datastage stage", the source, the folder's name
        .datastage-journal.jsonl         one line per file copied and verified

SRC is read by the rules of srctree.py (links kept and confined, FIFOs/devices skipped, files
checked against their listing). A slow mount is latency-bound (every open costs a round trip),
not bandwidth-bound, so many files are copied at once by threads. Each file is hashed while it
is read, written under a temporary name with the source's permission bits (never wider, umask
applied), re-hashed from the fast disk and renamed; its journal line (path, size, mtime, inode,
sha256) comes after.

Resume after kill -9: the next run (holding the same lock) looks for ``.<name>.partial-*``
folders it can prove are its own — a real folder (not a link) owned by this uid with mode 0700,
holding ``.datastage-partial.json`` that names this source and this folder. Another user cannot
make such a folder; a folder that fails the test is never used nor deleted. Journal lines count
only when the source file still has the same size, mtime and inode, and the copy re-hashes to
the journalled sha256.

Re-run of a staged folder: SRC is listed (names, sizes, mtimes) and compared with the marker.
Unchanged: nothing is copied. Changed: "source changed: A added, R removed, M modified" and a new
staging where unchanged files are hard links to the current copy (no read from the slow mount),
each re-hashed against the marker's sha256 first (a copy edited in place is copied again), swapped
into place like the first. ``--force`` copies everything again.

stage (an archive) is ``get`` with a one-file manifest: one sequential read into the cache,
verified, extracted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

from ..core.digests import READ_CHUNK
from ..core.errors import IntegrityError, UsageError
from ..core.fsutil import disk_full_as_error, ensure_free, remove_tree, user_path, write_atomic
from ..core.names import MARKER, strip_archive_suffix
from ..core.progress import Reporter
from ..core.version import __version__
from ..resolve.manifest import NAME_PATTERN, Manifest
from ..settings import config
from .marker import MARKER_FORMAT, read_marker
from .ownership import refuse_unless_ours
from .srctree import FileInfo, Listing, check_unchanged, list_tree, open_listed, refuse_nested
from .staging import Staging
from .verify import problems

JOURNAL = ".datastage-journal.jsonl"
PARTIAL_OWNER = ".datastage-partial.json"
PARTIAL_KIND = "datastage stage"
DEFAULT_WORKERS = 32
COPY_CHUNK = 4 * READ_CHUNK


def dataset_name(path: Path) -> str:
    """A valid manifest name from a folder or archive name: ``LJSpeech-1.1`` -> ``ljspeech-1.1``."""
    stem = strip_archive_suffix(path.name)
    name = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-.")
    if not name or not NAME_PATTERN.match(name):
        raise UsageError(f"cannot derive a dataset name from {path.name!r}; pass --name")
    return name


def checked_name(src: Path, name: Optional[str]) -> str:
    name = name or dataset_name(src)
    if not NAME_PATTERN.match(name):
        raise UsageError(f"{name!r} is not a valid name (lowercase letters, digits, '.', '_', '-')")
    return name


#: How ``stage`` stages an archive: with ``get``'s pipeline, ``api.get_manifest``, which the
#: caller passes in (stage/ sits below api in the layer order, so it does not import it).
GetManifest = Callable[[Manifest, Path, config.Settings], Path]


def stage(
    src: Path,
    to: Path,
    name: Optional[str] = None,
    workers: int = DEFAULT_WORKERS,
    quiet: bool = False,
    force: bool = False,
    *,
    get_manifest: GetManifest,
) -> Path:
    """Copy folder ``src`` (or extract archive ``src``, with ``get_manifest``) to
    ``to/<name>``; return that folder."""
    src = user_path(str(src)).absolute()
    name = checked_name(src, name)
    if src.is_file():
        if force:  # an archive is staged by `get`, whose staging has its own rules
            raise UsageError(
                f"--force re-copies a folder; {src} is a file",
                hint=f"to stage the archive again, remove {to / name} first",
            )
        return _stage_archive(src, to, name, quiet, get_manifest)
    if not src.is_dir():
        raise UsageError(f"{src}: no such folder or file")
    reporter = Reporter(quiet)
    target = to / name
    refuse_nested(src, target, "--to")  # before anything is made inside SRC
    to.mkdir(parents=True, exist_ok=True)
    refuse_unless_ours(target)  # before a long listing of a slow mount; again under the lock
    if _previous(target, src) is None:
        reporter.say(f"listing {src}")  # a re-run stays quiet unless something changed
    listing = list_tree(src, reporter.warn)
    # the lock `get` takes (the two never stage into one folder at once); our own partial
    # folders are resumed, and kept if this run fails
    lock_timeout = config.resolve().lock_timeout
    with Staging(target, reporter, lock_timeout, f"staging {src}", resumable=True) as staging:
        previous = None if force else _previous(target, src)
        if previous is not None and not _has_source_times(previous):
            reporter.say("the staged copy records no source times (an older datastage): copying")
            previous = None
        if previous is not None:
            change = _Change.between(previous, listing)
            if change.any():
                reporter.say(f"source changed: {change}")
            else:
                damaged = problems(target, previous["files"], rehash=False, limit=1)
                if not damaged:
                    return target
                reporter.say(f"the staged copy is incomplete ({damaged[0]}); copying it again")
        return _Stager(src, staging, listing, previous, force, workers, reporter).run()


def _stage_archive(src: Path, to: Path, name: str, quiet: bool, get_manifest: GetManifest) -> Path:
    from ..resolve.manifest import from_dict
    from .layout import root_of
    from .verify import is_current

    manifest = from_dict({"name": name, "files": [{"url": str(src)}]})
    dest = user_path(str(to)).absolute()
    if is_current(manifest, dest):
        return root_of(manifest, dest)
    return get_manifest(manifest, dest, config.resolve(quiet=quiet))


def _previous(target: Path, src: Path) -> Optional[dict[str, Any]]:
    """The marker of ``target`` if it is a staging of this very folder, else None."""
    marker = read_marker(target)
    if marker and marker.get("source") == str(src) and marker.get("root") == "":
        return marker
    return None


def _has_source_times(marker: dict[str, Any]) -> bool:
    return all("mtime_ns" in r for r in marker["files"].values() if "symlink" not in r)


@dataclass(frozen=True)
class _Change:
    added: int
    removed: int
    modified: int

    @classmethod
    def between(cls, marker: dict[str, Any], listing: Listing) -> _Change:
        """Compare what the marker recorded of SRC (names, sizes, mtimes) with SRC now."""
        old: dict[str, Any] = dict(marker["files"])
        for folder in marker.get("empty_dirs") or ():
            old[folder] = "dir"
        now: dict[str, Any] = {rel: {"symlink": text} for rel, text in listing.links.items()}
        for folder in listing.empty_dirs:
            now[folder] = "dir"
        modified = 0
        for rel, info in listing.files.items():
            record = old.get(rel)
            if record is None:
                continue
            if not isinstance(record, dict) or (record.get("size"), record.get("mtime_ns")) != (
                info.size,
                info.mtime_ns,
            ):
                modified += 1
        for rel, value in now.items():
            if rel in old and old[rel] != value:
                modified += 1
        current = set(now) | set(listing.files)
        return cls(len(current - set(old)), len(set(old) - current), modified)

    def any(self) -> bool:
        return bool(self.added or self.removed or self.modified)

    def __str__(self) -> str:
        return f"{self.added} added, {self.removed} removed, {self.modified} modified"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class _Stager:
    """One run of ``stage`` for a folder: resume or start a partial folder, fill it, swap it in
    (``staging``: the lock is held; the partial folder is made, adopted and swapped by it)."""

    def __init__(
        self,
        src: Path,
        staging: Staging,
        listing: Listing,
        previous: Optional[dict[str, Any]],
        force: bool,
        workers: int,
        reporter: Reporter,
    ) -> None:
        self.src = src
        self.staging = staging
        self.target = staging.target
        self.listing = listing
        self.previous = previous
        self.force = force
        self.workers = max(1, workers)
        self.reporter = reporter
        self.umask = _umask()
        self.done: dict[str, str] = {}  # path -> sha256 of a verified copy in the partial folder
        self.journal_lock = threading.Lock()

    def file_mode(self, info: FileInfo) -> int:
        """The source's permission bits less the umask: never wider than the source."""
        return info.mode & 0o777 & ~self.umask

    def dir_mode(self, mode: int) -> int:
        return (mode & 0o777 & ~self.umask) | 0o700

    def run(self) -> Path:
        partial = self.open_partial()
        self.make_dirs(partial)
        journal_path = partial / JOURNAL
        with (
            disk_full_as_error(self.target.parent, None, f"to stage {self.src}"),
            _append_journal(journal_path) as journal,
            ThreadPoolExecutor(self.workers) as pool,
        ):
            self.resume(partial, pool)
            self.reuse_previous(partial, journal, pool)
            self.make_links(partial)
            todo = [rel for rel in self.listing.files if rel not in self.done]
            self.copy_all(partial, todo, journal, pool)
        self.finish(partial)
        return self.target

    # -- the partial folder ------------------------------------------------------------------

    def open_partial(self) -> Path:
        """Our partial folder of a killed run of this source, or a new private one."""
        mine = [p for p in self.target.parent.glob(f".{self.target.name}.partial-*") if _ours(p)]
        keep = None
        if not self.force:
            same = [p for p in mine if _owner(p).get("source") == str(self.src)]
            keep = max(same, key=lambda p: p.stat().st_mtime, default=None)
        for leftover in mine:
            if leftover != keep:  # ours, dead (we hold the lock) and of no use
                remove_tree(leftover)
        if keep is not None:
            self.staging.adopt(keep)
            return keep
        partial = self.staging.make_partial()
        owner = {"made_by": PARTIAL_KIND, "partial": partial.name, "source": str(self.src)}
        fd = os.open(partial / PARTIAL_OWNER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(owner, f)
        return partial

    def make_dirs(self, partial: Path) -> None:
        for rel in self.listing.dirs:
            if rel:
                path = partial / rel
                if path.is_symlink() or (path.exists() and not path.is_dir()):
                    path.unlink()
                path.mkdir(mode=0o700, exist_ok=True)

    def resume(self, partial: Path, pool: ThreadPoolExecutor) -> None:
        """Keep the copies the journal vouches for and that still re-hash to it; drop the rest."""
        claimed: dict[str, str] = {}
        with contextlib.suppress(OSError), _open_nofollow(partial / JOURNAL) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                    rel, sha = str(rec["path"]), str(rec["sha256"])
                    seen = (rec["size"], rec["mtime_ns"], rec["ino"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash
                info = self.listing.files.get(rel)  # only names SRC has: no path from the file
                if info is not None and seen == (info.size, info.mtime_ns, info.ino):
                    claimed[rel] = sha
                else:
                    claimed.pop(rel, None)

        def intact(rel: str) -> bool:
            return _sha256_of(partial / rel, self.listing.files[rel].size) == claimed[rel]

        for rel, ok in zip(claimed, pool.map(intact, claimed)):
            if ok:
                self.done[rel] = claimed[rel]
        _remove_unvouched(partial, set(self.done), self.listing.dirs)
        if self.done:
            self.reporter.say(
                f"resuming: {len(self.done)} of {len(self.listing.files)} files already "
                "copied and verified"
            )

    def reuse_previous(self, partial: Path, journal: TextIO, pool: ThreadPoolExecutor) -> None:
        """Hard-link the files of the current staging whose source did not change.

        Each link is re-hashed against the marker's sha256 first: a staged copy edited in place
        (same size) is copied again from the source, not carried into the new staging.
        """
        if self.previous is None:
            return
        recorded = self.previous["files"]
        linked: list[tuple[str, FileInfo, str]] = []
        for rel, info in self.listing.files.items():
            record = recorded.get(rel)
            if rel in self.done or not record or "sha256" not in record:
                continue
            if (record["size"], record.get("mtime_ns")) != (info.size, info.mtime_ns):
                continue
            staged = self.target / rel
            try:
                st = os.lstat(staged)
                if not stat.S_ISREG(st.st_mode) or st.st_size != info.size:
                    continue
                os.link(staged, partial / rel, follow_symlinks=False)
            except OSError:
                continue  # copied from the source instead
            linked.append((rel, info, str(record["sha256"])))

        def intact(item: tuple[str, FileInfo, str]) -> bool:
            rel, info, sha = item
            return _sha256_of(partial / rel, info.size) == sha

        reused = 0
        for (rel, info, sha), ok in zip(linked, pool.map(intact, linked)):
            if not ok:
                os.unlink(partial / rel)  # edited in place: copied from the source instead
                continue
            os.chmod(partial / rel, self.file_mode(info))
            self.record(journal, rel, info, sha)
            reused += 1
        if reused:
            self.reporter.say(f"{reused} unchanged files kept from the current copy")

    def make_links(self, partial: Path) -> None:
        for rel, text in self.listing.links.items():
            os.symlink(text, partial / rel)

    # -- copying -----------------------------------------------------------------------------

    def copy_all(
        self, partial: Path, todo: list[str], journal: TextIO, pool: ThreadPoolExecutor
    ) -> None:
        files = self.listing.files
        src = str(self.src)
        needed = sum(files[r].size for r in todo)
        ensure_free(self.target.parent, needed, f"to stage {self.src}")
        bar = self.reporter.bar(f"staging {self.src.name}", needed)

        def copy(rel: str) -> None:
            info = files[rel]
            sha = _copy_file(
                f"{src}/{rel}", f"{partial}/{rel}", info, self.file_mode(info), bar.update
            )
            self.record(journal, rel, info, sha)

        # A bounded window of queued copies: memory stays flat at 100,000s of files.
        window: deque[Future[None]] = deque()
        try:
            for rel in todo:
                window.append(pool.submit(copy, rel))
                if len(window) >= 4 * self.workers:
                    window.popleft().result()
            while window:
                window.popleft().result()
        except BaseException:
            # Fail (or stop on Ctrl-C) now, not after every queued file was copied anyway.
            for future in window:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            bar.close()

    def record(self, journal: TextIO, rel: str, info: FileInfo, sha: str) -> None:
        line = json.dumps(
            {
                "path": rel,
                "size": info.size,
                "mtime_ns": info.mtime_ns,
                "ino": info.ino,
                "sha256": sha,
            }
        )
        with self.journal_lock:
            journal.write(line + "\n")
            journal.flush()
            self.done[rel] = sha

    # -- the end -----------------------------------------------------------------------------

    def finish(self, partial: Path) -> None:
        """Folder modes, the marker, then the swap; the journal and owner record go first.

        The partial folder itself stays 0700 (provably ours, for a resume) until it is in place.
        """
        for rel, mode in sorted(self.listing.dirs.items(), reverse=True):
            if rel:  # never wider than the source; the owner keeps rwx to update and remove it
                os.chmod(partial / rel, self.dir_mode(mode))
        files: dict[str, Any] = {rel: {"symlink": text} for rel, text in self.listing.links.items()}
        for rel, info in self.listing.files.items():
            files[rel] = {"size": info.size, "sha256": self.done[rel], "mtime_ns": info.mtime_ns}
        marker = {
            "format": MARKER_FORMAT,
            "name": self.target.name,
            "content_key": "folder:" + hashlib.sha256(str(self.src).encode()).hexdigest(),
            "root": "",
            "source": str(self.src),
            "datastage": __version__,
            "staged_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": dict(sorted(files.items())),
            "empty_dirs": sorted(self.listing.empty_dirs),
        }
        write_atomic(partial / MARKER, json.dumps(marker, separators=(",", ":")).encode())
        os.chmod(partial / MARKER, 0o644 & ~self.umask)
        # Without its journal and owner record no run can resume (or remove) this folder: a
        # refusal at the swap must remove it, not keep it hidden in DIR.
        self.staging.resumable = False
        (partial / JOURNAL).unlink()
        (partial / PARTIAL_OWNER).unlink()
        self.staging.swap()
        os.chmod(self.target, self.dir_mode(self.listing.dirs[""]))


# -- helpers ---------------------------------------------------------------------------------


def _ours(folder: Path) -> bool:
    """A partial folder this user's datastage made: a real 0700 folder of ours with our record."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return False
    if stat.S_IMODE(st.st_mode) != 0o700:
        return False
    owner = _owner(folder)
    return owner.get("made_by") == PARTIAL_KIND and owner.get("partial") == folder.name


def _owner(folder: Path) -> dict[str, Any]:
    try:
        with _open_nofollow(folder / PARTIAL_OWNER) as f:
            owner = json.load(f)
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _open_nofollow(path: Path) -> TextIO:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return os.fdopen(fd, encoding="utf-8")


@contextlib.contextmanager
def _append_journal(path: Path) -> Any:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        yield f


def _remove_unvouched(partial: Path, done: Iterable[str], dirs: Iterable[str]) -> None:
    """Temporary files, links, unverified copies and folders SRC no longer has, of a killed run.

    Nothing vouches for them; a folder left where SRC now has a file would fail every resume.
    """
    keep = set(done) | {JOURNAL, PARTIAL_OWNER}
    keep_dirs = set(dirs)
    for folder, subdirs, names in os.walk(partial, topdown=False):
        for n in names + [d for d in subdirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, n)
            rel = os.path.relpath(path, partial).replace(os.sep, "/")
            if rel not in keep:
                os.unlink(path)
        rel_folder = os.path.relpath(folder, partial).replace(os.sep, "/")
        if rel_folder != "." and rel_folder not in keep_dirs:
            os.rmdir(folder)  # emptied above: a kept file's folder is always a listed one


def _sha256_of(path: Path, size: int) -> Optional[str]:
    """sha256 of a regular file of exactly ``size`` bytes (links not followed), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return None
        h = hashlib.sha256()
        while chunk := f.read(COPY_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _copy_file(src: str, dest: str, info: FileInfo, mode: int, on_bytes: Any) -> str:
    """Copy one listed file, hashing it as it is read, then read the copy back and compare.

    Written straight under its final name: the partial folder is private, and a copy counts
    only once its journal line is written, after this returns (a killed run's half-written file
    has none and is removed by the next run).
    """
    h = hashlib.sha256()
    copied = 0
    fd = open_listed(src, info)
    try:
        with os.fdopen(fd, "rb", buffering=0) as fin:
            out = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                # never more than listed (+1 to notice growth): a file cannot fill the disk
                while chunk := fin.read(min(COPY_CHUNK, info.size + 1 - copied)):
                    _write_all(out, chunk)
                    h.update(chunk)
                    copied += len(chunk)
                    on_bytes(len(chunk))
                    if copied > info.size:
                        break
                check_unchanged(fin.fileno(), src, info, copied)
                if _sha256_fd(out, info.size) != h.hexdigest():
                    raise IntegrityError(f"the copy of {src} differs from what was read")
                os.fchmod(out, mode)
            finally:
                os.close(out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(dest)
        raise
    return h.hexdigest()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sha256_fd(fd: int, size: int) -> str:
    """sha256 of what an open file holds now (read back with pread: no second open)."""
    h = hashlib.sha256()
    offset = 0
    while offset < size + 1:
        chunk = os.pread(fd, min(COPY_CHUNK, size + 1 - offset), offset)
        if not chunk:
            break
        h.update(chunk)
        offset += len(chunk)
    return h.hexdigest()
