"""SafeWriter: the one place archive members become files, whatever the format.

Owns: the safety rules below, the size budget (zip bombs), and recording each file's size and
sha256 for the completion marker. Files are written and hashed in worker threads (hashlib, zlib
and file writes release the GIL), so hashing costs no extra pass over the data.
Does not own: reading archives (the format modules) or where the root is (stage.py).

Safety rules, the same for every format:
- a member name must be relative and stay inside the root: absolute paths, drive letters,
  ``..`` components (with ``/`` or ``\\`` separators) and NUL bytes refuse the archive;
- device, FIFO and other special members refuse the archive;
- hard links must name a regular file extracted earlier from the same archive;
- symbolic links are created *after* every regular file of the archive, never written
  through, must be relative, and must resolve inside the root once all of them exist;
- no member is written through a symlink, and files are created with O_EXCL|O_NOFOLLOW.
The first violation raises UnsafeArchiveMember naming the member; the caller discards the
whole partial folder, so a refused archive leaves nothing behind.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..digests import Hasher
from ..errors import ArchiveTooLarge, InsufficientSpace, UnsafeArchiveMember
from ..fsutil import free_bytes
from ..units import human_bytes

READ_CHUNK = 1 << 20
#: Worker threads that write and hash files; more than the cores helps hide file-system latency.
WRITE_THREADS = max(2, min(8, 2 * (os.cpu_count() or 1)))
#: Bytes of member data queued for the workers at most (keeps peak RSS bounded).
MAX_QUEUED_BYTES = 64 * 1024 * 1024

ChunkSource = Callable[[], Iterable[bytes]]


@dataclass(frozen=True)
class Recorded:
    size: int
    sha256: str


@dataclass
class Budget:
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
    """

    def __init__(
        self,
        root: Path,
        prefix: str,
        archive: str,
        record: dict[str, Any],
        budget: Optional[Budget] = None,
        strip: int = 0,
    ) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.prefix = prefix
        self.archive = archive
        self.record = record
        self.budget = budget
        self.strip = strip
        self._dirs: set[str] = {""}
        self._files: dict[str, Recorded] = {}
        self._symlinks: list[tuple[str, str]] = []
        self._link_names: set[str] = set()
        self._pending: dict[str, Future[None]] = {}
        self._pool: Optional[ThreadPoolExecutor] = None
        self._queued = 0
        self._queue_cv = threading.Condition()
        self._lock = threading.Lock()

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
        if any(".." in p.split("\\") for p in parts):
            raise self.refuse(member, "path leads outside the target ('..')")
        return "/".join(parts)

    def clean_name(self, member: str) -> str:
        """The member's path relative to the root ("" if stripped away), or UnsafeArchiveMember."""
        rel = self.check_name(member)
        if self.strip:
            rel = "/".join(rel.split("/")[self.strip :])
        return rel

    def _recorded_name(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    # members -----------------------------------------------------------------------------
    def directory(self, member: str) -> None:
        rel = self.clean_name(member)
        if rel:
            self._make_dirs(member, rel)

    def file(
        self, member: str, chunks: Iterable[bytes], mode: int = 0o644, mtime: Optional[float] = None
    ) -> None:
        """Write a member now, in this thread (for large or streamed members)."""
        path = self._plan(member)
        if path is not None:
            self._write(member, path, chunks, mode, mtime)

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
        path = self._plan(member)
        if path is None:
            return
        self._reserve(queued_bytes)

        def job() -> None:
            try:
                self._write(member, path, source(), mode, mtime)
            finally:
                self._release(queued_bytes)

        rel = self._rel_of(path)
        self._pending[rel] = self._executor().submit(job)
        self._raise_failures()

    def sink(self, member: str, mode: int = 0o644) -> Optional[MemberSink]:
        """A file to ``write()`` a member into (for libraries that push bytes); None if stripped."""
        path = self._plan(member)
        return None if path is None else MemberSink(self, path, mode)

    def adopt(self, member: str, src: Path, mode: int = 0o644) -> None:
        """Move a regular file an external tool wrote (in our private folder) into place."""
        path = self._plan(member)
        if path is None:
            return
        os.rename(src, path)
        rel = self._rel_of(path)
        self._pending[rel] = self._executor().submit(self._hash_adopted, member, path, mode)
        self._raise_failures()

    def hardlink(self, member: str, target: str) -> None:
        rel = self.clean_name(member)
        try:
            target_rel = self.clean_name(target)
        except UnsafeArchiveMember:  # name the member, not only its link target
            raise self.refuse(member, f"hard link to {target!r} leads outside the target") from None
        if not rel:
            return
        self._wait_for(target_rel)
        source = self._files.get(target_rel)
        if source is not None and target_rel == rel:
            return  # GNU tar stores a file archived twice as a link to itself: it is there
        if source is None:
            raise self.refuse(
                member, f"hard link to {target!r}, which is not a file extracted before it"
            )
        path = self._prepare(member, rel)
        try:
            os.link(self.root / target_rel, path, follow_symlinks=False)
        except OSError:  # file systems without hard links get a copy
            with open(self.root / target_rel, "rb") as src, open(path, "xb") as dst:
                while chunk := src.read(READ_CHUNK):
                    dst.write(chunk)
        if self.budget is not None:
            self.budget.spend(source.size, self.archive)
        self._remember(rel, source)

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
        self._symlinks.append((rel, target))
        self._link_names.add(rel)

    @property
    def wrote_anything(self) -> bool:
        """Whether this archive gave at least one file, link or folder (an empty one is an
        error for the caller, not an empty dataset)."""
        return bool(self._files or self._symlinks or len(self._dirs) > 1)

    def special(self, member: str, what: str) -> None:
        raise self.refuse(member, f"{what} members are not allowed")

    def finish(self) -> None:
        """Wait for the workers; create the deferred symlinks, checking each resolves inside."""
        self.drain()
        for rel, target in self._symlinks:
            path = self._prepare(rel, rel)
            os.symlink(target, path)
        for rel, target in self._symlinks:
            resolved = os.path.realpath(self.root / rel)
            if not _inside(resolved, self.real_root):
                raise self.refuse(rel, f"symlink leads outside the target ({target!r})")
            self.record[self._recorded_name(rel)] = {"symlink": target}

    def drain(self) -> None:
        """Wait for every queued write; re-raise the first failure."""
        pending, self._pending = self._pending, {}
        try:
            for future in pending.values():
                future.result()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def abort(self) -> None:
        """Stop the workers after a failure (the caller removes the partial folder)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()

    # helpers -----------------------------------------------------------------------------
    def _plan(self, member: str) -> Optional[Path]:
        """Check the name and make room for a file member; None if stripped away."""
        rel = self.clean_name(member)
        if not rel:
            if self.check_name(member) and self.strip:
                return None  # a file above the stripped depth, as tar --strip-components skips
            raise self.refuse(member, "a file member without a name")
        return self._prepare(member, rel)

    def _rel_of(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _write(
        self, member: str, path: Path, chunks: Iterable[bytes], mode: int, mtime: Optional[float]
    ) -> None:
        hasher = Hasher()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o755 if mode & 0o111 else 0o644)
        with os.fdopen(fd, "wb", buffering=0) as out:
            for chunk in chunks:
                if self.budget is not None:
                    self.budget.spend(len(chunk), self.archive)
                out.write(chunk)
                hasher.update(chunk)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        self._remember(self._rel_of(path), Recorded(hasher.size, hasher.hexdigests()["sha256"]))

    def _hash_adopted(self, member: str, path: Path, mode: int) -> None:
        hasher = Hasher()
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(READ_CHUNK):
                if self.budget is not None:
                    self.budget.spend(len(chunk), self.archive)
                hasher.update(chunk)
        os.chmod(path, 0o755 if mode & 0o111 else 0o644)
        self._remember(self._rel_of(path), Recorded(hasher.size, hasher.hexdigests()["sha256"]))

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="datastage-write")
        return self._pool

    def _reserve(self, n: int) -> None:
        with self._queue_cv:
            while self._queued and self._queued + n > MAX_QUEUED_BYTES:
                self._queue_cv.wait(0.5)
                self._raise_failures()
            self._queued += n

    def _release(self, n: int) -> None:
        with self._queue_cv:
            self._queued -= n
            self._queue_cv.notify_all()

    def _raise_failures(self) -> None:
        """Surface a worker's error promptly instead of after the whole archive is read."""
        if len(self._pending) < 256:
            return
        done = [rel for rel, f in self._pending.items() if f.done()]
        for rel in done:
            self._pending.pop(rel).result()

    def _wait_for(self, rel: str) -> None:
        future = self._pending.pop(rel, None)
        if future is not None:
            future.result()

    def _make_dirs(self, member: str, rel: str) -> None:
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub in self._dirs:
                continue
            if sub in self._link_names:  # links are made last; refuse what would go through
                raise self.refuse(member, f"would be written through the symlink {sub!r}")
            self._wait_for(sub)  # a file of that name may still be being written
            path = self.root / sub
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                os.mkdir(path, 0o755)
            else:
                if stat.S_ISLNK(st.st_mode):
                    raise self.refuse(member, f"would be written through the symlink {sub!r}")
                if not stat.S_ISDIR(st.st_mode):
                    raise self.refuse(member, f"{sub!r} is a file, not a folder")
            self._dirs.add(sub)

    def _prepare(self, member: str, rel: str) -> Path:
        """Make the parent folders; clear the final name (a later member replaces an earlier)."""
        parent = rel.rpartition("/")[0]
        if parent:
            self._make_dirs(member, parent)
        self._wait_for(rel)
        path = self.root / rel
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return path
        if stat.S_ISDIR(st.st_mode):
            raise self.refuse(member, "a folder of the same name was extracted before it")
        os.unlink(path)
        with self._lock:
            old = self._files.pop(rel, None)
            self.record.pop(self._recorded_name(rel), None)
        if old is not None and self.budget is not None:
            self.budget.spend(-old.size, self.archive)  # replaced, no longer on disk
        return path

    def _remember(self, rel: str, recorded: Recorded) -> None:
        with self._lock:
            self._files[rel] = recorded
            self.record[self._recorded_name(rel)] = {
                "size": recorded.size,
                "sha256": recorded.sha256,
            }


class MemberSink:
    """Push-style counterpart of ``SafeWriter.file``: write(), then close() records the file."""

    def __init__(self, writer: SafeWriter, path: Path, mode: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        self._writer = writer
        self._path = path
        self._fd = os.open(path, flags, 0o755 if mode & 0o111 else 0o644)
        self._hasher = Hasher()

    def write(self, data: bytes) -> int:
        if self._writer.budget is not None:
            self._writer.budget.spend(len(data), self._writer.archive)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._hasher.update(data)
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
        recorded = Recorded(self._hasher.size, self._hasher.hexdigests()["sha256"])
        self._writer._remember(self._writer._rel_of(self._path), recorded)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
