"""Resumable, verified downloads into the cache.

Owns: the life of one file from "not in the cache" to "verified blob": one downloader per file
across processes (lock), trying each URL of an entry in turn (mirrors), resuming a ``.part``
after any interruption (kill -9 included), retrying failures that made no progress with
urllib3's Retry backoff, hashing while streaming, and refusing HTML pages served as files.
Does not own: how bytes are requested (sources/), where blobs live (cache.py).

Resume protocol (pip/huggingface_hub style): ``partial/<key>.json`` records the URL, size and
validator (strong ETag or Last-Modified) of the first response. A re-run asks for
``Range: bytes=<have>-`` with ``If-Range: <validator>``; a source that answers from byte 0
(server ignored the range, or the file changed) means truncate and start over. The prefix
already on disk is hashed once when resuming (hash state cannot be saved across processes).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Optional

from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from . import locks, sources
from .cache import Blob, Cache
from .config import Settings
from .digests import Hasher, check, hash_file
from .errors import (
    AllMirrorsFailed,
    IntegrityError,
    NetworkError,
    OfflineError,
    SizeMismatch,
    SourceError,
    UnexpectedHTML,
)
from .fsutil import disk_full_as_error, ensure_free, write_atomic
from .manifest import FileEntry
from .progress import Bar, Reporter
from .units import human_bytes

SNIFF_BYTES = 1024
HTML_SUFFIXES = (".html", ".htm", ".xhtml")


@dataclass(frozen=True)
class _State:
    """What a resumed run must know about the download it continues."""

    url: str
    size: Optional[int] = None
    etag: Optional[str] = None
    last_modified: Optional[str] = None


def download(entry: FileEntry, cache: Cache, settings: Settings, reporter: Reporter) -> Blob:
    """Return the verified cache blob for ``entry``, downloading it if needed."""
    blob = cache.find(entry)
    if blob:
        return blob
    if settings.offline and not _usable_urls(entry, settings):
        raise OfflineError(f"{entry.name} is not in the cache and DATASTAGE_OFFLINE is set")
    with locks.hold(
        cache.lock_path(entry), f"download of {entry.name}", settings.lock_timeout, reporter.say
    ):
        blob = cache.find(entry)  # another process may have finished it while we waited
        if blob:
            return blob
        return _from_any_url(entry, cache, settings, reporter)


def _usable_urls(entry: FileEntry, settings: Settings) -> tuple[str, ...]:
    """Every URL of ``entry``; offline, only local paths (reading them is no network use:
    the bundled demo must stage offline)."""
    if settings.offline:
        return tuple(u for u in entry.urls if sources.scheme_of(u) == "file")
    return entry.urls


def _from_any_url(entry: FileEntry, cache: Cache, settings: Settings, reporter: Reporter) -> Blob:
    failures: list[tuple[str, Exception]] = []
    urls = _usable_urls(entry, settings)
    for url in urls:
        try:
            return _Download(entry, url, cache, settings, reporter).run()
        except (SourceError, IntegrityError) as e:
            failures.append((url, e))
            if len(urls) > 1 and len(failures) < len(urls):
                reporter.warn(f"{e}; trying the next mirror")
    if len(failures) == 1:
        raise failures[0][1]
    reasons = "; ".join(f"{url}: {e}" for url, e in failures)
    raise AllMirrorsFailed(f"all {len(failures)} sources of {entry.name} failed: {reasons}")


class _Download:
    """One URL, one file: resume, stream, hash, verify, commit."""

    def __init__(
        self, entry: FileEntry, url: str, cache: Cache, settings: Settings, reporter: Reporter
    ):
        self.entry = entry
        self.url = url
        self.cache = cache
        self.settings = settings
        self.reporter = reporter
        self.source = sources.for_url(url, settings)
        self.part, self.state_path = cache.partial_paths(entry)
        self.algorithms = [d.algorithm for d in entry.digests]

    def run(self) -> Blob:
        resumed = self._resumable_offset() > 0
        try:
            return self._download(resume=True)
        except IntegrityError:
            if not resumed:
                raise
            # The prefix from an earlier run may be what went wrong; one clean try settles it.
            self.reporter.warn(
                f"{self.entry.name} failed verification after resuming; downloading it again"
            )
            return self._download(resume=False)

    # -- state -----------------------------------------------------------------------------
    def _load_state(self) -> Optional[_State]:
        try:
            return _State(**json.loads(self.state_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _resumable_offset(self) -> int:
        state = self._load_state()
        if state is None or not self.part.exists():
            return 0
        # Bytes from another mirror are fine when a digest will check them; otherwise not.
        if state.url != self.url and not self.entry.pinned:
            return 0
        have = self.part.stat().st_size
        return 0 if state.size is not None and have > state.size else have

    def _save_state(self, state: _State) -> None:
        write_atomic(self.state_path, json.dumps(asdict(state)).encode())

    def _discard(self) -> None:
        for path in (self.part, self.state_path):
            path.unlink(missing_ok=True)

    # -- transfer --------------------------------------------------------------------------
    def _download(self, resume: bool) -> Blob:
        self.part.parent.mkdir(parents=True, exist_ok=True)
        offset = self._resumable_offset() if resume else 0
        state = self._load_state() if offset else None
        known = sources.RemoteFile(url=self.url, name=self.entry.name)
        if state and state.url == self.url:
            known = sources.RemoteFile(
                url=self.url,
                name=self.entry.name,
                size=state.size,
                etag=state.etag,
                last_modified=state.last_modified,
            )
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
        retry = Retry(total=self.settings.retries, backoff_factor=self.settings.backoff)
        bar = None
        try:
            while True:
                start = hasher.size
                try:
                    body = self.source.open_range(known, start)
                    if body.offset != start:
                        if start:
                            self.reporter.say(
                                f"{self.entry.name}: the server sent the whole file "
                                "(range ignored or file changed); starting over"
                            )
                        hasher = Hasher(self.algorithms)
                    if body.remote != known or not self.state_path.exists():
                        known = body.remote
                        self._save_state(
                            _State(self.url, known.size, known.etag, known.last_modified)
                        )
                    chunks = iter(body)
                    first = next(chunks, b"")
                    if hasher.size == 0:
                        self._refuse_html(first)
                    size = known.size if known.size is not None else self.entry.size
                    self._check_size_and_space(size, hasher.size)
                    if bar is None:
                        bar = self.reporter.bar(self.entry.name, size, initial=hasher.size)
                    self._write(itertools.chain((first,), chunks), hasher, bar)
                    if size is not None and hasher.size < size:
                        raise NetworkError(
                            f"connection to {self.url} closed at {hasher.size} of {size} bytes"
                        )
                    return hasher, size
                except NetworkError as e:
                    if hasher.size > start:  # progress resets the patience
                        retry = Retry(
                            total=self.settings.retries, backoff_factor=self.settings.backoff
                        )
                    try:
                        retry = retry.increment(method="GET", url=self.url, error=e)
                    except MaxRetryError:
                        raise NetworkError(
                            f"{e}; gave up after {self.settings.retries + 1} tries "
                            "without progress "
                            f"({human_bytes(hasher.size)} kept in the cache; re-run to resume)"
                        ) from e
                    retry.sleep()
        finally:
            if bar is not None:
                bar.close()

    def _check_size_and_space(self, size: Optional[int], offset: int) -> None:
        if size is not None and self.entry.size is not None and size != self.entry.size:
            # Saying it before the transfer saves the bytes (and an HTML page is found below).
            raise SizeMismatch(
                f"size mismatch for {self.entry.name} from {self.url}: expected "
                f"{self.entry.size} bytes, the server announces {size}"
            )
        if size is not None:
            ensure_free(self.cache.root, size - offset, "for the download cache")

    def _write(self, chunks: Iterable[bytes], hasher: Hasher, bar: Bar) -> None:
        """Append to ``.part`` at ``hasher.size``, hashing as the bytes pass."""
        mode = "r+b" if self.part.exists() else "wb"
        with (
            disk_full_as_error(self.cache.root, what="for the download cache"),
            open(self.part, mode) as f,
        ):
            f.seek(hasher.size)
            f.truncate()
            for chunk in chunks:
                f.write(chunk)
                hasher.update(chunk)
                bar.update(len(chunk))

    def _refuse_html(self, first: bytes) -> None:
        if looks_like_html(first) and not self.entry.name.lower().endswith(HTML_SUFFIXES):
            raise UnexpectedHTML(
                f"{self.url} returned an HTML page instead of {self.entry.name} "
                "(an error, login or quota page?)",
                hint="open the URL in a browser to see what the server says",
            )

    def _verify_and_commit(self, hasher: Hasher, size: Optional[int]) -> Blob:
        digests = hasher.hexdigests()
        try:
            check(
                f"{self.entry.name} from {self.url}",
                hasher.size,
                digests,
                self.entry.size if self.entry.size is not None else size,
                self.entry.digests,
                why=self._sniff_reason(),
            )
        except IntegrityError:
            self._discard()  # a file that failed verification is never kept
            raise
        if not self.entry.pinned:
            self.reporter.say(
                f"{self.entry.name}: not pinned by the manifest; sha256:{digests['sha256']}"
            )
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
                head = f.read(SNIFF_BYTES)
        except OSError:
            return ""
        return "it looks like an HTML page, not the file" if looks_like_html(head) else ""


def looks_like_html(head: bytes) -> bool:
    """True for the start of an HTML document (quota, login and error pages)."""
    text = head[:SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<!doctype html", b"<html")) or (
        text.startswith(b"<") and (b"<head" in text or b"<body" in text)
    )
