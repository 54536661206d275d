"""HTTP(S) source: ranged GETs over a requests session with urllib3's Retry.

Owns: one request and its response — Range/If-Range headers, checking that a 206 starts where
asked (pip's rule), status codes turned into datastage errors, proxies from the environment
(``http_proxy``/``https_proxy``/``no_proxy``; requests reads them), raw bytes (no
Content-Encoding decoding, so the digest is of the file the server stores).

Retry layers: urllib3's Retry retries connecting and 429/5xx answers (honouring Retry-After,
capped at ``MAX_RETRY_AFTER``); a connection that dies *mid-body* raises NetworkError and
download.py resumes from the last byte it wrote.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any, Optional

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .. import __version__
from ..config import Settings
from ..errors import AccessDenied, HTTPStatusError, NetworkError, RemoteNotFound, SourceError
from ..manifest import file_name_from_url
from . import RemoteFile

CHUNK = 256 * 1024
MAX_RETRY_AFTER = 300.0
CONNECT_TIMEOUT = 20.0
RETRY_STATUSES = (429, 500, 502, 503, 504)
POOL_SIZE = 32
USER_AGENT = f"datastage/{__version__}"

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$")


class _CappedRetry(Retry):
    """Retry that never sleeps longer than MAX_RETRY_AFTER for a Retry-After header."""

    def get_retry_after(self, response: Any) -> Optional[float]:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, MAX_RETRY_AFTER)


class HTTPBody:
    def __init__(self, response: Optional[requests.Response], offset: int, remote: RemoteFile):
        self._response = response
        self.offset = offset
        self.remote = remote

    def __iter__(self) -> Iterator[bytes]:
        if self._response is None:
            return
        try:
            yield from self._response.raw.stream(CHUNK, decode_content=False)
        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as e:
            raise NetworkError(f"connection to {_host(self.remote.url)} broke: {_reason(e)}") from e
        finally:
            self.close()

    def close(self) -> None:
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
            raise NetworkError(f"cannot reach {_host(url)} through the proxy: {_reason(e)}") from e
        except requests.exceptions.SSLError as e:
            raise SourceError(f"TLS error talking to {_host(url)}: {_reason(e)}") from e
        except requests.exceptions.InvalidURL as e:
            raise SourceError(f"invalid URL {url}: {_reason(e)}") from e
        except requests.exceptions.RequestException as e:
            raise NetworkError(f"cannot reach {_host(url)}: {_reason(e)}") from e


def _new_session(settings: Settings) -> requests.Session:
    retry = _CappedRetry(
        total=settings.retries,
        backoff_factor=settings.backoff,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),
        raise_on_status=False,  # the last answer comes back and becomes HTTPStatusError
        respect_retry_after_header=True,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE)
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
    raise HTTPStatusError(f"{reason} for {url} (after retries)", status)


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


def _host(url: str) -> str:
    return urllib3.util.parse_url(url).host or url


def _reason(e: BaseException) -> str:
    """The innermost useful sentence of a requests/urllib3 exception chain, on one line."""
    while e.__context__ is not None and not str(e):
        e = e.__context__
    text = str(e) or type(e).__name__
    for marker in ("Caused by ", "Failed to establish a new connection: "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return " ".join(text.split()).strip("()'\" ")
