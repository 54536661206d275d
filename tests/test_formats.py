"""Every format round-trips through `datastage get`; damaged archives give one clear line."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.archives import compress, pack
from tests.conftest import payload, run_cli, sha256, tree, write_manifest

ARCHIVES = ["tar", "tar.gz", "tar.bz2", "tar.xz", "tar.zst", "zip", "7z", "rar"]
SINGLES = ["gz", "bz2", "xz", "zst"]
HAS_BSDTAR = shutil.which("bsdtar") is not None
HAS_7Z = any(shutil.which(t) for t in ("7z", "7zz", "7za"))
needs_rar_tool = pytest.mark.skipif(
    not (HAS_BSDTAR or HAS_7Z), reason="RAR needs bsdtar or 7z installed"
)

MEMBERS: list[tuple[str, Any]] = [
    ("top", None),
    ("top/metadata.csv", b"LJ001-0001|hello|hello\n"),
    ("top/wavs", None),
    *[(f"top/wavs/LJ001-{i:04d}.wav", payload(30_000 + 977 * i, seed=i)) for i in range(12)],
    ("top/empty", None),
    ("top/big.bin", payload(65536, seed=99) + bytes(9 << 20)),  # streamed, not handed over
    ("top/latest.csv", ("symlink", "metadata.csv")),
]


def expected_tree(members: list[tuple[str, Any]], strip: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, content in members:
        name = "/".join(name.split("/")[strip:])
        if not name:
            continue
        if content is None:
            out[name] = "dir"
        elif isinstance(content, tuple):
            out[name] = "-> " + content[1]
        else:
            out[name] = sha256(content)
    return out


def staged(root: Path) -> dict[str, Any]:
    return {k: v for k, v in tree(root).items() if not k.startswith(".datastage")}


def get(tmp_path: Path, fmt: str, data: bytes, env: Any = None, **entry: Any) -> Any:
    archive = tmp_path / f"data.{fmt}"
    archive.write_bytes(data)
    manifest = write_manifest(
        tmp_path, "ds", [{"url": archive.name, "sha256": sha256(data), **entry}]
    )
    return run_cli("get", str(manifest), "--to", str(tmp_path / "out"), env=env)


def members_for(fmt: str) -> list[tuple[str, Any]]:
    if fmt == "7z":  # py7zr (the fixture writer) stores empty folders awkwardly: leave them out
        return [m for m in MEMBERS if m[0] != "top/empty"]
    return MEMBERS


@pytest.mark.parametrize("fmt", ARCHIVES)
def test_every_archive_format_round_trips(tmp_path, fmt):
    if fmt == "rar" and not (HAS_BSDTAR or HAS_7Z):
        pytest.skip("RAR needs bsdtar or 7z installed")
    members = members_for(fmt)
    done = get(tmp_path, fmt, pack(fmt, members, tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "out" / "ds")
    assert staged(tmp_path / "out" / "ds") == expected_tree(members)
    verify = run_cli("verify", str(tmp_path / "ds.toml"), "--to", str(tmp_path / "out"))
    assert verify.returncode == 0, "the marker recorded every file's real size and sha256"


@pytest.mark.parametrize(
    ("fmt", "backend"),
    [
        ("tar.gz", {"DATASTAGE_DECOMPRESSOR": "stdlib"}),
        ("tar.gz", {"DATASTAGE_DECOMPRESSOR": "pipe"}),
        ("tar.bz2", {"DATASTAGE_DECOMPRESSOR": "stdlib"}),
        ("tar.bz2", {"DATASTAGE_DECOMPRESSOR": "pipe"}),
        ("tar.bz2", {"DATASTAGE_DECOMPRESSOR": "library"}),
        ("7z", {"DATASTAGE_7Z": "py7zr"}),
        ("7z", {"DATASTAGE_7Z": "7z"}),
        ("7z", {"DATASTAGE_7Z": "bsdtar"}),
        ("rar", {"DATASTAGE_7Z": "bsdtar"}),
    ],
    ids=lambda v: v if isinstance(v, str) else next(iter(v.values())),
)
def test_every_backend_gives_the_same_tree(tmp_path, fmt, backend):
    tool = {"pipe": "lbzip2" if fmt == "tar.bz2" else "pigz", "7z": "7z", "bsdtar": "bsdtar"}
    needed = tool.get(next(iter(backend.values())))
    if needed and not shutil.which(needed):
        pytest.skip(f"{needed} is not installed")
    members = members_for(fmt)
    done = get(tmp_path, fmt, pack(fmt, members, tmp_path), env=backend)
    assert done.returncode == 0, done.stderr
    assert staged(tmp_path / "out" / "ds") == expected_tree(members)


@pytest.mark.parametrize("compression", SINGLES)
def test_single_compressed_files_are_decompressed_under_their_name(tmp_path, compression):
    data = payload(300_000, seed=7) + bytes(200_000)
    blob = compress(data, compression)
    path = tmp_path / f"notes.txt.{compression}"
    path.write_bytes(blob)
    manifest = write_manifest(tmp_path, "one", [{"url": path.name, "sha256": sha256(blob)}])
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert staged(tmp_path / "out" / "one") == {"notes.txt": sha256(data)}


def test_strip_components_and_root_pick_the_folder_users_get(tmp_path):
    members = [("release-1.0", None), *[(f"release-1.0/{n}", c) for n, c in MEMBERS]]
    data = pack("tar.gz", members, tmp_path)
    archive = tmp_path / "r.tar.gz"
    archive.write_bytes(data)
    manifest = write_manifest(
        tmp_path,
        "ds",
        [{"url": archive.name, "sha256": sha256(data), "strip_components": 1}],
        root="top",
    )
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "out" / "ds" / "top")
    assert staged(tmp_path / "out" / "ds") == expected_tree(members, strip=1)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("strip_components", -1, "strip_components: must be a whole number >= 0"),
        ("strip_components", "1", "strip_components: must be a whole number >= 0"),
        ("nested", "inner.zip", "nested: must be a list of strings"),
        ("nested", ["../inner.zip"], "nested: must be a plain relative path"),
        ("extract_nested", "yes", "extract_nested: must be true or false"),
    ],
)
def test_new_manifest_keys_are_validated_naming_file_and_key(tmp_path, key, value, message):
    manifest = write_manifest(tmp_path, "ds", [{"url": "x.zip", key: value}])
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 3
    assert done.stderr.startswith(f"error: manifest {manifest}: files[0].{message}")


# -- damaged archives ------------------------------------------------------------------------


def _damage(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[: len(data) * 2 // 3]
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0x5A for b in data[middle : middle + 64]) + data[middle + 64 :]


@pytest.mark.parametrize("how", ["truncated", "corrupted"])
@pytest.mark.parametrize("fmt", [f for f in ARCHIVES if f != "tar"] + SINGLES)
def test_damaged_archives_fail_with_one_clear_line(tmp_path, fmt, how):
    if fmt == "rar" and not (HAS_BSDTAR or HAS_7Z):
        pytest.skip("RAR needs bsdtar or 7z installed")
    if fmt in SINGLES:
        data = _damage(compress(payload(2_000_000, seed=3), fmt), how)
        name = f"blob.bin.{fmt}"
    else:
        data = _damage(pack(fmt, members_for(fmt), tmp_path), how)
        name = f"data.{fmt}"
    (tmp_path / name).write_bytes(data)
    manifest = write_manifest(tmp_path, "ds", [{"url": name, "sha256": sha256(data)}])
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 6, done.stderr
    first, *rest = done.stderr.splitlines()
    assert first.startswith("error: ") and "damaged or truncated" in first, done.stderr
    assert name in first
    assert all(line.startswith("hint: ") for line in rest), (
        "one error line (and a hint), no traceback"
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [], "nothing staged"


def test_truncated_plain_tar_fails_cleanly(tmp_path):
    data = pack("tar", MEMBERS, tmp_path)
    data = data[: len(data) // 2]
    done = get(tmp_path, "tar", data)
    assert done.returncode == 6, done.stderr
    assert "damaged or truncated (tar)" in done.stderr
    assert not (tmp_path / "out" / "ds").exists()


def test_rar_without_any_tool_names_the_install_hint(tmp_path):
    data = pack("rar", MEMBERS[:3], tmp_path)
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    done = get(tmp_path, "rar", data, env={"PATH": str(empty_bin)})
    assert done.returncode == 3, done.stderr
    assert "RAR archive" in done.stderr
    assert "hint: install one: apt-get install libarchive-tools" in done.stderr
