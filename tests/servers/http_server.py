"""A real threaded HTTP/1.1 file server on 127.0.0.1 with Range/If-Range and switchable faults.

    server = FileServer()                      # listens on a free loopback port
    url = server.add("/a.tar.gz", data)        # serve bytes (or a Path) at that path
    server.faults("/a.tar.gz", drop_after=1000)  # next response closes after 1000 body bytes
    server.log                                 # every request: method, path, Range, status, sent
    server.max_active                          # most GET responses served at once
    FileServer(connection_limit=2)             # 503 for a GET beyond 2 at once
    FileServer(latency=0.1)                    # every answer starts 100 ms after its request
    FileServer(rate=1e5, burst=262144)         # 256 KiB at once, then 100 kB/s (limit_rate_after)
    server.connections                         # TCP connections accepted (keep-alive reuse)
    server.sent                                # body bytes sent so far (live, all files)

Faults (per path, see ``Faults``): drop the connection after N bytes, ignore Range, answer
429/503 (+ Retry-After) first, serve an HTML page instead, trickle at a byte rate, announce a
wrong Content-Length, no validators, a weak ETag. ``change()`` replaces a file's bytes (new
ETag and Last-Modified), as a server does when a dataset is re-released.

Also used by the benchmarks (``scripts/``): ``rate`` caps each connection, ``total_rate`` caps
the whole server, and files can be served from disk without loading them into memory.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional, Union

HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>"
    b"<body><p>Too many users have viewed or downloaded this file recently.</p></body></html>"
)
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
SEND_CHUNK = 64 * 1024


@dataclass
class Faults:
    drop_after: Optional[int] = None  # close the connection after this many body bytes ...
    drop_times: int = 1  # ... for this many responses (then serve normally)
    ignore_range: bool = False  # answer every request with 200 and the whole file
    statuses: list[int] = field(default_factory=list)  # answer these first, one per request
    retry_after: Optional[str] = None  # Retry-After header sent with those statuses
    html: bool = False  # serve an HTML page (200, text/html) instead of the file
    rate: Optional[float] = None  # bytes per second for each response
    wrong_length: Optional[int] = None  # announce this Content-Length (a 200 only)
    no_validators: bool = False  # neither ETag nor Last-Modified
    weak_etag: bool = False  # W/"..." (not usable in If-Range)
    stall_after: Optional[int] = None  # stop sending (but keep the connection) after N bytes ...
    stall_times: int = 1  # ... for this many responses
    no_length: bool = False  # no Content-Length: the body ends when the connection closes


@dataclass
class Entry:
    data: Union[bytes, Path]
    etag: str
    last_modified: str
    faults: Faults = field(default_factory=Faults)

    @property
    def size(self) -> int:
        return len(self.data) if isinstance(self.data, bytes) else self.data.stat().st_size

    def read(self, start: int, length: int) -> bytes:
        if isinstance(self.data, bytes):
            return self.data[start : start + length]
        with open(self.data, "rb") as f:
            return os.pread(f.fileno(), length, start)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: Optional[str]
    if_range: Optional[str]
    status: int
    sent: int  # body bytes sent (before any drop)
    via_proxy: bool = False
    began: float = 0.0  # time.monotonic() when the request arrived
    ended: float = 0.0  # ... and when its answer was sent
    client: int = 0  # the client's port: requests on one kept-alive connection share it


class _TokenBucket:
    """A shared byte-rate limit (the whole server's bandwidth)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def take(self, n: int) -> None:
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_free)
            self.next_free = start + n / self.rate
            wait = start - now
        if wait > 0:
            time.sleep(wait)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]
        # a client hanging up mid-request (kill -9, a split segment) is normal here


class FileServer:
    def __init__(
        self,
        rate: Optional[float] = None,
        total_rate: Optional[float] = None,
        connection_limit: Optional[int] = None,
        latency: Optional[float] = None,
        burst: int = 0,
    ) -> None:
        self.files: dict[str, Entry] = {}
        self.burst = burst  # bytes of each answer sent before ``rate`` applies (nginx's
        # limit_rate_after, a CDN's burst allowance: what a short probe sees)
        self.latency = latency  # seconds between a request and its answer (a far-away host)
        self.connections = 0  # TCP connections accepted
        self.sent = 0  # body bytes written to clients so far, all files (live)
        self.log: list[Request] = []
        self.rate = rate
        self.connection_limit = connection_limit  # answer 503 beyond this many GETs at once
        self.bucket = _TokenBucket(total_rate) if total_rate else None
        self._lock = threading.Lock()
        self._version = 0
        self.active = 0  # GET/HEAD responses being served right now
        self.max_active = 0  # the most at once since the server started
        handler = type("Handler", (_Handler,), {"server_state": self})
        self.httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, data: Union[bytes, Path], **faults: object) -> str:
        with self._lock:
            self._version += 1
            self.files[path] = Entry(data, *self._validators(data), Faults(**faults))  # type: ignore[arg-type]
        return self.url(path)

    def change(self, path: str, data: bytes) -> None:
        """Replace the bytes at ``path``: new ETag, later Last-Modified, same faults."""
        with self._lock:
            self._version += 1
            entry = self.files[path]
            entry.data = data
            entry.etag, entry.last_modified = self._validators(data)

    def faults(self, path: str, **faults: object) -> None:
        self.files[path].faults = Faults(**faults)  # type: ignore[arg-type]

    def _validators(self, data: Union[bytes, Path]) -> tuple[str, str]:
        seed = data if isinstance(data, bytes) else str(data).encode()
        etag = (
            '"' + hashlib.sha1(seed[: 1 << 20] + str(self._version).encode()).hexdigest()[:16] + '"'
        )
        modified = email.utils.formatdate(1_700_000_000 + self._version * 3600, usegmt=True)
        return etag, modified

    def requests_for(self, path: str, method: str = "GET") -> list[Request]:
        return [r for r in self.log if r.path == path and r.method == method]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: FileServer
    _stalled = False

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.server_state._lock:
            self.server_state.connections += 1

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        state = self.server_state
        began = time.monotonic()
        if state.latency:
            time.sleep(state.latency)
        with state._lock:
            state.active += 1
            state.max_active = max(state.max_active, state.active)
            busy = state.connection_limit is not None and state.active > state.connection_limit
        try:
            if busy:
                path = "/" + self.path.split("?", 1)[0].lstrip("/")
                state.log.append(Request("GET", path, self.headers.get("Range"), None, 503, 0))
                self._simple(503, b"too many connections")
                return
            self._serve(head=False, began=began)
        finally:
            with state._lock:
                state.active -= 1

    # -- the response --------------------------------------------------------------------------
    def _serve(self, head: bool, began: Optional[float] = None) -> None:
        state = self.server_state
        began = time.monotonic() if began is None else began
        via_proxy = self.path.startswith("http://")
        path = self.path.split("://", 1)[1].split("/", 1)[1] if via_proxy else self.path.lstrip("/")
        path = "/" + path.split("?", 1)[0]
        entry = state.files.get(path)
        rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")

        def record(status: int, sent: int) -> None:
            state.log.append(
                Request(
                    self.command,
                    path,
                    rng,
                    if_range,
                    status,
                    sent,
                    via_proxy,
                    began,
                    time.monotonic(),
                    self.client_address[1],
                )
            )

        if entry is None:
            record(404, 0)
            return self._simple(404, b"not found")
        faults = entry.faults
        if faults.statuses:
            status = faults.statuses.pop(0)
            record(status, 0)
            extra = {"Retry-After": faults.retry_after} if faults.retry_after else {}
            return self._simple(status, b"try later", extra)
        if faults.html:
            record(200, len(HTML_PAGE))
            return self._simple(200, HTML_PAGE, {"Content-Type": "text/html; charset=utf-8"})

        size = entry.size
        start, end, status = 0, size - 1, 200
        match = _RANGE.match(rng or "")
        use_range = match and not faults.ignore_range and self._if_range_holds(entry, if_range)
        if match and use_range:
            start = int(match.group(1))
            end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            if start >= size:
                record(416, 0)
                return self._simple(416, b"", {"Content-Range": f"bytes */{size}"})
            status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        announced = (
            faults.wrong_length if (faults.wrong_length is not None and status == 200) else length
        )
        if faults.no_length:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(announced))
        self.send_header("Accept-Ranges", "none" if faults.ignore_range else "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if not faults.no_validators:
            self.send_header("ETag", "W/" + entry.etag if faults.weak_etag else entry.etag)
            self.send_header("Last-Modified", entry.last_modified)
        self.end_headers()
        sent = 0 if head else self._send_body(entry, start, min(length, announced))
        record(status, sent)
        if self._stalled:
            time.sleep(3600)  # the client's read timeout must notice; daemon thread dies with us

    def _if_range_holds(self, entry: Entry, if_range: Optional[str]) -> bool:
        if if_range is None:
            return True
        if entry.faults.weak_etag or entry.faults.no_validators:
            return False
        return if_range in (entry.etag, entry.last_modified)

    def _send_body(self, entry: Entry, start: int, length: int) -> int:
        state, faults = self.server_state, entry.faults
        limit = length
        dropping = faults.drop_after is not None and faults.drop_times > 0
        stalling = faults.stall_after is not None and faults.stall_times > 0
        if dropping:
            faults.drop_times -= 1
            limit = min(limit, faults.drop_after or 0)
        if stalling:
            faults.stall_times -= 1
            limit = min(limit, faults.stall_after or 0)
        rate = faults.rate or state.rate
        sent = 0
        began, paced_from = time.monotonic(), 0
        try:
            while sent < limit:
                n = min(SEND_CHUNK, limit - sent)
                if rate:
                    n = min(n, max(1024, int(rate / 20)))
                if state.bucket:
                    state.bucket.take(n)
                self.wfile.write(entry.read(start + sent, n))
                sent += n
                with state._lock:
                    state.sent += n
                if rate and sent <= state.burst:
                    began, paced_from = time.monotonic(), sent  # the rate applies from here
                elif rate and sent < limit:  # no pause after the last byte: the answer is done
                    ahead = began + (sent - paced_from) / rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
            self.wfile.flush()
            self._stalled = stalling and limit < length
            if dropping and limit < length:
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        return sent

    def _simple(self, status: int, body: bytes, headers: Optional[dict[str, str]] = None) -> None:
        try:
            self.send_response(status)
            for k, v in {"Content-Type": "text/plain", **(headers or {})}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


if __name__ == "__main__":  # serve a folder by hand: python tests/servers/http_server.py DIR
    import sys

    server = FileServer()
    folder = Path(sys.argv[1])
    for file in folder.rglob("*"):
        if file.is_file():
            print(server.add("/" + file.relative_to(folder).as_posix(), file))
    threading.Event().wait()
