"""The Python API, and the one place that knows the order of the pipeline.

    get(target, to)  = resolve manifest (or synthesise one for a URL/path: direct.py)
                       -> already staged? -> check space -> fetch every file
                       (cache, lock, resume, verify) -> stage (extract, marker, rename)

Everything a later step needs is imported when that step runs, so a ``get`` of a dataset that
is already staged reads one manifest and one marker, and touches no network library.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Union, cast

from . import config, registry, stage
from .errors import (
    AllMirrorsFailed,
    ArchiveError,
    ChecksumMismatch,
    InsufficientSpace,
    SizeMismatch,
    UsageError,
)
from .fsutil import SPACE_MARGIN, existing_ancestor, free_bytes
from .manifest import FileEntry, Manifest
from .progress import Reporter

PathLike = Union[str, "os.PathLike[str]"]


def get(
    target: str,
    to: Optional[PathLike] = None,
    cache: Optional[PathLike] = None,
    quiet: Optional[bool] = None,
    *,
    sha256: Optional[str] = None,
    name: Optional[str] = None,
    name_encoding: Optional[str] = None,
    hf_endpoint: Optional[str] = None,
    s3_endpoint: Optional[str] = None,
    connections: Optional[int] = None,
    mirror: Optional[str] = None,
) -> Path:
    """Stage ``target`` under ``to``; return its root.

    ``target`` is a registry name, a manifest path, or — without a manifest — a URL or path
    (``https://``, Drive links, ``gdrive://``, ``hf://``, ``s3://``, other fsspec URLs, local
    files and folders); ``sha256`` and ``name`` then pin the file and name the dataset.
    ``to`` defaults to $DATASTAGE_TO, the config file's ``to``, then the platform's fast disk.
    Safe to call from every process at once: the data is downloaded and staged once; under
    torchrun the ranks of one machine take turns on a local lock (see ranks.py).
    ``connections`` caps the connections open at once (segments and files together);
    ``mirror`` prefers the URLs that contain it (e.g. a host name); ``name_encoding`` decodes
    a URL/path archive's member names that are not UTF-8 (default: detected, with a warning).
    """
    endpoints = {"hf_endpoint": hf_endpoint, "s3_endpoint": s3_endpoint}
    manifest = _manifest(target, sha256, name, name_encoding, cache_dir=cache, **endpoints)
    dest = config.resolve_to(to)
    if stage.is_current(manifest, dest):
        return stage.root_of(manifest, dest)
    settings = config.resolve(
        cache_dir=cache, quiet=quiet, connections=connections, mirror=mirror, **endpoints
    )
    from . import ranks

    if not ranks.distributed():
        return get_manifest(manifest, dest, settings)
    with ranks.machine_turn(
        f"get {manifest.name} {dest}",
        lambda: stage.is_current(manifest, dest),
        settings.lock_timeout,
        Reporter(settings.quiet).say,
    ):
        if stage.is_current(manifest, dest):
            return stage.root_of(manifest, dest)
        return get_manifest(manifest, dest, settings)


def get_manifest(manifest: Manifest, dest: Path, settings: config.Settings) -> Path:
    """Fetch and stage an already resolved manifest (no is-current shortcut, no rank turn)."""
    reporter = Reporter(settings.quiet)
    overlapped = _overlapped(manifest, dest, settings, reporter)
    if overlapped is not None:
        return overlapped
    blobs = list(zip(manifest.files, _obtain_all(manifest, dest, settings, reporter)))
    try:
        return stage.stage(manifest, blobs, dest, reporter, settings.lock_timeout)
    except ArchiveError:
        _forget_unvouched(manifest, settings)
        raise


def _overlapped(
    manifest: Manifest, dest: Path, settings: config.Settings, reporter: Reporter
) -> Optional[Path]:
    """Extract while downloading (overlap.py) when that is safe; None: take the usual path."""
    from . import overlap
    from .cache import Cache

    if not overlap.enabled():
        return None
    store = Cache(settings.cache_dir)
    pinned = _pinned_entries(manifest, store)
    if not overlap.eligible(manifest, pinned, store):
        return None
    _warn_license(manifest, reporter)
    _check_space_before_download(replace(manifest, files=tuple(pinned)), store, dest)
    return overlap.get(manifest, pinned, dest, settings, reporter, store)


def _forget_unvouched(manifest: Manifest, settings: config.Settings) -> None:
    """Bytes no manifest checksum vouched for turned out broken: drop their cache record and
    first-use pin, so a rerun after the server is fixed downloads them again."""
    from .cache import Cache
    from .pins import Pins, needs_pin

    store = Cache(settings.cache_dir)
    book = Pins(store.root)
    for entry in manifest.files:
        store.forget(entry)
        if needs_pin(entry):
            book.forget(entry)


def fetch(
    target: str,
    cache: Optional[PathLike] = None,
    quiet: Optional[bool] = None,
    *,
    sha256: Optional[str] = None,
    hf_endpoint: Optional[str] = None,
    s3_endpoint: Optional[str] = None,
    connections: Optional[int] = None,
    mirror: Optional[str] = None,
) -> list[Path]:
    """Download and verify every file of ``target`` into the cache, without staging it."""
    endpoints = {"hf_endpoint": hf_endpoint, "s3_endpoint": s3_endpoint}
    manifest = _manifest(target, sha256, None, cache_dir=cache, **endpoints)
    settings = config.resolve(
        cache_dir=cache, quiet=quiet, connections=connections, mirror=mirror, **endpoints
    )
    reporter = Reporter(settings.quiet)
    return [blob.path for blob in _obtain_all(manifest, None, settings, reporter)]


def _obtain_all(
    manifest: Manifest, dest: Optional[Path], settings: config.Settings, reporter: Reporter
) -> list[Any]:
    """Every file's verified cache blob, in manifest order (space checked first)."""
    from . import cachetool
    from .cache import Cache

    store = Cache(settings.cache_dir)
    _warn_license(manifest, reporter)
    pinned = _pinned_entries(manifest, store)
    _check_space_before_download(replace(manifest, files=tuple(pinned)), store, dest)
    blobs = _download_all(manifest, pinned, store, settings, reporter)
    cachetool.record_use(store, manifest, list(zip(manifest.files, blobs)))
    return blobs


def _warn_license(manifest: Manifest, reporter: Reporter) -> None:
    """Non-commercial terms are said before a byte moves (even with --quiet: it is a warning)."""
    if manifest.noncommercial:
        note = f" ({manifest.license_note})" if manifest.license_note else ""
        reporter.warn(
            f"{manifest.address} is licensed {manifest.license or 'restrictively'}: "
            f"non-commercial use only{note}; "
            f"check the terms at {manifest.homepage or 'its homepage'}"
        )
    elif manifest.license_note:
        reporter.warn(f"{manifest.address}: {manifest.license_note}")


def _pinned_entries(manifest: Manifest, store: Any) -> list[FileEntry]:
    """Entries with their trust-on-first-use pins turned into expected size and sha256."""
    from .pins import Pins, apply

    book = Pins(store.root)
    return [apply(entry, book.get(entry)) for entry in manifest.files]


def _download_pinned(
    manifest: Manifest,
    entry: FileEntry,
    expected: FileEntry,
    store: Any,
    settings: Any,
    reporter: Reporter,
    budget: Any = None,
    on_prefix: Any = None,
) -> Any:
    """Download ``expected``; record a first-use pin, or say which pin a mismatch broke.
    ``on_prefix`` (overlap.py) is told how much of the ``.part`` is written, when it downloads."""
    from . import tiers
    from .download import download
    from .pins import Pins

    book = Pins(store.root)
    try:
        fetch_one = functools.partial(download, budget=budget, on_prefix=on_prefix)
        blob = tiers.obtain(expected, manifest, store, settings, reporter, fetch_one)
    except (ChecksumMismatch, SizeMismatch, AllMirrorsFailed) as e:
        pin = book.get(entry) if expected is not entry else None
        if pin is None or "mismatch" not in str(e):
            raise
        raise type(e)(
            f"{e} (expected value pinned on first use, {pin.pinned_at})",
            hint="if the dataset was re-released on purpose: "
            f"datastage unpin {manifest.address}, then try again",
        ) from e
    pin = book.record(entry, blob.size, blob.sha256, manifest.dataset or manifest.name)
    if pin:
        reporter.say(f"{entry.name}: pinned on first use (size {pin.size}, sha256:{pin.sha256})")
    return blob


def unpin(target: str, cache: Optional[PathLike] = None) -> list[str]:
    """Forget the first-use pins of ``target``'s files; returns the names of files unpinned."""
    from .pins import Pins

    manifest = registry.resolve(target)
    book = Pins(config.resolve(cache_dir=cache).cache_dir)
    return [entry.name for entry in manifest.files if book.forget(entry)]


def verify(target: str, to: PathLike, quiet: Optional[bool] = None) -> Path:
    """Re-hash the staged copy of ``target`` under ``to``; VerifyFailed if anything changed."""
    manifest = _manifest(target, None, None)
    reporter = Reporter(config.resolve(quiet=quiet).quiet)
    return stage.verify(manifest, config.given_path(to, "--to"), reporter)


def list_datasets() -> list[Manifest]:
    """Every manifest in the registry folders (see ``registry`` for the search order)."""
    return registry.all_manifests()


def info(
    target: str, to: Optional[PathLike] = None, cache: Optional[PathLike] = None
) -> dict[str, Any]:
    """What the manifest says, plus which files are in the cache and whether it is staged."""
    from .cache import Cache
    from .pins import Pins, apply

    manifest = _manifest(target, None, None, cache_dir=cache)
    store = Cache(config.resolve(cache_dir=cache).cache_dir)
    book = Pins(store.root)
    files = []
    states = []
    for entry in manifest.files:
        pinned, pin = book.status(entry)
        states.append(pinned)
        blob = store.find(apply(entry, pin))
        files.append(
            {
                "name": entry.name,
                "urls": list(entry.urls),
                "size": entry.size,
                "digests": [str(d) for d in entry.digests],
                "pinned": pinned,
                "pin": {"size": pin.size, "sha256": pin.sha256, "pinned_at": pin.pinned_at}
                if pin
                else None,
                "cached": str(blob.path) if blob else None,
            }
        )
    result: dict[str, Any] = {
        "name": manifest.address,
        "staged_as": manifest.name,
        "description": manifest.description,
        "homepage": manifest.homepage,
        "license": manifest.license,
        "citation": manifest.citation,
        "version": manifest.version,
        "root": manifest.root,
        "size": manifest.total_size,
        "manifest": str(manifest.path) if manifest.path else None,
        "noncommercial": manifest.noncommercial,
        "license_note": manifest.license_note,
        "pinned": _overall_pinning(states),
        "layout": {"paths": list(manifest.layout.paths), "counts": dict(manifest.layout.counts)},
        "subsets": [
            {"name": s.address, "size": s.total_size, "whole": s.whole, "files": len(s.files)}
            for s in manifest.subsets
        ],
        "files": files,
    }
    if to is not None:
        dest = config.given_path(to, "--to")
        result["staged"] = (
            str(stage.root_of(manifest, dest)) if stage.is_current(manifest, dest) else None
        )
    return result


def _overall_pinning(states: list[str]) -> str:
    """One word for a dataset: every file pinned the same way, or "mixed"."""
    return states[0] if len(set(states)) == 1 else "mixed"


def search(word: str) -> list[Manifest]:
    """Datasets and subsets whose name, description, license or homepage mention ``word``."""
    needle = word.lower()
    hits = []
    for manifest in registry.all_manifests():
        text = " ".join(
            [manifest.name, manifest.description, manifest.license, manifest.homepage]
        ).lower()
        if needle in text:
            hits.append(manifest)
        hits.extend(s for s in manifest.subsets if needle in f"{s.address} {s.description}".lower())
    return hits


def _manifest(
    target: str,
    sha256: Optional[str],
    name: Optional[str],
    name_encoding: Optional[str] = None,
    **settings: Any,
) -> Manifest:
    """The registry's (or a manifest file's) manifest, or one synthesised for a URL/path."""
    from . import direct

    if direct.is_direct(target):
        resolved = config.resolve(**settings)
        return direct.manifest_for(
            target, resolved, name=name, sha256=sha256, name_encoding=name_encoding
        )
    if sha256 or name:
        raise UsageError("--sha256 and --name apply to a URL or path, not to a dataset name")
    if name_encoding:
        raise UsageError(
            "--name-encoding applies to a URL or path, not to a dataset name",
            hint='a manifest says name_encoding = "..." in the file\'s entry',
        )
    return registry.resolve(target)


def _download_all(
    manifest: Manifest, pinned: list[FileEntry], store: Any, settings: Any, reporter: Reporter
) -> list[Any]:
    """Every file's blob, in manifest order, several at once within one budget of connections.

    Files start in manifest order; each takes connections from the shared budget as its
    segments need them, so a big file and many small ones share the link without exceeding
    ``settings.connections``. The first failure stops the others (at their next chunk;
    their ``.part`` files stay, resumable) and is raised.
    """
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    from .segmented import Budget, Cancelled

    budget = Budget(settings.connections)

    def one(entry: FileEntry, expected: FileEntry) -> Any:
        return _download_pinned(manifest, entry, expected, store, settings, reporter, budget)

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


def _check_space_before_download(manifest: Manifest, store: Any, dest: Optional[Path]) -> None:
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
