"""A new user's first run (issue 17): the right package, honest hints, no silent surprises.

Each test goes through the CLI or the Python API, as a user would.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from datastage.resolve.manifest import tomllib
from tests.archives import make_zip
from tests.conftest import payload, run_cli, sha256, tree, write_manifest

REPO = Path(__file__).resolve().parent.parent
DISTRIBUTION = "datastage-ml"

# -- item 1: every install line installs this project ----------------------------------------

# pip, pip3, pip3.11, with options before the command (-q, --quiet, --opt=value)
_PIP_INSTALL = re.compile(
    r"\bpip(?:3(?:\.\d+)?)?(?:\s+--?[\w-]+(?:=\S+)?)*\s+install\b([^`\n#;&|)]*)"
)


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _requirement_name(arg: str) -> str:
    """``'datastage-ml[s3]'`` -> ``datastage-ml``; ``pkg @ git+...`` -> ``pkg``."""
    return re.split(r"[\[\s@<>=!~;]", arg.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _install_targets(text: str) -> list[str]:
    """The requirement arguments of every ``pip install`` command in ``text``."""
    targets = []
    text = re.sub(r"\\\n\s*", " ", text)  # a command continued on the next line
    for match in _PIP_INSTALL.finditer(text):
        try:
            words = shlex.split(match.group(1))
        except ValueError:
            words = match.group(1).split()
        # "name @ git+url" is one requirement written as three words
        joined = " ".join(words).replace(" @ ", "@")
        targets += [w for w in joined.split() if not w.startswith("-")]
    return targets


def test_distribution_name_and_every_install_line_agree() -> None:
    from datastage.core import errors

    project = _pyproject()["project"]
    assert project["name"] == DISTRIBUTION  # `datastage` on PyPI is IBM's DataStage SDK
    assert getattr(errors, "DISTRIBUTION", None) == DISTRIBUTION  # what install hints name
    assert project["scripts"] == {"datastage": "datastage.cli:main"}
    repo_url = project["urls"]["Homepage"].rstrip("/")
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / ".ci" / "run"]
    code = sorted((REPO / "datastage").rglob("*.py")) + sorted((REPO / "scripts").glob("*.py"))
    checked = 0
    for path in docs + code:
        for target in _install_targets(path.read_text(encoding="utf-8")):
            name = _requirement_name(target)
            ours = name in (DISTRIBUTION, ".") or target.startswith((".", "'.", '".'))
            from_repo = target.strip("'\"").startswith(f"git+{repo_url}") or (
                f"@git+{repo_url}" in target
            )
            if name == "datastage" or ("datastage" in name and not (ours or from_repo)):
                raise AssertionError(f"{path.name}: `pip install {target}` is not this project")
            checked += ours or from_repo
    assert checked >= 6  # the Quickstart, the Install section, the Colab cell, the extras
    # extras that pull in other extras must name this distribution, not `datastage`
    own = [
        requirement
        for requirements in project["optional-dependencies"].values()
        for requirement in requirements
        if "datastage" in _requirement_name(requirement)
    ]
    assert own and {_requirement_name(r) for r in own} == {DISTRIBUTION}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    colab_cell = readme.split("### Notebooks (Colab)", 1)[1].split("```", 2)[1]
    assert f'install "git+{repo_url}"' in colab_cell or f"install {DISTRIBUTION}" in colab_cell


def test_quickstart_keeps_its_two_set_up_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Quickstart", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert block.splitlines() == [
        "pip install . && datastage get demo --to ./data",
        "pip install '.[test]' && python -m pytest -q",
    ]
    assert "pip install '.[test]' && python -m pytest -q" in (REPO / ".ci" / "run").read_text()


# -- item 4: path/to/x.toml/<subset> ---------------------------------------------------------


def _manifest_with_subsets(folder: Path) -> Path:
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "a.txt").write_bytes(b"alpha\n")
    (folder / "data" / "b.txt").write_bytes(b"beta\n")
    manifest = folder / "corpus.toml"
    manifest.write_text(
        'name = "my_corpus"\n'
        '[subsets.train]\nfiles = [{ url = "data/a.txt" }]\n'
        '[subsets.dev]\nfiles = [{ url = "data/b.txt" }]\n'
    )
    return manifest


def test_subset_of_a_manifest_file_is_staged_by_path(tmp_path: Path) -> None:
    home = tmp_path / "project"
    manifest = _manifest_with_subsets(home / "manifests")
    for target in (
        "manifests/corpus.toml/train",
        f"{manifest}/train",
        "./manifests/corpus.toml/train",
    ):
        done = run_cli("get", target, "--to", str(tmp_path / "out"), cwd=home)
        assert done.returncode == 0, done.stderr
        root = Path(done.stdout.strip())
        assert root == tmp_path / "out" / "my_corpus-train"
        assert (root / "a.txt").read_bytes() == b"alpha\n" and not (root / "b.txt").exists()
    shown = run_cli("info", "manifests/corpus.toml/dev", cwd=home)
    assert shown.returncode == 0, shown.stderr
    assert "name:        my_corpus/dev" in shown.stdout and "b.txt" in shown.stdout
    typo = run_cli("get", "manifests/corpus.toml/trian", "--to", str(tmp_path / "out"), cwd=home)
    assert typo.returncode == 3
    assert typo.stderr.splitlines() == [
        "error: manifests/corpus.toml has no subset 'trian'",
        "hint: did you mean 'manifests/corpus.toml/train'?",
    ]
    missing = run_cli("get", "nowhere/corpus.toml/train", "--to", str(tmp_path / "out"), cwd=home)
    assert missing.returncode == 3
    assert missing.stderr.splitlines() == ["error: manifest nowhere/corpus.toml: no such file"]


# -- item 5: hints that lead somewhere -------------------------------------------------------


def test_verify_hint_repeats_the_target_as_typed_and_works(tmp_path: Path) -> None:
    home = tmp_path / "project"
    _manifest_with_subsets(home / "manifests")
    out = tmp_path / "out dir"
    target = "manifests/corpus.toml/train"
    assert run_cli("get", target, "--to", str(out), cwd=home).returncode == 0
    staged = out / "my_corpus-train" / "a.txt"
    staged.chmod(0o644)
    staged.write_bytes(b"alpha, edited\n")
    failed = run_cli("verify", target, "--to", str(out), cwd=home)
    assert failed.returncode == 5
    hint = failed.stderr.splitlines()[-1]
    command = f"datastage get {target} --to '{out}' --repair"
    assert hint == f"hint: repair with: {command}"
    again = run_cli(*shlex.split(command)[1:], cwd=home)  # the hint, as the user would paste it
    assert again.returncode == 0, again.stderr
    assert staged.read_bytes() == b"alpha\n"
    assert run_cli("verify", target, "--to", str(out), cwd=home).returncode == 0


def test_unknown_dataset_text_carries_the_suggestion(tmp_path: Path) -> None:
    import datastage
    from datastage.core.errors import DatasetNotFound

    with pytest.raises(DatasetNotFound) as caught:
        datastage.get("ljspech", to=tmp_path)
    assert str(caught.value) == "unknown dataset 'ljspech'; did you mean 'ljspeech'?"
    done = run_cli("get", "ljspech", "--to", str(tmp_path))
    assert done.returncode == 3
    assert done.stderr.splitlines() == [  # the CLI says the hint once, on its own line
        "error: unknown dataset 'ljspech'",
        "hint: did you mean 'ljspeech'?",
    ]


# -- item 6: a persistent cache on a mount that is not there ---------------------------------


def _two_file_dataset(folder: Path, server) -> Path:
    files = {"a.bin": payload(3000, 1), "b.bin": payload(4000, 2)}
    entries = [
        {"url": server.add(f"/{n}", data), "sha256": sha256(data), "extract": False}
        for n, data in files.items()
    ]
    return write_manifest(folder, "pair", entries)


@pytest.mark.parametrize("drive_folder_exists", [False, True])
def test_persistent_cache_on_an_unmounted_drive_is_refused(
    tmp_path: Path, server, drive_folder_exists: bool
) -> None:
    root = tmp_path / "platform-root"  # conftest's DATASTAGE_PLATFORM_ROOT
    (root / "content" / "sample_data").mkdir(parents=True)  # Colab, Drive not mounted
    if drive_folder_exists:  # e.g. made by an earlier tool: still the VM's own disk
        (root / "content" / "drive" / "MyDrive").mkdir(parents=True)
    before = tree(root)
    persistent = root / "content" / "drive" / "MyDrive" / "datastage-cache"
    setting = run_cli("config", "set", "persistent_cache", str(persistent))
    assert setting.returncode == 0 and "drive.mount('/content/drive')" in setting.stderr
    manifest = _two_file_dataset(tmp_path, server)
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert (Path(done.stdout.strip()) / "b.bin").read_bytes() == payload(4000, 2)
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: not using the persistent cache {persistent}: Google Drive is not mounted at "
        f"{root}/content/drive; to keep downloads across sessions: "
        "from google.colab import drive; drive.mount('/content/drive')"
    ]
    assert "persistent tier" not in done.stderr  # nothing claims to be saved
    assert tree(root) == before  # the mount path was not created (nor anything under it)
    shown = json.loads(run_cli("env", "--json").stdout)
    assert shown["platform"] == "colab"
    (drive,) = [s for s in shown["stores"] if s["role"] == "persistent"]
    assert drive["available"] is False and shown["defaults"]["persistent_cache"] is None
    assert any("drive.mount('/content/drive')" in hint for hint in shown["hints"])


def test_autodl_fs_is_used_only_when_mounted(tmp_path: Path, server, mount_tmpfs) -> None:
    root = tmp_path / "platform-root"
    (root / "root" / "autodl-tmp").mkdir(parents=True)
    env = {"DATASTAGE_PLATFORM": "autodl"}
    persistent = root / "root" / "autodl-fs" / "cache"
    assert run_cli("config", "set", "persistent_cache", str(persistent)).returncode == 0
    manifest = _two_file_dataset(tmp_path, server)
    refused = run_cli("get", str(manifest), "--to", str(tmp_path / "out1"), env=env)
    assert refused.returncode == 0, refused.stderr
    assert f"warning: not using the persistent cache {persistent}: autodl-fs" in refused.stderr
    assert not (root / "root" / "autodl-fs").exists()
    mount_tmpfs(root / "root" / "autodl-fs")
    cache2 = str(tmp_path / "cache2")
    used = run_cli(
        "get", str(manifest), "--to", str(tmp_path / "out2"), env={**env, "DATASTAGE_CACHE": cache2}
    )
    assert used.returncode == 0, used.stderr
    assert "warning" not in used.stderr
    assert (persistent / "pair" / "a.bin").read_bytes() == payload(3000, 1)


# -- item 7: cache ls / prune count a shared file once ---------------------------------------


def _shared_cache(tmp_path: Path, server) -> dict[str, bytes]:
    """alpha uses a; beta uses a and b; gamma uses c (used in that order): 100 kB on disk."""
    data = {"a": payload(30_000, 1), "b": payload(50_000, 2), "c": payload(20_000, 3)}
    urls = {k: server.add(f"/{k}.bin", v) for k, v in data.items()}
    for name, files in (("alpha", "a"), ("beta", "ab"), ("gamma", "c")):
        entries = [{"url": urls[f], "sha256": sha256(data[f])} for f in files]
        manifest = write_manifest(tmp_path, name, entries)
        assert run_cli("get", str(manifest), "--to", str(tmp_path / "fast")).returncode == 0
    return data


def _blob(cache: Path, data: bytes) -> Path:
    digest = sha256(data)
    return cache / "blobs" / "sha256" / digest[:2] / digest


def test_cache_counts_shared_files_once_and_prune_stops_at_the_limit(
    tmp_path: Path, server, cache_dir: Path
) -> None:
    data = _shared_cache(tmp_path, server)
    listed = json.loads(run_cli("cache", "ls", "--json").stdout)
    assert listed["total"] == 100_000  # a is used twice, stored once
    rows = {e["name"]: (e["size"], e["shared"]) for e in listed["entries"]}
    assert rows == {"alpha": (30_000, 30_000), "beta": (80_000, 30_000), "gamma": (20_000, 0)}
    text = run_cli("cache", "ls").stdout.splitlines()
    assert text[-1].split()[:3] == ["total", "100.0", "kB"]

    fits = run_cli("cache", "prune", "--max-size", "100K")  # already fits: nothing to remove
    assert fits.returncode == 0, fits.stderr
    assert fits.stdout.splitlines() == ["left: 100.0 kB of verified downloads"]
    assert all(_blob(cache_dir, d).is_file() for d in data.values())

    dry = run_cli("cache", "prune", "--max-size", "50K", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "would remove alpha (0 B)",  # its file is still beta's
        "would remove beta (80.0 kB)",
        "would leave: 20.0 kB of verified downloads",
    ]
    assert all(_blob(cache_dir, d).is_file() for d in data.values())  # nothing removed

    done = run_cli("cache", "prune", "--max-size", "50K")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "removed alpha (0 B)",
        "removed beta (80.0 kB)",
        "left: 20.0 kB of verified downloads",
    ]
    assert _blob(cache_dir, data["c"]).read_bytes() == data["c"]  # gamma stays: the cache fits
    assert not _blob(cache_dir, data["a"]).exists() and not _blob(cache_dir, data["b"]).exists()


# -- item 8: noise and names -----------------------------------------------------------------


def test_a_folder_of_files_gets_one_pinning_line(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    for i in range(12):
        (folder / f"spk{i % 3}").mkdir(parents=True, exist_ok=True)
        (folder / f"spk{i % 3}" / f"utt{i}.txt").write_text(f"utterance {i}\n")
    done = run_cli("get", str(folder), "--to", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "pinned on first use: 12 of 12 files had no sha256 in the manifest; their sizes and "
        "sha256 are recorded and later downloads must match "
        f"(see: datastage info {folder})"
    ]
    assert (Path(done.stdout.strip()) / "spk1" / "utt4.txt").read_text() == "utterance 4\n"


@pytest.mark.parametrize("one_top_folder", [True, False])
def test_url_one_liner_keeps_the_archive_name_and_prints_its_top_folder(
    tmp_path: Path, server, one_top_folder: bool
) -> None:
    top = "VCTK-Corpus-0.92/" if one_top_folder else ""
    archive = make_zip({f"{top}wav48/p225_001.flac": b"flac", f"{top}README": b"read me"})
    url = server.add("/bitstream/DS_10283_3443.zip", archive)
    out = tmp_path / "out"
    expected = out / "DS_10283_3443" / top.rstrip("/") if top else out / "DS_10283_3443"
    for command in ("get", "get", "verify"):  # staged, then current, then re-hashed
        done = run_cli(command, url, "--to", str(out))
        assert done.returncode == 0, done.stderr
        assert Path(done.stdout.strip()) == expected
    assert (expected / "README").read_bytes() == b"read me"
    assert len(server.requests_for("/bitstream/DS_10283_3443.zip")) == 1


def test_sizes_are_shown_and_parsed_in_one_unit(tmp_path: Path, server, cache_dir: Path) -> None:
    for name, size in (("old", 100_000), ("new", 1_000)):
        data = payload(size, size)
        entry = {"url": server.add(f"/{name}.bin", data), "sha256": sha256(data)}
        manifest = write_manifest(tmp_path, name, [entry])
        assert run_cli("get", str(manifest), "--to", str(tmp_path / "fast")).returncode == 0
    assert run_cli("cache", "ls").stdout.splitlines()[-1].split()[:3] == ["total", "101.0", "kB"]
    done = run_cli("cache", "prune", "--max-size", "100K")  # below the 101.0 kB shown
    assert done.stdout.splitlines() == [
        "removed old (100.0 kB)",
        "left: 1.0 kB of verified downloads",
    ]
    binary = run_cli("cache", "prune", "--max-size", "0.9KiB", "--dry-run")  # 921.6 bytes
    assert binary.stdout.splitlines()[0] == "would remove new (1.0 kB)"


def test_unknown_platform_is_named(tmp_path: Path) -> None:
    done = run_cli("env", env={"DATASTAGE_PLATFORM": "kaggle"})
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "warning: DATASTAGE_PLATFORM='kaggle' is not a platform datastage knows "
        "(colab, autodl, sagemaker, local); detecting the platform instead"
    ]


def test_non_commercial_warning_without_a_homepage_points_somewhere(tmp_path: Path, server) -> None:
    data = payload(2000, 5)
    entry = {"url": server.add("/nc.bin", data), "sha256": sha256(data)}
    manifest = write_manifest(tmp_path, "nc", [entry], noncommercial=True, license="CC BY-NC 4.0")
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "warning: nc is licensed CC BY-NC 4.0: non-commercial use only; the manifest names no "
        "homepage: check the terms with its publisher (127.0.0.1)"
    ]


# -- item 9: progress in a notebook without ipywidgets ---------------------------------------

_KERNEL_WITHOUT_WIDGETS = """
import sys, types, warnings
warnings.simplefilter("always")
sys.modules["ipywidgets"] = None  # not installed: importing it fails
for name in ("ipykernel", "ipykernel.zmqshell"):  # what a Jupyter kernel has loaded
    sys.modules[name] = types.ModuleType(name)
ipython = types.ModuleType("IPython")
ipython.get_ipython = lambda: types.SimpleNamespace(config={"IPKernelApp": {}})
sys.modules["IPython"] = ipython
import datastage
print(datastage.get(sys.argv[1], to=sys.argv[2]))
"""


def test_notebook_without_ipywidgets_gets_text_bars_and_no_warning(tmp_path: Path) -> None:
    data = payload(50_000, 9)
    (tmp_path / "clip.bin").write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-c", _KERNEL_WITHOUT_WIDGETS, "clip.bin", "out"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (Path(done.stdout.strip()) / "clip.bin").read_bytes() == data
    assert "IProgress" not in done.stderr and "Warning" not in done.stderr
    # a plain text bar, counting in the units messages use (k = 1000 bytes)
    assert "clip.bin:   0%|          | 0.00/50.0k" in done.stderr
