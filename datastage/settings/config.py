"""Settings, resolved once per call: flag > DATASTAGE_* environment > config file > platform
default (Colab, AutoDL, SageMaker: see machine.py) > platformdirs defaults.

Owns: where the cache is, network patience (retries, backoff, timeouts), quiet/offline switches,
the persistent tier and read-only source folders, and the default ``--to``,
connections (segments and parallel files), the preferred mirror.
Every environment variable datastage reads is listed in ``ENV`` below.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Optional

from ..core.errors import NoDefaultFolder, UsageError
from ..core.fsutil import user_path
from ..core.text import boolean

ENV = {
    "cache_dir": "DATASTAGE_CACHE",
    "retries": "DATASTAGE_RETRIES",
    "backoff": "DATASTAGE_BACKOFF",
    "timeout": "DATASTAGE_TIMEOUT",
    "lock_timeout": "DATASTAGE_LOCK_TIMEOUT",
    "quiet": "DATASTAGE_QUIET",
    "offline": "DATASTAGE_OFFLINE",
    # Endpoints of the non-HTTP sources (sources/): a mirror, an S3-compatible store, a test server.
    "hf_endpoint": "HF_ENDPOINT",
    "s3_endpoint": "AWS_ENDPOINT_URL",
    "gdrive_endpoint": "DATASTAGE_GDRIVE_ENDPOINT",
    "persistent_cache": "DATASTAGE_PERSISTENT_CACHE",
    "sources": "DATASTAGE_SOURCES",  # os.pathsep-separated folders
    "shared_cache": "DATASTAGE_SHARED_CACHE",  # s3://bucket/prefix (obtain/shared.py)
    "connections": "DATASTAGE_CONNECTIONS",
    "mirror": "DATASTAGE_MIRROR",
    "min_segment": "DATASTAGE_MIN_SEGMENT",
    "probe": "DATASTAGE_PROBE",
}
TO_ENV = "DATASTAGE_TO"
REGISTRY_ENV = "DATASTAGE_REGISTRY"
DEBUG_ENV = "DATASTAGE_DEBUG"


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    retries: int = 6  # attempts after the first, for each failure without progress
    backoff: float = 1.0  # seconds; doubles after each consecutive failure (urllib3 Retry)
    timeout: float = 60.0  # seconds without a byte before a connection counts as stalled
    lock_timeout: Optional[float] = None  # None: wait for another process as long as it takes
    quiet: bool = False
    offline: bool = False
    hf_endpoint: Optional[str] = None  # None: huggingface.co
    s3_endpoint: Optional[str] = None  # None: AWS (boto3's own configuration)
    gdrive_endpoint: Optional[str] = None  # None: Google's hosts; tests point it at 127.0.0.1
    persistent_cache: Optional[Path] = None  # the persistent tier (obtain/persistent.py) or None
    sources: tuple[Path, ...] = ()  # read-only folders searched before downloading
    shared_cache: Optional[str] = None  # s3://bucket/prefix asked before the dataset's URLs
    connections: int = 16  # connections at once per get/fetch (segments of a file, files)
    mirror: Optional[str] = None  # None/"auto": the fastest (mirrors.py); "listed"; or a substring
    min_segment: int = 4 * 1024 * 1024  # bytes; files under 8x this use one connection
    probe: float = 0.1  # seconds one connection runs alone before a split is decided


def default_cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("datastage", appauthor=False))


def resolve(**flags: Any) -> Settings:
    """Settings from explicit values (None = not given), then the environment, then defaults."""
    values: dict[str, Any] = {}
    for f in fields(Settings):
        flag = flags.get(f.name)
        if f.name == "cache_dir" and flag is not None:
            flag = given_path(flag, "--cache")
        if flag is not None:
            values[f.name] = flag
        elif os.environ.get(ENV[f.name], "").strip():
            values[f.name] = _from_env(f.name, os.environ[ENV[f.name]].strip())
    _add_file_and_platform_values(values)
    _check_urls(values, flags)
    if "cache_dir" not in values:
        values["cache_dir"] = default_cache_dir()
    values["cache_dir"] = user_path(values["cache_dir"]).absolute()
    _check_patience(values)
    return replace(Settings(cache_dir=values["cache_dir"]), **values)


URL_SETTINGS = ("hf_endpoint", "s3_endpoint", "gdrive_endpoint", "shared_cache")


def _check_urls(values: dict[str, Any], flags: dict[str, Any]) -> None:
    """Endpoints (HF_ENDPOINT may list several, comma-separated) and the shared cache must be
    URLs the libraries can parse: ``http://[::1`` in the environment or the config file used to
    end in a traceback inside huggingface_hub, botocore or urllib, far from where it was set."""
    from ..core.urls import check_url

    for name in URL_SETTINGS:
        text = str(values.get(name) or "")
        for url in text.split(",") if name == "hf_endpoint" else [text]:
            reason = check_url(url.strip()) if url.strip() else None
            if not reason:
                continue
            if flags.get(name) is not None:
                raise UsageError(f"--{name.replace('_', '-')}: {reason}")
            if os.environ.get(ENV[name], "").strip():
                raise UsageError(f"{ENV[name]}: {reason}", hint=f"fix or unset {ENV[name]}")
            raise UsageError(f"{name}: {reason}")  # the config file refuses one at load


def _check_patience(values: dict[str, Any]) -> None:
    """Retries and waits the network code can use: a NaN or negative one would end in a
    traceback (or no attempt at all) far from where it was set."""
    for name, positive in (("retries", False), ("backoff", False), ("timeout", True)):
        value = values.get(name)
        if value is None:
            continue
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            need = "more than 0" if positive else "0 or more"
            raise UsageError(
                f"{name} must be a number {need}, got {value!r}",
                hint=f"check {ENV[name]} and the config file's {name}",
            )
    lock_timeout = values.get("lock_timeout")
    if lock_timeout is not None and (not math.isfinite(lock_timeout) or lock_timeout < 0):
        raise UsageError(
            f"lock_timeout must be a number of seconds, 0 or more, got {lock_timeout!r}",
            hint=f"check {ENV['lock_timeout']} and the config file's lock_timeout",
        )


def _add_file_and_platform_values(values: dict[str, Any]) -> None:
    """Fill what flags and environment left open from the config file, then the platform."""
    from . import configfile

    for key, value in configfile.load().items():
        if key in ENV:
            values.setdefault(key, value)
    if "cache_dir" not in values or "sources" not in values:
        from .machine import detect

        found = detect()
        if found.default_cache is not None:
            values.setdefault("cache_dir", found.default_cache)
        values.setdefault("sources", found.default_sources)
    for key in ("persistent_cache",):
        if values.get(key) is not None:
            values[key] = user_path(values[key]).absolute()
    if values.get("persistent_cache") is not None and not on_a_mounted_store(
        values["persistent_cache"]
    ):
        values["persistent_cache"] = None


def on_a_mounted_store(path: Path) -> bool:
    """False (with one warning) for a path on the platform's mount that is not mounted: an
    unmounted Drive's folder is the VM's own disk, lost with the session, and creating it
    would stand in the way of the real mount."""
    from ..core.progress import warn_once
    from .machine import detect

    store = detect().unmounted(path)
    if store is None:
        return True
    warn_once(
        f"not using the persistent cache {path}: {store.label} is not mounted at {store.mount}; "
        f"to keep downloads across sessions: {store.mount_hint}"
    )
    return False


def resolve_to(flag: Any = None) -> Path:
    """Where ``get`` stages: --to > $DATASTAGE_TO > config ``to`` > platform default."""
    if flag is not None:
        return given_path(flag, "--to")
    raw = os.environ.get(TO_ENV, "").strip()
    if raw:
        return user_path(raw).absolute()
    from . import configfile

    configured = configfile.load().get("to")
    if configured is not None:
        return user_path(configured).absolute()
    from .machine import detect

    found = detect()
    if found.default_to is None:
        raise NoDefaultFolder(
            "--to is required on this machine (no platform default)",
            hint="pass --to DIR, set DATASTAGE_TO, or run: datastage config set to DIR",
        )
    return found.default_to


def given_path(value: Any, option: str) -> Path:
    """A path the caller passed, made absolute; an empty one is a mistake, not the cwd."""
    if not str(value).strip():
        raise UsageError(f"{option} is empty", hint=f"give {option} a path")
    return user_path(value).absolute()


def _from_env(name: str, raw: str) -> Any:
    parsers: dict[str, Callable[[str], Any]] = {
        "cache_dir": Path,
        "retries": int,
        "backoff": float,
        "timeout": float,
        "lock_timeout": float,
        "quiet": boolean,
        "offline": boolean,
        "hf_endpoint": str,
        "s3_endpoint": str,
        "gdrive_endpoint": str,
        "persistent_cache": Path,
        "sources": lambda s: tuple(user_path(p) for p in s.split(os.pathsep) if p),
        "shared_cache": str,
        "connections": _positive,
        "mirror": str,
        "min_segment": _byte_size,
        "probe": float,
    }
    try:
        return parsers[name](raw)
    except ValueError:
        raise UsageError(f"{ENV[name]}={raw!r} is not a valid value for {name}") from None


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError(raw)
    return value


def _byte_size(raw: str) -> int:
    """``4194304``, ``4MiB``, ``4M`` (4,000,000), ``512K``: units.py's one convention."""
    from ..core.units import parse_size

    value = parse_size(raw)
    if value < 1:
        raise ValueError(raw)
    return value
