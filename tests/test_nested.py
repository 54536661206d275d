"""Archives inside archives (VCTK: DS_10283_3443.zip holds VCTK-Corpus-0.92.zip)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.archives import pack
from tests.conftest import payload, run_cli, sha256, tree, write_manifest

CORPUS = {
    "VCTK-Corpus-0.92/speaker-info.txt": b"ID AGE GENDER\np225 23 F\n",
    **{f"VCTK-Corpus-0.92/wav48/p225/p225_{i:03d}.flac": payload(20_000, seed=i) for i in range(6)},
}


def _vctk_like(tmp_path: Path, inner_fmt: str = "zip") -> bytes:
    inner = pack(inner_fmt, list(CORPUS.items()), tmp_path)
    return pack(
        "zip",
        [("license_text", b"CC BY 4.0\n"), (f"VCTK-Corpus-0.92.{inner_fmt}", inner)],
        tmp_path,
    )


def _get(tmp_path: Path, outer: bytes, **entry: Any) -> Any:
    (tmp_path / "DS_10283_3443.zip").write_bytes(outer)
    manifest = write_manifest(
        tmp_path,
        "vctk",
        [{"url": "DS_10283_3443.zip", "sha256": sha256(outer), **entry}],
        root="VCTK-Corpus-0.92",
    )
    return run_cli("get", str(manifest), "--to", str(tmp_path / "out"))


def _files(root: Path) -> dict[str, Any]:
    return {k: v for k, v in tree(root).items() if v != "dir" and not k.startswith(".datastage")}


def _expected() -> dict[str, str]:
    return {"license_text": sha256(b"CC BY 4.0\n")} | {k: sha256(v) for k, v in CORPUS.items()}


@pytest.mark.parametrize(
    "how", [{"nested": ["VCTK-Corpus-0.92.zip"]}, {"extract_nested": True}], ids=["named", "auto"]
)
def test_zip_inside_zip_is_extracted_and_the_inner_archive_removed(tmp_path, how):
    done = _get(tmp_path, _vctk_like(tmp_path), **how)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "out" / "vctk" / "VCTK-Corpus-0.92")
    assert _files(tmp_path / "out" / "vctk") == _expected(), "inner archive replaced by its tree"
    verify = run_cli("verify", str(tmp_path / "vctk.toml"), "--to", str(tmp_path / "out"))
    assert verify.returncode == 0, "the marker records the inner archive's files"


@pytest.mark.parametrize("inner_fmt", ["tar.gz", "tar.bz2", "7z"])
def test_other_formats_nest_too(tmp_path, inner_fmt):
    done = _get(tmp_path, _vctk_like(tmp_path, inner_fmt), extract_nested=True)
    assert done.returncode == 0, done.stderr
    assert _files(tmp_path / "out" / "vctk") == _expected()


def test_three_levels_with_auto_nesting(tmp_path):
    level3 = pack("tar.gz", [("deep/file.txt", b"deep")], tmp_path)
    level2 = pack("zip", [("VCTK-Corpus-0.92/inner.tar.gz", level3)], tmp_path)
    outer = pack("zip", [("level2.zip", level2)], tmp_path)
    done = _get(tmp_path, outer, extract_nested=True)
    assert done.returncode == 0, done.stderr
    assert _files(tmp_path / "out" / "vctk") == {"VCTK-Corpus-0.92/deep/file.txt": sha256(b"deep")}


def test_a_named_inner_archive_that_is_missing_is_a_clear_error(tmp_path):
    done = _get(tmp_path, _vctk_like(tmp_path), nested=["VCTK-Corpus-0.91.zip"])
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith(
        "error: nested archive 'VCTK-Corpus-0.91.zip' is not a file in DS_10283_3443.zip"
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


def test_files_that_only_look_like_archives_stay_as_they_are(tmp_path):
    outer = pack(
        "zip",
        [("VCTK-Corpus-0.92/notes.zip", b"not really a zip"), ("VCTK-Corpus-0.92/a.txt", b"a")],
        tmp_path,
    )
    done = _get(tmp_path, outer, extract_nested=True)
    assert done.returncode == 0, done.stderr
    assert _files(tmp_path / "out" / "vctk") == {
        "VCTK-Corpus-0.92/notes.zip": sha256(b"not really a zip"),
        "VCTK-Corpus-0.92/a.txt": sha256(b"a"),
    }
