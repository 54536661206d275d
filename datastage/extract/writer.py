"""SafeWriter: the one place archive members become files, whatever the format.

Owns: the safety rules below, the size budget (zip bombs), and recording each file's size and
sha256 for the completion marker. Files are written and hashed in worker threads (workers.py;
hashlib, zlib and file writes release the GIL), so hashing costs no extra pass over the data.
Does not own: reading archives (the format modules) or where the root is (stage/staging.py).

Safety rules, the same for every format:
- a member name must be relative and stay inside the root: absolute paths, drive letters,
  ``..`` components (with ``/`` or ``\\`` separators) and NUL bytes refuse the archive;
- device, FIFO and other special members refuse the archive;
- hard links must name a regular file extracted earlier from the same archive;
- symbolic links are created *after* every regular file of the archive, never written
  through, must be relative, and must resolve inside the root once all of them exist;
- the last member of a name wins, as in tar (a file after a link of that name replaces it);
- no member is written through a symlink, and files are created with O_EXCL|O_NOFOLLOW;
- a name part over 255 bytes or a path over 4096 refuses the archive (before anything is
  written, not as an OSError half-way);
- at the dataset's top, the names of datastage's marker files (RESERVED_NAMES) are ours: a file
  or link member of that name is left out, a folder of that name refuses the archive.
The first violation raises UnsafeArchiveMember naming the member; the caller discards the
whole partial folder, so a refused archive leaves nothing behind.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..core.errors import ArchiveTooLarge, InsufficientSpace, UnsafeArchiveMember
from ..core.fsutil import free_bytes
from ..core.names import RESERVED_NAMES
from ..core.units import human_bytes
from .workers import Workers

READ_CHUNK = 1 << 20

ChunkSource = Callable[[], Iterable[bytes]]
#: Longest file name (bytes) and path the usual Linux file systems hold.
NAME_MAX = 255
PATH_MAX = 4096
_CREATE = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_UMASK_LOCK = threading.Lock()


@dataclass
class SizeBudget:
    """How many bytes an extraction may write: what was declared, or the free space."""

    limit: int
    declared_by: str  # "the archive's own listing", "the manifest (unpacked_size)"
    used: int = 0
    #: Nothing was declared: the limit is the free space of this folder, and going over it is
    #: a full disk (InsufficientSpace), stopped before the disk is really full.
    free_space_of: Optional[Path] = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def spend(self, n: int, archive: str) -> None:
        with self._lock:
            self.used += n
            over = self.used > self.limit
        if over and self.free_space_of is not None:
            raise InsufficientSpace(
                str(self.free_space_of),
                None,
                free_bytes(self.free_space_of),
                f"to extract {archive}",
            )
        if over:
            raise ArchiveTooLarge(
                f"{archive} unpacks to more than the {human_bytes(self.limit)} declared by "
                f"{self.declared_by}; extraction stopped (a zip bomb or a damaged archive)",
                hint="nothing was staged; if the manifest's unpacked_size is wrong, fix it",
            )


class SafeWriter:
    """Creates archive members under ``root`` and records them as ``prefix/<member>``.

    ``strip`` drops that many leading folders from every member name (like tar's
    ``--strip-components``); members with nothing left are skipped.

    Every per-member step is O(1): the writer remembers what it created (names it claimed,
    folders it made), so a member going into a folder this writer made needs no ``lstat`` to
    know its name is free; the worker threads keep their own books the same way (workers.py).
    """

    def __init__(
        self,
        root: Path,
        prefix: str,
        archive: str,
        record: dict[str, Any],
        budget: Optional[SizeBudget] = None,
        strip: int = 0,
    ) -> None:
        self.root = root
        self._root = os.fspath(root)
        self.real_root = os.path.realpath(root)
        self.prefix = prefix
        self.archive = archive
        self.record = record
        self.budget = budget
        self.strip = strip
        self._dirs: set[str] = {""}
        #: folders whose every entry this writer made (so their contents are known without
        #: asking the disk): the ones it created, and the root if it started empty
        self._made: set[str] = {""} if _empty(self._root) else set()
        #: names of regular files (and hard links) this writer created or is creating
        self._claimed: set[str] = set()
        #: deferred symlinks, name -> target (a later member of the same name replaces one)
        self._symlinks: dict[str, str] = {}
        self._workers = Workers()  # file writes (and hashing) in worker threads
        self._lock = threading.Lock()  # the record, written by the workers too
        self._umask = _umask()

    # names -------------------------------------------------------------------------------
    def refuse(self, member: str, reason: str) -> UnsafeArchiveMember:
        return UnsafeArchiveMember(
            f"unsafe member {member!r} in {self.archive}: {reason}; the archive was not extracted",
            hint="the archive may be malicious or damaged; get it from a trusted source",
        )

    def check_name(self, member: str) -> str:
        """The member's cleaned path (before stripping), or UnsafeArchiveMember."""
        if "\0" in member:
            raise self.refuse(member, "NUL byte in name")
        if member.startswith(("/", "\\")) or (len(member) > 1 and member[1] == ":"):
            raise self.refuse(member, "absolute path")
        parts = [p for p in member.split("/") if p not in ("", ".")]
        if ".." in member and any(".." in p.split("\\") for p in parts):
            raise self.refuse(member, "path leads outside the target ('..')")
        if len(member) > NAME_MAX // 4:  # only then may a part be over NAME_MAX bytes
            self._check_lengths(member, parts)
        return "/".join(parts)

    def _check_lengths(self, member: str, parts: list[str]) -> None:
        """Names the file system cannot hold are the archive's fault (exit 6), not ours."""
        encoded = [os.fsencode(p) for p in parts]
        longest = max(encoded, key=len, default=b"")
        if len(longest) > NAME_MAX:
            raise self.refuse(member, f"a name of {len(longest)} bytes (the limit is {NAME_MAX})")
        if len(os.fsencode(self._root)) + sum(len(p) + 1 for p in encoded) >= PATH_MAX:
            raise self.refuse(member, f"the path is longer than {PATH_MAX} bytes")

    def clean_name(self, member: str) -> str:
        """The member's path relative to the root ("" if stripped away), or UnsafeArchiveMember."""
        rel = self.check_name(member)
        if self.strip:
            rel = "/".join(rel.split("/")[self.strip :])
        return rel

    def _recorded_name(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _path(self, rel: str) -> str:
        return f"{self._root}/{rel}"

    # members -----------------------------------------------------------------------------
    def directory(self, member: str) -> None:
        rel = self.clean_name(member)
        if rel:
            self._refuse_reserved(member, rel, is_dir=True)
            self._make_dirs(member, rel)

    def file(
        self, member: str, chunks: Iterable[bytes], mode: int = 0o644, mtime: Optional[float] = None
    ) -> None:
        """Write a member now, in this thread (for large or streamed members)."""
        rel = self._plan(member)
        if rel is not None:
            self._write(rel, chunks, mode, mtime)

    def file_later(
        self,
        member: str,
        source: ChunkSource,
        mode: int = 0o644,
        mtime: Optional[float] = None,
        queued_bytes: int = 0,
    ) -> None:
        """Write a member in a worker thread; ``source()`` yields its bytes there.

        ``queued_bytes`` is how much memory ``source`` holds until it runs (member data
        already read); the caller blocks while too much is queued.
        """
        rel = self._plan(member)
        if rel is None:
            return
        self._workers.reserve(queued_bytes)

        def job() -> None:
            try:
                self._write(rel, source(), mode, mtime)
            finally:
                self._workers.release(queued_bytes)

        self._workers.put(rel, job, queued_bytes)

    def sink(self, member: str, mode: int = 0o644) -> Optional[MemberSink]:
        """A file to ``write()`` a member into (for libraries that push bytes); None if stripped."""
        rel = self._plan(member)
        return None if rel is None else MemberSink(self, rel, mode)

    def adopt(self, member: str, src: Path, mode: int = 0o644) -> None:
        """Move a regular file an external tool wrote (in our private folder) into place."""
        rel = self._plan(member)
        if rel is None:
            return
        os.rename(src, self._path(rel))
        self._workers.put(rel, lambda: self._hash_adopted(rel, mode), 0)

    def hardlink(self, member: str, target: str) -> None:
        rel = self.clean_name(member)
        try:
            target_rel = self.clean_name(target)
        except UnsafeArchiveMember:  # name the member, not only its link target
            raise self.refuse(member, f"hard link to {target!r} leads outside the target") from None
        if not rel:
            return
        self._workers.wait_for(target_rel)
        source = self._recorded(target_rel)
        if source is not None and target_rel == rel:
            return  # GNU tar stores a file archived twice as a link to itself: it is there
        if source is None:
            raise self.refuse(
                member, f"hard link to {target!r}, which is not a file extracted before it"
            )
        self._refuse_reserved(member, rel, is_dir=False)
        self._symlinks.pop(rel, None)  # the last member of a name wins, as in tar
        path = self._prepare(member, rel)
        try:
            os.link(self._path(target_rel), path, follow_symlinks=False)
        except OSError as e:  # file systems without hard links get a copy
            self._refuse_too_long(member, e)
            with open(self._path(target_rel), "rb") as src, open(path, "xb") as dst:
                while chunk := src.read(READ_CHUNK):
                    dst.write(chunk)
        if self.budget is not None:
            self.budget.spend(source["size"], self.archive)
        self._remember(rel, source["size"], source["sha256"])

    def symlink(self, member: str, target: str) -> None:
        rel = self.clean_name(member)
        if not rel:
            return
        if not target or target.startswith(("/", "\\")) or (len(target) > 1 and target[1] == ":"):
            raise self.refuse(member, f"symlink to absolute path {target!r}")
        if "\0" in target:
            raise self.refuse(member, "NUL byte in link target")
        lexical = os.path.normpath(os.path.join(os.path.dirname(rel), target))
        if lexical == ".." or lexical.startswith("../"):
            raise self.refuse(member, f"symlink leads outside the target ({target!r})")
        if self._reserved(rel):
            return  # the marker takes that name, as for a file member
        self._refuse_reserved(member, rel, is_dir=False)
        self._symlinks.pop(rel, None)
        self._symlinks[rel] = target

    @property
    def wrote_anything(self) -> bool:
        """Whether this archive gave at least one file, link or folder (an empty one is an
        error for the caller, not an empty dataset)."""
        return bool(self._claimed or self._symlinks or len(self._dirs) > 1)

    def special(self, member: str, what: str) -> None:
        raise self.refuse(member, f"{what} members are not allowed")

    def finish(self) -> None:
        """Wait for the workers; create the deferred symlinks, checking each resolves inside."""
        self.drain()
        for rel, target in self._symlinks.items():
            path = self._prepare(rel, rel)
            try:
                os.symlink(target, path)
            except OSError as e:
                self._refuse_too_long(rel, e)
                raise
        for rel, target in self._symlinks.items():
            resolved = os.path.realpath(self._path(rel))
            if not _inside(resolved, self.real_root):
                raise self.refuse(rel, f"symlink leads outside the target ({target!r})")
            self.record[self._recorded_name(rel)] = {"symlink": target}

    def drain(self) -> None:
        """Wait for every queued write; re-raise the first failure."""
        self._workers.drain()

    def abort(self) -> None:
        """Stop the workers after a failure (the caller removes the partial folder)."""
        self._workers.abort()

    # helpers -----------------------------------------------------------------------------
    def _plan(self, member: str) -> Optional[str]:
        """Check the name and make room for a file member; None if stripped away."""
        rel = self.clean_name(member)
        if not rel:
            if self.check_name(member) and self.strip:
                return None  # a file above the stripped depth, as tar --strip-components skips
            raise self.refuse(member, "a file member without a name")
        if self._reserved(rel):
            return None  # the marker takes that name; the member is left out, as before
        self._refuse_reserved(member, rel, is_dir=False)
        self._symlinks.pop(rel, None)  # the last member of a name wins, as in tar
        self._prepare(member, rel)
        return rel

    def _reserved(self, rel: str) -> bool:
        """A file member named like datastage's own marker files at the dataset's top."""
        return not self.prefix and rel in RESERVED_NAMES

    def _refuse_reserved(self, member: str, rel: str, is_dir: bool) -> None:
        """A folder (or a path through one) named like the marker would take its place."""
        if self.prefix:
            return
        top, sep, _ = rel.partition("/")
        if top in RESERVED_NAMES and (sep or is_dir):
            raise self.refuse(member, f"{top!r} is the name of datastage's completion marker")

    def _refuse_too_long(self, member: str, e: OSError) -> None:
        if e.errno == errno.ENAMETOOLONG:
            raise self.refuse(member, "the name is too long for the file system") from e

    def _write(self, rel: str, chunks: Iterable[bytes], mode: int, mtime: Optional[float]) -> None:
        hasher = hashlib.sha256()
        size = 0
        fd = self._create(rel, mode)
        try:
            for chunk in chunks:
                if self.budget is not None:
                    self.budget.spend(len(chunk), self.archive)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                hasher.update(chunk)
                size += len(chunk)
            if mtime is not None:
                os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        self._remember(rel, size, hasher.hexdigest())

    def _create(self, rel: str, mode: int) -> int:
        """Open a new file for a member; the file system's refusals become the archive's."""
        try:
            return os.open(self._path(rel), _CREATE, 0o755 if mode & 0o111 else 0o644)
        except FileExistsError:  # e.g. names differing only in case, on a folding file system
            raise self.refuse(rel, "another member already has this name here") from None
        except OSError as e:
            self._refuse_too_long(rel, e)  # a file system with a shorter limit than 255
            raise

    def _hash_adopted(self, rel: str, mode: int) -> None:
        hasher = hashlib.sha256()
        size = 0
        path = self._path(rel)
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(READ_CHUNK):
                if self.budget is not None:
                    self.budget.spend(len(chunk), self.archive)
                hasher.update(chunk)
                size += len(chunk)
        os.chmod(path, (0o755 if mode & 0o111 else 0o644) & ~self._umask)
        self._remember(rel, size, hasher.hexdigest())

    def _make_dirs(self, member: str, rel: str) -> None:
        if rel in self._dirs:
            return
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub in self._dirs:
                continue
            if sub in self._symlinks:  # links are made last; refuse what would go through
                raise self.refuse(member, f"would be written through the symlink {sub!r}")
            if sub in self._claimed:
                self._workers.wait_for(sub)  # a file of that name may still be being written
                raise self.refuse(member, f"{sub!r} is a file, not a folder")
            path = self._path(sub)
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    raise self.refuse(
                        member, f"would be written through the symlink {sub!r}"
                    ) from None
                if not stat.S_ISDIR(st.st_mode):
                    raise self.refuse(member, f"{sub!r} is a file, not a folder") from None
            except OSError as e:
                self._refuse_too_long(member, e)
                raise
            else:
                self._made.add(sub)
            self._dirs.add(sub)

    def _prepare(self, member: str, rel: str) -> str:
        """Make the parent folders; clear the final name (a later member replaces an earlier).

        Returns the path to create. Costs no system call when the parent folder is one this
        writer made and the name is new (the usual case: one member, one name).
        """
        parent = rel.rpartition("/")[0]
        if parent not in self._dirs:
            self._make_dirs(member, parent)
        if rel in self._dirs:
            raise self.refuse(member, "a folder of the same name was extracted before it")
        path = self._path(rel)
        ours = rel in self._claimed
        if not ours:
            self._claimed.add(rel)
            if parent in self._made:
                return path  # nothing of that name: this writer made the folder and not it
        self._workers.wait_for(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return path
        if stat.S_ISDIR(st.st_mode):
            raise self.refuse(member, "a folder of the same name was extracted before it")
        os.unlink(path)
        with self._lock:
            old = self.record.pop(self._recorded_name(rel), None)
        if ours and old is not None and self.budget is not None and "size" in old:
            self.budget.spend(-old["size"], self.archive)  # replaced, no longer on disk
        return path

    def _recorded(self, rel: str) -> Optional[dict[str, Any]]:
        """What this writer recorded for a regular file it created (None: not one of ours)."""
        if rel not in self._claimed:
            return None
        entry = self.record.get(self._recorded_name(rel))
        return entry if entry is not None and "sha256" in entry else None

    def _remember(self, rel: str, size: int, sha256: str) -> None:
        entry = {"size": size, "sha256": sha256}
        name = self._recorded_name(rel)
        with self._lock:
            self.record[name] = entry


class MemberSink:
    """Push-style counterpart of ``SafeWriter.file``: write(), then close() records the file."""

    def __init__(self, writer: SafeWriter, rel: str, mode: int) -> None:
        self._writer = writer
        self._rel = rel
        self._fd = writer._create(rel, mode)
        self._hasher = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes) -> int:
        if self._writer.budget is not None:
            self._writer.budget.spend(len(data), self._writer.archive)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._hasher.update(data)
        self._size += len(data)
        return len(data)

    def skip(self, n: int) -> None:
        """A hole of ``n`` zero bytes (tar sparse members): counted and hashed, never written."""
        if n <= 0:
            return
        if self._writer.budget is not None:
            self._writer.budget.spend(n, self._writer.archive)
        os.lseek(self._fd, n, os.SEEK_CUR)
        zeros = bytes(min(n, READ_CHUNK))
        while n > 0:
            self._hasher.update(zeros[: min(n, len(zeros))])
            n -= len(zeros)

    def close(self) -> None:
        if self._fd < 0:
            return
        os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_CUR))  # a file ending in a hole
        os.close(self._fd)
        self._fd = -1
        self._writer._remember(self._rel, self._size, self._hasher.hexdigest())


def without_umask(mode: int) -> int:
    """``mode`` as the user's umask allows it: an explicit chmod must not widen what
    ``open``/``mkdir`` would have created (a umask of 077 keeps a dataset private)."""
    return mode & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it (os.umask sets it: racy with threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # no /proc (macOS): set and restore it once
        current = os.umask(0o22)
        os.umask(current)
    return current


def _empty(folder: str) -> bool:
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
