"""The obtain seam: a manifest's files -> verified blobs in the cache (step 2 of ``get``).

    obtain_all(manifest, dest, settings, reporter) -> [Blob]   every file, in manifest order
      pinned_entries      first-use pins turned into expected size and sha256
      before_download     the licence warning and the space check, before a byte moves
      obtain_one          one file: cache, persistent tier, source folders, shared S3, network;
                          records a first-use pin, or says which pin a mismatch broke
    fetching_damaged_again   run an obtain (and what follows it) again once without the cache
                             blobs it found altered on disk
    with_unpin_hint          a damaged archive whose bytes match their first-use pin

api.py calls ``obtain_all`` (and ``before_download`` for extract-while-downloading);
stage/streaming.py calls ``obtain_one`` in its download thread with ``on_prefix``. A pin is
never forgotten here: only ``datastage unpin`` replaces one (api.unpin), whatever failed.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, TypeVar, cast

from ..core.errors import (
    AllMirrorsFailed,
    ChecksumMismatch,
    CorruptArchive,
    DamagedBlob,
    InsufficientSpace,
    SizeMismatch,
)
from ..core.fsutil import SPACE_MARGIN, existing_ancestor, free_bytes
from ..core.progress import Reporter
from ..resolve.manifest import FileEntry, Manifest
from ..settings.config import Settings
from .cache import Blob, Cache
from .pins import Pins, apply

if TYPE_CHECKING:
    from .budget import ConnectionBudget

T = TypeVar("T")
#: What a first-use pin's expectation can make a download fail with.
MISMATCHES = (ChecksumMismatch, SizeMismatch)


def obtain_all(
    manifest: Manifest, dest: Optional[Path], settings: Settings, reporter: Reporter
) -> list[Blob]:
    """Every file's verified cache blob, in manifest order (licence said and space checked
    first; ``dest``: where it will be staged, None for ``fetch``). Records the use (usage.py)."""
    from . import usage

    store = Cache(settings.cache_dir)
    pinned = pinned_entries(manifest, store)
    before_download(manifest, pinned, store, dest, reporter)
    pinned_now: Optional[list[str]] = [] if len(manifest.files) > 1 else None
    try:
        blobs = _download_all(manifest, pinned, store, settings, reporter, pinned_now)
    finally:
        _say_pinned(manifest, pinned_now or [], reporter)
    usage.record_use(store, manifest, list(zip(manifest.files, blobs)))
    return blobs


def pinned_entries(manifest: Manifest, store: Cache) -> list[FileEntry]:
    """Entries with their trust-on-first-use pins turned into expected size and sha256."""
    book = Pins(store.root)
    return [apply(entry, book.get(entry)) for entry in manifest.files]


def before_download(
    manifest: Manifest,
    pinned: Sequence[FileEntry],
    store: Cache,
    dest: Optional[Path],
    reporter: Reporter,
) -> None:
    """What is said and checked before a byte moves: non-commercial terms (a warning, even
    with --quiet) and room in the cache and the target (sizes known from ``pinned``)."""
    _warn_license(manifest, reporter)
    _check_space(replace(manifest, files=tuple(pinned)), store, dest)


def obtain_one(
    entry: FileEntry,
    manifest: Manifest,
    store: Cache,
    settings: Settings,
    reporter: Reporter,
    *,
    expected: Optional[FileEntry] = None,
    budget: Optional[ConnectionBudget] = None,
    on_prefix: Optional[Callable[[int], None]] = None,
    pinned_now: Optional[list[str]] = None,
) -> Blob:
    """The verified blob of ``entry``; record a first-use pin, or say which pin a mismatch broke.

    ``expected``: ``entry`` with its pin applied (default: read from the pins now).
    ``budget``: the connections shared with the other files of the run. ``on_prefix``
    (streaming.py) is told how much of the ``.part`` is written, when it downloads. A new pin
    is said at once, or added to ``pinned_now`` for one line about all files."""
    from . import localcopy, persistent

    book = Pins(store.root)
    if expected is None:
        expected = apply(entry, book.get(entry))

    try:
        # download, join parts, or (gated, no copy at hand) say how to get the file
        fetch_one = localcopy.fetcher(manifest, expected, budget, on_prefix)
        blob = persistent.obtain(expected, manifest, store, settings, reporter, fetch_one)
    except (ChecksumMismatch, SizeMismatch, AllMirrorsFailed) as e:
        pin = book.get(entry) if expected is not entry else None
        if pin is None or not _is_mismatch(e):
            raise
        e.amend(
            f" (expected value pinned on first use, {pin.pinned_at})",
            hint="if the dataset was re-released on purpose: "
            f"datastage unpin {shlex.quote(manifest.target)}, then try again",
        )
        raise
    pin = book.record(entry, blob.size, blob.sha256, manifest.dataset or manifest.name)
    if pin and pinned_now is not None:
        pinned_now.append(entry.name)
    elif pin:
        reporter.say(f"{entry.name}: pinned on first use (size {pin.size}, sha256:{pin.sha256})")
    return blob


def _is_mismatch(error: Exception) -> bool:
    """A size or digest that differs from the expected one, on the only URL or on any mirror."""
    if isinstance(error, AllMirrorsFailed):
        return any(isinstance(failure, MISMATCHES) for _, failure in error.failures)
    return isinstance(error, MISMATCHES)


def fetching_damaged_again(action: Callable[[], T], store: Cache, reporter: Reporter) -> T:
    """Run ``action``; if it found cache blobs altered on disk, drop them and run it again
    (they are then downloaded, or copied from the persistent tier, hashed on the way in)."""
    try:
        return action()
    except DamagedBlob as e:
        for blob in e.blobs:
            reporter.warn(f"the cached {blob.path} no longer matches its sha256; fetching it again")
            try:
                store.discard(blob)
            except OSError as why:
                e.amend(
                    f"; it cannot be removed: {why.strerror or why}",
                    hint=f"remove it by hand (rm {blob.path}) and try again",
                )
                raise e from None
    return action()


def with_unpin_hint(error: CorruptArchive, manifest: Manifest, store: Cache) -> CorruptArchive:
    """A damaged archive whose bytes match their first-use pin stays an archive error, and the
    pin stays (only `unpin` replaces one): say how to accept a fixed file."""
    book = Pins(store.root)
    if any(book.status(entry)[1] is not None for entry in manifest.files):
        error.hint = (
            "a file pinned on first use is damaged; if its server now has a sound copy: "
            f"datastage unpin {manifest.address}, then try again"
        )
    return error


# -- helpers -----------------------------------------------------------------------------------


def _download_all(
    manifest: Manifest,
    pinned: list[FileEntry],
    store: Cache,
    settings: Settings,
    reporter: Reporter,
    pinned_now: Optional[list[str]] = None,
) -> list[Blob]:
    """Every file's blob, in manifest order, several at once within one budget of connections.

    Files start in manifest order; each takes connections from the shared budget as its
    segments need them, so a big file and many small ones share the link without exceeding
    ``settings.connections``. The first failure stops the others (at their next chunk;
    their ``.part`` files stay, resumable) and is raised.
    """
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    from .budget import Cancelled, ConnectionBudget

    budget = ConnectionBudget(settings.connections)

    def one(entry: FileEntry, expected: FileEntry) -> Blob:
        return obtain_one(
            entry, manifest, store, settings, reporter,
            expected=expected, budget=budget, pinned_now=pinned_now,
        )  # fmt: skip

    pairs = list(zip(manifest.files, pinned))
    if len(pairs) == 1 or settings.connections == 1:
        return [one(e, p) for e, p in pairs]
    with ThreadPoolExecutor(max_workers=min(len(pairs), settings.connections)) as pool:
        futures = [pool.submit(one, e, p) for e, p in pairs]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:  # a failed file or Ctrl-C: the others stop at their next chunk
            if not all(f.done() and not f.exception() for f in futures):
                budget.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
        failed = [f for f in futures if not f.cancelled() and f.exception()]
        if failed:  # the first real failure, not a file stopped because of it
            first = next((f for f in failed if not isinstance(f.exception(), Cancelled)), failed[0])
            raise cast(BaseException, first.exception())
        return [f.result() for f in futures]


def _say_pinned(manifest: Manifest, names: list[str], reporter: Reporter) -> None:
    """One line for the files of a run that were pinned on first use, not one per file."""
    if names:
        reporter.say(
            f"pinned on first use: {len(names)} of {len(manifest.files)} files had no sha256 in "
            "the manifest; their sizes and sha256 are recorded and later downloads must match "
            f"(see: datastage info {shlex.quote(manifest.target)})"
        )


def _warn_license(manifest: Manifest, reporter: Reporter) -> None:
    """Non-commercial terms are said before a byte moves (even with --quiet: it is a warning)."""
    if manifest.noncommercial:
        note = f" ({manifest.license_note})" if manifest.license_note else ""
        reporter.warn(
            f"{manifest.address} is licensed {manifest.license or 'restrictively'}: "
            f"non-commercial use only{note}; {_where_terms_are(manifest)}"
        )
    elif manifest.license_note:
        reporter.warn(f"{manifest.address}: {manifest.license_note}")


def _where_terms_are(manifest: Manifest) -> str:
    """Somewhere real to read the terms: the homepage, else who publishes the files."""
    if manifest.homepage:
        return f"check the terms at {manifest.homepage}"
    from urllib.parse import urlsplit

    hosts = dict.fromkeys(urlsplit(url).hostname or "" for f in manifest.files for url in f.urls)
    published = ", ".join(h for h in hosts if h)
    where = f" ({published})" if published else ""
    return f"the manifest names no homepage: check the terms with its publisher{where}"


def _check_space(manifest: Manifest, store: Cache, dest: Optional[Path]) -> None:
    """Fail before any byte moves if the cache (and the target, if on that disk) lacks room."""
    needs: dict[Path, int] = defaultdict(int)
    for entry in manifest.files:
        if entry.size is not None and store.find(entry) is None:
            needs[store.root] += entry.size
    if dest is not None:
        needs[dest] += sum(e.unpacked_size or 0 for e in manifest.files)
    by_device: dict[int, tuple[Path, int]] = {}
    for path, needed in needs.items():
        device = existing_ancestor(path).stat().st_dev
        held = by_device.get(device, (path, 0))
        by_device[device] = (held[0], held[1] + needed)
    for path, needed in by_device.values():
        free = free_bytes(path)
        if needed and needed + SPACE_MARGIN > free:
            raise InsufficientSpace(str(path), needed, free, f"for {manifest.name}")
