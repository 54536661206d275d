"""Hugging Face repos against a loopback Hub (tests/servers/hf_server.py) via HF_ENDPOINT."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import payload, run_cli, sha256
from tests.servers.hf_server import COMMIT, HFServer

pytest.importorskip("huggingface_hub")

ARCHIVE = payload(200_000, seed=7)
FILES = {
    "README.md": b"# speech\n",
    "data/train/a.bin": payload(5000, seed=8),
    "data/train/b.bin": payload(6000, seed=9),
    "data/test/c.bin": payload(700, seed=10),
    "archive.bin": ARCHIVE,
}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HFServer]:
    server = HFServer()
    server.add_repo("org/speech", FILES, lfs={"archive.bin", "data/train/a.bin"})
    monkeypatch.setenv("HF_ENDPOINT", server.base)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no saved login leaks in
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield server
    server.close()


def _root(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1])


def test_single_file_one_liner(hub: HFServer, tmp_path: Path) -> None:
    result = run_cli("get", "hf://datasets/org/speech/archive.bin", "--to", str(tmp_path), "-q")
    assert result.returncode == 0, result.stderr
    assert (_root(result.stdout) / "archive.bin").read_bytes() == ARCHIVE
    # listed once, then fetched at the commit the listing saw
    assert any(f"/resolve/{COMMIT}/archive.bin" in line for line in hub.log), hub.log


def test_folder_and_glob_and_snapshot(hub: HFServer, tmp_path: Path) -> None:
    result = run_cli("get", "hf://datasets/org/speech/data", "--to", str(tmp_path / "f"), "-q")
    assert result.returncode == 0, result.stderr
    root = _root(result.stdout)
    assert (root / "train" / "a.bin").read_bytes() == FILES["data/train/a.bin"]
    assert (root / "test" / "c.bin").read_bytes() == FILES["data/test/c.bin"]

    result = run_cli(
        "get", "hf://datasets/org/speech/data/train/*.bin", "--to", str(tmp_path / "g")
    )
    assert result.returncode == 0, result.stderr
    root = _root(result.stdout)
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "a.bin",
        "b.bin",
    ]

    result = run_cli("get", "hf://datasets/org/speech", "--to", str(tmp_path / "s"), "-q")
    assert result.returncode == 0, result.stderr
    root = _root(result.stdout)
    assert root.name == "speech"
    assert (root / "README.md").read_bytes() == FILES["README.md"]
    assert (root / "data" / "train" / "b.bin").read_bytes() == FILES["data/train/b.bin"]


def test_lfs_files_are_pinned_to_the_hub_sha256(hub: HFServer) -> None:
    from datastage.resolve import oneliner as direct
    from datastage.settings import config

    manifest = direct.manifest_for("hf://datasets/org/speech@main/archive.bin", config.resolve())
    [entry] = manifest.files
    assert str(entry.digests[0]) == f"sha256:{sha256(ARCHIVE)}"
    assert entry.size == len(ARCHIVE)
    assert entry.url == f"hf://datasets/org/speech@{COMMIT}/archive.bin"


def test_a_wrong_lfs_hash_is_refused(hub: HFServer, tmp_path: Path) -> None:
    """The Hub's sha256 is checked: bytes that do not match it are never staged."""
    wrong = sha256(b"something else")
    hub.add_repo("org/speech", FILES, lfs={"archive.bin"}, reported_sha256={"archive.bin": wrong})
    result = run_cli("get", "hf://datasets/org/speech/archive.bin", "--to", str(tmp_path))
    assert result.returncode == 5, result.stderr
    assert result.stderr.startswith("error: ") and wrong in result.stderr
    assert not (tmp_path / "archive").exists()


def test_gated_repo_needs_the_token(hub: HFServer, tmp_path: Path) -> None:
    hub.add_repo("org/gated", {"x.bin": b"secret"}, gated_token="hf_good")
    result = run_cli("get", "hf://datasets/org/gated/x.bin", "--to", str(tmp_path))
    assert result.returncode == 4
    assert result.stderr.startswith("error: access to dataset repo org/gated denied")
    assert "HF_TOKEN" in result.stderr and "Traceback" not in result.stderr

    result = run_cli(
        "get", "hf://datasets/org/gated/x.bin", "--to", str(tmp_path), env={"HF_TOKEN": "hf_good"}
    )
    assert result.returncode == 0, result.stderr
    assert (_root(result.stdout) / "x.bin").read_bytes() == b"secret"


def test_failing_mirror_falls_back_to_the_next_endpoint(hub: HFServer, tmp_path: Path) -> None:
    mirror = HFServer()
    mirror.down = True
    try:
        result = run_cli(
            "get", "hf://datasets/org/speech/archive.bin", "--to", str(tmp_path), "-q",
            "--hf-endpoint", f"{mirror.base},{hub.base}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert (_root(result.stdout) / "archive.bin").read_bytes() == ARCHIVE
        assert mirror.log, "the mirror was tried first"
    finally:
        mirror.close()


def test_missing_things_are_one_line_errors(hub: HFServer, tmp_path: Path) -> None:
    for url, words in [
        ("hf://datasets/org/nothing/x.bin", "error: no dataset repo org/nothing"),
        ("hf://datasets/org/speech/missing.bin", "error: nothing matches 'missing.bin'"),
        ("hf://datasets/org", "error: hf://datasets/org: expected hf://"),
    ]:
        result = run_cli("get", url, "--to", str(tmp_path), env={"DATASTAGE_RETRIES": "0"})
        assert result.returncode in (2, 4), result.stderr
        assert result.stderr.startswith(words), result.stderr
        assert "Traceback" not in result.stderr


def test_ranges_for_the_segmented_engine(hub: HFServer) -> None:
    from datastage.settings import config
    from datastage.sources import for_url

    source = for_url("hf://x/y", config.resolve())
    [f] = source.list("hf://datasets/org/speech/archive.bin")
    body = source.open_range(f, 1000, 1999)
    assert body.offset == 1000 and body.remote.size == len(ARCHIVE) and body.remote.etag
    assert b"".join(body) == ARCHIVE[1000:2000]
    assert body.remote.url == f.url
