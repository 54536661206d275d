"""kill -9 in the middle of a parallel zip / an external-tool 7z extraction, then re-run."""

from __future__ import annotations

import shutil

import pytest

from tests.archives import pack
from tests.conftest import payload, run_cli, sha256, tree, write_manifest
from tests.test_crash import _kill9, _start_get, _wait_for

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fmt", ["zip", "7z", "tar.gz"])
def test_kill_9_mid_extraction_then_rerun_gives_the_exact_tree(tmp_path, fmt):
    if fmt == "7z" and not shutil.which("7z"):
        pytest.skip("the external-tool path needs 7z")
    files = {f"top/part{i // 100}/f{i:04d}.bin": payload(48 * 1024, seed=i) for i in range(400)}
    data = pack(fmt, list(files.items()), tmp_path)
    (tmp_path / f"many.{fmt}").write_bytes(data)
    manifest = write_manifest(tmp_path, "many", [{"url": f"many.{fmt}", "sha256": sha256(data)}])
    out = tmp_path / "out"
    proc = _start_get(manifest, out)

    def extracting() -> bool:
        partials = list(out.glob(".many.partial-*")) if out.exists() else []
        return bool(partials) and sum(1 for _ in partials[0].rglob("*.bin")) >= 20

    _wait_for(extracting, proc)
    _kill9(proc)
    assert not (out / "many").exists(), "a killed staging never appears under the final name"

    done = run_cli("get", str(manifest), "--to", str(out))
    assert done.returncode == 0, done.stderr
    staged = {
        k: v for k, v in tree(out / "many").items() if v != "dir" and not k.startswith(".datastage")
    }
    assert staged == {name: sha256(content) for name, content in files.items()}
    assert not list(out.glob(".many.partial-*")), "leftovers of the killed run are cleaned"
