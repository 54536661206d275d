"""Inter-process locks (filelock) with a waiting message and an optional timeout.

``filelock.FileLock`` uses ``flock``/``fcntl`` on POSIX, so the kernel releases a lock when its
process dies, even by kill -9: a stale lock file on disk never blocks anyone. Network file
systems (Drive mounts, some NFS) may not implement ``flock`` — keep lock folders on local disk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

from filelock import FileLock, Timeout

from .errors import LockTimeout

#: How long to try quietly before telling the user that another process holds the lock.
QUIET_WAIT = 0.2


@contextlib.contextmanager
def hold(
    path: Path,
    what: str,
    timeout: Optional[float] = None,
    on_wait: Optional[Callable[[str], None]] = None,
) -> Iterator[None]:
    """Hold the lock at ``path`` for the block; ``what`` names the work in messages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=QUIET_WAIT)
    except Timeout:
        if on_wait:
            on_wait(f"waiting for another datastage process ({what})")
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout:
            raise LockTimeout(
                f"timed out after {timeout:g}s waiting for another process ({what}); lock: {path}",
                hint="is another datastage still running? Its lock is released when it exits",
            ) from None
    try:
        yield
    finally:
        lock.release()
