"""Staging at scale and the writer's loose ends (issues 13 and 11 item 7).

The marker is split: a small ``.datastage.json`` (written last) vouches for the per-file list
``.datastage-files.json`` by size and sha256, so a repeated ``get`` reads only the small one.
Speed itself is measured in scripts/bench_extract.py, not here.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.archives import Members, make_tar, make_zip
from tests.conftest import sha256, write_manifest
from tests.inprocess import cli

FILES = {"top/a.txt": b"alpha\n", "top/sub/b.bin": b"\x00\x01" * 5000, "top/c.txt": b"gamma"}


def manifest_for(tmp: Path, data: bytes, file_name: str, **entry: object) -> Path:
    archive = tmp / "src" / file_name
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(data)
    folder = tmp / "manifests"
    folder.mkdir(exist_ok=True)
    spec = {"url": str(archive), "sha256": sha256(data), **entry}
    return write_manifest(folder, "ds", [spec])


@pytest.fixture
def staged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[Path, Path]]:
    manifest = manifest_for(tmp_path, make_tar(FILES, "gz"), "ds.tar.gz")
    to = tmp_path / "out"
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 0, err
    yield manifest, to


@pytest.fixture
def umask_027() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_explicit_chmods_honour_the_umask(tmp_path, capsys, umask_027):
    archive = make_tar(FILES, "gz")
    plain = tmp_path / "src" / "notes.txt"
    plain.parent.mkdir(parents=True)
    plain.write_bytes(b"plain file, copied as is\n")
    (tmp_path / "src" / "ds.tar.gz").write_bytes(archive)
    manifest = write_manifest(
        tmp_path,
        "ds",
        [
            {"url": str(tmp_path / "src" / "ds.tar.gz"), "sha256": sha256(archive)},
            {"url": str(plain), "sha256": sha256(plain.read_bytes()), "extract": False},
        ],
    )
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(tmp_path / "out"))
    assert code == 0, err
    folder = tmp_path / "out" / "ds"
    modes = {
        p.relative_to(folder).as_posix(): p.lstat().st_mode & 0o777
        for p in [folder, *folder.rglob("*")]
    }
    assert ".datastage.json" in modes and "notes.txt" in modes and "top/a.txt" in modes
    wider = {rel: oct(mode) for rel, mode in modes.items() if mode & 0o027}
    assert wider == {}, "a chmod widened what the umask (027) allows"


LONG = "x" * 300  # over NAME_MAX (255 bytes)
DEEP = "/".join(["d" * 250] * 20) + "/f.txt"  # every part fits, the path does not (> 4096)


@pytest.mark.parametrize("name", [f"top/{LONG}.txt", f"top/{LONG}/f.txt", DEEP])
@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_a_name_too_long_for_the_file_system_is_an_archive_error(tmp_path, capsys, name, fmt):
    files = {"top/a.txt": b"a", name: b"too long"}
    data = make_tar(files) if fmt == "tar" else make_zip(files)
    manifest = manifest_for(tmp_path, data, f"ds.{fmt}")
    code, out, err = cli(capsys, "get", str(manifest), "--to", str(tmp_path / "out"))
    assert code == 6, err
    assert out == "" and err.startswith("error: unsafe member ") and name[:40] in err
    assert "Traceback" not in err and "internal error" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


def _marker_folder_tar() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(".datastage.json")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        data = b"not a marker"
        info = tarfile.TarInfo(".datastage.json/x")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _marker_folder_zip() -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as zf:
        zf.writestr("a.txt", b"a")
        zf.writestr(".datastage.json/x", b"not a marker")
    return raw.getvalue()


@pytest.mark.parametrize(
    "data, fmt", [(_marker_folder_tar(), "tar"), (_marker_folder_zip(), "zip")], ids=["tar", "zip"]
)
def test_a_folder_named_like_the_marker_is_an_archive_error(tmp_path, capsys, data, fmt):
    manifest = manifest_for(tmp_path, data, f"ds.{fmt}")
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(tmp_path / "out"))
    assert code == 6, err
    assert err.startswith("error: unsafe member '.datastage.json") and "marker" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


def test_verify_reports_extra_files_without_failing(staged, capsys):
    manifest, to = staged
    (to / "ds" / "top" / "mine.csv").write_text("results\n")
    (to / "ds" / "notes").mkdir()
    (to / "ds" / "notes" / "n.txt").write_text("n\n")
    code, out, err = cli(capsys, "verify", str(manifest), "--to", str(to))
    assert code == 0, err
    assert out.strip() == str(to / "ds")
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "2 file(s)" in warning[0], err
    assert "top/mine.csv" in warning[0] and "notes/n.txt" in warning[0]
    assert (to / "ds" / "top" / "mine.csv").read_text() == "results\n"  # left alone


def test_a_repeated_get_reads_the_small_marker_only(staged, capsys):
    manifest, to = staged
    folder = to / "ds"
    listing = folder / ".datastage-files.json"
    marker = json.loads((folder / ".datastage.json").read_text())
    assert marker["file_list"]["count"] == len(FILES) and "files" not in marker
    listed = json.loads(listing.read_text())["files"]
    assert {k: v["sha256"] for k, v in listed.items()} == {k: sha256(v) for k, v in FILES.items()}
    inode = folder.stat().st_ino
    listing.write_bytes(b"x" * listing.stat().st_size)  # damaged, same size: not read by get
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 0 and folder.stat().st_ino == inode, err
    code, _, err = cli(capsys, "verify", str(manifest), "--to", str(to))
    assert code == 5 and ".datastage-files.json" in err and "damaged" in err
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(to))  # verify found it
    assert code == 0 and folder.stat().st_ino != inode, err
    assert cli(capsys, "verify", str(manifest), "--to", str(to))[0] == 0


def test_get_restages_what_verify_found_changed_even_at_the_same_size(staged, capsys):
    manifest, to = staged
    victim = to / "ds" / "top" / "sub" / "b.bin"
    victim.write_bytes(b"\xff" * victim.stat().st_size)
    code, _, err = cli(capsys, "verify", str(manifest), "--to", str(to))
    assert code == 5 and "top/sub/b.bin (content changed)" in err
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 0, err
    assert victim.read_bytes() == FILES["top/sub/b.bin"]
    assert not (to / "ds" / ".datastage-damaged").exists()


def test_an_old_inline_marker_is_still_a_staging(staged, capsys):
    """Format 1 (every file inline) stays staged; its sizes are checked as they were."""
    manifest, to = staged
    folder = to / "ds"
    marker = json.loads((folder / ".datastage.json").read_text())
    files = json.loads((folder / ".datastage-files.json").read_text())["files"]
    del marker["file_list"]
    (folder / ".datastage.json").write_text(json.dumps({**marker, "format": 1, "files": files}))
    (folder / ".datastage-files.json").unlink()
    inode = folder.stat().st_ino
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 0 and folder.stat().st_ino == inode, err
    assert cli(capsys, "verify", str(manifest), "--to", str(to))[0] == 0
    (folder / "top" / "a.txt").unlink()
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 0 and (folder / "top" / "a.txt").read_bytes() == FILES["top/a.txt"], err


LINKS: Members = [
    ("a.txt", b"AAAA"),
    ("notes.txt", ("symlink", "a.txt")),
    ("data", ("symlink", "real")),
]


def two_entries(tmp: Path, second: dict[str, object], second_data: bytes) -> Path:
    first = make_tar([*LINKS, ("real", None)])
    src = tmp / "src"
    src.mkdir()
    (src / "one.tar").write_bytes(first)
    (src / str(second["url"])).write_bytes(second_data)
    return write_manifest(
        tmp,
        "ds",
        [
            {"url": str(src / "one.tar"), "sha256": sha256(first)},
            {**second, "url": str(src / str(second["url"])), "sha256": sha256(second_data)},
        ],
    )


def test_a_plain_file_replaces_an_earlier_entrys_link_instead_of_writing_through_it(
    tmp_path, capsys
):
    manifest = two_entries(tmp_path, {"url": "notes.txt", "extract": False}, b"PLAIN")
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(tmp_path / "out"))
    assert code == 0, err
    folder = tmp_path / "out" / "ds"
    assert (folder / "a.txt").read_bytes() == b"AAAA"  # not overwritten through the link
    assert not (folder / "notes.txt").is_symlink()
    assert (folder / "notes.txt").read_bytes() == b"PLAIN"
    code, _, err = cli(capsys, "verify", str(manifest), "--to", str(tmp_path / "out"))
    assert code == 0, err


def test_a_dest_through_an_earlier_entrys_link_is_refused(tmp_path, capsys):
    manifest = two_entries(tmp_path, {"url": "two.tar", "dest": "data"}, make_tar({"x": b"X"}))
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(tmp_path / "out"))
    assert code == 6, err
    assert "'data'" in err and "symlink" in err
    assert not (tmp_path / "out" / "ds").exists()


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_a_file_member_after_a_link_of_the_same_name_wins_as_in_tar(tmp_path, capsys, fmt):
    members: Members = [("a", b"A"), ("x", ("symlink", "a")), ("x", b"NEW"), ("y", b"Y")]
    data = make_tar(members) if fmt == "tar" else make_zip(members)
    manifest = manifest_for(tmp_path, data, f"ds.{fmt}")
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(tmp_path / "out"))
    assert code == 0, err
    folder = tmp_path / "out" / "ds"
    assert not (folder / "x").is_symlink()
    assert (folder / "x").read_bytes() == b"NEW" and (folder / "a").read_bytes() == b"A"
    listed = json.loads((folder / ".datastage-files.json").read_text())["files"]
    assert listed["x"] == {"size": 3, "sha256": sha256(b"NEW")}
