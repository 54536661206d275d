"""The Python API, and the one place that knows the order of the pipeline.

    get(target, to)  = resolve manifest (or synthesise one for a URL/path: direct.py)
                       -> already staged? -> check space -> fetch every file
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
from .errors import InsufficientSpace, UsageError
from .fsutil import SPACE_MARGIN, existing_ancestor, free_bytes
from .manifest import Manifest
from .progress import Reporter

PathLike = Union[str, "os.PathLike[str]"]
FILES_AT_ONCE = 4  # files downloading together (a folder of many small files); each may segment


def get(
    target: str,
    to: PathLike,
    cache: Optional[PathLike] = None,
    quiet: Optional[bool] = None,
    *,
    sha256: Optional[str] = None,
    name: Optional[str] = None,
    hf_endpoint: Optional[str] = None,
    s3_endpoint: Optional[str] = None,
) -> Path:
    """Stage ``target`` under ``to``; return its root.

    ``target`` is a registry name, a manifest path, or — without a manifest — a URL or path
    (``https://``, Drive links, ``gdrive://``, ``hf://``, ``s3://``, other fsspec URLs, local
    files and folders); ``sha256`` and ``name`` then pin the file and name the dataset.
    Safe to call from every process at once: the data is downloaded and staged once.
    """
    endpoints = {"hf_endpoint": hf_endpoint, "s3_endpoint": s3_endpoint}
    manifest = _manifest(target, sha256, name, cache_dir=cache, **endpoints)
    dest = Path(to).expanduser().absolute()
    if stage.is_current(manifest, dest):
        return stage.root_of(manifest, dest)
    settings = config.resolve(cache_dir=cache, quiet=quiet, **endpoints)
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
    *,
    sha256: Optional[str] = None,
    hf_endpoint: Optional[str] = None,
    s3_endpoint: Optional[str] = None,
) -> list[Path]:
    """Download and verify every file of ``target`` into the cache, without staging it."""
    endpoints = {"hf_endpoint": hf_endpoint, "s3_endpoint": s3_endpoint}
    manifest = _manifest(target, sha256, None, cache_dir=cache, **endpoints)
    settings = config.resolve(cache_dir=cache, quiet=quiet, **endpoints)
    reporter = Reporter(settings.quiet)
    from .cache import Cache

    store = Cache(settings.cache_dir)
    _check_space_before_download(manifest, store, None)
    return [blob.path for blob in _download_all(manifest, store, settings, reporter)]


def verify(target: str, to: PathLike, quiet: Optional[bool] = None) -> Path:
    """Re-hash the staged copy of ``target`` under ``to``; VerifyFailed if anything changed."""
    manifest = _manifest(target, None, None)
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

    manifest = _manifest(target, None, None, cache_dir=cache)
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


def _manifest(target: str, sha256: Optional[str], name: Optional[str], **settings: Any) -> Manifest:
    """The registry's (or a manifest file's) manifest, or one synthesised for a URL/path."""
    from . import direct

    if direct.is_direct(target):
        return direct.manifest_for(target, config.resolve(**settings), name=name, sha256=sha256)
    if sha256 or name:
        raise UsageError("--sha256 and --name apply to a URL or path, not to a dataset name")
    return registry.resolve(target)


def _download_all(manifest: Manifest, store: Any, settings: Any, reporter: Reporter) -> list[Any]:
    """Every file's blob, in manifest order; several files at once (folders, repos), bounded."""
    from concurrent.futures import ThreadPoolExecutor

    from .download import download

    if len(manifest.files) == 1:
        return [download(manifest.files[0], store, settings, reporter)]
    pool = ThreadPoolExecutor(min(FILES_AT_ONCE, len(manifest.files)))
    try:
        futures = [pool.submit(download, e, store, settings, reporter) for e in manifest.files]
        return [f.result() for f in futures]
    finally:
        pool.shutdown(cancel_futures=True)  # the first failure stops files not yet started


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
