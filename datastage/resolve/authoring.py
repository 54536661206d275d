"""Writing manifests for your own data: ``datastage manifest`` and ``datastage hash``.

Owns: measuring files (size and digests; a URL is downloaded once into the cache through the
normal download path, so a later ``get`` of the written manifest reuses the bytes), detecting
the archive format and the root folder, counting the files for ``[layout]``, and rendering
TOML that ``manifest.from_dict`` accepts (checked before it is returned).
Does not own: the manifest schema (manifest.py) or downloading (download.py).
"""

from __future__ import annotations

import json
import os
import re
import stat
import tarfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Optional

from ..core.digests import hash_file
from ..core.errors import CorruptArchive, UsageError
from ..core.fsutil import user_path
from ..core.names import strip_archive_suffix
from ..extract import Format, detect, output_name
from .manifest import NAME_PATTERN, URL_SCHEME, FileEntry, file_name_from_url, from_dict

DEFAULT_ALGORITHMS = ("sha256", "md5")  # md5 too: OpenSLR and others publish md5sum.txt files


@dataclass(frozen=True)
class Measured:
    """One file, measured: where it is named from, its bytes and what staging will make of it."""

    url: str  # as it goes into the manifest (a URL, or a local path)
    local: Path  # the bytes on disk (the cache blob for a URL)
    name: str
    size: int
    sha256: str
    fmt: Format
    members: Optional[list[str]]  # files it stages (None: an archive we cannot list here)


def measure(target: str, settings: Any, reporter: Any) -> Measured:
    """A URL (downloaded once into the cache) or a local file -> its size, sha256 and contents."""
    if URL_SCHEME.match(target) and not target.startswith("file://"):
        from ..obtain.cache import Cache
        from ..obtain.download import download
        from .manifest import check_url

        reason = check_url(target)
        if reason:  # never sent on the wire, never a traceback
            raise UsageError(f"target {reason}")

        entry = FileEntry(url=target, name=file_name_from_url(target) or "download")
        blob = download(entry, Cache(settings.cache_dir), settings, reporter)
        local, url, size, sha256 = blob.path, target, blob.size, blob.sha256
        name = entry.name
    else:
        local = user_path(target.removeprefix("file://")).absolute()
        if not local.is_file():
            raise UsageError(f"{target}: no such file (give a URL or a path to a file)")
        reporter.say(f"hashing {local}")
        hashed = hash_file(local)
        from ..sources.local import url_of

        url = url_of(local)  # a non-UTF-8 path becomes a file:// URL a (UTF-8) manifest can hold
        size, sha256, name = hashed.size, hashed.hexdigests()["sha256"], local.name
    fmt = detect(local)
    return Measured(url, local, name, size, sha256, fmt, _members(local, fmt, name))


def _members(path: Path, fmt: Format, name: str) -> Optional[list[str]]:
    """The regular files an archive holds (relative paths), or [name] for a plain file."""
    try:
        if fmt.kind == "tar":
            with tarfile.open(path, "r:*") as tar:
                return [_clean(m.name) for m in tar if m.isreg() or m.islnk()]
        if fmt.kind == "zip":
            with zipfile.ZipFile(path) as zf:
                return [
                    _clean(i.filename)
                    for i in zf.infolist()
                    if not i.is_dir() and stat.S_IFMT(i.external_attr >> 16) != stat.S_IFLNK
                ]
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise CorruptArchive(f"{name} is damaged or truncated ({fmt}): {e}") from e
    if fmt.kind == "compressed":
        return [output_name(name, fmt.compression)]
    if fmt.kind == "plain":
        return [name]
    return None  # 7z, rar, ...: staged by another extractor; no listing here


def _clean(member: str) -> str:
    return str(PurePosixPath(member.replace("\\", "/").lstrip("/"))).removeprefix("./")


def common_root(measured: Sequence[Measured]) -> str:
    """The one top-level folder every staged file lives in, or "" if there is none."""
    from ..stage.layout import single_top_folder

    if any(not m.members for m in measured):
        return ""  # an archive we cannot list here (or an empty one): no root to promise
    return single_top_folder(member for m in measured for member in m.members or ())


def dataset_name(measured: Sequence[Measured]) -> str:
    """A manifest name from the first file: ``My_Data-1.0.tar.gz`` -> ``my_data-1.0``."""
    base = strip_archive_suffix(measured[0].name)
    name = re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-._")
    if not NAME_PATTERN.match(name):
        raise UsageError(f"cannot make a dataset name from {measured[0].name!r}; pass --name")
    return name


def render(measured: Sequence[Measured], name: str, relative_to: Optional[Path] = None) -> str:
    """TOML for ``measured``; local paths are written relative to ``relative_to`` if given."""
    if not NAME_PATTERN.match(name):
        raise UsageError(f"--name {name!r}: use lowercase letters, digits, '.', '_', '-'")
    root = common_root(measured)
    lines = [
        "# Written by `datastage manifest`: sizes and sha256 measured from the files below.",
        f"name = {_q(name)}",
    ]
    if root:
        lines.append(f"root = {_q(root)}")
    count = _file_count(measured, root)
    if count is not None:
        lines += ["", "[layout]", f'counts = {{ "**/*" = {count} }}  # files under the root']
    for m in measured:
        url = m.url
        if relative_to is not None and not URL_SCHEME.match(url):
            url = os.path.relpath(url, relative_to)
        lines += ["", "[[files]]", f"url = {_q(url)}"]
        if m.name != file_name_from_url(m.url):
            lines.append(f"name = {_q(m.name)}")
        lines += [f"size = {m.size}", f"sha256 = {_q(m.sha256)}", f"# format: {m.fmt}"]
    text = "\n".join(lines) + "\n"
    _check(text, relative_to)
    return text


def _file_count(measured: Sequence[Measured], root: str) -> Optional[int]:
    prefix = f"{root}/" if root else ""
    total = 0
    for m in measured:
        if m.members is None:
            return None
        total += len({x for x in m.members if x.startswith(prefix)})
    return total


def _check(text: str, base: Optional[Path]) -> None:
    """What we print must load: a bug here would hand users a manifest that fails later."""
    from .manifest import tomllib

    source = (base or Path.cwd()) / "generated.toml"
    from_dict(tomllib.loads(text), source=source)


def hash_lines(paths: Iterable[str], algorithms: Sequence[str] = DEFAULT_ALGORITHMS) -> str:
    """``[[files]]`` tables with the size and digests of local files."""
    blocks = []
    for raw in paths:
        path = user_path(raw)
        if not path.is_file():
            raise UsageError(f"{raw}: no such file")
        hashed = hash_file(path, algorithms).hexdigests()
        from ..sources.local import url_of

        lines = ["[[files]]", f"url = {_q(url_of(path, raw))}", f"size = {path.stat().st_size}"]
        lines += [f"{alg} = {_q(hashed[alg])}" for alg in algorithms]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _q(text: str) -> str:
    # A JSON string is a valid TOML basic string for everything json.dumps emits.
    return json.dumps(text, ensure_ascii=False)
