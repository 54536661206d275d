"""Extraction through ``datastage get``: every format, hostile archives, broken archives.

Every archive is generated at test time, served by the loopback HTTP server (or read from a
local path), and staged through the real CLI entry point. Hostile archives must be refused
with exit 6 and one ``error:`` line naming the member, leave nothing staged, and write nothing
outside the target: the whole test folder (the target's parents) and /tmp are checked.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import stat
import struct
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from tests.archives import make_tar, make_zip
from tests.conftest import payload, run_cli, sha256, tree, write_manifest
from tests.inprocess import cli

FILES = {
    "a.txt": b"alpha\n",
    "sub/b.bin": payload(70_000, seed=7),
    "sub/deeper/c.txt": b"gamma " * 500,
    "empty.txt": b"",
}
EVIL = Path("/tmp/evil.txt")


# -- helpers ---------------------------------------------------------------------------------


def expected_tree(files: dict[str, bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for rel, data in files.items():
        parts = rel.split("/")
        for i in range(1, len(parts)):
            out["/".join(parts[:i])] = "dir"
        out[rel] = sha256(data)
    return out


def staged_tree(root: Path) -> dict[str, Any]:
    """The staged tree without our own bookkeeping (dot-prefixed .datastage* files)."""
    return {k: v for k, v in tree(root).items() if not k.startswith(".datastage")}


def tar_with(*specs: tuple[str, bytes, str]) -> bytes:
    """A tar of raw members: (name, type, data-or-linkname), written as given (no checks)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, value in specs:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = value.decode() if isinstance(value, bytes) else value
                tar.addfile(info)
            elif kind == tarfile.REGTYPE:
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
            else:
                tar.addfile(info)
    return raw.getvalue()


def zip_with(*specs: tuple[str, int, bytes]) -> bytes:
    """A zip of raw members: (name, unix mode incl. file type, data)."""
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as zf:
        for name, mode, data in specs:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3  # unix: the high 16 bits of external_attr are st_mode
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return raw.getvalue()


class Setup:
    """A dataset folder layout where escapes are visible: tmp/work/a/b/out is the target."""

    def __init__(self, tmp_path: Path, server: Any) -> None:
        self.tmp = tmp_path
        self.server = server
        self.to = tmp_path / "work" / "a" / "b" / "out"
        self.to.mkdir(parents=True)
        self.manifests = tmp_path / "manifests"
        self.manifests.mkdir()

    def manifest(self, data: bytes, file_name: str, name: str = "ds", **entry: Any) -> Path:
        """A manifest for ``data`` served as ``file_name``, in a folder of its own."""
        url = self.server.add("/" + file_name, data)
        spec = {"url": url, "sha256": sha256(data), "size": len(data), **entry}
        folder = self.manifests / sha256(data)[:12]
        folder.mkdir(exist_ok=True)
        return write_manifest(folder, name, [spec])

    def outside_snapshot(self) -> dict[str, Any]:
        """Everything under the test folder except the target, the cache, our manifests and
        the local lock folder (DATASTAGE_LOCK_DIR)."""
        ours = ("work/a/b/out/", "cache", "manifests", "locks")
        return {
            k: v
            for k, v in tree(self.tmp).items()
            if not k.startswith(ours) and k != "work/a/b/out"
        }

    def leftovers(self, name: str = "ds") -> list[str]:
        """What a failed get left in the target folder (locks live elsewhere: nothing at all)."""
        return sorted(p.name for p in self.to.iterdir())


@pytest.fixture
def setup(tmp_path: Path, server: Any) -> Setup:
    return Setup(tmp_path, server)


@pytest.fixture
def no_evil() -> Iterator[None]:
    """Fail if /tmp/evil.txt (or a file named with backslashes in /tmp) appears or changes."""
    before = EVIL.stat().st_mtime_ns if EVIL.exists() else None
    odd_before = {p.name for p in Path("/tmp").iterdir() if "evil" in p.name}
    yield
    after = EVIL.stat().st_mtime_ns if EVIL.exists() else None
    assert after == before, "/tmp/evil.txt was written"
    odd_after = {p.name for p in Path("/tmp").iterdir() if "evil" in p.name}
    assert odd_after == odd_before, f"new files in /tmp: {odd_after - odd_before}"


# -- every format round-trips ----------------------------------------------------------------

ARCHIVES: dict[str, Callable[[dict[str, bytes]], bytes]] = {
    "data.tar": lambda m: make_tar(m),
    "data.tar.gz": lambda m: make_tar(m, "gz"),
    "data.tgz": lambda m: make_tar(m, "gz"),
    "data.tar.bz2": lambda m: make_tar(m, "bz2"),
    "data.tar.xz": lambda m: make_tar(m, "xz"),
    "data.zip": make_zip,
}


@pytest.mark.parametrize("file_name", list(ARCHIVES))
def test_archive_round_trips(setup, capsys, file_name):
    data = ARCHIVES[file_name](FILES)
    manifest = setup.manifest(data, file_name)
    code, out, err = cli(capsys, "get", str(manifest), "--to", str(setup.to), "-q")
    assert code == 0, err
    assert out.splitlines() == [str(setup.to / "ds")]
    assert staged_tree(setup.to / "ds") == expected_tree(FILES)


@pytest.mark.parametrize(
    ("file_name", "compress"),
    [
        ("notes.txt.gz", gzip.compress),
        ("notes.txt.bz2", bz2.compress),
        ("notes.txt.xz", lzma.compress),
    ],
)
def test_single_compressed_file_is_decompressed(setup, capsys, file_name, compress):
    content = b"a line of text\n" * 1000
    manifest = setup.manifest(compress(content), file_name)
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 0, err
    assert staged_tree(setup.to / "ds") == {"notes.txt": sha256(content)}


def test_plain_file_is_copied_as_is(setup, capsys):
    content = payload(10_000, seed=3)
    manifest = setup.manifest(content, "weights.bin")
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 0, err
    assert staged_tree(setup.to / "ds") == {"weights.bin": sha256(content)}


def test_extract_false_keeps_the_archive(setup, capsys):
    data = make_tar(FILES, "gz")
    manifest = setup.manifest(data, "data.tar.gz", extract=False)
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 0, err
    assert staged_tree(setup.to / "ds") == {"data.tar.gz": sha256(data)}


@pytest.mark.parametrize("file_name", ["download.bin", "data", "data.zip.txt"])
def test_format_is_detected_from_the_bytes(setup, capsys, file_name):
    manifest = setup.manifest(make_tar(FILES, "gz"), file_name)
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 0, err
    assert staged_tree(setup.to / "ds") == expected_tree(FILES)


def test_zip_under_a_misleading_name(setup, capsys):
    manifest = setup.manifest(make_zip(FILES), "data.tar.gz")
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 0, err
    assert staged_tree(setup.to / "ds") == expected_tree(FILES)


def test_local_path_manifest_with_dest_and_root(tmp_path, capsys, server):
    """A manifest next to its archive (relative url), with a root folder and a dest."""
    folder = tmp_path / "local"
    folder.mkdir()
    inner = {f"pack-1.0/{k}": v for k, v in FILES.items()}
    (folder / "pack.tar.xz").write_bytes(make_tar(inner, "xz"))
    (folder / "readme.md").write_bytes(b"# hello\n")
    manifest = write_manifest(
        folder,
        "pack",
        [
            {"url": "pack.tar.xz", "sha256": sha256((folder / "pack.tar.xz").read_bytes())},
            {"url": "readme.md", "dest": "pack-1.0/docs"},
        ],
        root="pack-1.0",
    )
    to = tmp_path / "out"
    code, out, err = cli(capsys, "get", str(manifest), "--to", str(to))
    assert code == 0, err
    assert out.strip() == str(to / "pack" / "pack-1.0")
    want = expected_tree({**FILES, "docs/readme.md": b"# hello\n"})
    assert staged_tree(to / "pack" / "pack-1.0") == want
    assert server.log == []


def test_archive_symlinks_and_hardlinks_inside_are_kept(setup, capsys):
    data = tar_with(
        ("d/f.txt", tarfile.REGTYPE, b"content"),
        ("d/hard.txt", tarfile.LNKTYPE, b"d/f.txt"),
        ("d/soft.txt", tarfile.SYMTYPE, b"f.txt"),
        ("top", tarfile.SYMTYPE, b"d"),
    )
    manifest = setup.manifest(data, "links.tar")
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 0, err
    got = staged_tree(setup.to / "ds")
    assert got["d/hard.txt"] == got["d/f.txt"] == sha256(b"content")
    assert got["d/soft.txt"] == "-> f.txt" and got["top"] == "-> d"
    code, _, err = cli(capsys, "verify", str(manifest), "--to", str(setup.to))
    assert code == 0, err


# -- hostile archives ------------------------------------------------------------------------

SLIP = "../" * 40 + "tmp/evil.txt"
SLIP_BACKSLASH = "..\\" * 40 + "Temp\\evil.txt"
EVIL_BYTES = b"pwned\n"
OK = ("ok.txt", tarfile.REGTYPE, b"fine")

HOSTILE_TARS: dict[str, tuple[bytes, str]] = {
    "absolute": (tar_with(OK, ("/tmp/evil.txt", tarfile.REGTYPE, EVIL_BYTES)), "/tmp/evil.txt"),
    "dotdot": (tar_with(OK, ("../evil.txt", tarfile.REGTYPE, EVIL_BYTES)), "../evil.txt"),
    "dotdot-inside": (
        tar_with(OK, ("sub/../../evil.txt", tarfile.REGTYPE, EVIL_BYTES)),
        "sub/../../evil.txt",
    ),
    "zip-slip": (tar_with(OK, (SLIP, tarfile.REGTYPE, EVIL_BYTES)), SLIP),
    "zip-slip-backslash": (
        tar_with(OK, (SLIP_BACKSLASH, tarfile.REGTYPE, EVIL_BYTES)),
        SLIP_BACKSLASH,
    ),
    "symlink-outside": (tar_with(OK, ("link", tarfile.SYMTYPE, b"../../..")), "link"),
    "symlink-absolute": (tar_with(OK, ("link", tarfile.SYMTYPE, b"/tmp")), "link"),
    # each link stays inside on its own; resolving the chain leaves the root
    "symlink-chain": (
        tar_with(OK, ("d/up", tarfile.SYMTYPE, b".."), ("d/esc", tarfile.SYMTYPE, b"up/..")),
        "d/esc",
    ),
    "symlink-then-write-through": (
        tar_with(
            OK,
            ("link", tarfile.SYMTYPE, b"../../.."),
            ("link/evil.txt", tarfile.REGTYPE, EVIL_BYTES),
        ),
        "link",
    ),
    "write-through-inside-symlink": (
        tar_with(
            ("real/x.txt", tarfile.REGTYPE, b"x"),
            ("alias", tarfile.SYMTYPE, b"real"),
            ("alias/evil.txt", tarfile.REGTYPE, EVIL_BYTES),
        ),
        "alias",
    ),
    "hardlink-outside": (tar_with(OK, ("hard", tarfile.LNKTYPE, b"../../../secret")), "hard"),
    "hardlink-absolute": (tar_with(OK, ("hard", tarfile.LNKTYPE, b"/etc/passwd")), "hard"),
    "hardlink-not-extracted": (
        tar_with(OK, ("hard", tarfile.LNKTYPE, b"later.txt"), ("later.txt", tarfile.REGTYPE, b"x")),
        "hard",
    ),
    "hardlink-to-symlink": (
        tar_with(OK, ("s", tarfile.SYMTYPE, b"ok.txt"), ("hard", tarfile.LNKTYPE, b"s")),
        "hard",
    ),
    "char-device": (tar_with(OK, ("dev/null2", tarfile.CHRTYPE, b"")), "dev/null2"),
    "block-device": (tar_with(OK, ("dev/sda9", tarfile.BLKTYPE, b"")), "dev/sda9"),
    "fifo": (tar_with(OK, ("pipe", tarfile.FIFOTYPE, b"")), "pipe"),
}

LINK = stat.S_IFLNK | 0o777
REG = stat.S_IFREG | 0o644
ZOK = ("ok.txt", REG, b"fine")
HOSTILE_ZIPS: dict[str, tuple[bytes, str]] = {
    "absolute": (zip_with(ZOK, ("/tmp/evil.txt", REG, EVIL_BYTES)), "/tmp/evil.txt"),
    "dotdot": (zip_with(ZOK, ("../evil.txt", REG, EVIL_BYTES)), "../evil.txt"),
    "zip-slip": (zip_with(ZOK, (SLIP, REG, EVIL_BYTES)), SLIP),
    "zip-slip-backslash": (zip_with(ZOK, (SLIP_BACKSLASH, REG, EVIL_BYTES)), SLIP_BACKSLASH),
    "drive-letter": (zip_with(ZOK, ("C:/evil.txt", REG, EVIL_BYTES)), "C:/evil.txt"),
    "symlink-outside": (zip_with(ZOK, ("link", LINK, b"../../..")), "link"),
    "symlink-absolute": (zip_with(ZOK, ("link", LINK, b"/tmp")), "link"),
    "symlink-chain": (zip_with(ZOK, ("d/up", LINK, b".."), ("d/esc", LINK, b"up/..")), "d/esc"),
    "symlink-then-write-through": (
        zip_with(ZOK, ("link", LINK, b"../../.."), ("link/evil.txt", REG, EVIL_BYTES)),
        "link",
    ),
    "char-device": (zip_with(ZOK, ("dev/null2", stat.S_IFCHR | 0o644, b"")), "dev/null2"),
    "fifo": (zip_with(ZOK, ("pipe", stat.S_IFIFO | 0o644, b"")), "pipe"),
}


def _assert_refused(setup: Setup, code: int, out: str, err: str, member: str) -> None:
    assert code == 6, err
    assert out == ""
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[0] == errors[0], err
    assert all(line.startswith(("error:", "hint:")) for line in lines), err
    assert repr(member) in errors[0] or member in errors[0], err
    assert "Traceback" not in err
    assert setup.leftovers() == [], "a refused archive must leave nothing in the target folder"


@pytest.mark.parametrize("case", list(HOSTILE_TARS))
def test_hostile_tar_is_refused(setup, capsys, no_evil, case):
    data, member = HOSTILE_TARS[case]
    before = setup.outside_snapshot()
    for file_name, blob in (("evil.tar", data), ("evil.tar.gz", gzip.compress(data))):
        manifest = setup.manifest(blob, file_name)
        code, out, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
        _assert_refused(setup, code, out, err, member)
        assert setup.outside_snapshot() == before


@pytest.mark.parametrize("case", list(HOSTILE_ZIPS))
def test_hostile_zip_is_refused(setup, capsys, no_evil, case):
    data, member = HOSTILE_ZIPS[case]
    before = setup.outside_snapshot()
    manifest = setup.manifest(data, "evil.zip")
    code, out, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    _assert_refused(setup, code, out, err, member)
    assert setup.outside_snapshot() == before


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_zip_slip_refused_through_a_real_subprocess(setup, no_evil, kind):
    data = HOSTILE_TARS["zip-slip"][0] if kind == "tar" else HOSTILE_ZIPS["zip-slip"][0]
    manifest = setup.manifest(data, f"evil.{kind}")
    before = setup.outside_snapshot()
    done = run_cli("get", str(manifest), "--to", str(setup.to))
    _assert_refused(setup, done.returncode, done.stdout, done.stderr, SLIP)
    assert setup.outside_snapshot() == before


def test_refused_archive_keeps_an_existing_staging(setup, capsys):
    """A hostile new version must not destroy the good copy staged before it."""
    good = setup.manifest(make_tar(FILES), "good.tar")
    code, _, err = cli(capsys, "get", str(good), "--to", str(setup.to))
    assert code == 0, err
    bad = setup.manifest(HOSTILE_TARS["dotdot"][0], "bad.tar")
    code, _, err = cli(capsys, "get", str(bad), "--to", str(setup.to))
    assert code == 6
    assert staged_tree(setup.to / "ds") == expected_tree(FILES)
    code, _, err = cli(capsys, "verify", str(good), "--to", str(setup.to))
    assert code == 0, err


# -- truncated and corrupt archives ----------------------------------------------------------


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _corrupt(data: bytes) -> bytes:
    """Flip bytes in the middle (past the headers), keep the length."""
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]) + data[middle + 64 :]


BROKEN_FORMATS: dict[str, Callable[[dict[str, bytes]], bytes]] = {
    "data.tar": lambda m: make_tar(m),
    "data.tar.gz": lambda m: make_tar(m, "gz"),
    "data.tar.bz2": lambda m: make_tar(m, "bz2"),
    "data.tar.xz": lambda m: make_tar(m, "xz"),
    "data.zip": make_zip,
    "blob.bin.gz": lambda m: gzip.compress(m["sub/b.bin"]),
    "blob.bin.bz2": lambda m: bz2.compress(m["sub/b.bin"]),
    "blob.bin.xz": lambda m: lzma.compress(m["sub/b.bin"]),
}


def _broken_cases() -> Iterator[Any]:
    for file_name in BROKEN_FORMATS:
        for how in ("truncated", "corrupt"):
            if file_name == "data.tar" and how == "corrupt":
                continue  # uncompressed tar data has no checksum of its own (the digest pin has)
            yield pytest.param(file_name, how, id=f"{file_name}-{how}")


@pytest.mark.parametrize(("file_name", "how"), list(_broken_cases()))
def test_broken_archive_then_fixed_source(setup, capsys, file_name, how):
    files = {**FILES, "stale-only-in-broken.bin": payload(200_000, seed=9)}
    good = BROKEN_FORMATS[file_name](files)
    broken = _truncate(good) if how == "truncated" else _corrupt(good)
    manifest = setup.manifest(broken, file_name)
    code, out, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 6, err
    assert out == "" and "Traceback" not in err
    assert err.startswith("error: ") and file_name in err.splitlines()[0], err
    assert "damaged or truncated" in err or "corrupt" in err.lower(), err
    assert setup.leftovers() == [], "nothing may be marked staged"
    code, _, _ = cli(capsys, "verify", str(manifest), "--to", str(setup.to))
    assert code != 0

    # The source is fixed (new bytes, new pin): the rerun yields exactly the right tree.
    fixed = {k: v for k, v in files.items() if k != "stale-only-in-broken.bin"}
    fixed_data = BROKEN_FORMATS[file_name](fixed)
    manifest = setup.manifest(fixed_data, file_name)
    code, out, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 0, err
    if file_name.startswith("blob"):
        assert staged_tree(setup.to / "ds") == {"blob.bin": sha256(fixed["sub/b.bin"])}
    else:
        assert staged_tree(setup.to / "ds") == expected_tree(fixed)
    assert setup.leftovers() == ["ds"]


def test_unpinned_broken_archive_is_fetched_again_once_fixed(setup, capsys):
    """Its first-use pin stays (only `unpin` replaces a pin, issue 11 item 2); the error says
    how to accept the fixed file, and after `unpin` it is downloaded again."""
    good = make_tar(FILES, "gz")
    url = setup.server.add("/data.tar.gz", _truncate(good))
    manifest = write_manifest(setup.manifests, "ds", [{"url": url}])
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 6, err
    setup.server.change("/data.tar.gz", good)
    if "datastage unpin ds" in err:  # pinned before the damage showed (else: never pinned)
        assert cli(capsys, "unpin", str(manifest))[0] == 0
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 0, err
    assert staged_tree(setup.to / "ds") == expected_tree(FILES)


def test_not_an_archive_with_extract_true(setup, capsys):
    manifest = setup.manifest(b"just text\n", "notes.txt", extract=True)
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 6
    assert err.startswith("error: ") and "notes.txt" in err
    assert setup.leftovers() == []


def test_staged_files_are_not_older_than_the_archive_says(setup, capsys):
    """Members keep their recorded mtime (tools like make rely on it)."""
    manifest = setup.manifest(make_tar({"a.txt": b"x"}), "m.tar")
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 0, err
    assert (setup.to / "ds" / "a.txt").stat().st_mtime == 1_700_000_000
    assert time.time() > 1_700_000_000


def _zip_with_header_patch(flag_bits: int = 0, method: Optional[int] = None) -> bytes:
    """A one-member zip whose headers claim encryption or another compression method."""
    data = bytearray(make_zip({"a.txt": b"hello world"}))
    central = data.rfind(b"PK\x01\x02")
    data[6] |= flag_bits
    data[central + 8] |= flag_bits
    if method is not None:
        struct.pack_into("<H", data, 8, method)
        struct.pack_into("<H", data, central + 10, method)
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (_zip_with_header_patch(flag_bits=1), "'a.txt' is encrypted"),
        (_zip_with_header_patch(method=9), "'a.txt' is compressed with Deflate64"),
        (_zip_with_header_patch(method=99), "'a.txt' is compressed with AES"),
    ],
    ids=["encrypted", "deflate64", "aes"],
)
def test_zip_features_python_cannot_read_are_a_clear_error(setup, capsys, data, words):
    manifest = setup.manifest(data, "odd.zip")
    code, out, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 6, err
    assert out == "" and "internal error" not in err and "Traceback" not in err
    assert err.startswith("error: odd.zip: member ") and words in err.splitlines()[0]
    assert setup.leftovers() == []


def test_member_named_like_our_marker_does_not_break_staging(setup, capsys):
    data = make_tar({".datastage.json": b'{"format": 1}', "a.txt": b"a"})
    manifest = setup.manifest(data, "m.tar")
    code, out, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 0, err
    staged = setup.to / "ds"
    inode = staged.stat().st_ino
    code, _, err = cli(capsys, "verify", str(manifest), "--to", str(setup.to))
    assert code == 0, err
    code, out2, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 0 and out2 == out, err
    assert staged.stat().st_ino == inode, "a current staging must not be rebuilt"


def test_hard_link_to_itself_is_the_file(setup, capsys):
    """``tar cf a.tar x x`` stores the second copy as a hard link named like its target."""
    data = tar_with(("x", tarfile.REGTYPE, b"abc"), ("x", tarfile.LNKTYPE, b"x"))
    manifest = setup.manifest(data, "twice.tar")
    code, _, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 0, err
    assert staged_tree(setup.to / "ds") == {"x": sha256(b"abc")}
    assert cli(capsys, "verify", str(manifest), "--to", str(setup.to))[0] == 0


def test_root_missing_from_the_archive_is_a_manifest_error(setup, capsys):
    data = make_tar({"other-1.0/a.txt": b"a"})
    url = setup.server.add("/r.tar", data)
    spec = {"url": url, "sha256": sha256(data)}
    manifest = write_manifest(setup.manifests, "ds", [spec], root="pack-1.0")
    code, out, err = cli(capsys, "get", str(manifest), "--to", str(setup.to))
    assert code == 3 and out == ""
    line = err.splitlines()[0]
    assert line.startswith(f"error: manifest {manifest}: root: folder 'pack-1.0'"), err
    assert "other-1.0" in line, "the error says what the archive holds instead"
    assert setup.leftovers() == []
