"""Finding manifests: by name in the registry folders, or by path.

Search order (the first folder holding ``<name>.toml`` wins, so users can override a built-in
manifest): every folder in ``$DATASTAGE_REGISTRY`` (``os.pathsep``-separated), in order, then
the registry shipped with datastage. A manifest path (``./x.toml``, ``/abs/x.toml``, anything
ending in ``.toml``) is accepted wherever a name is, and never looked up in the folders.

A subset is addressed as ``<name>/<subset>`` (``librispeech/train-clean-100``); ``_`` and ``-``
are interchangeable in the subset part, so ``libritts-r/train_clean_100`` works too.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Optional

from ..core.errors import DatasetNotFound, ManifestError
from ..core.fsutil import user_path
from ..settings.config import REGISTRY_ENV
from . import manifest as manifest_mod
from .manifest import SUBSET_SEPARATOR, Manifest

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # datastage/


def builtin_dir() -> Path:
    """The registry in the wheel (``datastage/_registry``), or the source tree's ``registry/``."""
    installed = _PACKAGE_DIR / "_registry"
    return installed if installed.is_dir() else _PACKAGE_DIR.parent / "registry"


def search_dirs() -> list[Path]:
    extra = [user_path(p) for p in os.environ.get(REGISTRY_ENV, "").split(os.pathsep) if p]
    return [*extra, builtin_dir()]


def manifest_paths() -> dict[str, Path]:
    """Every known dataset name and the manifest file that wins for it."""
    found: dict[str, Path] = {}
    for folder in search_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found.setdefault(path.stem, path)
    return found


def is_path(target: str) -> bool:
    # "name/subset" contains a slash too: only an existing file makes such a target a path.
    if target.endswith(".toml") or target.startswith((".", "~", os.sep)) or ".toml/" in target:
        return True
    return os.sep in target and Path(target).is_file()


def file_subset(target: str) -> Optional[tuple[str, str]]:
    """``path/to/x.toml/<subset>`` -> (``path/to/x.toml``, subset); None for other targets.

    Decided before anything treats the target as a path of data: ``x.toml`` is a file, so
    ``x.toml/sub`` can never exist on disk (the OS says "Not a directory"). Only a real
    folder whose name ends in ``.toml`` keeps such a target a path.
    """
    file, sep, subset = target.partition(".toml" + SUBSET_SEPARATOR)
    if not sep or os.path.exists(os.path.expanduser(target)):  # keeps a trailing "/"
        return None
    return file + ".toml", subset.strip(SUBSET_SEPARATOR)


def resolve(target: str) -> Manifest:
    """A registry name, ``name/subset`` or a path to a manifest file -> a validated Manifest."""
    in_file = file_subset(target)
    if in_file is not None:  # "x.toml/subset" (or "x.toml/": the whole manifest)
        file, subset = in_file
        from_file = manifest_mod.load(user_path(file))
        sep = SUBSET_SEPARATOR if subset else ""
        return _pick_subset(from_file, file, sep, subset, target)
    if is_path(target):
        return manifest_mod.load(user_path(target))
    name, sep, subset = target.partition(SUBSET_SEPARATOR)
    paths = manifest_paths()
    found = load_named(name, paths[name]) if name in paths else _by_alias(name, paths)
    if found is None:
        raise DatasetNotFound(
            f"unknown dataset {target!r}",
            hint=_suggest(target, [*paths, *_all_aliases(paths)], sep, subset),
        )
    return _pick_subset(found, found.name, sep, subset, target)


def _by_alias(name: str, paths: dict[str, Path]) -> Optional[Manifest]:
    """A manifest that lists ``name`` in its aliases (only read when the name is unknown)."""
    for stem, path in sorted(paths.items()):
        try:
            candidate = load_named(stem, path)
        except ManifestError:
            continue  # a broken manifest elsewhere must not hide the one asked for
        if name in candidate.aliases:
            return candidate
    return None


def _all_aliases(paths: dict[str, Path]) -> list[str]:
    aliases: list[str] = []
    for stem, path in paths.items():
        try:
            aliases += load_named(stem, path).aliases
        except ManifestError:
            continue
    return aliases


def _pick_subset(found: Manifest, name: str, sep: str, subset: str, target: str) -> Manifest:
    if not sep:
        return found
    chosen = found.find_subset(subset)
    if chosen is None:
        known = [f"{name}{SUBSET_SEPARATOR}{s.subset}" for s in found.subsets]  # as typed
        if not known:
            raise DatasetNotFound(f"{name} has no subsets (asked for {target!r})")
        close = _closest(subset.lower(), [s.subset for s in found.subsets])
        listing = " or ".join(repr(f"{name}{sep}{c}") for c in close) if close else None
        hint = f"did you mean {listing}?" if listing else f"subsets: {', '.join(known)}"
        raise DatasetNotFound(f"{name} has no subset {subset!r}", hint=hint)
    return chosen


def _suggest(target: str, names: list[str], sep: str, subset: str) -> str:
    """ "did you mean …" for a misspelt name, keeping the subset part the user typed."""
    name = target.partition(SUBSET_SEPARATOR)[0]
    close = _closest(name.lower(), names)
    if sep:  # only datasets that have the subset asked for
        close = [c for c in close if _has_subset(c, subset)] or close
    if not close:
        return "see: datastage list (or datastage search WORD)"
    return f"did you mean {' or '.join(repr(c + sep + subset) for c in close)}?"


def _closest(word: str, candidates: list[str]) -> list[str]:
    """Close matches, best first, dropping those clearly worse than the best one."""
    scored = sorted(
        ((difflib.SequenceMatcher(None, word, c).ratio(), c) for c in candidates), reverse=True
    )
    good = [(r, c) for r, c in scored if r >= 0.6]
    return [c for r, c in good if r >= good[0][0] - 0.1][:3] if good else []


def _has_subset(name: str, subset: str) -> bool:
    try:
        return resolve(name).find_subset(subset) is not None
    except ManifestError:
        return False


def load_named(name: str, path: Path) -> Manifest:
    found = manifest_mod.load(path)
    if found.name != name:
        raise ManifestError(
            f"manifest {path}: name: {found.name!r} does not match the file name {path.name!r}"
        )
    return found


def all_manifests() -> list[Manifest]:
    return [load_named(name, path) for name, path in sorted(manifest_paths().items())]
