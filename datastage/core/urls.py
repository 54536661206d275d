"""URL syntax every layer shares: what looks like a URL, whether one can be fetched as written,
the file name it names and the ``host:port`` that messages show.

Here, at the bottom, because manifests (resolve/), the settings' endpoints (settings/) and the
sources all check or read URLs; no datastage import, no heavy import.
"""

from __future__ import annotations

import re
import reprlib
from pathlib import PurePosixPath
from typing import Optional
from urllib.parse import unquote, urlsplit

URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_TRICKY_NETLOC = re.compile(r"[\[\]:@]")  # IPv6, a port, user info: left to urlsplit to judge
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # never valid raw in a URL (CR/LF would split a request)
_REPR = reprlib.Repr()
_REPR.maxstring = 80


def check_url(url: str) -> Optional[str]:
    """Why ``url`` cannot be fetched as written, or None. Checked when a manifest loads, so a
    NUL or CR/LF is never sent on the wire (and retried), and a malformed URL is not a crash.

    A plain path may hold anything a Linux file name can (even bytes that are not UTF-8, as
    surrogate escapes), except NUL; a URL must be text without control characters.
    """
    if "\x00" in url:
        return f"{_shown(url)} contains a NUL character"
    if not URL_SCHEME.match(url):
        return None
    bad = _CONTROL.search(url)
    if bad is not None:
        return f"{_shown(url)} contains the control character {bad.group()!r}; percent-encode it"
    netloc = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]
    if url[:7].lower() == "file://":  # read as a local path (sources/local.py): decoded bytes
        if netloc not in ("", "localhost"):
            return f"{_shown(url)} names the host {_shown(netloc)}; a file:// URL is a local path"
        if "%00" in url:
            return f"{_shown(url)} contains a NUL character (%00)"
    if url.isascii() and netloc and not _TRICKY_NETLOC.search(netloc):
        return None  # a plain host name: nothing below can fail (fast for 100k-file listings)
    try:
        url.encode("utf-8")
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except UnicodeEncodeError:
        return f"{_shown(url)} is not valid text (a lone surrogate)"
    except ValueError as e:
        return f"{_shown(url)} is not a valid URL ({e})"
    if parts.scheme.lower() in ("http", "https") and not parts.hostname:
        return f"{_shown(url)} has no host name"
    return None


def file_name_from_url(url: str) -> str:
    if url.startswith("file://"):  # percent-encoded bytes of a local name: keep them as they are
        return unquote(PurePosixPath(urlsplit(url).path).name, errors="surrogateescape")
    path = urlsplit(url).path if URL_SCHEME.match(url) else url
    return unquote(PurePosixPath(path).name)


def origin(url: str) -> str:
    """``host:port`` of a URL: what retry lines name (never the user, password or query)."""
    from urllib3.util import parse_url

    try:
        parsed = parse_url(url)
    except ValueError:
        return "?"
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme or "")
    return f"{parsed.host}:{port}" if port else str(parsed.host)


def _shown(text: str) -> str:
    """``repr(text)`` cut to a readable length: error lines quote URLs, never megabytes."""
    return _REPR.repr(text)
