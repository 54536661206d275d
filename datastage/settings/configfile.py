"""The user's config file: ``datastage config get/set/list/unset``.

    ~/.config/datastage/config.toml      (platformdirs' user config dir; $DATASTAGE_CONFIG moves it)
    persistent_cache = "/content/drive/MyDrive/datastage-cache"
    sources = ["/root/autodl-pub", "/mnt/team-datasets"]
    to = "/content/datasets"

Owns: the file's location, the known keys and their types, reading it and rewriting it
atomically. Precedence (flag > environment > this file > platform default) lives in config.py.
"""

from __future__ import annotations

import math
import os
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..core import tomlio
from ..core.errors import UsageError
from ..core.fsutil import user_path, write_atomic
from ..core.text import boolean

PATH_ENV = "DATASTAGE_CONFIG"
HEADER = "# datastage settings: `datastage config list` shows them, `config set` edits them\n"


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
        return user_path(override)
    from platformdirs import user_config_dir

    return Path(user_config_dir("datastage", appauthor=False)) / "config.toml"


def load() -> dict[str, Any]:
    """The file's values, typed; {} when there is no file.

    A file that does not load is one UsageError naming it, with a hint: every command reads
    this file, so a traceback here would break all of them.
    """
    where = path()
    try:
        raw = tomlio.read(where)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise UsageError(f"cannot read config file {where}: {e.strerror or e}", _hint(where)) from e
    except tomlio.BadTOML as e:  # a FIFO or /dev/zero: never "delete" it, point elsewhere
        hint = f"{PATH_ENV}=FILE uses another file"
        raise UsageError(f"cannot read config file {where}: {e}", hint) from None
    try:
        data = tomlio.loads(tomlio.decode(raw))
    except tomlio.BadTOML as e:
        raise UsageError(f"config file {where}: {e}", _hint(where)) from None
    values = {}
    for key, value in data.items():
        if key in RETIRED:
            continue
        if key not in KEYS:
            raise UsageError(
                f"config file {where}: unknown key {_shown(key)}",
                hint=f"known keys: {', '.join(KEYS)}",
            )
        values[key] = _typed(key, value, where)
    return values


def _hint(where: Path) -> str:
    return (
        f"fix or delete {where} (`datastage config list` shows the file in use; "
        f"{PATH_ENV}=FILE uses another)"
    )


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
        "path": lambda s: user_path(s),
        "url": str,
        "paths": lambda s: tuple(user_path(p) for p in s.split(os.pathsep) if p),
        "int": int,
        "float": float,
        "bool": boolean,
    }
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # a path with bytes that are not UTF-8 (surrogate escapes)
        raise UsageError(
            f"{_shown(raw)} is not valid UTF-8; the config file cannot hold it",
            hint=f"use {ENV_HINT.get(key, 'the matching flag or environment variable')}",
        ) from None
    try:
        value = parsers[kind](raw.strip())
    except ValueError:
        raise UsageError(f"{_shown(raw)} is not a valid value for {key} ({kind})") from None
    if not _valid(kind, _plain(value)):  # what the file would refuse to load, refused now
        raise UsageError(f"{key} must be {_KINDS[kind]}, got {_shown(raw)}")
    return value


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
    if not _valid(kind, value):
        raise UsageError(
            f"config file {where}: {key} must be {_KINDS[kind]}, got {_shown(value)}",
            _hint(where),
        )
    if kind == "path":
        return user_path(value)
    if kind == "paths":
        return tuple(user_path(v) for v in value)
    return float(value) if kind == "float" else value


def _valid(kind: str, value: Any) -> bool:
    """Whether a TOML value fits a key's kind (the same rule for the file and `config set`)."""
    if kind == "url":  # one urllib cannot parse (s3://[::1) would be a traceback in every get
        from ..core.urls import check_url

        return _is_path(value) and check_url(value) is None
    if kind == "path":
        return _is_path(value)
    if kind == "paths":
        return isinstance(value, list) and all(_is_path(v) for v in value)
    if kind == "int":
        return type(value) is int and 0 <= value <= MAX_INT
    if kind == "float":
        return type(value) in (int, float) and math.isfinite(value) and value >= 0
    return isinstance(value, bool)


MAX_INT = 1_000_000  # retries: more would never end
ENV_HINT = {"to": "--to or DATASTAGE_TO", "cache_dir": "--cache or DATASTAGE_CACHE"}
_KINDS = {
    "path": "a path (a non-empty string)",
    "url": "a URL (a non-empty string)",
    "paths": "a list of paths",
    "int": f"a whole number from 0 to {MAX_INT}",
    "float": "a number, 0 or more",
    "bool": "true or false",
}


def _is_path(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != "" and "\x00" not in value


def _save(values: dict[str, Any]) -> None:
    """Rewrite the file atomically with a real TOML writer: any path (a newline, quotes, a
    backslash) reads back as it was written."""
    data = {key: _plain(values[key]) for key in KEYS if key in values}
    write_atomic(path(), (HEADER + tomlio.dumps(data)).encode("utf-8"))


def _plain(value: Any) -> Any:
    """Path -> str, tuple -> list: the types TOML has."""
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return str(value)


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80


def _shown(value: Any) -> str:
    return _REPR.repr(value)
