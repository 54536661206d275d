"""Progress bars and messages. Always on stderr, so stdout carries only results (paths).

Bars are drawn only when someone is watching: stderr is a terminal or we run inside a notebook
kernel. In a notebook they are Jupyter widgets when ipywidgets is installed (the ``notebook``
extra), else plain text bars: tqdm's own choice (``tqdm.auto``) would warn "IProgress not
found" first, which is noise, not news. ``quiet`` silences bars and messages, not warnings or
errors. Every message is written as one whole line under a lock, so lines of files that
download at once never run together, and open bars are redrawn below it.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Optional, Protocol

from .redact import redact_text
from .text import printable
from .units import BAR_DIVISOR, BAR_UNIT

_write_lock = threading.Lock()
_warned: set[str] = set()


class Bar(Protocol):
    def update(self, n: int) -> Any: ...

    def close(self) -> Any: ...


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class Reporter:
    """Where a run reports to: messages and bars, or silence."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def say(self, message: str) -> None:
        if not self.quiet:
            write_line(redact_text(message))

    def warn(self, message: str) -> None:
        write_line(f"warning: {redact_text(message)}")

    def bar(self, desc: str, total: Optional[int], unit: str = "B", initial: int = 0) -> Bar:
        if self.quiet or not _watched():
            return _NoBar()
        in_bytes = unit == "B"
        bar: Bar = bar_class()(
            desc=desc,
            total=total,
            initial=initial,
            unit=BAR_UNIT if in_bytes else unit,
            unit_scale=in_bytes,
            unit_divisor=BAR_DIVISOR if in_bytes else 1000,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
            mininterval=0.25,
        )
        return bar


def write_line(line: str) -> None:
    """One whole line on stderr, never interleaved with another thread's, bars kept intact;
    control characters escaped (a file name in a warning carries no terminal escape)."""
    line = printable(line)
    with _write_lock:
        std = sys.modules.get("tqdm.std")
        if std is not None:  # bars may be on screen: tqdm clears and redraws them around it
            std.tqdm.write(line, file=sys.stderr)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def warn_once(message: str) -> None:
    """A warning about the environment (not the run): said once per process."""
    if message not in _warned:
        _warned.add(message)
        write_line(f"warning: {redact_text(message)}")


def bar_class() -> Any:
    """Widget bars in a notebook that has ipywidgets; text bars everywhere else."""
    if _in_kernel():
        from tqdm import notebook

        if notebook.IProgress is not None:  # None: ipywidgets is missing or too old
            return notebook.tqdm
    from tqdm.std import tqdm

    return tqdm


def _in_kernel() -> bool:
    return "ipykernel" in sys.modules


def _watched() -> bool:
    if _in_kernel():
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
