"""The expected layout of a staged dataset, checked once, right after staging.

A manifest's ``[layout]`` lists globs under the dataset root that must match something
(``paths``) and globs whose number of matching files is known (``counts``). A difference is a
warning, not an error: the files were verified by checksum already, and an upstream re-release
or a manifest written from incomplete facts should not block training. The warning says what
differed so the user (or the manifest's author) can act on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..resolve.manifest import Layout

MAX_LISTED = 3


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
