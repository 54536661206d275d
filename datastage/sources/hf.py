"""Hugging Face Hub repos: ``hf://[datasets/|spaces/]<org>/<repo>[@revision]/<path or glob>``.

The URL form is huggingface_hub's ``HfFileSystem``: no prefix means a model repo; the path may
be empty (the whole snapshot), a folder, a file or a glob (``data/*.parquet``).

Owns: listing a repo at one commit (``HfApi.repo_info(files_metadata=True)``: names, sizes and
the sha256 the Hub reports for LFS files, which becomes ``RemoteFile.digest``), building
resolve URLs (``hf_hub_url``), the token (``HF_TOKEN`` or the saved login, via huggingface_hub)
and the endpoint order. Listed files are pinned to the commit sha, so every byte of a resumed or
segmented download comes from the same revision.

Bytes move through a private ``HTTPSource`` (ranged GETs, resume, segments); its session sends
the token to the Hub only, since requests drops ``Authorization`` on the redirect to the CDN.

Endpoints: ``settings.hf_endpoint`` (``HF_ENDPOINT`` or ``--hf-endpoint``; several may be given,
comma-separated) in order, then huggingface.co. A mirror that fails (unreachable, 5xx) falls
through to the next; "not found" and "access denied" are answers and do not.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import threading
from dataclasses import dataclass, replace
from typing import Any, Optional
from urllib.parse import unquote

import huggingface_hub  # noqa: F401  (imported here so a missing package is a MissingDependency)

from ..core.digests import Digest
from ..core.errors import (
    AccessDenied,
    NetworkError,
    RemoteNotFound,
    SourceError,
    UsageError,
)
from ..core.text import one_line
from ..settings.config import Settings
from . import RemoteFile, library_failure
from .http import HTTPBody, HTTPSource

MAIN_ENDPOINT = "https://huggingface.co"
REPO_TYPES = {"datasets": "dataset", "spaces": "space", "models": "model"}
GLOB_CHARS = "*?["
HINT_TOKEN = (
    "gated or private repo: accept its terms on the Hub page, then set HF_TOKEN "
    "(or run `hf auth login`)"
)
_NETWORK_MODULES = ("httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3")


@dataclass(frozen=True)
class HFPath:
    repo_type: str  # model | dataset | space
    repo_id: str
    revision: Optional[str]
    path: str

    def url(self, path: str, revision: Optional[str]) -> str:
        prefix = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        at = f"@{revision.replace('/', '%2F')}" if revision else ""
        return f"hf://{prefix}{self.repo_id}{at}/{path}"


def parse(url: str) -> HFPath:
    if not url.startswith("hf://"):
        raise UsageError(f"not a Hugging Face URL: {url}")
    parts = url[len("hf://") :].strip("/").split("/")
    repo_type = "model"
    if parts and parts[0] in REPO_TYPES:
        repo_type = REPO_TYPES[parts.pop(0)]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise UsageError(f"{url}: expected hf://[datasets/|spaces/]<org>/<repo>[@revision]/<path>")
    org, repo = parts[0], parts[1]
    revision = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
        revision = unquote(revision) or None
    return HFPath(repo_type, f"{org}/{repo}", revision, "/".join(parts[2:]))


class HFSource:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._http = HTTPSource(settings)
        self._lock = threading.Lock()
        self._token_set = False

    @property
    def endpoints(self) -> list[str]:
        configured = [e.strip().rstrip("/") for e in (self.settings.hf_endpoint or "").split(",")]
        ordered = [e for e in configured if e]
        return [*ordered, *([MAIN_ENDPOINT] if MAIN_ENDPOINT not in ordered else [])]

    # -- listing ---------------------------------------------------------------------------
    def list(self, url: str) -> list[RemoteFile]:
        target = parse(url)
        info = self._each_endpoint(lambda endpoint: self._repo_info(target, endpoint), url)
        siblings = info.siblings or []
        chosen, base = _select(target.path, [s.rfilename for s in siblings])
        if not chosen:
            raise RemoteNotFound(f"nothing matches {target.path!r} in {url}", 404)
        revision = info.sha or target.revision
        files = []
        for sibling in siblings:
            if sibling.rfilename not in chosen:
                continue
            lfs = sibling.lfs
            files.append(
                RemoteFile(
                    url=target.url(sibling.rfilename, revision),
                    name=posixpath.relpath(sibling.rfilename, base) if base else sibling.rfilename,
                    size=lfs.size if lfs else sibling.size,
                    digest=Digest("sha256", lfs.sha256) if lfs else None,
                )
            )
        return files

    def _repo_info(self, target: HFPath, endpoint: str) -> Any:
        from huggingface_hub import HfApi

        what = f"{target.repo_type} repo {target.repo_id}"
        try:
            info = HfApi(endpoint=endpoint).repo_info(
                target.repo_id,
                repo_type=target.repo_type,
                revision=target.revision,
                files_metadata=True,
                timeout=self.settings.timeout,
            )
        except Exception as e:
            if not library_failure(e):
                raise  # a bug, or an error datastage raised on purpose
            raise _translate(e, what, endpoint) from e
        odd = _odd_listing(info)
        if odd:  # the library took it; datastage's own use of it would fail as a bug
            raise SourceError(f"{endpoint} failed for {what}: unexpected answer: {odd}")
        return info

    # -- transfer --------------------------------------------------------------------------
    def open_range(self, f: RemoteFile, start: int = 0, end: Optional[int] = None) -> HTTPBody:
        from huggingface_hub import hf_hub_url

        target = parse(f.url)
        self._authorise()

        def attempt(endpoint: str) -> HTTPBody:
            url = hf_hub_url(
                target.repo_id,
                target.path,
                repo_type=target.repo_type,
                revision=target.revision,
                endpoint=endpoint,
            )
            try:
                body = self._http.open_range(replace(f, url=url), start, end)
            except AccessDenied as e:
                raise AccessDenied(f"{e} ({target.repo_id})", e.status, hint=HINT_TOKEN) from e
            body.remote = replace(body.remote, url=f.url, name=f.name, digest=f.digest)
            return body

        body: HTTPBody = self._each_endpoint(attempt, f.url)
        return body

    def _authorise(self) -> None:
        with self._lock:
            if not self._token_set:
                from huggingface_hub import get_token

                token = get_token()
                if token:
                    self._http.session.headers["Authorization"] = f"Bearer {token}"
                self._token_set = True

    def _each_endpoint(self, call: Any, url: str) -> Any:
        endpoints = self.endpoints
        failures: list[SourceError] = []
        for endpoint in endpoints:
            try:
                return call(endpoint)
            except (AccessDenied, RemoteNotFound):
                raise  # an answer, not a failure: the next endpoint would say the same
            except SourceError as e:
                # Down, unreachable or 5xx: the next endpoint may still serve it.
                failures.append(e)
        first = failures[0]
        if len(failures) == 1:
            raise first
        first.amend("; " + "; ".join(f"then {e}" for e in failures[1:]))
        raise first


def _odd_listing(info: Any) -> Optional[str]:
    """What in a repo listing is not of the types the Hub sends (a broken or hostile endpoint
    that huggingface_hub's parser let through), or None."""
    sha, siblings = getattr(info, "sha", None), getattr(info, "siblings", None)
    if sha is not None and (not isinstance(sha, str) or not sha or set(sha) & set("/ \t\n")):
        return f"commit {sha!r}"
    if siblings is not None and not isinstance(siblings, list):
        return f"siblings {type(siblings).__name__}"
    for sibling in siblings or ():
        name, lfs = getattr(sibling, "rfilename", None), getattr(sibling, "lfs", None)
        size = getattr(lfs or sibling, "size", None)
        if not isinstance(name, str) or not name:
            return f"file name {name!r}"
        if size is not None and (type(size) is not int or size < 0):
            return f"size {size!r} of {name!r}"
        sha256 = getattr(lfs, "sha256", None) if lfs else None
        if lfs and not (isinstance(sha256, str) and re.fullmatch("[0-9a-f]{64}", sha256)):
            return f"sha256 {sha256!r} of {name!r}"
    return None


def _select(path: str, names: list[str]) -> tuple[set[str], str]:
    """The repo files a path/glob names, and the folder their names are relative to."""
    path = path.strip("/")
    if not path:
        return set(names), ""
    if any(c in path for c in GLOB_CHARS):
        parts = path.split("/")
        fixed = []
        for part in parts:
            if any(c in part for c in GLOB_CHARS):
                break
            fixed.append(part)
        return {n for n in names if fnmatch.fnmatchcase(n, path)}, "/".join(fixed)
    if path in names:
        return {path}, posixpath.dirname(path)
    return {n for n in names if n.startswith(path + "/")}, path


def _translate(e: Exception, what: str, endpoint: str) -> SourceError:
    """A huggingface_hub / HTTP-client exception (see ``library_failure``) as a datastage
    error."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    status = getattr(getattr(e, "response", None), "status_code", None) or 0
    if isinstance(e, GatedRepoError) or status in (401, 403):
        return AccessDenied(f"access to {what} denied by {endpoint}", status or 403, HINT_TOKEN)
    if isinstance(e, RevisionNotFoundError):
        return RemoteNotFound(f"no such revision of {what} on {endpoint}", 404)
    if isinstance(e, RepositoryNotFoundError) or status == 404:
        return RemoteNotFound(f"no {what} on {endpoint}", 404, hint=HINT_TOKEN)
    if isinstance(e, HfHubHTTPError):
        return SourceError(f"{endpoint} failed for {what}: HTTP {status}")
    detail = one_line(e, limit=300)
    if type(e).__module__.split(".")[0] in _NETWORK_MODULES or isinstance(e, OSError):
        return NetworkError(f"cannot reach {endpoint} for {what}: {detail}")
    return SourceError(f"{endpoint} failed for {what}: {type(e).__name__}: {detail}")
