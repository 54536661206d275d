"""Reading a user's folder without trusting it: the listing ``stage SRC`` and ``pack`` work from.

A user's folder (often a network mount) may hold symlinks, FIFOs, devices and files that change
while they are read. The rules, for both commands:

- Symlinks are never followed. A link is kept as a link; its target must resolve inside the
  folder, or the whole run is refused (exit 6, naming the link). A target that is relative and
  only goes down (``b.wav``, ``sub/x``) is kept as written; any other (absolute, or with ``..``)
  is rewritten as the relative path of what it resolves to, so the copy's link resolves inside
  the copy whatever the copy's folder is called.
- Folders are walked through descriptors: each is opened with ``O_NOFOLLOW`` and must be the
  folder (device, inode) its parent listed, so a folder swapped for a link mid-listing is never
  entered (exit 5, "changed while it was staged").
- FIFOs, sockets and devices are skipped with one warning line each: opening a FIFO blocks
  forever and ``/dev/zero`` never ends.
- A regular file is opened with ``O_NOFOLLOW | O_NONBLOCK`` and must still be the file that was
  listed (regular, same inode, size and mtime), else the run fails (exit 5, "changed while it was
  staged"); it is read up to its listed size plus one byte, never more.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Optional

from ..core.errors import IntegrityError, UnsafeArchiveMember, UsageError
from ..core.names import RESERVED_NAMES

#: Top-level names of the folder that are datastage's own (a staged copy used as SRC).
OWN_PREFIX = ".datastage"
#: Of those, the records of a staged copy: skipped without a word. Any other ``.datastage*``
#: name (a cache, a crashed run's temporary folder, or the user's own file) is skipped with a
#: warning naming it: never dropped silently.
OWN_RECORDS = RESERVED_NAMES | {".datastage-journal.jsonl", ".datastage-partial.json"}


class FileInfo(NamedTuple):
    """What the listing saw of one regular file (lstat, no file opened); a tuple: small."""

    size: int
    mtime_ns: int
    ino: int
    mode: int  # permission bits only
    dev: int = 0


@dataclass
class Listing:
    """A folder's regular files, links and folders, relative POSIX paths in walk order."""

    files: dict[str, FileInfo] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # path -> link text, safe to recreate
    dirs: dict[str, int] = field(default_factory=dict)  # path -> permission bits; "" = the root
    empty_dirs: list[str] = field(default_factory=list)  # folders with nothing kept inside

    def entries(self) -> int:
        return len(self.files) + len(self.links)


def list_tree(src: Path, warn: Callable[[str], None]) -> Listing:
    """Walk ``src`` without following links (one lstat per entry, from the directory read)."""
    listing = Listing()
    root_real = os.path.realpath(src)
    listing.dirs[""] = stat.S_IMODE(os.stat(src).st_mode)
    for rel_dir, folder, entries in _walk(str(src)):
        kept = 0
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            path = os.path.join(folder, entry.name)
            if not rel_dir and entry.name.startswith(OWN_PREFIX):
                if entry.name not in OWN_RECORDS:
                    warn(f"skipped {path}: names starting {OWN_PREFIX} are datastage's own")
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                raise UsageError(f"cannot read {path}: {e.strerror or e}") from e
            kind = stat.S_IFMT(st.st_mode)
            if kind == stat.S_IFREG:
                mode = stat.S_IMODE(st.st_mode)
                listing.files[rel] = FileInfo(
                    st.st_size, st.st_mtime_ns, st.st_ino, mode, st.st_dev
                )
            elif kind == stat.S_IFLNK:
                listing.links[rel] = safe_link(path, root_real, rel_dir)
            elif kind == stat.S_IFDIR:
                listing.dirs[rel] = stat.S_IMODE(st.st_mode)
            else:
                warn(f"skipped {path}: {_kind_name(kind)}, not a regular file")
                continue
            kept += 1
        if rel_dir and not kept:
            listing.empty_dirs.append(rel_dir)
    return listing


def _walk(top: str) -> Iterator[tuple[str, str, list[os.DirEntry[str]]]]:
    """(relative folder, its path, its entries sorted by name), depth first; links not entered.

    Each folder is opened with ``O_NOFOLLOW`` and must be the very folder its parent listed
    (same device and inode): a folder swapped for a link (or another folder) while the listing
    runs is never walked into. Entries are read from that descriptor, so a path swapped later
    does not matter either.
    """
    top_fd = _open_dir(top, None)
    stack: list[tuple[str, int, tuple[int, int]]] = [("", top_fd, (0, 0))]
    while stack:
        rel_dir, fd, seen = stack.pop()
        folder = os.path.join(top, rel_dir) if rel_dir else top
        if fd < 0:
            fd = _open_dir(folder, seen)
        try:
            try:
                with os.scandir(fd) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                raise UsageError(f"cannot list {folder}: {e.strerror or e}") from e
            yield rel_dir, folder, entries  # entry.stat() reads through fd: keep it open
            subdirs = []
            for entry in entries:
                if not rel_dir and entry.name.startswith(OWN_PREFIX):
                    continue
                st = entry.stat(follow_symlinks=False)  # cached: what the listing saw
                if stat.S_ISDIR(st.st_mode):
                    rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                    subdirs.append((rel, -1, (st.st_dev, st.st_ino)))
            stack.extend(reversed(subdirs))
        finally:
            os.close(fd)


def _open_dir(folder: str, seen: Optional[tuple[int, int]]) -> int:
    """An fd of ``folder``; with ``seen`` (dev, ino), not through a link and that very folder."""
    flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
    if seen is not None:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(folder, flags)
    except OSError as e:
        if seen is not None and e.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            raise changed(folder, "swapped for a link or removed") from e
        raise UsageError(f"cannot list {folder}: {e.strerror or e}") from e
    st = os.fstat(fd)
    if seen is not None and (st.st_dev, st.st_ino) != seen:
        os.close(fd)
        raise changed(folder, "another folder than the one listed")
    return fd


def safe_link(path: str, root_real: str, rel_dir: str) -> str:
    """The text to recreate link ``path`` with; refuses a link that resolves outside the root."""
    text = os.readlink(path)
    resolved = os.path.realpath(path)
    if resolved != root_real and not resolved.startswith(root_real.rstrip(os.sep) + os.sep):
        raise UnsafeArchiveMember(
            f"{path} is a symlink that leads outside the folder (-> {text}); "
            "refusing to copy it (replace it with the file, or remove it)"
        )
    parts = text.split("/")
    if text and not text.startswith("/") and ".." not in parts:
        return text
    # Absolute or climbing: name what it resolves to, by real folders only, from the link's
    # own (real) folder.
    return os.path.relpath(resolved, os.path.join(root_real, rel_dir) if rel_dir else root_real)


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def refuse_nested(src: Path, out: Path, flag: str, both_ways: bool = True) -> None:
    """Refuse writing ``out`` inside folder ``src`` (the copy would hold, and re-read, itself),
    and, with ``both_ways``, ``src`` inside ``out`` (replacing ``out`` would remove SRC).

    Compared by real paths, before anything is created, so ``./src/../src/inner`` or a link to
    SRC is caught too.
    """
    real_src, real_out = os.path.realpath(src), os.path.realpath(out)
    if _within(real_out, real_src) or (both_ways and _within(real_src, real_out)):
        raise UsageError(
            f"{out} and {src} overlap: the output would be written inside the folder it "
            "copies (or replace it)",
            hint=f"choose a {flag} outside {src}",
        )


def _kind_name(kind: int) -> str:
    return {
        stat.S_IFIFO: "a FIFO",
        stat.S_IFSOCK: "a socket",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
    }.get(kind, "a special file")


def open_listed(path: str, info: FileInfo) -> int:
    """Open a listed regular file for reading; fail if it is no longer the file that was listed."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP, errno.ENXIO, errno.ENOTDIR):
            raise changed(path, e.strerror or "cannot open") from e  # gone, or swapped for a link
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise changed(path, "no longer a regular file")
        seen = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if seen != (info.dev, info.ino, info.size, info.mtime_ns):
            # (a folder of SRC swapped for a link since the listing opens another file: caught)
            raise changed(path, "size, time or inode differ from the listing")
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_unchanged(fd: int, path: str, info: FileInfo, read: int) -> None:
    """After reading ``read`` bytes: the file must still be the size and time it was listed."""
    st = os.fstat(fd)
    if read != info.size or (st.st_size, st.st_mtime_ns) != (info.size, info.mtime_ns):
        raise changed(path, f"{read} bytes read, {info.size} listed")


def changed(path: str, why: str) -> IntegrityError:
    return IntegrityError(f"{path} changed while it was staged ({why}); run the command again")
