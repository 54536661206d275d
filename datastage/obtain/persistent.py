"""The persistent tier and read-only source folders: look there before the network.

    <persistent_cache>/                    a Drive folder, /root/autodl-fs/..., any slow mount
    └── <dataset>/
        ├── LJSpeech-1.1.tar.bz2           a verified archive, saved after a network download
        └── LJSpeech-1.1.tar.bz2.datastage.json   sidecar: size + digests, written last

``obtain`` returns the verified cache blob for a file entry, trying in order: the cache; the
persistent tier (a copy whose sidecar matches the manifest: zero network requests); the source
folders (a file with the right name and size, hashed while it is copied, because nobody vouched
for it); the shared S3 prefix (s3cache.py, when configured); the network (``download``). After
a network download or a source-folder hit the archive is saved to the persistent tier, so the
next session (a new Colab runtime) skips the network.

Copies from a slow mount are one sequential read into the cache's ``partial/`` folder, hashed
as they are read (the mount is the bottleneck; the hash costs no extra pass), then a normal
cache commit: nothing enters the cache unhashed, and a copy whose bytes do not match its
sidecar or the manifest is ignored (its sidecar dropped) and fetched from elsewhere. The sidecar
only says which copy is worth reading. Saves go to a temporary name, are hashed as they are
written (a cache blob altered on disk is not spread: DamagedBlob), are renamed, and the sidecar
is written last: a half-written archive is never trusted.
Locks for the mount live on local disk (ranks.lock_path), never on the mount itself.
Does not own: downloading (download.py), the cache layout (cache.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from ..core import locks
from ..core.digests import CACHE_ALGORITHM, READ_CHUNK, Hasher, check
from ..core.errors import DamagedBlob, IntegrityError
from ..core.fsutil import atomic_file, write_atomic
from ..core.progress import Reporter
from ..resolve.manifest import FileEntry, Manifest
from ..settings import ranks
from ..settings.config import Settings
from .cache import Blob, Cache
from .sidecar import SIDECAR, sidecar_for, sidecar_matches

COPY_CHUNK = 8 * READ_CHUNK  # large reads: a network mount pays per request, not per byte

Downloader = Callable[[FileEntry, Cache, Settings, Reporter], Blob]


def obtain(
    entry: FileEntry,
    manifest: Manifest,
    store: Cache,
    settings: Settings,
    reporter: Reporter,
    download: Downloader,
) -> Blob:
    """The verified cache blob for ``entry``: cache, persistent tier, source folders, network."""
    tier = Persistent(settings.persistent_cache) if settings.persistent_cache else None
    blob = store.find(entry)
    if blob is None and tier is not None:
        blob = tier.restore(entry, manifest.name, store, settings, reporter)
        if blob:
            return blob
    if blob is None:
        blob = from_sources(entry, manifest.name, settings.sources, store, settings, reporter)
    if blob is None and settings.shared_cache:
        from . import shared

        blob = shared.restore(
            entry, manifest.name, settings.shared_cache, store, settings, reporter
        )
    if blob is None:
        blob = download(entry, store, settings, reporter)
    if tier is not None:  # also a blob cached before the tier was configured
        tier.save(entry, manifest.name, blob, settings, reporter)
    return blob


def holds(entry: FileEntry, manifest: Manifest, store: Cache, settings: Settings) -> bool:
    """Would ``obtain`` find ``entry`` before its last step (the download)? The cache, the
    persistent tier, a source folder or the shared S3 prefix has a copy worth reading (stats and
    sidecars only, nothing hashed). Lets a file that nothing can download be refused, or not
    demanded in a --from folder, before any download starts."""
    if store.find(entry) is not None:
        return True
    tier = Persistent(settings.persistent_cache) if settings.persistent_cache else None
    if tier is not None and tier.find(entry, manifest.name) is not None:
        return True
    if entry.digests and _candidates(entry, manifest.name, settings.sources):
        return True
    if settings.shared_cache:
        from . import shared

        return shared.holds(entry, manifest.name, settings.shared_cache)
    return False


class Persistent:
    """A folder of verified archives with size + digest sidecars."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, entry: FileEntry, dataset: str) -> Path:
        return self.root / dataset / entry.name

    def find(self, entry: FileEntry, dataset: str) -> Optional[tuple[Path, dict[str, Any]]]:
        """The saved copy and its sidecar when they match ``entry`` (a few stats, no hashing)."""
        return _vouched(self.path_of(entry, dataset), entry)

    def restore(
        self, entry: FileEntry, dataset: str, store: Cache, settings: Settings, reporter: Reporter
    ) -> Optional[Blob]:
        found = self.find(entry, dataset)
        if found is None:
            return None
        path, sidecar = found
        said = f"copying {entry.name} from the persistent tier ({path.parent})"
        try:
            return _copy_locked(path, entry, store, settings, reporter, said, sidecar["digests"])
        except IntegrityError as e:
            reporter.warn(f"ignoring the persistent copy: {e}")
            # Our own tier: drop the sidecar so the good bytes are saved over it later.
            with contextlib.suppress(OSError):
                os.unlink(f"{path}{SIDECAR}")
        except OSError as e:  # a mount that went away: the network still works
            reporter.warn(f"cannot read {path}: {e.strerror or e}")
        return None

    def save(
        self, entry: FileEntry, dataset: str, blob: Blob, settings: Settings, reporter: Reporter
    ) -> None:
        """Keep a verified blob in the tier; a full or broken mount is a warning, not a failure."""
        target = self.path_of(entry, dataset)
        if self.find(entry, dataset) is not None:
            return
        try:
            with locks.hold(
                ranks.lock_path("persist", str(target)),
                f"saving {entry.name} to {self.root}",
                settings.lock_timeout,
                reporter.say,
            ):
                if self.find(entry, dataset) is None:
                    reporter.say(f"saving {entry.name} to the persistent tier ({target.parent})")
                    _save(blob, entry, target, reporter)
        except OSError as e:
            reporter.warn(f"could not save {entry.name} to {self.root}: {e.strerror or e}")


def from_sources(
    entry: FileEntry,
    dataset: str,
    folders: tuple[Path, ...],
    store: Cache,
    settings: Settings,
    reporter: Reporter,
) -> Optional[Blob]:
    """Copy ``entry`` from a read-only folder holding a file of that name, size and digest."""
    if not entry.digests:
        return None  # nothing to check a stranger's file against
    for path in _candidates(entry, dataset, folders):
        vouched = _vouched(path, entry)
        said = f"copying {entry.name} from {path.parent}"
        try:
            return _copy_locked(
                path, entry, store, settings, reporter, said,
                vouched[1]["digests"] if vouched else None,
            )  # fmt: skip
        except IntegrityError as e:
            reporter.warn(f"ignoring {path}: {e}")
        except OSError as e:
            reporter.warn(f"cannot read {path}: {e.strerror or e}")
    return None


def _candidates(entry: FileEntry, dataset: str, folders: tuple[Path, ...]) -> list[Path]:
    """Files named like ``entry`` at the top of each folder, in <dataset>/, or one level down."""
    found: list[Path] = []
    for folder in folders:
        paths = [folder / entry.name, folder / dataset / entry.name]
        with contextlib.suppress(OSError):
            paths += sorted(folder.glob(f"*/{_glob_escape(entry.name)}"))
        for path in paths:
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if path.is_file() and (entry.size is None or size == entry.size) and path not in found:
                found.append(path)
    return found


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _vouched(path: Path, entry: FileEntry) -> Optional[tuple[Path, dict[str, Any]]]:
    """``path`` and its sidecar when the sidecar matches the file's size and ``entry``."""
    try:
        sidecar = json.loads(Path(f"{path}{SIDECAR}").read_text(encoding="utf-8"))
        size = path.stat().st_size
    except (OSError, ValueError):
        return None
    return (path, sidecar) if sidecar_matches(sidecar, entry, size) else None


def _copy_locked(
    path: Path,
    entry: FileEntry,
    store: Cache,
    settings: Settings,
    reporter: Reporter,
    said: str,
    vouched: Optional[dict[str, str]],
) -> Blob:
    """``_copy_in`` under the entry's cache lock, unless another process cached it meanwhile."""
    with locks.hold(
        store.lock_path(entry), f"copy of {entry.name}", settings.lock_timeout, reporter.say
    ):
        blob = store.find(entry)
        if blob:
            return blob
        reporter.say(said)
        return _copy_in(path, entry, store, reporter, vouched)


def _copy_in(
    source: Path,
    entry: FileEntry,
    store: Cache,
    reporter: Reporter,
    vouched: Optional[dict[str, str]],
) -> Blob:
    """One sequential read of ``source`` into the cache, hashed on the way: the bytes must
    match the manifest (or pin) and the sidecar's sha256, whatever the sidecar claims."""
    partial = store.root / "partial"
    partial.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=partial, prefix=f"{store.key(entry)}.", suffix=".copy")
    hasher = Hasher([d.algorithm for d in entry.digests])
    size = os.stat(source).st_size
    bar = reporter.bar(f"copying {entry.name}", size)
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            while chunk := src.read(COPY_CHUNK):
                dst.write(chunk)
                hasher.update(chunk)
                bar.update(len(chunk))
        digests = hasher.hexdigests()
        check(entry.name, hasher.size, digests, entry.size, entry.digests)
        if vouched and vouched.get(CACHE_ALGORITHM) != digests[CACHE_ALGORITHM]:
            raise IntegrityError(
                f"{source} does not match its sidecar: sha256 is {digests[CACHE_ALGORITHM]}, "
                f"the sidecar says {vouched.get(CACHE_ALGORITHM)}"
            )
        return store.commit(Path(tmp), entry, digests, {})
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        bar.close()


def _save(blob: Blob, entry: FileEntry, target: Path, reporter: Reporter) -> None:
    """Copy a cache blob to the tier, hashed as it is read: a blob altered on disk since it was
    cached raises DamagedBlob (nothing is saved; the caller fetches it again)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    bar = reporter.bar(f"saving {entry.name}", blob.size)
    try:
        with atomic_file(target) as dst, open(blob.path, "rb") as src:
            hasher = Hasher()
            while chunk := src.read(COPY_CHUNK):
                dst.write(chunk)
                hasher.update(chunk)
                bar.update(len(chunk))
            actual = hasher.hexdigests()[CACHE_ALGORITHM]
            if hasher.size != blob.size or actual != blob.sha256:
                why = f"sha256 is {actual}, its name says {blob.sha256}"
                raise DamagedBlob(
                    f"1 cached file(s) no longer matching their sha256: {blob.path} ({why})",
                    (blob,),
                )
            # An old sidecar must never vouch for the new bytes, even if we die right after this.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{target}{SIDECAR}")
    finally:
        bar.close()
    write_atomic(
        Path(f"{target}{SIDECAR}"), json.dumps(sidecar_for(entry, blob), indent=1).encode()
    )
