"""Conformance with bsdtar: every archive variant in tests/conformance.py, made at test time
with the real tools, is staged by ``datastage get FILE`` and must give exactly the tree
``bsdtar -xf`` gives (names, bytes, links, folders). Damaged variants (truncated, bit-flipped)
either give bsdtar's complete tree or fail with exit 6 and one error line: never exit 0 with a
wrong, partial or empty tree. Skips only when a tool is missing (CI installs them).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conformance import (
    CASES,
    DAMAGED,
    bit_flipped,
    need,
    run_7z,
    truncated,
    zip_local_name_differs,
)
from tests.conftest import sha256, tree


def bsdtar_tree(archive: Path, options: tuple[str, ...], out: Path) -> tuple[int, dict[str, Any]]:
    out.mkdir()
    done = subprocess.run(
        ["bsdtar", *options, "-x", "-f", str(archive), "-C", str(out)], capture_output=True
    )
    return done.returncode, tree(out)


def staged(
    run: Any, archive: Path, out: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = run("get", str(archive), "--to", str(out), "--name", "ds")
    root = out / "ds"
    found = {k: v for k, v in tree(root).items() if k != ".datastage.json"} if root.exists() else {}
    return done, found


def build(case: str, tmp_path: Path) -> tuple[Path, tuple[str, ...]]:
    need("bsdtar")
    builder, options = CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    return builder(work), options


@pytest.mark.parametrize("case", list(CASES))
def test_staged_tree_is_the_tree_bsdtar_extracts(
    tmp_path: Path, case: str, datastage_cli: Any
) -> None:
    archive, options = build(case, tmp_path)
    code, expected = bsdtar_tree(archive, options, tmp_path / "bsdtar")
    assert code == 0 and expected, f"bsdtar reads {case}"
    done, found = staged(datastage_cli, archive, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert found == expected


@pytest.mark.parametrize("damage", [truncated, bit_flipped], ids=["truncated", "bit-flipped"])
@pytest.mark.parametrize("case", DAMAGED)
def test_damaged_variants_give_bsdtars_tree_or_exit_6(
    tmp_path: Path, case: str, damage: Any, datastage_cli: Any
) -> None:
    archive, options = build(case, tmp_path)
    damaged = tmp_path / ("damaged-" + archive.name)
    damaged.write_bytes(damage(archive.read_bytes()))
    done, found = staged(datastage_cli, damaged, tmp_path / "out")
    if done.returncode == 0:
        code, expected = bsdtar_tree(damaged, options, tmp_path / "bsdtar")
        assert code == 0, f"bsdtar refuses it ({code}) but datastage staged it: {found}"
        assert found and found == expected, "exit 0 with a tree that is not bsdtar's"
        return
    assert done.returncode == 6, done.stderr
    first, *rest = (
        done.stderr.strip().splitlines()[-2:]
        if "hint:" in done.stderr
        else [done.stderr.strip().splitlines()[-1]]
    )
    assert first.startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    assert all(line.startswith("hint: ") for line in rest)
    assert not (tmp_path / "out" / "ds").exists(), "nothing staged"


def test_every_7z_back_end_gives_one_tree(tmp_path: Path, datastage_cli: Any) -> None:
    """``lnk -> .`` and a '\\' in a name: the 7z tool, py7zr and bsdtar agree (issue 11)."""
    need("7z", "bsdtar")
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"f\n")
    (src / "win\\path.txt").write_bytes(b"w\n")
    (src / "lnk").symlink_to(".")
    (src / "l2").symlink_to("d/f")
    archive = tmp_path / "links.7z"
    run_7z("a", "-bd", "-snl", str(archive), ".", cwd=src)
    trees = {}
    for backend in ("7z", "py7zr", "bsdtar"):
        out = tmp_path / f"out-{backend}"
        done = datastage_cli(
            "get", str(archive), "--to", str(out), "--name", "ds", env={"DATASTAGE_7Z": backend}
        )
        assert done.returncode == 0, (backend, done.stderr)
        trees[backend] = {k: v for k, v in tree(out / "ds").items() if k != ".datastage.json"}
    assert trees["7z"] == trees["py7zr"] == trees["bsdtar"]
    assert trees["7z"]["lnk"] == "-> ." and "win/path.txt" in trees["7z"]


def test_bcj2_falls_back_to_bsdtar_when_no_7z_tool(tmp_path: Path, datastage_cli: Any) -> None:
    """py7zr cannot read BCJ2: with only bsdtar installed the archive is still staged."""
    need("7z", "bsdtar")
    archive, _ = build("7z-bcj2", tmp_path)
    only = _path_with(tmp_path, "bsdtar")
    done = datastage_cli(
        "get", str(archive), "--to", str(tmp_path / "out"), "--name", "ds", env={"PATH": only}
    )
    assert done.returncode == 0, done.stderr
    code, expected = bsdtar_tree(archive, (), tmp_path / "bsdtar")
    assert code == 0
    assert {
        k: v for k, v in tree(tmp_path / "out" / "ds").items() if k != ".datastage.json"
    } == expected
    none = _path_with(tmp_path / "none")
    done = datastage_cli(
        "get", str(archive), "--to", str(tmp_path / "out2"), "--name", "ds", env={"PATH": none}
    )
    assert done.returncode == 6, done.stderr
    assert "BCJ2" in done.stderr and "apt-get install" in done.stderr


def _path_with(folder: Path, *tools: str) -> str:
    """A PATH holding only ``tools`` (and what python needs): the others look uninstalled."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    for tool in tools:
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_zip_local_name_differing_by_encoding_uses_the_central_directory(
    tmp_path: Path, datastage_cli: Any
) -> None:
    """zipfile refuses "File name in directory ... and header ... differ"; unzip and bsdtar
    read the member (bsdtar names it from the local header, unzip and datastage from the
    central directory, which carries the UTF-8 flag)."""
    archive, _ = build_without_bsdtar(tmp_path, zip_local_name_differs)
    done, found = staged(datastage_cli, archive, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert found == {"café": "dir", "café/menu.txt": sha256(b"menu\n")}


def build_without_bsdtar(tmp_path: Path, builder: Any) -> tuple[Path, tuple[str, ...]]:
    work = tmp_path / "work"
    work.mkdir()
    return builder(work), ()
