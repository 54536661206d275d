"""The cache: a content-addressed store of verified downloads, and the place for unfinished ones.

    $DATASTAGE_CACHE/
    ├── blobs/sha256/ab/ab12…            verified, immutable (read-only) file contents
    ├── index/md5/<hex>                  alias: a manifest pinned by md5/sha1/sha512 -> sha256
    ├── index/url/<sha256(url)>.json     an unpinned URL -> {"sha256", "size", validators}
    ├── partial/<key>.part               an unfinished download, resumable after kill -9
    ├── partial/<key>.json               its state: URL, size, ETag/Last-Modified
    └── .locks/<key>.lock                one downloader per file, across processes

Owns: where things live, looking a file entry up, committing a verified file (fsync,
read-only, ``os.replace``) and dropping a blob found damaged. A blob is only ever created from
bytes whose sha256 was computed on the way in (download, persistent tier, source folder, S3),
so ``find`` trusts a blob of the right size without hashing it: a repeated ``get`` stays
instant. Bytes altered on disk later are caught where they matter: a staging built from a blob
not verified in this run re-hashes it beside the extraction (stage.py), ``verify`` re-hashes the
blobs a staging was built from, and ``get --repair`` drops a damaged one and fetches it again.
Does not own: downloading (download.py) or deciding what "verified" means (digests.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..core.digests import CACHE_ALGORITHM, HEX_LENGTHS
from ..core.fsutil import fsync_dir, write_atomic
from ..core.redact import redact_url
from ..resolve.manifest import FileEntry

if TYPE_CHECKING:
    import threading


@dataclass(frozen=True)
class Blob:
    path: Path
    size: int
    sha256: str
    #: Committed by this process, from bytes hashed on the way in: no need to re-hash it.
    #: False for a blob found in the cache (another run made it; its bytes may have changed).
    fresh: bool = field(default=False, compare=False)


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root

    # -- locations -----------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        """Where the blob of ``sha256`` lives; a digest read from a file (a marker, an index
        record) that is not 64 hex digits must never become a path outside the store."""
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.root / "blobs" / CACHE_ALGORITHM / sha256[:2] / sha256

    def key(self, entry: FileEntry) -> str:
        """A stable file-name-safe key for an entry: its strongest digest, else its URL."""
        if entry.digests:
            algorithm, _, hexdigest = entry.identity.partition(":")
            return f"{algorithm}-{hexdigest}"
        return "url-" + hashlib.sha256(entry.url.encode()).hexdigest()[:40]

    def partial_paths(self, entry: FileEntry) -> tuple[Path, Path]:
        key = self.key(entry)
        return self.root / "partial" / f"{key}.part", self.root / "partial" / f"{key}.json"

    def lock_path(self, entry: FileEntry) -> Path:
        return self.root / ".locks" / f"{self.key(entry)}.lock"

    def _url_index(self, url: str) -> Path:
        return self.root / "index" / "url" / (hashlib.sha256(url.encode()).hexdigest() + ".json")

    def _alias(self, algorithm: str, hexdigest: str) -> Path:
        return self.root / "index" / algorithm / hexdigest

    # -- lookup --------------------------------------------------------------------------
    def find(self, entry: FileEntry) -> Optional[Blob]:
        """The verified blob for ``entry``, or None. Costs a few ``stat`` calls, no hashing."""
        sha256 = self._sha256_of(entry)
        if sha256 is None:
            return None
        try:
            path = self.blob_path(sha256)
        except ValueError:  # an index record damaged (or edited) by hand: not found
            return None
        try:
            size = path.stat().st_size
        except OSError:
            return None
        if entry.size is not None and size != entry.size:
            return None
        return Blob(path, size, sha256)

    def _sha256_of(self, entry: FileEntry) -> Optional[str]:
        """The blob every digest of ``entry`` agrees on. Each md5/sha1/sha512 must have an alias
        to the same sha256: a blob known only by one digest is never taken for another."""
        if not entry.digests:
            record = _read_json(self._url_index(entry.url))
            return record.get("sha256") if record else None
        pinned = entry.digest(CACHE_ALGORITHM)
        found = {pinned.hexdigest} if pinned else set()
        for digest in entry.digests:
            if digest.algorithm != CACHE_ALGORITHM:
                found.add(_read_text(self._alias(digest.algorithm, digest.hexdigest)) or "")
        return found.pop() if len(found) == 1 and "" not in found else None

    def forget(self, entry: FileEntry) -> None:
        """Drop what an unpinned URL points to, so the next run downloads it again."""
        if not entry.digests:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._url_index(entry.url))

    def discard(self, blob: Blob) -> None:
        """Drop a blob whose bytes no longer match its name, so ``find`` stops returning it."""
        if blob.path != self.blob_path(blob.sha256):
            raise ValueError(f"{blob.path} is not a blob of {self.root}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(blob.path)

    # -- commit --------------------------------------------------------------------------
    def commit(
        self, part: Path, entry: FileEntry, digests: dict[str, str], extra: dict[str, Any]
    ) -> Blob:
        """Move a verified ``.part`` into the store; record aliases so ``find`` sees it."""
        sha256 = digests[CACHE_ALGORITHM]
        target = self.blob_path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(part, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.replace(part, target)
        fsync_dir(target.parent)
        for algorithm, hexdigest in digests.items():
            if algorithm != CACHE_ALGORITHM and algorithm in HEX_LENGTHS:
                write_atomic(self._alias(algorithm, hexdigest), sha256.encode())
        if not entry.digests:
            url = redact_url(entry.url)  # the file is named by the full URL's hash, not this
            record = {"url": url, "sha256": sha256, "size": target.stat().st_size, **extra}
            write_atomic(self._url_index(entry.url), json.dumps(record).encode())
        return Blob(target, target.stat().st_size, sha256, fresh=True)


def damaged(
    blob: Blob,
    on_bytes: Optional[Callable[[int], None]] = None,
    stop: Optional[threading.Event] = None,
) -> Optional[str]:
    """Why ``blob``'s bytes do not match its name (sha256 and size), or None when they do.
    ``stop`` (a threading.Event) ends the read early; the answer is then None."""
    h = hashlib.sha256()
    size = 0
    try:
        with open(blob.path, "rb") as f:
            while chunk := f.read(1 << 20):
                if stop is not None and stop.is_set():
                    return None
                h.update(chunk)
                size += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    if size != blob.size:
        return f"size {size}, expected {blob.size}"
    if h.hexdigest() != blob.sha256:
        return f"sha256 is {h.hexdigest()}, its name says {blob.sha256}"
    return None


def _read_text(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _read_json(path: Path) -> Optional[dict[str, Any]]:
    text = _read_text(path)
    if text is None:
        return None
    with contextlib.suppress(ValueError):
        value = json.loads(text)
        if isinstance(value, dict):
            return value
    return None
