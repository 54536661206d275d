"""The state sidecar of a ``.part`` file: what a resumed download must know to continue it.

    partial/<key>.part        the bytes received so far (preallocated when segmented)
    partial/<key>.json        PartState: the URL (redacted), size, validators, segment plan

Owns reading, writing and judging that state: which offset a new run may resume from, and
whether a saved segment plan still fits the ``.part``. download.py owns the transfer itself.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

from ..core.redact import redact_url, same_url
from . import plan as segment_plan


@dataclass(frozen=True)
class PartState:
    """What a resumed run must know about the download it continues."""

    url: str
    size: Optional[int] = None
    etag: Optional[str] = None
    last_modified: Optional[str] = None
    segments: Optional[list[list[int]]] = None  # the segment plan, when segmented


def load(state_path: Path, url: str) -> Optional[PartState]:
    """The saved state, with ``url`` in place of its redacted copy when they match."""
    try:
        state = PartState(**json.loads(state_path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return replace(state, url=url) if same_url(state.url, url) else state


def save(state_path: Path, state: PartState) -> None:
    """Replace the state file atomically, without fsync: a kill -9 keeps the page cache,
    and after a power cut the .part's own unsynced bytes are as uncertain as the plan (the
    final digest catches either). Saved up to ~30 times a second at loopback speed."""
    tmp = state_path.with_name(f".{state_path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        stored = {**asdict(state), "url": redact_url(state.url)}  # load() matches it back
        tmp.write_bytes(json.dumps(stored).encode())
        os.replace(tmp, state_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def saved_plan(part: Path, state: PartState) -> Optional[list[segment_plan.Segment]]:
    """The segment plan of ``state``, if the ``.part`` still has the size it was cut for."""
    if state.size is None or state.segments is None:
        return None
    try:
        if part.stat().st_size != state.size:
            return None
    except OSError:
        return None
    return segment_plan.from_json(state.segments, state.size)


def resumable_offset(part: Path, state_path: Path, url: str, pinned: bool) -> int:
    """How many bytes of ``part`` a download of ``url`` may keep (0: start over)."""
    state = load(state_path, url)
    if state is None or not part.exists():
        return 0
    # Bytes from another mirror are fine when a digest will check them; otherwise not.
    if state.url != url and not pinned:
        return 0
    # Nothing would notice a file changed between runs: no digest, no ETag/Last-Modified
    # for If-Range. Splicing old and new bytes would then pass (and be pinned): start over.
    if not pinned and not (state.etag or state.last_modified):
        return 0
    if state.segments is not None:
        plan = saved_plan(part, state)
        return segment_plan.written(plan) if plan else 0
    have = part.stat().st_size
    return 0 if state.size is not None and have > state.size else have


def discard(part: Path, state_path: Path) -> None:
    for path in (part, state_path):
        path.unlink(missing_ok=True)
