"""The user's config file: ``datastage config get/set/list/unset``.

    ~/.config/datastage/config.toml      (platformdirs' user config dir; $DATASTAGE_CONFIG moves it)
    persistent_cache = "/content/drive/MyDrive/datastage-cache"
    sources = ["/root/autodl-pub", "/mnt/team-datasets"]
    to = "/content/datasets"

Owns: the file's location, the known keys and their types, reading it and rewriting it
atomically. Precedence (flag > environment > this file > platform default) lives in config.py.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import UsageError
from .fsutil import write_atomic

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib

PATH_ENV = "DATASTAGE_CONFIG"


@dataclass(frozen=True)
class Key:
    kind: str  # "path", "paths", "int", "float", "bool"
    help: str


KEYS = {
    "to": Key("path", "where `get` stages when --to is not given"),
    "cache_dir": Key("path", "cache of verified downloads (fast local disk)"),
    "persistent_cache": Key("path", "persistent tier: a folder that keeps verified archives"),
    "sources": Key("paths", "read-only folders searched for a file before downloading"),
    "shared_cache": Key("url", "s3://bucket/prefix shared by many machines (datastage push)"),
    "retries": Key("int", "attempts after the first"),
    "backoff": Key("float", "seconds; doubles after each failure"),
    "timeout": Key("float", "seconds without a byte before a connection counts as stalled"),
    "lock_timeout": Key("float", "seconds to wait for another process"),
    "quiet": Key("bool", "no progress bars or messages"),
    "offline": Key("bool", "never use the network"),
}
#: Keys older versions knew that no longer mean anything: ignored when read, dropped when the
#: file is next written (copies from the persistent tier are now always hashed).
RETIRED = {"verify_persistent"}


def path() -> Path:
    override = os.environ.get(PATH_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("datastage", appauthor=False)) / "config.toml"


def load() -> dict[str, Any]:
    """The file's values, typed; {} when there is no file. A bad file is a one-line error."""
    where = path()
    try:
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise UsageError(f"cannot read config file {where}: {e.strerror or e}") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config file {where}: TOML syntax error: {e}") from e
    values = {}
    for key, value in data.items():
        if key in RETIRED:
            continue
        if key not in KEYS:
            raise UsageError(
                f"config file {where}: unknown key {key!r}",
                hint=f"known keys: {', '.join(KEYS)}",
            )
        values[key] = _typed(key, value, where)
    return values


def set_value(key: str, raw: str) -> Any:
    """Parse ``raw`` for ``key`` (a list key takes os.pathsep-separated paths), save, return it."""
    _known(key)
    value = parse(key, raw)
    values = load()
    values[key] = value
    _save(values)
    return value


def unset(key: str) -> bool:
    _known(key)
    values = load()
    found = values.pop(key, None) is not None
    if found:
        _save(values)
    return found


def parse(key: str, raw: str) -> Any:
    """A value as typed on a command line or in an environment variable."""
    kind = KEYS[key].kind
    if kind in ("path", "url") and not raw.strip():
        # "" would be saved as "." (the current folder) or make the file unreadable
        raise UsageError(
            f"{key} cannot be empty", hint=f"to remove it: datastage config unset {key}"
        )
    if kind == "url" and not raw.strip().startswith("s3://"):
        raise UsageError(f"{raw!r} is not a valid value for {key} (an s3://bucket/prefix URL)")
    parsers: dict[str, Callable[[str], Any]] = {
        "path": lambda s: Path(s).expanduser(),
        "url": str,
        "paths": lambda s: tuple(Path(p).expanduser() for p in s.split(os.pathsep) if p),
        "int": int,
        "float": float,
        "bool": _boolean,
    }
    try:
        return parsers[kind](raw.strip())
    except ValueError:
        raise UsageError(f"{raw!r} is not a valid value for {key} ({kind})") from None


def render(value: Any) -> str:
    if isinstance(value, tuple):
        return os.pathsep.join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _known(key: str) -> None:
    if key not in KEYS:
        raise UsageError(f"unknown config key {key!r}", hint=f"known keys: {', '.join(KEYS)}")


def _typed(key: str, value: Any, where: Path) -> Any:
    kind = KEYS[key].kind
    ok = {
        "path": isinstance(value, str) and value != "",
        "url": isinstance(value, str) and value != "",
        "paths": isinstance(value, list) and all(isinstance(v, str) and v for v in value),
        "int": type(value) is int,
        "float": type(value) in (int, float),
        "bool": isinstance(value, bool),
    }[kind]
    if not ok:
        raise UsageError(f"config file {where}: {key} must be a {kind}, got {value!r}")
    if kind == "path":
        return Path(value).expanduser()
    if kind == "paths":
        return tuple(Path(v).expanduser() for v in value)
    return float(value) if kind == "float" else value


def _save(values: dict[str, Any]) -> None:
    lines = ["# datastage settings: `datastage config list` shows them, `config set` edits them"]
    lines += [f"{key} = {_toml(values[key])}" for key in KEYS if key in values]
    write_atomic(path(), ("\n".join(lines) + "\n").encode())


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
