"""Bad input never reaches an internal error (exit 1) or a wrong success (issue 11 item 7, issue
17 item 8): empty targets, hostile TOML (deep, not UTF-8, surrogates, huge values), malformed
URLs, NUL and control characters, a config file that does not load, and every problem of a
manifest reported at once. Plus: a local folder with non-UTF-8 file names is staged faithfully.
"""

from __future__ import annotations

import os
import random
import re
import resource
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import pytest

from datastage import api
from datastage.core import errors, tomlio
from datastage.core.errors import ManifestError, UsageError
from datastage.resolve import manifest
from datastage.settings import configfile as userconfig
from tests.conftest import run_cli, sha256, tree
from tests.inprocess import cli

DATA = b"some bytes\n"


def _one_error(err: str, *words: str) -> str:
    """Exactly one `error:` line (maybe one `hint:`), containing ``words``; returns it."""
    lines = err.splitlines()
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) <= 2 and all(line.startswith(("error: ", "hint: ")) for line in lines), err
    assert "Traceback" not in err and "internal error" not in err, err
    for word in words:
        assert word in lines[0], f"{word!r} missing from: {err}"
    return lines[0]


@pytest.fixture
def ds(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``datastage ARGS`` through the real entry point, in this process (fast); ``cwd`` moves
    this test's working folder. The subprocess form (run_cli) is used where it matters."""

    def run(*args: str, cwd: Optional[Path] = None) -> SimpleNamespace:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        code, out, err = cli(capsys, *args)
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with a file in it: what an empty target used to stage (the cwd)."""
    src = tmp_path / "cwd"
    src.mkdir()
    (src / "a.txt").write_bytes(DATA)
    return src


# -- empty target ----


@pytest.mark.parametrize("target", ["", " ", "\t"])
def test_empty_target_is_a_usage_error_not_the_current_folder(tmp_path, folder, target):
    to = tmp_path / "out"
    done = run_cli("get", target, "--to", str(to), cwd=folder)
    assert done.returncode == 2, done.stderr
    _one_error(done.stderr, "the target is empty")
    assert done.stdout == ""
    assert not to.exists(), "nothing may be staged for an empty target"


@pytest.mark.parametrize("command", [["fetch"], ["info"], ["verify", "--to", "x"], ["unpin"]])
def test_empty_target_other_commands(ds, tmp_path, folder, command):
    done = ds(command[0], "", *command[1:], cwd=folder)
    assert done.returncode == 2, done.stderr
    _one_error(done.stderr, "the target is empty")


def test_empty_target_python_api(tmp_path, folder, monkeypatch):
    monkeypatch.chdir(folder)
    for target in ("", "  "):
        with pytest.raises(UsageError, match="the target is empty"):
            api.get(target, to=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- hostile TOML: manifests and the config file ----

DEEP = {
    "arrays": "name = 'x'\nfiles = " + "[" * 50_000 + "]" * 50_000 + "\n",
    "inline tables": "name = 'x'\nt = " + "{a = " * 50_000 + "1" + "}" * 50_000 + "\n",
    "dotted keys": "name = 'x'\n" + "a." * 50_000 + "b = 1\n",
    "moderately deep": "name = 'x'\nfiles = " + "[" * 200 + "]" * 200 + "\n",
}


@pytest.mark.parametrize(
    "key",
    [
        '"a\\"b"',  # an escaped quote used to end the pre-parse check's count of parts
        '"\\\\x"',
        "'lit'",
        ' "a\\"b" ',
    ],
)
@pytest.mark.parametrize("where", ["{} = 1", "[{}]", "[[{}]]", "t = {{ {} = 1 }}"])
def test_long_dotted_key_of_quoted_parts_is_refused_before_parsing(key, where):
    """tomllib's time grows with the square of a dotted key's parts (20,000 escaped-quote parts:
    ten seconds): every spelling of a part counts, so such a key never reaches it."""
    text = "name = 'x'\n" + where.format(".".join([key] * 2 * tomlio.MAX_DEPTH)) + "\n"
    with pytest.raises(tomlio.BadTOML, match="a dotted key nested more than"):
        tomlio.loads(text)
    short = "name = 'x'\n" + where.format(".".join([key] * 3)) + "\n"
    assert tomlio.loads(short)["name"] == "x"


NESTED = re.compile(r"nested (too deeply|more than \d+ levels deep)")


@pytest.mark.parametrize("kind", sorted(DEEP))
def test_deeply_nested_manifest_is_one_error(ds, tmp_path, kind):
    path = tmp_path / "deep.toml"
    path.write_text(DEEP[kind])
    done = ds("get", str(path), "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    line = _one_error(done.stderr, str(path))
    assert NESTED.search(line.split(str(path), 1)[1]), line


@pytest.mark.parametrize("kind", ["arrays", "dotted keys"])
def test_deeply_nested_config_is_one_error_with_a_hint(ds, tmp_path, folder, kind):
    config = Path(os.environ["DATASTAGE_CONFIG"])
    config.write_text(DEEP[kind].replace("name = 'x'\nfiles", "sources"))
    done = ds("get", "./", "--to", str(tmp_path / "out"), cwd=folder)
    assert done.returncode == 2, done.stderr
    line = _one_error(done.stderr, str(config))
    assert NESTED.search(line.split(str(config), 1)[1]), line
    assert done.stderr.splitlines()[1].startswith(f"hint: fix or delete {config}")


def test_config_that_is_not_utf8_is_one_error_with_a_hint(ds, tmp_path, folder):
    config = Path(os.environ["DATASTAGE_CONFIG"])
    config.write_bytes(b'to = "/data/caf\xe9"\n')  # Latin-1, as an old editor saves it
    for args in (
        ["get", "./", "--to", str(tmp_path / "out")],
        ["config", "get", "to"],
        ["fetch", "./"],
    ):
        done = ds(*args, cwd=folder)
        assert done.returncode == 2, (args, done.stderr)
        _one_error(done.stderr, str(config), "not UTF-8", "0xe9")
        assert done.stderr.splitlines()[1].startswith("hint: fix or delete"), done.stderr
    assert config.read_bytes() == b'to = "/data/caf\xe9"\n', "a broken config is never rewritten"


@pytest.mark.parametrize(
    "line, words",
    [
        ('to = "/a\\u0000b"', ["to must be a path"]),
        ("retries = 100000000000000000000", ["retries must be a whole number"]),
        ("retries = " + "9" * 5000, ["cannot be read"]),
        ('sources = ["/x", 3]', ["sources must be a list of paths"]),
        ("timeout = nan", ["timeout must be a number"]),
    ],
)
def test_config_values_that_would_crash_later_are_refused_at_load(
    ds, tmp_path, folder, line, words
):
    config = Path(os.environ["DATASTAGE_CONFIG"])
    config.write_text(line + "\n")
    done = ds("get", "./", "--to", str(tmp_path / "out"), cwd=folder)
    assert done.returncode == 2, done.stderr
    _one_error(done.stderr, str(config), *words)


# -- URLs: malformed, or with NUL / control characters ----


@pytest.mark.parametrize(
    "suffix, words",
    [
        ("\\u0000x", ["files[0].url", "NUL"]),
        ("\\r\\nX-Injected: 1", ["files[0].url", "control character"]),
        ("\\nx", ["files[0].url", "control character"]),
        ("\\tx", ["files[0].url", "control character"]),
        ("\\u007fx", ["files[0].url", "control character"]),
    ],
)
def test_control_characters_in_a_url_are_refused_before_any_request(
    ds, tmp_path, server, suffix, words
):
    url = server.add("/f.txt", DATA)
    path = tmp_path / "c.toml"
    path.write_text(f'name = "c"\n[[files]]\nurl = "{url}{suffix}"\n')
    done = ds("get", str(path), "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    _one_error(done.stderr, str(path), *words)
    assert server.log == [], "the URL must never reach the wire"


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://[::1/x.tar", ["is not a valid URL"]),
        ("http://127.0.0.1:99999/x.tar", ["is not a valid URL", "Port"]),
        ("http:///x.tar", ["has no host"]),
        ("/data/a\\u0000b.tar", ["NUL"]),
    ],
)
def test_malformed_urls_are_manifest_errors(ds, tmp_path, url, words):
    path = tmp_path / "u.toml"
    path.write_text(f'name = "u"\n[[files]]\nurl = "{url}"\nmirrors = ["{url}"]\n')
    done = ds("get", str(path), "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    assert "files[0].url" in done.stderr and "files[0].mirrors" in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    for word in words:
        assert word in done.stderr


@pytest.mark.parametrize("url", ["http://[::1/x", "http://127.0.0.1:99999/x"])
def test_malformed_url_target_is_a_usage_error(ds, tmp_path, url):
    done = ds("get", url, "--to", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    _one_error(done.stderr, "is not a valid URL")


# -- NUL in dest / name ----


@pytest.mark.parametrize("key", ["dest", "name", "root"])
def test_nul_in_a_path_key_is_a_manifest_error(ds, tmp_path, server, key):
    url = server.add("/f.txt", DATA)
    entry = f'url = "{url}"\n'
    top = 'name = "n"\n'
    if key == "root":
        top += 'root = "a\\u0000b"\n'
    else:
        entry += f'{key} = "a\\u0000b"\n'
    path = tmp_path / "n.toml"
    path.write_text(f"{top}[[files]]\n{entry}")
    done = ds("get", str(path), "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    _one_error(done.stderr, str(path), key, "NUL")
    assert server.log == []


def test_too_long_names_are_manifest_errors(ds, tmp_path, server):
    url = server.add("/f.txt", DATA)
    path = tmp_path / "l.toml"
    path.write_text(f'name = "l"\n[[files]]\nurl = "{url}"\nname = "{"x" * 300}"\n')
    done = ds("get", str(path), "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    line = _one_error(done.stderr, str(path), "files[0].name", "longer than a file name")
    assert len(line) < 400, "a long value is quoted shortened"


# -- a local folder with file names that are not UTF-8 ----


def test_non_utf8_file_names_are_staged_faithfully(tmp_path):
    src = tmp_path / "latin1"
    src.mkdir()
    (src / "ok.txt").write_bytes(b"plain\n")
    odd_dir, odd_file = os.fsdecode(b"caf\xe9"), os.fsdecode(b"\xff\xfe-data.bin")
    (src / odd_dir).mkdir()
    (src / odd_dir / odd_file).write_bytes(DATA)
    (src / odd_file).write_bytes(b"top\n")
    to = tmp_path / "out"
    done = run_cli("get", str(src), "--to", str(to))
    assert done.returncode == 0, done.stderr
    staged = to / "latin1"
    assert done.stdout.strip() == str(staged)
    assert (staged / odd_dir / odd_file).read_bytes() == DATA
    assert (staged / odd_file).read_bytes() == b"top\n"
    names = {os.fsencode(p.relative_to(staged)) for p in staged.rglob("*")}
    assert {b"caf\xe9/\xff\xfe-data.bin", b"\xff\xfe-data.bin", b"ok.txt"} <= names
    assert run_cli("verify", str(src), "--to", str(to)).returncode == 0
    again = run_cli("get", str(src), "--to", str(to))
    assert again.returncode == 0 and again.stdout.strip() == str(staged), again.stderr
    assert tree(staged)[f"{odd_dir}/{odd_file}"] == sha256(DATA)


# -- the config file: written with a real TOML writer ----


def test_config_set_with_a_newline_writes_toml_that_loads(ds, tmp_path, folder):
    target = tmp_path / 'odd\nname "quoted" \\ back'
    done = ds("config", "set", "to", str(target))
    assert done.returncode == 0, done.stderr
    got = ds("config", "get", "to")
    assert got.returncode == 0, got.stderr
    assert got.stdout == f"{target}\n"
    staged = ds("get", "./", cwd=folder)  # no --to: the configured folder is used
    assert staged.returncode == 0, staged.stderr
    root = Path(staged.stdout.strip())
    assert root.parent == target and (root / "a.txt").read_bytes() == DATA
    assert ds("config", "list").returncode == 0


@pytest.mark.parametrize(
    "key, value, words",
    [("retries", "-1", ["retries must be"]), ("backoff", "nan", ["backoff must be"])],
)
def test_config_set_refuses_what_the_file_could_not_load(ds, key, value, words):
    done = ds("config", "set", key, "--", value)
    assert done.returncode == 2, done.stderr
    _one_error(done.stderr, *words)
    assert not Path(os.environ["DATASTAGE_CONFIG"]).exists()


# -- every problem of a manifest at once ----


def test_all_manifest_problems_reported_at_once(ds, tmp_path, server):
    url = server.add("/f.txt", DATA)
    path = tmp_path / "many.toml"
    path.write_text(
        'name = "Bad Name"\n'
        'descripton = "typo"\n'
        "[[files]]\n"
        f'url = "{url}"\n'
        "size = -3\n"
        'sha256 = "abc"\n'
        "[[files]]\n"
        'url = "htps://example.org/b.txt"\n'
        'dest = "../up"\n'
        "[[files]]\n"
        'extract = "yes"\n'
    )
    done = ds("get", str(path), "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == f"error: manifest {path}: 8 problems", done.stderr
    problems = lines[1:]
    assert len(problems) == 8, done.stderr
    assert all(line.startswith(f"  manifest {path}: ") for line in problems), done.stderr
    for key in (
        "name:",
        "descripton: unknown key (did you mean 'description'?)",
        "files[0].size:",
        "files[0].sha256:",
        "files[1].url: unsupported URL scheme",
        "files[1].dest:",
        "files[2].url: missing",
        "files[2].extract:",
    ):
        assert sum(key in line for line in problems) == 1, f"{key!r} not once in {done.stderr}"
    assert "Traceback" not in done.stderr
    assert server.log == [], "validation happens before any network access"
    assert not (tmp_path / "out").exists()


def test_many_problems_are_capped_and_python_sees_them_all(ds, tmp_path):
    path = tmp_path / "lots.toml"
    path.write_text('name = "lots"\n' + "[[files]]\nsize = -1\n" * 30)
    done = ds("get", str(path), "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == f"error: manifest {path}: 60 problems"
    assert len(lines) == 1 + 20 + 1 and lines[-1] == "  ... and 40 more", done.stderr
    with pytest.raises(errors.InvalidManifest) as e:
        manifest.load(path)
    assert len(e.value.problems) == 60
    assert "\n" not in str(e.value) and "files[29].size" in str(e.value)


def test_one_problem_is_still_one_line(ds, tmp_path):
    path = tmp_path / "one.toml"
    path.write_text('name = "one"\n[[files]]\nurl = "http://127.0.0.1:9/a"\nsize = -1\n')
    done = ds("get", str(path), "--to", str(tmp_path / "out"))
    assert done.returncode == 3
    assert done.stderr == (
        f"error: manifest {path}: files[0].size: must be a whole number of bytes, got -1\n"
    )


# -- the CLI's own arguments ----


@pytest.mark.parametrize("name", ["a/b", "..", "", " ", "Up/per", "x" * 300, "ok\n", "-dash"])
def test_bad_name_option_is_a_usage_error(ds, tmp_path, folder, name):
    done = ds("get", "./", "--to", str(tmp_path / "out"), "--name", name, cwd=folder)
    assert done.returncode == 2, done.stderr
    _one_error(done.stderr, "--name")
    assert not (tmp_path / "out").exists()


def test_name_option_keeps_its_case(ds, tmp_path, folder):
    """A one-liner's folder keeps the case the user gives it, as it keeps a file's own name."""
    done = ds("get", "./", "--to", str(tmp_path / "out"), "--name", "My_Corpus", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "My_Corpus").is_dir()


# -- a small fuzz of both loaders ----

_VALUES = [
    0, -1, 2**63, 2**64 + 1, 1.5, float("inf"), float("nan"), True, "", " ", "a\x00b",
    "x" * 20_000, "http://[::1/x", "http://h:99999/x", "h\r\nttp://x", "../..", "/abs", "~",
    [], [1], ["a", 2], [[[[]]]], {}, {"a": {"b": [1]}}, "a" * 300, "htps://x", "\x7f",
]  # fmt: skip


def _fuzzed_manifest(rnd: random.Random) -> str:
    import tomli_w

    entry: dict = {"url": "http://127.0.0.1:9/a.tar"}
    doc: dict = {"name": "ok", "files": [entry]}
    for _ in range(rnd.randint(1, 4)):
        where = rnd.random()
        if where < 0.5:
            entry[rnd.choice(sorted(manifest.FILE_KEYS))] = rnd.choice(_VALUES)
        elif where < 0.75:
            doc[rnd.choice(sorted(manifest.TOP_KEYS))] = rnd.choice(_VALUES)
        else:
            sub = rnd.choice(["a", "B", "x" * 300])
            if not isinstance(doc.get("subsets"), dict):
                doc["subsets"] = {}
            doc["subsets"][sub] = rnd.choice(
                [*_VALUES, {"files": [{"url": "http://h/b"}]}, {"includes": ["zz"]}]
            )
    return tomli_w.dumps(doc)


def test_fuzzed_manifests_and_configs_are_one_line_errors(tmp_path, monkeypatch):
    rnd = random.Random(11)
    path = tmp_path / "fuzz.toml"
    config = Path(os.environ["DATASTAGE_CONFIG"])
    for i in range(300):
        kind = i % 5
        if kind == 0:
            raw = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 120)))
        elif kind == 1:
            n = rnd.choice([70, 1000, 30_000])
            raw = rnd.choice([b"a=" + b"[" * n + b"]" * n, b"a." * n + b"b=1", b"a=" + b"7" * n])
        else:
            raw = _fuzzed_manifest(rnd).encode()
        path.write_bytes(raw)
        try:
            manifest.load(path)
        except ManifestError as e:
            assert "\n" not in str(e) and len(str(e)) < 20_000, str(e)[:300]
        config.write_bytes(raw if kind < 2 else _fuzzed_config(rnd))
        try:
            userconfig.load()
        except UsageError as e:
            assert "\n" not in str(e) and len(str(e)) < 20_000, str(e)[:300]


def _fuzzed_config(rnd: random.Random) -> bytes:
    import tomli_w

    return tomli_w.dumps({rnd.choice(sorted(userconfig.KEYS)): rnd.choice(_VALUES)}).encode()


def test_fuzz_case_through_the_cli(capsys, tmp_path):
    """One fuzzed manifest with wrong types in every file key, through the real entry point."""
    import tomli_w

    entry = {key: value for key, value in zip(sorted(manifest.FILE_KEYS), _VALUES[8:])}
    path = tmp_path / "every.toml"
    path.write_text(tomli_w.dumps({"name": "every", "files": [entry]}))
    code, _, err = cli(capsys, "get", str(path), "--to", str(tmp_path / "out"))
    assert code == 3, err
    assert err.splitlines()[0].startswith(f"error: manifest {path}: ")
    assert "Traceback" not in err and "internal error" not in err
    assert all(len(line) < 600 for line in err.splitlines()), err


@pytest.mark.parametrize(
    "args, words",
    [
        (["get", "s3://b/k", "--s3-endpoint", "http://[::1"], ["--s3-endpoint", "not a valid URL"]),
        (
            ["get", "hf://datasets/a/b/x", "--hf-endpoint", "https://m.example,http://[::1"],
            ["--hf-endpoint", "not a valid URL"],
        ),
        (["manifest", "http://[::1/x"], ["not a valid URL"]),
        (["manifest", "http://127.0.0.1:9/a\nb"], ["control character"]),
    ],
)
def test_malformed_urls_in_options_and_manifest_command(ds, tmp_path, args, words):
    done = ds(*args, *(["--to", str(tmp_path / "out")] if args[0] == "get" else []))
    assert done.returncode == 2, done.stderr
    _one_error(done.stderr, *words)


def test_manifest_of_a_non_utf8_file_loads_and_stages_the_same_name(ds, tmp_path):
    odd = tmp_path / os.fsdecode(b"caf\xe9") / os.fsdecode(b"\xe9t\xe9.bin")
    odd.parent.mkdir()
    odd.write_bytes(DATA)
    out = tmp_path / "m.toml"
    made = ds("manifest", str(odd), "-o", str(out), "--name", "odd", "-q")
    assert made.returncode == 0, made.stderr
    assert "file://" in out.read_text(encoding="utf-8")  # percent-encoded: valid UTF-8 TOML
    done = ds("get", str(out), "--to", str(tmp_path / "out"), "-q")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "odd" / os.fsdecode(b"\xe9t\xe9.bin")).read_bytes() == DATA


@pytest.mark.parametrize(
    "variable, value, target",
    [
        ("HF_ENDPOINT", "http://[::1", "hf://datasets/a/b"),
        ("HF_ENDPOINT", "https://m.example,http://127.0.0.1:99999", "hf://datasets/a/b"),
        ("AWS_ENDPOINT_URL", "http://[::1", "s3://b/k.zip"),
        ("DATASTAGE_GDRIVE_ENDPOINT", "http://[::1", "gdrive://abc"),
        ("DATASTAGE_SHARED_CACHE", "s3://[::1", "FILE"),
    ],
)
def test_malformed_urls_in_the_environment_are_usage_errors(
    ds, tmp_path, monkeypatch, variable, value, target
):
    """The environment is checked like the flags: it used to be an internal error (exit 1)."""
    (tmp_path / "f.txt").write_bytes(DATA)
    monkeypatch.setenv(variable, value)
    target = str(tmp_path / "f.txt") if target == "FILE" else target
    done = ds("get", target, "--to", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    _one_error(done.stderr, variable, "not a valid URL")
    assert done.stderr.splitlines()[1] == f"hint: fix or unset {variable}"
    assert not (tmp_path / "out").exists()


def test_config_set_refuses_a_shared_cache_url_that_cannot_be_parsed(ds):
    done = ds("config", "set", "shared_cache", "s3://[::1")
    assert done.returncode == 2, done.stderr
    _one_error(done.stderr, "shared_cache")
    assert not Path(os.environ["DATASTAGE_CONFIG"]).exists()


@pytest.mark.parametrize(
    "url, words",
    [
        ("file://{dir}/f%00.txt", ["NUL"]),  # %00 decodes to a NUL in the path: exit 1 before
        ("file://{dir}/%00", ["NUL"]),
        ("file://elsewhere{dir}/f.txt", ["names the host"]),  # read the local path instead
    ],
)
def test_file_urls_that_name_no_local_path_are_refused(ds, tmp_path, url, words):
    (tmp_path / "f.txt").write_bytes(DATA)
    url = url.format(dir=tmp_path)
    path = tmp_path / "m.toml"
    path.write_text(f'name = "t"\n[[files]]\nurl = "{url}"\nname = "x.txt"\n')
    done = ds("get", str(path), "--to", str(tmp_path / "out"))
    assert done.returncode == 3, done.stderr
    assert "files[0].url" in _one_error(done.stderr, *words)
    done = ds("get", url, "--to", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    _one_error(done.stderr, *words)
    assert not (tmp_path / "out").exists()


def _not_a_file(tmp_path: Path, kind: str, name: str) -> Path:
    """A FIFO (``open`` blocks for ever) or a link to /dev/zero (reading fills the memory)."""
    path = tmp_path / name
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    return path


def _run_capped(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """run_cli with 2 GiB of address space: reading /dev/zero ends in MemoryError, not swap."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run(
        [sys.executable, "-m", "datastage", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
        preexec_fn=cap,
    )


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_a_registry_manifest_that_is_no_regular_file_is_one_error(tmp_path, kind):
    registry = tmp_path / "registry"
    registry.mkdir()
    _not_a_file(registry, kind, "trap.toml")
    env = {"DATASTAGE_REGISTRY": str(registry)}
    for args in (["info", "trap"], ["info", str(registry / "trap.toml")]):
        done = _run_capped(*args, env=env)
        assert done.returncode == 3, done.stderr
        _one_error(done.stderr, "trap.toml", "not a regular file")


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_a_config_file_that_is_no_regular_file_is_one_error(tmp_path, folder, kind):
    config = _not_a_file(tmp_path, kind, "config.toml")
    done = _run_capped(
        "get", str(folder), "--to", str(tmp_path / "out"), env={"DATASTAGE_CONFIG": str(config)}
    )
    assert done.returncode == 2, done.stderr
    _one_error(done.stderr, str(config), "not a regular file")
    assert "delete" not in done.stderr  # never "delete /dev/zero"
    assert not (tmp_path / "out").exists()


def test_a_manifest_larger_than_the_limit_is_one_error(ds, tmp_path, monkeypatch):
    monkeypatch.setattr(tomlio, "MAX_BYTES", 1000)
    path = tmp_path / "big.toml"
    path.write_text("name = 'x'\n" + "# padding\n" * 200)
    done = ds("info", str(path))
    assert done.returncode == 3, done.stderr
    _one_error(done.stderr, str(path), "larger than")


@pytest.mark.parametrize(
    "raw", [b"back\\slash", b"p%25 #?.bin", b"nl\nx", b"\xe9\\t\xe9 %2F#?.bin", b"%", b"\\"]
)
def test_local_file_names_are_staged_byte_for_byte(tmp_path, raw):
    """A backslash is an ordinary character of a local name (it became a folder); %, #, ?,
    spaces and newlines, UTF-8 or not, come back as the same bytes."""
    src = tmp_path / "src"
    src.mkdir()
    (src / os.fsdecode(raw)).write_bytes(DATA)
    to = tmp_path / "out"
    for target, name in ((src / os.fsdecode(raw), "one"), (src, "all")):
        done = run_cli("get", str(target), "--to", str(to), "--name", name)
        assert done.returncode == 0, done.stderr
        staged = to / name
        assert sorted(os.listdir(os.fsencode(staged))) == sorted(
            [b".datastage.json", b".datastage-files.json", raw]
        )
        assert (staged / os.fsdecode(raw)).read_bytes() == DATA


@pytest.mark.parametrize("count", [1, 2])
def test_manifest_problems_seen_from_python_hide_credentials(count):
    """``e.problems`` and ``e.summary`` are what a notebook shows: redacted like ``str(e)``."""
    urls = ["http://u:SECRETPW@[::1/x?token=SECRETTOK", "htps://u:SECRETPW@h/x"][:count]
    with pytest.raises(errors.InvalidManifest) as caught:
        manifest.from_dict({"name": "x", "files": [{"url": u} for u in urls]})
    e = caught.value
    assert len(e.problems) == count
    for text in (*e.problems, e.summary, str(e)):
        assert "SECRET" not in text, text
    assert "***@" in e.problems[0]


def test_verify_without_to_uses_the_same_default_as_get(tmp_path):
    """`verify NAME` without --to resolves the folder as `get` does, never a TypeError."""
    env = {
        "DATASTAGE_PLATFORM": "local",
        "DATASTAGE_CONFIG": str(tmp_path / "none.toml"),
        "DATASTAGE_TO": "",
    }
    done = run_cli("verify", "demo", env=env)
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.splitlines()[0]
        == "error: --to is required on this machine (no platform default)"
    )
    staged = run_cli("get", "demo", env={**env, "DATASTAGE_TO": str(tmp_path / "data")})
    assert staged.returncode == 0, staged.stderr
    verified = run_cli("verify", "demo", env={**env, "DATASTAGE_TO": str(tmp_path / "data")})
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip() == staged.stdout.strip()
