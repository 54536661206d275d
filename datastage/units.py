"""Human-readable sizes for messages."""

from __future__ import annotations

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def human_bytes(n: float) -> str:
    """``2748572632`` -> ``'2.7 GB'`` (decimal units, like the sizes dataset pages publish)."""
    if n < 1000:
        return f"{int(n)} B"
    for unit in _UNITS[1:]:
        n /= 1000
        if n < 1000 or unit == _UNITS[-1]:
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")
