"""Simulates a slow network mount (Drive FUSE, autodl-fs) for the subprocesses of the tests.

On ``PYTHONPATH`` this module is imported at interpreter start-up. When ``SLOW_MOUNT_DIR`` is
set, every file opened for reading below that folder (by ``open`` or by ``os.open`` then
``os.fdopen``) reads at ``SLOW_MOUNT_RATE`` bytes per second (default 2 MB/s), as a mount
backed by the network does. Nothing else changes.
"""

from __future__ import annotations

import builtins
import os
import time

_DIR = os.environ.get("SLOW_MOUNT_DIR")
_RATE = float(os.environ.get("SLOW_MOUNT_RATE", str(2 * 1024 * 1024)))


class _Slow:
    def __init__(self, f):  # type: ignore[no-untyped-def]
        self._f = f

    def read(self, n=-1):  # type: ignore[no-untyped-def]
        data = self._f.read(n if n and n > 0 else 64 * 1024)
        time.sleep(len(data) / _RATE)
        return data

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._f, name)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc):  # type: ignore[no-untyped-def]
        self._f.close()


if _DIR:
    _real_open = builtins.open
    _root = os.path.realpath(_DIR)

    def _open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        f = _real_open(file, mode, *args, **kwargs)
        reading = isinstance(file, (str, os.PathLike)) and "r" in mode and "b" in mode
        if reading and os.path.realpath(os.fspath(file)).startswith(_root + os.sep):
            return _Slow(f)
        return f

    builtins.open = _open

    _real_fdopen = os.fdopen

    def _fdopen(fd, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        f = _real_fdopen(fd, mode, *args, **kwargs)
        if "r" in mode and "b" in mode and "+" not in mode:
            try:
                path = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                return f
            if path.startswith(_root + os.sep):
                return _Slow(f)
        return f

    os.fdopen = _fdopen
