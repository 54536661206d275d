"""Shared fixtures: a hermetic environment, a loopback file server, CLI runners, manifests."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from tests.servers.http_server import FileServer

PROXY_VARS = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
)


@pytest.fixture(autouse=True)
def hermetic_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No proxies, no user registry, a private cache, fast retries; returns the cache folder."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("DATASTAGE_"):
            monkeypatch.delenv(name)
    cache = tmp_path / "cache"
    monkeypatch.setenv("DATASTAGE_CACHE", str(cache))
    monkeypatch.setenv("DATASTAGE_BACKOFF", "0.01")
    monkeypatch.setenv("DATASTAGE_RETRIES", "3")
    monkeypatch.setenv("DATASTAGE_TIMEOUT", "5")
    # No user config file, no real platform folders, local locks private to the test.
    monkeypatch.setenv("DATASTAGE_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("DATASTAGE_PLATFORM_ROOT", str(tmp_path / "platform-root"))
    monkeypatch.setenv("DATASTAGE_LOCK_DIR", str(tmp_path / "locks"))
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    return cache


@pytest.fixture
def cache_dir(hermetic_env: Path) -> Path:
    return hermetic_env


#: Fixtures that mount a file system: the tests using them get the ``needs_mount`` marker.
MOUNT_FIXTURES = ("small_disk", "mount_tmpfs", "bind_mount", "read_only_view")
NEEDS_MOUNT = "needs_mount"
#: Set (e.g. in CI, which runs as root) to fail instead of skip when mounting is refused.
#: Read once here: hermetic_env clears DATASTAGE_* for each test.
REQUIRE_MOUNT = os.environ.get("DATASTAGE_TESTS_REQUIRE_MOUNT", "") not in ("", "0")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{NEEDS_MOUNT}: mounts a file system (needs root); skipped without it, and every such "
        "skip is listed as NOT TESTED at the end of the run",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if set(MOUNT_FIXTURES) & set(getattr(item, "fixturenames", ())):
            item.add_marker(NEEDS_MOUNT)


def skip_unmountable(node: pytest.Item, what: str, error: bytes) -> None:
    """The mount was refused: say which test is then not run and why (or fail, when asked)."""
    reason = (
        f"NOT TESTED: {node.nodeid}: cannot {what} here "
        f"({error.decode(errors='replace').strip() or 'needs root'}); run as root to cover it"
    )
    if REQUIRE_MOUNT:
        pytest.fail(reason)
    pytest.skip(reason)


_not_tested: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and NEEDS_MOUNT in report.keywords:
        _not_tested.append(report.nodeid)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _not_tested:
        terminalreporter.section(f"NOT TESTED: {len(_not_tested)} tests need root to mount")
        for nodeid in _not_tested:
            terminalreporter.line(f"not tested (mounting needs root): {nodeid}")


@pytest.fixture
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A real 4 MB file system (tmpfs); skipped (and reported) where mounting is not allowed."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True
    )
    if done.returncode != 0:
        skip_unmountable(request.node, "mount a 4 MB tmpfs", done.stderr)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def mount_tmpfs(request: pytest.FixtureRequest) -> Iterator[Callable[[Path], Path]]:
    """``mount_tmpfs(folder)``: a real mount point there (a small tmpfs), as a mounted Drive or
    autodl-fs is; skipped where mounting is not allowed. Unmounted after the test."""
    mounted: list[Path] = []

    def mount(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True
        )
        if done.returncode != 0:
            skip_unmountable(request.node, "mount a tmpfs", done.stderr)
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def server() -> Iterator[FileServer]:
    s = FileServer()
    yield s
    s.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic incompressible-looking bytes (fast to make, different per seed)."""
    block = hashlib.sha512(f"datastage-{seed}".encode()).digest()
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha512(block + counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])


def write_manifest(folder: Path, name: str, files: list[dict[str, Any]], **top: Any) -> Path:
    """Write a manifest TOML (values rendered with repr-safe TOML basics) and return its path."""
    lines = [f'name = "{name}"']
    for key, value in top.items():
        lines.append(f"{key} = {_toml(value)}")
    for f in files:
        lines.append("[[files]]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in f.items())
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def file_manifest(folder: Path, url: str, data: bytes, name: str = "f.bin") -> Path:
    """``folder/ds.toml``: dataset ``ds`` of one file ``name`` at ``url``, pinned to ``data``
    (sha256 and size), not extracted."""
    entry = {"url": url, "name": name, "sha256": sha256(data), "size": len(data), "extract": False}
    return write_manifest(folder, "ds", [entry])


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_cli(
    *args: str,
    env: Optional[dict[str, str]] = None,
    timeout: float = 60,
    cwd: Optional[Path] = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m datastage ARGS`` in a real subprocess with this test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "datastage", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()


def tree(root: Path) -> dict[str, Any]:
    """{relative path: sha256 | 'dir' | '-> target'} for everything under root, hidden too."""
    out: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = sha256(path.read_bytes())
    return out


@pytest.fixture
def datastage_cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_cli`` in this process (no interpreter start-up: fast); ``env`` is set for the
    rest of the test. Returns a CompletedProcess like run_cli's."""
    from tests.inprocess import cli

    def run(*args: str, env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess[str]:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        code, out, err = cli(capsys, *args)
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run
