"""Many processes on one machine: torchrun / DDP ranks, and locks that must stay on local disk.

Under torchrun every rank calls ``datastage.get(...)``. The ranks of one machine share its disk,
so the dataset is staged once per machine: local rank 0 gets a short head start to take the
machine lock and do the work; the other ranks wait on the same lock and then find the staged
copy (same path). If rank 0 never asks (or failed), the first waiting rank does the work, so
nobody waits forever for a rank that is not coming. No torch import: only the environment
variables torchrun sets (LOCAL_RANK, RANK, LOCAL_WORLD_SIZE, WORLD_SIZE).

Owns: those environment variables, and the local lock folder. Locks are ``flock`` locks
(filelock), released by the kernel when their process dies, kill -9 included; they live under
``$DATASTAGE_LOCK_DIR`` or the system temp folder, never on a Drive or network mount whose
``flock`` may be missing or broken. Lock files are keyed by a hash of what they protect.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Callable, Optional

from filelock import FileLock, Timeout

from ..core import locks
from ..core.fsutil import user_path

LOCK_DIR_ENV = "DATASTAGE_LOCK_DIR"
#: How long a non-zero local rank lets local rank 0 take the machine lock before doing it itself.
HEAD_START = 5.0
POLL = 0.05


def _int(environ: Mapping[str, str], name: str) -> Optional[int]:
    try:
        return int(environ[name])
    except (KeyError, ValueError):
        return None


def local_rank(environ: Optional[Mapping[str, str]] = None) -> Optional[int]:
    env = os.environ if environ is None else environ
    value = _int(env, "LOCAL_RANK")
    return value if value is not None else _int(env, "RANK")


def distributed(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True under torchrun/DDP with more than one process (on this machine or in total)."""
    env = os.environ if environ is None else environ
    sizes = [_int(env, "LOCAL_WORLD_SIZE"), _int(env, "WORLD_SIZE")]
    return local_rank(env) is not None and any(s is not None and s > 1 for s in sizes)


def lock_dir() -> Path:
    override = os.environ.get(LOCK_DIR_ENV, "").strip()
    if override:
        return user_path(override)
    return Path(tempfile.gettempdir()) / f"datastage-locks-{os.getuid()}"


def lock_path(kind: str, key: str) -> Path:
    """A local lock file for ``key`` (e.g. a target path on a mount)."""
    return lock_dir() / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.lock"


@contextlib.contextmanager
def machine_turn(
    key: str,
    done: Callable[[], bool],
    timeout: Optional[float] = None,
    on_wait: Optional[Callable[[str], None]] = None,
) -> Iterator[None]:
    """Hold this machine's lock for ``key``; local rank 0 first when it comes within HEAD_START.

    Callers check ``done()`` again inside the block: a rank that waited usually finds the work
    finished by the rank that held the lock.
    """
    path = lock_path("machine", key)
    if local_rank() not in (None, 0):
        _give_rank0_a_head_start(path, done)
    with locks.hold(path, key, timeout, on_wait):
        yield


def _give_rank0_a_head_start(path: Path, done: Callable[[], bool]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    probe = FileLock(str(path))
    deadline = time.monotonic() + HEAD_START
    while time.monotonic() < deadline and not done():
        try:
            probe.acquire(timeout=0)
        except Timeout:
            return  # someone (normally rank 0) is working: wait for it on the lock itself
        probe.release()
        time.sleep(POLL)
