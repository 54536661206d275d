"""Local and mounted files (a plain path or ``file://`` URL): a Drive mount, autodl-fs, a NAS.

Owns: reading a byte range of a local file. The ``etag`` is size + mtime, so a file replaced
between runs is noticed and its partial copy restarted.

File names are bytes on Linux, and a real folder may hold names that are not UTF-8 (an old
Latin-1 or GBK archive unpacked on a server). Such a file is staged faithfully, under the same
bytes: its URL is a ``file://`` URL with the bytes percent-encoded (plain text that can be hashed,
stored in JSON and printed), and its relative name keeps them as surrogate escapes, which
Python's file functions turn back into the original bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Optional
from urllib.parse import quote, unquote, urlsplit

from ..core.errors import AccessDenied, RemoteNotFound, SourceError
from ..core.fsutil import user_path
from ..settings.config import Settings
from . import RemoteFile, read_range


def path_of(url: str) -> Path:
    if url.startswith("file://"):
        return Path(unquote(urlsplit(url).path, errors="surrogateescape"))
    return user_path(url)


def url_of(path: Path, given: str = "") -> str:
    """``given`` (or the path) as it was when it is text; else a ``file://`` URL that holds the
    path's bytes percent-encoded, which ``path_of`` turns back into the same path."""
    text = given or str(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "file://" + quote(os.fsencode(path.absolute()))


class LocalBody:
    def __init__(self, path: Path, offset: int, end: Optional[int], remote: RemoteFile) -> None:
        self.path = path
        self.offset = offset
        self.end = end
        self.remote = remote

    def __iter__(self) -> Iterator[bytes]:
        try:
            with open(self.path, "rb") as f:
                yield from read_range(f, self.offset, self.end)
        except OSError as e:
            raise SourceError(f"cannot read {self.path}: {e.strerror or e}") from e

    def close(self) -> None:
        pass


class LocalSource:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def list(self, url: str) -> list[RemoteFile]:
        """A file, or every regular file under a folder (names relative to it, sorted)."""
        path = path_of(url)
        if not path.is_dir():
            try:
                st = path.stat()
            except OSError:  # missing or unreadable: open_range says which, in one line
                return [RemoteFile(url=url_of(path, url), name=path.name)]
            etag = f'"{st.st_size}-{st.st_mtime_ns}"'
            return [RemoteFile(url=url_of(path, url), name=path.name, size=st.st_size, etag=etag)]
        files = []
        try:
            for found in sorted(p for p in path.rglob("*") if p.is_file()):
                st = found.stat()
                files.append(
                    RemoteFile(
                        url=url_of(found),
                        name=found.relative_to(path).as_posix(),
                        size=st.st_size,
                        etag=f'"{st.st_size}-{st.st_mtime_ns}"',
                    )
                )
        except OSError as e:
            raise SourceError(f"cannot list {path}: {e.strerror or e}") from e
        if not files:
            raise RemoteNotFound(f"no files under {path}", 404)
        return files

    def open_range(self, f: RemoteFile, start: int = 0, end: Optional[int] = None) -> LocalBody:
        path = path_of(f.url)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise RemoteNotFound(f"no such file: {path}", 404) from None
        except PermissionError:
            raise AccessDenied(f"permission denied: {path}", 403) from None
        if not path.is_file():
            raise SourceError(f"not a regular file: {path}")
        etag = f'"{st.st_size}-{st.st_mtime_ns}"'
        remote = RemoteFile(url=f.url, name=f.name, size=st.st_size, etag=etag, digest=f.digest)
        if start and f.etag is not None and f.etag != etag:
            start = 0  # changed since the partial copy began: start over
        return LocalBody(path, start, end, remote)
