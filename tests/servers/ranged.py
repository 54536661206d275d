"""Small helpers shared by the loopback Hugging Face and Google Drive test servers."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def send_bytes(
    handler: BaseHTTPRequestHandler,
    data: bytes,
    headers: Optional[dict[str, str]] = None,
    content_type: str = "application/octet-stream",
    drop_after: Optional[int] = None,
) -> None:
    """Answer with ``data``, honouring Range and If-Range (strong ETag = sha1 of the bytes).

    ``drop_after``: send only that many body bytes, then close the connection mid-body.
    """
    etag = '"' + hashlib.sha1(data).hexdigest() + '"'
    size = len(data)
    start, end, status = 0, size - 1, 200
    match = _RANGE.match(handler.headers.get("Range") or "")
    if_range = handler.headers.get("If-Range")
    if match and (if_range is None or if_range == etag):
        start = int(match.group(1))
        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
        if start >= size:
            handler.send_response(416)
            handler.send_header("Content-Range", f"bytes */{size}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        status = 206
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(end - start + 1))
    handler.send_header("ETag", etag)
    handler.send_header("Accept-Ranges", "bytes")
    if status == 206:
        handler.send_header("Content-Range", f"bytes {start}-{end}/{size}")
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    if handler.command == "HEAD":
        return
    body = data[start : end + 1]
    if drop_after is not None and drop_after < len(body):
        handler.wfile.write(body[:drop_after])
        handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True
        return
    handler.wfile.write(body)


def send_simple(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str = "text/plain",
    headers: Optional[dict[str, str]] = None,
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


class LoopbackServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 with a request log; subclasses set ``handler``."""

    handler: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self.log: list[str] = []
        handler = type("Handler", (self.handler,), {"state": self, "protocol_version": "HTTP/1.1"})
        handler.log_message = lambda *args: None  # type: ignore[method-assign]
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
