"""One manifest file's extraction steps: the archive, then the archives inside it (nesting).

Owns: the size guard around each extraction (declared size vs free space before writing, a
budget while writing) and nested archives: named ones (``nested = ["VCTK-Corpus-0.92.zip"]``)
or every tar/zip/7z/rar found inside (``extract_nested = true``). An inner archive is moved
out of the tree into a private folder of the partial folder, extracted where it lay with the
same SafeWriter rules and guard, then deleted; the marker records its contents, not it.
Does not own: the partial folder or the marker (stage/staging.py).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..core.errors import ManifestError, UnsupportedArchive
from ..core.fsutil import SPACE_MARGIN, ensure_free, free_bytes, remove_tree
from . import Format, detect, extract, output_name
from .encodings import name_encoding
from .writer import SafeWriter, SizeBudget

#: Names ``extract_nested = true`` looks at (the bytes decide, these only pick candidates).
NESTED_SUFFIXES = (
    ".zip", ".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".tar.zst",
    ".7z", ".rar",
)  # fmt: skip
#: Archives inside archives are unpacked this many levels deep at most; the size guard is
#: the real limit, this only stops an archive that contains itself (a zip quine).
MAX_DEPTH = 32


@dataclass(frozen=True)
class Step:
    """What to extract and how: one manifest file entry's settings."""

    name: str  # the archive's name, for messages
    dest: str  # folder inside the dataset ("" for its top)
    strip: int = 0
    nested: Sequence[str] = ()
    extract_nested: bool = False
    unpacked_size: Optional[int] = None  # declared by the manifest
    name_encoding: Optional[str] = None  # of member names that are not UTF-8 (None: detect)


def unpack(
    step: Step,
    path: Path,
    fmt: Format,
    dataset: Path,
    record: dict[str, Any],
    bar: Callable[[str, int], Any],
) -> None:
    """Extract ``path`` into ``dataset/step.dest`` and then its nested archives."""
    folder = dataset / step.dest if step.dest else dataset
    budget = _budget(path, fmt, folder, step.unpacked_size, "the manifest (unpacked_size)")
    writer = SafeWriter(folder, step.dest, step.name, record, budget, step.strip)
    with name_encoding(step.name_encoding):
        _run(path, fmt, writer, output_name(step.name, fmt.compression), bar)
        _unpack_nested(step, dataset, record, bar)


def _run(
    path: Path, fmt: Format, writer: SafeWriter, out_name: str, bar: Callable[[str, int], Any]
) -> None:
    progress = bar(f"extracting {writer.archive}", path.stat().st_size)
    try:
        extract(path, fmt, writer, out_name, progress.update)
    finally:
        progress.close()


def _budget(
    path: Path, fmt: Format, folder: Path, from_manifest: Optional[int], manifest_says: str
) -> SizeBudget:
    """Check the declared size against free space now; cap what the extraction may write."""
    from . import declared_size

    declared: Optional[int] = from_manifest
    by = manifest_says
    if declared is None:
        declared, by = declared_size(path, fmt), "the archive's own listing"
    if declared is not None:
        ensure_free(folder, declared, f"to extract {path.name}")
        return SizeBudget(declared, by)
    # Nothing declared: stop a little before the disk is full rather than fill it.
    return SizeBudget(max(0, free_bytes(folder) - SPACE_MARGIN // 4), "", free_space_of=folder)


def _unpack_nested(
    step: Step, dataset: Path, record: dict[str, Any], bar: Callable[[str, int], Any]
) -> None:
    prefix = f"{step.dest}/" if step.dest else ""
    for inner in step.nested:
        rel = prefix + inner
        if rel not in record or "sha256" not in record[rel]:
            raise ManifestError(
                f"nested archive {inner!r} is not a file in {step.name}; "
                f"check the manifest's nested = [...]"
            )
        fmt = detect(dataset / rel)
        if not fmt.is_archive:
            raise ManifestError(f"nested archive {inner!r} in {step.name} is not an archive")
        _unpack_inner(rel, fmt, step, dataset, record, bar)
    if step.extract_nested:
        for _depth in range(MAX_DEPTH + 1):
            found = [(rel, _fmt(dataset / rel)) for rel in _candidates(record, prefix)]
            archives = [(rel, fmt) for rel, fmt in found if fmt is not None]
            if not archives:
                return
            if _depth == MAX_DEPTH:
                raise UnsupportedArchive(
                    f"{step.name} still holds archives after {MAX_DEPTH} levels of nesting "
                    f"(such as {archives[0][0]!r}); extraction stopped",
                    hint="an archive that contains itself? set extract_nested = false "
                    "and name the inner archives with nested = [...]",
                )
            for rel, fmt in archives:
                _unpack_inner(rel, fmt, step, dataset, record, bar)


def _candidates(record: dict[str, Any], prefix: str) -> list[str]:
    return sorted(
        rel
        for rel, what in record.items()
        if rel.startswith(prefix) and "sha256" in what and rel.lower().endswith(NESTED_SUFFIXES)
    )


def _fmt(path: Path) -> Optional[Format]:
    fmt = detect(path)
    return fmt if fmt.kind in ("tar", "zip", "7z", "rar") else None


def _unpack_inner(
    rel: str,
    fmt: Format,
    step: Step,
    dataset: Path,
    record: dict[str, Any],
    bar: Callable[[str, int], Any],
) -> None:
    """Move the inner archive aside, extract it where it lay, delete it."""
    parent, _, name = rel.rpartition("/")
    folder = dataset / parent if parent else dataset
    holding = Path(tempfile.mkdtemp(dir=dataset, prefix=".datastage-nested-"))
    try:
        moved = holding / name
        os.rename(dataset / rel, moved)
        del record[rel]
        budget = _budget(moved, fmt, folder, None, "")
        label = f"{name} (inside {step.name})"
        writer = SafeWriter(folder, parent, label, record, budget)
        _run(moved, fmt, writer, output_name(name, fmt.compression), bar)
    finally:
        remove_tree(holding)
