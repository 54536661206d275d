"""Finding manifests: by name in the registry folders, or by path.

Search order (the first folder holding ``<name>.toml`` wins, so users can override a built-in
manifest): every folder in ``$DATASTAGE_REGISTRY`` (``os.pathsep``-separated), in order, then
the registry shipped with datastage.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from . import manifest as manifest_mod
from .config import REGISTRY_ENV
from .errors import DatasetNotFound, ManifestError
from .manifest import Manifest

_PACKAGE_DIR = Path(__file__).resolve().parent


def builtin_dir() -> Path:
    """The registry in the wheel (``datastage/_registry``), or the source tree's ``registry/``."""
    installed = _PACKAGE_DIR / "_registry"
    return installed if installed.is_dir() else _PACKAGE_DIR.parent / "registry"


def search_dirs() -> list[Path]:
    extra = [Path(p).expanduser() for p in os.environ.get(REGISTRY_ENV, "").split(os.pathsep) if p]
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
    return target.endswith(".toml") or os.sep in target or target.startswith((".", "~"))


def resolve(target: str) -> Manifest:
    """A registry name or a path to a manifest file -> a validated Manifest."""
    if is_path(target):
        return manifest_mod.load(Path(target).expanduser())
    paths = manifest_paths()
    if target not in paths:
        close = difflib.get_close_matches(target, list(paths), n=3, cutoff=0.6)
        hint = (
            f"did you mean {' or '.join(repr(c) for c in close)}?"
            if close
            else "see: datastage list"
        )
        raise DatasetNotFound(f"unknown dataset {target!r}", hint=hint)
    return load_named(target, paths[target])


def load_named(name: str, path: Path) -> Manifest:
    found = manifest_mod.load(path)
    if found.name != name:
        raise ManifestError(
            f"manifest {path}: name: {found.name!r} does not match the file name {path.name!r}"
        )
    return found


def all_manifests() -> list[Manifest]:
    return [load_named(name, path) for name, path in sorted(manifest_paths().items())]
