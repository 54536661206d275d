"""A loopback stand-in for Google Drive's download hosts, serving tests/fixtures/gdrive pages.

    drive = DriveServer()
    drive.add_file(FILE_ID, "clips.tar.gz", data, mode="confirm")
    drive.add_folder(FOLDER_ID, "Speech", [(FILE_ID, "clips.tar.gz", False), (SUB_ID, "sub", True)])
    DATASTAGE_GDRIVE_ENDPOINT=drive.base   # datastage sends drive.google.com & co. here

Routes (as Drive has them): ``/uc?id=&export=download`` answers the file, or a page by ``mode``:
``confirm`` (the virus-scan form pointing at ``drive.usercontent.google.com/download``),
``old_confirm`` (the older ``/uc?...&confirm=`` link), ``quota``, ``signin``, ``permission``;
unknown ids get the 404 page. ``/download`` serves the bytes behind the form (Range honoured),
``/embeddedfolderview?id=`` lists a folder. ``quota_now`` switches every file to the quota page
(a quota reached half-way through a download).
"""

from __future__ import annotations

from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from tests.servers.ranged import LoopbackServer, send_bytes, send_simple

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "gdrive"
PAGE_STATUS = {"quota": 403, "signin": 200, "permission": 403, "confirm": 200, "old_confirm": 200}


def page(fixture: str, /, **values: object) -> bytes:
    text = (FIXTURES / f"{fixture}.html").read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text.encode()


@dataclass
class DriveFile:
    name: str
    data: bytes
    mode: str


class DriveServer(LoopbackServer):
    def __init__(self) -> None:
        self.files: dict[str, DriveFile] = {}
        self.folders: dict[str, tuple[str, list[tuple[str, str, bool]]]] = {}
        self.quota_now = False
        self.drop_after: Optional[int] = None  # the next transfer breaks after N bytes
        super().__init__()

    def add_file(self, ident: str, name: str, data: bytes, mode: str = "direct") -> None:
        self.files[ident] = DriveFile(name, data, mode)

    def add_folder(self, ident: str, title: str, children: list[tuple[str, str, bool]]) -> None:
        self.folders[ident] = (title, children)


class _Handler(BaseHTTPRequestHandler):
    state: DriveServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.state.log.append(f"{parts.path} {parts.query} {self.headers.get('Range') or ''}")
        route = {"/uc": self._uc, "/download": self._download, "/embeddedfolderview": self._folder}
        handler = route.get(parts.path)
        if handler is None:
            return send_simple(self, 404, b"no route")
        handler(query)

    def _html(self, status: int, body: bytes) -> None:
        send_simple(self, status, body, "text/html; charset=utf-8")

    def _uc(self, query: dict[str, str]) -> None:
        f = self.state.files.get(query.get("id", ""))
        if f is None:
            return self._html(404, page("notfound"))
        mode = "quota" if self.state.quota_now else f.mode
        if mode in ("quota", "signin", "permission"):
            return self._html(PAGE_STATUS[mode], page(mode, id=query["id"]))
        if mode == "confirm" or (mode == "old_confirm" and "confirm" not in query):
            values = {"id": query["id"], "name": f.name, "size_text": f"{len(f.data) // 1024}K"}
            return self._html(200, page("virus_scan" if mode == "confirm" else mode, **values))
        self._send(f)

    def _download(self, query: dict[str, str]) -> None:
        f = self.state.files.get(query.get("id", ""))
        if f is None or query.get("confirm") != "t" or not query.get("uuid"):
            return self._html(404, page("notfound"))
        if self.state.quota_now:
            return self._html(403, page("quota"))
        self._send(f)

    def _send(self, f: DriveFile) -> None:
        disposition = f"attachment; filename=\"{f.name}\"; filename*=UTF-8''{f.name}"
        drop = None
        if not (self.headers.get("Range") or "").split("-")[-1]:  # a transfer, not a probe
            drop, self.state.drop_after = self.state.drop_after, None
        send_bytes(self, f.data, {"Content-Disposition": disposition}, drop_after=drop)

    def _folder(self, query: dict[str, str]) -> None:
        found = self.state.folders.get(query.get("id", ""))
        if found is None:
            return self._html(404, page("notfound"))
        title, children = found
        entries = b"".join(
            page("folder_folder_entry" if is_folder else "folder_file_entry", id=i, name=n)
            for i, n, is_folder in children
        )
        self._html(200, page("folder", title=title).replace(b"{entries}", entries))


DriveServer.handler = _Handler
