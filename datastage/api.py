"""The Python API, and the one place that knows the order of the pipeline.

    get(target, to)  = resolve manifest -> already staged? -> check space -> fetch every file
                       (cache, lock, resume, verify) -> stage (extract, marker, rename)

Everything a later step needs is imported when that step runs, so a ``get`` of a dataset that
is already staged reads one manifest and one marker, and touches no network library.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional, Union

from . import config, registry, stage
from .errors import InsufficientSpace
from .fsutil import SPACE_MARGIN, existing_ancestor, free_bytes
from .manifest import Manifest
from .progress import Reporter

PathLike = Union[str, "os.PathLike[str]"]


def get(
    target: str,
    to: PathLike,
    cache: Optional[PathLike] = None,
    quiet: Optional[bool] = None,
    connections: Optional[int] = None,
    mirror: Optional[str] = None,
) -> Path:
    """Stage ``target`` (a registry name or a manifest path) under ``to``; return its root.

    Safe to call from every process at once: the data is downloaded and staged once.
    ``connections`` caps the connections open at once (segments and files together);
    ``mirror`` prefers the URLs that contain it (e.g. a host name).
    """
    manifest = registry.resolve(target)
    dest = Path(to).expanduser().absolute()
    if stage.is_current(manifest, dest):
        return stage.root_of(manifest, dest)
    settings = config.resolve(cache_dir=cache, quiet=quiet, connections=connections, mirror=mirror)
    reporter = Reporter(settings.quiet)
    from .cache import Cache

    store = Cache(settings.cache_dir)
    _check_space_before_download(manifest, store, dest)
    blobs = list(zip(manifest.files, _download_all(manifest, store, settings, reporter)))
    return stage.stage(manifest, blobs, dest, reporter, settings.lock_timeout)


def fetch(
    target: str,
    cache: Optional[PathLike] = None,
    quiet: Optional[bool] = None,
    connections: Optional[int] = None,
    mirror: Optional[str] = None,
) -> list[Path]:
    """Download and verify every file of ``target`` into the cache, without staging it."""
    manifest = registry.resolve(target)
    settings = config.resolve(cache_dir=cache, quiet=quiet, connections=connections, mirror=mirror)
    reporter = Reporter(settings.quiet)
    from .cache import Cache

    store = Cache(settings.cache_dir)
    _check_space_before_download(manifest, store, None)
    return [blob.path for blob in _download_all(manifest, store, settings, reporter)]


def _download_all(manifest: Manifest, store: Any, settings: Any, reporter: Reporter) -> list[Any]:
    """Every file of the manifest, several at once, within one budget of connections.

    Files start in manifest order; each takes connections from the shared budget as its
    segments need them, so a big file and many small ones share the link without exceeding
    ``settings.connections``. The first failure is raised once the others have stopped.
    """
    from .download import download
    from .segmented import Budget

    budget = Budget(settings.connections)
    files = manifest.files
    if len(files) == 1 or settings.connections == 1:
        return [download(entry, store, settings, reporter, budget) for entry in files]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(len(files), settings.connections)) as pool:
        futures = [pool.submit(download, e, store, settings, reporter, budget) for e in files]
        return [f.result() for f in futures]


def verify(target: str, to: PathLike, quiet: Optional[bool] = None) -> Path:
    """Re-hash the staged copy of ``target`` under ``to``; VerifyFailed if anything changed."""
    manifest = registry.resolve(target)
    reporter = Reporter(config.resolve(quiet=quiet).quiet)
    return stage.verify(manifest, Path(to).expanduser().absolute(), reporter)


def list_datasets() -> list[Manifest]:
    """Every manifest in the registry folders (see ``registry`` for the search order)."""
    return registry.all_manifests()


def info(
    target: str, to: Optional[PathLike] = None, cache: Optional[PathLike] = None
) -> dict[str, Any]:
    """What the manifest says, plus which files are in the cache and whether it is staged."""
    from .cache import Cache

    manifest = registry.resolve(target)
    store = Cache(config.resolve(cache_dir=cache).cache_dir)
    files = []
    for entry in manifest.files:
        blob = store.find(entry)
        files.append(
            {
                "name": entry.name,
                "urls": list(entry.urls),
                "size": entry.size,
                "digests": [str(d) for d in entry.digests],
                "cached": str(blob.path) if blob else None,
            }
        )
    result: dict[str, Any] = {
        "name": manifest.name,
        "description": manifest.description,
        "homepage": manifest.homepage,
        "license": manifest.license,
        "citation": manifest.citation,
        "version": manifest.version,
        "root": manifest.root,
        "size": manifest.total_size,
        "manifest": str(manifest.path) if manifest.path else None,
        "files": files,
    }
    if to is not None:
        dest = Path(to).expanduser().absolute()
        result["staged"] = (
            str(stage.root_of(manifest, dest)) if stage.is_current(manifest, dest) else None
        )
    return result


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
