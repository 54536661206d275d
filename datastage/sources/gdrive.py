"""Google Drive: share/uc/folder links and ``gdrive://<id>``, through gdown's parsers.

Owns: turning a Drive link into file ids (``gdown.parse_url``), listing folders recursively
(gdown's embedded-folder-view parser, which has no 50-file cap), getting past the virus-scan
interstitial (``gdown.get_url_from_gdrive_confirmation``), and recognising the pages Drive
serves instead of a file — quota, permission, sign-in, not found — so they are never saved as
data and the error says which page it was.

Bytes move through a private ``HTTPSource`` (its own cookie jar: the confirm step sets cookies),
so ranges, resume and segments work exactly as for HTTP. The confirmed download URL is
remembered per file id for the life of the process; a page that appears later (quota reached
mid-way) is recognised again on every request.

``settings.gdrive_endpoint`` (``DATASTAGE_GDRIVE_ENDPOINT``) sends every request for Google's
Drive hosts to another base URL: the tests point it at a loopback server.
"""

from __future__ import annotations

import sys

from ..core.errors import MissingDependency

if sys.version_info < (3, 10):  # gdown 6 (the embedded-folder-view parser) needs Python 3.10
    raise MissingDependency(
        "Google Drive links need Python >= 3.10 (gdown 6)",
        hint="use Python 3.10+, or download the file yourself and pass its path",
    )

import itertools
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Optional
from urllib.parse import urlencode, urlsplit

import gdown  # noqa: F401  (imported here so a missing gdown is a MissingDependency)
import requests
import urllib3
from requests.adapters import HTTPAdapter

from ..core.errors import (
    AccessDenied,
    HTTPStatusError,
    QuotaExceeded,
    RemoteNotFound,
    SourceError,
    UnexpectedHTML,
)
from ..settings.config import Settings
from . import RemoteFile, looks_like_html
from .http import HTTPBody, HTTPSource

DRIVE = "https://drive.google.com"
GOOGLE_HOSTS = ("drive.google.com", "docs.google.com", "drive.usercontent.google.com")
PAGE_LIMIT = 2 * 1024 * 1024  # an interstitial is a few kB; never read a real file as a page
MAX_HOPS = 4  # (expired remembered URL ->) uc -> confirm page -> usercontent download
Files = list[RemoteFile]
_FOLDER_PATH = re.compile(r"/drive/(?:u/\d+/)?folders/([-\w]+)")

# Phrases of the pages Drive serves instead of a file (see tests/fixtures/gdrive/).
QUOTA_MARKERS = (
    "too many users have viewed or downloaded this file recently",
    "download quota exceeded",
    "download quota for this file has been exceeded",
)
SIGN_IN_MARKERS = (
    "accounts.google.com/servicelogin",
    "<title>google drive: sign-in</title>",
    "<title>sign in - google accounts</title>",
)
PERMISSION_MARKERS = ("you need access", "you need permission", "ask for access", "request access")
NOT_FOUND_MARKERS = ("the file you have requested does not exist", "<title>not found</title>")

HINT_QUOTA = (
    "Drive limits downloads of popular files; wait (up to 24 h), or add the file to your own "
    "Drive ('Make a copy') and download the copy's link"
)
HINT_PRIVATE = (
    "the file is not shared publicly: ask the owner for 'Anyone with the link', "
    "or copy it into your own Drive and share that copy"
)


def file_id_of(url: str) -> tuple[str, Optional[bool]]:
    """(id, is_folder) of a Drive URL; is_folder None when the URL does not say (gdrive://)."""
    from gdown.parse_url import parse_url

    if url.startswith("gdrive://"):
        ident = url[len("gdrive://") :].strip("/")
        if ident.startswith("folders/"):
            return ident[len("folders/") :], True
        return ident, None
    folder = _FOLDER_PATH.search(urlsplit(url).path)
    if folder:
        return folder.group(1), True
    parsed, _ = parse_url(url)
    if not parsed:
        raise SourceError(f"cannot find a Google Drive file id in {url}")
    return parsed, False


def recognise(page: str, url: str) -> Optional[str]:
    """The download URL behind a confirm page, or None; raise for quota/permission/sign-in."""
    text = page.lower()
    if any(m in text for m in QUOTA_MARKERS):
        raise QuotaExceeded(f"Google Drive quota exceeded for {url}", hint=HINT_QUOTA)
    if any(m in text for m in SIGN_IN_MARKERS):
        raise AccessDenied(f"Google Drive asks to sign in for {url}", 401, hint=HINT_PRIVATE)
    if any(m in text for m in PERMISSION_MARKERS):
        raise AccessDenied(f"Google Drive denies access to {url}", 403, hint=HINT_PRIVATE)
    if any(m in text for m in NOT_FOUND_MARKERS):
        raise RemoteNotFound(f"Google Drive has no file at {url}", 404)
    from gdown.download import get_url_from_gdrive_confirmation
    from gdown.exceptions import FileURLRetrievalError

    try:
        return str(get_url_from_gdrive_confirmation(page))
    except FileURLRetrievalError as e:
        raise UnexpectedHTML(
            f"Google Drive returned a page instead of the file for {url}: {e}",
            hint="open the link in a browser to see what Drive says",
        ) from e


class _Redirect(HTTPAdapter):
    """Sends requests for Google's Drive hosts to ``base`` instead (a mirror or test server)."""

    def __init__(self, base: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base = base.rstrip("/")

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(request.url or "")
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        request.url = self.base + tail
        return super().send(request, *args, **kwargs)


class GDriveSource:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._http = HTTPSource(settings)
        self._direct: dict[str, str] = {}  # file id -> confirmed download URL
        self._lock = threading.Lock()
        self._ready = False

    @property
    def session(self) -> requests.Session:
        session = self._http.session
        with self._lock:
            if not self._ready and self.settings.gdrive_endpoint:
                retry = getattr(session.get_adapter("https://"), "max_retries", None)
                for host in GOOGLE_HOSTS:
                    adapter = _Redirect(self.settings.gdrive_endpoint, max_retries=retry)
                    session.mount(f"https://{host}/", adapter)
            self._ready = True
        return session

    # -- listing ---------------------------------------------------------------------------
    def list(self, url: str) -> list[RemoteFile]:
        ident, is_folder = file_id_of(url)
        if is_folder is not False:
            files = self._folder(ident, must=bool(is_folder))
            if files is not None:
                return files
        return [self._describe_file(ident)]

    def _folder(self, ident: str, must: bool) -> Optional[Files]:
        from gdown.download_folder import _download_and_parse_google_drive_link
        from gdown.exceptions import DownloadError

        try:
            root = _download_and_parse_google_drive_link(
                sess=self.session,
                folder_id=ident,
                quiet=True,
                verify=True,
                timeout=self.settings.timeout,
            )
        except DownloadError as e:
            if not must:
                return None  # gdrive://<id> of a file
            raise AccessDenied(
                f"cannot list Google Drive folder {ident}: {e}", 403, hint=HINT_PRIVATE
            ) from e
        except requests.exceptions.RequestException as e:
            raise SourceError(f"cannot list Google Drive folder {ident}: {e}") from e
        files: list[RemoteFile] = []
        _walk(root, "", files)
        if not files and not must:
            return None
        if not files:  # like an empty S3 prefix, not a manifest without [[files]] (exit 3)
            raise RemoteNotFound(f"no files in Google Drive folder {ident}", 404)
        return files

    def _describe_file(self, ident: str) -> RemoteFile:
        body = self.open_range(RemoteFile(url=f"gdrive://{ident}", name=ident), 0, 0)
        name = body.disposition_name or ident
        body.close()
        return replace(body.remote, name=name)

    # -- transfer --------------------------------------------------------------------------
    def open_range(self, f: RemoteFile, start: int = 0, end: Optional[int] = None) -> _DriveBody:
        ident, _ = file_id_of(f.url)
        url = self._direct.get(ident) or _uc_url(ident)
        _ = self.session  # mounts the endpoint redirect before the first request
        for _hop in range(MAX_HOPS):
            try:
                body = self._http.open_range(replace(f, url=url), start, end)
            except HTTPStatusError as e:
                if self._direct.get(ident) == url:  # the remembered URL expired: ask Drive again
                    self._direct.pop(ident, None)
                    url = _uc_url(ident)
                    continue
                if e.status >= 500:
                    raise
                # Drive sends its quota/permission pages with 403/404: read which one it is.
                raise self._explain(url, f.url, e) from e
            chunks = iter(body)
            first = next(chunks, b"")
            html = (body.remote.content_type or "").lower().startswith("text/html")
            if not (html or (body.offset == 0 and looks_like_html(first))):
                self._direct[ident] = url
                return _DriveBody(body, f, itertools.chain((first,), chunks))
            page = _read_page(first, chunks, body)
            self._direct.pop(ident, None)  # a remembered URL now answers with a page
            url = recognise(page, f.url) or url
        raise SourceError(f"Google Drive kept sending pages instead of {f.url}")

    def _explain(self, url: str, target: str, error: HTTPStatusError) -> SourceError:
        """The specific error for the page behind a 4xx answer, else the HTTP error itself."""
        try:
            response = self.session.get(url, stream=True, timeout=(20, self.settings.timeout))
        except requests.exceptions.RequestException:
            return error
        try:
            head = response.raw.read(PAGE_LIMIT, decode_content=True) or b""
        except (urllib3.exceptions.HTTPError, OSError):  # the page broke off: keep the 4xx
            return error
        finally:
            response.close()
        if not looks_like_html(head):
            return error
        try:
            recognise(head.decode("utf-8", errors="replace"), target)
        except SourceError as specific:
            return specific
        return error


class _DriveBody:
    """An HTTP body that reports the ``gdrive://`` file it belongs to."""

    def __init__(self, body: HTTPBody, f: RemoteFile, chunks: Iterator[bytes]) -> None:
        self._body = body
        self._chunks = chunks
        self.offset = body.offset
        self.remote = replace(body.remote, url=f.url, name=f.name, digest=f.digest)
        response = getattr(body, "_response", None)
        disposition = response.headers.get("Content-Disposition", "") if response else ""
        self.disposition_name = _filename(disposition)

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._body.close()


def _uc_url(ident: str) -> str:
    return f"{DRIVE}/uc?{urlencode({'id': ident, 'export': 'download'})}"


def _read_page(first: bytes, chunks: Iterator[bytes], body: HTTPBody) -> str:
    parts = [first]
    size = len(first)
    try:
        for chunk in chunks:
            parts.append(chunk)
            size += len(chunk)
            if size >= PAGE_LIMIT:
                break
    finally:
        body.close()
    return b"".join(parts).decode("utf-8", errors="replace")


def _filename(disposition: str) -> Optional[str]:
    from urllib.parse import unquote

    star = re.search(r"filename\*=(?:UTF-8'')?([^;]+)", disposition, re.IGNORECASE)
    if star:
        return unquote(star.group(1).strip().strip('"')) or None
    plain = re.search(r'filename="?([^";]+)"?', disposition, re.IGNORECASE)
    return plain.group(1).strip() if plain else None


def _walk(folder: Any, prefix: str, out: list[RemoteFile]) -> None:
    """Files under a gdown folder tree; names are paths relative to the folder."""
    for child in folder.children:
        name = _safe_name(child.name)
        if child.is_folder():
            _walk(child, f"{prefix}{name}/", out)
        elif not child.is_google_native():  # Docs/Sheets have no bytes to download
            out.append(RemoteFile(url=f"gdrive://{child.id}", name=prefix + name))


def _safe_name(name: str) -> str:
    cleaned = name.replace("/", "_").replace("\\", "_").strip()
    return cleaned if cleaned not in ("", ".", "..") else "_"
