"""The symlinks of a finished tree: every one must resolve inside it.

SafeWriter checks the links of one archive as it extracts them, but a tree is often built by
several writers (a nested archive, the next ``[[files]]`` entry, ``stage SRC``), and a later one
may replace a link an earlier, approved link goes through (``s -> d/up/..`` is harmless while
``d/up -> .``, and leads out once ``d/up -> ..``). So the finished tree is checked once, as a
whole, just before it is committed (the staging seam, staging.py), whatever produced it.

Rules (decided here, documented in docs/design.md):
- a link's target must be relative and must stay inside the folder at every step of its
  resolution: ``../<name>/x`` leaves it and is refused even if it would come back;
- a link to the folder itself (``lnk -> .``) is inside: a loop for code that follows links,
  not an escape;
- a dangling link (a component missing, or a file used as a folder) is allowed: the system
  cannot follow it; what is left of its path is resolved by name (``..`` removes a component),
  so ``missing/../../x`` is still refused;
- a loop (``a -> b``, ``b -> a``) or a chain longer than the system follows (40 links) is
  refused: such a tree is not data.

Cost: one ``scandir`` pass over the tree (no ``stat`` per file: the directory entry says what
it is), one ``readlink`` per link, then resolution in memory, each link resolved once (memo).
Linear in the number of entries plus the total length of the link targets.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import UnsafeArchiveMember

#: Links the kernel follows in one lookup before it gives up (Linux: MAXSYMLINKS).
MAX_LINK_DEPTH = 40


class _Refused(Exception):
    def __init__(self, why: str) -> None:
        self.why = why


def check_links(root: Path, what: str = "the dataset folder") -> None:
    """Raise UnsafeArchiveMember naming the first link (in sorted order) that does not resolve
    inside ``root``; return quietly when every link does."""
    links = _scan(root)
    resolver = _Resolver(links)
    for rel in sorted(links):
        try:
            resolver.link(rel, 0)
        except _Refused as e:
            raise UnsafeArchiveMember(
                f"symlink {rel!r} -> {links[rel]!r} in {what} {e.why}; nothing was staged",
                hint="the data may be malicious or damaged; get it from a trusted source",
            ) from None


def _scan(root: Path) -> dict[str, str]:
    """Every symlink under ``root`` (not followed): relative path -> target."""
    links: dict[str, str] = {}
    pending = [""]
    while pending:
        rel = pending.pop()
        with os.scandir(root / rel if rel else root) as entries:
            for entry in entries:
                child = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_symlink():
                    links[child] = os.readlink(entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(child)
    return links


class _Resolver:
    """Resolves link paths inside the tree from what ``_scan`` saw, without system calls."""

    def __init__(self, links: dict[str, str]) -> None:
        self._links = links
        self._done: dict[str, tuple[str, ...]] = {}  # link -> the folder path it resolves to
        self._active: set[str] = set()

    def link(self, rel: str, depth: int) -> tuple[str, ...]:
        """Where link ``rel`` leads, as components under the root; _Refused if outside."""
        done = self._done.get(rel)
        if done is not None:
            return done
        if rel in self._active:
            raise _Refused("is part of a symlink loop")
        if depth >= MAX_LINK_DEPTH:
            raise _Refused(f"starts a chain of more than {MAX_LINK_DEPTH} symlinks")
        target = self._links[rel]
        if target.startswith("/") or not target:
            raise _Refused("is absolute (or empty); links must be relative")
        self._active.add(rel)
        try:
            parent = tuple(rel.split("/")[:-1])
            resolved = self._walk(parent, target, depth + 1)
        finally:
            self._active.discard(rel)
        self._done[rel] = resolved
        return resolved

    def _walk(self, start: tuple[str, ...], path: str, depth: int) -> tuple[str, ...]:
        current = list(start)
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not current:
                    raise _Refused("leads outside it")
                current.pop()
                continue
            current.append(part)
            name = "/".join(current)
            if name in self._links:
                try:
                    current = list(self.link(name, depth))
                except _Refused as e:
                    if e.why == "leads outside it":
                        raise _Refused(f"leads outside it (through {name!r})") from None
                    raise
        return tuple(current)
