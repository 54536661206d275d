"""Review of issue 16 (gated datasets, ``--from``, split ``parts``): one regression test per
finding. Real folders, a real loopback server that logs every request, the real CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import payload, sha256
from tests.test_gated import (
    NAMES,
    PARTS,
    TEST_ZIP,
    ZIP,
    _blobs,
    _data_tree,
    _downloads,
    _expected_tree,
    _gated,
    _joins,
    md5,
    write_manifest,
)


def _error(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("error:"))


# -- parts whose sizes cannot add up to the joined file ------------------------------------------


def test_parts_larger_than_the_declared_file_fail_before_the_join(
    tmp_path, datastage_cli, cache_dir
):
    """The joined file's size is known: parts adding up to 1 TB (a wrong file under a part's
    name) are a size mismatch naming the file (exit 5) before anything is written, not a
    "not enough disk space" for a terabyte (exit 7)."""
    manifest = _gated(tmp_path)
    downloads = _downloads(tmp_path / "dl")
    os.truncate(downloads / NAMES[1], 2**40)  # sparse: no real space used
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 5, done.stderr
    error = _error(done.stderr)
    assert "size mismatch" in error and "vox_dev.zip" in error
    assert f"expected {len(ZIP)} bytes" in error
    assert _joins(cache_dir) == []
    assert sha256(ZIP) not in {p.name for p in _blobs(cache_dir)}
    assert not (tmp_path / "out" / "vox").exists()


def test_parts_without_checksums_that_cannot_add_up_are_not_joined(
    tmp_path, datastage_cli, cache_dir
):
    """Parts without checksums, one byte short in total: refused from their sizes alone (the
    join would read and write everything only to fail on the joined file's checksum)."""
    manifest = _gated(tmp_path, part_md5=False)
    short = [PARTS[0], PARTS[1][:-1], PARTS[2]]
    downloads = _downloads(tmp_path / "dl", data=short)
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 5, done.stderr
    error = _error(done.stderr)
    assert f"expected {len(ZIP)} bytes, got {len(ZIP) - 1}" in error
    assert "joined from 3 parts" not in error  # not found by hashing the joined file
    assert _joins(cache_dir) == []


def test_a_manifest_whose_part_sizes_cannot_add_up_is_refused(tmp_path, server, datastage_cli):
    """All sizes declared: a typo is a manifest error (exit 3, key named) before any download,
    not a mismatch found after the parts were fetched."""
    parts = [{"url": server.add(f"/split/{n}", d), "size": len(d)} for n, d in zip(NAMES, PARTS)]
    entry = {"name": "vox_dev.zip", "size": len(ZIP) + 1, "sha256": sha256(ZIP), "parts": parts}
    manifest = write_manifest(tmp_path, "split", [entry])
    done = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    assert f"files[0].parts: sizes add up to {len(ZIP)} bytes, but size = {len(ZIP) + 1}" in (
        done.stderr
    )
    assert server.log == []


# -- --from a URL prefix ------------------------------------------------------------------------


def test_from_a_url_prefix_with_a_query_keeps_names_in_the_path(tmp_path, server, datastage_cli):
    """A signed prefix (an Azure container SAS, a token parameter): each file is PREFIX/<name>
    with the query kept after it, not "PREFIX?sig=.../<name>" (one request for the folder)."""
    manifest = _gated(tmp_path)
    for name, data in zip(NAMES, PARTS):
        server.add(f"/container/vox/{name}", data)
    server.add("/container/vox/vox_test.zip", TEST_ZIP)
    base = server.url("/container/vox") + "?sv=2024&sig=S1GNATURE"
    done = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"), "--from", base)
    assert done.returncode == 0, done.stderr
    assert _data_tree(Path(done.stdout.strip())) == _expected_tree()
    assert {r.path for r in server.log} == {f"/container/vox/{n}" for n in [*NAMES, "vox_test.zip"]}
    assert "S1GNATURE" not in done.stderr


def test_joining_a_name_to_a_url_prefix_keeps_its_query():
    from datastage.obtain.localcopy import join

    assert (
        join("https://h/c/vox?sig=a%2Fb&sv=1", "a b#1")
        == "https://h/c/vox/a%20b%231?sig=a%2Fb&sv=1"
    )
    assert join("https://h/c/vox/?sig=1", "x") == "https://h/c/vox/x?sig=1"
    assert join("https://h/c/vox/", "x") == "https://h/c/vox/x"
    assert join("s3://bucket/prefix", "x") == "s3://bucket/prefix/x"


# -- a gated dataset that also has public files ------------------------------------------------


def _mixed(folder: Path, server) -> tuple[Path, bytes]:
    """A gated dataset whose gated file comes first and whose second file has a public URL."""
    meta = payload(300_000, 7)
    files = [
        {"name": "vox_test.zip", "md5": md5(TEST_ZIP), "dest": "test"},
        {"url": server.add("/pub/meta.bin", meta), "sha256": sha256(meta), "extract": False},
    ]
    manifest = write_manifest(folder, "mix", files, access="gated", register="https://x.org/r")
    return manifest, meta


def test_gated_dataset_with_a_public_file_stages_from_the_folder_the_hint_names(
    tmp_path, server, datastage_cli
):
    """The gated hint says: download the gated files, then `get --from DIR`. Doing exactly
    that must work: the file the manifest has a URL for is downloaded, not demanded in DIR
    (it was "1 file of mix not found in DIR: meta.bin", a dead end the hint never mentioned)."""
    manifest, meta = _mixed(tmp_path, server)
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / "vox_test.zip").write_bytes(TEST_ZIP)
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 0, done.stderr
    root = Path(done.stdout.strip())
    assert (root / "meta.bin").read_bytes() == meta
    assert (root / "test" / "wav" / "id9" / "c.wav").read_bytes() == payload(5_000, 3)
    assert {r.path for r in server.log} == {"/pub/meta.bin"}


def test_public_manifest_from_a_folder_still_never_falls_back(tmp_path, server, datastage_cli):
    """The gated fallback above is for gated datasets only: a public manifest read --from a
    folder that lacks a file is exit 4 with no request (counted by the server)."""
    data = payload(10_000, 8)
    url = server.add("/pub/a.bin", data)
    manifest = write_manifest(tmp_path, "pub", [{"url": url, "sha256": sha256(data)}])
    (tmp_path / "dl").mkdir()
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(tmp_path / "dl")
    )
    assert done.returncode == 4, done.stderr
    assert "a.bin" in _error(done.stderr)
    assert server.log == []


def test_gated_refusal_comes_before_any_download(tmp_path, server, datastage_cli, cache_dir):
    meta = payload(300_000, 7)
    files = [
        {"url": server.add("/pub/meta.bin", meta), "sha256": sha256(meta), "extract": False},
        {"name": "vox_test.zip", "md5": md5(TEST_ZIP), "dest": "test"},
    ]  # the public file first, one file at a time: today it is always requested first
    manifest = write_manifest(tmp_path, "mix", files, access="gated", register="https://x.org/r")
    done = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"), "--connections", "1")
    assert done.returncode == 3, done.stderr
    assert "mix is gated" in done.stderr
    assert server.log == []
    assert not (cache_dir / "partial").exists() or not any((cache_dir / "partial").iterdir())


def test_fetch_refuses_a_gated_dataset_before_any_download(tmp_path, server, datastage_cli):
    """``fetch`` takes the same up-front check as ``get``."""
    meta = payload(300_000, 7)
    files = [
        {"url": server.add("/pub/meta.bin", meta), "sha256": sha256(meta), "extract": False},
        {"name": "vox_test.zip", "md5": md5(TEST_ZIP)},
    ]
    manifest = write_manifest(tmp_path, "mix", files, access="gated", register="https://x.org/r")
    done = datastage_cli("fetch", str(manifest), "--connections", "1")
    assert done.returncode == 3, done.stderr
    assert "1 file cannot be downloaded" in _error(done.stderr) and "vox_test.zip" in done.stderr
    assert server.log == []


def test_a_gated_file_in_a_source_folder_is_not_refused_up_front(tmp_path, server, datastage_cli):
    """The up-front refusal asks the tiers the download would: a gated file that a
    DATASTAGE_SOURCES folder holds (right name, size and md5) is copied from it, no --from."""
    manifest, meta = _mixed(tmp_path, server)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "vox_test.zip").write_bytes(TEST_ZIP)
    done = datastage_cli(
        "get",
        str(manifest),
        "--to",
        str(tmp_path / "out"),
        env={"DATASTAGE_SOURCES": str(tmp_path / "src")},
    )
    assert done.returncode == 0, done.stderr
    root = Path(done.stdout.strip())
    assert (root / "meta.bin").read_bytes() == meta
    assert (root / "test" / "wav" / "id9" / "c.wav").read_bytes() == payload(5_000, 3)
    assert {r.path for r in server.log} == {"/pub/meta.bin"}


# -- what the gated error asks for ----------------------------------------------------------------


def test_gated_error_asks_only_for_files_not_in_the_cache(tmp_path, datastage_cli):
    """dev staged earlier (its joined zip cached); the whole dataset then needs only the test
    zip: the error must not send the user for the three dev parts again."""
    (tmp_path / "dev").mkdir()
    dev = write_manifest(
        tmp_path / "dev",
        "vox",
        [
            {
                "name": "vox_dev.zip",
                "md5": md5(ZIP),
                "size": len(ZIP),
                "dest": "dev",
                "parts": [{"name": n, "md5": md5(d)} for n, d in zip(NAMES, PARTS)],
            }
        ],
        access="gated",
        register="https://example.org/vox/register",
    )
    first = datastage_cli("fetch", str(dev), "--from", str(_downloads(tmp_path / "dl")))
    assert first.returncode == 0, first.stderr
    manifest = _gated(tmp_path)
    done = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    error = _error(done.stderr)
    assert "1 file cannot be downloaded" in error and "vox_test.zip" in error
    assert not any(name in error for name in NAMES)


# -- the persistent tier ------------------------------------------------------------------------


def test_from_a_folder_does_not_demand_files_the_persistent_tier_holds(
    tmp_path, datastage_cli, cache_dir
):
    import shutil

    manifest = _gated(tmp_path)
    tier = {"DATASTAGE_PERSISTENT_CACHE": str(tmp_path / "drive")}
    first = datastage_cli(
        "get",
        str(manifest),
        "--to",
        str(tmp_path / "a"),
        "--from",
        str(_downloads(tmp_path / "dl")),
        env=tier,
    )
    assert first.returncode == 0, first.stderr
    shutil.rmtree(cache_dir)  # a new session: the local cache is gone, the tier is not
    shutil.rmtree(tmp_path / "dl")  # and the downloads were deleted once staged
    (tmp_path / "dl").mkdir()
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "b"), "--from", str(tmp_path / "dl")
    )
    assert done.returncode == 0, done.stderr
    assert _data_tree(Path(done.stdout.strip())) == _expected_tree()


# -- manifests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["see \x1b[2J\x1b[Hhere", "bell\x07", "back\x08space", "\x9b31m"])
def test_instructions_with_control_characters_are_refused(tmp_path, datastage_cli, text):
    """``instructions`` is printed in the hint: a terminal escape in a downloaded manifest
    (clear the screen, retitle the window, hide text) is a manifest error, never printed."""
    manifest = write_manifest(
        tmp_path,
        "g",
        [{"name": "a.zip"}],
        access="gated",
        register="https://x.org/r",
        instructions=text,
    )
    done = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    assert "instructions" in _error(done.stderr)
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr and "\x9b" not in done.stderr


def test_a_register_url_with_a_c1_control_character_is_refused(tmp_path, datastage_cli):
    """check_url refuses C0 controls in URLs; \x9b (CSI in 8-bit terminals) got through into
    the hint's "register at ..."."""
    manifest = write_manifest(
        tmp_path, "g", [{"name": "a.zip"}], access="gated", register="https://x.org/\x9b2J"
    )
    done = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    assert "register" in _error(done.stderr) and "control character" in _error(done.stderr)
    assert "\x9b" not in done.stderr


def test_error_lines_never_carry_terminal_escapes_from_file_names(tmp_path, datastage_cli):
    manifest = write_manifest(
        tmp_path,
        "g",
        [{"name": "a\x1b]0;owned\x07b.zip"}],
        access="gated",
        register="https://x.org/r",
    )
    done = datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    assert "g is gated" in done.stderr
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr


def test_info_does_not_call_confirmed_md5_checksums_unconfirmed(datastage_cli):
    done = datastage_cli("info", "voxceleb1")
    assert done.returncode == 0, done.stderr
    assert "md5:ae63e55b951748cc486645f532ba230b" in done.stdout
    assert "unconfirmed" not in "\n".join(
        line for line in done.stdout.splitlines() if "pinned" in line
    )


def test_list_marks_a_gated_dataset_whose_description_does_not_say_so(tmp_path, datastage_cli):
    registry = tmp_path / "reg"
    registry.mkdir()
    write_manifest(
        registry,
        "secretset",
        [{"name": "a.zip"}],
        access="gated",
        register="https://x.org/r",
        description="a corpus",
    )
    done = datastage_cli("list", env={"DATASTAGE_REGISTRY": str(registry)})
    assert done.returncode == 0, done.stderr
    line = next(row for row in done.stdout.splitlines() if row.startswith("secretset "))
    assert "gated" in line


# -- folders that hold something else under a file's name --------------------------------------


def test_warning_lines_never_carry_terminal_escapes_from_file_names(tmp_path, datastage_cli):
    """A source folder's file of that name and size but other bytes is a warning naming it,
    then the gated refusal: neither line carries the name's escape raw (shown as \\x1b)."""
    name = "a\x1b]0;owned\x07b.zip"
    manifest = write_manifest(
        tmp_path,
        "g",
        [{"name": name, "size": len(TEST_ZIP), "md5": md5(TEST_ZIP)}],
        access="gated",
        register="https://x.org/r",
    )
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / name).write_bytes(b"x" * len(TEST_ZIP))
    done = datastage_cli(
        "get",
        str(manifest),
        "--to",
        str(tmp_path / "out"),
        env={"DATASTAGE_SOURCES": str(tmp_path / "src")},
    )
    assert done.returncode == 3, done.stderr
    warning = next(line for line in done.stderr.splitlines() if line.startswith("warning:"))
    assert "a\\x1b]0;owned\\x07b.zip" in warning and "a\\x1b]0;owned\\x07b.zip" in _error(
        done.stderr
    )
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_a_name_that_is_not_a_regular_file_is_named_as_such(tmp_path, datastage_cli, kind):
    """A FIFO, a folder or a link to /dev/zero under a part's name: never opened (a FIFO would
    block, /dev/zero never ends), and the error says what is there instead of "not found"."""
    manifest = _gated(tmp_path)
    downloads = _downloads(tmp_path / "dl")
    odd = downloads / NAMES[1]
    odd.unlink()
    if kind == "fifo":
        os.mkfifo(odd)
    elif kind == "directory":
        odd.mkdir()
    else:
        odd.symlink_to("/dev/zero")
    done = subprocess.run(
        [
            "timeout",
            "60",
            *_cli(),
            "get",
            str(manifest),
            "--to",
            str(tmp_path / "out"),
            "--from",
            str(downloads),
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert done.returncode == 4, done.stderr
    error = _error(done.stderr)
    assert NAMES[1] in error and "not a regular file" in error
    assert not (tmp_path / "out" / "vox").exists()


def test_missing_parts_say_which_name_the_joined_file_is_found_by(tmp_path, datastage_cli):
    """Recipes name a joined file differently (VoxCeleb2: vox2_aac.zip or vox2_dev_aac.zip):
    when parts are missing, the hint says the joined file is also accepted, and by which name."""
    manifest = _gated(tmp_path)
    downloads = _downloads(tmp_path / "dl")
    for name in NAMES:
        (downloads / name).unlink()
    (downloads / "vox_dev_joined_by_another_recipe.zip").write_bytes(ZIP)
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 4, done.stderr
    hint = done.stderr.split("hint:", 1)[1]
    assert "joined into one file named vox_dev.zip" in hint
    (downloads / "vox_dev_joined_by_another_recipe.zip").rename(downloads / "vox_dev.zip")
    again = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert again.returncode == 0, again.stderr
    assert _data_tree(Path(again.stdout.strip())) == _expected_tree()


def test_a_half_joined_copy_next_to_all_its_parts_falls_back_to_the_parts(
    tmp_path, datastage_cli, cache_dir
):
    """`cat parta* > vox_dev.zip` cut short (a full disk): the joined copy does not match, but
    every part is in the folder: they are joined instead (verified), with a warning."""
    manifest = _gated(tmp_path)
    downloads = _downloads(tmp_path / "dl")
    (downloads / "vox_dev.zip").write_bytes(ZIP[: len(ZIP) // 2])
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 0, done.stderr
    assert _data_tree(Path(done.stdout.strip())) == _expected_tree()
    warning = next(line for line in done.stderr.splitlines() if line.startswith("warning:"))
    assert "vox_dev.zip" in warning and "joining its 3 parts" in warning
    assert (downloads / "vox_dev.zip").stat().st_size == len(ZIP) // 2  # the user's, untouched
    assert sha256(ZIP) in {p.name for p in _blobs(cache_dir)}
    assert list((cache_dir / "partial").iterdir()) == []  # no join, no failed read's state


def test_a_half_joined_copy_without_all_parts_is_still_exit_5(tmp_path, datastage_cli, cache_dir):
    manifest = _gated(tmp_path)
    downloads = _downloads(tmp_path / "dl")
    (downloads / NAMES[2]).unlink()
    (downloads / "vox_dev.zip").write_bytes(ZIP[:-1] + b"x")
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 5, done.stderr
    assert "vox_dev.zip" in _error(done.stderr) and "mismatch" in _error(done.stderr)
    assert sha256(ZIP[:-1] + b"x") not in {p.name for p in _blobs(cache_dir)}
    assert not (tmp_path / "out" / "vox").exists()


def test_a_join_left_by_a_killed_run_goes_when_the_joined_copy_is_used(
    tmp_path, datastage_cli, cache_dir
):
    """A join killed at 40 GB, then the user `cat`s the parts and passes that file: the dead
    join must not stay in the cache forever (only a join of the same entry removed it)."""
    manifest = _gated(tmp_path)
    stale = cache_dir / "partial" / f"md5-{md5(ZIP)}.k1ll3d.join"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(ZIP[:1000])
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / "vox_dev.zip").write_bytes(ZIP)
    (downloads / "vox_test.zip").write_bytes(TEST_ZIP)
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), "--from", str(downloads)
    )
    assert done.returncode == 0, done.stderr
    assert _data_tree(Path(done.stdout.strip())) == _expected_tree()
    assert _joins(cache_dir) == []


def test_from_a_file_says_to_give_its_folder(tmp_path, datastage_cli):
    """`--from ~/Downloads/vox_test.zip` (the file itself): not "no such folder"."""
    manifest = _gated(tmp_path)
    downloads = _downloads(tmp_path / "dl")
    done = datastage_cli(
        "get",
        str(manifest),
        "--to",
        str(tmp_path / "out"),
        "--from",
        str(downloads / "vox_test.zip"),
    )
    assert done.returncode == 2, done.stderr
    assert "is a file, not a folder" in _error(done.stderr)
    assert f"--from {downloads}" in done.stderr.split("hint:", 1)[1]


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "datastage"]
