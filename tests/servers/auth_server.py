"""The loopback FileServer behind a login: HTTP basic auth *and* a query token, as private
dataset hosts and presigned URLs do. Anything else gets 401 (wrong login) or 403 (wrong token).

    server = AuthServer("user", "pw", {"token": "T", "sig": "S"})
    url = server.secret_url(server.add("/a.tar.gz", data))  # http://user:pw@127.0.0.1:N/a.tar.gz?token=T&sig=S
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

from tests.servers.http_server import FileServer, _Handler


class AuthServer(FileServer):
    def __init__(self, user: str, password: str, query: dict[str, str]) -> None:
        super().__init__()
        self.user, self.password, self.query = user, password, query
        # Swapped after start: the server reads its handler class for every request.
        self.httpd.RequestHandlerClass = type("Handler", (_AuthHandler,), {"server_state": self})

    def secret_url(self, url: str) -> str:
        """``url`` with this server's login and query token in it."""
        scheme, rest = url.split("://", 1)
        query = "&".join(f"{k}={v}" for k, v in self.query.items())
        return f"{scheme}://{self.user}:{self.password}@{rest}?{query}"


class _AuthHandler(_Handler):
    server_state: AuthServer

    def do_GET(self) -> None:
        if self._allowed():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._allowed():
            super().do_HEAD()

    def _allowed(self) -> bool:
        state = self.server_state
        login = base64.b64encode(f"{state.user}:{state.password}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {login}":
            self._simple(401, b"login required", {"WWW-Authenticate": 'Basic realm="data"'})
            return False
        given = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        if any(given.get(k) != v for k, v in state.query.items()):
            self._simple(403, b"bad token")
            return False
        return True
