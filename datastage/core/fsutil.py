"""File-system primitives shared by the cache and staging: atomic writes, space checks, ENOSPC.

Every write datastage makes goes to a temporary name first and is renamed into place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Optional

from .errors import InsufficientSpace, UsageError

#: Keep this much free beyond what a step needs: a full disk breaks more than datastage.
SPACE_MARGIN = 64 * 1024 * 1024


def user_path(text: str) -> Path:
    """``text`` with a leading ``~`` or ``~user`` expanded, as a shell does; a ``~user`` that
    names no user is a usage error (pathlib raises RuntimeError, which would be a traceback)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        head = str(text).split("/", 1)[0]
        raise UsageError(
            f"{head}: no such user, so {text} cannot be expanded",
            hint="give the path as an absolute path",
        ) from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, sync_dir=False) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_file(path: Path, buffering: int = -1, sync_dir: bool = True) -> Iterator[BinaryIO]:
    """A file to write ``path`` through: a temporary name beside it, fsynced and renamed over
    ``path`` when the block ends, removed if the block fails."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb", buffering=buffering) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def existing_ancestor(path: Path) -> Path:
    """``path`` itself or its nearest parent that exists (a folder about to be created)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Free space for the folder that holds (or will hold) ``path``."""
    return shutil.disk_usage(existing_ancestor(path)).free


def ensure_free(path: Path, needed: Optional[int], what: str = "") -> None:
    """Raise InsufficientSpace before a step that will write ``needed`` bytes under ``path``."""
    if not needed:
        return
    free = free_bytes(path)
    if needed + SPACE_MARGIN > free:
        raise InsufficientSpace(str(path), needed, free, what)


@contextlib.contextmanager
def disk_full_as_error(path: Path, needed: Optional[int] = None, what: str = "") -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside the block into InsufficientSpace naming ``path``."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise InsufficientSpace(str(path), needed, free_bytes(path), what) from e


def remove_tree(path: Path) -> None:
    """Delete a folder of ours, including read-only files inside it."""

    def _make_writable_and_retry(func, p, _exc):  # type: ignore[no-untyped-def]
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o600)
        func(p)

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=_make_writable_and_retry)
        else:  # pragma: no cover - Python < 3.12
            shutil.rmtree(path, onerror=_make_writable_and_retry)
