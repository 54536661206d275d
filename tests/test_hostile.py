"""Hostile members are refused in every format, naming the member; nothing lands outside."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.archives import pack
from tests.conftest import run_cli, sha256, write_manifest

HAS_RAR_TOOL = any(shutil.which(t) for t in ("bsdtar", "7z", "7zz", "7za"))
GOOD = [("top", None), ("top/ok.txt", b"fine\n")]

CASES: dict[str, tuple[list[tuple[str, Any]], str, str]] = {
    # case: (members, member named in the error, reason)
    "dotdot": ([*GOOD, ("top/../../evil.txt", b"owned\n")], "top/../../evil.txt", "'..'"),
    "absolute": ([*GOOD, ("/tmp/evil.txt", b"owned\n")], "/tmp/evil.txt", "absolute path"),
    "symlink-out": (
        [*GOOD, ("top/escape", ("symlink", "../../../outside"))],
        "top/escape",
        "leads outside",
    ),
    "through-symlink": (
        [*GOOD, ("top/door", ("symlink", ".")), ("top/door/evil.txt", b"owned\n")],
        "top/door/evil.txt",
        "written through",
    ),
    "device": ([*GOOD, ("top/null", ("device", ""))], "top/null", "not allowed"),
}
FORMATS = ["tar", "tar.gz", "tar.zst", "zip", "7z", "rar"]
#: What a format cannot even store (so there is nothing to refuse).
CANNOT_HOLD = {("7z", "device"), ("7z", "absolute")}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_member_is_refused_and_nothing_is_written_outside(tmp_path, fmt, case):
    if (fmt, case) in CANNOT_HOLD:
        pytest.skip(f"{fmt} cannot hold a {case} member")
    if fmt == "rar" and not HAS_RAR_TOOL:
        pytest.skip("RAR needs bsdtar or 7z installed")
    members, member, reason = CASES[case]
    work = tmp_path / "deep" / "er" / "work"  # '..' from the target still lands in tmp_path
    work.mkdir(parents=True)
    data = pack(fmt, members, tmp_path)
    (work / f"bad.{fmt}").write_bytes(data)
    manifest = write_manifest(work, "ds", [{"url": f"bad.{fmt}", "sha256": sha256(data)}])
    out = work / "out"
    done = run_cli("get", str(manifest), "--to", str(out))

    assert done.returncode == 6, done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith(f"error: unsafe member {member!r} in bad.{fmt}: "), done.stderr
    assert reason in first
    assert sorted(p.name for p in out.iterdir()) == [], "nothing staged, no leftovers"
    written = [
        p
        for p in tmp_path.rglob("*")
        if p.name in ("evil.txt", "outside", "null") and "7z-src" not in p.parts  # fixture's own
    ]
    assert written == [], "nothing may be written outside the target"
    assert not Path("/tmp/evil.txt").exists()


def test_hostile_inner_archive_is_refused_too(tmp_path):
    inner = pack("zip", [("x/ok.txt", b"ok"), ("../../evil.txt", b"owned")], tmp_path)
    outer = pack("zip", [("pack/README", b"read me"), ("pack/inner.zip", inner)], tmp_path)
    (tmp_path / "outer.zip").write_bytes(outer)
    manifest = write_manifest(
        tmp_path,
        "ds",
        [{"url": "outer.zip", "sha256": sha256(outer), "nested": ["pack/inner.zip"]}],
    )
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 6, done.stderr
    assert done.stderr.startswith(
        "error: unsafe member '../../evil.txt' in inner.zip (inside outer.zip): "
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []
    assert not list(tmp_path.rglob("evil.txt"))
