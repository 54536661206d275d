"""HTTP(S) source: ranged GETs over a requests session with urllib3's Retry.

Owns: one request and its response — Range/If-Range headers, checking that a 206 starts where
asked (pip's rule), status codes turned into datastage errors, proxies from the environment
(``http_proxy``/``https_proxy``/``no_proxy``; requests reads them), raw bytes (no
Content-Encoding decoding, so the digest is of the file the server stores).

No retries here: the session answers every failure at once, as a datastage error carrying a
short ``reason`` (``connection refused``, ``HTTP 503 Service Unavailable``) and, for 429/503,
the ``retry_after`` seconds the server asked for. ``retrying.py`` decides what deserves another
try and says so; a connection that dies *mid-body* raises NetworkError and download.py resumes
from the last byte it wrote. Connections are kept alive: a body read to its end gives its
connection back to the pool for the next piece.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Optional, TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..core.errors import (
    AccessDenied,
    DatastageError,
    HostUnreachable,
    HTTPStatusError,
    NetworkError,
    RemoteNotFound,
    SourceError,
)
from ..core.text import one_line
from ..core.urls import file_name_from_url, origin
from ..core.version import __version__
from ..settings.config import Settings
from . import RemoteFile

CHUNK = 256 * 1024
MAX_RETRY_AFTER = 300.0
CONNECT_TIMEOUT = 20.0
POOL_SIZE = 32
E = TypeVar("E", bound=DatastageError)
USER_AGENT = f"datastage/{__version__}"

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$")


class HTTPBody:
    def __init__(self, response: Optional[requests.Response], offset: int, remote: RemoteFile):
        self._response = response
        self.offset = offset
        self.remote = remote

    def __iter__(self) -> Iterator[bytes]:
        if self._response is None:
            return
        raw = self._response.raw
        try:
            yield from raw.stream(CHUNK, decode_content=False)
            raw.release_conn()  # read to its end: the connection serves the next request
        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as e:
            why = _reason(e)
            raise _with(
                NetworkError(f"connection to {origin(self.remote.url)} broke: {why}"), why
            ) from e
        finally:
            self.close()

    def close(self) -> None:
        """Release the connection: back to the pool if the body was read, else closed."""
        if self._response is not None:
            self._response.close()


class HTTPSource:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session: Optional[requests.Session] = None
        self._session_lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        with self._session_lock:
            if self._session is None:
                self._session = _new_session(self.settings)
            return self._session

    def list(self, url: str) -> list[RemoteFile]:
        return [RemoteFile(url=url, name=file_name_from_url(url))]

    def open_range(self, f: RemoteFile, start: int = 0, end: Optional[int] = None) -> HTTPBody:
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
            if f.validator:
                headers["If-Range"] = f.validator
        response = self._get(f.url, headers)
        if response.status_code == 416 and start:
            return self._after_unsatisfiable(f, start, response)
        _raise_for_status(f.url, response)
        if response.status_code == 206:
            return self._partial(f, start, response)
        return HTTPBody(response, 0, _describe(f, response, _content_length(response)))

    def _partial(self, f: RemoteFile, start: int, response: requests.Response) -> HTTPBody:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != start:
            # A 206 that does not start where we asked cannot be appended; fetch it whole.
            response.close()
            return self.open_range(RemoteFile(url=f.url, name=f.name), 0)
        total = None if match.group(3) == "*" else int(match.group(3))
        return HTTPBody(response, start, _describe(f, response, total))

    def _after_unsatisfiable(
        self, f: RemoteFile, start: int, response: requests.Response
    ) -> HTTPBody:
        """416: either we already hold every byte, or the file shrank (then start over)."""
        response.close()
        match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == start:
            return HTTPBody(None, start, _describe(f, response, start))
        return self.open_range(RemoteFile(url=f.url, name=f.name), 0)

    def _get(self, url: str, headers: dict[str, str]) -> requests.Response:
        try:
            return self.session.get(
                url,
                headers=headers,
                stream=True,
                timeout=(CONNECT_TIMEOUT, self.settings.timeout),
            )
        except requests.exceptions.ProxyError as e:
            why = _reason(e)
            message = f"cannot reach {origin(url)} through the proxy: {why}"
            kind = HostUnreachable if _unreachable(e) else NetworkError
            raise _with(kind(message), f"{why} (proxy)") from e
        except requests.exceptions.SSLError as e:
            why = _reason(e)
            raise _with(SourceError(f"TLS error talking to {origin(url)}: {why}"), why) from e
        except requests.exceptions.InvalidURL as e:
            raise SourceError(f"invalid URL {url}: {_reason(e)}") from e
        except requests.exceptions.RequestException as e:
            why = _reason(e)
            kind = HostUnreachable if _unreachable(e) else NetworkError
            raise _with(kind(f"cannot reach {origin(url)}: {why}"), why) from e


def _new_session(settings: Settings) -> requests.Session:
    session = requests.Session()
    # No retries under retrying.py's (Retry(0): every failure comes back at once).
    adapter = HTTPAdapter(
        max_retries=Retry(0, read=False), pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # identity: a server's on-the-fly gzip would change the bytes we hash.
    session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    return session


def _raise_for_status(url: str, response: requests.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    response.close()
    reason = f"HTTP {status} {response.reason or ''}".strip()
    if status in (404, 410):
        raise RemoteNotFound(f"{reason} for {url}", status)
    if status in (401, 403):
        raise AccessDenied(
            f"{reason} for {url}", status, hint="the file may need a login, a token or cookies"
        )
    error = _with(HTTPStatusError(f"{reason} for {url}", status), reason)
    error.retry_after = _retry_after(response)  # type: ignore[attr-defined]
    raise error


def _retry_after(response: requests.Response) -> Optional[float]:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return min(Retry().parse_retry_after(value), MAX_RETRY_AFTER)
    except (urllib3.exceptions.InvalidHeader, ValueError, OverflowError):  # no date: no hint
        return None


def _describe(f: RemoteFile, response: requests.Response, size: Optional[int]) -> RemoteFile:
    h = response.headers
    return RemoteFile(
        url=f.url,
        name=f.name,
        size=size,
        etag=h.get("ETag"),
        last_modified=h.get("Last-Modified"),
        digest=f.digest,
        content_type=h.get("Content-Type"),
    )


def _content_length(response: requests.Response) -> Optional[int]:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def _with(error: E, reason: str) -> E:
    """``error`` carrying the short reason retry lines print."""
    error.reason = reason  # type: ignore[attr-defined]
    return error


def _chain(e: BaseException) -> Iterator[BaseException]:
    """``e`` and everything under it: causes, contexts and urllib3's ``reason``s."""
    seen: set[int] = set()
    todo = [e]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        for under in (item.__cause__, item.__context__, getattr(item, "reason", None)):
            if isinstance(under, BaseException):
                todo.append(under)
        todo.extend(a for a in getattr(item, "args", ()) if isinstance(a, BaseException))


def _unreachable(e: BaseException) -> bool:
    """Refused, or the name does not resolve: the host is not there (for now)."""
    return any(
        isinstance(
            x, (ConnectionRefusedError, socket.gaierror, urllib3.exceptions.NameResolutionError)
        )
        for x in _chain(e)
    )


def _reason(e: BaseException) -> str:
    """A short, plain reason for a requests/urllib3 failure (no object reprs, no quotes)."""
    found = list(_chain(e))

    def has(*kinds: type) -> Optional[BaseException]:
        return next((x for x in found if isinstance(x, kinds)), None)

    cert = has(ssl.SSLCertVerificationError)
    if cert is not None:
        detail = getattr(cert, "verify_message", "") or ""
        return f"certificate not trusted ({detail})" if detail else "certificate not trusted"
    if has(ConnectionRefusedError):
        return "connection refused"
    if has(socket.gaierror, urllib3.exceptions.NameResolutionError):
        return "host name not resolved"
    if has(urllib3.exceptions.ConnectTimeoutError, requests.exceptions.ConnectTimeout):
        return "timed out connecting"
    if has(socket.timeout, urllib3.exceptions.ReadTimeoutError, requests.exceptions.ReadTimeout):
        return "timed out waiting for data"
    if has(ConnectionResetError):
        return "connection reset"
    if has(ssl.SSLError):
        return "TLS handshake failed"
    if has(urllib3.exceptions.IncompleteRead, urllib3.exceptions.ProtocolError):
        return "connection closed early"
    text = str(e) or type(e).__name__
    for marker in ("Caused by ", "Failed to establish a new connection: "):
        if marker in text:
            text = text.split(marker, 1)[1]
    text = re.sub(r"<[^<>]*>:?\s*", "", text)  # object reprs
    return one_line(text.replace('"', "").replace("'", "")).strip("() ") or "failed"
