"""Issue 14 / 11 / 17 archive items that are not a plain "same tree as bsdtar" comparison:
named-but-unreadable archives, damaged sparse headers, external tools that fail or leave
members out, link-target caps, nesting depth, member-name encodings."""

from __future__ import annotations

import io
import os
import shutil
import stat
import struct
import subprocess
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.archives import make_rar
from tests.conformance import CASES, _zip_with_raw_names, need, run_7z
from tests.conftest import payload, sha256, tree, write_manifest


@pytest.fixture
def get(tmp_path: Path, datastage_cli: Any) -> Any:
    """get(name, data, env=None, **entry): stage one archive through a manifest, in-process."""

    def run(name: str, data: bytes, env: Any = None, **entry: Any) -> Any:
        (tmp_path / name).write_bytes(data)
        files = [{"url": name, "sha256": sha256(data), **entry}]
        manifest = write_manifest(tmp_path, "ds", files)
        return datastage_cli("get", str(manifest), "--to", str(tmp_path / "out"), env=env)

    return run


def staged(tmp_path: Path) -> dict[str, Any]:
    return {
        k: v for k, v in tree(tmp_path / "out" / "ds").items() if not k.startswith(".datastage")
    }


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if not ln.startswith(("hint: ", "warning: "))]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


# -- class 1: a file named like an archive is never copied as is with exit 0 -----------------


@pytest.mark.parametrize(
    "name",
    [
        *("data.zip", "data.tar.gz", "data.7z", "data.tar", "notes.gz", "data.cpio", "data.iso"),
        *("data.tlz", "data.cpio.lzma", "data.iso.Z", "data.xar", "d.lzh"),
    ],
)
def test_named_archive_no_reader_accepts_is_exit_6(tmp_path: Path, get: Any, name: str) -> None:
    junk = payload(5000, seed=11)
    done = get(name, junk)
    assert done.returncode == 6, done.stderr
    assert f"{name} is named like a" in one_error_line(done.stderr)
    assert not (tmp_path / "out" / "ds").exists()


def test_extract_false_still_copies_a_named_archive_as_is(tmp_path: Path, get: Any) -> None:
    junk = payload(5000, seed=11)
    done = get("data.zip", junk, extract=False)
    assert done.returncode == 0, done.stderr
    assert staged(tmp_path) == {"data.zip": sha256(junk)}


# -- class 2 / issue 17 item 10: an external tool's failure is never an exit 0 ----------------


@pytest.mark.parametrize("how", ["truncated", "bit-flipped"])
def test_damaged_rar_through_bsdtar_alone_is_exit_6(tmp_path: Path, get: Any, how: str) -> None:
    """libarchive does not check stored RAR members' CRC: datastage does (rarinfo.py)."""
    need("bsdtar")
    data = make_rar([("top", None), ("top/a.bin", payload(200_000, seed=2))])
    middle = len(data) // 2
    if how == "truncated":
        data = data[:middle]
    else:
        data = (
            data[:middle]
            + bytes(b ^ 0x5A for b in data[middle : middle + 64])
            + data[middle + 64 :]
        )
    done = get("data.rar", data, env={"DATASTAGE_7Z": "bsdtar"})
    assert done.returncode == 6, done.stderr
    assert "data.rar" in one_error_line(done.stderr)
    assert not (tmp_path / "out" / "ds").exists()


def test_7z_tool_that_leaves_a_member_out_is_exit_6_naming_it(tmp_path: Path, get: Any) -> None:
    """A 7z that exits 0 but did not write a listed member (a wrapper around the real tool
    deletes one after extracting): the written tree lacks what the listing promised."""
    need("7z")
    src = tmp_path / "src"
    src.mkdir()
    (src / "kept.txt").write_bytes(b"kept\n")
    (src / "lost.txt").write_bytes(b"lost\n")
    archive = tmp_path / "data.7z"
    subprocess.run(["7z", "a", "-bd", str(archive), "."], cwd=src, check=True, capture_output=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "7z"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'"{shutil.which("7z")}" "$@"; code=$?\n'
        'for a in "$@"; do case "$a" in -o*) rm -f "${a#-o}/lost.txt";; esac; done\n'
        "exit $code\n"
    )
    wrapper.chmod(0o755)
    data = archive.read_bytes()
    done = get("data.7z", data, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert done.returncode == 6, done.stderr
    assert "lost.txt" in one_error_line(done.stderr)


# -- class 3: sparse members -------------------------------------------------------------------


def test_sparse_member_is_written_sparse_with_its_real_size(tmp_path: Path, get: Any) -> None:
    need("tar")
    archive = CASES["tar-sparse-pax-1.0"][0](_work(tmp_path))
    done = get("sparse.tar", archive.read_bytes())
    assert done.returncode == 0, done.stderr
    written = tmp_path / "out" / "ds" / "sparse.bin"
    assert written.stat().st_size == (3 << 20) + 3
    assert written.read_bytes() == (tmp_path / "work" / "src" / "sparse.bin").read_bytes()
    assert written.stat().st_blocks * 512 < 1 << 20, "holes are holes, not written zeros"


@pytest.mark.parametrize(
    ("version", "old", "new"),
    [("1.0", b"\n1048576\n", b"\n10x8576\n"), ("0.1", b"1048576,", b"10x8576,")],
)
def test_modified_sparse_header_is_exit_6_not_internal_error(
    tmp_path: Path, get: Any, version: str, old: bytes, new: bytes
) -> None:
    need("tar")
    key = f"tar-sparse-pax-{version}"
    data = CASES[key][0](_work(tmp_path)).read_bytes()
    assert old in data
    done = get("sparse.tar", data.replace(old, new, 1))
    assert done.returncode == 6, done.stderr
    assert "damaged" in one_error_line(done.stderr)


def test_sparse_map_beyond_free_space_is_refused(tmp_path: Path, get: Any) -> None:
    """A sparse header declaring a petabyte is refused up front, not hashed for days."""
    huge = 1 << 50
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("GNUSparseFile.0/huge.bin")
        info.size = 1
        info.pax_headers = {
            "GNU.sparse.major": "0", "GNU.sparse.minor": "1", "GNU.sparse.name": "huge.bin",
            "GNU.sparse.realsize": str(huge), "GNU.sparse.map": f"{huge - 1},1",
        }  # fmt: skip
        tar.addfile(info, io.BytesIO(b"x"))
    done = get("huge.tar", raw.getvalue())
    assert done.returncode == 6, done.stderr
    assert "huge.bin" in one_error_line(done.stderr)


# -- issue 11: link targets, nesting, one tree --------------------------------------------------


LINK = stat.S_IFLNK | 0o777


def _zip_symlink(target: bytes) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("link")
        info.create_system = 3
        info.external_attr = LINK << 16
        zf.writestr(info, target)
    return raw.getvalue()


@pytest.mark.parametrize("size", [5000, 8 << 20], ids=["5000-bytes", "8-MiB-of-zeros"])
def test_zip_symlink_target_over_4096_bytes_is_refused(tmp_path: Path, get: Any, size: int) -> None:
    done = get("links.zip", _zip_symlink(b"a" * 100 + bytes(size - 100)))
    assert done.returncode == 6, done.stderr
    assert "longer than 4096 bytes" in one_error_line(done.stderr)


def test_tar_symlink_target_over_4096_bytes_is_refused(tmp_path: Path, get: Any) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "d/" * 2600
        tar.addfile(info)
    done = get("links.tar", raw.getvalue())
    assert done.returncode == 6, done.stderr
    assert "longer than 4096 bytes" in one_error_line(done.stderr)


@pytest.mark.parametrize("backend", ["py7zr", "7z", "bsdtar"])
def test_7z_symlink_target_over_4096_bytes_is_refused_by_every_back_end(
    tmp_path: Path, get: Any, backend: str
) -> None:
    py7zr = pytest.importorskip("py7zr")
    if backend != "py7zr":
        need(backend)
    archive = tmp_path / "links.7z"
    with py7zr.SevenZipFile(archive, "w") as sz:
        sz.writestr(b"d/" * 2500, "link")
        # py7zr writes files only: mark this one a symlink, as 7-Zip stores them
        sz.header.files_info.files[-1]["attributes"] = 0x8000 | (LINK << 16) | 0x20
    done = get("links.7z", archive.read_bytes(), env={"DATASTAGE_7Z": backend})
    assert done.returncode == 6, done.stderr
    assert "longer than 4096 bytes" in one_error_line(done.stderr)


def _nested_zips(levels: int) -> bytes:
    data = b"innermost\n"
    name = "leaf.txt"
    for level in range(levels):
        raw = io.BytesIO()
        with zipfile.ZipFile(raw, "w") as zf:
            zf.writestr(name, data)
            zf.writestr(f"level{level}.txt", b"%d\n" % level)
        data, name = raw.getvalue(), f"inner{level}.zip"
    return data


def test_extract_nested_goes_deeper_than_four_levels(tmp_path: Path, get: Any) -> None:
    done = get("outer.zip", _nested_zips(7), extract_nested=True)
    assert done.returncode == 0, done.stderr
    found = staged(tmp_path)
    assert found["leaf.txt"] == sha256(b"innermost\n")
    assert not [k for k in found if k.endswith(".zip")], "no archive left inside"


def test_extract_nested_past_the_depth_limit_is_exit_6(tmp_path: Path, get: Any) -> None:
    done = get("outer.zip", _nested_zips(40), extract_nested=True)
    assert done.returncode == 6, done.stderr
    assert "levels of nesting" in one_error_line(done.stderr)


# -- class 7: names that are not UTF-8 ---------------------------------------------------------


def test_gbk_zip_names_are_detected_with_a_warning(tmp_path: Path, get: Any) -> None:
    data = _zip_with_raw_names(tmp_path / "a.zip", ["数据/训练.txt"], "gbk").read_bytes()
    done = get("gbk.zip", data)
    assert done.returncode == 0, done.stderr
    assert "数据/训练.txt" in staged(tmp_path)
    assert "decoded them as gbk" in done.stderr


def test_manifest_name_encoding_decides_without_a_warning(tmp_path: Path, get: Any) -> None:
    names = ["Документы/отчёт.txt"]
    data = _zip_with_raw_names(tmp_path / "a.zip", names, "cp866").read_bytes()
    done = get("ru.zip", data, name_encoding="cp866")
    assert done.returncode == 0, done.stderr
    assert names[0] in staged(tmp_path)
    assert "warning" not in done.stderr


def test_name_encoding_flag_for_one_liners(tmp_path: Path, datastage_cli: Any) -> None:
    names = ["テスト/データ.txt"]
    archive = _zip_with_raw_names(tmp_path / "jp.zip", names, "cp932")
    out = tmp_path / "out"
    done = datastage_cli(
        "get", str(archive), "--to", str(out), "--name", "ds", "--name-encoding", "cp932"
    )
    assert done.returncode == 0, done.stderr
    assert names[0] in staged(tmp_path) and "warning" not in done.stderr


def test_unknown_name_encoding_is_a_manifest_error(tmp_path: Path, get: Any) -> None:
    done = get("x.zip", _nested_zips(1), name_encoding="klingon")
    assert done.returncode == 3, done.stderr
    assert "name_encoding: unknown encoding 'klingon'" in one_error_line(done.stderr)


def _work(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    return work


# -- more class 1 / 2 cases: what tarfile and zipfile let through, what only tools read ---------


def test_damaged_tar_header_mid_archive_is_exit_6_not_a_partial_tree(
    tmp_path: Path, get: Any
) -> None:
    """tarfile takes a header with a bad checksum after the first for the end of the archive:
    the members after it were silently left out (exit 0)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for i in range(4):
            info = tarfile.TarInfo(f"part-{i}.txt")
            info.size = 700
            tar.addfile(info, io.BytesIO(bytes([65 + i]) * 700))
    data = bytearray(raw.getvalue())
    third_header = 2 * (512 + 1024)
    assert data[third_header : third_header + 10] == b"part-2.txt"
    data[third_header + 3] ^= 0x01  # the name changes, the stored checksum no longer adds up
    done = get("parts.tar", bytes(data))
    assert done.returncode == 6, done.stderr
    assert "damaged tar header" in one_error_line(done.stderr)


def test_empty_zip_is_exit_6_not_an_empty_dataset(tmp_path: Path, get: Any) -> None:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w"):
        pass
    done = get("empty.zip", raw.getvalue())
    assert done.returncode == 6, done.stderr
    assert "holds no files or folders" in one_error_line(done.stderr)


def test_zip_unicode_path_field_names_the_member_as_unzip_does(tmp_path: Path, get: Any) -> None:
    """Info-ZIP's Unicode Path extra field (0x7075) carries the UTF-8 name of a member whose
    header name is in a DOS code page (unzip uses it; bsdtar 3.6 the header's name)."""
    name = "Dokument -- ő.txt"
    dos_raw = name.encode("cp852")  # a Hungarian DOS name: cp437 would read 'ő' as 'ï'
    holder = b"PLACEHOLDER--.txt"
    utf8 = name.encode()
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as zf:
        info = zipfile.ZipInfo(holder.decode())
        info.extra = struct.pack("<HHB", 0x7075, 5 + len(utf8), 1)
        info.extra += struct.pack("<I", zlib.crc32(dos_raw)) + utf8
        zf.writestr(info, b"inhalt\n")
    done = get("de.zip", _fix_name(raw.getvalue(), holder, dos_raw))
    assert done.returncode == 0, done.stderr
    assert staged(tmp_path) == {name: sha256(b"inhalt\n")}


def _fix_name(data: bytes, holder: bytes, raw: bytes) -> bytes:
    """Put ``raw`` (same length as ``holder``) where the placeholder name is."""
    assert len(raw) == len(holder) and data.count(holder) == 2
    return data.replace(holder, raw)


def test_self_extracting_7z_is_extracted_not_copied(tmp_path: Path, get: Any) -> None:
    """A 7z behind an executable stub (7z a -sfx): the 7z tool reads it; it is no plain file."""
    need("7z")
    sfx_module = next(Path("/usr/lib/p7zip").glob("7z*.sfx"), None)
    if sfx_module is None:
        pytest.skip("no 7-Zip sfx module installed")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a\n")
    archive = tmp_path / "setup.exe"
    run_7z("a", "-bd", f"-sfx{sfx_module}", str(archive), ".", cwd=src)
    done = get("setup.exe", archive.read_bytes())
    assert done.returncode == 0, done.stderr
    assert staged(tmp_path) == {"a.txt": sha256(b"a\n")}
