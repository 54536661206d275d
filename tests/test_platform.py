"""Platform detection on redirected roots, `datastage env`, the config file and its precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datastage.settings import config
from datastage.settings import machine as platform
from tests.conftest import run_cli


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    return tmp_path / "platform-root"  # conftest points DATASTAGE_PLATFORM_ROOT here


def test_plain_machine_is_local_with_no_default_to(fake_root):
    found = platform.detect()
    assert found.name == "local" and found.default_to is None and found.stores == ()
    with pytest.raises(Exception, match="--to is required"):
        config.resolve_to()


def test_colab_detected_from_folders_and_drive_mount_state(fake_root, mount_tmpfs):
    (fake_root / "content" / "sample_data").mkdir(parents=True)
    found = platform.detect()
    assert found.name == "colab"
    assert found.default_to == fake_root / "content" / "datasets"
    assert found.default_cache == fake_root / "content" / ".datastage-cache"
    (drive,) = found.of_role("persistent")
    assert drive.path == fake_root / "content/drive/MyDrive" and not drive.available
    assert any("drive.mount" in h for h in found.hints)
    (fake_root / "content" / "drive" / "MyDrive").mkdir(parents=True)  # not a mount: the VM disk
    (drive,) = platform.detect().of_role("persistent")
    assert not drive.available
    mount_tmpfs(fake_root / "content" / "drive")
    (fake_root / "content" / "drive" / "MyDrive").mkdir()
    (drive,) = platform.detect().of_role("persistent")
    assert drive.available and drive.free and drive.free > 0


def test_colab_detected_from_environment(fake_root, monkeypatch):
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-2026")
    assert platform.detect().name == "colab"


def test_autodl_detected_with_its_disks_and_public_datasets(fake_root, mount_tmpfs):
    for folder in ("root/autodl-tmp", "root/autodl-pub"):
        (fake_root / folder).mkdir(parents=True)
    mount_tmpfs(fake_root / "root" / "autodl-fs")  # network storage: a mount point
    (fake_root / "etc").mkdir()
    (fake_root / "etc" / "network_turbo").write_text("export https_proxy=...\n")
    found = platform.detect()
    assert found.name == "autodl"
    assert found.default_to == fake_root / "root/autodl-tmp/datasets"
    assert found.default_cache == fake_root / "root/autodl-tmp/.datastage-cache"
    assert found.default_sources == (fake_root / "root/autodl-pub",)
    assert [s.role for s in found.stores] == ["fast", "persistent", "source"]
    assert all(s.available for s in found.stores)
    assert any("network_turbo" in h for h in found.hints)


def test_sagemaker_detected_from_sm_environment(fake_root, monkeypatch):
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-1")
    (fake_root / "opt" / "ml").mkdir(parents=True)
    found = platform.detect()
    assert found.name == "sagemaker"
    assert found.default_to == fake_root / "opt/ml/data"


def test_forced_platform_wins(fake_root, monkeypatch):
    (fake_root / "content" / "sample_data").mkdir(parents=True)
    monkeypatch.setenv("DATASTAGE_PLATFORM", "local")
    assert platform.detect().name == "local"


def test_env_command_text_and_json(fake_root, monkeypatch, mount_tmpfs):
    for folder in ("root/autodl-tmp", "root/autodl-pub"):
        (fake_root / folder).mkdir(parents=True)
    done = run_cli("env", env={"HF_ENDPOINT": "https://hf-mirror.com", "DATASTAGE_CACHE": ""})
    assert done.returncode == 0, done.stderr
    assert "platform:          autodl" in done.stdout
    assert "HF_ENDPOINT:" in done.stdout and "hf-mirror.com" in done.stdout
    assert f"{fake_root}/root/autodl-fs  (autodl-fs; not mounted / missing)" in done.stdout
    assert f"--to default:      {fake_root}/root/autodl-tmp/datasets" in done.stdout
    assert "datastage config set persistent_cache" not in done.stdout  # autodl-fs not mounted
    info = json.loads(run_cli("env", "--json", env={"DATASTAGE_CACHE": ""}).stdout)
    assert info["platform"] == "autodl"
    assert info["defaults"]["cache_dir"] == f"{fake_root}/root/autodl-tmp/.datastage-cache"
    assert info["defaults"]["sources"] == [f"{fake_root}/root/autodl-pub"]
    free = {s["label"]: s["free"] for s in info["stores"]}
    assert free["autodl-tmp (data disk)"] > 0 and free["autodl-fs"] is None
    mount_tmpfs(fake_root / "root" / "autodl-fs")
    mounted = run_cli("env", env={"DATASTAGE_CACHE": ""}).stdout
    assert (
        f"hint: keep downloads across sessions: datastage config set persistent_cache "
        f"{fake_root}/root/autodl-fs/datastage-cache" in mounted
    )


def test_precedence_flag_env_file_platform(tmp_path, fake_root, monkeypatch):
    (fake_root / "content" / "sample_data").mkdir(parents=True)
    monkeypatch.delenv("DATASTAGE_CACHE")
    platform_default = fake_root / "content" / ".datastage-cache"
    assert config.resolve().cache_dir == platform_default
    assert config.resolve_to() == fake_root / "content" / "datasets"

    assert run_cli("config", "set", "cache_dir", str(tmp_path / "from-file")).returncode == 0
    assert run_cli("config", "set", "to", str(tmp_path / "to-file")).returncode == 0
    assert config.resolve().cache_dir == tmp_path / "from-file"
    assert config.resolve_to() == tmp_path / "to-file"

    monkeypatch.setenv("DATASTAGE_CACHE", str(tmp_path / "from-env"))
    monkeypatch.setenv("DATASTAGE_TO", str(tmp_path / "to-env"))
    assert config.resolve().cache_dir == tmp_path / "from-env"
    assert config.resolve_to() == tmp_path / "to-env"

    assert config.resolve(cache_dir=tmp_path / "flag").cache_dir == tmp_path / "flag"
    assert config.resolve_to(tmp_path / "to-flag") == tmp_path / "to-flag"


def test_config_commands_round_trip(tmp_path):
    drive = tmp_path / "drive" / "datastage-cache"
    assert run_cli("config", "set", "persistent_cache", str(drive)).returncode == 0
    assert run_cli("config", "set", "sources", f"{tmp_path}/a:{tmp_path}/b").returncode == 0
    assert run_cli("config", "set", "quiet", "yes").returncode == 0
    assert run_cli("config", "get", "persistent_cache").stdout.strip() == str(drive)
    listed = run_cli("config", "list").stdout
    assert f"sources = {tmp_path}/a:{tmp_path}/b" in listed
    assert "quiet = true" in listed
    settings = config.resolve()
    assert settings.persistent_cache == drive
    assert settings.sources == (tmp_path / "a", tmp_path / "b")
    assert settings.quiet is True
    assert run_cli("config", "unset", "persistent_cache").returncode == 0
    assert run_cli("config", "get", "persistent_cache").returncode == 1
    assert config.resolve().persistent_cache is None


@pytest.mark.parametrize(
    "args, message",
    [
        (("config", "set", "colour", "red"), "error: unknown config key 'colour'"),
        (("config", "set", "retries", "many"), "error: 'many' is not a valid value for retries"),
        (("config", "get", "colour"), "error: unknown config key 'colour'"),
    ],
)
def test_config_bad_input_is_one_line(args, message):
    done = run_cli(*args)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == message or done.stderr.startswith(message)
    assert "Traceback" not in done.stderr


def test_broken_config_file_is_one_line(tmp_path):
    (tmp_path / "config.toml").write_text("persistent_cache = [1, 2]\n")
    done = run_cli("env")
    assert done.returncode == 2
    assert done.stderr.startswith("error: config file ")
    assert "persistent_cache must be a path" in done.stderr


def test_get_without_to_uses_the_platform_default(tmp_path, fake_root, server):
    from tests.conftest import payload, write_manifest

    (fake_root / "content" / "sample_data").mkdir(parents=True)
    data = payload(1000)
    url = server.add("/a.bin", data)
    manifest = write_manifest(tmp_path, "a", [{"url": url, "extract": False}])
    done = run_cli("get", str(manifest))
    assert done.returncode == 0, done.stderr
    staged = fake_root / "content" / "datasets" / "a"
    assert done.stdout.strip() == str(staged)
    assert (staged / "a.bin").read_bytes() == data


def test_get_without_to_on_a_plain_machine_says_what_to_do(tmp_path):
    from tests.conftest import write_manifest

    manifest = write_manifest(tmp_path, "a", [{"url": "http://127.0.0.1:9/a.bin"}])
    done = run_cli("get", str(manifest))
    assert done.returncode == 2
    assert done.stderr.startswith("error: --to is required on this machine")
