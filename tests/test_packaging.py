"""The wheel: built offline from this tree, it carries the registry and the demo archive, and
an install of it (nothing from the source tree on the path) stages the demo offline."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("hatchling", reason="hatchling (the build backend) is not installed")
    out = tmp_path_factory.mktemp("wheel")
    # A copy, so that building never writes into the working tree.
    src = out / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", "*.egg-info", "data", ".*_cache", "build", "dist"
        ),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot build a wheel offline here: {done.stderr.strip()[-300:]}")
    # The distribution is datastage-ml (wheel datastage_ml-*.whl); the import stays datastage.
    (built,) = out.glob("datastage_ml-*.whl")
    return built


def _registry_facts(toml: str) -> tuple[int, str]:
    size = int(re.search(r"^size = (\d+)", toml, re.M).group(1))  # type: ignore[union-attr]
    digest = re.search(r'^sha256 = "([0-9a-f]{64})"', toml, re.M).group(1)  # type: ignore[union-attr]
    return size, digest


def test_wheel_holds_the_registry_and_the_demo_archive(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        tomls = sorted(REPO.glob("registry/*.toml"))
        assert len(tomls) > 1, "the registry's manifests are found"
        for toml in tomls:
            inside = f"datastage/_registry/{toml.name}"
            assert inside in names, f"{inside} missing from the wheel"
            assert zf.read(inside) == toml.read_bytes()
        demo = zf.read("datastage/_registry/demo/LJSpeech-demo.tar.gz")
        size, digest = _registry_facts(zf.read("datastage/_registry/demo.toml").decode())
        assert len(demo) == size and hashlib.sha256(demo).hexdigest() == digest
        assert "datastage/__main__.py" in names and "datastage/sources/http.py" in names
        assert "datastage/py.typed" in names  # PEP 561: users' type checkers read our hints
        assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(f"{dist_info}/METADATA").decode()
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    assert "Requires-Python: >=3.9" in metadata
    assert re.search(r"^Name: datastage-ml$", metadata, re.M)
    assert re.search(r"^Provides-Extra: notebook$", metadata, re.M)
    assert re.search(r"^datastage = datastage\.cli:main$", entry_points, re.M)


def test_installed_wheel_stages_the_demo_offline(wheel, tmp_path):
    """The Quickstart from the wheel: the dependencies come from this environment (linked
    with a .pth file), datastage itself only from the wheel."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    deps = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    Path(site, "outer-deps.pth").write_text("\n".join(deps) + "\n")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)  # a wheel is "installed" by unpacking it into site-packages
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(DATASTAGE_OFFLINE="1", DATASTAGE_CACHE=str(tmp_path / "cache"))
    where = subprocess.run(
        [str(python), "-c", "import datastage; print(datastage.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(site), "datastage must come from the wheel"
    done = subprocess.run(
        [str(python), "-m", "datastage", "get", "demo", "--to", "./data"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    root = Path(done.stdout.strip())
    assert root == tmp_path / "data" / "demo" / "LJSpeech-demo"
    assert (root / "metadata.csv").is_file() and any((root / "wavs").glob("*.wav"))
