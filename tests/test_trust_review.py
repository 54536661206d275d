"""Review of issue 11's trust fixes (branch sec-stage): attacks that still got through, each
closed, through the CLI against real archives served on loopback.
"""

from __future__ import annotations

from tests.archives import make_tar
from tests.conftest import run_cli, sha256, write_manifest

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
