"""The one-line-per-dataset table of ``datastage list`` and ``search``, fitted to the terminal."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Optional

import click

from ..resolve.manifest import Manifest
from .options import size_text

LICENSE_WIDTH = 20  # the full text is in `datastage info`; the table shows its start
TAGS_WIDTH = 24  # beyond it: "+N" more (a corpus in 8 languages stays one short cell)


def table(rows: Sequence[Manifest]) -> None:
    """One line per row, the description last. On a terminal every line fits its width: the
    license and tags cells shrink first, then the description is cut, then left out."""
    columns = None
    if sys.stdout.isatty():
        import shutil

        columns = shutil.get_terminal_size().columns
    for license_width, tags_width in ((LICENSE_WIDTH, TAGS_WIDTH), (12, 14)):
        lines = _rows_of(rows, license_width, tags_width, columns)
        if lines is not None:
            break
    else:
        lines = _rows_of(rows, 12, 14, None, describe=False)
    for line in lines or []:
        click.echo(line)


def _rows_of(
    rows: Sequence[Manifest],
    license_width: int,
    tags_width: int,
    columns: Optional[int],
    describe: bool = True,
) -> Optional[list[str]]:
    """The table's lines, or None when fewer than 20 columns would be left for descriptions."""
    header = ("NAME", "SIZE", "LICENSE", "SUBSETS", "TAGS", "DESCRIPTION")
    table = [
        (
            m.address,
            size_text(m.total_size),
            license_cell(m, license_width),
            str(len(m.subsets)) if m.subsets else "-",
            tags_cell(m.tags, tags_width),
            m.description,
        )
        for m in rows
    ]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(5)]
    room = None if columns is None else columns - sum(widths) - 2 * len(widths)
    if describe and room is not None and room < 20:
        return None
    lines = []
    for row in [header, *table]:
        cells = "  ".join(cell.ljust(w) for cell, w in zip(row, widths))
        if not describe:
            lines.append(cells.rstrip())
            continue
        text = row[5] if room is None or len(row[5]) <= room else row[5][: room - 3] + "..."
        lines.append(cells + "  " + text)
    return lines


def license_cell(m: Manifest, width: int = LICENSE_WIDTH) -> str:
    """The license's name without its notes; "[NC]" when non-commercial use only, "[gated]"
    when some files need a registration first (the terms of access): marks are never cut."""
    text = (m.license or "-").split(" (")[0].split(";")[0].strip()
    if len(text) > width:
        text = text[: width - 3] + "..."
    elif text != m.license and m.license:
        text += "..."
    return text + (" [NC]" if m.noncommercial else "") + (" [gated]" if m.gated else "")


def tags_cell(tags: Sequence[str], width: int = TAGS_WIDTH) -> str:
    """All tags, or as many as fit ``width`` and "+N" for the rest."""
    text = ",".join(tags) or "-"
    if len(text) <= width:
        return text
    shown: list[str] = []
    for tag in tags:
        rest = len(tags) - len(shown) - 1
        if len(",".join([*shown, tag])) + len(f",+{rest}") > width:
            break
        shown.append(tag)
    return ",".join([*shown, f"+{len(tags) - len(shown)}"])
