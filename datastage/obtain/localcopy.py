"""``get --from BASE``: read a dataset's files from a copy the user has, and gated datasets.

Owns: turning ``--from BASE`` into where each file is read (``FileEntry.source``), the list of
files a folder lacks, and the error that says how to get a gated dataset's files (raised before
any download by ``refuse_unfetchable``).
Does not own: reading or verifying the bytes (download.py, through the usual sources, so a
copy is hashed, checked and cached exactly as a download is) or joining parts (parts.py).

BASE is a folder (a download folder, a mount, a NAS) or a URL prefix some source reads
(``https://host/dir``, ``s3://bucket/prefix``). Each file is found by its name: the folder's
``BASE/<name>``, or the URL ``BASE/<name>``. A file published in parts is found as the joined
file if the folder has it (users often ``cat`` the parts themselves), else as its parts.
Nothing else is asked for: ``--from`` never falls back to a manifest's own URLs, so staging
from a local copy makes no network request. Files already in the cache (or the persistent
tier, a source folder, the shared cache: ``persistent.holds``) are not needed. The
one exception is a gated dataset's public files (those the manifest has a URL for): the gated
hint sends users for the gated files only, so a folder lacking a public one is not an error,
that file is downloaded from its URLs as without ``--from``.

The copy's location is not part of a file's identity: the staged dataset, its marker and the
cache are the same as after a download, so a later ``get`` without ``--from`` finds it staged.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import quote, urlsplit, urlunsplit

from ..core.errors import GatedDataset, IntegrityError, NotInFolder, UsageError
from ..core.redact import remember
from ..resolve.manifest import URL_SCHEME, FileEntry, Manifest, check_url
from ..sources.local import path_of, url_of

if TYPE_CHECKING:
    from ..core.progress import Reporter
    from ..settings.config import Settings
    from .budget import ConnectionBudget
    from .cache import Blob, Cache

SHOWN_NAMES = 8  # names listed in one error line; the rest are counted


def check_base(base: str) -> str:
    """``base`` as given, or a UsageError when it cannot be one (before anything is read)."""
    if not isinstance(base, str) or not base.strip():
        raise UsageError("--from is empty", hint="give the folder or URL prefix holding the files")
    reason = check_url(base)
    if reason:
        raise UsageError(f"--from {reason}")
    remember(base)  # a token in a bucket URL is masked in every message
    return base


def is_folder(base: str) -> bool:
    return not URL_SCHEME.match(base) or base[:7].lower() == "file://"


def locate(manifest: Manifest, base: str, cached: Sequence[bool]) -> Manifest:
    """``manifest`` whose files are read from ``base``; ``cached[i]``: file i is in the cache
    already (not needed). A folder lacking files is one NotInFolder naming every one of them."""
    if is_folder(base):
        folder = path_of(base).absolute()  # messages name the folder wherever run from
        if folder.is_file():
            raise UsageError(
                f"--from {folder} is a file, not a folder",
                hint=f"give the folder holding the files: --from {shlex.quote(str(folder.parent))}",
            )
        if not folder.is_dir():
            raise UsageError(f"--from {folder}: no such folder")
        files, missing, joined = [], [], []
        for entry, have in zip(manifest.files, cached):
            found, lacking = _in_folder(entry, folder)
            if lacking and manifest.gated and reachable(entry):
                found, lacking = entry, []  # a gated dataset's public file: from its URLs
            files.append(found)
            if not have:
                missing += [_what_is_there(folder, name) for name in lacking]
                joined += [entry.name] if lacking and entry.parts else []
        if missing:
            # Parts already joined under another name (VoxCeleb2's is vox2_aac.zip to some
            # recipes, vox2_dev_aac.zip to others): say which name the joined file is found by.
            also = f"; parts may instead be joined into one file named {_names(joined)}"
            raise NotInFolder(
                f"{_count(missing)} of {manifest.address} not found in {folder}: {_names(missing)}",
                hint=f"put {'them' if len(missing) > 1 else 'it'} there (file names as listed by "
                f"`datastage info {shlex.quote(manifest.target)}`), or point --from at the "
                f"folder that holds them{also if joined else ''}",
            )
    else:
        files = [_at_url(entry, base) for entry in manifest.files]
    return replace(manifest, files=tuple(files))


def _in_folder(entry: FileEntry, folder: Path) -> tuple[FileEntry, list[str]]:
    """The entry reading from ``folder``, and the names missing there."""
    whole = folder / entry.name
    if not entry.parts:
        return replace(entry, source=url_of(whole)), [] if whole.is_file() else [entry.name]
    parts = tuple(replace(p, source=url_of(folder / p.name)) for p in entry.parts)
    missing = [p.name for p in entry.parts if not (folder / p.name).is_file()]
    if whole.is_file():  # the user may have joined the parts already (`cat`): read that file,
        # keeping the parts, when all are there, in case it is a half-finished or wrong join
        return replace(entry, source=url_of(whole), parts=entry.parts if missing else parts), []
    return replace(entry, parts=parts), missing


def _what_is_there(folder: Path, name: str) -> str:
    """``name``, saying when something that is not a file holds it (a FIFO, a folder, a link
    to a device): never opened, since a FIFO blocks and /dev/zero never ends."""
    return f"{name} (not a regular file)" if (folder / name).exists() else name


def _at_url(entry: FileEntry, base: str) -> FileEntry:
    if entry.parts:
        parts = tuple(replace(p, source=join(base, p.name)) for p in entry.parts)
        return replace(entry, parts=parts)
    return replace(entry, source=join(base, entry.name))


def join(base: str, name: str) -> str:
    """``base + "/" + name``. For http(s) the name is percent-encoded (a space, a ``#``) and
    goes in the path: a signed prefix's query (``?sv=...&sig=...``, a token) stays after it."""
    scheme = base.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        return base.rstrip("/") + "/" + name
    prefix = urlsplit(base)
    path = prefix.path.rstrip("/") + "/" + quote(name, safe="")
    return urlunsplit((prefix.scheme, prefix.netloc, path, prefix.query, ""))


def reachable(entry: FileEntry) -> bool:
    """Can this run fetch ``entry`` without the user's help (a URL, a --from copy, URL parts)?"""
    if entry.urls:
        return True
    return bool(entry.parts) and all(p.urls for p in entry.parts)


def gated_error(
    manifest: Manifest, store: Optional[Cache] = None, refused: Optional[FileEntry] = None
) -> GatedDataset:
    """What to do for a gated dataset: where to register, what to download (the files that no
    URL serves and, given the cache ``store``, that it lacks: always ``refused``, the one whose
    fetch failed), the --from form."""

    def needed_now(entry: FileEntry) -> bool:
        if reachable(entry):
            return False
        if store is None or (refused is not None and entry.url == refused.url):
            return True
        return not _cached(entry, store)

    needed = [
        name
        for entry in manifest.files
        if needed_now(entry)
        for name in ([p.name for p in entry.parts] if entry.parts else [entry.name])
    ]
    where = f"register at {manifest.register}" if manifest.register else "get access"
    what = manifest.instructions.rstrip(".") or f"download {'them' if len(needed) > 1 else 'it'}"
    return GatedDataset(
        f"{manifest.address} is gated: {_count(needed)} cannot be downloaded without "
        f"registering ({_names(needed)})",
        hint=f"{where}; {what}; then run: datastage get {shlex.quote(manifest.target)} "
        "--from DIR (the folder holding them)",
    )


def refuse_unfetchable(manifest: Manifest, store: Cache, settings: Settings) -> None:
    """Before any download: the gated error now if a file that nothing can fetch (``reachable``)
    is in neither the cache, the persistent tier, a source folder nor the shared cache. Else the
    refusal came when that file's turn came, after the public files were downloaded for
    nothing (``fetcher``'s refusal stays, for a copy that turns out bad)."""
    from .persistent import holds
    from .pins import Pins, apply

    book = Pins(store.root)
    lacking = [
        entry
        for entry in manifest.files
        if not reachable(entry)
        and not holds(apply(entry, book.get(entry)), manifest, store, settings)
    ]
    if lacking:
        raise gated_error(replace(manifest, files=tuple(lacking)))


def fetcher(
    manifest: Manifest,
    entry: FileEntry,
    budget: Optional[ConnectionBudget] = None,
    on_prefix: Optional[Callable[[int], None]] = None,
) -> Callable[..., Blob]:
    """What tiers.obtain calls last for ``entry`` (after the cache, the persistent tier and
    source folders): a download of its URLs (or --from copy), the join of its parts, or, for
    a gated file that no URL serves, the error saying how to get it."""
    if not reachable(entry):

        def refuse(
            refused: Optional[FileEntry] = None, store: Optional[Cache] = None, *_: Any, **__: Any
        ) -> Blob:
            raise gated_error(manifest, store, refused)  # called as download(entry, store, ...)

        return refuse
    if entry.parts and not entry.source:
        from . import parts

        return functools.partial(parts.join, budget=budget)
    if entry.parts and entry.source:
        return functools.partial(_joined_copy, budget=budget, on_prefix=on_prefix)
    from .download import download

    return functools.partial(download, budget=budget, on_prefix=on_prefix)


def _joined_copy(
    entry: FileEntry,
    store: Cache,
    settings: Settings,
    reporter: Reporter,
    budget: Optional[ConnectionBudget] = None,
    on_prefix: Optional[Callable[[int], None]] = None,
) -> Blob:
    """A file published in parts, read from a copy joined by the user. Its join may have been
    cut short (a full disk during `cat`): when it does not match and the folder has every part
    (``source`` set on each), the parts are joined instead. Either way no join of it left by a
    killed run stays behind (``parts.join`` removes those it finds; so does this), nor the
    state of the failed read."""
    from . import parts
    from .download import download

    try:
        blob = download(entry, store, settings, reporter, budget=budget, on_prefix=on_prefix)
    except IntegrityError as e:
        if not all(p.source for p in entry.parts):
            raise
        reporter.warn(f"{e}; joining its {len(entry.parts)} parts from the same folder instead")
        blob = parts.join(replace(entry, source=""), store, settings, reporter, budget)
    parts.remove_leftovers(entry, store, settings, reporter)
    return blob


def _cached(entry: FileEntry, store: Cache) -> bool:
    """Is ``entry`` in the cache (found by its pin when the manifest has no checksum)?"""
    from .pins import Pins, apply

    try:
        return store.find(apply(entry, Pins(store.root).get(entry))) is not None
    except (OSError, ValueError):
        return False


def _count(names: Sequence[str]) -> str:
    return f"{len(names)} file{'s' if len(names) != 1 else ''}"


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    more = len(names) - SHOWN_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


__all__ = [
    "check_base",
    "fetcher",
    "gated_error",
    "is_folder",
    "join",
    "locate",
    "reachable",
    "refuse_unfetchable",
]
