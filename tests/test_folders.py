"""`datastage stage` (folders and archives, from a real FUSE slow mount when possible), resume,
and `datastage pack` -> `datastage get <name>.toml` round trips."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tests.conftest import payload, run_cli, tree
from tests.procs import kill9, wait_for
from tests.servers import slowfs

ROOT = Path(__file__).resolve().parents[1]
SLOW_MOUNT = str(ROOT / "tests" / "slowmount")


def _corpus(root: Path, n: int = 40, size: int = 3000) -> Path:
    """An LJSpeech-shaped folder: wavs/*.wav, metadata.csv, a nested folder."""
    (root / "wavs").mkdir(parents=True)
    lines = []
    for i in range(n):
        (root / "wavs" / f"LJ001-{i:04d}.wav").write_bytes(payload(size + i, i))
        lines.append(f"LJ001-{i:04d}|text {i}|text {i}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    (root / "extra" / "deep").mkdir(parents=True)
    (root / "extra" / "deep" / "notes.txt").write_text("notes\n")
    return root


def _without_marker(t: dict) -> dict:
    return {k: v for k, v in t.items() if not k.startswith(".datastage")}


def test_stage_folder_copies_verifies_and_marks(tmp_path):
    src = _corpus(tmp_path / "LJSpeech-1.1")
    done = run_cli("stage", str(src), "--to", str(tmp_path / "fast"))
    assert done.returncode == 0, done.stderr
    staged = tmp_path / "fast" / "ljspeech-1.1"
    assert done.stdout.strip() == str(staged)
    assert _without_marker(tree(staged)) == tree(src)
    marker = json.loads((staged / ".datastage.json").read_text())
    assert marker["source"] == str(src) and len(marker["files"]) == 42
    assert sorted(p.name for p in (tmp_path / "fast").iterdir()) == ["ljspeech-1.1"]
    # A second run is a no-op that prints the same path.
    again = run_cli("stage", str(src), "--to", str(tmp_path / "fast"))
    assert again.returncode == 0 and again.stdout == done.stdout


def test_stage_refuses_a_folder_it_did_not_make(tmp_path):
    src = _corpus(tmp_path / "src", n=2)
    (tmp_path / "fast" / "src").mkdir(parents=True)
    (tmp_path / "fast" / "src" / "mine.txt").write_text("keep me")
    done = run_cli("stage", str(src), "--to", str(tmp_path / "fast"))
    assert done.returncode == 2 and done.stderr.startswith("error: ")
    assert "exists and is not a datastage dataset" in done.stderr
    assert (tmp_path / "fast" / "src" / "mine.txt").read_text() == "keep me"


def test_stage_missing_source_is_one_line(tmp_path):
    done = run_cli("stage", str(tmp_path / "nope"), "--to", str(tmp_path / "fast"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {tmp_path / 'nope'}: no such folder or file"


def test_stage_from_a_fuse_slow_mount(tmp_path):
    reason = slowfs.available()
    if reason:
        pytest.skip(reason)
    src = _corpus(tmp_path / "drive-data", n=60)
    mount = tmp_path / "mnt"
    try:
        ctx = slowfs.SlowMount(src, mount, open_latency=0.005, rate=50e6)
        mounted = ctx.__enter__()
    except OSError as e:
        pytest.skip(f"cannot mount FUSE here: {e}")
    try:
        assert os.path.ismount(mounted)
        done = run_cli("stage", str(mounted), "--to", str(tmp_path / "fast"), "--name", "lj")
        assert done.returncode == 0, done.stderr
        assert _without_marker(tree(tmp_path / "fast" / "lj")) == tree(src)
    finally:
        ctx.__exit__()


def test_stage_resumes_after_kill_and_recopies_changed_files(tmp_path):
    n = 200
    src = _corpus(tmp_path / "src", n=n, size=40_000)  # 8 MB
    to = tmp_path / "fast"

    def journal() -> Path:
        found = list(to.glob(".src.partial-*/.datastage-journal.jsonl"))
        return found[0] if found else to / "not yet"

    # SRC reads at 2 MB/s (a slow mount): the copy is always under way when it is killed
    slow = {"SLOW_MOUNT_DIR": str(src), "SLOW_MOUNT_RATE": str(2 << 20)}
    path = os.pathsep.join([SLOW_MOUNT, os.environ.get("PYTHONPATH", str(ROOT))])
    proc = subprocess.Popen(
        [sys.executable, "-m", "datastage", "stage", str(src), "--to", str(to), "--workers", "1"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **slow, "PYTHONPATH": path},
    )
    wait_for(
        lambda: journal().exists() and journal().read_text().count("\n") >= 50,
        proc,
        timeout=60,
        what="50 files copied",
    )
    kill9(proc)
    assert not (to / "src").exists()  # never visible under the final name
    copied = [json.loads(line)["path"] for line in journal().read_text().splitlines() if line]
    assert len(copied) >= 50
    changed = src / copied[0]
    changed.write_bytes(b"edited since the first run")
    done = run_cli("stage", str(src), "--to", str(to))
    assert done.returncode == 0, done.stderr
    resumed = int(done.stderr.split("resuming: ")[1].split(" of ")[0])
    assert len(copied) < n, "the kill came mid-way"
    assert len(copied) - 1 <= resumed < n + 2
    assert _without_marker(tree(to / "src")) == tree(src)
    assert sorted(p.name for p in to.iterdir()) == ["src"]


def test_pack_then_get_round_trip(tmp_path):
    src = _corpus(tmp_path / "LJSpeech-1.1", n=30)
    (src / "long.wav").write_bytes(payload(3 << 20, 7))  # streamed, not read whole
    drive = tmp_path / "drive" / "packs"
    done = run_cli("pack", str(src), "--to", str(drive))
    assert done.returncode == 0, done.stderr
    manifest = Path(done.stdout.strip())
    assert manifest == drive / "ljspeech-1.1.toml"
    assert sorted(p.name for p in drive.iterdir()) == ["ljspeech-1.1.tar", "ljspeech-1.1.toml"]
    got = run_cli("get", str(manifest), "--to", str(tmp_path / "fast"))
    assert got.returncode == 0, got.stderr
    staged = Path(got.stdout.strip())
    assert staged == tmp_path / "fast" / "ljspeech-1.1"
    assert _without_marker(tree(staged)) == tree(src)
    verified = run_cli("verify", str(manifest), "--to", str(tmp_path / "fast"))
    assert verified.returncode == 0, verified.stderr


def test_packed_archive_is_checked_against_its_manifest(tmp_path):
    src = _corpus(tmp_path / "data", n=5)
    drive = tmp_path / "drive"
    manifest = Path(run_cli("pack", str(src), "--to", str(drive)).stdout.strip())
    archive = drive / "data.tar"
    damaged = bytearray(archive.read_bytes())
    damaged[600] ^= 0xFF
    archive.write_bytes(bytes(damaged))
    got = run_cli("get", str(manifest), "--to", str(tmp_path / "fast"))
    assert got.returncode != 0
    assert "checksum mismatch" in got.stderr
    assert not (tmp_path / "fast" / "data").exists()


def test_stage_an_archive(tmp_path):
    src = _corpus(tmp_path / "data", n=5)
    drive = tmp_path / "drive"
    run_cli("pack", str(src), "--to", str(drive))
    done = run_cli("stage", str(drive / "data.tar"), "--to", str(tmp_path / "fast"))
    assert done.returncode == 0, done.stderr
    assert _without_marker(tree(Path(done.stdout.strip()))) == tree(src)


# -- issue 11 item 5: SRC is not trusted -------------------------------------------------------


def _stage(src: Path, to: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # a timeout: a FIFO or /dev/zero that hangs the command fails the test instead of the suite
    return run_cli("stage", str(src), "--to", str(to), *extra, timeout=60)


def test_stage_copies_links_as_links_and_refuses_links_out(tmp_path):
    src = _corpus(tmp_path / "src", n=3)
    os.symlink("wavs/LJ001-0000.wav", src / "first.wav")  # relative, downward: kept as written
    os.symlink(src / "metadata.csv", src / "meta-abs.csv")  # absolute, inside: made relative
    os.symlink("../../wavs", src / "extra" / "deep" / "wavs-up")  # climbs, stays inside
    os.symlink("wavs", src / "wavs-link")  # a link to a folder is not entered
    done = _stage(src, tmp_path / "fast")
    assert done.returncode == 0, done.stderr
    staged = tmp_path / "fast" / "src"
    assert os.readlink(staged / "first.wav") == "wavs/LJ001-0000.wav"
    assert os.readlink(staged / "meta-abs.csv") == "metadata.csv"
    assert os.readlink(staged / "extra" / "deep" / "wavs-up") == "../../wavs"
    assert os.readlink(staged / "wavs-link") == "wavs"
    for link in ("first.wav", "meta-abs.csv", "extra/deep/wavs-up", "wavs-link"):
        resolved = os.path.realpath(staged / link)
        assert resolved.startswith(str(staged) + os.sep), link
    assert (staged / "meta-abs.csv").read_bytes() == (src / "metadata.csv").read_bytes()

    # A link to a private file outside SRC: refused, nothing staged, the secret copied nowhere.
    secret = tmp_path / "secret.key"
    secret.write_bytes(b"private key material")
    secret.chmod(0o600)
    src2 = _corpus(tmp_path / "src2", n=2)
    os.symlink(secret, src2 / "wavs" / "innocent.wav")
    done = _stage(src2, tmp_path / "fast")
    assert done.returncode == 6, done.stderr
    assert "innocent.wav is a symlink that leads outside the folder" in done.stderr
    assert done.stderr.count("\n") <= 2 and "Traceback" not in done.stderr
    assert not (tmp_path / "fast" / "src2").exists()
    leaked = [p for p in (tmp_path / "fast").rglob("*") if p.is_file() and
              p.read_bytes() == b"private key material"]  # fmt: skip
    assert leaked == []
    # ... and a link to /dev/zero (would fill the disk if followed)
    src3 = _corpus(tmp_path / "src3", n=1)
    os.symlink("/dev/zero", src3 / "zeros.wav")
    done = _stage(src3, tmp_path / "fast")
    assert done.returncode == 6 and "zeros.wav" in done.stderr


def test_stage_skips_fifos_and_devices_with_one_warning_each(tmp_path):
    src = _corpus(tmp_path / "src", n=3)
    expected = tree(src)  # (tree() itself would block on the FIFO)
    os.mkfifo(src / "wavs" / "pipe.wav")
    specials = ["wavs/pipe.wav"]
    try:
        os.mknod(src / "zero.dev", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero
        specials.append("zero.dev")
    except (PermissionError, OSError):
        pass  # not root: the FIFO alone
    done = _stage(src, tmp_path / "fast")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == len(specials)
    for rel, line in zip(sorted(specials, key=lambda r: str(src / r)), sorted(warnings)):
        assert f"skipped {src / rel}:" in line and "not a regular file" in line
    staged = tmp_path / "fast" / "src"
    assert _without_marker(tree(staged)) == expected
    # pack does not hang on them either, and leaves them out
    packed = run_cli("pack", str(src), "--to", str(tmp_path / "packs"), timeout=60)
    assert packed.returncode == 0, packed.stderr
    assert packed.stderr.count("warning: skipped") == len(specials)
    import tarfile

    with tarfile.open(tmp_path / "packs" / "src.tar") as tar:
        names = set(tar.getnames())
    assert "wavs/pipe.wav" not in names and "wavs/LJ001-0000.wav" in names


def test_staged_modes_are_never_wider_than_the_source(tmp_path):
    src = _corpus(tmp_path / "src", n=2)
    (src / "wavs" / "LJ001-0000.wav").chmod(0o600)
    (src / "metadata.csv").chmod(0o640)
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o750)
    (src / "extra").chmod(0o700)
    src.chmod(0o750)
    done = _stage(src, tmp_path / "fast")
    assert done.returncode == 0, done.stderr
    staged = tmp_path / "fast" / "src"
    umask = os.umask(0o022)
    os.umask(umask)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    for rel in ("wavs/LJ001-0000.wav", "wavs/LJ001-0001.wav", "metadata.csv", "run.sh"):
        assert mode(staged / rel) == mode(src / rel) & ~umask, rel
    assert mode(staged / "extra") & 0o077 == 0  # a private folder stays private
    assert mode(staged) & 0o007 == 0


def _plant_journal(partial: Path, src: Path, rel: str, forged: bytes) -> None:
    """A journal and a forged copy that match the source file's size and mtime."""
    st = (src / rel).stat()
    (partial / rel).parent.mkdir(parents=True, exist_ok=True)
    (partial / rel).write_bytes(forged)
    line = {"path": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino,
            "sha256": hashlib.sha256(forged).hexdigest()}  # fmt: skip
    (partial / ".datastage-journal.jsonl").write_text(json.dumps(line) + "\n")


def test_stage_never_resumes_from_a_planted_journal(tmp_path):
    src = _corpus(tmp_path / "src", n=3)
    to = tmp_path / "fast"
    rel = "wavs/LJ001-0001.wav"
    forged = b"F" * (src / rel).stat().st_size
    # the fixed path ef6f16c trusted
    _plant_journal(to / ".src.partial", src, rel, forged)
    # a partial-looking folder that is world-writable, and one without datastage's record
    for planted, mode in ((to / ".src.partial-aaaa1111", 0o755), (to / ".src.partial-bbbb", 0o700)):
        _plant_journal(planted, src, rel, forged)
        (planted / ".datastage-partial.json").write_text(json.dumps(
            {"made_by": "datastage stage", "partial": planted.name, "source": str(src)}
        ) if mode == 0o755 else "{}")  # fmt: skip
        planted.chmod(mode)
    done = _stage(src, to)
    assert done.returncode == 0, done.stderr
    assert "resuming" not in done.stderr
    assert _without_marker(tree(to / "src")) == tree(src)
    # what datastage cannot prove is its own is left alone, not deleted
    assert (to / ".src.partial" / rel).read_bytes() == forged
    assert (to / ".src.partial-aaaa1111" / rel).read_bytes() == forged


def test_stage_rehashes_what_its_own_journal_lists(tmp_path):
    """A partial folder that passes the ownership test still has every listed copy re-hashed."""
    src = _corpus(tmp_path / "src", n=3)
    to = tmp_path / "fast"
    to.mkdir()
    partial = Path(tempfile.mkdtemp(dir=to, prefix=".src.partial-"))
    (partial / ".datastage-partial.json").write_text(json.dumps(
        {"made_by": "datastage stage", "partial": partial.name, "source": str(src)}))  # fmt: skip
    good = "wavs/LJ001-0000.wav"
    (partial / "wavs").mkdir()
    (partial / good).write_bytes((src / good).read_bytes())
    st = (src / good).stat()
    lines = [{"path": good, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino,
              "sha256": hashlib.sha256((src / good).read_bytes()).hexdigest()}]  # fmt: skip
    bad = "wavs/LJ001-0001.wav"
    _plant_journal(partial, src, bad, b"X" * (src / bad).stat().st_size)
    journalled = (partial / ".datastage-journal.jsonl").read_text()
    # the forged copy's line claims the real digest: only re-hashing catches it
    forged_line = json.loads(journalled)
    forged_line["sha256"] = hashlib.sha256((src / bad).read_bytes()).hexdigest()
    lines.append(forged_line)
    # a line whose inode is not the source's: not trusted either
    third = "wavs/LJ001-0002.wav"
    (partial / third).write_bytes(b"Y" * (src / third).stat().st_size)
    st3 = (src / third).stat()
    lines.append({"path": third, "size": st3.st_size, "mtime_ns": st3.st_mtime_ns,
                  "ino": st3.st_ino + 1, "sha256": hashlib.sha256(b"Y").hexdigest()})  # fmt: skip
    (partial / ".datastage-journal.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    done = _stage(src, to)
    assert done.returncode == 0, done.stderr
    assert "resuming: 1 of 5 files" in done.stderr
    assert _without_marker(tree(to / "src")) == tree(src)
    assert sorted(p.name for p in to.iterdir()) == ["src"]


# -- issue 17 item 3: a re-run notices a changed SRC -------------------------------------------


def test_stage_again_copies_what_changed_in_the_source(tmp_path):
    src = _corpus(tmp_path / "src", n=20)
    to = tmp_path / "fast"
    assert _stage(src, to).returncode == 0
    staged = to / "src"
    unchanged = staged / "wavs" / "LJ001-0005.wav"
    inode = unchanged.stat().st_ino

    (src / "wavs" / "LJ001-0100.wav").write_bytes(payload(5000, 100))
    done = _stage(src, to)
    assert done.returncode == 0, done.stderr
    assert "source changed: 1 added, 0 removed, 0 modified" in done.stderr
    assert _without_marker(tree(staged)) == tree(src)
    assert unchanged.stat().st_ino == inode  # not copied again from the slow source

    (src / "metadata.csv").write_text("rewritten\n")
    (src / "wavs" / "LJ001-0001.wav").unlink()
    os.symlink("metadata.csv", src / "meta-link")
    touched = src / "wavs" / "LJ001-0002.wav"  # same size and bytes, new mtime
    os.utime(touched, ns=(time.time_ns(), touched.stat().st_mtime_ns + 5_000_000_000))
    done = _stage(src, to)
    assert done.returncode == 0, done.stderr
    assert "source changed: 1 added, 1 removed, 2 modified" in done.stderr
    assert _without_marker(tree(staged)) == tree(src)

    again = _stage(src, to)
    assert again.returncode == 0 and again.stdout == done.stdout
    assert "source changed" not in again.stderr

    forced = _stage(src, to, "--force")
    assert forced.returncode == 0, forced.stderr
    assert _without_marker(tree(staged)) == tree(src)
    assert unchanged.stat().st_ino != inode  # copied again
    assert sorted(p.name for p in to.iterdir()) == ["src"]


def test_stage_repairs_a_staged_copy_missing_a_file(tmp_path):
    src = _corpus(tmp_path / "src", n=5)
    to = tmp_path / "fast"
    assert _stage(src, to).returncode == 0
    (to / "src" / "wavs" / "LJ001-0003.wav").unlink()
    done = _stage(src, to)
    assert done.returncode == 0, done.stderr
    assert "incomplete" in done.stderr
    assert _without_marker(tree(to / "src")) == tree(src)


# -- pack: links, and a manifest that loads whatever the path ------------------------------------


def test_pack_keeps_links_inside_and_refuses_links_out(tmp_path):
    src = _corpus(tmp_path / "data", n=3)
    os.symlink("wavs/LJ001-0000.wav", src / "first.wav")
    done = run_cli("pack", str(src), "--to", str(tmp_path / "packs"), timeout=60)
    assert done.returncode == 0, done.stderr
    got = run_cli("get", done.stdout.strip(), "--to", str(tmp_path / "fast"))
    assert got.returncode == 0, got.stderr
    assert _without_marker(tree(Path(got.stdout.strip()))) == tree(src)

    (tmp_path / "outside.txt").write_text("not yours")
    os.symlink(tmp_path / "outside.txt", src / "leak.txt")
    done = run_cli("pack", str(src), "--to", str(tmp_path / "packs2"), timeout=60)
    assert done.returncode == 6 and "leak.txt is a symlink that leads outside" in done.stderr
    assert not (tmp_path / "packs2" / "data.tar").exists()


@pytest.mark.parametrize("folder", ["line\nbreak", 'say "hi" \\ back\\slash', "tab\there'"])
def test_pack_manifest_loads_whatever_the_path(tmp_path, folder):
    src = _corpus(tmp_path / folder / "corpus", n=2)
    (src / 'odd "name"\n.txt').write_text("odd")
    done = run_cli("pack", str(src), "--to", str(tmp_path / "packs"))
    assert done.returncode == 0, done.stderr
    manifest = Path(done.stdout.strip())
    loaded = tomllib.loads(manifest.read_text())
    assert loaded["name"] == "corpus" and str(src) in loaded["description"]
    got = run_cli("get", str(manifest), "--to", str(tmp_path / "fast"))
    assert got.returncode == 0, got.stderr
    assert _without_marker(tree(Path(got.stdout.strip()))) == tree(src)


# -- review: nesting, reuse of edited copies, user files named .datastage* ---------------------


@pytest.mark.parametrize(
    "to, name",
    [("src/inner", None), ("src", "inner"), (".", "src"), ("src/../src/deep/er", None)],
)
def test_stage_refuses_a_target_inside_the_source_or_around_it(tmp_path, to, name):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_bytes(b"a")
    (src / "sub" / "b").write_bytes(b"b")
    before = tree(src)
    extra = ("--name", name) if name else ()
    done = _stage(src, tmp_path / to, *extra)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and "overlap" in done.stderr
    assert "Traceback" not in done.stderr
    assert tree(src) == before  # nothing made inside SRC, SRC not replaced
    assert sorted(os.listdir(tmp_path)) == ["src"]


@pytest.mark.parametrize("to", ["src", "src/out"])
def test_pack_refuses_to_write_inside_the_folder_it_packs(tmp_path, to):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a")
    done = run_cli("pack", str(src), "--to", str(tmp_path / to))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and "overlap" in done.stderr
    assert sorted(os.listdir(src)) == ["a"]


def test_restage_does_not_carry_a_staged_copy_edited_in_place(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.wav").write_bytes(b"original")
    (src / "b.wav").write_bytes(b"b")
    to = tmp_path / "fast"
    assert _stage(src, to).returncode == 0
    staged = to / "src"
    (staged / "a.wav").write_bytes(b"ORIGINAL")  # same size, edited in the copy
    (src / "b.wav").write_bytes(b"bb")  # SRC changed: a re-staging that reuses unchanged files
    done = _stage(src, to)
    assert done.returncode == 0, done.stderr
    assert (staged / "a.wav").read_bytes() == b"original"  # re-copied from SRC, not linked
    marker = json.loads((staged / ".datastage.json").read_text())
    for rel in ("a.wav", "b.wav"):
        digest = hashlib.sha256((staged / rel).read_bytes()).hexdigest()
        assert marker["files"][rel]["sha256"] == digest


def test_stage_never_drops_a_datastage_looking_name_silently(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / ".datastage-notes").write_bytes(b"the user's own notes")
    (src / "a").write_bytes(b"a")
    done = _stage(src, tmp_path / "fast")
    assert done.returncode == 0, done.stderr
    assert f"warning: skipped {src / '.datastage-notes'}" in done.stderr
    # a staged copy used as SRC: its own records are skipped without a word
    again = _stage(tmp_path / "fast" / "src", tmp_path / "faster")
    assert again.returncode == 0, again.stderr
    assert "warning" not in again.stderr


def _killed_run_partial(to: Path, src: Path) -> Path:
    """What a run killed by -9 leaves: datastage's private 0700 partial folder and its record."""
    partial = to / ".src.partial-k1lled00"
    partial.mkdir(parents=True, mode=0o700)
    partial.chmod(0o700)
    record = {"made_by": "datastage stage", "partial": partial.name, "source": str(src)}
    (partial / ".datastage-partial.json").write_text(json.dumps(record))
    return partial


def test_resume_after_a_folder_of_src_became_a_file(tmp_path):
    src = tmp_path / "src"
    (src / "x").mkdir(parents=True)
    (src / "x" / "f").write_bytes(b"f")
    (src / "gone").mkdir()
    to = tmp_path / "fast"
    partial = _killed_run_partial(to, src)
    (partial / "x").mkdir()
    (partial / "x" / "f").write_bytes(b"half")
    (partial / "gone" / "deep").mkdir(parents=True)
    # after the kill, SRC changes: folder x is now a file, folder gone is gone
    (src / "x" / "f").unlink()
    (src / "x").rmdir()
    (src / "x").write_bytes(b"now a file")
    (src / "gone").rmdir()
    done = _stage(src, to)
    assert done.returncode == 0, done.stderr
    assert _without_marker(tree(to / "src")) == tree(src)
    assert sorted(os.listdir(to / "src")) == [".datastage.json", "x"]
    assert sorted(os.listdir(to)) == ["src"]


def test_a_folder_swapped_for_a_link_during_the_listing_is_not_entered(tmp_path):
    """The listing stalls while its FIFO warnings fill stderr; meanwhile SRC/sub becomes a link
    out of SRC. The walker must not list (nor the copy read) the outside folder."""
    import fcntl
    import termios

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "key").write_bytes(b"public")
    for i in range(400):  # after "sub"; warnings > a pipe's 64 KiB: the run blocks in the root
        os.mkfifo(src / f"z{i:03d}{'-' * 200}")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_bytes(b"SECRET")
    proc = subprocess.Popen(
        [sys.executable, "-m", "datastage", "stage", str(src), "--to", str(tmp_path / "fast")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    capacity = fcntl.fcntl(proc.stderr.fileno(), 1032)  # F_GETPIPE_SZ
    # Once FIFO warnings are queued, "sub" was listed as a folder; the run cannot leave the root
    # folder (more warnings than the pipe holds) until this test reads them, after the swap.
    while proc.poll() is None:
        queued = bytearray(4)
        fcntl.ioctl(proc.stderr.fileno(), termios.FIONREAD, queued)
        if int.from_bytes(queued, sys.byteorder) > capacity // 2:
            break
        time.sleep(0.01)
    os.rename(src / "sub", tmp_path / "moved")
    os.symlink(secret, src / "sub")
    _, err = proc.communicate(timeout=60)
    leaked = tmp_path / "fast" / "src" / "sub" / "key"
    assert not leaked.exists(), err[-300:]
    assert proc.returncode == 5 and b"changed while it was staged" in err, err[-300:]
