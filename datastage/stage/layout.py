"""Where a staged dataset is (DIR/<name>, the root users get) and the shape it should have.

The root a manifest names must be in the finished tree (an error: the path users get would not
exist). A manifest's ``[layout]`` lists globs under the dataset root that must match something
(``paths``) and globs whose number of matching files is known (``counts``). A difference is a
warning, not an error: the files were verified by checksum already, and an upstream re-release
or a manifest written from incomplete facts should not block training. The warning says what
differed so the user (or the manifest's author) can act on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..core.errors import ManifestError
from ..core.names import RESERVED_NAMES
from ..core.progress import Reporter
from ..resolve.manifest import Layout, Manifest

MAX_LISTED = 3


def dataset_dir(manifest: Manifest, to: Path) -> Path:
    """DIR/<name>: the folder a manifest is staged in."""
    return to / manifest.name


def root_of(manifest: Manifest, to: Path) -> Path:
    """The path users get: the dataset folder, or the root folder the manifest names in it
    (for a one-liner's archive: its single top folder, found in the marker's listing)."""
    folder = dataset_dir(manifest, to)
    if manifest.root:
        return folder / manifest.root
    if manifest.detect_root:
        return folder / _top_folder_on_disk(folder)
    return folder


def _top_folder_on_disk(folder: Path) -> str:
    """The one top folder of a staged one-liner's archive, or "" (the dataset folder itself).

    Read from the folder's own listing (a few entries, whatever the number of files; the
    marker is not parsed): an empty folder, a link or a hidden file beside the top folder is
    part of the dataset, and the top folder must be a real folder, never a link that could
    lead elsewhere.
    """
    try:
        entries = set(os.listdir(folder)) - RESERVED_NAMES
    except OSError:
        return ""
    if len(entries) != 1:
        return ""
    (top,) = entries
    real_folder = (folder / top).is_dir() and not (folder / top).is_symlink()
    return top if real_folder else ""


def single_top_folder(paths: Iterable[str]) -> str:
    """The one top-level folder every path lies in ("" if a file is at the top, or there are
    several). The rule `datastage manifest` writes as ``root`` and one-liners print."""
    tops = set()
    for path in paths:
        first, sep, _ = path.partition("/")
        if not sep:
            return ""
        tops.add(first)
    return tops.pop() if len(tops) == 1 else ""


def problems(layout: Layout, root: Path) -> list[str]:
    """What differs between ``layout`` and the tree under ``root`` (empty: as expected)."""
    found: list[str] = []
    missing = [p for p in layout.paths if next(iter(root.glob(p)), None) is None]
    if missing:
        listed = ", ".join(missing[:MAX_LISTED])
        more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        found.append(f"expected {listed}{more}: not found")
    for pattern, expected in layout.counts:
        # Regular files only, as `datastage manifest` counts archive members.
        actual = sum(1 for p in root.glob(pattern) if p.is_file() and not p.is_symlink())
        if actual != expected:
            found.append(f"{pattern}: {actual} files, expected {expected}")
    return found


def check_root(manifest: Manifest, tree: Path) -> None:
    """ManifestError unless the root folder the manifest names is in the finished ``tree``."""
    if manifest.root and not (tree / manifest.root).is_dir():
        found = sorted(p.name for p in tree.iterdir())[:10]
        raise ManifestError(
            f"manifest {manifest.path or manifest.name}: root: folder {manifest.root!r} is not in "
            f"the extracted data (top level holds: {', '.join(found) or 'nothing'})"
        )


def warn_unexpected(manifest: Manifest, tree: Path, reporter: Reporter) -> None:
    """Warn (not fail) when the finished ``tree`` differs from the manifest's expected layout."""
    if not manifest.layout:
        return
    found = problems(manifest.layout, tree / manifest.root if manifest.root else tree)
    if found:
        reporter.warn(
            f"{manifest.address} does not look as its manifest expects: {'; '.join(found)} "
            "(the files passed their checks; the manifest may be out of date)"
        )
