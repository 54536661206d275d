"""Where bytes come from: one small interface, one module per kind, each imported lazily.

A source only moves bytes and translates its library's exceptions into ``datastage.errors``.
Resume, retries across attempts, hashing, mirrors and locking belong to ``download.py``.

To add a source: implement ``Source`` in a module of this package and add its URL scheme to
``_BY_SCHEME`` (module path as a string, so nothing heavy is imported until it is used).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Optional, Protocol

from ..core.digests import Digest
from ..core.errors import MissingDependency, UsageError, install_hint, raised_in
from ..core.urls import URL_SCHEME
from ..settings.config import Settings


@dataclass(frozen=True)
class RemoteFile:
    """A file as a source describes it. Unknown fields are None."""

    url: str
    name: str
    size: Optional[int] = None
    etag: Optional[str] = None  # a strong validator for If-Range, when the source has one
    last_modified: Optional[str] = None
    digest: Optional[Digest] = None  # a digest the remote itself vouches for
    content_type: Optional[str] = None

    @property
    def validator(self) -> Optional[str]:
        """What If-Range may carry: a strong ETag, else Last-Modified."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


class Body(Protocol):
    """An open response. ``offset`` is where its bytes start in the file: the requested start,
    or 0 when the source ignored the range (or the file changed), which means "start over"."""

    offset: int
    remote: RemoteFile

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class Source(Protocol):
    def list(self, url: str) -> list[RemoteFile]:
        """The files behind a URL (a folder or repository expands to many)."""
        ...

    def open_range(self, f: RemoteFile, start: int = 0, end: Optional[int] = None) -> Body:
        """Bytes ``start..end`` (inclusive; None = to the end) of ``f``. If ``f`` carries a
        validator and the file changed, the body starts at 0 with the new ``remote``."""
        ...


CHUNK = 1 << 20


def read_range(f: BinaryIO, offset: int, end: Optional[int]) -> Iterator[bytes]:
    """Bytes ``offset..end`` (inclusive; None = to the end) of an open file, in chunks."""
    remaining = None if end is None else end + 1 - offset
    f.seek(offset)
    while remaining is None or remaining > 0:
        chunk = f.read(CHUNK if remaining is None else min(CHUNK, remaining))
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def library_failure(e: BaseException) -> bool:
    """An I/O error, a value a library refused, or an exception class a library defines
    (requests, botocore, huggingface_hub, an fsspec backend, json): what a source reports as
    "the remote failed".

    Any other built-in exception (TypeError, KeyError, AttributeError, ...) raised by
    datastage's own code is a bug: reported as a failed remote it would be hidden, and retried
    on the next mirror. Raised inside the library (its parser choking on what a broken or
    hostile server sent, e.g. a Hub API answering ``[]``), it is that remote's failure. An
    error datastage raised on purpose is not a library's either: it stays as it is.
    """
    if isinstance(e, (OSError, EOFError, ValueError)):
        return True
    if type(e).__module__.split(".")[0] == "datastage":
        return False
    if type(e).__module__ != "builtins":
        return True
    return e.__traceback__ is not None and not raised_in(e)


# Handed to fsspec, which imports each protocol's own package (gcsfs, adlfs, ...) on use.
FSSPEC_SCHEMES = (
    "gs",
    "gcs",
    "az",
    "abfs",
    "abfss",
    "adl",
    "oss",
    "r2",
    "hdfs",
    "webhdfs",
    "sftp",
    "ssh",
    "ftp",
    "smb",
    "dropbox",
    "memory",
)
DRIVE_HOSTS = ("drive.google.com", "docs.google.com")

# scheme -> (module, class, pip extra that provides its library or None)
_BY_SCHEME: dict[str, tuple[str, str, Optional[str]]] = {
    "http": ("datastage.sources.http", "HTTPSource", None),
    "https": ("datastage.sources.http", "HTTPSource", None),
    "file": ("datastage.sources.local", "LocalSource", None),
    "gdrive": ("datastage.sources.gdrive", "GDriveSource", "gdrive"),
    "hf": ("datastage.sources.hf", "HFSource", "hf"),
    "s3": ("datastage.sources.s3", "S3Source", "s3"),
    **{scheme: ("datastage.sources.fsspec", "FsspecSource", "fsspec") for scheme in FSSPEC_SCHEMES},
}

_SUPPORTED = frozenset(_BY_SCHEME)
_instances: dict[tuple[str, Settings], Source] = {}


def is_drive_link(url: str) -> bool:
    """Drive share/uc/folder links are https:// URLs that need the Drive source, not HTTP."""
    if not url.lower().startswith(("https://", "http://")):
        return False
    host = url.split("://", 1)[1].split("/", 1)[0].split(":")[0].lower()
    return host in DRIVE_HOSTS


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if URL_SCHEME.match(url) else "file"


def url_scheme(url: str) -> str:
    """The scheme whose source serves ``url`` (a Drive https link is ``gdrive``)."""
    return "gdrive" if is_drive_link(url) else scheme_of(url)


def supported_schemes() -> frozenset[str]:
    """Every scheme some source serves (its library may still need installing)."""
    return _SUPPORTED


def for_url(url: str, settings: Settings) -> Source:
    """The source that serves ``url`` (a plain path is a local file)."""
    scheme = url_scheme(url)
    if scheme not in _BY_SCHEME:
        known = ", ".join(sorted(_BY_SCHEME))
        raise UsageError(f"unsupported URL scheme {scheme!r} in {url} (supported: {known})")
    module_name, class_name, extra = _BY_SCHEME[scheme]
    key = (module_name, settings)
    if key not in _instances:
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            hint = install_hint(extra) if extra else None
            raise MissingDependency(
                f"{scheme}:// needs {e.name}, which is not installed", hint
            ) from e
        _instances[key] = getattr(module, class_name)(settings)
    return _instances[key]


#: The bytes of a response's start that tell an HTML page from the file.
SNIFF_BYTES = 1024


def looks_like_html(head: bytes) -> bool:
    """True for the start of an HTML document (quota, login and error pages), whatever the
    Content-Type says: what a URL sends instead of the file when something is wrong."""
    text = head[:SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<!doctype html", b"<html")) or (
        text.startswith(b"<") and (b"<head" in text or b"<body" in text)
    )
