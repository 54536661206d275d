"""Any other fsspec protocol (``gs://``, ``az://``, ``abfs://``, ``sftp://``, ``memory://``, ...).

Owns: ``fsspec.core.url_to_fs`` (which imports the protocol's own package — gcsfs, adlfs, ... —
and tells the user which one is missing), listing a folder with ``find``, reading a byte range
with a seek on an open file, and fsspec's exceptions turned into datastage errors. The
validator is the backend's ETag / generation / mtime, whichever it reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

import fsspec  # noqa: F401  (imported here so a missing package is a MissingDependency)

from ..core.errors import AccessDenied, MissingDependency, NetworkError, RemoteNotFound, SourceError
from ..core.text import one_line
from ..settings.config import Settings
from . import RemoteFile, library_failure, read_range

VALIDATOR_KEYS = ("ETag", "etag", "md5Hash", "generation", "mtime", "LastModified", "last_modified")


class FsspecBody:
    def __init__(self, fs: Any, path: str, offset: int, end: Optional[int], remote: RemoteFile):
        self._fs = fs
        self._path = path
        self.offset = offset
        self._end = end
        self.remote = remote

    def __iter__(self) -> Iterator[bytes]:
        with _translated(self.remote.url), self._fs.open(self._path, "rb") as f:
            yield from read_range(f, self.offset, self._end)

    def close(self) -> None:
        pass


class FsspecSource:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _fs(self, url: str) -> tuple[Any, str]:
        import fsspec.core

        try:
            fs, path = fsspec.core.url_to_fs(url)
            return fs, path
        except ImportError as e:
            scheme = url.split("://", 1)[0]
            raise MissingDependency(
                f"cannot open {scheme}:// URLs: {one_line(e)}",
                hint="install fsspec's package for this protocol (gcsfs, adlfs, sshfs, ...)",
            ) from e
        except ValueError as e:
            raise SourceError(f"fsspec cannot open {url}: {e}") from e

    def list(self, url: str) -> list[RemoteFile]:
        fs, path = self._fs(url)
        with _translated(url):
            if not fs.isdir(path):
                info = fs.info(path)
                return [_remote(url, path.rstrip("/").rsplit("/", 1)[-1], info)]
            found = fs.find(path, detail=True)
        base = path.rstrip("/") + "/"
        files = [
            _remote(fs.unstrip_protocol(p), p[len(base) :] if p.startswith(base) else p, info)
            for p, info in sorted(found.items())
            if info.get("type", "file") == "file"
        ]
        if not files:
            raise RemoteNotFound(f"no files under {url}", 404)
        return files

    def open_range(self, f: RemoteFile, start: int = 0, end: Optional[int] = None) -> FsspecBody:
        fs, path = self._fs(f.url)
        with _translated(f.url):
            info = fs.info(path)
        remote = _remote(f.url, f.name, info, digest=f.digest)
        if start and f.etag is not None and f.etag != remote.etag:
            start = 0  # changed since the partial copy began: start over
        return FsspecBody(fs, path, start, end, remote)


def _remote(url: str, name: str, info: dict[str, Any], digest: Any = None) -> RemoteFile:
    validator = next((str(info[k]) for k in VALIDATOR_KEYS if info.get(k) is not None), None)
    size = info.get("size")
    return RemoteFile(
        url=url,
        name=name,
        size=int(size) if isinstance(size, (int, float)) else None,
        etag=f'"{validator}"' if validator else None,
        digest=digest,
    )


@contextmanager
def _translated(url: str) -> Iterator[None]:
    """What fsspec or its backend raised as a datastage error; a bug is raised unchanged."""
    try:
        yield
    except Exception as e:
        if not library_failure(e):
            raise
        raise _translate(e, url) from e


def _translate(e: Exception, url: str) -> SourceError:
    if isinstance(e, FileNotFoundError):
        return RemoteNotFound(f"no such file: {url}", 404)
    if isinstance(e, PermissionError):
        return AccessDenied(f"access denied to {url}", 403, hint="check the credentials in use")
    if isinstance(e, (ConnectionError, TimeoutError)):
        return NetworkError(f"cannot reach {url}: {e}")
    return SourceError(f"cannot read {url}: {type(e).__name__}: {one_line(str(e))}")
