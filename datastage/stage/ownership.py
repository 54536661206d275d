"""What datastage may replace or delete in DIR, and the one door into place (the swap).

A folder that is not ours is never deleted: only a marker that parses and names the folder's
dataset proves ownership, and a staging of ours that holds a file its marker does not list (a
user's results saved inside a dataset) is not ours to replace either. An empty folder is
replaced by an atomic rename, which fails rather than delete anything that appeared in it.
Ownership is decided before the build and again at the swap (a long build gives the user time
to save a file), and once more on the folder just moved aside.

    DIR/.<name>.partial-XXXX/   work in progress (mkdtemp names), never under the final name
    DIR/.<name>.old-XXXX/       a previous staging being replaced (removed right away)
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..core.errors import UsageError
from ..core.fsutil import fsync_dir, remove_tree
from ..core.names import MARKER
from .links import check_links
from .marker import marker_naming, read_files, read_marker, valid_record
from .verify import damage_note, some_of, unlisted


@dataclass(frozen=True)
class Owned:
    """What proved a folder ours: its identity and its marker's, to notice a later swap."""

    folder: tuple[int, int]
    marker: tuple[int, int, int]

    @classmethod
    def of(cls, target: Path) -> Optional[Owned]:
        try:
            f, m = os.lstat(target), os.lstat(target / MARKER)
        except OSError:
            return None
        return cls((f.st_dev, f.st_ino), (m.st_ino, m.st_size, m.st_mtime_ns))


def refuse_unless_ours(
    target: Path, shown: Optional[Path] = None, instead: Optional[dict[str, Any]] = None
) -> None:
    """Raise UsageError (exit 2) unless ``target`` is missing, an empty folder, or a staging
    of ours: a folder holding a marker that parses and names this dataset, and no file the
    marker does not list (a user's results saved inside a dataset are not ours to delete).
    Deletes nothing.
    ``shown``: the path to name in the error (``target`` itself unless it was moved aside).
    ``instead``: the files that may be replaced when the marker has no listing (damaged by
    hand): the new staging's, at the swap (nothing is lost that is not staged again); None
    before the build, when the new listing is not known yet and the swap decides."""
    shown = shown or target
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        with os.scandir(target) as entries:
            if next(entries, None) is None:
                return
        owned = Owned.of(target)
        marker = marker_naming(target, target.name) if owned is not None else None
        if marker is not None:
            _refuse_unlisted(target, marker, shown, instead)
            return
    raise UsageError(
        f"{shown} exists and is not a datastage dataset; move it or choose another --to",
        hint=f"only a folder holding a valid {MARKER} that names {target.name!r} is replaced",
    )


def _refuse_unlisted(
    target: Path, marker: dict[str, Any], shown: Path, instead: Optional[dict[str, Any]]
) -> None:
    """A staging of ours that holds files its marker does not list: refuse to replace it."""
    listed = marker.get("files")
    if not isinstance(listed, dict) or not all(map(valid_record, listed.values())):
        current = read_marker(target)  # a marker that keeps its listing elsewhere
        listed = read_files(target, current) if current is not None else None
        if listed is None:
            if instead is None:  # damaged: no listing to go by
                return  # ours; which of its files are is decided at the swap
            listed = instead
    extra = unlisted(target, listed, strict=True)  # deciding what may go: see everything
    if extra:
        raise UsageError(
            f"{shown} holds {len(extra)} file(s) datastage did not stage "
            f"({some_of(sorted(extra))}); it is not replaced while they are there",
            hint="move them out of the dataset folder (or the folder elsewhere), then try again",
        )


def remove_leftovers(name: str, to: Path) -> None:
    """Partial and old folders of dead runs (the caller holds the lock, so no live run owns
    them). Only real folders named as ``tempfile.mkdtemp`` names ours, never a link or a file;
    an old folder only if what it holds is still a staging of ours alone (a folder moved aside
    by a run killed while it checked the folder again, with a user's file in it, is kept)."""
    ours = re.compile(rf"\.{re.escape(name)}\.(partial|old)-[a-z0-9_]+")
    for pattern in (f".{name}.partial-*", f".{name}.old-*"):
        for leftover in to.glob(pattern):
            if ours.fullmatch(leftover.name) and leftover.is_dir() and not leftover.is_symlink():
                if ".old-" in leftover.name and not _only_our_staging(leftover, name):
                    continue
                remove_tree(leftover)


def _only_our_staging(old: Path, name: str) -> bool:
    """True if ``old`` (a ``.<name>.old-*`` folder) is empty or holds just a staging of ours."""
    try:
        held = os.listdir(old)
        if held and held != [name]:
            return False
        if held:
            refuse_unless_ours(old / name, instead={})
    except (OSError, UsageError):
        return False
    return True


def swap_into_place(partial: Path, target: Path, links_checked: bool = False) -> None:
    """Rename the finished folder into place; an older staging of ours is moved aside first.

    The one door into place, so it checks what every caller must: the tree's links (unless
    the caller just did) and that whatever is at ``target`` is ours to replace (decided again
    at the swap, and once more on the folder moved aside: what was checked before the build is
    not enough, as files may be saved meanwhile). A damage note about the staging it replaces
    goes.
    """
    if not links_checked:
        check_links(partial)
    try:  # nothing there, or an empty folder: replaced atomically, nothing can be lost
        os.rename(partial, target)
    except OSError as e:
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise
        # decided now, not only before the build: a user may have saved a file in the folder
        # meanwhile
        new_marker = read_marker(partial)
        new = (read_files(partial, new_marker) if new_marker else None) or {}
        refuse_unless_ours(target, instead=new)
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, old / target.name)
        _put_back_unless_ours(old / target.name, target, new)
        os.rename(partial, target)
        fsync_dir(target.parent)
        remove_tree(old)
    else:
        fsync_dir(target.parent)
    with contextlib.suppress(OSError):  # a report about the staging just replaced
        os.unlink(damage_note(target))


def _put_back_unless_ours(moved: Path, target: Path, new: dict[str, Any]) -> None:
    """Check the folder just moved aside once more (a file saved into it between the check and
    the move is there now, and no longer reachable by its old path): if it is not all ours,
    it goes back where it was, untouched, and the staging fails."""
    try:
        refuse_unless_ours(moved, shown=target, instead=new)
    except UsageError:
        with contextlib.suppress(OSError):
            os.rename(moved, target)
            os.rmdir(moved.parent)
        raise
