"""The segment plan of one file: which byte ranges exist, how far each has been written.

Owns: whether a file is worth several connections (``should_split``, and ``Probe`` for a
stream already running), cutting a file of known size into segments, which piece an idle worker
takes (the next share of what nobody claimed, else half the largest remaining range: work
stealing, else a stalled one), the contiguous written prefix, and the JSON form of the plan
that is persisted next to the ``.part`` (inside ``partial/<key>.json``). No threads, no network,
no files (``transfer.py`` drives it, ``download.py`` persists it).

A segment is ``[start, end)`` with ``pos`` the first byte not yet written: bytes
``start..pos-1`` are on disk. ``pos`` only moves after ``os.pwrite`` returned, and the plan is
saved from those values, so a saved plan never claims a byte that is not in the ``.part``
(kill -9 loses page-cache-only bytes only on a power cut, not on a process death).
"""

from __future__ import annotations

import time
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


def should_split(size: int, connections: int, min_segment: int) -> bool:
    """Worth several connections: not for a file under ``SPLIT_FROM * min_segment``."""
    return connections > 1 and size >= SPLIT_FROM * max(1, min_segment)


class Probe:
    """Should one connection get company? It runs alone for up to ``seconds``: if it would
    finish the file within ``FAST_ENOUGH`` at its rate, more connections cannot save much and
    only cost CPU (a fast unthrottled host, loopback), so it stays alone. A connection clearly
    too slow (``CLEARLY`` times over) gets company at once, without waiting out the probe.
    ``seconds=0`` splits at once."""

    FAST_ENOUGH = 2.0
    CLEARLY = 4.0
    EVIDENCE = 1 << 20  # bytes before an early verdict: the first chunk's timing is mostly latency

    def __init__(self, size: int, seconds: float, began: float, start: int = 0) -> None:
        self.size, self.seconds, self.began, self.start = size, seconds, began, start
        self.split = seconds <= 0
        self._settled = self.split

    def decided(self, have: int) -> bool:
        """Called after each chunk; True stops the single stream (to split the rest)."""
        if self._settled:
            return self.split
        elapsed = time.monotonic() - self.began
        got = have - self.start  # by this response
        # The rate includes the request's latency: it errs on the side of splitting.
        projected = (self.size - have) * elapsed / got if got > 0 else float("inf")
        if got >= self.EVIDENCE and projected > self.FAST_ENOUGH * self.CLEARLY:
            self.split = self._settled = True
        elif elapsed >= self.seconds:
            self.split, self._settled = projected > self.FAST_ENOUGH, True
        return self.split


def plan(size: int, have: int = 0) -> list[Segment]:
    """A fresh plan: the whole file (``have`` bytes already written), unclaimed. Workers cut
    pieces off its front (take_piece)."""
    return [Segment(0, have, size)]


def piece_size(segments: list[Segment], connections: int, min_piece: int) -> int:
    """Guided self-scheduling: a share of what nobody has claimed yet, never below min_piece.

    Big pieces first (few requests while there is plenty left), small ones at the end, so all
    connections finish together and the unhashed tail behind the prefix stays small.
    """
    unclaimed = sum(s.remaining for s in segments if not s.owner)
    return max(min_piece, unclaimed // (2 * max(1, connections)))


def take_piece(segments: list[Segment], seg: Segment, piece: int) -> Segment:
    """Cut ``seg`` (unclaimed) to its first ``piece`` bytes; the rest stays unclaimed."""
    if seg.remaining >= piece + piece // 2:  # never leave a crumb behind
        cut = seg.pos + piece
        segments.insert(segments.index(seg) + 1, Segment(cut, cut, seg.end))
        seg.end = cut
    return seg


def next_piece(segments: list[Segment], connections: int, min_piece: int) -> Optional[Segment]:
    """A piece cut off the first range nobody has claimed (its share: piece_size), or None."""
    seg = next((s for s in segments if not s.owner and not s.done), None)
    if seg is None:
        return None
    return take_piece(segments, seg, piece_size(segments, connections, min_piece))


def stalled(segments: list[Segment], before: float) -> Optional[Segment]:
    """The largest claimed range whose owner wrote nothing since ``before``: to take over."""
    late = [s for s in segments if not s.done and s.owner and s.progress_at < before]
    return max(late, key=lambda s: s.remaining, default=None)


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
