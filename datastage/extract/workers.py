"""The worker threads that write and hash archive members for SafeWriter.

Owns: handing writes to a thread pool in batches (one task per ~BATCH_FILES small members keeps
the thread hand-offs and futures per file low), bounding what waits in memory (member bytes
already read, tasks in flight), waiting for the write of one name, and bringing a worker's
first failure back to the reading thread promptly. Every step is O(1): failures are collected
by a done-callback, not by scanning the queue, and finished futures are dropped at once
(memory stays flat at 300k members).
Does not own: what a write does or which names are safe (writer.py).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Optional

#: Worker threads that write and hash files; more than the cores helps hide file-system latency.
WRITE_THREADS = max(2, min(8, 2 * (os.cpu_count() or 1)))
#: Bytes of member data queued for the workers at most (keeps peak RSS bounded).
MAX_QUEUED_BYTES = 64 * 1024 * 1024
#: Small members handed to a worker per task, and tasks queued at most (zip members hold no
#: data until written, so this bound, not the bytes, keeps memory flat at 300k members).
BATCH_FILES = 32
BATCH_BYTES = 1 << 20
MAX_BATCHES_IN_FLIGHT = 8 * WRITE_THREADS


class Workers:
    """Jobs (one member's write each) run in batches by a pool made on first use."""

    def __init__(self) -> None:
        #: name -> the future of the batch writing it (dropped when the batch is done)
        self._pending: dict[str, Future[None]] = {}
        #: writes not yet handed to a worker, and the names they write
        self._batch: list[Callable[[], None]] = []
        self._batch_names: list[str] = []
        self._batch_bytes = 0
        self._in_flight = threading.BoundedSemaphore(MAX_BATCHES_IN_FLIGHT)
        self._failure: Optional[BaseException] = None
        self._pool: Optional[ThreadPoolExecutor] = None
        self._queued = 0
        self._queue_cv = threading.Condition()
        self._lock = threading.Lock()

    def put(self, rel: str, job: Callable[[], None], size: int) -> None:
        """Queue ``job``, which writes ``rel``; ``size``: the member bytes it holds."""
        self.raise_failures()
        self._batch.append(job)
        self._batch_names.append(rel)
        self._batch_bytes += size
        if len(self._batch) >= BATCH_FILES or self._batch_bytes >= BATCH_BYTES:
            self._flush()

    def reserve(self, n: int) -> None:
        """Count ``n`` bytes of member data about to be queued; block while too much is."""
        if self._queued and self._queued + n > MAX_QUEUED_BYTES:
            self._flush()  # what waits in the batch must not wait for itself
        with self._queue_cv:
            while self._queued and self._queued + n > MAX_QUEUED_BYTES:
                self._queue_cv.wait(0.5)
                self.raise_failures()
            self._queued += n

    def release(self, n: int) -> None:
        """(In a worker) ``n`` bytes counted by ``reserve`` are written and freed."""
        with self._queue_cv:
            self._queued -= n
            self._queue_cv.notify_all()

    def wait_for(self, rel: str) -> None:
        """Return once the queued write of ``rel``, if any, is done (its failure raised)."""
        if rel in self._batch_names:
            self._flush()
        with self._lock:
            future = self._pending.get(rel)
        if future is not None:
            future.result()

    def raise_failures(self) -> None:
        """Surface a worker's error promptly instead of after the whole archive is read (O(1))."""
        if self._failure is not None:
            raise self._failure

    def drain(self) -> None:
        """Wait for every queued write; re-raise the first failure."""
        try:
            self._flush()
            while self._pending:
                with self._lock:
                    futures = list(self._pending.values())
                for future in futures:
                    future.result()
            self.raise_failures()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def abort(self) -> None:
        """Stop the workers after a failure (the caller removes the partial folder)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._pending.clear()
        self._batch.clear()
        self._batch_names.clear()

    def _flush(self) -> None:
        """Hand the queued writes to a worker as one task."""
        if not self._batch:
            return
        jobs, names = self._batch, self._batch_names
        self._batch, self._batch_names, self._batch_bytes = [], [], 0
        while not self._in_flight.acquire(timeout=0.5):  # bounded: memory stays flat
            self.raise_failures()
        try:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="datastage-write")
            future = self._pool.submit(_run_all, jobs)
        except BaseException:
            self._in_flight.release()
            raise
        with self._lock:
            for rel in names:
                self._pending[rel] = future
        future.add_done_callback(lambda f: self._settled(names, f))

    def _settled(self, names: list[str], future: Future[None]) -> None:
        """Done-callback: forget a finished batch; keep the first failure for the main thread."""
        self._in_flight.release()
        error = None if future.cancelled() else future.exception()
        with self._lock:
            for rel in names:
                if self._pending.get(rel) is future:
                    del self._pending[rel]
            if error is not None and self._failure is None:
                self._failure = error


def _run_all(jobs: list[Callable[[], None]]) -> None:
    for job in jobs:
        job()
