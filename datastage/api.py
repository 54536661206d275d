"""The Python API, and the one place that knows the order of the pipeline.

    get(target, to)  = resolve: the manifest (or one synthesised for a URL/path: oneliner.py)
                       -> already staged? (instant)
                       -> obtain: space, then every file's verified blob (obtain/obtaining.py)
                       -> extract + stage: partial folder, marker, rename (stage/staging.py)

Everything a later step needs is imported when that step runs, so a ``get`` of a dataset that
is already staged reads one manifest and one marker, and touches no network library.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from .core import writable
from .core.errors import CorruptArchive, DatastageError, UsageError, VerifyFailed
from .core.progress import Reporter
from .core.redact import redact_url
from .resolve import registry
from .resolve.manifest import URL_SCHEME, FileEntry, Manifest
from .settings import config
from .stage import staging

if TYPE_CHECKING:
    from .obtain.cache import Blob, Cache
    from .obtain.pins import Pins

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
    force: bool = False,
    repair: bool = False,
    from_: Optional[str] = None,
) -> Path:
    """Stage ``target`` under ``to``; return its root.

    ``target`` is a registry name, a manifest path, or — without a manifest — a URL or path
    (``https://``, Drive links, ``gdrive://``, ``hf://``, ``s3://``, other fsspec URLs, local
    files and folders); ``sha256`` and ``name`` then pin the file and name the dataset.
    ``to`` defaults to $DATASTAGE_TO, the config file's ``to``, then the platform's fast disk.
    Safe to call from every process at once: the data is downloaded and staged once; under
    torchrun the ranks of one machine take turns on a local lock (see ranks.py).
    ``connections`` caps the connections open at once (segments and files together);
    ``mirror``: ``"auto"`` (default) the fastest host (mirrors.py), ``"listed"`` the
    manifest's order, other text the URLs that contain it (e.g. a host name);
    ``name_encoding`` decodes a URL/path archive's member names that are not UTF-8
    (default: detected, with a warning).
    ``force`` stages again even when a current staging is in place (the cached files it
    reuses are re-hashed, as in every staging; a damaged one is fetched again).
    ``repair`` re-hashes the staged files and the cached files they came from, as ``verify``
    does, and stages again only if something differs (a same-size change included).
    Without either, a staged dataset is trusted by its marker and sizes: instant.
    ``from_`` reads every file by its name from the user's copy instead of its URLs: a folder
    or a URL prefix (how a gated dataset is staged; localcopy.py).
    """
    endpoints = {"hf_endpoint": hf_endpoint, "s3_endpoint": s3_endpoint}
    dest = config.resolve_to(to)
    target = _checked_target(target, name)
    if from_ is not None:
        _check_from(target, from_)
    if URL_SCHEME.match(target):  # listing a URL may use the network: fail before it ...
        staged = _staged_if_unwritable(
            target, sha256, name, dest, not (force or repair),
            name_encoding=name_encoding, cache_dir=cache, **endpoints,
        )  # fmt: skip
        if staged is not None:
            return staged
    manifest = _manifest(target, sha256, name, name_encoding, cache_dir=cache, **endpoints)
    if not (force or repair) and staging.is_current(manifest, dest):
        return staging.root_of(manifest, dest)
    settings = config.resolve(
        cache_dir=cache, quiet=quiet, connections=connections, mirror=mirror, **endpoints
    )
    writable.check(dest, settings.cache_dir)  # before any download
    if from_ is not None:
        manifest = _located(manifest, from_, settings)
    return _get_in_turn(manifest, dest, settings, force, repair)


def _staged_if_unwritable(
    target: str,
    sha256: Optional[str],
    name: Optional[str],
    dest: Path,
    trust_staged: bool,
    **settings: Any,
) -> Optional[Path]:
    """For a URL target, before listing it: None when ``dest`` and the cache are writable; else
    where it is staged already (a read-only --to or cache still answers), else the OSError."""
    try:
        writable.check(dest, config.resolve(cache_dir=settings.get("cache_dir")).cache_dir)
    except OSError:
        staged = _staged_root(target, sha256, name, dest, **settings) if trust_staged else None
        if staged is None:
            raise
        return staged
    return None


def _get_in_turn(
    manifest: Manifest, dest: Path, settings: config.Settings, force: bool, repair: bool
) -> Path:
    """``_get``, once per machine under torchrun (ranks.py); at once otherwise."""
    from .settings import ranks

    if not ranks.distributed():
        return _get(manifest, dest, settings, force, repair)
    # --force/--repair under torchrun: the first rank to take the turn does it; the others
    # find a staging that changed while they waited, and take it.
    before = staging.Owned.of(staging.dataset_dir(manifest, dest))

    def done() -> bool:
        if (force or repair) and staging.Owned.of(staging.dataset_dir(manifest, dest)) == before:
            return False
        return staging.is_current(manifest, dest)

    with ranks.machine_turn(
        f"get {manifest.name} {dest}", done, settings.lock_timeout, Reporter(settings.quiet).say
    ):
        if done():
            return staging.root_of(manifest, dest)
        return _get(manifest, dest, settings, force, repair)


def _get(
    manifest: Manifest, dest: Path, settings: config.Settings, force: bool, repair: bool
) -> Path:
    if repair and not force and not _needs_repair(manifest, dest, settings):
        return staging.root_of(manifest, dest)
    return get_manifest(manifest, dest, settings, force=force or repair)


def get_manifest(
    manifest: Manifest, dest: Path, settings: config.Settings, *, force: bool = False
) -> Path:
    """Fetch and stage an already resolved manifest (no is-current shortcut, no rank turn).
    ``force``: stage again even if a current staging is in place."""
    from .obtain import localcopy, obtaining
    from .obtain.cache import Cache
    from .obtain.usage import in_use

    reporter = Reporter(settings.quiet)
    staging.refuse_foreign(manifest, dest)  # before a byte is downloaded
    localcopy.refuse_unfetchable(manifest, Cache(settings.cache_dir), settings)  # so is this

    def attempt() -> Path:
        overlapped = _overlapped(manifest, dest, settings, reporter, force)
        if overlapped is not None:
            return overlapped
        obtained = obtaining.obtain_all(manifest, dest, settings, reporter)
        blobs = list(zip(manifest.files, obtained))
        return staging.stage(manifest, blobs, dest, reporter, settings.lock_timeout, force=force)

    store = Cache(settings.cache_dir)
    try:
        with in_use(store):  # cache rm/prune wait until it is staged
            return obtaining.fetching_damaged_again(attempt, store, reporter)
    except CorruptArchive as e:
        raise obtaining.with_unpin_hint(e, manifest, store) from None


def _overlapped(
    manifest: Manifest, dest: Path, settings: config.Settings, reporter: Reporter, force: bool
) -> Optional[Path]:
    """Extract while downloading (streaming.py) when that is safe; None: take the usual path."""
    from .obtain import obtaining
    from .obtain.cache import Cache
    from .stage import streaming

    if not streaming.enabled():
        return None
    store = Cache(settings.cache_dir)
    pinned = obtaining.pinned_entries(manifest, store)
    if not streaming.eligible(manifest, pinned, store):
        return None
    obtaining.before_download(manifest, pinned, store, dest, reporter)
    return streaming.get(manifest, pinned, dest, settings, reporter, store, force)


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
    from_: Optional[str] = None,
) -> list[Path]:
    """Download and verify every file of ``target`` into the cache, without staging it.
    ``from_``: read the files from a copy the user has (as ``get``)."""
    endpoints = {"hf_endpoint": hf_endpoint, "s3_endpoint": s3_endpoint}
    if from_ is not None:
        _check_from(target, from_)
    writable.check(config.resolve(cache_dir=cache).cache_dir)  # before any network access
    manifest = _manifest(target, sha256, None, cache_dir=cache, **endpoints)
    settings = config.resolve(
        cache_dir=cache, quiet=quiet, connections=connections, mirror=mirror, **endpoints
    )
    if from_ is not None:
        manifest = _located(manifest, from_, settings)
    from .obtain import localcopy, obtaining
    from .obtain.cache import Cache
    from .obtain.usage import in_use

    reporter = Reporter(settings.quiet)
    store = Cache(settings.cache_dir)
    localcopy.refuse_unfetchable(manifest, store, settings)  # before any download
    with in_use(store):
        blobs = obtaining.fetching_damaged_again(
            lambda: obtaining.obtain_all(manifest, None, settings, reporter), store, reporter
        )
    return [blob.path for blob in blobs]


def unpin(target: str, cache: Optional[PathLike] = None) -> list[str]:
    """Forget the first-use pins of ``target``'s files; returns the names of files unpinned.
    The only way a pin is ever replaced: the next download is pinned anew (the cache's URL
    record goes too, so that that download really happens)."""
    from .obtain.cache import Cache
    from .obtain.pins import Pins

    manifest = _manifest(target, None, None, cache_dir=cache)  # a URL or path too, as hints say
    store = Cache(config.resolve(cache_dir=cache).cache_dir)
    book = Pins(store.root)
    unpinned = []
    for entry in manifest.files:
        if book.forget(entry):
            store.forget(entry)
            unpinned.append(entry.name)
    return unpinned


def verify(
    target: str,
    to: PathLike,
    quiet: Optional[bool] = None,
    *,
    cache: Optional[PathLike] = None,
    repair: bool = False,
    name: Optional[str] = None,
) -> Path:
    """Re-hash the staged copy of ``target`` under ``to`` and the cached files it was built
    from; VerifyFailed if anything changed (the next ``get`` then stages it again).
    ``repair``: instead of failing, stage again what differs (as ``get --repair``).
    ``name``: the folder a URL/path one-liner was staged in with ``get(..., name=)``."""
    manifest = _manifest(target, None, name, cache_dir=cache)
    settings = config.resolve(cache_dir=cache, quiet=quiet)
    dest = config.resolve_to(to)  # as get: --to > $DATASTAGE_TO > config > platform
    if repair:
        return _get(manifest, dest, settings, force=False, repair=True)
    reporter = Reporter(settings.quiet)
    folder = staging.dataset_dir(manifest, dest)
    marker = staging.read_marker(folder)
    if marker is None or marker.get("content_key") != manifest.content_key:
        return staging.verify(manifest, dest, reporter)  # says what is wrong with the marker
    problems = _inspect(manifest, dest, marker, settings, reporter)
    if problems is not None:
        staging.record_damage(folder, problems[0])
        cached = f" --cache {shlex.quote(str(cache))}" if cache is not None else ""
        raise VerifyFailed(
            problems[0], hint=f"repair with: {staging.get_command(manifest, dest)}{cached} --repair"
        )
    staging.clear_damage(folder)
    return staging.root_of(manifest, dest)


def _needs_repair(manifest: Manifest, dest: Path, settings: config.Settings) -> bool:
    """For ``repair``: must the dataset be staged again? Damaged cache blobs are dropped here
    (so they are fetched again); a staging found intact is left alone."""
    from .obtain.cache import Cache

    reporter = Reporter(settings.quiet)
    folder = staging.dataset_dir(manifest, dest)
    marker = staging.read_marker(folder)
    if marker is None or marker.get("content_key") != manifest.content_key:
        return True  # not staged, or from another version: an ordinary staging
    if staging.damage_reported(folder):
        reporter.say(f"repairing {folder}: verify found it damaged")
        return True
    problems = _inspect(manifest, dest, marker, settings, reporter)
    if problems is None:
        reporter.say(f"{folder}: every staged and cached file matches; nothing to repair")
        return False
    message, damaged = problems
    reporter.say(f"repairing: {message}")
    store = Cache(settings.cache_dir)
    for blob in damaged:
        store.discard(blob)
    return True


def _inspect(
    manifest: Manifest,
    dest: Path,
    marker: dict[str, Any],
    settings: config.Settings,
    reporter: Reporter,
) -> Optional[tuple[str, list[Blob]]]:
    """Re-hash a staging and the cache blobs its marker says it was built from (those still
    in the cache). None: all intact; else (what differs, the damaged blobs)."""
    from .obtain.cache import Blob, Cache, damaged

    store = Cache(settings.cache_dir)
    blobs = [
        Blob(store.blob_path(sha), size, sha)
        for _, sha, size in staging.built_from(marker)
        if store.blob_path(sha).is_file()
    ]
    bad = []
    bar = reporter.bar("verifying cached files", sum(b.size for b in blobs))
    try:
        for blob in blobs:
            why = damaged(blob, on_bytes=bar.update)
            if why is not None:
                bad.append((blob, why))
    finally:
        bar.close()
    try:
        staging.verify(manifest, dest, reporter)
        found = None
    except VerifyFailed as e:
        found = e.message
    if bad:
        cached = staging.damaged_blobs_error(bad).message
        where = staging.dataset_dir(manifest, dest)
        found = f"{found}; and {cached}" if found else f"{where} was built from {cached}"
    return None if found is None else (found, [b for b, _ in bad])


def list_datasets() -> list[Manifest]:
    """Every manifest in the registry folders (see ``registry`` for the search order)."""
    return registry.all_manifests()


def info(
    target: str, to: Optional[PathLike] = None, cache: Optional[PathLike] = None
) -> dict[str, Any]:
    """What the manifest says, plus which files are in the cache and whether it is staged."""
    from .obtain.cache import Cache
    from .obtain.pins import Pins

    manifest = _manifest(target, None, None, cache_dir=cache)
    store = Cache(config.resolve(cache_dir=cache).cache_dir)
    book = Pins(store.root)
    files = [_file_info(entry, book, store) for entry in manifest.files]
    states = [f["pinned"] for f in files]
    result: dict[str, Any] = {
        "name": manifest.address,
        "staged_as": manifest.name,
        "description": manifest.description,
        "homepage": redact_url(manifest.homepage),
        "license": manifest.license,
        "citation": manifest.citation,
        "version": manifest.version,
        "root": manifest.root,
        "size": manifest.total_size,
        "manifest": str(manifest.path) if manifest.path else None,
        "noncommercial": manifest.noncommercial,
        "license_note": manifest.license_note,
        "access": manifest.access,
        "register": redact_url(manifest.register),
        "instructions": manifest.instructions,
        "tags": list(manifest.tags),
        "pinned": _overall_pinning(states),
        "layout": {"paths": list(manifest.layout.paths), "counts": dict(manifest.layout.counts)},
        "subsets": [
            {"name": s.address, "size": s.total_size, "whole": s.whole, "files": len(s.files)}
            for s in manifest.subsets
        ],
        "files": files,
    }
    result["mirrors"] = _mirror_measurements(store.root, manifest)
    if to is not None:
        dest = config.given_path(to, "--to")
        result["staged"] = (
            str(staging.root_of(manifest, dest)) if staging.is_current(manifest, dest) else None
        )
    return result


def _file_info(entry: FileEntry, book: Pins, store: Cache) -> dict[str, Any]:
    """One file of ``info``: where it comes from, what it must be, whether it is cached."""
    from .obtain.pins import apply

    pinned, pin = book.status(entry)
    blob = store.find(apply(entry, pin))
    shown = {"size": pin.size, "sha256": pin.sha256, "pinned_at": pin.pinned_at} if pin else None
    return {
        "name": entry.name,
        "urls": [redact_url(url) for url in entry.urls],
        "size": entry.size,
        "digests": [str(d) for d in entry.digests],
        "pinned": pinned,
        "pin": shown,
        "cached": str(blob.path) if blob else None,
        "parts": [
            {
                "name": p.name,
                "urls": [redact_url(url) for url in p.urls],
                "size": p.size,
                "digests": [str(d) for d in p.digests],
            }
            for p in entry.parts
        ],
    }


def _mirror_measurements(cache_root: Path, manifest: Manifest) -> dict[str, Any]:
    """What the last mirror probe measured for the hosts of the target's URLs (mirrors.py)."""
    from .obtain import mirrors

    return mirrors.report(cache_root, [u for f in manifest.files for u in f.urls])


def _overall_pinning(states: list[str]) -> str:
    """One word for a dataset: every file pinned the same way, or "mixed"."""
    return states[0] if len(set(states)) == 1 else "mixed"


def search(word: str) -> list[Manifest]:
    """Datasets whose name, description, license, homepage or tags mention ``word``, and
    subsets whose address or description do (a subset shares its dataset's tags: not listed)."""
    needle = word.lower()
    hits = []
    for manifest in registry.all_manifests():
        text = " ".join(
            [manifest.name, manifest.description, manifest.license, manifest.homepage]
        ).lower()
        text += " " + " ".join(manifest.tags)
        if needle in text:
            hits.append(manifest)
        hits.extend(s for s in manifest.subsets if needle in f"{s.address} {s.description}".lower())
    return hits


def _staged_root(
    target: str, sha256: Optional[str], name: Optional[str], dest: Path, **settings: Any
) -> Optional[Path]:
    """Where ``target`` is currently staged in ``dest``, or None (also when it cannot be told)."""
    try:
        manifest = _manifest(target, sha256, name, **settings)
        return staging.root_of(manifest, dest) if staging.is_current(manifest, dest) else None
    except (DatastageError, OSError):
        return None


def _manifest(
    target: str,
    sha256: Optional[str],
    name: Optional[str],
    name_encoding: Optional[str] = None,
    **settings: Any,
) -> Manifest:
    """The registry's (or a manifest file's) manifest, or one synthesised for a URL/path."""
    from .resolve import oneliner

    target = _checked_target(target, name)
    _check_endpoints(settings)
    if oneliner.is_direct(target):
        resolved = config.resolve(**settings)
        found = oneliner.manifest_for(
            target, resolved, name=name, sha256=sha256, name_encoding=name_encoding
        )
    elif sha256 or name:
        raise UsageError("--sha256 and --name apply to a URL or path, not to a dataset name")
    elif name_encoding:
        raise UsageError(
            "--name-encoding applies to a URL or path, not to a dataset name",
            hint='a manifest says name_encoding = "..." in the file\'s entry',
        )
    else:
        found = registry.resolve(target)
    # hints repeat the target (and --name) as the user typed them
    return replace(found, typed=target, typed_name=name or "")


def _checked_target(target: Any, name: Optional[str] = None) -> str:
    """The target as a string; refuse one (or a ``--name``) that could only go wrong later: ""
    would stage the current folder, a malformed URL would be a traceback in a source, a name
    with "/" a folder outside ``to``."""
    from .resolve.manifest import URL_SCHEME, check_name, check_url
    from .resolve.oneliner import MAX_FOLDER_NAME

    if isinstance(target, os.PathLike):
        target = os.fspath(target)
    if not isinstance(target, str) or not target.strip():
        raise UsageError(
            f"the target is empty ({target!r})",
            hint="give a dataset name, a manifest file, a URL or a path (./ for this folder)",
        )
    reason = check_url(target) if URL_SCHEME.match(target) or "\x00" in target else None
    if reason:
        raise UsageError(f"target {reason}")
    if name is not None:  # a one-liner's folder: the file's own case is allowed (oneliner.py)
        reason = check_name(name.lower()) if name.strip() else "is empty"
        if not reason and len(name.encode()) > MAX_FOLDER_NAME:
            reason = f"{name[:12]!r}... is too long: at most {MAX_FOLDER_NAME} characters"
        if reason:
            raise UsageError(f"--name {reason}")
    return target


def _check_from(target: str, base: str) -> None:
    """``--from`` applies to a dataset name or manifest file (a URL/path target is already
    its own copy) and must be a folder or URL prefix."""
    from .obtain import localcopy
    from .resolve import oneliner

    if oneliner.is_direct(target):
        raise UsageError(
            "--from applies to a dataset name or manifest, not to a URL or path",
            hint=f"give the copy itself as the target: datastage get {shlex.quote(base)}",
        )
    localcopy.check_base(base)


def _located(manifest: Manifest, base: str, settings: config.Settings) -> Manifest:
    """``manifest`` reading its files from ``base``. Files that the cache, the persistent tier,
    a source folder or the shared cache holds are not needed there: they are taken from it
    before the copy (persistent.obtain's order)."""
    from .obtain import localcopy, obtaining, persistent
    from .obtain.cache import Cache

    store = Cache(settings.cache_dir)
    held = [
        persistent.holds(entry, manifest, store, settings)
        for entry in obtaining.pinned_entries(manifest, store)
    ]
    return localcopy.locate(manifest, base, held)


def _check_endpoints(settings: dict[str, Any]) -> None:
    """--hf-endpoint (comma-separated) and --s3-endpoint must be URLs a library can parse."""
    from .resolve.manifest import check_url

    for key in ("hf_endpoint", "s3_endpoint"):
        for url in str(settings.get(key) or "").split(","):
            reason = check_url(url.strip()) if url.strip() else None
            if reason:
                raise UsageError(f"--{key.replace('_', '-')}: {reason}")
