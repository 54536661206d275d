"""Options (and the size format) shared by the commands of main.py and machine.py, defined once.

Folder options stay strings (no ``path_type``): click would turn ``--to ""`` into ``Path(".")``,
and an empty folder must reach ``config.given_path`` to be refused, not staged into the cwd.
"""

from __future__ import annotations

from typing import Any, Optional

import click

from ..core.units import human_bytes

debug = click.option("--debug", is_flag=True, help="Show tracebacks of errors.", expose_value=False)
quiet = click.option(
    "-q", "--quiet", is_flag=True, default=None, help="No progress bars or messages."
)
as_json = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def to(help: str, required: bool = False) -> Any:
    """``--to DIR``: the folder a command stages into, packs into or looks in."""
    return click.option(
        "--to",
        "to",
        required=required,
        default=None,
        type=click.Path(file_okay=False),
        help=help,
    )


def cache(dest: str = "cache", help: str = "") -> Any:
    """``--cache DIR``: the cache of verified downloads."""
    return click.option(
        "--cache", dest, type=click.Path(file_okay=False), default=None, help=help or None
    )


def size_text(n: Optional[int]) -> str:
    """A size as the commands print it: decimal units, "?" when it is not known."""
    return human_bytes(n) if n is not None else "?"
