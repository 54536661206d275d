"""The CLI contract from the outside: stdout carries the path only, errors are one line, exit
codes, list/info/verify, cache precedence, the no-network repeat, entry points and the demo."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

import datastage
from tests.archives import make_tar
from tests.conftest import payload, run_cli, sha256, write_manifest
from tests.inprocess import cli
from tests.procs import kill9

FILES = {"top/a.txt": b"alpha\n", "top/sub/b.bin": payload(300_000, seed=11)}
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def archive() -> bytes:
    return make_tar(FILES, "gz")


@pytest.fixture
def manifest(tmp_path, server, archive) -> Path:
    url = server.add("/ds.tar.gz", archive)
    spec = {"url": url, "sha256": sha256(archive), "size": len(archive)}
    return write_manifest(tmp_path, "ds", [spec], root="top", description="test data")


@pytest.fixture
def to(tmp_path) -> Path:
    return tmp_path / "out"


def _one_error(err: str) -> str:
    lines = err.splitlines()
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) <= 2 and all(x.startswith(("error: ", "hint: ")) for x in lines), err
    assert "Traceback" not in err
    return lines[0]


# -- get: stdout, stderr -----------------------------------------------------------------------


def test_get_prints_only_the_root_on_stdout(manifest, to, server):
    done = run_cli("get", str(manifest), "--to", str(to))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{to / 'ds' / 'top'}\n"
    assert (to / "ds" / "top" / "sub" / "b.bin").read_bytes() == FILES["top/sub/b.bin"]
    again = run_cli("get", str(manifest), "--to", str(to))
    assert again.returncode == 0 and again.stdout == done.stdout


def _run_with_tty_stderr(*args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal (so progress bars show), stdout piped."""
    master, slave = pty.openpty()
    # a fresh pty is 0x0 and tqdm draws nothing in zero columns; give it a real terminal's size
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "datastage", *args], stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read() if proc.stdout else b""
    code = proc.wait(30)
    os.close(master)
    return code, out.decode(), b"".join(chunks).decode(errors="replace")


def test_progress_goes_to_stderr_never_stdout(tmp_path, server, to):
    data = make_tar({"big.bin": payload(3_000_000, seed=2)}, "gz")
    url = server.add("/big.tar.gz", data, rate=6_000_000)
    m = write_manifest(tmp_path, "big", [{"url": url, "sha256": sha256(data)}])
    code, out, err = _run_with_tty_stderr("get", str(m), "--to", str(to))
    assert code == 0, err
    assert out == f"{to / 'big'}\n"
    assert "%" in err or "B/s" in err, f"expected a progress bar on the terminal: {err!r}"

    shutil.rmtree(to)
    code, out, err = _run_with_tty_stderr("get", str(m), "--to", str(to), "--quiet")
    assert code == 0, err
    assert out == f"{to / 'big'}\n"
    assert err == "", "--quiet must silence progress and messages"


def test_quiet_silences_messages(tmp_path, server, to):
    url = server.add("/plain.bin", b"unpinned")
    m = write_manifest(tmp_path, "plain", [{"url": url}])
    loud = run_cli("get", str(m), "--to", str(to))
    assert loud.returncode == 0 and "pinned on first use" in loud.stderr, loud.stderr
    assert loud.stdout == f"{to / 'plain'}\n"
    shutil.rmtree(to)
    fresh = {"DATASTAGE_CACHE": str(tmp_path / "fresh-cache")}  # the pin would be said again
    quiet = run_cli("get", str(m), "--to", str(to), "-q", env=fresh)
    assert quiet.returncode == 0 and quiet.stdout == loud.stdout
    assert quiet.stderr == ""


def test_debug_shows_a_traceback_normal_mode_never(tmp_path, server, to):
    url = server.add("/gone.bin", b"x")
    server.files.pop("/gone.bin")
    m = write_manifest(tmp_path, "gone", [{"url": url, "size": 1}])
    normal = run_cli("get", str(m), "--to", str(to))
    assert normal.returncode == 4
    _one_error(normal.stderr)
    for args in (("get", str(m), "--to", str(to), "--debug"), ("--debug", "get", str(m))):
        debug = run_cli(*args, "--to", str(to)) if args[0] == "--debug" else run_cli(*args)
        assert debug.returncode == 4, debug.stderr
        assert "Traceback (most recent call last)" in debug.stderr
        assert debug.stderr.splitlines()[-2].startswith("error: ") or debug.stderr.splitlines()[
            -1
        ].startswith("error: ")
    env_debug = run_cli("get", str(m), "--to", str(to), env={"DATASTAGE_DEBUG": "1"})
    assert "Traceback" in env_debug.stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("get", "demo"), 2),  # missing --to
        (("bogus",), 2),
        (("get", "demo", "--to", "x", "--frobnicate"), 2),
        (("get", "ljspeeh", "--to", "x"), 3),
        (("verify", "nothing-like-it", "--to", "x"), 3),
        (("info", "nothing-like-it"), 3),
    ],
)
def test_user_errors_are_one_line(capsys, tmp_path, monkeypatch, args, code):
    monkeypatch.chdir(tmp_path)
    got, out, err = cli(capsys, *args)
    assert got == code, err
    assert out == ""
    _one_error(err)


def test_unknown_dataset_suggests_a_name(capsys, tmp_path):
    code, _, err = cli(capsys, "get", "ljspeeh", "--to", str(tmp_path))
    assert code == 3
    assert err.splitlines() == [
        "error: unknown dataset 'ljspeeh'",
        "hint: did you mean 'ljspeech'?",
    ]
    code, _, err = cli(capsys, "info", "dmeo")
    assert code == 3 and "did you mean 'demo'" in err


def test_bad_environment_value_is_a_one_line_error(capsys, tmp_path, manifest, monkeypatch):
    monkeypatch.setenv("DATASTAGE_RETRIES", "many")
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(tmp_path / "o"))
    assert code == 2
    assert "DATASTAGE_RETRIES" in _one_error(err)


def test_to_is_a_file(capsys, tmp_path, manifest):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(not_a_dir))
    assert code != 0 and code != 1, err
    _one_error(err)
    assert not_a_dir.read_text() == "x"


# -- list, info ------------------------------------------------------------------------------


def test_list_and_list_json(capsys):
    code, out, err = cli(capsys, "list")
    assert code == 0, err
    rows = out.splitlines()
    assert rows[0].split()[:3] == ["NAME", "SIZE", "LICENSE"]
    names = [r.split()[0] for r in rows[1:]]
    assert {"demo", "ljspeech"} <= set(names)
    code, out, err = cli(capsys, "list", "--json")
    assert code == 0, err
    by_name = {row["name"]: row for row in json.loads(out)}
    assert by_name["ljspeech"]["size"] == 2748572632
    assert by_name["demo"]["license"]


def test_list_includes_user_registry(capsys, tmp_path, manifest, monkeypatch):
    monkeypatch.setenv("DATASTAGE_REGISTRY", str(manifest.parent))
    code, out, _ = cli(capsys, "list", "--json")
    assert code == 0
    assert "ds" in {row["name"] for row in json.loads(out)}


def test_info_shows_cache_and_staging_state(capsys, manifest, to, cache_dir, archive):
    code, out, err = cli(capsys, "info", str(manifest), "--to", str(to), "--json")
    assert code == 0, err
    before = json.loads(out)
    assert before["name"] == "ds" and before["root"] == "top"
    assert before["staged"] is None and before["files"][0]["cached"] is None
    assert before["files"][0]["digests"] == [f"sha256:{sha256(archive)}"]

    code, out, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 0, err
    code, out, err = cli(capsys, "info", str(manifest), "--to", str(to), "--json")
    after = json.loads(out)
    assert after["staged"] == str(to / "ds" / "top")
    cached = Path(after["files"][0]["cached"])
    assert cached.is_relative_to(cache_dir) and sha256(cached.read_bytes()) == sha256(archive)

    code, out, err = cli(capsys, "info", str(manifest), "--to", str(to))
    assert code == 0, err
    assert f"staged:      {to / 'ds' / 'top'}" in out.splitlines()
    assert any(line.startswith("  cached:    /") for line in out.splitlines())


def test_info_of_the_ljspeech_manifest(capsys):
    code, out, err = cli(capsys, "info", "ljspeech", "--json")
    assert code == 0, err
    details = json.loads(out)
    assert details["root"] == "LJSpeech-1.1"
    (f,) = details["files"]
    assert f["urls"][0] == "https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2"
    assert f["size"] == 2748572632
    assert f["digests"] == [
        "sha256:be1a30453f28eb8dd26af4101ae40cbf2c50413b1bb21936cbcdc6fae3de8aa5"
    ]


# -- verify ----------------------------------------------------------------------------------


def test_verify_ok_then_changed_same_size_and_mtime(capsys, manifest, to):
    assert cli(capsys, "get", str(manifest), "--to", str(to))[0] == 0
    code, out, err = cli(capsys, "verify", str(manifest), "--to", str(to))
    assert code == 0, err
    assert out.strip() == str(to / "ds" / "top")

    victim = to / "ds" / "top" / "sub" / "b.bin"
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[1000] ^= 0x01  # one bit, same size
    victim.chmod(0o644)
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert victim.stat().st_size == st.st_size and victim.stat().st_mtime_ns == st.st_mtime_ns
    code, out, err = cli(capsys, "verify", str(manifest), "--to", str(to))
    assert code == 5
    assert out == ""
    assert "top/sub/b.bin (content changed)" in _one_error(err)


def test_verify_notices_a_removed_file(capsys, manifest, to):
    assert cli(capsys, "get", str(manifest), "--to", str(to))[0] == 0
    (to / "ds" / "top" / "a.txt").unlink()
    code, _, err = cli(capsys, "verify", str(manifest), "--to", str(to))
    assert code == 5
    assert "top/a.txt (missing)" in _one_error(err)
    # A get repairs it (sizes are checked on every get, so the damage is seen).
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 0, err
    assert cli(capsys, "verify", str(manifest), "--to", str(to))[0] == 0


def test_verify_of_a_dataset_never_staged(capsys, manifest, to):
    code, out, err = cli(capsys, "verify", str(manifest), "--to", str(to))
    assert code == 5 and out == ""
    assert "not a complete staging" in _one_error(err)


def test_verify_without_marker_is_not_trusted(capsys, manifest, to):
    assert cli(capsys, "get", str(manifest), "--to", str(to))[0] == 0
    (to / "ds" / ".datastage.json").unlink()
    code, _, err = cli(capsys, "verify", str(manifest), "--to", str(to))
    assert code == 5
    _one_error(err)


def _wait_for_partial_download(cache: Path) -> None:
    """Until some bytes of a download are on disk (the server logs a request only at its end)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(p.stat().st_size > 0 for p in cache.glob("partial/*.part")):
            return
        time.sleep(0.05)
    raise AssertionError("the download never started")


def test_a_partial_folder_is_never_trusted(capsys, manifest, to):
    """Even a complete-looking staging (marker and all) is not trusted under a partial name."""
    assert cli(capsys, "get", str(manifest), "--to", str(to))[0] == 0
    (to / "ds").rename(to / ".ds.partial-dead")
    code, _, err = cli(capsys, "verify", str(manifest), "--to", str(to))
    assert code == 5
    _one_error(err)
    code, out, err = cli(capsys, "info", str(manifest), "--to", str(to), "--json")
    assert json.loads(out)["staged"] is None
    code, out, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 0, err
    assert not (to / ".ds.partial-dead").exists(), "leftovers of a dead run are cleaned"
    assert cli(capsys, "verify", str(manifest), "--to", str(to))[0] == 0


def _get_until_bytes_arrive(manifest: Path, to: Path, cache_dir: Path) -> subprocess.Popen[str]:
    """``datastage get`` in a subprocess, returned once its download has begun."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "datastage", "get", str(manifest), "--to", str(to)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_partial_download(cache_dir)
    return proc


def test_staging_interrupted_by_kill_is_never_trusted(tmp_path, server, to, cache_dir):
    data = make_tar({"big.bin": payload(4_000_000, seed=5)}, "gz")
    url = server.add("/slow.tar.gz", data, rate=400_000)
    m = write_manifest(tmp_path, "slow", [{"url": url, "sha256": sha256(data)}])
    proc = _get_until_bytes_arrive(m, to, cache_dir)
    kill9(proc)
    verify = run_cli("verify", str(m), "--to", str(to))
    assert verify.returncode == 5
    _one_error(verify.stderr)
    assert not (to / "slow").exists()
    info = json.loads(run_cli("info", str(m), "--to", str(to), "--json").stdout)
    assert info["staged"] is None


def test_ctrl_c_exits_130_with_one_line(tmp_path, server, to, cache_dir):
    data = payload(4_000_000, seed=6)
    url = server.add("/slow.bin", data, rate=400_000)
    m = write_manifest(tmp_path, "slow", [{"url": url, "sha256": sha256(data)}])
    proc = _get_until_bytes_arrive(m, to, cache_dir)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert out == ""
    # click ends the ^C line on a terminal with a newline first; nothing else may be there
    assert _one_error(err.lstrip("\n")) == "error: interrupted; re-run to resume"
    assert not (to / "slow").exists()


# -- cache precedence and the repeat that makes no request -----------------------------------


def test_cache_flag_beats_the_environment(tmp_path, manifest, to, archive, monkeypatch):
    env_cache, flag_cache = tmp_path / "env-cache", tmp_path / "flag-cache"
    blob = Path("blobs", "sha256", sha256(archive)[:2], sha256(archive))
    done = run_cli(
        "get", str(manifest), "--to", str(to), "--cache", str(flag_cache),
        env={"DATASTAGE_CACHE": str(env_cache)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (flag_cache / blob).is_file() and not env_cache.exists()

    shutil.rmtree(to)
    done = run_cli("get", str(manifest), "--to", str(to), env={"DATASTAGE_CACHE": str(env_cache)})
    assert done.returncode == 0, done.stderr
    assert (env_cache / blob).is_file()


@pytest.mark.skipif(sys.platform != "linux", reason="the per-user folder differs by platform")
def test_default_cache_is_per_user(tmp_path, manifest, to, monkeypatch):
    monkeypatch.delenv("DATASTAGE_CACHE")
    home = tmp_path / "home"
    done = run_cli(
        "get", str(manifest), "--to", str(to), env={"HOME": str(home), "XDG_CACHE_HOME": ""}
    )
    assert done.returncode == 0, done.stderr
    assert list((home / ".cache" / "datastage" / "blobs").rglob("*"))


def test_second_get_makes_no_request_and_imports_no_network_library(manifest, to, server):
    first = run_cli("get", str(manifest), "--to", str(to))
    assert first.returncode == 0, first.stderr
    requests_made = len(server.log)
    assert requests_made >= 1
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('LOADED', sorted(m for m in "
        "('requests', 'urllib3', 'tqdm', 'datastage.obtain.download') if m in sys.modules), "
        "file=sys.stderr))\n"
        "from datastage.cli import main\n"
        f"main(['get', {str(manifest)!r}, '--to', {str(to)!r}])\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == first.stdout
    assert "LOADED []" in done.stderr, done.stderr
    assert len(server.log) == requests_made, "a staged dataset must not touch the network"


def test_help_imports_no_network_library():
    probe = (
        "import sys\n"
        "from datastage.cli import main\n"
        "try:\n    main(['--help'])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('requests', 'urllib3', 'tqdm') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


# -- entry points and the Python API ---------------------------------------------------------


def test_python_m_and_console_script(manifest, to):
    module = run_cli("--version")
    assert module.returncode == 0 and "0.1.0" in module.stdout
    script = Path(sys.executable).parent / "datastage"
    if not script.exists():
        pytest.skip("the datastage console script is not installed next to this Python")
    done = subprocess.run(
        [str(script), "get", str(manifest), "--to", str(to)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{to / 'ds' / 'top'}\n"
    helped = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "get" in helped.stdout and "verify" in helped.stdout


def test_python_api_returns_a_path(manifest, to, tmp_path):
    root = datastage.get(str(manifest), to=str(to), cache=str(tmp_path / "api-cache"))
    assert isinstance(root, Path)
    assert root == to / "ds" / "top"
    assert (root / "a.txt").read_bytes() == b"alpha\n"
    assert (tmp_path / "api-cache" / "blobs").is_dir()
    assert datastage.get(str(manifest), to=to) == root  # a Path for `to` works too
    assert datastage.verify(str(manifest), to=to) == root


def test_python_api_errors_are_datastage_errors(tmp_path):
    with pytest.raises(datastage.DatastageError, match="unknown dataset 'ljspeeh'") as e:
        datastage.get("ljspeeh", to=tmp_path)
    assert e.value.exit_code == 3 and e.value.hint == "did you mean 'ljspeech'?"


# -- the bundled demo ------------------------------------------------------------------------


def test_demo_stages_offline(tmp_path):
    dead_proxy = "http://127.0.0.1:9"
    env = {"DATASTAGE_OFFLINE": "1", "http_proxy": dead_proxy, "https_proxy": dead_proxy}
    done = run_cli("get", "demo", "--to", "./data", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    root = Path(done.stdout.strip())
    assert done.stdout.count("\n") == 1
    assert root == tmp_path / "data" / "demo" / "LJSpeech-demo"
    rows = (root / "metadata.csv").read_text(encoding="utf-8").splitlines()
    wavs = sorted(p.name for p in (root / "wavs").iterdir())
    assert len(rows) == len(wavs) >= 3
    assert sorted(row.split("|")[0] + ".wav" for row in rows) == wavs
    for wav in wavs:
        head = (root / "wavs" / wav).read_bytes()[:12]
        assert head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    assert run_cli("verify", "demo", "--to", "./data", cwd=tmp_path).returncode == 0


# -- never deleting what is not ours ---------------------------------------------------------


def test_foreign_folder_is_never_deleted(capsys, manifest, to, server):
    foreign = to / "ds"
    foreign.mkdir(parents=True)
    (foreign / "thesis.tex").write_text("years of work")
    code, out, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 2 and out == ""
    assert str(foreign) in _one_error(err)
    assert (foreign / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"]
    assert not [p for p in to.iterdir() if p.name.startswith(".ds.partial")]


def test_foreign_file_or_symlink_is_never_replaced(capsys, manifest, to, tmp_path):
    to.mkdir()
    (to / "ds").write_text("mine")
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 2, err
    assert (to / "ds").read_text() == "mine"
    (to / "ds").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    (to / "ds").symlink_to(elsewhere)
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 2, err
    assert (to / "ds").is_symlink() and (elsewhere / "keep.txt").read_text() == "keep"


def test_empty_folder_in_the_way_is_fine(capsys, manifest, to):
    (to / "ds").mkdir(parents=True)
    code, out, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 0, err
    assert out.strip() == str(to / "ds" / "top")


def test_offline_refuses_the_network_but_reads_local_files(capsys, manifest, to, server, tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATASTAGE_OFFLINE", "1")
        code, out, err = cli(capsys, "get", str(manifest), "--to", str(to))
        assert code == 4 and out == ""
        assert "DATASTAGE_OFFLINE" in _one_error(err)
        assert server.log == []
        local = tmp_path / "local.bin"
        local.write_bytes(b"local bytes")
        m = write_manifest(tmp_path, "loc", [{"url": str(local), "sha256": sha256(b"local bytes")}])
        code, out, err = cli(capsys, "get", str(m), "--to", str(to))
        assert code == 0, err
        assert (Path(out.strip()) / "local.bin").read_bytes() == b"local bytes"


def test_staged_folder_is_readable_by_other_users(capsys, manifest, to):
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 0, err
    assert (to / "ds").stat().st_mode & 0o777 == 0o755
    assert (to / "ds" / ".datastage.json").stat().st_mode & 0o777 == 0o644
    assert (to / "ds" / "top" / "a.txt").stat().st_mode & 0o044 == 0o044


def test_bare_command_shows_the_help():
    done = run_cli()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: datastage")
    assert "Commands:" in done.stdout and "\n  get " in done.stdout
    assert "error:" not in done.stderr
