"""Fail fast on dead hosts, say every retry, cap the backoff, check writability before the
network, and lose little to kill -9 (issue 15, issue 17 item 2). Real loopback servers only."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datastage.core.errors import HTTPStatusError, NetworkError
from tests.conftest import file_manifest, payload, run_cli, sha256
from tests.procs import kill9
from tests.servers.http_server import FileServer

MIB = 1 << 20


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


@pytest.fixture
def default_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped retries and backoff, not the suite's fast ones: what a user gets."""
    monkeypatch.delenv("DATASTAGE_RETRIES")
    monkeypatch.delenv("DATASTAGE_BACKOFF")


def test_a_dead_port_is_reported_within_seconds_saying_each_retry(tmp_path, default_patience):
    port = _closed_port()
    url = f"http://user:secret@127.0.0.1:{port}/data.tar"
    began = time.monotonic()
    done = run_cli("fetch", url, timeout=10)  # the requirement itself: wget and curl take < 1 s
    assert time.monotonic() - began < 10
    assert done.returncode == 4, done.stderr
    lines = done.stderr.splitlines()
    retries = [line for line in lines if line.startswith("retry ")]
    assert retries == [
        f"retry 1/2 in 0.5 s: connection refused (127.0.0.1:{port})",
        f"retry 2/2 in 1 s: connection refused (127.0.0.1:{port})",
    ]
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == [
        f"error: cannot reach 127.0.0.1:{port}: connection refused; gave up after 3 tries"
    ]
    assert "secret" not in done.stderr and "re-run to resume" not in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unknown_host_name_is_one_plain_line(tmp_path, default_patience):
    """No internet / a typo: no minutes of silence, no repr soup with unbalanced quotes."""
    done = run_cli("fetch", "https://no-such-host.invalid/LJSpeech-1.1.tar.bz2", timeout=60)
    assert done.returncode == 4, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: cannot reach no-such-host.invalid:443: host name not resolved; "
        "gave up after 3 tries"
    ]
    assert sum(line.startswith("retry ") for line in done.stderr.splitlines()) == 2


@pytest.mark.parametrize(
    ("status", "tries"), [(404, 1), (403, 1), (400, 1), (408, 4), (429, 4), (502, 4)]
)
def test_only_transient_statuses_are_retried_and_each_retry_is_said(
    tmp_path, server, status, tries
):
    data = payload(10_000)
    url = server.add("/f.bin", data, statuses=[status] * 10)
    done = run_cli("fetch", str(file_manifest(tmp_path, url, data)), timeout=60)
    assert done.returncode == 4
    assert len(server.requests_for("/f.bin")) == tries  # DATASTAGE_RETRIES=3 in the suite
    said = [line for line in done.stderr.splitlines() if line.startswith("retry ")]
    assert len(said) == tries - 1
    for n, line in enumerate(said, 1):
        assert line.startswith(f"retry {n}/3 in ") and f"HTTP {status}" in line, line
        assert line.endswith(f"(127.0.0.1:{server.port})")


def test_a_tls_error_is_not_retried(tmp_path, server, default_patience):
    """https:// to a plain-HTTP port: a TLS failure, the same on every try."""
    began = time.monotonic()
    done = run_cli("fetch", f"https://127.0.0.1:{server.port}/f.bin", timeout=10)
    assert time.monotonic() - began < 10
    assert done.returncode == 4 and "TLS error talking to 127.0.0.1" in done.stderr
    assert "retry " not in done.stderr
    assert server.connections == 1


def test_every_dead_mirror_is_named_with_its_reason_and_fast(tmp_path, server, default_patience):
    data = payload(10_000)
    dead = f"http://127.0.0.1:{_closed_port()}/f.bin"
    missing = server.url("/gone.bin")
    manifest = tmp_path / "ds.toml"
    manifest.write_text(
        f'name = "ds"\n[[files]]\nurl = "{dead}"\nmirrors = ["{missing}"]\nname = "f.bin"\n'
        f'sha256 = "{sha256(data)}"\nextract = false\n'
    )
    done = run_cli("fetch", str(manifest), timeout=10)
    assert done.returncode == 4
    error = next(line for line in done.stderr.splitlines() if line.startswith("error: "))
    assert error.startswith("error: all 2 sources of f.bin failed")
    assert f"{dead}: cannot reach" in error and "connection refused" in error
    assert f"{missing}: HTTP 404" in error


def test_backoff_per_url_is_capped_at_about_a_minute():
    """However many retries are configured, one URL without progress waits <= MAX_WAIT."""
    from datastage.obtain.retrying import MAX_WAIT, Patience

    said: list[str] = []
    slept: list[float] = []
    patience = Patience(retries=50, backoff=1.0, say=said.append, sleep=slept.append)
    error = HTTPStatusError("HTTP 503 Service Unavailable for http://h/x", 503)
    with pytest.raises(HTTPStatusError, match="gave up after"):
        for _ in range(100):
            patience.wait(error, "http://h:8080/x")
    assert MAX_WAIT - 1 <= sum(slept) <= MAX_WAIT + 1e-6
    assert said[0] == "retry 1/50 in 1 s: HTTP 503 Service Unavailable for http://h/x (h:8080)"
    patience.reset()  # progress: a fresh count
    patience.wait(NetworkError("connection reset"), "http://h:8080/x")
    assert said[-1].startswith("retry 1/50 in 1 s: connection reset")


@pytest.mark.parametrize("where", ["to-file", "to-sys", "cache-file"])
def test_unwritable_target_or_cache_fails_before_any_network(tmp_path, server, where):
    data = payload(100_000)
    url = server.add("/f.bin", data)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = dict(os.environ)
    to = str(tmp_path / "out")
    if where == "to-file":
        to = str(blocker / "out")
    elif where == "to-sys":
        if not Path("/sys/kernel").is_dir():
            pytest.skip("no /sys here")
        to = "/sys/kernel"
    else:
        env["DATASTAGE_CACHE"] = str(blocker / "cache")
    for target in (str(file_manifest(tmp_path, url, data)), url):
        done = run_cli("get", target, "--to", to, timeout=30, env=env)
        assert done.returncode not in (0, 1), done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and str(blocker if where != "to-sys" else to) in errors[0], errors
        assert server.log == [], "no request before the check"


def test_kill_9_at_full_loopback_speed_refetches_little(tmp_path, cache_dir):
    """Three kill -9s during a ~250 MB segmented download, each after 70 MiB more arrived
    (well under a second here): each may cost at most 64 MiB, not everything since the last
    save of a clock."""
    size = 240 * MIB
    source = tmp_path / "big.bin"
    block = os.urandom(MIB)
    digest = hashlib.sha256()
    with open(source, "wb") as f:
        for i in range(size // MIB):
            chunk = block[i % 7 :] + block[: i % 7]  # every MiB different, cheap to make
            f.write(chunk)
            digest.update(chunk)
    server = FileServer()  # uncapped: full loopback speed
    try:
        url = server.add("/big.bin", source)
        manifest = tmp_path / "ds.toml"
        manifest.write_text(
            f'name = "ds"\n[[files]]\nurl = "{url}"\nname = "big.bin"\n'
            f'sha256 = "{digest.hexdigest()}"\nsize = {size}\nextract = false\n'
        )
        env = dict(os.environ, DATASTAGE_PROBE="0", DATASTAGE_CONNECTIONS="4")  # segmented
        kills = 3
        for _ in range(kills):
            proc = subprocess.Popen(
                [sys.executable, "-m", "datastage", "fetch", str(manifest), "-q"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            at_start = server.sent
            deadline = time.monotonic() + 20
            while server.sent < at_start + 70 * MIB and proc.poll() is None:
                assert time.monotonic() < deadline, "the download did not move"
                time.sleep(0.001)
            kill9(proc)
            while server.active:  # the killed run's answers end
                time.sleep(0.01)
        state = cache_dir / "partial" / f"sha256-{digest.hexdigest()}.json"
        assert json.loads(state.read_text())["segments"], "the plan was saved"
        done = run_cli("fetch", str(manifest), timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        blob = Path(done.stdout.strip())
        assert _sha256_of(blob) == digest.hexdigest()
        served = server.sent
        assert served <= size + kills * 64 * MIB, (served / MIB, kills)
    finally:
        server.close()


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()
