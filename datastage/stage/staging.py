"""Putting a dataset in place: build it beside the target, write the marker last, rename.

    DIR/
    ├── <name>/                        the staged dataset; the printed path is DIR/<name>/<root>
    │   ├── .datastage-files.json      every file's size and sha256 (read by verify only)
    │   └── .datastage.json            completion marker, written last (marker.py)
    ├── .<name>.partial-XXXX/          work in progress, never under the final name
    ├── .<name>.old-XXXX/              a previous staging being replaced (removed right away)
    └── .<name>.damaged                written by a failed ``verify``: the next ``get`` re-stages
    (lock: one stager per dataset folder, across processes: lock_for(DIR/<name>), on local
     disk under ranks.lock_dir(), never in DIR, which may be a mount without working flock)

Owns the staging seam, ``Staging``: the one sequence every way of staging goes through (``get``
from verified cache blobs here, extract-while-downloading in streaming.py, ``stage SRC`` in
folder.py). The parts it runs live beside it: build.py (blobs -> files), marker.py (the
records), verify.py (is it current? is it intact?), ownership.py (what may be replaced, the
swap), links.py and layout.py (checks of the finished tree). A folder without a marker is
never trusted; a folder that is not ours is never deleted.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Optional

from ..core.errors import ArchiveError, ManifestError
from ..core.fsutil import disk_full_as_error, ensure_free, remove_tree
from ..core.progress import Reporter
from ..obtain.cache import Blob
from ..resolve.manifest import FileEntry, Manifest
from .build import BlobCheck, Item, build, damaged_blobs_error
from .layout import check_root, dataset_dir, root_of, warn_unexpected
from .links import check_links
from .marker import built_from, read_marker, write_marker
from .ownership import Owned, refuse_unless_ours, remove_leftovers, swap_into_place
from .verify import clear_damage, damage_reported, get_command, is_current, record_damage, verify

# What api.py uses of stage/ (as ``staging.<name>``), wherever it is defined.
__all__ = [
    "Owned",
    "Staging",
    "built_from",
    "clear_damage",
    "damage_reported",
    "damaged_blobs_error",
    "dataset_dir",
    "get_command",
    "is_current",
    "read_marker",
    "record_damage",
    "refuse_foreign",
    "root_of",
    "stage",
    "verify",
]


def lock_for(target: Path) -> Path:
    """The lock of the staging of ``target`` (``get``, ``stage`` and streaming share it).
    Keyed by the real folder that holds it: ``--to out`` and ``--to link-to-out`` (or
    ``out/../out``) are one folder, and a second stager would take the first's partial
    folder for a dead run's leftover and delete it."""
    from ..settings.ranks import lock_path

    return lock_path("stage", os.path.join(os.path.realpath(target.parent), target.name))


def refuse_foreign(manifest: Manifest, to: Path) -> None:
    """Fail before any download when DIR/<name> is a folder datastage may not replace."""
    refuse_unless_ours(dataset_dir(manifest, to))


class Staging:
    """One staging of DIR/<name>, from the lock to the swap: the seam of every staging path.

        with Staging.of(manifest, to, reporter, lock_timeout, force=force) as staging:
            if staging.current:                       # staged already (never with force)
                return staging.root
            with staging.building(needed) as partial:  # space checked, private folder made
                record = ...fill partial...
                staging.seal(blobs, record)            # root, layout, links; marker last
            staging.swap()                             # into place, ownership decided again

    Entering takes the stage lock (``lock_for``); then, unless the dataset is current, it
    removes dead runs' leftovers and refuses a folder datastage may not replace (UsageError).
    Leaving on an exception removes the partial folder; the lock is released either way.
    ``resumable`` (``stage SRC``, folder.py): the caller decides "current" itself, brings its
    own partial folder (``make_partial`` or ``adopt``), clears its own dead runs' folders and
    writes its own marker; a partial folder is kept on failure, for the next run to resume
    (the caller clears ``resumable`` once it no longer could: then a failure removes it).
    """

    def __init__(
        self,
        target: Path,
        reporter: Reporter,
        lock_timeout: Optional[float],
        doing: str,
        *,
        manifest: Optional[Manifest] = None,
        force: bool = False,
        resumable: bool = False,
    ) -> None:
        self.target = target
        self.reporter = reporter
        self.lock_timeout = lock_timeout
        self.doing = doing  # what another process waiting for the lock is told
        self.manifest = manifest
        self.force = force
        self.resumable = resumable
        self.current = False
        self.partial: Optional[Path] = None
        self._links_checked = False
        self._exits = contextlib.ExitStack()

    @classmethod
    def of(
        cls,
        manifest: Manifest,
        to: Path,
        reporter: Reporter,
        lock_timeout: Optional[float] = None,
        *,
        force: bool = False,
    ) -> Staging:
        """The staging of ``manifest`` in ``to``; ``force``: never "current"."""
        doing = f"staging {manifest.name} in {to}"
        target = dataset_dir(manifest, to)
        return cls(target, reporter, lock_timeout, doing, manifest=manifest, force=force)

    @property
    def root(self) -> Path:
        """The path users get (manifest stagings only)."""
        assert self.manifest is not None, "a folder staging has no manifest root"
        return root_of(self.manifest, self.target.parent)

    # -- opening and closing ---------------------------------------------------------------

    def __enter__(self) -> Staging:
        from ..core import locks

        self.target.parent.mkdir(parents=True, exist_ok=True)
        lock = lock_for(self.target)
        with self._exits:  # released again if a check below fails
            self._exits.enter_context(
                locks.hold(lock, self.doing, self.lock_timeout, self.reporter.say)
            )
            self._open()
            self._exits = self._exits.pop_all()
        return self

    def _open(self) -> None:
        to = self.target.parent
        if self.manifest is not None and not self.force and is_current(self.manifest, to):
            self.current = True
            return
        if not self.resumable:  # (stage SRC resumes its own, see folder.py)
            remove_leftovers(self.target.name, to)
        refuse_unless_ours(self.target)

    def __exit__(
        self,
        kind: Optional[type[BaseException]],
        error: Optional[BaseException],
        trace: Optional[TracebackType],
    ) -> None:
        try:
            kept = self.resumable and error is not None
            if self.partial is not None and not kept:
                remove_tree(self.partial)
                self.partial = None
        finally:
            self._exits.close()

    # -- the partial folder ----------------------------------------------------------------

    def make_partial(self, needed: Optional[int] = None) -> Path:
        """Check there is room for ``needed`` bytes, then make the private partial folder
        (0700, a name no other run uses) beside the target."""
        to = self.target.parent
        ensure_free(to, needed, f"to stage {self.target.name}")
        made = tempfile.mkdtemp(dir=to, prefix=f".{self.target.name}.partial-")
        self.partial = Path(made)
        return self.partial

    def adopt(self, partial: Path) -> None:
        """Build in ``partial``, a dead run's partial folder the caller proved its own."""
        self.partial = partial

    @contextlib.contextmanager
    def building(self, needed: Optional[int]) -> Iterator[Path]:
        """``make_partial(needed)``, then the block that fills it: a disk that fills up
        inside it is InsufficientSpace naming DIR, not a bare OSError."""
        partial = self.make_partial(needed)
        with disk_full_as_error(self.target.parent, needed, f"to stage {self.target.name}"):
            yield partial

    # -- committing ------------------------------------------------------------------------

    def seal(self, sources: Sequence[tuple[FileEntry, Blob]], record: dict[str, Any]) -> None:
        """Check the finished tree (its links as a whole, the manifest's root and layout)
        and write the marker, last: the partial folder is then a complete staging."""
        partial = self._partial()
        assert self.manifest is not None, "a folder staging writes its own marker"
        check_links(partial)
        check_root(self.manifest, partial)
        warn_unexpected(self.manifest, partial, self.reporter)
        write_marker(self.manifest, sources, partial, record)
        self._links_checked = True

    def swap(self) -> None:
        """Rename the partial folder into place (ownership.swap_into_place: the links are
        checked there unless ``seal`` just did; what is in place is judged again)."""
        swap_into_place(self._partial(), self.target, links_checked=self._links_checked)
        self.partial = None

    def _partial(self) -> Path:
        assert self.partial is not None, "no partial folder: make_partial or adopt first"
        return self.partial


def stage(
    manifest: Manifest,
    blobs: Sequence[tuple[FileEntry, Blob]],
    to: Path,
    reporter: Reporter,
    lock_timeout: Optional[float] = None,
    *,
    force: bool = False,
) -> Path:
    """Build DIR/<name> from verified blobs and return the root path users should get.
    ``force``: build it again even if a current staging is in place."""
    with Staging.of(manifest, to, reporter, lock_timeout, force=force) as staging:
        if staging.current:
            return staging.root
        check = BlobCheck([blob for _, blob in blobs])
        try:
            items = [Item.of(entry, blob) for entry, blob in blobs]
            needed = sum(item.unpacked_size() or 0 for item in items)
            with staging.building(needed or None) as partial:
                record = build(items, partial, reporter)
                check.raise_if_damaged()
                staging.seal(blobs, record)
            staging.swap()
        except (ArchiveError, ManifestError):
            check.raise_if_damaged()  # a cache file altered on disk explains the damage better
            raise
        except BaseException:
            check.cancel()
            raise
    return root_of(manifest, to)
