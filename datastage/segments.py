"""The segment plan of one file: which byte ranges exist, how far each has been written.

Owns: cutting a file of known size into segments, splitting the largest remaining range for an
idle worker (work stealing), the contiguous written prefix, and the JSON form of the plan that
is persisted next to the ``.part`` (inside ``partial/<key>.json``). Pure data: no threads, no
network, no files (``segmented.py`` drives it, ``download.py`` persists it).

A segment is ``[start, end)`` with ``pos`` the first byte not yet written: bytes
``start..pos-1`` are on disk. ``pos`` only moves after ``os.pwrite`` returned, and the plan is
saved from those values, so a saved plan never claims a byte that is not in the ``.part``
(kill -9 loses page-cache-only bytes only on a power cut, not on a process death).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

#: An idle worker only splits a range with at least twice this much left: below it, a new
#: connection costs more than it saves. It is also far above one network chunk, so a split
#: point is always beyond the chunk its owner may be writing.
MIN_STEAL = 1024 * 1024


@dataclass
class Segment:
    start: int
    pos: int
    end: int  # exclusive
    owner: int = field(default=0, compare=False)  # token of the worker fetching it; 0 = nobody
    progress_at: float = field(default=0.0, compare=False)  # monotonic time of its last byte

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    @property
    def done(self) -> bool:
        return self.pos >= self.end


#: A file smaller than this many ``min_segment`` takes one connection: splitting a small file
#: saves less than the extra requests cost. With the default 4 MiB: 8 segments from 32 MiB.
SPLIT_FROM = 8


def plan(size: int, connections: int, min_segment: int) -> list[Segment]:
    """Equal segments, at most ``connections`` of them and none smaller than ``min_segment``;
    one segment for a file under ``SPLIT_FROM * min_segment``."""
    min_segment = max(1, min_segment)
    count = 1 if size < SPLIT_FROM * min_segment else max(1, min(connections, size // min_segment))
    bounds = [size * i // count for i in range(count + 1)]
    return [Segment(a, a, b) for a, b in zip(bounds, bounds[1:])]


def count(size: int, connections: int, min_segment: int) -> int:
    return len(plan(size, connections, min_segment)) if size > 0 else 1


def split_largest(segments: list[Segment], min_steal: int = MIN_STEAL) -> Optional[Segment]:
    """Halve the largest remaining range; return the new (unowned) back half, or None."""
    candidates = [s for s in segments if s.remaining >= 2 * min_steal]
    if not candidates:
        return None
    victim = max(candidates, key=lambda s: s.remaining)
    mid = victim.pos + victim.remaining // 2
    back = Segment(mid, mid, victim.end)
    victim.end = mid
    segments.insert(segments.index(victim) + 1, back)
    return back


def contiguous_prefix(segments: list[Segment]) -> int:
    """Length of the written prefix ``[0, n)`` of the file (segments are sorted by start)."""
    for s in segments:
        if not s.done:
            return s.pos
    return segments[-1].end if segments else 0


def written(segments: list[Segment]) -> int:
    return sum(s.pos - s.start for s in segments)


def to_json(segments: list[Segment]) -> list[list[int]]:
    return [[s.start, s.pos, s.end] for s in segments]


def from_json(raw: Any, size: int) -> Optional[list[Segment]]:
    """The saved plan, or None if it does not tile ``[0, size)`` exactly (then start over)."""
    try:
        segments = [Segment(int(a), int(p), int(b)) for a, p, b in raw]
    except (TypeError, ValueError):
        return None
    expected_start = 0
    for s in segments:
        if s.start != expected_start or not s.start <= s.pos <= s.end:
            return None
        expected_start = s.end
    return segments if segments and expected_start == size else None
