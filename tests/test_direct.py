"""One-liners without a manifest: naming, target detection, fsspec, lazy imports, usage errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FileServer, payload, run_cli, sha256

HEAVY = ("boto3", "botocore", "huggingface_hub", "gdown", "fsspec", "moto")


@pytest.mark.parametrize(
    ("url", "names", "expected"),
    [
        ("https://h/LJSpeech-1.1.tar.bz2", ["LJSpeech-1.1.tar.bz2"], "LJSpeech-1.1"),  # own case
        ("s3://b/data/clip.wav", ["clip.wav"], "clip"),
        ("hf://datasets/org/Speech@main", ["a", "b/c"], "Speech"),
        ("hf://datasets/org/speech/data/*.parquet", ["x.parquet", "y.parquet"], "data"),
        ("s3://bucket/prefix/", ["a", "b"], "prefix"),
        ("https://h/%E4%B8%AD.zip", ["中.zip"], "download"),
    ],
)
def test_default_names(url: str, names: list[str], expected: str) -> None:
    from datastage.resolve.oneliner import default_name

    assert default_name(url, names) == expected


def test_targets_are_told_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datastage.resolve.oneliner import is_direct

    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    assert is_direct("https://example.org/a.zip") and is_direct("s3://b/k")
    assert is_direct("./missing.tar") and is_direct("folder")
    assert not is_direct("my.toml") and not is_direct("ljspeech-not-here")


def test_http_one_liner_and_instant_repeat(server: FileServer, tmp_path: Path) -> None:
    data = payload(50_000, 3)
    url = server.add("/files/Tiny.bin", data)
    first = run_cli("get", url, "--to", str(tmp_path), "--sha256", sha256(data), "-q")
    assert first.returncode == 0, first.stderr
    assert (Path(first.stdout.strip()) / "Tiny.bin").read_bytes() == data
    probe = (
        "import sys\n"
        f"sys.argv = ['datastage', 'get', {url!r}, '--to', {str(tmp_path)!r}, "
        f"'--sha256', {sha256(data)!r}, '-q']\n"
        "import datastage.cli as c\n"
        "try: c.main()\n"
        "except SystemExit: pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    again = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert again.stdout.strip().splitlines()[-1] == "[]", again.stderr
    assert len(server.requests_for("/files/Tiny.bin")) == 1  # the repeat moved no bytes


def test_help_imports_no_source_library() -> None:
    probe = (
        "import sys\nimport datastage.cli as c\n"
        "try: c.main(['--help'])\nexcept SystemExit: pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stderr


def test_fsspec_memory_folder(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    from datastage import api

    fs = fsspec.filesystem("memory")
    fs.pipe("/ds/a/one.bin", payload(4000, 1))
    fs.pipe("/ds/two.bin", payload(5000, 2))
    root = api.get("memory://ds", to=tmp_path, quiet=True)
    assert root == tmp_path / "ds"
    assert (root / "a" / "one.bin").read_bytes() == payload(4000, 1)
    assert (root / "two.bin").read_bytes() == payload(5000, 2)


def test_sha256_for_a_folder_and_name_for_a_dataset_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("a")
    (tmp_path / "d" / "b").write_text("b")
    result = run_cli("get", str(tmp_path / "d"), "--to", str(tmp_path), "--sha256", "a" * 64)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --sha256 names one file, but")
    result = run_cli("get", "ljspeech", "--to", str(tmp_path), "--name", "x")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --sha256 and --name apply to a URL or path")


def test_unknown_scheme_and_missing_library_hint(tmp_path: Path) -> None:
    result = run_cli("get", "nope://x/y", "--to", str(tmp_path))
    assert result.returncode == 2 and "unsupported URL scheme 'nope'" in result.stderr
    # gcsfs is not a test dependency: fsspec names what to install
    result = run_cli("get", "gs://bucket/x.bin", "--to", str(tmp_path))
    assert result.returncode in (3, 4), result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("url", "package", "extra"),
    [
        ("s3://b/k.bin", "boto3", "s3"),
        ("hf://datasets/o/r/x", "huggingface_hub", "hf"),
        pytest.param(
            "gdrive://1AbCdEfGhIjKlMnOpQrStUvWxYz012345",
            "gdown",
            "gdrive",
            marks=pytest.mark.skipif(sys.version_info < (3, 10), reason="gdown 6 needs 3.10"),
        ),
        ("gs://b/x", "fsspec", "fsspec"),
    ],
)
def test_missing_library_names_its_extra(
    tmp_path: Path, url: str, package: str, extra: str
) -> None:
    """A Python without the source's package (blocked in sys.modules) gets an install hint."""
    probe = (
        f"import sys\nsys.modules[{package!r}] = None\n"
        "from datastage.cli import main\n"
        f"main(['get', {url!r}, '--to', {str(tmp_path)!r}])"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines() == [
        f"error: {url.split('://')[0]}:// needs {package}, which is not installed",
        f"hint: pip install 'datastage-ml[{extra}]'",
    ]
