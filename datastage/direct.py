"""One-liners without a manifest: a URL or path stands in for a dataset name.

Owns: deciding whether a target is a URL/path rather than a registry name or manifest file, and
synthesising the Manifest for it — the source expands a folder, repository or prefix into its
files (``Source.list``), each becoming a ``FileEntry`` that keeps its relative folder as
``dest``, its size, and the digest the remote vouches for (the Hub's LFS sha256). Everything
after that — cache, resume, verification, extraction, staging — is the usual pipeline.

    datastage get https://host/data.tar.bz2 --to DIR --sha256 HEX     # DIR/data/
    datastage get hf://datasets/org/repo/data --to DIR                 # DIR/repo/ ... (snapshot)
    datastage get s3://bucket/prefix/ --to DIR --name mine             # DIR/mine/
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from . import registry, sources
from .config import Settings
from .digests import Digest
from .errors import UsageError
from .manifest import URL_SCHEME, Manifest, file_name_from_url, from_dict
from .names import archive_suffix, strip_archive_suffix

DEFAULT_NAME = "download"


def is_direct(target: str) -> bool:
    """A URL, or a path to data (not a ``.toml`` manifest, not a registry name)."""
    if URL_SCHEME.match(target):
        return True
    if target.endswith(".toml"):
        return False
    if registry.is_path(target):
        return True
    # A bare word names a dataset, unless only a file or folder of that name exists here.
    return target not in registry.manifest_paths() and Path(target).exists()


def manifest_for(
    target: str,
    settings: Settings,
    name: Optional[str] = None,
    sha256: Optional[str] = None,
    name_encoding: Optional[str] = None,
) -> Manifest:
    """The manifest of a one-liner: every file behind ``target``, pinned where possible."""
    if sha256:
        try:
            sha256 = Digest.parse(sha256, "sha256").hexdigest
        except ValueError as e:
            raise UsageError(f"--sha256: {e}") from None
    url = target if URL_SCHEME.match(target) else str(Path(target).expanduser().absolute())
    files = sources.for_url(url, settings).list(url)
    if sha256 and len(files) != 1:
        raise UsageError(
            f"--sha256 names one file, but {target} holds {len(files)} files",
            hint="pin folders with a manifest (one sha256 per file)",
        )
    entries: list[dict[str, Any]] = []
    for f in files:
        folder, _, file_name = f.name.replace("\\", "/").rpartition("/")
        entry: dict[str, Any] = {"url": f.url, "name": file_name or file_name_from_url(f.url)}
        if folder:
            entry["dest"] = folder
        if f.size is not None:
            entry["size"] = f.size
        if f.digest is not None:
            entry[f.digest.algorithm] = f.digest.hexdigest
        if sha256:
            entry["sha256"] = sha256
        if name_encoding:
            entry["name_encoding"] = name_encoding
        entries.append(entry)
    data = {"name": name or default_name(url, [f.name for f in files]), "files": entries}
    return from_dict(data, source=None)


def default_name(url: str, names: list[str]) -> str:
    """``data.tar.gz`` -> ``data``; a folder, repo or prefix -> its last path component."""
    if len(names) == 1 and "/" not in names[0]:
        stem = names[0]
    else:
        stem = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        stem = stem.split("@", 1)[0]  # hf://org/repo@revision
        if any(c in stem for c in "*?["):  # a glob: name it after the repo or folder above
            stem = url.split("?", 1)[0].rstrip("/").rsplit("/", 2)[-2].split("@", 1)[0]
    lowered = stem.lower()
    if archive_suffix(lowered):
        lowered = strip_archive_suffix(lowered)
    elif len(names) == 1 and "." in lowered.lstrip("."):
        lowered = lowered.rsplit(".", 1)[0]  # clip.wav -> clip
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", lowered).strip("-._")
    return cleaned or DEFAULT_NAME
