"""Issue 11 items 1, 2, 3, 6 and issue 17's `get --force` / `--repair`: what a hostile archive,
server or disk, or a user's own folder, could do to a staging — each closed, through the CLI
against real archives served on loopback.

Item 1 (a later archive re-targets an approved link): test_a_nested_archive_*,
test_a_later_file_entry_*, test_link_rules_*.
Item 2 (first-use pins erased by an archive error): test_a_pin_survives_*, test_pins_of_*.
Item 3 (corrupt bytes become a verified blob): test_a_persistent_copy_*, test_verify_reports_*,
test_a_staging_from_an_altered_blob_*, test_get_repair_*, test_get_force_*.
Item 6 (an invalid marker makes datastage delete a folder): test_a_foreign_folder_*.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

import datastage
from datastage.core.errors import UnsafeArchiveMember
from datastage.stage.links import check_links
from tests.archives import make_tar
from tests.conftest import payload, run_cli, sha256, tree, write_manifest

FOREIGN = "exists and is not a datastage dataset; move it or choose another --to"


def _files(root: Path) -> dict[str, Any]:
    return {k: v for k, v in tree(root).items() if not k.startswith(".datastage")}


def _blob(cache: Path, data: bytes) -> Path:
    return cache / "blobs" / "sha256" / sha256(data)[:2] / sha256(data)


def _alter_in_place(path: Path, offset: int) -> None:
    """Flip one byte without changing the size (as a failing disk or a stray tool would)."""
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


# -- item 1: the finished tree's links are checked as a whole ---------------------------------

# The outer archive's links are each fine on their own: d/up -> . (that is d), and
# s -> d/up/.. (that is the dataset folder). Then d/up is replaced by a link to the dataset
# folder, and s leads to the folder that holds it.
APPROVED = [("d/", None), ("d/up", ("symlink", ".")), ("s", ("symlink", "d/up/.."))]
RETARGET = [("d/up", ("symlink", ".."))]


def _refused_naming_s(done: Any, out: Path, name: str) -> None:
    assert done.returncode == 6, done.stderr
    assert "symlink 's' -> 'd/up/..'" in done.stderr and "outside" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (out / name).exists() and not list(out.glob(f".{name}.*"))


def test_a_nested_archive_cannot_retarget_an_approved_link(tmp_path, server):
    outer = make_tar([*APPROVED, ("inner.tar", make_tar(RETARGET))])
    url = server.add("/outer.tar", outer)
    entry = {"url": url, "sha256": sha256(outer), "extract_nested": True}
    manifest = write_manifest(tmp_path, "evil", [entry])
    out = tmp_path / "out"
    _refused_naming_s(run_cli("get", str(manifest), "--to", str(out)), out, "evil")


def test_a_later_file_entry_cannot_retarget_an_approved_link(tmp_path, server):
    first, second = make_tar(APPROVED), make_tar(RETARGET)
    entries = [
        {"url": server.add("/a.tar", first), "sha256": sha256(first)},
        {"url": server.add("/b.tar", second), "sha256": sha256(second)},
    ]
    manifest = write_manifest(tmp_path, "evil", entries)
    out = tmp_path / "out"
    _refused_naming_s(run_cli("get", str(manifest), "--to", str(out)), out, "evil")


def _tree_with_links(root: Path, links: dict[str, str]) -> Path:
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "f.txt").write_text("f")
    for name, target in links.items():
        os.symlink(target, root / name)
    return root


@pytest.mark.parametrize(
    "links",
    [
        {"top": "."},  # the dataset folder itself: a loop for followers, not an escape
        {"d/e/self": "."},
        {"dangling": "missing/file"},  # allowed: nothing to follow
        {"chain": "d/link", "d/link": "e/../f.txt"},
        {"dl": "d", "via": "dl/e/.."},  # through a link to a parent folder
    ],
    ids=["root", "self", "dangling", "chain", "through-parent-link"],
)
def test_link_rules_allow_links_that_stay_inside(tmp_path, links):
    check_links(_tree_with_links(tmp_path / "ds", links))


@pytest.mark.parametrize(
    "links, named",
    [
        ({"abs": str(Path("/tmp"))}, "abs"),
        ({"up": ".."}, "up"),
        ({"a": "b/..", "b": "d/e/../.."}, "a"),  # chain: b is the folder, a its parent
        ({"d/e/x": "missing/../../../.."}, "d/e/x"),  # dangling, but its name leads out
        ({"out-and-back": "../ds/d"}, "out-and-back"),  # leaves the folder, even to return
        ({"dl": ".", "d/e/y": "../../dl/.."}, "d/e/y"),  # through dl, the folder: its parent
        ({"loop1": "loop2", "loop2": "loop1"}, "loop1"),
    ],
    ids=["absolute", "parent", "chain", "dangling-out", "out-and-back", "via-link", "loop"],
)
def test_link_rules_refuse_links_that_lead_out(tmp_path, links, named):
    root = _tree_with_links(tmp_path / "ds", links)
    with pytest.raises(UnsafeArchiveMember) as e:
        check_links(root)
    assert f"symlink {named!r}" in str(e.value)


def test_link_check_follows_a_long_chain_once(tmp_path):
    """Each link is resolved once (memo): 2,000 links in chains of 40 cost 2,000 steps."""
    root = tmp_path / "ds"
    root.mkdir()
    (root / "f").write_text("x")
    for c in range(50):
        os.symlink("f", root / f"c{c}-0")
        for i in range(1, 39):
            os.symlink(f"c{c}-{i - 1}", root / f"c{c}-{i}")
    check_links(root)
    os.symlink("c7-38/../..", root / "zz-escape")
    with pytest.raises(UnsafeArchiveMember, match="zz-escape"):
        check_links(root)


# -- item 2: a pin is only replaced by `unpin` -------------------------------------------------

TOFU_FILES = {f"top/f{i}.bin": payload(200_000, seed=40 + i) for i in range(5)}  # 1 MB


def _tar_bz2(files: dict[str, bytes]) -> bytes:
    return make_tar(files, "bz2")


def _damaged(archive: bytes) -> bytes:
    """Same size; 4 KiB zeroed a quarter in: bz2's block CRC fails, so extraction stops early."""
    data = bytearray(archive)
    at = len(data) // 4
    data[at : at + 4096] = bytes(4096)
    return bytes(data)


def _forget_blobs(cache: Path) -> None:
    import shutil

    for folder in ("blobs", "index"):
        shutil.rmtree(cache / folder, ignore_errors=True)


def test_a_pin_survives_a_damaged_archive_while_extracting_as_it_downloads(
    tmp_path, server, cache_dir
):
    good = _tar_bz2(TOFU_FILES)
    url = server.add("/d.tar.bz2", good)
    manifest = write_manifest(tmp_path, "tofu", [{"url": url, "pinned": False}])
    first = run_cli("get", str(manifest), "--to", str(tmp_path / "out1"))
    assert first.returncode == 0, first.stderr
    pins = sorted((cache_dir / "pins").glob("*.json"))
    pinned = [p.read_bytes() for p in pins]
    assert json.loads(pinned[0])["sha256"] == sha256(good)

    _forget_blobs(cache_dir)  # an evicted cache: the pins stay
    bad = _damaged(good)
    assert len(bad) == len(good)
    server.change("/d.tar.bz2", bad)
    server.faults("/d.tar.bz2", rate=400_000)  # the extraction fails long before the end
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out2"))
    assert done.returncode == 5, done.stderr
    assert f"expected sha256:{sha256(good)}" in done.stderr
    assert f"got sha256:{sha256(bad)}" in done.stderr
    assert "pinned on first use" in done.stderr
    assert [p.read_bytes() for p in sorted((cache_dir / "pins").glob("*.json"))] == pinned
    assert not (tmp_path / "out2" / "tofu").exists()

    # The attack's next step: other content, which must not be pinned "on first use".
    other = _tar_bz2({k: payload(200_000, seed=90 + i) for i, k in enumerate(TOFU_FILES)})
    server.change("/d.tar.bz2", other)
    server.faults("/d.tar.bz2")
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out3"))
    assert done.returncode == 5, done.stderr
    assert "mismatch" in done.stderr and "pinned on first use" in done.stderr
    assert [p.read_bytes() for p in sorted((cache_dir / "pins").glob("*.json"))] == pinned
    assert not (tmp_path / "out3" / "tofu").exists()


def test_pins_of_every_entry_stay_when_one_archive_is_damaged(tmp_path, server, cache_dir):
    good = make_tar({"a/x.txt": b"x" * 3000})
    broken = _damaged(_tar_bz2(TOFU_FILES))
    entries = [
        {"url": server.add("/good.tar", good), "pinned": False},
        {"url": server.add("/broken.tar.bz2", broken), "pinned": False},
    ]
    manifest = write_manifest(tmp_path, "two", entries)
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 6, done.stderr
    files = datastage.info(str(manifest))["files"]
    assert [(f["pin"] or {}).get("sha256") for f in files] == [sha256(good), sha256(broken)]
    assert "datastage unpin two" in done.stderr  # the way to accept a fixed file
    # A damaged archive whose bytes match its pin stays an archive error, pin untouched.
    again = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert again.returncode == 6, again.stderr
    assert [f["pin"]["sha256"] for f in datastage.info(str(manifest))["files"]] == [
        sha256(good),
        sha256(broken),
    ]
    # Only `unpin` replaces a pin; then the fixed file is downloaded and pinned.
    fixed = _tar_bz2(TOFU_FILES)
    server.change("/broken.tar.bz2", fixed)
    assert run_cli("unpin", str(manifest)).returncode == 0
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert datastage.info(str(manifest))["files"][1]["pin"]["sha256"] == sha256(fixed)


# -- item 3: nothing unhashed in the cache; verify and repair see altered blobs ----------------

DS_FILES = {"ds/a.wav": payload(50_000, 1), "ds/b.wav": payload(70_000, 2)}


@pytest.fixture
def dataset(tmp_path, server):
    """A pinned one-archive dataset served on loopback: (manifest, archive bytes)."""
    archive = make_tar(DS_FILES)
    url = server.add("/ds.tar", archive)
    manifest = write_manifest(
        tmp_path, "ds", [{"url": url, "sha256": sha256(archive), "size": len(archive)}], root="ds"
    )
    return manifest, archive


def _member_offset(archive: bytes, content: bytes) -> int:
    return archive.index(content[:64]) + 10


def test_a_persistent_copy_whose_bytes_differ_from_its_sidecar_is_not_cached(
    tmp_path, server, dataset, monkeypatch
):
    manifest, archive = dataset
    drive = tmp_path / "drive"
    monkeypatch.setenv("DATASTAGE_PERSISTENT_CACHE", str(drive))
    assert run_cli("get", str(manifest), "--to", str(tmp_path / "fast1")).returncode == 0
    saved = drive / "ds" / "ds.tar"
    _alter_in_place(saved, _member_offset(archive, DS_FILES["ds/a.wav"]))  # sidecar still fits

    monkeypatch.setenv("DATASTAGE_CACHE", str(tmp_path / "cache-2"))  # a new Colab session
    before = len(server.requests_for("/ds.tar"))
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "fast2"))
    assert done.returncode == 0, done.stderr
    assert "ignoring the persistent copy" in done.stderr and "checksum mismatch" in done.stderr
    assert len(server.requests_for("/ds.tar")) > before  # fetched again from the origin
    root = Path(done.stdout.strip())
    assert (root / "a.wav").read_bytes() == DS_FILES["ds/a.wav"]
    assert _blob(tmp_path / "cache-2", archive).read_bytes() == archive
    assert saved.read_bytes() == archive  # and the tier holds the good bytes again


def test_verify_reports_an_altered_blob_and_get_repairs_it(tmp_path, server, dataset, cache_dir):
    manifest, archive = dataset
    out = tmp_path / "out"
    assert run_cli("get", str(manifest), "--to", str(out)).returncode == 0
    blob = _blob(cache_dir, archive)
    _alter_in_place(blob, _member_offset(archive, DS_FILES["ds/b.wav"]))

    failed = run_cli("verify", str(manifest), "--to", str(out))
    assert failed.returncode == 5, failed.stderr
    assert str(blob) in failed.stderr and "no longer matching their sha256" in failed.stderr
    assert f"hint: repair with: datastage get {manifest} --to {out} --repair" in failed.stderr

    requests = len(server.requests_for("/ds.tar"))
    repaired = run_cli("get", str(manifest), "--to", str(out))  # what verify reported
    assert repaired.returncode == 0, repaired.stderr
    assert "no longer matches its sha256; fetching it again" in repaired.stderr
    assert len(server.requests_for("/ds.tar")) > requests
    assert blob.read_bytes() == archive
    assert run_cli("verify", str(manifest), "--to", str(out)).returncode == 0
    assert _files(out / "ds")["ds/b.wav"] == sha256(DS_FILES["ds/b.wav"])


def test_a_staging_from_an_altered_blob_fetches_it_again(tmp_path, server, dataset, cache_dir):
    manifest, archive = dataset
    assert run_cli("get", str(manifest), "--to", str(tmp_path / "one")).returncode == 0
    blob = _blob(cache_dir, archive)
    _alter_in_place(blob, _member_offset(archive, DS_FILES["ds/a.wav"]))
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr
    assert f"the cached {blob} no longer matches its sha256" in done.stderr
    assert (Path(done.stdout.strip()) / "a.wav").read_bytes() == DS_FILES["ds/a.wav"]
    assert blob.read_bytes() == archive
    assert run_cli("verify", str(manifest), "--to", str(tmp_path / "two")).returncode == 0


@pytest.mark.parametrize("how", [("get", "--repair"), ("verify", "--repair"), ("get", "--force")])
def test_get_repair_and_force_restore_a_same_size_change(tmp_path, dataset, how):
    manifest, _ = dataset
    out = tmp_path / "out"
    assert run_cli("get", str(manifest), "--to", str(out)).returncode == 0
    staged = out / "ds" / "ds" / "a.wav"
    _alter_in_place(staged, 100)
    plain = run_cli("get", str(manifest), "--to", str(out))
    assert plain.returncode == 0 and staged.read_bytes() != DS_FILES["ds/a.wav"], "sizes only"

    command, flag = how
    done = run_cli(command, str(manifest), "--to", str(out), flag)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out / "ds" / "ds")
    assert staged.read_bytes() == DS_FILES["ds/a.wav"]
    assert run_cli("verify", str(manifest), "--to", str(out)).returncode == 0


def test_get_repairs_the_same_size_change_verify_reported(tmp_path, server, dataset):
    manifest, _ = dataset
    out = tmp_path / "out"
    assert run_cli("get", str(manifest), "--to", str(out)).returncode == 0
    staged = out / "ds" / "ds" / "b.wav"
    _alter_in_place(staged, 5)
    failed = run_cli("verify", str(manifest), "--to", str(out))
    assert failed.returncode == 5 and "ds/b.wav" in failed.stderr
    requests = len(server.log)
    done = run_cli("get", str(manifest), "--to", str(out))
    assert done.returncode == 0, done.stderr
    assert staged.read_bytes() == DS_FILES["ds/b.wav"]
    assert len(server.log) == requests, "re-staged from the (re-hashed, intact) cached archive"
    assert run_cli("verify", str(manifest), "--to", str(out)).returncode == 0
    again = run_cli("get", str(manifest), "--to", str(out))
    assert again.returncode == 0 and again.stderr == "", "instant again: the report is gone"


def test_get_repair_leaves_an_intact_staging_alone(tmp_path, dataset):
    manifest, _ = dataset
    out = tmp_path / "out"
    assert run_cli("get", str(manifest), "--to", str(out)).returncode == 0
    before = os.stat(out / "ds").st_ino
    done = run_cli("get", str(manifest), "--to", str(out), "--repair")
    assert done.returncode == 0, done.stderr
    assert "nothing to repair" in done.stderr
    assert os.stat(out / "ds").st_ino == before  # not re-staged


# -- item 6: only a marker that parses and names the dataset proves ownership ------------------


@pytest.mark.parametrize(
    "marker, flags",
    [
        (b"not json at all", ()),
        (b'{"format": 1, "name": "someone-else", "files": {}}', ()),
        (b"[]", ()),
        (b"not json at all", ("--force",)),
    ],
    ids=["junk", "other-dataset", "not-an-object", "junk-force"],
)
def test_a_foreign_folder_with_a_marker_is_never_replaced(tmp_path, server, dataset, marker, flags):
    manifest, _ = dataset
    mine = tmp_path / "out" / "ds"
    mine.mkdir(parents=True)
    (mine / "my_results.csv").write_text("epoch,loss\n1,0.5\n")
    (mine / ".datastage.json").write_bytes(marker)
    before = tree(mine)
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"), *flags)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[0] == f"error: {mine} {FOREIGN}"
    assert tree(mine) == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ds"]
    assert server.log == [], "refused before a byte was downloaded"


def test_a_foreign_folder_is_refused_on_every_path(tmp_path, server):
    """Extract-while-downloading and `stage SRC` check ownership the same way."""
    data = make_tar({"top/x.bin": payload(10_000)}, "gz")  # streamable: the overlap path
    manifest = write_manifest(tmp_path, "ds", [{"url": server.add("/x.tar.gz", data)}])
    out = tmp_path / "out"
    (out / "ds").mkdir(parents=True)
    (out / "ds" / ".datastage.json").write_text("{}")
    (out / "ds" / "notes.txt").write_text("mine")
    done = run_cli("get", str(manifest), "--to", str(out))
    assert done.returncode == 2 and FOREIGN in done.stderr, done.stderr

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    (out / "src").mkdir()
    (out / "src" / ".datastage.json").write_text('{"format": 1, "name": "other", "files": {}}')
    (out / "src" / "keep.txt").write_text("keep")
    done = run_cli("stage", str(src), "--to", str(out))
    assert done.returncode == 2 and FOREIGN in done.stderr, done.stderr
    assert (out / "src" / "keep.txt").read_text() == "keep"
    assert (out / "ds" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("kind", ["file", "link-to-a-staging"])
def test_a_file_or_a_link_in_the_datasets_place_is_never_replaced(tmp_path, dataset, kind):
    manifest, _ = dataset
    out = tmp_path / "out"
    assert run_cli("get", str(manifest), "--to", str(tmp_path / "elsewhere")).returncode == 0
    out.mkdir()
    if kind == "file":
        (out / "ds").write_text("mine")
    else:
        os.symlink(tmp_path / "elsewhere" / "ds", out / "ds")  # its marker names "ds"
    before = tree(tmp_path)
    done = run_cli("get", str(manifest), "--to", str(out), "--force")
    assert done.returncode == 2 and f"error: {out / 'ds'} {FOREIGN}" in done.stderr
    assert tree(tmp_path) == before


def test_an_empty_folder_or_our_own_staging_is_replaced(tmp_path, dataset):
    manifest, _ = dataset
    out = tmp_path / "out"
    (out / "ds").mkdir(parents=True)  # empty: made by hand before the first get
    assert run_cli("get", str(manifest), "--to", str(out)).returncode == 0
    again = run_cli("get", str(manifest), "--to", str(out), "--force")
    assert again.returncode == 0, again.stderr
    assert (out / "ds" / "ds" / "a.wav").read_bytes() == DS_FILES["ds/a.wav"]
    assert sorted(p.name for p in out.iterdir()) == ["ds"]


def test_a_staging_holding_a_users_file_is_not_replaced(tmp_path, dataset):
    """Ours by its marker, but a file the marker does not list is the user's: never deleted."""
    manifest, _ = dataset
    out = tmp_path / "out"
    assert run_cli("get", str(manifest), "--to", str(out)).returncode == 0
    results = out / "ds" / "ds" / "results.csv"
    results.write_text("epoch,loss\n")
    done = run_cli("get", str(manifest), "--to", str(out), "--force")
    assert done.returncode == 2, done.stderr
    assert "holds 1 file(s) datastage did not stage (ds/results.csv)" in done.stderr
    assert results.read_text() == "epoch,loss\n"
    results.unlink()
    assert run_cli("get", str(manifest), "--to", str(out), "--force").returncode == 0
