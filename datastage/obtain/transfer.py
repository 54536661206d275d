"""Segmented transfer of one file of known size: several connections, one preallocated ``.part``.

Owns: the worker threads of one file, each fetching a piece with ``Source.open_range(f,
start, end)`` and writing it at its offset with ``os.pwrite``; retries per piece
(``retrying.Patience``; a piece that made progress gets its patience back); which piece a
worker takes (plan.py: guided self-scheduling, work stealing, taking over a piece that made no
progress for ``stall_after`` seconds, so a stalled connection never holds up the file);
spreading pieces over mirrors that serve the same bytes, dropping a mirror that fails; one
stream when a server ignores ranges; hashing; the ``on_prefix`` hook.

No gaps between pieces: one answer time (measured per response, x ``LEAD``) before a worker's
piece ends, it claims the next piece and sends its request from a helper thread, so the bytes
of the next piece arrive as the last ones of the current piece are written. Without it every
"wave" of pieces paid a full round trip on every connection at once (100 ms of latency cost
0.1 s per wave, 0.4 s on 400 MB). For that round trip a worker has two connections open, so
``connections`` may be exceeded by one per worker, briefly; the pool keeps them alive.
Does not own: resume state on disk (``download.py`` saves what ``save`` is given), the plan
arithmetic (``plan.py``), the connection budget (``budget.py``), how bytes are requested.

Hashing choice: the calling thread hashes the *contiguous written prefix* as it grows, reading
it back with ``os.pread`` while the workers keep downloading the rest; the file is verified
before ``download.py`` commits it. Pieces are taken in file order, so the prefix follows the
download closely and only the last few small pieces are left to hash at the end (tens of MB,
some 50 ms at the ~870 MB/s sha256 of the benchmark machine). The bytes are still in the page
cache, so reading them back costs a memory copy, not disk I/O, and hashlib releases the GIL.
Measured alternatives: eight equal segments finishing together left ~7/8 of the file to hash
after the last byte (about 1 s per GB here); hashing per segment is impossible for sha256 (not
combinable); a second pass after the download costs a full read of the file.

``on_prefix(n)`` (extract-while-downloading; its contract: ``download.download``) is called
from the calling thread as the hashed prefix grows: those bytes are written and never change.

Memory: one network chunk per worker in flight and one read buffer for hashing; nothing grows
with the file size.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..core.digests import Hasher
from ..core.errors import NetworkError, SourceError, UnexpectedHTML
from ..core.fsutil import disk_full_as_error
from ..core.progress import Bar
from ..core.units import human_bytes
from ..core.urls import origin
from ..settings.config import Settings
from ..sources import Body, RemoteFile, Source
from . import plan as segment_plan
from .budget import ConnectionBudget
from .plan import Segment
from .retrying import Patience

HASH_READ = 1 << 20
FLUSH_EVERY = 128 << 20  # write back as we go: the fsync before the commit then has little left
SAVE_EVERY = 1.0  # seconds between saves of the plan ...
SAVE_BYTES = 32 << 20  # ... or bytes received, whichever first: what a kill -9 may re-fetch
NOTIFY_EVERY = 4 << 20  # bytes written between wake-ups of the calling thread
HASH_STEP = 16 << 20  # the most the calling thread hashes before it looks at the plan again
LEAD = 1.5  # ask for the next piece this many answer times before the current one ends
TICK = 0.2  # the longest the calling thread or an idle worker sleeps without news
BUSY_STATUSES = (429, 503)  # "too many connections": fewer workers, not a failed file


@dataclass
class Mirror:
    """One URL of the file and what its server told us about it."""

    url: str
    source: Source
    remote: RemoteFile
    checked: bool = False  # its answers matched the file (size, validators)


class Restart(Exception):
    """The file changed on the server (size or validator): the plan is worthless."""


class _Retire(Exception):
    """This worker stops; the others carry on (the server wants fewer connections)."""


class SegmentedTransfer:
    def __init__(
        self,
        *,
        name: str,
        part: Path,
        size: int,
        plan: list[Segment],
        mirrors: list[Mirror],
        hasher: Hasher,
        settings: Settings,
        bar: Bar,
        budget: ConnectionBudget,
        save: Callable[[list[list[int]]], None],
        refuse_html: Callable[[bytes, str], None],
        warn: Callable[[str], None],
        on_prefix: Optional[Callable[[int], None]] = None,
        first: Optional[tuple[Body, Iterator[bytes]]] = None,
        pinned: bool = False,
        say: Optional[Callable[[str], None]] = None,
    ) -> None:
        """``first``: a response already open at byte 0, whose budget token the caller holds
        and hands over (it is released when that response is done)."""
        self.name, self.part, self.size, self.segments = name, part, size, plan
        self.mirrors = list(mirrors)  # live ones; mirrors[0] is the reference
        self.reference = mirrors[0]
        self.hasher, self.settings, self.bar, self.budget = hasher, settings, bar, budget
        self.save, self.refuse_html, self.warn, self.on_prefix = save, refuse_html, warn, on_prefix
        self.say = say or warn  # retry lines
        self.first = first
        self.first_at = segment_plan.contiguous_prefix(plan)  # where the open response has got to
        self._token_held = first is not None
        self.pinned = pinned
        self.dropped: list[tuple[str, Exception]] = []
        self.ranges = True  # False once the reference server ignored a range
        self.stall_after = max(1.0, min(10.0, settings.timeout / 2))
        self.min_steal = max(64 * 1024, min(segment_plan.MIN_STEAL, settings.min_segment))
        self.workers = max(1, min(settings.connections, budget.size))
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.error: Optional[BaseException] = None
        self.closed = False
        self.writers = 0
        self.active = 0  # workers that have not retired or ended
        self.retired = False
        self._tokens = itertools.count(1)
        self.fd = -1
        self._flushed = 0
        self._fresh = 0  # bytes written since the calling thread was last woken
        self._unsaved = 0  # bytes written since the plan was last saved
        self._saved_at = time.monotonic()
        self._plans = itertools.count(1)
        self._saved_number = 0
        self._save_lock = threading.Lock()
        self._ahead: dict[int, _Ahead] = {}  # worker -> its next piece, already asked for
        self.ask_ahead = True  # False once a server refused the extra connection it takes

    # -- the calling thread ----------------------------------------------------------------
    def run(self) -> Hasher:
        """Fetch every segment, hash the prefix as it lands; return the hasher of the file.

        Woken by the workers (every ``NOTIFY_EVERY`` bytes and at each finished piece), not by
        a clock. The plan is saved every ``SAVE_EVERY`` seconds (here) or ``SAVE_BYTES``
        received (by the worker whose write crosses the mark), whichever comes first.
        """
        reported = segment_plan.written(self.segments)
        try:
            self.fd = os.open(self.part, os.O_RDWR)
            self._start_workers()
            while True:
                self.budget.check()
                with self.cond:
                    if self.hasher.size >= segment_plan.contiguous_prefix(self.segments):
                        self.cond.wait(TICK)  # nothing to hash: wait for the workers
                    if self.error is not None:
                        raise self.error
                    prefix = segment_plan.contiguous_prefix(self.segments)
                    done_bytes = segment_plan.written(self.segments)
                    due = time.monotonic() - self._saved_at >= SAVE_EVERY
                    snapshot = self._snapshot() if due else None
                if snapshot is not None:
                    self._save(*snapshot)
                self._hash_to(min(prefix, self.hasher.size + HASH_STEP))
                if done_bytes > reported:
                    self.bar.update(done_bytes - reported)
                    reported = done_bytes
                if self.hasher.size >= self.size:
                    return self.hasher
        finally:
            self._close()

    def _snapshot(self) -> tuple[int, list[list[int]]]:
        """(Under the lock) the plan to save now, numbered so an older one never wins."""
        self._unsaved = 0
        self._saved_at = time.monotonic()
        return next(self._plans), segment_plan.to_json(self.segments)

    def _save(self, number: int, plan: list[list[int]]) -> None:
        with self._save_lock:
            if number > self._saved_number:
                self.save(plan)
                self._saved_number = number

    def _start_workers(self) -> None:
        workers = self.workers
        initial: Optional[tuple[Segment, int]] = None
        if self.first is not None:
            with self.cond:
                initial = self._claim()  # the first piece, for the response open at byte 0
            self._token_held = False  # worker 0 owns it now
        for wid in range(workers):
            threading.Thread(
                target=self._worker,
                args=(wid, initial if wid == 0 else None),
                name=f"datastage-{self.name}-{wid}",
                daemon=True,  # a worker stuck in a stalled read must not keep the process alive
            ).start()

    def _hash_to(self, prefix: int) -> None:
        while self.hasher.size < prefix and self.error is None:
            n = min(HASH_READ, prefix - self.hasher.size)
            data = os.pread(self.fd, n, self.hasher.size)
            if not data:
                raise OSError(f"{self.part} is shorter than its written prefix")
            self.hasher.update(data)
            if self.on_prefix is not None:
                self.on_prefix(self.hasher.size)
            if self.hasher.size - self._flushed >= FLUSH_EVERY:
                os.fdatasync(self.fd)  # overlaps the network; the disk would do it later anyway
                self._flushed = self.hasher.size

    def _close(self) -> None:
        if self._token_held:
            self.budget.release()
            self._token_held = False
        self.stop.set()
        with self.cond:
            self.closed = True
            while self.writers:
                self.cond.wait(TICK)
            number, plan = self._snapshot()
            self.cond.notify_all()
        if self.first is not None:
            self.first[0].close()
        try:
            if self.hasher.size < self.size:
                self._save(number, plan)  # what a re-run (or kill -9 survivor) resumes from
        finally:
            if self.fd >= 0:
                os.close(self.fd)

    # -- workers ---------------------------------------------------------------------------
    def _worker(self, wid: int, initial: Optional[tuple[Segment, int]]) -> None:
        held = initial is not None  # the caller's connection (and budget token) comes with it
        ahead: Optional[_Ahead] = None
        with self.cond:
            self.active += 1
        try:
            while not self.stop.is_set():
                if not held and not self.budget.acquire(self.stop):
                    return
                held = False
                try:
                    with self.cond:
                        if ahead is not None:
                            claim: Optional[tuple[Segment, int]] = (ahead.seg, ahead.token)
                        else:
                            claim = initial or self._claim()
                        initial = None
                        finished = all(s.done for s in self.segments)
                    if claim is not None:
                        self._fetch(wid, *claim, ahead=ahead)
                    ahead = self._ahead.pop(wid, None)
                    held = ahead is not None  # the next piece is on its way: keep the token
                finally:
                    if not held:
                        self.budget.release()
                if claim is None:
                    if finished:
                        return
                    with self.cond:
                        self.cond.wait(TICK)  # a range to split or a stall to take over may come
        except _Retire:
            return  # already uncounted
        except BaseException as e:
            with self.cond:
                if self.error is None:
                    self.error = e
                self.stop.set()
                self.cond.notify_all()
        finally:
            for left in (ahead, self._ahead.pop(wid, None)):
                if left is not None:
                    self._abandon(left)
            if held:
                self.budget.release()

    def _claim(self) -> Optional[tuple[Segment, int]]:
        """(Under the lock) a segment for an idle worker: unowned, split off, or stalled."""
        now = time.monotonic()
        if self.ranges:
            seg = (
                segment_plan.next_piece(self.segments, self.workers, self.settings.min_segment)
                or segment_plan.split_largest(self.segments, self.min_steal)
                or segment_plan.stalled(self.segments, before=now - self.stall_after)
            )
        else:  # one stream (the server ignores ranges): the one range, when nobody has it
            seg = next((s for s in self.segments if not s.owner and not s.done), None)
        if seg is None:
            return None
        seg.owner, seg.progress_at = next(self._tokens), now
        return seg, seg.owner

    def _fetch(self, wid: int, seg: Segment, token: int, ahead: Optional[_Ahead] = None) -> None:
        """Fetch ``seg`` until it is done, retrying and switching mirrors; stop if abandoned.

        ``ahead``: the request for ``seg`` was sent before the previous piece ended."""
        patience = self._patience()
        while True:
            with self.cond:
                if seg.owner != token or seg.done or self.stop.is_set():
                    if ahead is not None:
                        self._abandon(ahead)
                    return
                start, end = seg.pos, seg.end
                at = self.first_at
                first, self.first = (self.first, None) if start == at else (None, self.first)
            mirror = self.reference if first else ahead.mirror if ahead else self._pick(wid)
            body: Optional[Body] = first[0] if first else None
            asked_ahead = ahead is not None
            try:
                asked = time.monotonic()
                if first is not None:
                    chunks = first[1]
                else:
                    if ahead is not None:
                        sent, ahead = ahead, None  # a failure retries the usual way
                        body = sent.body.result()
                    else:
                        body = mirror.source.open_range(
                            mirror.remote, start, end - 1 if self.ranges else None
                        )
                    chunks = iter(body)
                    seg, skip = self._accept(mirror, body, seg, token)
                    if skip:
                        chunks = _skip(chunks, skip)
                self._pump(wid, seg, token, chunks, mirror.url, time.monotonic() - asked)
                with self.cond:
                    if seg.owner == token and not seg.done:
                        raise NetworkError(
                            f"connection to {origin(mirror.url)} closed at byte {seg.pos} "
                            f"of {self.size}"
                        )
                return
            except SourceError as e:
                if body is not None:
                    body.close()
                    body = None
                if seg.pos > start:
                    patience.reset()  # progress resets the patience
                patience = self._recover(e, mirror, seg, token, patience, asked_ahead)
            finally:
                if body is not None:
                    body.close()

    def _recover(
        self,
        error: SourceError,
        mirror: Mirror,
        seg: Segment,
        token: int,
        patience: Patience,
        asked_ahead: bool,
    ) -> Patience:
        """After a failed request for ``seg``: ask again (after a wait), retire this worker, or
        drop the mirror. Returns the patience the next request runs on; raises when this
        worker, or the whole file, cannot go on."""
        busy = getattr(error, "status", None) in BUSY_STATUSES
        if busy and asked_ahead:
            # The extra connection of an early request was refused: the server counts
            # connections. Stop asking ahead and ask again on the one just freed.
            self.ask_ahead = False
            return patience
        if busy and self._retire(seg, token, error):
            raise _Retire from error
        try:
            # A mirror that answered (the reference always has) is not a dead host.
            patience.wait(error, mirror.url, self.stop.is_set, alive=mirror.checked)
            return patience
        except SourceError:
            pass
        if not self._drop(mirror, error):
            if isinstance(error, NetworkError):  # bytes came: a re-run resumes
                kept = human_bytes(segment_plan.written(self.segments))
                error.message += f" ({kept} kept in the cache; re-run to resume)"
            raise error
        return self._patience()

    def _retire(self, seg: Segment, token: int, error: SourceError) -> bool:
        """A server that refuses one more connection (429/503) while others work: this one is
        one too many. Give the piece back at once and end this worker: backing off with the
        piece in hand held up the file (16 connections to a 2-connection server: 3x slower)."""
        with self.cond:
            if self.active <= 1:
                return False
            self.active -= 1
            if seg.owner == token:
                seg.owner = 0
            self.cond.notify_all()
            first_time, self.retired = not self.retired, True
        if first_time:
            self.warn(f"{error}; continuing {self.name} with fewer connections")
        return True

    def _patience(self) -> Patience:
        return Patience(self.settings.retries, self.settings.backoff, self.say)

    def _pick(self, wid: int) -> Mirror:
        with self.cond:
            return self.mirrors[wid % len(self.mirrors)]

    def _drop(self, mirror: Mirror, error: Exception) -> bool:
        """Stop using ``mirror`` for this file if another one is left; False if it is the last."""
        with self.cond:
            if mirror not in self.mirrors:
                return True  # another worker dropped it already
            if len(self.mirrors) == 1:
                return False
            self.mirrors.remove(mirror)
            if mirror is self.reference:
                self.reference = self.mirrors[0]
            self.dropped.append((mirror.url, error))
        self.warn(f"{error}; continuing {self.name} from the other mirrors")
        return True

    def _accept(self, mirror: Mirror, body: Body, seg: Segment, token: int) -> tuple[Segment, int]:
        """Check an answer belongs to this file; returns the segment to fill and bytes to skip."""
        remote, start = body.remote, seg.pos
        reference = mirror is self.reference
        if remote.size is not None and remote.size != self.size:
            if reference:
                raise Restart(f"{mirror.url} now has {remote.size} bytes, not {self.size}")
            raise SourceError(f"{mirror.url} serves {remote.size} bytes, not {self.size}")
        known = mirror.remote.validator
        if known and remote.validator and remote.validator != known:
            if reference:
                raise Restart(f"{mirror.url} changed while downloading")
            raise SourceError(f"{mirror.url} changed while downloading")
        if not reference and not mirror.checked:
            ours = self.reference.remote.validator
            if not self.pinned and not (ours and remote.validator == ours):
                raise SourceError(f"{mirror.url} cannot be shown to serve the same bytes")
            if (remote.content_type or "").startswith("text/html"):
                raise UnexpectedHTML(f"{mirror.url} returned an HTML page instead of {self.name}")
        mirror.checked = True
        mirror.remote = remote
        if body.offset == start:
            return seg, 0
        if not reference:
            raise SourceError(f"{mirror.url} ignores byte ranges")
        with self.cond:
            collapsed = not self.ranges
        if not collapsed:
            seg = self._collapse(token) or seg
        # After a collapse only the one remaining segment may write; any other stops at once.
        return seg, max(0, seg.pos - body.offset)

    def _collapse(self, token: int) -> Optional[Segment]:
        """The server sent the whole file for a range: continue as one stream from the prefix.

        The stream that is already growing the prefix (the first response) simply carries on
        to the end; only without one does this worker's response take over. Returns the
        segment this worker now fills, or None (its response is not needed).
        """
        self.warn(f"{self.reference.url} ignores byte ranges; using one connection")
        with self.cond:
            self.ranges = False
            self.mirrors = [self.reference]
            head = next((s for s in self.segments if not s.done), None)
            keep = head if head is not None and head.owner not in (0, -1, token) else None
            for s in self.segments:
                if s is not keep:
                    s.owner = -1  # abandoned: their workers stop at their next write
            if keep is not None:
                keep.end = self.size
                self.segments[:] = [keep]
                return None
            prefix = segment_plan.contiguous_prefix(self.segments)
            self.segments[:] = [Segment(0, prefix, self.size, token, time.monotonic())]
            return self.segments[0]

    def _pump(
        self, wid: int, seg: Segment, token: int, chunks: Iterator[bytes], url: str, wait: float
    ) -> None:
        """Write the response into ``seg``. ``wait``: how long its request took to answer; that
        long before the piece ends, the next piece is asked for (no gap between pieces)."""
        began, at = time.monotonic(), seg.pos
        for chunk in chunks:
            if not self._write(seg, token, chunk, url):
                return
            if wid in self._ahead or not self.ranges or not self.ask_ahead:
                continue
            rate = (seg.pos - at) / max(time.monotonic() - began, 1e-6)
            if seg.remaining <= rate * wait * LEAD + len(chunk):
                self._ask_ahead(wid)

    def _ask_ahead(self, wid: int) -> None:
        """Claim the next unclaimed piece and send its request now, from a helper thread."""
        with self.cond:
            if self.stop.is_set():
                return
            seg = segment_plan.next_piece(self.segments, self.workers, self.settings.min_segment)
            if seg is None:
                return  # nothing left to claim in order; stealing waits for an idle worker
            seg.owner, seg.progress_at = next(self._tokens), time.monotonic()
            ahead = _Ahead(seg, seg.owner, self._pick(wid))
            self._ahead[wid] = ahead
        threading.Thread(target=ahead.open, name=f"datastage-{self.name}-ask", daemon=True).start()

    def _abandon(self, ahead: _Ahead) -> None:
        """A piece asked for ahead that its worker will not fetch: free it for the others."""
        ahead.discard()
        with self.cond:
            if ahead.seg.owner == ahead.token:
                ahead.seg.owner = 0
            self.cond.notify_all()

    def _write(self, seg: Segment, token: int, chunk: bytes, url: str) -> bool:
        """pwrite ``chunk`` at the segment's position; False once the segment is not ours."""
        view = memoryview(chunk)
        snapshot: Optional[tuple[int, list[list[int]]]] = None
        while view:
            with self.cond:
                if seg.owner != token or self.closed:
                    return False
                offset, n = seg.pos, min(len(view), seg.end - seg.pos)
                if n <= 0:
                    return False
                self.writers += 1
            try:
                if offset == 0:
                    self.refuse_html(bytes(view[:1024]), url)
                with disk_full_as_error(self.part.parent, what="for the download cache"):
                    _pwrite_all(self.fd, view[:n], offset)
            finally:
                with self.cond:
                    self.writers -= 1
                    if seg.owner == token and seg.pos == offset:
                        # A split may have moved ``end`` below this write: the bytes past it
                        # are the same ones the new segment will write, so only clamp.
                        seg.pos = min(offset + n, seg.end)
                        seg.progress_at = time.monotonic()
                        self._fresh += n
                        self._unsaved += n
                        if self._unsaved >= SAVE_BYTES:
                            snapshot = self._snapshot()
                        if seg.done or self._fresh >= NOTIFY_EVERY:
                            # the prefix may have grown, a save may be due; idle may split
                            self._fresh = 0
                            self.cond.notify_all()
                    if self.closed:
                        self.cond.notify_all()
            if snapshot is not None:
                self._save(*snapshot)  # a kill -9 from now on re-fetches < SAVE_BYTES
                snapshot = None
            view = view[n:]
        return True


@dataclass
class _Ahead:
    """The request for a worker's next piece, sent shortly before its current piece ends."""

    seg: Segment
    token: int
    mirror: Mirror
    body: Future[Body] = field(default_factory=Future)

    def open(self) -> None:
        """(In a helper thread) send the request; ``body`` holds the response or the error."""
        try:
            remote, seg = self.mirror.remote, self.seg
            self.body.set_result(self.mirror.source.open_range(remote, seg.pos, seg.end - 1))
        except BaseException as e:
            self.body.set_exception(e)

    def discard(self) -> None:
        """Its worker will not read it: close the response now, or when it arrives."""
        self.body.add_done_callback(_close_body)


def _close_body(done: Future[Body]) -> None:
    if done.exception() is None:
        done.result().close()


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def _skip(chunks: Iterator[bytes], n: int) -> Iterator[bytes]:
    for chunk in chunks:
        if n >= len(chunk):
            n -= len(chunk)
            continue
        yield chunk[n:] if n else chunk
        n = 0
