"""Manifest validation from the outside: one-line errors naming the file and the key, exit 3,
and not a single request to the server (validation happens before any network access)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import run_cli, sha256, tree, write_manifest
from tests.inprocess import cli

DATA = b"the file's bytes\n"
GOOD_SHA256 = sha256(DATA)


def _write(folder: Path, text: str, name: str = "bad") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def _assert_manifest_error(
    capsys, server, manifest: Path, to: Path, *words: str, where: str = ""
) -> str:
    code, out, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 3, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) in (1, 2) and lines[0].startswith("error: "), err
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), err
    assert "Traceback" not in err
    assert str(where or manifest) in lines[0], f"the error must name the file: {err}"
    for word in words:
        assert word in lines[0], f"{word!r} missing from: {err}"
    assert server.log == [], "a bad manifest must not cause any network request"
    assert not (to / manifest.stem).exists()
    return lines[0]


@pytest.fixture
def url(server) -> str:
    return server.add("/f.txt", DATA)


@pytest.fixture
def to(tmp_path: Path) -> Path:
    return tmp_path / "out"


def test_missing_url(tmp_path, capsys, server, url, to):
    m = _write(tmp_path, f'name = "bad"\n[[files]]\nsha256 = "{GOOD_SHA256}"\n')
    _assert_manifest_error(capsys, server, m, to, "files[0].url", "missing")


def test_missing_url_in_second_file(tmp_path, capsys, server, url, to):
    m = _write(tmp_path, f'name = "bad"\n[[files]]\nurl = "{url}"\n[[files]]\nsize = 3\n')
    _assert_manifest_error(capsys, server, m, to, "files[1].url")


@pytest.mark.parametrize(
    ("algorithm", "value"),
    [
        ("md5", "0" * 31),
        ("sha1", "g" * 40),
        ("sha256", GOOD_SHA256[:-1]),
        ("sha256", "sha256:" + GOOD_SHA256),
        ("sha512", "z" * 128),
        ("sha512", GOOD_SHA256),  # a sha256 where a sha512 belongs
    ],
)
def test_malformed_digest(tmp_path, capsys, server, url, to, algorithm, value):
    m = write_manifest(tmp_path, "bad", [{"url": url, algorithm: value}])
    line = _assert_manifest_error(capsys, server, m, to, f"files[0].{algorithm}", "hex")
    assert value in line, "the error should show the offending value"


def test_digest_of_wrong_type(tmp_path, capsys, server, url, to):
    m = _write(tmp_path, f'name = "bad"\n[[files]]\nurl = "{url}"\nsha256 = 12\n')
    _assert_manifest_error(capsys, server, m, to, "files[0].sha256")


@pytest.mark.parametrize(
    ("text", "key", "suggestion"),
    [
        ('name = "bad"\nrooot = "x"\n[[files]]\nurl = "{url}"\n', "rooot", "root"),
        ('name = "bad"\n[[files]]\nurl = "{url}"\nsha265 = "{sha}"\n', "files[0].sha265", "sha256"),
        (
            'name = "bad"\n[[files]]\nurl = "{url}"\nextarct = false\n',
            "files[0].extarct",
            "extract",
        ),
        (
            'name = "bad"\n[[files]]\nurl = "{url}"\nmirror = ["{url}"]\n',
            "files[0].mirror",
            "mirrors",
        ),
    ],
)
def test_unknown_key_with_did_you_mean(tmp_path, capsys, server, url, to, text, key, suggestion):
    m = _write(tmp_path, text.format(url=url, sha=GOOD_SHA256))
    line = _assert_manifest_error(capsys, server, m, to, key, "unknown key")
    assert f"did you mean '{suggestion}'" in line


def test_unknown_key_without_a_close_match(tmp_path, capsys, server, url, to):
    m = _write(tmp_path, f'name = "bad"\nzzz = 1\n[[files]]\nurl = "{url}"\n')
    line = _assert_manifest_error(capsys, server, m, to, "zzz", "unknown key")
    assert "did you mean" not in line


def test_toml_syntax_error(tmp_path, capsys, server, url, to):
    m = _write(tmp_path, f'name = "bad"\n[[files]]\nurl = "{url}\nsize = 3\n')
    _assert_manifest_error(capsys, server, m, to, "TOML syntax error", "line 3")


def test_missing_manifest_file(tmp_path, capsys, server, to):
    missing = tmp_path / "nope.toml"
    _assert_manifest_error(capsys, server, missing, to, "no such file")


def test_missing_manifest_file_in_a_subprocess(tmp_path, server):
    done = run_cli("get", "./nope.toml", "--to", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 3
    assert done.stderr.startswith("error: manifest nope.toml: no such file"), done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stdout == ""


def test_manifest_that_is_not_utf8(tmp_path, capsys, server, to):
    m = tmp_path / "bad.toml"
    m.write_bytes(b'name = "\xff\xfe"\n')
    _assert_manifest_error(capsys, server, m, to, "cannot read")


def test_manifest_path_is_a_folder(tmp_path, capsys, server, to):
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    code, _, err = cli(capsys, "get", str(folder), "--to", str(to))
    assert code == 3, err
    assert err.startswith(f"error: manifest {folder}") and "Traceback" not in err


@pytest.mark.parametrize("name", ["My Data", "UPPER", "-dash", "a/b", "", "ünï"])
def test_bad_name(tmp_path, capsys, server, url, to, name):
    m = write_manifest(tmp_path, "bad", [{"url": url}])
    m.write_text(m.read_text().replace('name = "bad"', f'name = "{name}"'))
    _assert_manifest_error(capsys, server, m, to, "name")


def test_name_of_wrong_type_or_missing(tmp_path, capsys, server, url, to):
    m = _write(tmp_path, f'name = 3\n[[files]]\nurl = "{url}"\n')
    _assert_manifest_error(capsys, server, m, to, "name")
    m = _write(tmp_path, f'[[files]]\nurl = "{url}"\n')
    _assert_manifest_error(capsys, server, m, to, "name", "missing")


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('size = "12"', "files[0].size"),
        ("size = -1", "files[0].size"),
        ("size = 1.5", "files[0].size"),
        ("size = true", "files[0].size"),
        ('extract = "no"', "files[0].extract"),
        ("extract = 1", "files[0].extract"),
        ('mirrors = "http://127.0.0.1:9/x"', "files[0].mirrors"),
        ("mirrors = [1]", "files[0].mirrors"),
        ("unpacked_size = -5", "files[0].unpacked_size"),
        ("dest = 7", "files[0].dest"),
        ('name = ""', "files[0].name"),
        ('name = "a/b"', "files[0].name"),
        ('name = ".."', "files[0].name"),
        ("url = 5", "files[0].url"),
    ],
)
def test_wrong_types_in_a_file_entry(tmp_path, capsys, server, url, to, line, key):
    body = f'url = "{url}"\n{line}\n' if not line.startswith("url") else line + "\n"
    m = _write(tmp_path, f'name = "bad"\n[[files]]\n{body}')
    _assert_manifest_error(capsys, server, m, to, key)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('name = "bad"\n', "files"),
        ('name = "bad"\nfiles = []\n', "files"),
        ('name = "bad"\nfiles = "x"\n', "files"),
        ('name = "bad"\nfiles = ["x"]\n', "files[0]"),
        ('name = "bad"\ndescription = 3\n[[files]]\nurl = "{url}"\n', "description"),
        ('name = "bad"\nroot = ["a"]\n[[files]]\nurl = "{url}"\n', "root"),
    ],
)
def test_wrong_types_at_the_top(tmp_path, capsys, server, url, to, text, key):
    m = _write(tmp_path, text.format(url=url))
    _assert_manifest_error(capsys, server, m, to, key)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("dest", "../up"),
        ("dest", "/abs"),
        ("dest", "a/../../b"),
        ("dest", "..\\\\up"),
        ("dest", "~/home"),
        ("dest", "."),
        ("root", ".."),
        ("root", "/etc"),
        ("root", "x/../.."),
        ("root", "~"),
    ],
)
def test_unsafe_dest_and_root(tmp_path, capsys, server, url, to, where, value):
    if where == "dest":
        text = f'name = "bad"\n[[files]]\nurl = "{url}"\ndest = "{value}"\n'
        key = "files[0].dest"
    else:
        text = f'name = "bad"\nroot = "{value}"\n[[files]]\nurl = "{url}"\n'
        key = "root"
    m = _write(tmp_path, text)
    before = {k: v for k, v in tree(tmp_path).items() if not k.startswith("cache")}
    _assert_manifest_error(capsys, server, m, to, key, "relative path")
    after = {k: v for k, v in tree(tmp_path).items() if not k.startswith("cache")}
    assert after == before


def test_registry_manifest_whose_name_does_not_match_its_file(tmp_path, capsys, server, url, to):
    registry = tmp_path / "reg"
    registry.mkdir()
    m = write_manifest(registry, "other", [{"url": url}])
    m.rename(registry / "mine.toml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATASTAGE_REGISTRY", str(registry))
        code, _, err = cli(capsys, "get", "mine", "--to", str(to))
    assert code == 3 and "mine.toml" in err and "name" in err
    assert server.log == []


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256", "sha512"])
def test_each_algorithm_pins_the_file(tmp_path, capsys, server, url, to, algorithm):
    good = hashlib.new(algorithm, DATA).hexdigest()
    m = write_manifest(tmp_path, "ok", [{"url": url, algorithm: good.upper()}])
    code, out, err = cli(capsys, "get", str(m), "--to", str(to))
    assert code == 0, err
    assert (Path(out.strip()) / "f.txt").read_bytes() == DATA

    wrong = hashlib.new(algorithm, DATA + b"x").hexdigest()
    m = write_manifest(tmp_path, "wrong", [{"url": url, algorithm: wrong}])
    code, out, err = cli(capsys, "get", str(m), "--to", str(to))
    assert code == 5, err
    assert wrong in err and good in err, "a mismatch shows expected and actual"
    assert not (to / "wrong").exists()


def test_several_pins_must_all_hold(tmp_path, capsys, server, url, to):
    pins = {"md5": hashlib.md5(DATA).hexdigest(), "sha512": hashlib.sha512(b"other").hexdigest()}
    m = write_manifest(tmp_path, "two", [{"url": url, **pins}])
    code, _, err = cli(capsys, "get", str(m), "--to", str(to))
    assert code == 5, err
    assert not (to / "two").exists()
