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
from .errors import ArchiveError, InsufficientSpace
from .fsutil import SPACE_MARGIN, existing_ancestor, free_bytes
from .manifest import Manifest
from .progress import Reporter

PathLike = Union[str, "os.PathLike[str]"]


def get(
    target: str, to: PathLike, cache: Optional[PathLike] = None, quiet: Optional[bool] = None
) -> Path:
    """Stage ``target`` (a registry name or a manifest path) under ``to``; return its root.

    Safe to call from every process at once: the data is downloaded and staged once.
    """
    manifest = registry.resolve(target)
    dest = Path(to).expanduser().absolute()
    if stage.is_current(manifest, dest):
        return stage.root_of(manifest, dest)
    settings = config.resolve(cache_dir=cache, quiet=quiet)
    reporter = Reporter(settings.quiet)
    from .cache import Cache
    from .download import download

    store = Cache(settings.cache_dir)
    _check_space_before_download(manifest, store, dest)
    blobs = [(entry, download(entry, store, settings, reporter)) for entry in manifest.files]
    try:
        return stage.stage(manifest, blobs, dest, reporter, settings.lock_timeout)
    except ArchiveError:
        # Unpinned bytes were never checked against anything: once the server is fixed, a
        # rerun must download them again rather than reuse the broken copy from the cache.
        for entry in manifest.files:
            store.forget(entry)
        raise


def fetch(
    target: str, cache: Optional[PathLike] = None, quiet: Optional[bool] = None
) -> list[Path]:
    """Download and verify every file of ``target`` into the cache, without staging it."""
    manifest = registry.resolve(target)
    settings = config.resolve(cache_dir=cache, quiet=quiet)
    reporter = Reporter(settings.quiet)
    from .cache import Cache
    from .download import download

    store = Cache(settings.cache_dir)
    _check_space_before_download(manifest, store, None)
    return [download(entry, store, settings, reporter).path for entry in manifest.files]


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
