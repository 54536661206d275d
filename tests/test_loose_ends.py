"""Mistakes caught before any work: entries that would overwrite each other, URL schemes no
source serves, and an empty folder option (which must not mean "the current folder")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import datastage
from datastage.core.errors import ManifestError, UsageError
from tests.conftest import run_cli, sha256, tree, write_manifest
from tests.inprocess import cli

A, B = b"first file\n", b"second file\n"


def _manifest_error(capsys, server, manifest: Path, to: Path, *words: str) -> str:
    """``get`` fails with exit 3 naming the manifest and ``words``; no request, nothing staged."""
    code, out, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 3, err
    assert out == ""
    assert err.startswith("error: ") and "Traceback" not in err
    first = err.splitlines()[0]
    assert str(manifest) in first
    for word in words:
        assert word in first, f"{word!r} missing from: {err}"
    assert server.log == [], "a bad manifest must not cause any network request"
    assert not to.exists()
    return first


# -- two entries landing on one path --------------------------------------------------------


def test_two_files_with_the_same_name_and_dest_are_a_manifest_error(tmp_path, capsys, server):
    a = server.add("/a/data.bin", A)
    b = server.add("/b/data.bin", B)
    m = write_manifest(tmp_path, "dup", [{"url": a}, {"url": b}])
    first = _manifest_error(capsys, server, m, tmp_path / "out", "files[1]", "files[0]")
    assert "'data.bin'" in first


def test_an_explicit_name_collides_too(tmp_path, capsys, server):
    a = server.add("/a.txt", A)
    b = server.add("/b.txt", B)
    files = [{"url": a, "dest": "x", "extract": False}, {"url": b, "name": "a.txt", "dest": "x"}]
    m = write_manifest(tmp_path, "dup", files)
    _manifest_error(capsys, server, m, tmp_path / "out", "files[1]", "'x/a.txt'")


def test_a_dest_inside_a_copied_file_is_a_manifest_error(tmp_path, capsys, server):
    a = server.add("/wavs", A)
    b = server.add("/one.wav", B)
    m = write_manifest(tmp_path, "inside", [{"url": a}, {"url": b, "dest": "wavs/sub"}])
    _manifest_error(capsys, server, m, tmp_path / "out", "files[1].dest", "'wavs'")


def test_subsets_that_collide_in_the_whole_dataset(tmp_path, capsys, server):
    a = server.add("/a/data.bin", A)
    b = server.add("/b/data.bin", B)
    m = tmp_path / "subs.toml"
    m.write_text(
        f'name = "subs"\n[[subsets.one.files]]\nurl = "{a}"\n[[subsets.two.files]]\nurl = "{b}"\n'
    )
    _manifest_error(capsys, server, m, tmp_path / "out", "subsets.two.files[0]", "subsets.one")


def test_same_name_in_different_folders_stages_both(tmp_path, capsys, server):
    a = server.add("/a/data.bin", A)
    b = server.add("/b/data.bin", B)
    m = write_manifest(tmp_path, "two", [{"url": a, "dest": "a"}, {"url": b, "dest": "b"}])
    code, _, err = cli(capsys, "get", str(m), "--to", str(tmp_path / "out"))
    assert code == 0, err
    staged = tree(tmp_path / "out" / "two")
    assert staged["a/data.bin"] == sha256(A)
    assert staged["b/data.bin"] == sha256(B)


def test_archives_of_the_same_name_may_share_a_folder(tmp_path):
    """Without ``extract = false`` an archive is unpacked, not copied: no collision at load."""
    from datastage.resolve.manifest import from_dict

    files = [{"url": "https://h/train/data.tar.gz"}, {"url": "https://h/test/data.tar.gz"}]
    assert len(from_dict({"name": "ok", "files": files}).files) == 2
    files = [dict(f, extract=False) for f in files]
    with pytest.raises(ManifestError, match=r"files\[1\]"):
        from_dict({"name": "bad", "files": files})


# -- URL schemes ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["htps://example.org/a.bin", "gopher://example.org/a.bin"])
def test_unsupported_scheme_in_url_is_a_manifest_error(tmp_path, capsys, server, bad):
    m = write_manifest(tmp_path, "scheme", [{"url": bad, "sha256": sha256(A)}])
    first = _manifest_error(capsys, server, m, tmp_path / "out", "files[0].url", bad)
    assert "unsupported URL scheme" in first and "https" in first


def test_unsupported_scheme_in_a_mirror_is_a_manifest_error(tmp_path, capsys, server):
    url = server.add("/a.bin", A)
    m = write_manifest(tmp_path, "mirror", [{"url": url, "mirrors": ["htps://x/a.bin"]}])
    _manifest_error(capsys, server, m, tmp_path / "out", "files[0].mirrors", "htps://x/a.bin")


def test_scheme_served_through_an_optional_library_loads(tmp_path, capsys):
    """ftp:// is in the sources table (via fsspec): the manifest is valid whether or not the
    library is installed; only fetching it needs the library."""
    m = write_manifest(tmp_path, "ftp", [{"url": "ftp://127.0.0.1:9/a.bin", "size": 3}])
    code, out, err = cli(capsys, "info", str(m))
    assert code == 0, err
    assert "ftp://127.0.0.1:9/a.bin" in out


# -- empty folder options -------------------------------------------------------------------


def test_get_to_empty_is_a_usage_error_and_stages_nothing(tmp_path, server):
    url = server.add("/a.bin", A)
    m = write_manifest(tmp_path, "tiny", [{"url": url, "sha256": sha256(A)}])
    work = tmp_path / "cwd"
    work.mkdir()
    done = run_cli("get", str(m), "--to", "", cwd=work)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: --to is empty")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert list(work.iterdir()) == []
    assert server.log == []


@pytest.mark.parametrize(
    "args",
    [
        ("verify", "demo", "--to", ""),
        ("info", "demo", "--to", ""),
        ("get", "demo", "--to", "out", "--cache", ""),
        ("stage", "src", "--to", ""),
        ("stage", "", "--to", "out"),
        ("pack", "src", "--to", ""),
        ("manifest", "src/f.txt", "-o", ""),
    ],
)
def test_other_empty_paths_are_usage_errors(tmp_path, capsys, monkeypatch, args):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.txt").write_bytes(A)
    monkeypatch.chdir(tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    code, out, err = cli(capsys, *args)
    assert code == 2, err
    assert out == ""
    assert err.startswith("error: ") and "is empty" in err.splitlines()[0], err
    assert {p.name for p in tmp_path.iterdir()} - before <= {"cache", "locks"}
    assert [p.name for p in (tmp_path / "src").iterdir()] == ["f.txt"]


def test_api_get_to_empty_raises_usage_error(tmp_path, server, monkeypatch):
    url = server.add("/a.bin", A)
    m = write_manifest(tmp_path, "tiny", [{"url": url, "sha256": sha256(A)}])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="--to is empty"):
        datastage.get(str(m), to="")
    assert not (tmp_path / "tiny").exists()
    assert server.log == []


# -- config values that would fail far from where they were set -----------------------------


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("to", "", "to cannot be empty"),
        ("cache_dir", "  ", "cache_dir cannot be empty"),
        ("shared_cache", "", "shared_cache cannot be empty"),
        ("shared_cache", "https://bucket/prefix", "an s3://bucket/prefix URL"),
    ],
)
def test_config_set_refuses_values_that_break_later(tmp_path, capsys, key, value, words):
    code, out, err = cli(capsys, "config", "set", key, value)
    assert code == 2, err
    assert out == "" and err.startswith("error: ") and words in err.splitlines()[0], err
    assert not (tmp_path / "config.toml").exists(), "nothing is saved"
    code, _, err = cli(capsys, "config", "list")  # the file still reads
    assert code == 0, err


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("DATASTAGE_RETRIES", "-1"),
        ("DATASTAGE_TIMEOUT", "nan"),
        ("DATASTAGE_TIMEOUT", "0"),
        ("DATASTAGE_BACKOFF", "inf"),
        ("DATASTAGE_LOCK_TIMEOUT", "-3"),
    ],
)
def test_unusable_network_patience_is_a_usage_error(
    tmp_path, capsys, monkeypatch, server, env, value
):
    url = server.add("/a.bin", A)
    m = write_manifest(tmp_path, "tiny", [{"url": url, "sha256": sha256(A)}])
    monkeypatch.setenv(env, value)
    code, out, err = cli(capsys, "get", str(m), "--to", str(tmp_path / "out"))
    assert code == 2, err
    assert out == "" and err.startswith("error: ") and env in err, err
    assert server.log == []
    assert not (tmp_path / "out").exists()


# -- a damaged marker -----------------------------------------------------------------------


@pytest.mark.parametrize("files", [None, 5, {"a/f.txt": "x"}, {"a/f.txt": {"sha256": "0"}}])
def test_stage_over_a_folder_whose_marker_is_damaged_stages_again(tmp_path, capsys, files):
    import json

    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "f.txt").write_bytes(A)
    code, out, err = cli(capsys, "stage", str(src), "--to", str(tmp_path / "out"))
    assert code == 0, err
    marker_path = tmp_path / "out" / "src" / ".datastage.json"
    marker = json.loads(marker_path.read_text())
    if files is None:
        del marker["files"]
    else:
        marker["files"] = files
    marker_path.write_text(json.dumps(marker))
    code, out, err = cli(capsys, "stage", str(src), "--to", str(tmp_path / "out"))
    assert code == 0, err
    assert out.strip() == str(tmp_path / "out" / "src")
    assert json.loads(marker_path.read_text())["files"]["a/f.txt"]["sha256"] == sha256(A)
    assert (tmp_path / "out" / "src" / "a" / "f.txt").read_bytes() == A


def test_pack_output_is_readable_by_others(tmp_path, capsys):
    src = tmp_path / "corpus"
    src.mkdir()
    (src / "a.wav").write_bytes(A)
    code, out, err = cli(capsys, "pack", str(src), "--to", str(tmp_path / "drive"))
    assert code == 0, err
    for made in ("corpus.tar", "corpus.toml"):
        assert (tmp_path / "drive" / made).stat().st_mode & 0o777 == 0o644, made
    assert Path(out.strip()) == tmp_path / "drive" / "corpus.toml"


@pytest.mark.parametrize(
    "files", ['"oops"', "null", '{"a.txt": 3}', '{"a.txt": {}}', '{"a.txt": {"size": "1"}}']
)
def test_a_damaged_marker_means_not_staged_never_an_internal_error(tmp_path, files):
    out = tmp_path / "out"
    staged = run_cli("get", "demo", "--to", str(out))
    assert staged.returncode == 0, staged.stderr
    marker = out / "demo" / ".datastage.json"
    data = json.loads(marker.read_text())
    marker.write_text(json.dumps({**data, "files": json.loads(files)}))
    checked = run_cli("verify", "demo", "--to", str(out))
    assert checked.returncode == 5 and "no valid .datastage.json" in checked.stderr
    assert "internal error" not in checked.stderr
    again = run_cli("get", "demo", "--to", str(out))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == str(out / "demo" / "LJSpeech-demo")
    # staged again, with a valid marker and the file list it vouches for
    assert json.loads(marker.read_text())["file_list"]["count"] > 0
    assert json.loads((out / "demo" / ".datastage-files.json").read_text())["files"]
