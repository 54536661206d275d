"""A loopback endpoint speaking the part of the Hugging Face Hub API huggingface_hub calls.

    hub = HFServer()
    hub.add_repo("org/speech", {"data/a.tar": data, "README.md": b"..."}, repo_type="dataset",
                 lfs={"data/a.tar"}, gated_token=None)
    HF_ENDPOINT=hub.base

Speaks: ``GET /api/{models|datasets|spaces}/{repo}[/revision/{rev}]`` (repo info; ``blobs``
adds sizes and LFS sha256), and ``GET|HEAD /[{datasets|spaces}/]{repo}/resolve/{rev}/{path}``
with Range/If-Range. A gated repo answers 401 without ``Authorization: Bearer <token>`` and
403 with a wrong one, with the X-Error-Code headers the Hub sends. ``down = True`` makes every
request a 503 (a failing mirror).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Optional
from urllib.parse import unquote, urlsplit

from tests.servers.ranged import LoopbackServer, send_bytes, send_simple

COMMIT = "0123456789abcdef0123456789abcdef01234567"
PREFIX = {"dataset": "datasets", "space": "spaces", "model": "models"}


@dataclass
class Repo:
    files: dict[str, bytes]
    lfs: set[str]
    gated_token: Optional[str]
    reported_sha256: dict[str, str]  # a wrong LFS hash to announce, to test verification


class HFServer(LoopbackServer):
    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.down = False
        super().__init__()

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes],
        repo_type: str = "dataset",
        lfs: Optional[set[str]] = None,
        gated_token: Optional[str] = None,
        reported_sha256: Optional[dict[str, str]] = None,
    ) -> None:
        repo = Repo(files, set(lfs or ()), gated_token, dict(reported_sha256 or {}))
        self.repos[(repo_type, repo_id)] = repo


class _Handler(BaseHTTPRequestHandler):
    state: HFServer

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        state = self.state
        state.log.append(f"{self.command} {self.path} {self.headers.get('Range') or ''}".strip())
        if state.down:
            return send_simple(self, 503, b"mirror down")
        parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
        if parts[0] == "api":
            return self._info(parts[1:])
        return self._resolve(parts)

    def _repo(self, repo_type: str, repo_id: str) -> Optional[Repo]:
        repo = self.state.repos.get((repo_type, repo_id))
        if repo is None:
            send_simple(self, 404, b'{"error":"Repository not found"}', "application/json",
                        {"X-Error-Code": "RepoNotFound"})  # fmt: skip
            return None
        if repo.gated_token:
            given = self.headers.get("Authorization", "")
            if given != f"Bearer {repo.gated_token}":
                status = 403 if given else 401
                send_simple(self, status, b'{"error":"gated"}', "application/json",
                            {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"})  # fmt: skip
                return None
        return repo

    def _info(self, parts: list[str]) -> None:
        kinds = {v: k for k, v in PREFIX.items()}
        repo_type = kinds.get(parts[0], "model")
        repo_id = "/".join(parts[1:3])
        repo = self._repo(repo_type, repo_id)
        if repo is None:
            return
        siblings = []
        for name, data in sorted(repo.files.items()):
            sibling: dict[str, object] = {"rfilename": name, "size": len(data),
                                          "blobId": hashlib.sha1(data).hexdigest()}  # fmt: skip
            if name in repo.lfs:
                digest = repo.reported_sha256.get(name) or hashlib.sha256(data).hexdigest()
                sibling["lfs"] = {"sha256": digest,
                                  "size": len(data), "pointerSize": 134}  # fmt: skip
            siblings.append(sibling)
        body = {"id": repo_id, "sha": COMMIT, "private": False, "siblings": siblings}
        send_simple(self, 200, json.dumps(body).encode(), "application/json")

    def _resolve(self, parts: list[str]) -> None:
        repo_type = "model"
        if parts[0] in ("datasets", "spaces"):
            repo_type = "dataset" if parts.pop(0) == "datasets" else "space"
        if len(parts) < 5 or parts[2] != "resolve":
            return send_simple(self, 404, b"no route")
        repo = self._repo(repo_type, "/".join(parts[:2]))
        if repo is None:
            return
        path = "/".join(parts[4:])
        if path not in repo.files:
            return send_simple(
                self, 404, b"entry not found", headers={"X-Error-Code": "EntryNotFound"}
            )
        send_bytes(self, repo.files[path], {"X-Repo-Commit": COMMIT})


HFServer.handler = _Handler
