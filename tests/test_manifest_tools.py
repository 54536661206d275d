"""`datastage manifest` and `datastage hash`: measured manifests that round-trip through `get`."""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import zipfile
from pathlib import Path

from tests.archives import make_tar
from tests.conftest import payload, run_cli, sha256, tree

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FILES = {
    "mydata-1.0/README.txt": b"read me\n",
    "mydata-1.0/wavs/a.wav": payload(5000, seed=1),
    "mydata-1.0/wavs/b.wav": payload(7000, seed=2),
}


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _expected_tree(files: dict[str, bytes], root: str) -> dict[str, str]:
    prefix = f"{root}/" if root else ""
    return {k[len(prefix) :]: sha256(v) for k, v in files.items()}


def _files_only(root: Path) -> dict[str, str]:
    return {k: v for k, v in tree(root).items() if v != "dir" and not k.startswith(".datastage")}


def test_manifest_for_a_url_round_trips_through_get(tmp_path, server):
    archive = make_tar(FILES, "gz")
    url = server.add("/dl/MyData-1.0.tar.gz", archive)
    out = tmp_path / "manifests" / "mydata.toml"
    made = run_cli("manifest", url, "-o", str(out))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == str(out)
    data = tomllib.loads(out.read_text())
    assert data["name"] == "mydata-1.0" and data["root"] == "mydata-1.0"
    assert data["files"] == [{"url": url, "size": len(archive), "sha256": sha256(archive)}]
    assert data["layout"] == {"counts": {"**/*": 3}}

    staged = run_cli("get", str(out), "--to", str(tmp_path / "d"))
    assert staged.returncode == 0 and "warning" not in staged.stderr, staged.stderr
    root = Path(staged.stdout.strip())
    assert root == tmp_path / "d" / "mydata-1.0" / "mydata-1.0"
    assert _files_only(root) == _expected_tree(FILES, "mydata-1.0")
    assert len(server.requests_for("/dl/MyData-1.0.tar.gz")) == 1, "measured once, then cached"


def test_manifest_for_local_files_uses_paths_relative_to_the_output(tmp_path):
    flat = {"a.txt": b"a", "sub/b.txt": b"bb"}
    src = tmp_path / "src"
    src.mkdir()
    (src / "flat.zip").write_bytes(_zip(flat))
    (src / "notes.md").write_bytes(b"# notes\n")
    out = tmp_path / "out" / "m.toml"
    made = run_cli(
        "manifest", str(src / "flat.zip"), str(src / "notes.md"), "--name", "mine", "-o", str(out)
    )
    assert made.returncode == 0, made.stderr
    data = tomllib.loads(out.read_text())
    assert "root" not in data, "a flat zip has no root folder"
    assert [f["url"] for f in data["files"]] == ["../src/flat.zip", "../src/notes.md"]
    assert data["layout"]["counts"]["**/*"] == 3
    staged = run_cli("get", str(out), "--to", str(tmp_path / "d"))
    assert staged.returncode == 0, staged.stderr
    root = Path(staged.stdout.strip())
    assert _files_only(root) == {**_expected_tree(flat, ""), "notes.md": sha256(b"# notes\n")}


def test_manifest_printed_to_stdout_is_valid_toml(tmp_path):
    path = tmp_path / "Some Data.tar.gz"
    path.write_bytes(make_tar(FILES, "gz"))
    made = run_cli("manifest", str(path))
    assert made.returncode == 0
    data = tomllib.loads(made.stdout)
    assert data["name"] == "some-data" and data["files"][0]["url"] == str(path)
    assert data["files"][0]["sha256"] == sha256(path.read_bytes())


def test_manifest_bad_input_is_one_line(tmp_path):
    missing = run_cli("manifest", str(tmp_path / "nope.tar.gz"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")
    assert len(missing.stderr.splitlines()) == 1 and "no such file" in missing.stderr
    (tmp_path / "x.bin").write_bytes(b"x")
    bad_name = run_cli("manifest", str(tmp_path / "x.bin"), "--name", "Bad Name")
    assert bad_name.returncode == 2 and "--name 'Bad Name'" in bad_name.stderr


def test_hash_prints_manifest_entries(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(payload(3000, seed=3))
    b.write_bytes(b"")
    result = run_cli("hash", str(a), str(b))
    assert result.returncode == 0
    files = tomllib.loads(result.stdout)["files"]
    assert files[0] == {
        "url": str(a),
        "size": 3000,
        "sha256": sha256(a.read_bytes()),
        "md5": hashlib.md5(a.read_bytes()).hexdigest(),
    }
    assert files[1]["sha256"] == hashlib.sha256(b"").hexdigest()
    only = tomllib.loads(run_cli("hash", "-a", "sha512", str(a)).stdout)["files"][0]
    assert set(only) == {"url", "size", "sha512"}
    assert only["sha512"] == hashlib.sha512(a.read_bytes()).hexdigest()
    missing = run_cli("hash", str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")


def test_counts_match_after_staging_when_the_archive_has_links(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("mydata-1.0/latest.wav")
        link.type, link.linkname = tarfile.SYMTYPE, "wavs/b.wav"
        tar.addfile(link)
    path = tmp_path / "linked.tar.gz"
    path.write_bytes(buf.getvalue())
    out = tmp_path / "linked.toml"
    assert run_cli("manifest", str(path), "-o", str(out)).returncode == 0
    assert tomllib.loads(out.read_text())["layout"]["counts"]["**/*"] == 3
    staged = run_cli("get", str(out), "--to", str(tmp_path / "d"))
    assert staged.returncode == 0 and "warning" not in staged.stderr, staged.stderr
    assert (Path(staged.stdout.strip()) / "latest.wav").is_symlink()
