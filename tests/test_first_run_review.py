"""Review of issue 17's fixes (branch firstrun): inputs the first tests did not try.

Each test goes through the CLI, as a user would, with real files, mounts and a loopback server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.archives import make_tar
from tests.conftest import payload, run_cli, sha256, skip_unmountable, write_manifest


@pytest.fixture
def bind_mount(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator:
    """``bind_mount(source, point)``: ``mount --bind`` (same file system, so the mount point
    has its parent's device number); skipped where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(source: Path, point: Path) -> None:
        source.mkdir(parents=True, exist_ok=True)
        point.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "--bind", str(source), str(point)], capture_output=True)
        if done.returncode != 0:
            skip_unmountable(request.node, "bind-mount", done.stderr)
        mounted.append(point)

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)


def _one_file_dataset(folder: Path, server) -> Path:
    data = payload(3000, 7)
    entry = {"url": server.add("/a.bin", data), "sha256": sha256(data), "extract": False}
    return write_manifest(folder, "single", [entry])


@pytest.mark.parametrize("how", ["bind mount", "symlink to a mount"])
def test_a_mounted_autodl_fs_is_used_however_it_is_mounted(
    tmp_path: Path, server, mount_tmpfs, bind_mount, how: str
) -> None:
    root = tmp_path / "platform-root"
    (root / "root" / "autodl-tmp").mkdir(parents=True)
    fs = root / "root" / "autodl-fs"
    if how == "bind mount":  # a container volume from the host's own disk
        bind_mount(tmp_path / "host-disk" / "fs", fs)
    else:  # the well-known path is a link to where the network disk is mounted
        fs.symlink_to(mount_tmpfs(tmp_path / "mnt" / "autodl-fs"))
    persistent = fs / "cache"
    env = {"DATASTAGE_PLATFORM": "autodl", "DATASTAGE_PERSISTENT_CACHE": str(persistent)}
    done = run_cli(
        "get", str(_one_file_dataset(tmp_path, server)), "--to", str(tmp_path / "o"), env=env
    )
    assert done.returncode == 0, done.stderr
    assert "not mounted" not in done.stderr
    assert (persistent / "single" / "a.bin").read_bytes() == payload(3000, 7)


# -- a one-liner prints the archive's single top folder, and only that ------------------------


def test_a_folder_holding_one_file_in_a_subfolder_prints_the_folder(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "train").mkdir(parents=True)
    (corpus / "train" / "x.txt").write_bytes(b"only file\n")
    out = tmp_path / "out"
    for command in ("get", "get", "verify"):
        done = run_cli(command, str(corpus), "--to", str(out))
        assert done.returncode == 0, done.stderr
        assert Path(done.stdout.strip()) == out / "corpus"  # the folder asked for, not train/
    assert (out / "corpus" / "train" / "x.txt").read_bytes() == b"only file\n"


@pytest.mark.parametrize(
    "beside",
    [
        ("Other", None),  # an empty folder: no file lists it, yet it is part of the dataset
        ("latest", ("symlink", "Top")),  # a link at the top, pointing inside
        (".hidden", b"x"),
    ],
)
def test_the_top_folder_is_printed_only_when_it_is_all_the_archive_holds(
    tmp_path: Path, server, beside: tuple
) -> None:
    archive = make_tar([("Top/a.txt", b"alpha"), beside])
    url = server.add("/Set.tar", archive)
    out = tmp_path / "out"
    for command in ("get", "verify"):
        done = run_cli(command, url, "--to", str(out))
        assert done.returncode == 0, done.stderr
        assert Path(done.stdout.strip()) == out / "Set"
    assert (out / "Set" / "Top" / "a.txt").read_bytes() == b"alpha"
    assert os.path.lexists(out / "Set" / beside[0])


# -- names: a very long one is refused (or shortened) before anything is downloaded -----------


def test_a_very_long_name_is_refused_before_the_download(tmp_path: Path, server) -> None:
    data = make_tar([("Top/a.txt", b"alpha")])
    long_file = "L" * 240 + ".tar"  # a valid file name on the server; too long to build on
    url = server.add(f"/{long_file}", data)
    out = tmp_path / "out"
    refused = run_cli("get", url, "--to", str(out), "--name", "n" * 300)
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[0].startswith("error: --name")
    assert "too long" in refused.stderr
    assert server.requests_for(f"/{long_file}") == [] and not out.exists()
    done = run_cli("get", url, "--to", str(out))  # the derived name is shortened instead
    assert done.returncode == 0, done.stderr
    (folder,) = out.iterdir()
    assert folder.name.startswith("LLLL") and len(folder.name) <= 200
    assert Path(done.stdout.strip()) == folder / "Top"
    assert (folder / "Top" / "a.txt").read_bytes() == b"alpha"


# -- the install-line check reads every way a pip command is written ---------------------------


@pytest.mark.parametrize(
    "line",
    [
        "!pip --quiet install datastage",
        "pip3.11 install -U datastage",
        "%pip install \\\n    datastage",
        "python -m pip --disable-pip-version-check install 'datastage[s3]'",
    ],
)
def test_the_install_line_check_finds_the_wrong_package(line: str) -> None:
    from tests.test_first_run import _install_targets, _requirement_name

    assert "datastage" in [_requirement_name(t) for t in _install_targets(line)]


# -- a notebook shows an error's hint, not only its message -----------------------------------

_NOTEBOOK_ERRORS = """
import sys, traceback
import datastage
for call in (
    lambda: datastage.verify(sys.argv[1], to=sys.argv[2]),
    lambda: datastage.get("ljspech", to=sys.argv[2]),
):
    try:
        call()
    except datastage.DatastageError as e:  # what a notebook cell's traceback shows
        print("".join(traceback.format_exception_only(type(e), e)).strip())
        print("--")
"""


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes (PEP 678)")
def test_errors_raised_in_a_notebook_carry_their_hint(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_bytes(b"a\n")
    (corpus / "b.txt").write_bytes(b"b\n")
    done = subprocess.run(
        [sys.executable, "-c", _NOTEBOOK_ERRORS, str(corpus), str(tmp_path / "never-staged")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    verify_error, unknown, _ = done.stdout.split("--\n")
    assert verify_error.splitlines()[0].startswith("datastage.errors.VerifyFailed: ")
    assert verify_error.splitlines()[-1] == (
        f"hint: run: datastage get {corpus} --to {tmp_path / 'never-staged'}"
    )
    assert unknown.splitlines() == [  # its text already says it: not twice
        "datastage.errors.DatasetNotFound: unknown dataset 'ljspech'; did you mean 'ljspeech'?"
    ]


# -- cache prune / rm never take the files of a get that is still running ---------------------


@pytest.mark.parametrize("command", [("prune", "--max-size", "0"), ("rm", "solo")])
def test_cache_tools_wait_for_a_running_get(
    tmp_path: Path, server, cache_dir: Path, command: tuple[str, ...]
) -> None:
    quick, slow = payload(3000, 1), payload(40_000, 2)  # b.bin takes 4 s: the tool runs then
    a = {"url": server.add("/a.bin", quick), "sha256": sha256(quick), "extract": False}
    b = {"url": server.add("/b.bin", slow, rate=10_000), "sha256": sha256(slow), "extract": False}
    if command[0] == "rm":  # another dataset has a.bin in the cache already
        solo = write_manifest(tmp_path, "solo", [a])
        assert run_cli("get", str(solo), "--to", str(tmp_path / "first")).returncode == 0
    manifest = write_manifest(tmp_path, "pair", [a, b])
    done_a = cache_dir / "blobs" / "sha256" / sha256(quick)[:2] / sha256(quick)
    running = subprocess.Popen(
        [sys.executable, "-m", "datastage", "get", str(manifest), "--to", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # a.bin is in the cache, b.bin is still coming: the get has not staged anything yet
        while not (done_a.exists() and list((cache_dir / "partial").glob("*.json"))):
            assert running.poll() is None, running.communicate()
        tool = run_cli("cache", *command)
        out, err = running.communicate(timeout=60)
    finally:
        running.kill()
    assert running.returncode == 0, err
    assert (Path(out.strip()) / "a.bin").read_bytes() == quick
    assert (Path(out.strip()) / "b.bin").read_bytes() == slow
    assert tool.returncode == 0, tool.stderr
    assert "waiting for" in tool.stderr


# -- the unpin hint of a one-liner works as printed -------------------------------------------


@pytest.mark.parametrize("kind", ["url", "folder"])
def test_the_unpin_hint_of_a_one_liner_works(tmp_path: Path, server, kind: str) -> None:
    out = tmp_path / "out"
    if kind == "url":
        target = server.add("/Release.bin", b"first release")
    else:
        folder = tmp_path / "Corpus"
        folder.mkdir()
        (folder / "a.txt").write_bytes(b"first release")
        (folder / "b.txt").write_bytes(b"b")
        target = str(folder)
    assert run_cli("get", target, "--to", str(out)).returncode == 0
    if kind == "url":
        server.change("/Release.bin", b"second release")
    else:
        (folder / "a.txt").write_bytes(b"second release")
    assert run_cli("cache", "rm", "Release" if kind == "url" else "Corpus").returncode == 0
    refused = run_cli("get", target, "--to", str(tmp_path / "again"))
    assert refused.returncode == 5, refused.stderr
    hint = refused.stderr.splitlines()[-1]
    assert hint == (
        f"hint: if the dataset was re-released on purpose: datastage unpin {target}, then try again"
    )
    unpinned = run_cli("unpin", target)  # as the hint says
    assert unpinned.returncode == 0, unpinned.stderr
    again = run_cli("get", target, "--to", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    name = "Release.bin" if kind == "url" else "a.txt"
    staged = Path(again.stdout.strip())
    assert (staged / name).read_bytes() == b"second release"


# -- a one-liner staged under --name can be verified, and its hint keeps the name -------------


def test_a_named_one_liner_is_verified_and_repaired_by_its_hint(tmp_path: Path, server) -> None:
    url = server.add("/Data.tar", make_tar([("Top/a.txt", b"alpha")]))
    out = tmp_path / "out"
    assert run_cli("get", url, "--to", str(out), "--name", "mine").returncode == 0
    staged = out / "mine" / "Top" / "a.txt"
    staged.chmod(0o644)
    staged.write_bytes(b"edited")
    failed = run_cli("verify", url, "--name", "mine", "--to", str(out))
    assert failed.returncode == 5, failed.stderr
    command = f"datastage get {url} --name mine --to {out} --repair"
    assert failed.stderr.splitlines()[-1] == f"hint: repair with: {command}"
    again = run_cli(*command.split()[1:])  # the hint, as the user would paste it
    assert again.returncode == 0, again.stderr
    assert staged.read_bytes() == b"alpha" and not (out / "Data").exists()
    verified = run_cli("verify", url, "--name", "mine", "--to", str(out))
    assert verified.returncode == 0, verified.stderr
    assert Path(verified.stdout.strip()) == out / "mine" / "Top"


# -- sizes just under a unit round up into it --------------------------------------------------


def test_a_size_just_under_a_megabyte_is_shown_as_one(tmp_path: Path, server) -> None:
    data = payload(999_960, 4)  # 999.96 kB: "1.0 MB", not "1000.0 kB"
    entry = {"url": server.add("/near.bin", data), "sha256": sha256(data), "extract": False}
    manifest = write_manifest(tmp_path, "near", [entry])
    assert run_cli("get", str(manifest), "--to", str(tmp_path / "out")).returncode == 0
    listed = run_cli("cache", "ls").stdout.splitlines()
    assert listed[-1].split()[:3] == ["total", "1.0", "MB"]


@pytest.mark.parametrize("age", ["-1", "nan"])
def test_a_partial_age_that_is_no_age_is_refused(tmp_path: Path, cache_dir: Path, age: str) -> None:
    partial = cache_dir / "partial" / "sha256-0000.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a download")
    done = run_cli("cache", "prune", "--partial-age", age)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: --partial-age: {float(age)!r} is not a number of hours, 0 or more"
    ]
    assert partial.read_bytes() == b"half a download"
