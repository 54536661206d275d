"""Sizes for people, one convention everywhere: decimal SI units, like dataset pages publish.

    shown     human_bytes(2_748_572_632) == "2.7 GB"; progress bars count kB, MB, GB (x1000)
    typed     parse_size("20G") == 20_000_000_000; "500MB", "1.5T", "100" (bytes) likewise;
              binary units only when written out: "4MiB" == 4 * 1024**2, "512Ki", "1GiB"

So ``cache prune --max-size 5M`` keeps at most the "5.0 MB" that ``cache ls`` shows.
"""

from __future__ import annotations

import math
import re

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")

#: What progress bars count in (tqdm's ``unit``/``unit_divisor``): the same units as messages.
BAR_UNIT = "B"
BAR_DIVISOR = 1000

_FACTORS = {
    "": 1,
    **{prefix: 1000**power for power, prefix in enumerate("kmgtp", start=1)},
    **{prefix + "i": 1024**power for power, prefix in enumerate("kmgtp", start=1)},
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]i?)?b?\s*$", re.IGNORECASE)


def human_bytes(n: float) -> str:
    """``2748572632`` -> ``'2.7 GB'`` (decimal units, like the sizes dataset pages publish)."""
    if n < 1000:
        return f"{int(n)} B"
    for unit in _UNITS[1:]:
        n /= 1000
        if round(n, 1) < 1000 or unit == _UNITS[-1]:  # 999.96 kB shows as 1.0 MB
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """``"20G"`` -> 20_000_000_000, ``"4MiB"`` -> 4_194_304; ValueError for anything else."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size (e.g. 500M, 20G, 4MiB)")
    number, prefix = match.groups()
    value = float(number) * _FACTORS[(prefix or "").lower()]
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is too large")
    return int(value)
