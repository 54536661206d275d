"""Progress bars and messages. Always on stderr, so stdout carries only results (paths).

Bars use ``tqdm.auto`` (a widget in notebooks) and only when someone is watching: stderr is a
terminal or we run inside a notebook kernel. ``quiet`` silences bars and messages, not errors.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Protocol

from .redact import redact_text


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
            print(redact_text(message), file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        print(f"warning: {redact_text(message)}", file=sys.stderr, flush=True)

    def bar(self, desc: str, total: Optional[int], unit: str = "B", initial: int = 0) -> Bar:
        if self.quiet or not _watched():
            return _NoBar()
        from tqdm.auto import tqdm

        return tqdm(
            desc=desc,
            total=total,
            initial=initial,
            unit=unit,
            unit_scale=unit == "B",
            unit_divisor=1024 if unit == "B" else 1000,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
            mininterval=0.25,
        )


def _watched() -> bool:
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
