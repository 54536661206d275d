"""Gated datasets (no public URL: `get --from DIR`) and files published in split parts.

Real folders, a real loopback HTTP server that counts requests, the real CLI."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.conftest import payload, run_cli, sha256, tree

MEMBERS = {"wav/id1/a.wav": payload(40_000, 1), "wav/id2/b.wav": payload(30_000, 2)}


def write_manifest(folder: Path, name: str, files: list[dict[str, Any]], **top: Any) -> Path:
    """``folder/<name>.toml`` (tomli-w: parts are inline tables, which conftest's helper lacks)."""
    path = folder / f"{name}.toml"
    path.write_text(tomli_w.dumps({"name": name, **top, "files": files}))
    return path


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def _split(data: bytes, n: int) -> list[bytes]:
    step = -(-len(data) // n)
    return [data[i : i + step] for i in range(0, len(data), step)]


ZIP = _zip(MEMBERS)
PARTS = _split(ZIP, 3)
NAMES = ["vox_dev_partaa", "vox_dev_partab", "vox_dev_partac"]
TEST_ZIP = _zip({"wav/id9/c.wav": payload(5_000, 3)})


def _gated(folder: Path, part_md5: bool = True, **extra: Any) -> Path:
    """A gated dataset: a zip published in three parts, plus one plain zip; no URL anywhere."""
    parts = [
        {"name": name, **({"md5": md5(data)} if part_md5 else {})}
        for name, data in zip(NAMES, PARTS)
    ]
    files = [
        {"name": "vox_dev.zip", "md5": md5(ZIP), "size": len(ZIP), "dest": "dev", "parts": parts},
        {"name": "vox_test.zip", "md5": md5(TEST_ZIP), "dest": "test"},
    ]
    return write_manifest(
        folder,
        "vox",
        files,
        access="gated",
        register="https://example.org/vox/register",
        instructions="download the three dev parts and vox_test.zip",
        **extra,
    )


def _downloads(folder: Path, names: list[str] = NAMES, data: list[bytes] = PARTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in zip(names, data):
        (folder / name).write_bytes(part)
    (folder / "vox_test.zip").write_bytes(TEST_ZIP)
    return folder


def _expected_tree() -> dict[str, Any]:
    want: dict[str, Any] = {}
    for prefix, members in (("dev", MEMBERS), ("test", {"wav/id9/c.wav": payload(5_000, 3)})):
        for name, data in members.items():
            path = f"{prefix}/{name}"
            parts = path.split("/")
            for depth in range(1, len(parts)):
                want["/".join(parts[:depth])] = "dir"
            want[path] = sha256(data)
    return want


def _data_tree(root: Path) -> dict[str, Any]:
    return {k: v for k, v in tree(root).items() if not k.startswith(".datastage")}


def _blobs(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "blobs").rglob("*") if p.is_file())


def _joins(cache: Path) -> list[Path]:
    return sorted((cache / "partial").glob("*.join")) if (cache / "partial").is_dir() else []


# -- gated: without --from, with --from ---------------------------------------------------------


def test_gated_get_without_from_is_exit_3_saying_where_to_register(tmp_path, datastage_cli):
    manifest = _gated(tmp_path)
    done = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    error = next(line for line in lines if line.startswith("error:"))
    hint = next(line for line in lines if line.startswith("hint:"))
    assert "gated" in error and "vox_dev_partaa" in error and "vox_test.zip" in error
    assert "https://example.org/vox/register" in hint
    assert "download the three dev parts and vox_test.zip" in hint
    assert f"datastage get {manifest} --from DIR" in hint
    assert done.stdout == ""
    assert not (tmp_path / "out" / "vox").exists()


def test_gated_get_from_folder_joins_parts_verifies_and_stages(tmp_path, datastage_cli, cache_dir):
    manifest = _gated(tmp_path)
    downloads = _downloads(tmp_path / "Downloads")
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 0, done.stderr
    root = Path(done.stdout.strip())
    assert root == tmp_path / "out" / "vox"
    assert _data_tree(root) == _expected_tree()
    assert (root / ".datastage.json").is_file()
    # the joined zip (and the test zip) are verified cache blobs; no part copy is kept
    assert sorted(sha256(p.read_bytes()) for p in _blobs(cache_dir)) == sorted(
        [sha256(ZIP), sha256(TEST_ZIP)]
    )
    assert _joins(cache_dir) == []
    # the user's files are untouched, and the next get needs no --from: it is staged
    assert sorted(os.listdir(downloads)) == sorted([*NAMES, "vox_test.zip"])
    again = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == str(root)


def test_gated_from_folder_holding_the_joined_file(tmp_path, datastage_cli):
    """Users often `cat` the parts themselves: the joined file is taken as it is."""
    manifest = _gated(tmp_path)
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / "vox_dev.zip").write_bytes(ZIP)
    (downloads / "vox_test.zip").write_bytes(TEST_ZIP)
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 0, done.stderr
    assert _data_tree(Path(done.stdout.strip())) == _expected_tree()


def test_gated_files_in_the_cache_need_no_from(tmp_path, datastage_cli):
    manifest = _gated(tmp_path)
    downloads = _downloads(tmp_path / "dl")
    first = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "a"), "--from", str(downloads)
    )
    assert first.returncode == 0, first.stderr
    second = datastage_cli("get", str(manifest), "--to", str(tmp_path / "b"))
    assert second.returncode == 0, second.stderr
    assert _data_tree(Path(second.stdout.strip())) == _expected_tree()


def test_a_part_with_wrong_bytes_is_exit_5_naming_it(tmp_path, datastage_cli, cache_dir):
    manifest = _gated(tmp_path)
    bad = list(PARTS)
    bad[1] = bad[1][:-1] + bytes([bad[1][-1] ^ 1])  # same size, one bit off
    downloads = _downloads(tmp_path / "dl", data=bad)
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 5, done.stderr
    error = next(line for line in done.stderr.splitlines() if line.startswith("error:"))
    assert "vox_dev_partab" in error and "mismatch" in error
    assert not (tmp_path / "out" / "vox").exists()
    assert sha256(ZIP) not in {p.name for p in _blobs(cache_dir)}
    assert _joins(cache_dir) == []


def test_joined_file_with_wrong_bytes_is_exit_5_and_never_cached(
    tmp_path, datastage_cli, cache_dir
):
    """Parts without checksums: only the joined file's md5 can catch the bad byte."""
    manifest = _gated(tmp_path, part_md5=False)
    bad = list(PARTS)
    bad[2] = bytes([bad[2][0] ^ 1]) + bad[2][1:]
    downloads = _downloads(tmp_path / "dl", data=bad)
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 5, done.stderr
    assert "vox_dev.zip (joined from 3 parts)" in done.stderr
    assert not (tmp_path / "out" / "vox").exists()
    assert sha256(b"".join(bad)) not in {p.name for p in _blobs(cache_dir)}
    assert _joins(cache_dir) == []


def test_missing_files_are_exit_4_naming_each_and_the_folder(tmp_path, datastage_cli):
    manifest = _gated(tmp_path)
    downloads = _downloads(tmp_path / "dl")
    (downloads / "vox_dev_partab").unlink()
    (downloads / "vox_test.zip").unlink()
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 4, done.stderr
    error = next(line for line in done.stderr.splitlines() if line.startswith("error:"))
    assert "2 files" in error and str(downloads) in error
    assert "vox_dev_partab" in error and "vox_test.zip" in error
    assert "vox_dev_partaa" not in error
    assert not (tmp_path / "out" / "vox").exists()


def test_from_a_folder_that_does_not_exist_is_a_usage_error(tmp_path, datastage_cli):
    manifest = _gated(tmp_path)
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(tmp_path / "nope")
    )
    assert done.returncode == 2, done.stderr
    assert "no such folder" in done.stderr


def test_gated_from_a_url_prefix(tmp_path, server, datastage_cli):
    manifest = _gated(tmp_path)
    for name, data in zip(NAMES, PARTS):
        server.add(f"/bucket/copy/{name}", data)
    base = server.add("/bucket/copy/vox_test.zip", TEST_ZIP).rsplit("/", 1)[0]
    done = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"), "--from", base)
    assert done.returncode == 0, done.stderr
    assert _data_tree(Path(done.stdout.strip())) == _expected_tree()
    asked = {r.path for r in server.log}
    assert asked == {f"/bucket/copy/{n}" for n in [*NAMES, "vox_test.zip"]}


# -- parts with URLs (a public split archive) ---------------------------------------------------


def _public_parts(folder: Path, server, part_md5: bool = True) -> Path:
    parts = []
    for name, data in zip(NAMES, PARTS):
        parts.append(
            {"url": server.add(f"/split/{name}", data), **({"md5": md5(data)} if part_md5 else {})}
        )
    files = [{"name": "vox_dev.zip", "sha256": sha256(ZIP), "parts": parts}]
    return write_manifest(folder, "split", files)


def test_parts_from_urls_are_downloaded_verified_joined_and_dropped(
    tmp_path, server, datastage_cli, cache_dir
):
    manifest = _public_parts(tmp_path, server)
    done = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    root = Path(done.stdout.strip())
    assert _data_tree(root) == {
        k[len("dev/") :]: v for k, v in _expected_tree().items() if k.startswith("dev/")
    }
    assert {r.path for r in server.log} == {f"/split/{n}" for n in NAMES}
    assert [p.name for p in _blobs(cache_dir)] == [sha256(ZIP)]  # parts not kept twice
    again = datastage_cli("get", str(manifest), "--to", str(tmp_path / "other"))
    assert again.returncode == 0, again.stderr
    assert len(server.log) == 3  # the joined file came from the cache


def test_a_bad_part_from_a_url_is_named(tmp_path, server, datastage_cli, cache_dir):
    manifest = _public_parts(tmp_path, server)
    server.add("/split/vox_dev_partab", PARTS[1][::-1])  # same size, other bytes
    done = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 5, done.stderr
    assert "vox_dev_partab" in done.stderr and "mismatch" in done.stderr
    assert sha256(ZIP) not in {p.name for p in _blobs(cache_dir)}


def test_a_missing_part_url_is_named(tmp_path, server, datastage_cli):
    parts = [{"url": server.add(f"/split/{n}", d)} for n, d in zip(NAMES[:2], PARTS[:2])]
    parts.append({"url": server.url("/split/" + NAMES[2])})  # 404
    manifest = write_manifest(tmp_path, "split", [{"name": "vox_dev.zip", "parts": parts}])
    done = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 4, done.stderr
    assert NAMES[2] in done.stderr
    assert not (tmp_path / "out" / "split").exists()


def test_public_parts_from_a_folder_make_no_request(tmp_path, server, datastage_cli):
    manifest = _public_parts(tmp_path, server)
    downloads = _downloads(tmp_path / "dl")
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 0, done.stderr
    assert server.log == []


# -- --from for an ordinary manifest -----------------------------------------------------------


def test_from_folder_for_a_public_manifest_makes_no_request(tmp_path, server, datastage_cli):
    archive = _zip({"LJ/a.wav": payload(20_000, 5)})
    url = server.add("/pub/lj.zip", archive)
    manifest = write_manifest(tmp_path, "lj", [{"url": url, "sha256": sha256(archive)}])
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / "lj.zip").write_bytes(archive)
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 0, done.stderr
    assert (Path(done.stdout.strip()) / "LJ" / "a.wav").read_bytes() == payload(20_000, 5)
    assert server.log == []
    # the staging is the dataset's own: a get without --from finds it, still without a request
    again = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert again.returncode == 0 and again.stdout == done.stdout
    assert server.log == []


def test_from_folder_for_an_unpinned_public_manifest_makes_no_request(
    tmp_path, server, datastage_cli
):
    url = server.add("/pub/notes.txt", b"hello\n")
    manifest = write_manifest(tmp_path, "notes", [{"url": url, "pinned": False}])
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / "notes.txt").write_bytes(b"hello\n")
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 0, done.stderr
    assert (Path(done.stdout.strip()) / "notes.txt").read_bytes() == b"hello\n"
    assert server.log == []


def test_from_folder_with_wrong_bytes_for_a_public_manifest_is_exit_5(
    tmp_path, server, datastage_cli
):
    archive = _zip({"a.wav": payload(1000, 6)})
    url = server.add("/pub/x.zip", archive)
    manifest = write_manifest(tmp_path, "x", [{"url": url, "md5": md5(archive)}])
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / "x.zip").write_bytes(archive[:-1] + bytes([archive[-1] ^ 1]))
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 5, done.stderr
    assert server.log == []
    assert not (tmp_path / "out" / "x").exists()


def test_from_does_not_apply_to_a_url_target(tmp_path, server, datastage_cli):
    url = server.add("/pub/x.bin", b"x")
    done = datastage_cli("get", url, "--to", str(tmp_path / "out"), "--from", str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "--from applies to a dataset name or manifest" in done.stderr
    assert server.log == []


# -- an interrupted join ------------------------------------------------------------------------


def test_killed_join_leaves_no_blob_and_the_rerun_completes(tmp_path, cache_dir):
    """kill -9 while the parts are joined (read from a slow mount): nothing is a blob or staged
    under its final name; the next run removes the half join and finishes."""
    from tests.servers import slowfs

    reason = slowfs.available()
    if reason:
        pytest.skip(reason)
    big = [payload(600_000, 10 + i) for i in range(3)]
    joined = b"".join(big)
    parts = [{"name": n, "md5": md5(d)} for n, d in zip(NAMES, big)]
    entry = {"name": "blob.bin", "sha256": sha256(joined), "extract": False, "parts": parts}
    manifest = write_manifest(tmp_path, "slow", [entry], access="gated", register="https://x.org/r")
    downloads = tmp_path / "dl"
    downloads.mkdir()
    for name, data in zip(NAMES, big):
        (downloads / name).write_bytes(data)
    mount = slowfs.SlowMount(downloads, tmp_path / "mnt", open_latency=0.001, rate=300_000)
    try:
        mounted = mount.__enter__()
    except OSError as e:
        pytest.skip(f"cannot mount FUSE here: {e}")
    try:
        args = [
            sys.executable,
            "-m",
            "datastage",
            "get",
            str(manifest),
            "--to",
            str(tmp_path / "out"),
        ]
        proc = subprocess.Popen([*args, "--from", str(mounted)], env=os.environ.copy())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.stat().st_size > 100_000 for p in _joins(cache_dir)):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the join ended before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        mount.__exit__()
    assert _joins(cache_dir), "the kill came during the join"
    assert _blobs(cache_dir) == []
    assert not (tmp_path / "out" / "slow").exists()
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads))
    assert done.returncode == 0, done.stderr
    assert (Path(done.stdout.strip()) / "blob.bin").read_bytes() == joined
    assert _joins(cache_dir) == []
    assert [p.name for p in _blobs(cache_dir)] == [sha256(joined)]


def test_a_join_left_by_a_killed_run_is_removed_by_the_next(tmp_path, datastage_cli, cache_dir):
    """Without FUSE: the half-joined file a kill -9 leaves (its temporary name) is never taken
    for the file; the next join of that entry removes it and commits a verified blob."""
    entry = {"name": "j.bin", "sha256": sha256(ZIP), "extract": False}
    entry["parts"] = [{"name": n, "md5": md5(d)} for n, d in zip(NAMES, PARTS)]
    manifest = write_manifest(tmp_path, "j", [entry], access="gated", register="https://x.org/r")
    stale = cache_dir / "partial" / f"sha256-{sha256(ZIP)}.k1ll3d{'.join'}"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(ZIP[:1000])
    downloads = _downloads(tmp_path / "dl")
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 0, done.stderr
    assert (Path(done.stdout.strip()) / "j.bin").read_bytes() == ZIP
    assert _joins(cache_dir) == []
    assert [p.name for p in _blobs(cache_dir)] == [sha256(ZIP)]


def test_missing_files_are_named_with_a_relative_from(tmp_path, datastage_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest = _gated(tmp_path)
    (tmp_path / "dl").mkdir()
    done = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"), "--from", "dl")
    assert done.returncode == 4, done.stderr
    assert f"not found in {tmp_path / 'dl'}:" in done.stderr


# -- manifests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "top", "words"),
    [
        # a public manifest needs URLs, also for parts
        ([{"name": "a.zip", "parts": [{"name": "a1"}]}], {}, "files[0].parts[0].url: missing"),
        ([{"md5": "0" * 32}], {"access": "gated", "register": "https://x.org"}, "name: missing"),
        ([{"name": "a.zip"}], {"access": "gated"}, "register"),
        (
            [{"name": "a.zip"}],
            {"access": "secret", "register": "https://x.org"},
            "access: must be one of public, gated",
        ),
        (
            [{"name": "a.zip", "parts": []}],
            {"access": "gated", "register": "https://x.org"},
            "parts: must be a non-empty list",
        ),
        (
            [{"name": "a.zip", "parts": [{"name": "a1"}, {"name": "a1"}]}],
            {"access": "gated", "register": "https://x.org"},
            "lists 'a1' more than once",
        ),
        (
            [{"url": "https://x.org/a.zip", "parts": [{"url": "https://x.org/a1"}]}],
            {},
            "cannot be used with url",
        ),
    ],
)
def test_bad_gated_and_parts_manifests_are_exit_3(tmp_path, datastage_cli, files, top, words):
    manifest = write_manifest(tmp_path, "bad", files, **top)
    done = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    assert words in done.stderr


def test_registry_voxceleb1_is_gated_with_its_parts(tmp_path, datastage_cli):
    done = datastage_cli("get", "voxceleb1", "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    assert "gated" in done.stderr and "vox1_dev_wav_partaa" in done.stderr
    assert "https://" in done.stderr.split("hint:", 1)[1]
    assert "datastage get voxceleb1 --from DIR" in done.stderr
    info = datastage_cli("info", "voxceleb1")
    assert info.returncode == 0, info.stderr
    assert "gated" in info.stdout and "register at https://" in info.stdout
    assert "md5:ae63e55b951748cc486645f532ba230b" in info.stdout
    listed = datastage_cli("list")
    line = next(row for row in listed.stdout.splitlines() if row.startswith("voxceleb1 "))
    assert "gated" in line


def test_fetch_from_folder_caches_the_joined_file(tmp_path, datastage_cli):
    manifest = _gated(tmp_path)
    downloads = _downloads(tmp_path / "dl")
    done = datastage_cli("fetch", str(manifest), "--from", str(downloads))
    assert done.returncode == 0, done.stderr
    cached = [Path(line) for line in done.stdout.split()]
    assert [sha256(p.read_bytes()) for p in cached] == [sha256(ZIP), sha256(TEST_ZIP)]


def test_push_of_a_gated_dataset_not_in_the_cache_says_how_to_get_it(tmp_path, datastage_cli):
    done = datastage_cli("push", "voxceleb1", "s3://bucket/prefix")
    assert done.returncode == 3, done.stderr
    assert "voxceleb1 is gated" in done.stderr
    assert "Traceback" not in done.stderr
