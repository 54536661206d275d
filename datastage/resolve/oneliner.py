"""One-liners without a manifest: a URL or path stands in for a dataset name.

Owns: deciding whether a target is a URL/path rather than a registry name or manifest file, and
synthesising the Manifest for it — the source expands a folder, repository or prefix into its
files (``Source.list``), each becoming a ``FileEntry`` that keeps its relative folder as
``dest``, its size, and the digest the remote vouches for (the Hub's LFS sha256). Everything
after that — cache, resume, verification, extraction, staging — is the usual pipeline.

    datastage get https://host/Data-1.0.tar.bz2 --to DIR --sha256 HEX  # DIR/Data-1.0/[top]
    datastage get hf://datasets/org/repo/data --to DIR                  # DIR/data/ ... (snapshot)
    datastage get s3://bucket/prefix/ --to DIR --name mine              # DIR/mine/

Names: the staged folder keeps the file's own name, case included (``DS_10283_3443.zip`` ->
``DIR/DS_10283_3443``); only characters outside letters, digits, ``.``, ``_`` and ``-`` become
``-``. Registry and manifest names stay lowercase (manifest.NAME_PATTERN): they are typed as
commands; a one-liner's folder name is only ever derived or passed with ``--name``.
Root: a single file that unpacks into one top folder prints that folder (the rule
``datastage manifest`` writes as ``root``, layout.single_top_folder), found after staging.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from .. import sources
from ..core.digests import Digest
from ..core.errors import UsageError
from ..core.fsutil import user_path
from ..core.names import archive_suffix, strip_archive_suffix
from ..core.redact import remember
from ..settings.config import Settings
from . import registry
from .manifest import URL_SCHEME, Manifest, file_name_from_url, from_dict

DEFAULT_NAME = "download"
#: A one-liner's folder name: like manifest.NAME_PATTERN, but the file's own case is kept.
FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
#: Longest folder name: the file system allows 255 bytes, and datastage builds on the name
#: (``.NAME.partial-XXXXXXXX`` beside it, ``names/.NAME.json.XXXXXXXX.tmp`` in the cache).
MAX_FOLDER_NAME = 200


def is_direct(target: str) -> bool:
    """A URL, or a path to data (not a ``.toml`` manifest, not a registry name)."""
    if URL_SCHEME.match(target):
        return True
    if target.endswith(".toml") or registry.file_subset(target) is not None:
        return False  # a manifest file, or a subset of one ("x.toml/<subset>")
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
    url = target if URL_SCHEME.match(target) else str(user_path(target).absolute())
    remember(url)  # a listing error names it before any manifest entry exists
    source = sources.for_url(url, settings)
    files = source.list(url)
    from ..sources.local import LocalSource

    # A remote listing may put a backslash between folders (a Windows upload); in a local POSIX
    # name it is an ordinary character: a file named back\slash is staged under that name.
    local = isinstance(source, LocalSource)
    if sha256 and len(files) != 1:
        raise UsageError(
            f"--sha256 names one file, but {target} holds {len(files)} files",
            hint="pin folders with a manifest (one sha256 per file)",
        )
    entries: list[dict[str, Any]] = []
    for f in files:
        relative = f.name if local else f.name.replace("\\", "/")
        folder, _, file_name = relative.rpartition("/")
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
    folder = default_name(url, [f.name for f in files]) if name is None else name
    if not FOLDER_NAME.match(folder):
        raise UsageError(
            f"--name {folder!r} is not a folder name datastage uses",
            hint="use letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    if len(folder) > MAX_FOLDER_NAME:
        raise UsageError(
            f"--name {folder[:40]!r}... is too long ({len(folder)} characters)",
            hint=f"use at most {MAX_FOLDER_NAME} characters",
        )
    # The manifest schema's names are lowercase (typed as commands); the folder keeps its case.
    manifest = from_dict({"name": folder.lower(), "files": entries}, source=None)
    # Only the target's own file can unpack into "its" top folder: a folder or prefix that
    # happens to hold one file (in a subfolder of it) is still the folder users asked for.
    one_file = len(entries) == 1 and "dest" not in entries[0]
    return replace(manifest, name=folder, detect_root=one_file)


def default_name(url: str, names: list[str]) -> str:
    """``data.tar.gz`` -> ``data``; a folder, repo or prefix -> its last path component."""
    if len(names) == 1 and "/" not in names[0]:
        stem = names[0]
    else:
        path = _without_userinfo(url).split("?", 1)[0].rstrip("/")
        stem = path.rsplit("/", 1)[-1].split("@", 1)[0]  # hf://org/repo@revision
        if any(c in stem for c in "*?["):  # a glob: name it after the repo or folder above
            stem = path.rsplit("/", 2)[-2].split("@", 1)[0]
    if archive_suffix(stem):
        stem = strip_archive_suffix(stem)
    elif len(names) == 1 and "." in stem.lstrip("."):
        stem = stem.rsplit(".", 1)[0]  # clip.wav -> clip
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", stem)[:MAX_FOLDER_NAME].strip("-._")
    return cleaned or DEFAULT_NAME


def _without_userinfo(url: str) -> str:
    """``ftp://user:pw@host/`` -> ``ftp://host/``: a name made of the host, never the login."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() == "hf":  # hf://org/repo@revision: no login, a revision
        return url
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"
