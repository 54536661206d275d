"""Is a staged folder what its marker says? At once (``is_current``) or by re-hashing (``verify``).

``is_current`` is what keeps a repeated ``get`` instant: a few small reads whatever the number
of files (the marker and the presence of its file list). ``verify`` re-hashes every file; a
difference leaves a damage note beside the folder (``DIR/.<name>.damaged``, naming the folder's
identity), so the next ``get`` is not current and stages again; a newer staging in its place
is not affected, and the swap into place removes the note (ownership.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import stat
from pathlib import Path
from typing import Any, Callable, Optional

from ..core.errors import VerifyFailed
from ..core.fsutil import write_atomic
from ..core.names import FILE_LIST, MARKER, RESERVED_NAMES
from ..core.progress import Reporter
from ..resolve.manifest import Manifest
from .layout import dataset_dir, root_of
from .marker import read_files, read_marker, read_record

MAX_LISTED_PROBLEMS = 5
#: Threads re-hashing files in ``verify`` (hashlib releases the GIL; more hides disk latency).
VERIFY_THREADS = max(2, min(8, 2 * (os.cpu_count() or 1)))
READ_CHUNK = 1 << 20


def is_current(manifest: Manifest, to: Path) -> bool:
    """True if DIR/<name> holds a complete staging of this manifest that no ``verify`` has
    found damaged since.

    Costs a few small reads whatever the number of files: the marker and the presence of its
    file list, not the list itself (``verify`` re-checks every file, and a ``verify`` that
    finds a difference leaves a damage note, so the next ``get`` stages again). An old
    (format 1) marker is still trusted after checking every file's size, as it was then.
    """
    folder = dataset_dir(manifest, to)
    marker = read_marker(folder)
    if not marker or marker.get("content_key") != manifest.content_key:
        return False
    if damage_reported(folder):
        return False
    if "files" in marker:
        return not problems(folder, marker["files"], rehash=False, limit=1)
    listed_size: int = marker["file_list"]["size"]  # an int: read_marker checked it
    try:
        return os.stat(folder / FILE_LIST).st_size == listed_size
    except OSError:
        return False


# -- damage reported by verify ---------------------------------------------------------------


def damage_note(folder: Path) -> Path:
    """Where ``verify`` notes that ``folder`` is damaged: beside it, never inside."""
    return folder.parent / f".{folder.name}.damaged"


def record_damage(folder: Path, problems: str) -> None:
    """Remember that ``verify`` found this staging damaged, so the next ``get`` re-stages it
    (a same-size change is invisible to the size check that keeps a repeated ``get`` instant).
    The note names the folder's identity: a newer staging in its place is not affected."""
    try:
        st = os.stat(folder)
        note = {"folder": [st.st_dev, st.st_ino], "problems": problems}
        write_atomic(damage_note(folder), json.dumps(note).encode())
    except OSError:
        pass  # a read-only DIR: `get --repair` still repairs it


def clear_damage(folder: Path) -> None:
    """A ``verify`` found the staging intact (again): forget an earlier report."""
    with contextlib.suppress(OSError):
        os.unlink(damage_note(folder))


def damage_reported(folder: Path) -> bool:
    """True when a ``verify`` found this very staging (not an older one) damaged."""
    try:
        note = read_record(damage_note(folder))
        st = os.stat(folder)
    except (OSError, ValueError):
        return False
    return isinstance(note, dict) and note.get("folder") == [st.st_dev, st.st_ino]


# -- verify ----------------------------------------------------------------------------------


def verify(manifest: Manifest, to: Path, reporter: Reporter) -> Path:
    """Re-hash every staged file against the marker; raise VerifyFailed listing what differs.

    Files in the folder that the marker does not list are reported (a warning), not a failure:
    they may be the user's. A difference leaves a damage note (record_damage): the next
    ``get`` stages again.
    """
    folder = dataset_dir(manifest, to)
    files = _listed_files(manifest, to)
    _warn_extra(folder, files, reporter)
    total = sum(v.get("size", 0) for v in files.values())
    bar = reporter.bar(f"verifying {manifest.name}", total)
    try:
        found = problems(folder, files, rehash=True, limit=None, on_bytes=bar.update)
    finally:
        bar.close()
    if found:
        _mark_damaged(folder)
        raise VerifyFailed(
            f"{len(found)} of {len(files)} staged files in {folder} differ: {some_of(found)}",
            hint=f"re-stage with: {get_command(manifest, to)}",
        )
    return root_of(manifest, to)


def _listed_files(manifest: Manifest, to: Path) -> dict[str, Any]:
    """The file list of a staging of this manifest; VerifyFailed when there is none to trust."""
    folder = dataset_dir(manifest, to)
    marker = read_marker(folder)
    if marker is None:
        raise VerifyFailed(
            f"{folder} is not a complete staging of {manifest.name} (no valid {MARKER})",
            hint=f"run: {get_command(manifest, to)}",
        )
    if marker.get("content_key") != manifest.content_key:
        raise VerifyFailed(
            f"{folder} was staged from a different version of the {manifest.name} manifest",
            hint=f"run: {get_command(manifest, to)}",
        )
    files = read_files(folder, marker)
    if files is None:
        _mark_damaged(folder)
        raise VerifyFailed(
            f"the file list of {folder} ({FILE_LIST}) is missing or damaged",
            hint=f"re-stage with: {get_command(manifest, to)}",
        )
    return files


def some_of(names: list[str]) -> str:
    """The first MAX_LISTED_PROBLEMS of ``names``, and how many more there are."""
    more = len(names) - MAX_LISTED_PROBLEMS
    return ", ".join(names[:MAX_LISTED_PROBLEMS]) + (f" and {more} more" if more > 0 else "")


def get_command(manifest: Manifest, to: Path) -> str:
    """The command that stages ``manifest`` again, with the target as the user typed it."""
    named = f" --name {shlex.quote(manifest.typed_name)}" if manifest.typed_name else ""
    return f"datastage get {shlex.quote(manifest.target)}{named} --to {shlex.quote(str(to))}"


def _mark_damaged(folder: Path) -> None:
    """Make the next ``get`` stage again (the damage note beside the folder: record_damage)."""
    record_damage(folder, "verify found files that differ from the marker")


def _warn_extra(folder: Path, files: dict[str, Any], reporter: Reporter) -> None:
    extra = sorted(unlisted(folder, files, strict=False))
    if extra:
        reporter.warn(
            f"{len(extra)} file(s) in {folder} are not part of the staged dataset "
            f"(left alone, not checked): {some_of(extra)}"
        )


def unlisted(folder: Path, listed: Any, *, strict: bool) -> list[str]:
    """Files and links under ``folder`` that ``listed`` does not name (our records at the top
    excluded). ``strict``: a folder that cannot be read is an error, not skipped (deciding
    what may be replaced must see everything; verify's warning need not)."""
    extra: list[str] = []
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        try:
            entries = list(os.scandir(folder / rel_dir if rel_dir else folder))
        except OSError:
            if strict:
                raise
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                pending.append(rel)
            elif rel not in listed and not (not rel_dir and entry.name in RESERVED_NAMES):
                extra.append(rel)
    return extra


def problems(
    folder: Path,
    files: dict[str, Any],
    rehash: bool,
    limit: Optional[int],
    on_bytes: Optional[Callable[[int], Any]] = None,
) -> list[str]:
    """What differs between ``files`` and the tree (in the record's order).

    Without ``rehash`` (sizes only) it stops at ``limit`` problems; with it, files are hashed
    by VERIFY_THREADS threads, a slice of the list each task.
    """
    if not rehash:
        found: list[str] = []
        for rel, expected in files.items():
            problem = _problem(os.path.join(folder, rel), expected, False)
            if problem:
                found.append(f"{rel} ({problem})")
                if limit is not None and len(found) >= limit:
                    break
        return found
    from concurrent.futures import ThreadPoolExecutor

    base = os.fspath(folder)
    items = list(files.items())
    step = max(1, min(256, len(items) // (4 * VERIFY_THREADS) or 1))

    def check(start: int) -> list[tuple[int, str]]:
        part = []
        done = 0
        for i in range(start, min(start + step, len(items))):
            rel, expected = items[i]
            problem = _problem(f"{base}/{rel}", expected, True)
            if problem:
                part.append((i, f"{rel} ({problem})"))
            done += expected.get("size", 0)
        if on_bytes is not None:
            on_bytes(done)
        return part

    with ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="datastage-verify") as pool:
        numbered = [p for part in pool.map(check, range(0, len(items), step)) for p in part]
    numbered.sort()
    texts = [text for _, text in numbered]
    return texts[:limit] if limit is not None else texts


def _problem(path: str, expected: dict[str, Any], rehash: bool) -> Optional[str]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return e.strerror or "unreadable"
    if "symlink" in expected:
        if not stat.S_ISLNK(st.st_mode) or os.readlink(path) != expected["symlink"]:
            return "link changed"
        return None
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the hash, a link lead elsewhere
        return "not a regular file"
    if st.st_size != expected["size"]:
        return f"size {st.st_size}, expected {expected['size']}"
    if rehash:
        actual = _sha256(path, st.st_size)
        if actual is None:
            return "unreadable"
        if actual != expected["sha256"]:
            return "content changed"
    return None


def _sha256(path: str, size: int) -> Optional[str]:
    """The file's sha256 (None if it cannot be read): a small file costs one open, two reads
    and a close, no Python file object."""
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        want = min(size + 1, READ_CHUNK)
        while chunk := os.read(fd, want):
            digest.update(chunk)
            want = READ_CHUNK
    except OSError:
        return None
    finally:
        os.close(fd)
    return digest.hexdigest()
