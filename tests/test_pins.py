"""Trust on first use, license warnings, layout checks and subsets, over real HTTP on loopback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import datastage
from datastage.core.errors import AllMirrorsFailed, ChecksumMismatch, SizeMismatch
from tests.archives import make_tar
from tests.conftest import dedent, payload, run_cli, sha256, tree, write_manifest


def _unpinned(tmp_path: Path, url: str, **top: object) -> Path:
    return write_manifest(tmp_path, "tofu", [{"url": url, "pinned": False}], **top)


def _forget_blobs(cache: Path) -> None:
    """A cache that lost its blobs but kept its pins (an evicted cache, another machine's pins)."""
    for folder in ("blobs", "index"):
        shutil.rmtree(cache / folder, ignore_errors=True)


def test_first_download_pins_and_a_changed_file_is_caught(tmp_path, server, cache_dir):
    old, new = payload(50_000, seed=1), payload(50_000, seed=2)
    url = server.add("/data.bin", old)
    manifest = _unpinned(tmp_path, url, description="x")
    info = datastage.info(str(manifest))
    assert info["pinned"] == "unpinned" and info["files"][0]["pin"] is None

    (blob,) = datastage.fetch(str(manifest))
    assert blob.read_bytes() == old
    info = datastage.info(str(manifest))
    assert info["pinned"] == "first use"
    assert info["files"][0]["pin"]["sha256"] == sha256(old)
    assert info["files"][0]["pin"]["size"] == len(old)
    shown = run_cli("info", str(manifest)).stdout
    assert "pinned:      every file, on first use" in shown
    assert (
        "pinned:    on first use 20" in shown and f"{len(old)} bytes, sha256:{sha256(old)}" in shown
    )

    _forget_blobs(cache_dir)
    server.change("/data.bin", new)  # same size, other bytes: only the digest can tell
    with pytest.raises(ChecksumMismatch) as e:
        datastage.fetch(str(manifest))
    message = str(e.value)
    assert f"expected sha256:{sha256(old)}" in message and f"got sha256:{sha256(new)}" in message
    assert "pinned on first use" in message
    assert "datastage unpin" in (e.value.hint or "")
    assert not list((cache_dir / "partial").glob("*.part")), "a failed file is never kept"


def test_changed_size_is_caught_before_the_body_is_downloaded(tmp_path, server, cache_dir):
    url = server.add("/data.bin", payload(40_000))
    manifest = _unpinned(tmp_path, url)
    datastage.fetch(str(manifest))
    _forget_blobs(cache_dir)
    server.change("/data.bin", payload(90_000, seed=3))
    with pytest.raises(SizeMismatch) as e:
        datastage.fetch(str(manifest))
    assert "expected 40000 bytes" in str(e.value) and "the server announces 90000" in str(e.value)


def test_cli_exit_code_and_unpin_accepts_a_re_release(tmp_path, server, cache_dir):
    old, new = payload(30_000, seed=4), payload(30_000, seed=5)
    url = server.add("/data.bin", old)
    manifest = _unpinned(tmp_path, url)
    assert run_cli("fetch", str(manifest)).returncode == 0
    _forget_blobs(cache_dir)
    server.change("/data.bin", new)
    failed = run_cli("fetch", str(manifest))
    assert failed.returncode == 5
    assert failed.stderr.splitlines()[-2].startswith("error: checksum mismatch for data.bin")
    assert failed.stderr.splitlines()[-1].startswith("hint: if the dataset was re-released")

    unpinned = run_cli("unpin", str(manifest))
    assert unpinned.returncode == 0 and unpinned.stdout.strip() == "unpinned: data.bin"
    again = run_cli("fetch", str(manifest))
    assert again.returncode == 0 and Path(again.stdout.strip()).read_bytes() == new
    assert datastage.info(str(manifest))["files"][0]["pin"]["sha256"] == sha256(new)


def test_manifest_checksums_are_never_overridden_by_pins(tmp_path, server, cache_dir):
    data = payload(20_000, seed=6)
    url = server.add("/data.bin", data)
    manifest = write_manifest(tmp_path, "pinned", [{"url": url, "sha256": sha256(data)}])
    datastage.fetch(str(manifest))
    assert not (cache_dir / "pins").exists()
    assert datastage.info(str(manifest))["pinned"] == "manifest"


def test_md5_only_entry_gets_a_sha256_pin_too(tmp_path, server, cache_dir):
    import hashlib

    old = payload(20_000, seed=7)
    url = server.add("/d.bin", old)
    md5 = hashlib.md5(old).hexdigest()
    manifest = write_manifest(tmp_path, "m", [{"url": url, "md5": md5, "extract": False}])
    datastage.fetch(str(manifest))
    assert datastage.info(str(manifest))["files"][0]["pin"]["sha256"] == sha256(old)


def test_noncommercial_warning_comes_before_any_download(tmp_path, server):
    manifest = _unpinned(
        tmp_path,
        server.url("/missing.tar.gz"),
        license="CC BY-NC 4.0",
        noncommercial=True,
        homepage="https://example.org/terms",
    )
    result = run_cli("get", str(manifest), "--to", str(tmp_path / "d"), "-q")
    lines = result.stderr.splitlines()
    assert result.returncode == 4
    assert lines[0] == (
        "warning: tofu is licensed CC BY-NC 4.0: non-commercial use only; "
        "check the terms at https://example.org/terms"
    )
    assert lines[1].startswith("error: ") and "404" in lines[1]


def test_layout_is_checked_after_staging_with_a_warning(tmp_path, server):
    files = {"corpus/a/1.wav": b"1", "corpus/a/2.wav": b"2", "corpus/meta.csv": b"m"}
    url = server.add("/c.tar.gz", make_tar(files, "gz"))
    good = tmp_path / "good.toml"
    good.write_text(
        dedent(f"""
        name = "good"
        root = "corpus"
        [layout]
        paths = ["meta.csv"]
        counts = {{ "a/*.wav" = 2 }}
        [[files]]
        url = "{url}"
        pinned = false
        """)
    )
    ok = run_cli("get", str(good), "--to", str(tmp_path / "d"))
    assert ok.returncode == 0 and "warning" not in ok.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(
        good.read_text()
        .replace('"good"', '"bad"')
        .replace("= 2", "= 3")
        .replace("meta.csv", "README.txt")
    )
    warned = run_cli("get", str(bad), "--to", str(tmp_path / "d"), "-q")
    assert warned.returncode == 0 and warned.stdout.strip().endswith("bad/corpus")
    (line,) = warned.stderr.splitlines()
    assert line.startswith("warning: bad does not look as its manifest expects: ")
    assert "expected README.txt: not found" in line and "a/*.wav: 2 files, expected 3" in line
    again = run_cli("get", str(bad), "--to", str(tmp_path / "d"))
    assert again.stderr == "", "a repeated get is instant and silent: no re-check"


def test_subsets_stage_apart_and_the_whole_holds_all(tmp_path, server, monkeypatch):
    part_a = make_tar({"Corpus/a/x.txt": b"a"}, "gz")
    part_b = make_tar({"Corpus/b/y.txt": b"b"}, "gz")
    registry = tmp_path / "reg"
    registry.mkdir()
    (registry / "mini.toml").write_text(
        dedent(f"""
        name = "mini"
        license = "CC0"
        root = "Corpus"
        [subsets.part-a]
        [[subsets.part-a.files]]
        url = "{server.add("/part-a.tar.gz", part_a)}"
        sha256 = "{sha256(part_a)}"
        [subsets.part-b]
        [subsets.part-b.layout]
        paths = ["b/y.txt"]
        [[subsets.part-b.files]]
        url = "{server.add("/part_b.tar.gz", part_b)}"
        sha256 = "{sha256(part_b)}"
        """)
    )
    monkeypatch.setenv("DATASTAGE_REGISTRY", str(registry))
    to = tmp_path / "data"
    one = datastage.get("mini/part_b", to=to)
    assert one == to / "mini-part-b" / "Corpus"
    assert (one / "b" / "y.txt").read_bytes() == b"b" and not (one / "a").exists()
    whole = datastage.get("mini", to=to)
    assert whole == to / "mini" / "Corpus"
    assert {k for k, v in tree(whole).items() if v != "dir"} == {"a/x.txt", "b/y.txt"}
    assert len(server.requests_for("/part_b.tar.gz")) == 1, "the cache serves both stagings"
    marker = json.loads((to / "mini-part-b" / ".datastage.json").read_text())
    assert marker["name"] == "mini-part-b"


def test_a_pin_is_checked_on_every_mirror(tmp_path, server, cache_dir):
    old, new = payload(10_000, seed=9), payload(10_000, seed=10)
    main, mirror = server.add("/main.bin", old), server.add("/mirror.bin", old)
    manifest = write_manifest(tmp_path, "m", [{"url": main, "mirrors": [mirror], "pinned": False}])
    datastage.fetch(str(manifest))
    _forget_blobs(cache_dir)
    server.change("/main.bin", new)
    (blob,) = datastage.fetch(str(manifest))  # the mirror still has the pinned bytes
    assert blob.read_bytes() == old
    _forget_blobs(cache_dir)
    server.change("/mirror.bin", new)
    with pytest.raises(AllMirrorsFailed) as e:
        datastage.fetch(str(manifest))
    assert str(e.value).count(f"expected sha256:{sha256(old)}") == 2
    assert "pinned on first use" in str(e.value)
    assert f"datastage unpin {manifest}," in (e.value.hint or "")  # the target as given
