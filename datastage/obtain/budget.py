"""The connections one ``get``/``fetch`` may hold open at once, shared by all of its files, and
the switch that stops them all when one file fails (or on Ctrl-C).

Owns: the budget tokens (a single stream holds one; each worker of a segmented transfer holds
one per request) and cancellation. Created once per call (api.py) or per file (download.py).
"""

from __future__ import annotations

import threading

POLL = 0.2  # seconds a waiting download sleeps before it looks at ``stop`` and ``cancelled``


class Cancelled(Exception):
    """Another file of the same ``get`` failed (or Ctrl-C): stop, keeping the ``.part``."""


class ConnectionBudget:
    """Connections that may be open at once, shared by every file of one ``get``/``fetch``.

    ``cancel()`` tells every download sharing it to stop at its next chunk (Cancelled), so
    one failed file does not wait for the others to finish."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._sem = threading.Semaphore(self.size)
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled("stopped: another file of this download failed")

    def acquire(self, stop: threading.Event) -> bool:
        while not stop.is_set() and not self.cancelled.is_set():
            if self._sem.acquire(timeout=POLL):
                return True
        return False

    def release(self) -> None:
        self._sem.release()
