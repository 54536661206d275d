"""Where are we running? Colab, AutoDL, SageMaker (or another cloud notebook), or a plain machine.

Owns: probing the well-known folders and environment variables of each platform, and the
defaults that follow from them (where ``--to`` stages, where the cache of downloads lives, which
persistent stores and read-only source folders exist). Costs a handful of ``stat`` calls and no
imports beyond the standard library, so a repeated ``get`` stays instant.

    colab      /content (fast, lost at reconnect), /content/drive/MyDrive (Google Drive, slow,
               persistent), COLAB_* environment variables
    autodl     /root/autodl-tmp (fast data disk), /root/autodl-fs (persistent network storage),
               /root/autodl-pub (read-only public datasets), /etc/network_turbo (proxy script)
    sagemaker  SM_* environment variables, /opt/ml (training jobs),
               /home/ec2-user/SageMaker (the persistent volume of notebook instances)
    local      anything else: no default for --to, the per-user cache

Tests (and curious users) redirect every probed path with ``DATASTAGE_PLATFORM_ROOT=/some/dir``
(``/content`` is then looked for at ``/some/dir/content``) and can force the answer with
``DATASTAGE_PLATFORM=colab|autodl|sagemaker|local``.
Does not own: the precedence between flags, environment and config file (config.py).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT_ENV = "DATASTAGE_PLATFORM_ROOT"
FORCE_ENV = "DATASTAGE_PLATFORM"
NAMES = ("colab", "autodl", "sagemaker", "local")

#: Network settings worth showing: they decide whether downloads work at all on these platforms.
NETWORK_VARS = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "HF_ENDPOINT",
    "HF_HOME",
    "HF_HUB_ENABLE_HF_TRANSFER",
)


@dataclass(frozen=True)
class Store:
    """A folder the platform offers: a fast disk, a persistent store or a read-only source."""

    role: str  # "fast", "persistent" or "source"
    label: str  # what people call it ("Google Drive", "autodl-fs", ...)
    path: Path
    available: bool  # the folder exists (for a mount: it is mounted)
    free: Optional[int]  # bytes free, None when unavailable
    # A store that lives on a mount: the mount point (``/content/drive``), and how to mount it.
    # Until it is mounted, the folder (if any) is the VM's own disk and keeps nothing.
    mount: Optional[Path] = None
    mount_hint: str = ""

    def holds(self, path: Path) -> bool:
        """``path`` is on this store's mount (at or below the mount point)."""
        if self.mount is None:
            return False
        for mount in {Path(os.path.abspath(self.mount)), Path(os.path.realpath(self.mount))}:
            for candidate in {Path(os.path.abspath(path)), Path(os.path.realpath(path))}:
                if candidate == mount or mount in candidate.parents:
                    return True
        return False


@dataclass(frozen=True)
class Platform:
    name: str
    stores: tuple[Store, ...]
    default_to: Optional[Path]  # where `get` stages when --to is not given
    default_cache: Optional[Path]  # None: the per-user cache (platformdirs)
    suggested_persistent: Optional[Path]  # shown by `datastage env`, used only when configured
    network: tuple[
        tuple[str, str], ...
    ]  # (variable, value) of the proxy / HF settings that are set
    hints: tuple[str, ...] = ()

    def of_role(self, role: str) -> list[Store]:
        return [s for s in self.stores if s.role == role]

    def unmounted(self, path: Path) -> Optional[Store]:
        """The store whose mount ``path`` is on, when that mount is not there; else None.

        Writing there would create the mount's folder on the VM's disk and lose it with the
        session (and would then hide the real mount), so such a path must not be used.
        """
        return next((s for s in self.stores if s.holds(path) and not is_mounted(s.mount)), None)

    @property
    def default_sources(self) -> tuple[Path, ...]:
        return tuple(s.path for s in self.of_role("source") if s.available)


def detect(environ: Optional[Mapping[str, str]] = None) -> Platform:
    """Probe the environment and the well-known folders; never raises."""
    env = os.environ if environ is None else environ
    root = Path(env.get(ROOT_ENV, "") or "/")
    forced = env.get(FORCE_ENV, "").strip().lower()
    if forced and forced not in NAMES:
        from ..core.progress import warn_once

        warn_once(
            f"{FORCE_ENV}={env[FORCE_ENV]!r} is not a platform datastage knows "
            f"({', '.join(NAMES)}); detecting the platform instead"
        )
    name = forced if forced in NAMES else _guess(env, root)
    build = {"colab": _colab, "autodl": _autodl, "sagemaker": _sagemaker, "local": _local}[name]
    network = tuple((k, env[k]) for k in NETWORK_VARS if env.get(k))
    return build(root, env, network)


def _at(root: Path, path: str) -> Path:
    """A well-known absolute path, moved under the redirect root when there is one."""
    return root / path.lstrip("/")


def _guess(env: Mapping[str, str], root: Path) -> str:
    if any(k.startswith("COLAB_") for k in env) or _at(root, "/content/sample_data").is_dir():
        return "colab"
    if (
        _at(root, "/root/autodl-tmp").is_dir()
        or _at(root, "/root/autodl-pub").is_dir()
        or _at(root, "/etc/network_turbo").exists()
    ):
        return "autodl"
    if any(k.startswith("SM_") for k in env) or _at(root, "/opt/ml").is_dir():
        return "sagemaker"
    return "local"


def is_mounted(path: Optional[Path]) -> bool:
    """A mount point is there: the store is real. The well-known path may be a symlink to the
    mount, and a bind mount (a container volume from the host's disk) has its parent's device
    number, which ``os.path.ismount`` alone takes for "not mounted": the kernel's table says."""
    if path is None:
        return False
    real = os.path.realpath(path)
    return os.path.ismount(real) or real in _mount_points()


def _mount_points() -> frozenset[str]:
    """Every mount point the kernel lists for this process (empty where there is no /proc)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return frozenset()
    # field 5 is the mount point, with space, tab, newline and backslash written as \ooo
    unescape = re.compile(r"\\([0-7]{3})")
    return frozenset(
        unescape.sub(lambda m: chr(int(m.group(1), 8)), line.split(" ")[4])
        for line in lines
        if len(line.split(" ")) > 4
    )


def _store(
    role: str, label: str, path: Path, mount: Optional[Path] = None, mount_hint: str = ""
) -> Store:
    available = path.is_dir() and (mount is None or is_mounted(mount))
    free = None
    if available:
        try:
            free = shutil.disk_usage(path).free
        except OSError:
            available = False
    return Store(role, label, path, available, free, mount, mount_hint)


DRIVE_MOUNT_HINT = "from google.colab import drive; drive.mount('/content/drive')"
AUTODL_FS_HINT = "turn on file storage (autodl-fs) for this instance in the AutoDL console"


def _colab(root: Path, env: Mapping[str, str], network: tuple[tuple[str, str], ...]) -> Platform:
    content = _at(root, "/content")
    drive = _at(root, "/content/drive/MyDrive")
    drive_store = _store(
        "persistent", "Google Drive", drive, _at(root, "/content/drive"), DRIVE_MOUNT_HINT
    )
    hints: tuple[str, ...] = ()
    if not drive_store.available:
        hints = (f"mount Google Drive to keep downloads across sessions: {DRIVE_MOUNT_HINT}",)
    return Platform(
        name="colab",
        stores=(_store("fast", "/content (local disk)", content), drive_store),
        default_to=content / "datasets",
        # /content is the fast local disk; the home folder's cache is on the same disk anyway,
        # but keeping it under /content makes `datastage env` show one place to look.
        default_cache=content / ".datastage-cache",
        suggested_persistent=drive / "datastage-cache",
        network=network,
        hints=hints,
    )


def _autodl(root: Path, env: Mapping[str, str], network: tuple[tuple[str, str], ...]) -> Platform:
    tmp = _at(root, "/root/autodl-tmp")
    fs = _at(root, "/root/autodl-fs")
    turbo = _at(root, "/etc/network_turbo")
    hints: tuple[str, ...] = ()
    if turbo.exists() and not any(k.lower() == "https_proxy" for k, _ in network):
        hints = (f"academic acceleration is available: source {turbo}",)
    return Platform(
        name="autodl",
        stores=(
            _store("fast", "autodl-tmp (data disk)", tmp),
            _store("persistent", "autodl-fs", fs, fs, AUTODL_FS_HINT),
            _store("source", "autodl-pub (public datasets)", _at(root, "/root/autodl-pub")),
        ),
        # The system disk is small (30 GB): both the data and the cache belong on the data disk.
        default_to=tmp / "datasets",
        default_cache=tmp / ".datastage-cache",
        suggested_persistent=fs / "datastage-cache",
        network=network,
        hints=hints,
    )


def _sagemaker(
    root: Path, env: Mapping[str, str], network: tuple[tuple[str, str], ...]
) -> Platform:
    notebook = _at(root, "/home/ec2-user/SageMaker")
    ml = _at(root, "/opt/ml")
    if ml.is_dir():  # a training job: /opt/ml sits on the instance's local volume
        fast, to, cache = (
            _store("fast", "/opt/ml (local volume)", ml),
            ml / "data",
            ml / ".datastage-cache",
        )
    else:  # a notebook instance: the EBS volume at ~/SageMaker persists, /tmp does not
        fast = _store("fast", "/tmp (local disk)", _at(root, "/tmp"))
        to, cache = _at(root, "/tmp/datasets"), None
    return Platform(
        name="sagemaker",
        stores=(fast, _store("persistent", "SageMaker volume", notebook)),
        default_to=to,
        default_cache=cache,
        suggested_persistent=notebook / "datastage-cache",
        network=network,
    )  # fmt: skip


def _local(root: Path, env: Mapping[str, str], network: tuple[tuple[str, str], ...]) -> Platform:
    return Platform(
        name="local",
        stores=(),
        default_to=None,
        default_cache=None,
        suggested_persistent=None,
        network=network,
    )
