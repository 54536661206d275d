"""A real forward HTTP proxy on 127.0.0.1 that logs what passes through it.

    proxy = ForwardProxy()
    env = {"http_proxy": proxy.url}        # clients send "GET http://host:port/path HTTP/1.1"
    proxy.log                              # every request: method, absolute URL, Range header

It opens a new upstream connection per request (``http.client``), forwards the request headers
minus hop-by-hop ones, and streams the answer back chunk by chunk, so ranged, dropped and
stalled responses of the file server pass through unchanged. Plain ``http://`` only (no
CONNECT tunnel): the tests serve loopback HTTP.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import urlsplit

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
CHUNK = 64 * 1024


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    url: str
    range: Optional[str]
    status: int


class ForwardProxy:
    def __init__(self) -> None:
        self.log: list[ProxiedRequest] = []
        handler = type("Handler", (_Handler,), {"proxy": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: ForwardProxy

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def _forward(self) -> None:
        target = urlsplit(self.path)
        if target.scheme != "http" or not target.hostname:
            self._answer(400, b"a forward proxy needs an absolute http:// URL")
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=60)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request(self.command, path or "/", headers=headers)
            response = upstream.getresponse()
        except OSError:
            upstream.close()
            self._answer(502, b"upstream unreachable")
            return
        self.proxy.log.append(
            ProxiedRequest(self.command, self.path, self.headers.get("Range"), response.status)
        )
        try:
            self._relay(response)
        except (OSError, http.client.HTTPException):
            self.close_connection = True  # a side hung up (e.g. a segment split off)
        finally:
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response(response.status, response.reason)
        length = response.getheader("Content-Length")
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        if length is None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        expected = int(length) if length is not None else None
        sent = 0
        while True:
            chunk = response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)
            if not chunk:
                break
            self.wfile.write(chunk)
            sent += len(chunk)
        self.wfile.flush()
        if expected is not None and sent < expected:
            self.close_connection = True  # the upstream dropped: drop the client too

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
