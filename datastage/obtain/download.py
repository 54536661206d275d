"""Resumable, verified downloads into the cache.

Owns: the life of one file from "not in the cache" to "verified blob": one downloader per file
across processes (lock), trying each URL of an entry in turn (mirrors), resuming a ``.part``
after any interruption (kill -9 included), retrying failures that made no progress
(``retrying.py``: each retry said on stderr, quick for a dead host), hashing while streaming,
and refusing HTML pages served as files.
Does not own: how bytes are requested (sources/), where blobs live (cache.py), the connection
budget of a ``get`` (budget.py).

Resume protocol (pip/huggingface_hub style): ``partial/<key>.json`` records the URL, size and
validator (strong ETag or Last-Modified) of the first response. A re-run asks for
``Range: bytes=<have>-`` with ``If-Range: <validator>``; a source that answers from byte 0
(server ignored the range, or the file changed) means truncate and start over. The prefix
already on disk is hashed once when resuming (hash state cannot be saved across processes).

Segments: when the first response announces a size worth splitting (``plan.should_split``:
``connections`` and ``min_segment`` settings) and one connection proves too slow
(``plan.Probe``), the open response becomes segment 0 and ``transfer.py`` fetches the rest
over more connections into a preallocated ``.part``. The
state file then also holds the plan (``segments``: ``[start, pos, end]`` each, saved
atomically every second or 32 MiB received, whichever first, and on exit), and a re-run
asks only for the missing ranges, each with If-Range. Any source whose ``open_range`` reports
a size and honours ranges gets this for free. With a pinned digest, segments are spread over
every mirror of the entry that serves the same size; the final digest proves the mix.

Mirrors: the entry's URLs are tried in order, those matching the preferred ``mirror`` setting
first, or, with ``--mirror auto`` (the default), the fastest host first (mirrors.py probes
them). A URL that fails (error, HTML page, digest mismatch) is dropped and the next one used;
``AllMirrorsFailed`` names every failure. After a digest mismatch, mirrors are used one at a
time, so the next failure names the culprit.

A mirror that turns slow (issue: the probe saw its burst, nginx ``limit_rate_after``) is left:
while one stream runs, ``mirrors.Pace`` compares its recent rate with what the probe measured
for the next ranked URL; over ``SPREAD_FACTOR`` times slower (and worth a new request), the
download moves there, at most ``MAX_MOVES`` times per file. A pinned file continues where it is
(a ranged request from the other mirror; the final digest covers the mix); an unpinned one
starts over (its first download pins it: bytes of two servers must never become the pin). The
slow URL stays last as a fallback, gets no segments, and the rate it really kept is recorded
(``mirrors.observed``) so the next files and runs rank its host by it.

Single stream: receive, write and hash run in one thread. Hashing in a second thread (a bounded
queue of chunks; sha256 releases the GIL) was measured on the 2-core loopback benchmark and
lost (256 MiB: 1.18-1.61 s against 0.89-0.93 s inline): with the server on the other core there
is no idle core for the hash, and the hand-off costs more than it overlaps. Revisit it on a
machine with cores to spare; the CPU floor is sha256 itself (~1.2-1.7 GB/s here).
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from .. import sources
from ..core import locks
from ..core.digests import Hasher, check, hash_file
from ..core.errors import (
    AllMirrorsFailed,
    DatastageError,
    HTTPStatusError,
    IntegrityError,
    MissingDependency,
    NetworkError,
    OfflineError,
    RemoteChanged,
    SizeMismatch,
    SourceError,
    UnexpectedHTML,
)
from ..core.fsutil import disk_full_as_error, ensure_free
from ..core.progress import Bar, Reporter
from ..core.units import human_bytes
from ..core.urls import origin
from ..resolve.manifest import FileEntry
from ..settings.config import Settings
from . import mirrors, partstate
from . import plan as segment_plan
from .budget import ConnectionBudget
from .cache import Blob, Cache
from .partstate import PartState
from .retrying import Patience, safe_url
from .transfer import Mirror, Restart, SegmentedTransfer

HTML_SUFFIXES = (".html", ".htm", ".xhtml")
MAX_MOVES = 2  # moves to a faster mirror per file: bounded, never a loop between two


class _Slower(Exception):
    """The mirror in use kept far less than the next one promised (``mirrors.Pace``)."""

    def __init__(self, rate: float, have: int) -> None:
        super().__init__(f"slowed to {human_bytes(int(rate))}/s after {human_bytes(have)}")
        self.rate = rate


@dataclass
class _Stream:
    """The single stream of one ``_transfer``, across its retries."""

    known: sources.RemoteFile  # what the URL said of the file (size, validators)
    hasher: Hasher  # of the bytes in ``.part``: ``hasher.size`` is where the next response starts
    holding: bool  # a budget token (it goes with a response handed over to segments)
    body: Optional[sources.Body] = None  # the response being read
    bar: Optional[Bar] = None
    answered: bool = False  # the URL answered in this run: a refused connection is not a dead host
    handed_over: bool = False  # the open response went to the segmented transfer

    def close_body(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None


def download(
    entry: FileEntry,
    cache: Cache,
    settings: Settings,
    reporter: Reporter,
    budget: Optional[ConnectionBudget] = None,
    on_prefix: Optional[Callable[[int], None]] = None,
) -> Blob:
    """Return the verified cache blob for ``entry``, downloading it if needed.

    ``budget`` caps the connections open at once (shared by the files of one call; default
    ``settings.connections``). ``on_prefix(n)`` is told, as the download grows, that bytes
    ``[0, n)`` of the ``.part`` file are written for good (not yet verified): monotonic, ends
    at the file size. It is not called when the blob is already in the cache.
    """
    blob = cache.find(entry)
    if blob:
        return blob
    if settings.offline and not ordered_urls(entry, settings):
        raise OfflineError(f"{entry.name} is not in the cache and DATASTAGE_OFFLINE is set")
    with locks.hold(
        cache.lock_path(entry), f"download of {entry.name}", settings.lock_timeout, reporter.say
    ):
        blob = cache.find(entry)  # another process may have finished it while we waited
        if blob:
            return blob
        budget = budget or ConnectionBudget(settings.connections)
        return _from_any_url(entry, cache, settings, reporter, budget, on_prefix)


def ordered_urls(entry: FileEntry, settings: Settings) -> list[str]:
    """The entry's usable URLs, those containing ``settings.mirror`` (a host or any substring)
    first (``auto``: as listed; ``_from_any_url`` then ranks them by speed, mirrors.py).
    Offline, only local paths: reading them is no network use (the demo stages offline).
    """
    urls = list(entry.urls)
    if settings.offline:
        urls = [u for u in urls if sources.scheme_of(u) == "file"]
    return mirrors.preferred_first(urls, settings)


def _from_any_url(
    entry: FileEntry,
    cache: Cache,
    settings: Settings,
    reporter: Reporter,
    budget: ConnectionBudget,
    on_prefix: Optional[Callable[[int], None]],
) -> Blob:
    failures: list[tuple[str, Exception]] = []
    ranking = mirrors.rank(ordered_urls(entry, settings), settings, entry.size)
    urls = ranking.urls
    spread = entry.pinned and settings.connections > 1
    moves = 0
    while urls:
        url, rest = urls[0], urls[1:]
        attempt: Optional[_Download] = None
        slower: Optional[_Slower] = None
        try:
            attempt = _Download(entry, url, cache, settings, reporter, budget, on_prefix)
            attempt.spread_urls = ranking.segment_peers(rest) if spread else []
            if moves < MAX_MOVES:
                attempt.alternative = ranking.alternative(url, rest)
            return attempt.run()
        except _Slower as e:
            slower = e
        # MissingDependency: e.g. gs:// without gcsfs, where an https mirror may still serve
        except (SourceError, IntegrityError, MissingDependency) as e:
            failures.append((url, e))
            if isinstance(e, IntegrityError):
                spread = False  # one mirror at a time from now on: the next failure is its own
            if rest:
                reporter.warn(f"{e}; trying the next mirror")
        finally:
            if attempt is not None:
                failures.extend(attempt.dropped)
        dropped = {u for u, _ in attempt.dropped} if attempt is not None else set()
        urls = [u for u in rest if u not in dropped]
        if slower is not None:
            moves += 1
            mirrors.observed(settings.cache_dir, url, slower.rate)
            ranking.kept(url, slower.rate)  # never the promise another mirror is held to
            urls = [u for u in ranking.urls if u in urls or u == url]  # its host last
            how = "continuing" if entry.pinned else "starting over"
            reporter.say(f"{entry.name}: {safe_url(url)} {slower}; {how} from {safe_url(urls[0])}")
    if len(failures) == 1:
        raise failures[0][1]
    reasons = "; ".join(f"{safe_url(url)}: {e}" for url, e in failures)
    raise AllMirrorsFailed(
        f"all {len(failures)} sources of {entry.name} failed: {reasons}", failures=failures
    )


class _Download:
    """One URL, one file: resume, stream, hash, verify, commit."""

    def __init__(
        self,
        entry: FileEntry,
        url: str,
        cache: Cache,
        settings: Settings,
        reporter: Reporter,
        budget: Optional[ConnectionBudget] = None,
        on_prefix: Optional[Callable[[int], None]] = None,
    ):
        self.entry = entry
        self.url = url
        self.cache = cache
        self.settings = settings
        self.reporter = reporter
        self.source = sources.for_url(url, settings)
        self.part, self.state_path = cache.partial_paths(entry)
        self.algorithms = [d.algorithm for d in entry.digests]
        self.budget = budget or ConnectionBudget(settings.connections)
        self.on_prefix = on_prefix
        self.via = url  # what verification errors name as the origin of the bytes
        self.spread_urls: list[str] = []  # other mirrors that may serve segments
        self.alternative: Optional[mirrors.Measurement] = None  # the next URL's probe: Pace
        self.dropped: list[tuple[str, Exception]] = []  # mirrors that failed on the way

    def run(self) -> Blob:
        resumed = self._resumable_offset() > 0
        try:
            return self._attempt(resume=True)
        except IntegrityError:
            if not resumed:
                raise
            # The prefix from an earlier run may be what went wrong; one clean try settles it.
            self.reporter.warn(
                f"{self.entry.name} failed verification after resuming; downloading it again"
            )
            return self._attempt(resume=False)

    def _attempt(self, resume: bool) -> Blob:
        """One download; a segment plan made worthless by a changed file starts over once."""
        try:
            return self._download(resume)
        except Restart as e:
            self.reporter.say(f"{self.entry.name}: {e}; starting over")
            self._discard()
        try:
            return self._download(resume=False)
        except Restart as e:
            raise RemoteChanged(f"{e}; the file keeps changing on the server") from e

    # -- state (partstate.py) --------------------------------------------------------------
    def _load_state(self) -> Optional[PartState]:
        return partstate.load(self.state_path, self.url)

    def _resumable_offset(self) -> int:
        return partstate.resumable_offset(self.part, self.state_path, self.url, self.entry.pinned)

    def _saved_plan(self, state: PartState) -> Optional[list[segment_plan.Segment]]:
        return partstate.saved_plan(self.part, state)

    def _save_state(self, state: PartState) -> None:
        partstate.save(self.state_path, state)

    def _discard(self) -> None:
        partstate.discard(self.part, self.state_path)

    # -- transfer --------------------------------------------------------------------------
    def _download(self, resume: bool) -> Blob:
        self.part.parent.mkdir(parents=True, exist_ok=True)
        offset = self._resumable_offset() if resume else 0
        state = self._load_state() if offset else None
        if state is not None and state.segments is not None:
            return self._verify_and_commit(*self._resume_segmented(state))
        known = sources.RemoteFile(url=self.url, name=self.entry.name)
        if state and state.url == self.url:
            known = sources.RemoteFile(
                url=self.url,
                name=self.entry.name,
                size=state.size,
                etag=state.etag,
                last_modified=state.last_modified,
            )
        if offset and known.size == offset and self.entry.digests:
            # Every byte arrived before the last run stopped (killed between the last write
            # and the commit): the digest decides, no request (a range at the end is a 416).
            hasher = hash_file(self.part, self.algorithms, limit=offset)
            return self._verify_and_commit(hasher, offset)
        if offset:
            self.reporter.say(f"resuming {self.entry.name} at {human_bytes(offset)}")
            hasher = hash_file(self.part, self.algorithms, limit=offset)
        else:
            self._discard()
            hasher = Hasher(self.algorithms)
        try:
            hasher, size = self._transfer(known, hasher)
        except UnexpectedHTML:
            self._discard()
            raise
        return self._verify_and_commit(hasher, size)

    def _transfer(self, known: sources.RemoteFile, hasher: Hasher) -> tuple[Hasher, Optional[int]]:
        """Stream the rest of the file into ``.part``; resume after failures without a restart.

        ``hasher.size`` is always the number of bytes in ``.part``: the offset to resume from.
        """
        patience = self._patience()
        stream = _Stream(known, hasher, holding=self.budget.acquire(threading.Event()))
        try:
            while True:
                start = stream.hasher.size
                try:
                    return self._receive(stream)
                except (NetworkError, HTTPStatusError) as e:
                    if stream.handed_over:
                        raise  # segments retry on their own; this loop would start over
                    stream.close_body()
                    if stream.hasher.size > start:  # progress resets the patience
                        patience.reset()
                    alive = stream.answered
                    try:
                        patience.wait(e, self.url, self.budget.cancelled.is_set, alive=alive)
                    except SourceError:
                        if stream.hasher.size:
                            kept = human_bytes(stream.hasher.size)
                            e.message += f" ({kept} kept in the cache; re-run to resume)"
                        raise
                except BaseException:
                    if not stream.handed_over:
                        stream.close_body()  # let the server know now, not at garbage collection
                    raise
        finally:
            if stream.holding:
                self.budget.release()
            if stream.bar is not None:
                stream.bar.close()

    def _receive(self, stream: _Stream) -> tuple[Hasher, Optional[int]]:
        """One response, written from ``stream.hasher.size`` to the end of the file, or handed
        over to a segmented transfer once one connection proves too slow (``plan.Probe``)."""
        start = stream.hasher.size
        asked_at = time.monotonic()
        stream.body = body = self.source.open_range(stream.known, start)
        stream.answered = True
        if body.offset != start:
            if start:
                self.reporter.say(
                    f"{self.entry.name}: the server sent the whole file "
                    "(range ignored or file changed); starting over"
                )
            stream.hasher = Hasher(self.algorithms)
        if body.remote != stream.known or not self.state_path.exists():
            stream.known = known = body.remote
            self._save_state(PartState(self.url, known.size, known.etag, known.last_modified))
        hasher, known = stream.hasher, stream.known
        chunks = iter(body)
        first = next(chunks, b"")
        if hasher.size == 0:
            self._refuse_html(first)
        size = known.size if known.size is not None else self.entry.size
        self._check_size_and_space(size, hasher.size)
        if stream.bar is None:
            stream.bar = self.reporter.bar(self.entry.name, size, initial=hasher.size)
        rest = itertools.chain((first,), chunks)
        pace = None
        if self.alternative is not None:
            pace = mirrors.Pace(self.alternative, size, restart=not self.entry.pinned)
        probe = None
        if size and known.size and self._segmentable(size):
            # Also after a retry: a dropped connection must not leave a throttled file to a
            # single stream for the rest of its way.
            probe = segment_plan.Probe(size, self.settings.probe, asked_at, hasher.size)
        self._write(rest, hasher, stream.bar, until=_either(pace, probe))
        if pace is not None and pace.rate is not None:
            raise _Slower(pace.rate, hasher.size)  # before a split: segments would stay here
        if probe is not None and probe.split and size:
            stream.handed_over = True
            stream.holding = False  # the token goes with the open response
            plan = segment_plan.plan(size, hasher.size)
            return self._run_segments(known, size, plan, hasher, stream.bar, (body, rest)), size
        if size is not None and hasher.size < size:
            raise NetworkError(
                f"connection to {origin(self.url)} closed at {hasher.size} of {size} bytes"
            )
        return hasher, size

    def _patience(self) -> Patience:
        return Patience(self.settings.retries, self.settings.backoff, self.reporter.say)

    # -- segments --------------------------------------------------------------------------
    def _segmentable(self, size: int) -> bool:
        return segment_plan.should_split(size, self.settings.connections, self.settings.min_segment)

    def _resume_segmented(self, state: PartState) -> tuple[Hasher, Optional[int]]:
        plan = self._saved_plan(state)
        if plan is None or state.size is None:
            raise Restart("the saved segment plan does not match the partial file")
        size = state.size
        known = sources.RemoteFile(url=self.url, name=self.entry.name, size=size)
        if state.url == self.url:
            known = replace(known, etag=state.etag, last_modified=state.last_modified)
        have = segment_plan.written(plan)
        missing = sum(1 for s in plan if not s.done)
        self.reporter.say(
            f"resuming {self.entry.name} at {human_bytes(have)} ({missing} segments to go)"
        )
        hasher = hash_file(self.part, self.algorithms, limit=segment_plan.contiguous_prefix(plan))
        bar = self.reporter.bar(self.entry.name, size, initial=have)
        try:
            return self._run_segments(known, size, plan, hasher, bar, None), size
        finally:
            bar.close()

    def _run_segments(
        self,
        known: sources.RemoteFile,
        size: int,
        plan: list[segment_plan.Segment],
        hasher: Hasher,
        bar: Bar,
        first: Optional[tuple[Any, Iterator[bytes]]],
    ) -> Hasher:
        base = PartState(self.url, size, known.etag, known.last_modified)

        def save(p: list[list[int]]) -> None:
            self._save_state(replace(base, segments=p))

        try:
            save(segment_plan.to_json(plan))  # before the preallocated .part: never a bare .part
            self._preallocate(size)
        except BaseException:
            if first is not None:
                first[0].close()
                self.budget.release()  # the token that came with the open response
            raise
        mirrors = [Mirror(self.url, self.source, known, checked=True)]
        for url in self.spread_urls:
            try:
                source = sources.for_url(url, self.settings)
            except DatastageError:
                continue  # e.g. a scheme whose library is missing: not a mirror for segments
            mirrors.append(Mirror(url, source, sources.RemoteFile(url=url, name=self.entry.name)))
        transfer = SegmentedTransfer(
            name=self.entry.name,
            part=self.part,
            size=size,
            plan=plan,
            mirrors=mirrors,
            hasher=hasher,
            settings=self.settings,
            bar=bar,
            budget=self.budget,
            save=save,
            refuse_html=self._refuse_html_from,
            warn=self.reporter.warn,
            say=self.reporter.say,
            on_prefix=self.on_prefix,
            first=first,
            pinned=self.entry.pinned,
        )
        try:
            return transfer.run()
        finally:
            self.dropped.extend(transfer.dropped)
            if len(mirrors) > 1 and len(transfer.dropped) < len(mirrors) - 1:
                self.via = f"{self.url} and its mirrors"

    def _preallocate(self, size: int) -> None:
        """Reserve the whole file now: segments write at their offsets, and ENOSPC comes first."""
        with (
            disk_full_as_error(self.cache.root, size, "for the download cache"),
            open(self.part, "r+b" if self.part.exists() else "wb") as f,
        ):
            if os.fstat(f.fileno()).st_size == size:
                return
            f.truncate(size)
            try:
                os.posix_fallocate(f.fileno(), 0, size)
            except AttributeError:  # pragma: no cover - not on every platform
                pass
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise
                # EINVAL/EOPNOTSUPP: the file system cannot reserve; the sparse file will do.

    def _check_size_and_space(self, size: Optional[int], offset: int) -> None:
        if size is not None and self.entry.size is not None and size != self.entry.size:
            # Saying it before the transfer saves the bytes (and an HTML page is found below).
            raise SizeMismatch(
                f"size mismatch for {self.entry.name} from {self.url}: expected "
                f"{self.entry.size} bytes, the server announces {size}",
                expected=self.entry.size,
                actual=size,
                url=self.url,
            )
        if size is not None:
            ensure_free(self.cache.root, size - offset, "for the download cache")

    def _write(
        self,
        chunks: Iterable[bytes],
        hasher: Hasher,
        bar: Bar,
        until: Optional[Callable[[int], bool]] = None,
    ) -> None:
        """Append to ``.part`` at ``hasher.size``, hashing as the bytes pass; stop early once
        ``until(bytes so far)`` says so (the rest of ``chunks`` is left for the caller)."""
        mode = "r+b" if self.part.exists() else "wb"
        with (
            disk_full_as_error(self.cache.root, what="for the download cache"),
            open(self.part, mode) as f,
        ):
            f.seek(hasher.size)
            f.truncate()
            for chunk in chunks:
                self.budget.check()
                f.write(chunk)
                hasher.update(chunk)
                bar.update(len(chunk))
                if self.on_prefix is not None:
                    f.flush()  # "written" means a reader of the .part sees it
                    self.on_prefix(hasher.size)
                if until is not None and until(hasher.size):
                    return

    def _refuse_html(self, first: bytes) -> None:
        self._refuse_html_from(first, self.url)

    def _refuse_html_from(self, first: bytes, url: str) -> None:
        if sources.looks_like_html(first) and not self.entry.name.lower().endswith(HTML_SUFFIXES):
            raise UnexpectedHTML(
                f"{url} returned an HTML page instead of {self.entry.name} "
                "(an error, login or quota page?)",
                hint="open the URL in a browser to see what the server says",
            )

    def _verify_and_commit(self, hasher: Hasher, size: Optional[int]) -> Blob:
        digests = hasher.hexdigests()
        try:
            check(
                f"{self.entry.name} from {self.via}",
                hasher.size,
                digests,
                self.entry.size if self.entry.size is not None else size,
                self.entry.digests,
                why=self._sniff_reason(),
            )
        except IntegrityError:
            self._discard()  # a file that failed verification is never kept
            raise
        extra: dict[str, Optional[str]] = {"etag": None, "last_modified": None}
        state = self._load_state()
        if state:
            extra = {"etag": state.etag, "last_modified": state.last_modified}
        blob = self.cache.commit(self.part, self.entry, digests, extra)
        self.state_path.unlink(missing_ok=True)
        return blob

    def _sniff_reason(self) -> str:
        try:
            with open(self.part, "rb") as f:
                head = f.read(sources.SNIFF_BYTES)
        except OSError:
            return ""
        return "it looks like an HTML page, not the file" if sources.looks_like_html(head) else ""


def _either(
    pace: Optional[mirrors.Pace], probe: Optional[segment_plan.Probe]
) -> Optional[Callable[[int], bool]]:
    """The ``until`` of a single stream: stop for a faster mirror or to split, else never."""
    if pace is None and probe is None:
        return None

    def until(have: int) -> bool:
        if pace is not None and pace.slower(have):
            return True  # checked first: a crawling mirror is left, not split over
        return probe is not None and probe.decided(have)

    return until
