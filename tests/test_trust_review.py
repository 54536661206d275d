"""Review of issue 11's trust fixes (branch sec-stage): attacks that still got through, each
closed, through the CLI against real archives served on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.archives import make_tar
from tests.conftest import payload, run_cli, sha256, write_manifest

# d/up -> . and s -> d/up/.. are each fine (s is the dataset folder); a later entry re-targets
# d/up -> .. (still inside on its own) and s now leads to the folder holding the dataset.
APPROVED = [("d/", None), ("d/up", ("symlink", ".")), ("s", ("symlink", "d/up/.."))]
RETARGET = [("d/up", ("symlink", ".."))]


def test_a_later_entry_is_never_written_through_a_retargeted_link(tmp_path, server):
    """A file entry whose ``dest`` goes through s must not write (or delete) outside."""
    first, second = make_tar(APPROVED), make_tar(RETARGET)
    third = make_tar({"victim.txt": b"attacker"})
    plain = b"plain file bytes"
    entries = [
        {"url": server.add("/a.tar", first), "sha256": sha256(first)},
        {"url": server.add("/b.tar", second), "sha256": sha256(second)},
        {"url": server.add("/c.tar", third), "sha256": sha256(third), "dest": "s/x"},
        {"url": server.add("/p.bin", plain), "sha256": sha256(plain), "dest": "s/y"},
    ]
    manifest = write_manifest(tmp_path, "evil", entries)
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").mkdir()
    (out / "x" / "victim.txt").write_text("the user's own file")
    done = run_cli("get", str(manifest), "--to", str(out))
    assert done.returncode == 6, done.stderr
    assert "would be written through 's'" in done.stderr and "Traceback" not in done.stderr
    assert (out / "x" / "victim.txt").read_text() == "the user's own file"
    assert sorted(p.name for p in out.iterdir()) == ["x"]
    assert sorted(p.name for p in (out / "x").iterdir()) == ["victim.txt"]


FOREIGN = "exists and is not a datastage dataset; move it or choose another --to"


@pytest.mark.parametrize(
    "marker",
    [b'{"format": 1, "name": "ds"}', b'{"format": 2, "name": "ds", "files": "all"}'],
    ids=["no-listing", "listing-not-a-table"],
)
def test_a_marker_without_a_listing_does_not_make_a_users_folder_ours(tmp_path, server, marker):
    """It names the dataset, but cannot say which files are ours: only files the new staging
    has too may be replaced (a damaged marker of ours is still replaced: test_loose_ends)."""
    archive = make_tar({"a.txt": b"a"})
    manifest = write_manifest(tmp_path, "ds", [{"url": server.add("/ds.tar", archive)}])
    mine = tmp_path / "out" / "ds"
    mine.mkdir(parents=True)
    (mine / "my_results.csv").write_text("epoch,loss\n1,0.5\n")
    (mine / ".datastage.json").write_bytes(marker)
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    assert "holds 1 file(s) datastage did not stage (my_results.csv)" in done.stderr
    assert (mine / "my_results.csv").read_text() == "epoch,loss\n1,0.5\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ds"]


def test_a_file_saved_in_the_staging_while_it_is_rebuilt_is_kept(tmp_path, server):
    """Ownership is decided when the folder is replaced, not only before the (long) build."""
    out = tmp_path / "out"
    first = make_tar({"a.txt": b"one"}, "gz")
    manifest = write_manifest(tmp_path, "ds", [{"url": server.add("/v1.tar.gz", first)}])
    assert run_cli("get", str(manifest), "--to", str(out)).returncode == 0
    second = make_tar({"a.txt": b"two", "big.bin": payload(600_000)}, "gz")
    url = server.add("/v2.tar.gz", second, rate=300_000)  # streamed: about two seconds
    manifest = write_manifest(tmp_path, "ds", [{"url": url}])
    proc = subprocess.Popen(
        [sys.executable, "-m", "datastage", "get", str(manifest), "--to", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not list(out.glob(".ds.partial-*")) and proc.poll() is None:
            time.sleep(0.02)  # the folder was found ours: the build has begun
        (out / "ds" / "results.csv").write_text("epoch,loss\n")
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (out / "ds" / "results.csv").read_text() == "epoch,loss\n", stderr
    assert proc.returncode == 2, stderr
    assert "holds 1 file(s) datastage did not stage (results.csv)" in stderr
    assert (out / "ds" / "a.txt").read_bytes() == b"one"
    assert sorted(p.name for p in out.iterdir()) == ["ds"]


def test_two_gets_of_one_folder_by_two_spellings_take_turns(tmp_path, server):
    """`--to out` and `--to link-to-out` are one folder: the second run must wait for the
    first, never take the first's work in progress for a dead run's leftover."""
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(out, tmp_path / "same")
    slow = make_tar({"a.txt": b"slow", "big.bin": payload(600_000)}, "gz")
    first = write_manifest(tmp_path, "ds", [{"url": server.add("/s.tar.gz", slow, rate=300_000)}])
    (tmp_path / "b").mkdir()
    quick = make_tar({"a.txt": b"quick"})
    second = write_manifest(tmp_path / "b", "ds", [{"url": server.add("/q.tar", quick)}])
    proc = subprocess.Popen(
        [sys.executable, "-m", "datastage", "get", str(first), "--to", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not list(out.glob(".ds.partial-*")) and proc.poll() is None:
            time.sleep(0.02)
        done = run_cli("get", str(second), "--to", str(tmp_path / "same"))
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert done.returncode == 0, done.stderr
    assert (out / "ds" / "a.txt").read_bytes() == b"quick"  # the second ran after the first
    assert sorted(p.name for p in out.iterdir()) == ["ds"]


@pytest.mark.parametrize("how", ["absolute", "dot-dot"])
@pytest.mark.parametrize("command", [("verify", "--repair"), ("get", "--repair")])
def test_a_planted_marker_cannot_make_repair_delete_a_file(tmp_path, server, how, command):
    """The marker names the cache blobs a staging was built from; a digest there that is a
    path must not lead ``--repair`` to hash, then "drop", a file outside the cache."""
    archive = make_tar({"a.txt": b"a"})
    manifest = write_manifest(
        tmp_path, "ds", [{"url": server.add("/ds.tar", archive), "sha256": sha256(archive)}]
    )
    out = tmp_path / "out"
    assert run_cli("get", str(manifest), "--to", str(out)).returncode == 0
    victim = tmp_path / "thesis.tex"
    victim.write_text("years of work")
    marker_path = out / "ds" / ".datastage.json"
    marker = json.loads(marker_path.read_text())
    named = str(victim) if how == "absolute" else "../../../../../../../../.." + str(victim)
    marker["sources"][0]["sha256"] = named
    marker_path.chmod(0o644)
    marker_path.write_text(json.dumps(marker))
    done = run_cli(command[0], str(manifest), "--to", str(out), command[1])
    assert victim.read_text() == "years of work", done.stderr
    assert "Traceback" not in done.stderr
    assert done.returncode == 0, done.stderr
    assert (out / "ds" / "a.txt").read_bytes() == b"a"


@pytest.mark.parametrize("planted", ["damage-note", "marker"])
def test_a_fifo_planted_as_a_note_or_a_marker_does_not_hang_get(tmp_path, server, planted):
    """Only regular files are read as datastage's own records (a FIFO blocks a reader forever,
    a link to /dev/zero fills its memory)."""
    archive = make_tar({"a.txt": b"a"})
    manifest = write_manifest(
        tmp_path, "ds", [{"url": server.add("/ds.tar", archive), "sha256": sha256(archive)}]
    )
    out = tmp_path / "out"
    if planted == "damage-note":
        assert run_cli("get", str(manifest), "--to", str(out)).returncode == 0
        os.mkfifo(out / ".ds.damaged")
    else:
        (out / "ds").mkdir(parents=True)
        os.mkfifo(out / "ds" / ".datastage.json")
    done = run_cli("get", str(manifest), "--to", str(out), timeout=30)
    if planted == "damage-note":
        assert done.returncode == 0, done.stderr
        assert (out / "ds" / "a.txt").read_bytes() == b"a"
    else:
        assert done.returncode == 2 and FOREIGN in done.stderr, done.stderr


def test_a_moved_aside_folder_holding_a_users_file_is_not_a_leftover(tmp_path, server):
    """A run killed after moving a staging aside, with a file saved into it meanwhile: the
    next run removes old folders of its own only, never one holding what it did not stage."""
    archive = make_tar({"a.txt": b"a"})
    manifest = write_manifest(
        tmp_path, "ds", [{"url": server.add("/ds.tar", archive), "sha256": sha256(archive)}]
    )
    out = tmp_path / "out"
    assert run_cli("get", str(manifest), "--to", str(out)).returncode == 0
    aside = out / ".ds.old-k1ll3d"
    aside.mkdir()
    os.rename(out / "ds", aside / "ds")
    (aside / "ds" / "results.csv").write_text("epoch,loss\n")
    (out / ".ds.old-emptyk1").mkdir()  # ours and empty: removed
    done = run_cli("get", str(manifest), "--to", str(out))
    assert done.returncode == 0, done.stderr
    assert (aside / "ds" / "results.csv").read_text() == "epoch,loss\n"
    assert sorted(p.name for p in out.iterdir()) == [".ds.old-k1ll3d", "ds"]


@pytest.mark.parametrize("swap", ["fifo", "link-of-the-same-size"])
def test_verify_reports_a_staged_file_replaced_by_a_fifo_or_a_link(tmp_path, server, swap):
    """A staged file that is no longer a regular file differs (same size or not); verify
    says so instead of reading a FIFO (forever) or a link's target."""
    archive = make_tar({"empty.txt": b"", "nine.txt": b"123456789"})
    manifest = write_manifest(
        tmp_path, "ds", [{"url": server.add("/ds.tar", archive), "sha256": sha256(archive)}]
    )
    out = tmp_path / "out"
    assert run_cli("get", str(manifest), "--to", str(out)).returncode == 0
    if swap == "fifo":
        changed = "empty.txt"
        (out / "ds" / changed).unlink()
        os.mkfifo(out / "ds" / changed)
    else:
        changed = "nine.txt"
        (out / "ds" / changed).unlink()
        os.symlink("/dev/zero", out / "ds" / changed)  # 9 bytes, like the file it replaces
    done = run_cli("verify", str(manifest), "--to", str(out), timeout=30)
    assert done.returncode == 5, done.stderr
    assert f"{changed} (not a regular file)" in done.stderr
    repaired = run_cli("get", str(manifest), "--to", str(out), timeout=30)
    assert repaired.returncode == 0, repaired.stderr
    assert (out / "ds" / "nine.txt").read_bytes() == b"123456789"
    assert (out / "ds" / "empty.txt").read_bytes() == b""
