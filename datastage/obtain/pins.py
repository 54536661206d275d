"""Trust on first use: sizes and sha256 digests recorded by the first verified download.

    $DATASTAGE_CACHE/pins/<sha256(url)[:40]>.json   {"url", "size", "sha256", "dataset", ...}

(the file is named by the full URL; its "url" is redacted, as everything stored: redact.py)

A manifest entry without a sha256 (its publisher gives none, or only an md5) is downloaded
once; the observed size and sha256 are recorded here, and every later download of the same
URL is checked against them (``apply`` turns a pin into an expected digest before the
download, so a changed file is a ChecksumMismatch/SizeMismatch with expected vs actual).
A manifest's own sha256 always wins: such entries are never pinned here.

Owns: reading, recording and forgetting pins, and saying how an entry is pinned.
Does not own: downloading or checking bytes (download.py, digests.py).
Pins live in the cache, so clearing the cache forgets them (as pip forgets its cache).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from ..core.digests import CACHE_ALGORITHM, Digest
from ..core.fsutil import write_atomic
from ..core.redact import redact_url, same_url
from ..resolve.manifest import FileEntry

PINS_DIR = "pins"

#: How an entry is pinned, as ``info`` reports it.
BY_MANIFEST = "manifest"
ON_FIRST_USE = "first use"
UNPINNED = "unpinned"


@dataclass(frozen=True)
class Pin:
    url: str
    size: int
    sha256: str
    dataset: str = ""
    pinned_at: str = ""


class Pins:
    """The pins store of one cache folder."""

    def __init__(self, cache_root: Path) -> None:
        self.root = cache_root / PINS_DIR

    def _path(self, url: str) -> Path:
        return self.root / (hashlib.sha256(url.encode()).hexdigest()[:40] + ".json")

    def get(self, entry: FileEntry) -> Optional[Pin]:
        try:
            raw = json.loads(self._path(entry.url).read_text(encoding="utf-8"))
            pin = Pin(**raw)
        except (OSError, ValueError, TypeError):
            return None  # no pin (or an unreadable one: the next download records it again)
        return pin if same_url(pin.url, entry.url) else None

    def record(self, entry: FileEntry, size: int, sha256: str, dataset: str) -> Optional[Pin]:
        """Pin ``entry`` unless the manifest pins it or it is pinned already; return new pin."""
        if not needs_pin(entry) or self.get(entry) is not None:
            return None
        pin = Pin(
            entry.url, size, sha256, dataset, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        )
        stored = {**pin.__dict__, "url": redact_url(pin.url)}  # keyed by the full URL's hash
        write_atomic(self._path(entry.url), json.dumps(stored, indent=1).encode())
        return pin

    def forget(self, entry: FileEntry) -> bool:
        try:
            self._path(entry.url).unlink()
        except FileNotFoundError:
            return False
        return True

    def status(self, entry: FileEntry) -> tuple[str, Optional[Pin]]:
        if not needs_pin(entry):
            return BY_MANIFEST, None
        pin = self.get(entry)
        return (ON_FIRST_USE, pin) if pin else (UNPINNED, None)


def needs_pin(entry: FileEntry) -> bool:
    """Entries whose manifest gives no sha256 get one on first use (an md5 is kept too)."""
    return entry.digest(CACHE_ALGORITHM) is None


def apply(entry: FileEntry, pin: Optional[Pin]) -> FileEntry:
    """The entry with the pin's size and sha256 as expectations (unchanged without a pin)."""
    if pin is None or not needs_pin(entry):
        return entry
    return replace(
        entry,
        digests=(*entry.digests, Digest(CACHE_ALGORITHM, pin.sha256)),
        size=entry.size if entry.size is not None else pin.size,
    )
