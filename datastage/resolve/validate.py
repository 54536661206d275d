"""What reports manifest problems: the ``Validator`` (typed getters that record each problem
with its key) and the checks of dataset names and URLs that manifests, flags and config share.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, TypeVar, Union

from ..core.errors import InvalidManifest
from ..core.names import archive_suffix
from ..core.urls import check_url
from .model import MAX_INT, MAX_NAME_BYTES, NAME_PATTERN, FileEntry, resolve_url

T = TypeVar("T")
D = TypeVar("D")


def check_name(name: str) -> Optional[str]:
    """Why ``name`` cannot name a dataset (its folder), or None; for --name and manifests."""
    if not NAME_PATTERN.match(name):
        return f"{shown(name)} is not a valid name (lowercase letters, digits, '.', '_', '-')"
    if len(name) > MAX_NAME_BYTES:
        return f"is too long ({len(name)} characters; a folder name holds at most {MAX_NAME_BYTES})"
    return None


class _Skip(Exception):
    """Raised after a problem was recorded: abandons the value being read, not the manifest."""


class Validator:
    """Typed getters that record problems (file and key) and return a harmless default.

    ``note`` records a problem; ``fail`` records one and abandons the current value (an entry,
    a subset) through ``attempt``; ``raise_problems`` raises them all as one InvalidManifest.
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.gated = False  # access = "gated": a file may have no url
        self.dataset = ""  # the manifest's name: keys entries without url (NO_URL)
        self.problems: list[tuple[str, str]] = []  # (key, reason), in the order found
        self._noted: set[tuple[str, str]] = set()  # the same, to skip repeats in O(1)
        self.keys: dict[int, str] = {}  # id(entry) -> where it was written, for messages

    # -- collecting ---------------------------------------------------------------------------
    def note(self, key: str, reason: str) -> None:
        key, reason = _cut(key), _cut(reason)
        if (key, reason) not in self._noted:  # a list scan here made 30,000 problems take 20 s
            self._noted.add((key, reason))
            self.problems.append((key, reason))

    def fail(self, key: str, reason: str) -> NoReturn:
        self.note(key, reason)
        raise _Skip

    def attempt(self, default: D, read: Callable[..., T], *args: Any) -> Union[T, D]:
        """``read(*args)``, or ``default`` when it abandoned its value (the problem is recorded)."""
        try:
            return read(*args)
        except _Skip:
            return default

    def skip_if_new_problems(self, start: int) -> None:
        """Leave out a value that had problems, so later checks do not report it again."""
        if len(self.problems) > start:
            raise _Skip

    def raise_problems(self) -> None:
        if self.problems:
            raise InvalidManifest(self.where, self.problems)

    # -- checks ---------------------------------------------------------------------------------
    def url(self, text: str, base: Path, key: str) -> str:
        """A checked URL (a plain path made absolute against ``base``), or "" after a problem."""
        if not text:
            return ""
        reason = check_url(text) or self.served(text)
        if reason:
            self.note(key, reason)
            return ""
        return resolve_url(text, base)

    def served(self, url: str) -> Optional[str]:
        """A URL scheme no source serves (``htps://``) is a mistake in the manifest.

        Checked against the sources table, which lists the fsspec protocols datastage hands on
        whether or not fsspec is installed: a missing library is a MissingDependency with an
        install hint when the file is fetched, an unknown scheme is a mistake in the manifest.
        """
        from ..sources import supported_schemes, url_scheme

        scheme = url_scheme(url)
        if scheme not in supported_schemes():
            known = ", ".join(sorted(supported_schemes()))
            return f"unsupported URL scheme {shown(scheme)} in {shown(url)} (supported: {known})"
        return None

    def folder_name(self, name: str, key: str) -> None:
        reason = check_name(name)
        if reason:
            self.note(key, reason)

    def file_name(self, name: str, key: str) -> None:
        if not name or "/" in name or name in (".", "..") or "\x00" in name:
            self.note(key, f'cannot use {shown(name)} as a file name; set name = "..."')
        elif _too_long(name):
            self.note(
                key, f"{shown(name)} is longer than a file name may be ({MAX_NAME_BYTES} bytes)"
            )

    def no_overlaps(self, files: tuple[FileEntry, ...]) -> None:
        """Two entries may not land on one path, nor a copied file where a folder must be."""
        landed: dict[str, FileEntry] = {}
        for entry in files:
            if _lands_as_itself(entry):
                path = f"{entry.dest}/{entry.name}" if entry.dest else entry.name
                if path in landed:
                    self.note(
                        self.keys[id(entry)],
                        f"lands on {shown(path)} like {self.keys[id(landed[path])]}; "
                        'give one of them another name = "..." or dest = "..."',
                    )
                    continue
                landed[path] = entry
        for entry in files:
            parts = entry.dest.split("/") if entry.dest else []
            for depth in range(1, len(parts) + 1):  # each folder on the way: a dict lookup
                other = landed.get("/".join(parts[:depth]))
                if other is not None:
                    self.note(
                        self.keys[id(entry)] + ".dest",
                        f"{shown(entry.dest)} is inside {shown('/'.join(parts[:depth]))}, "
                        f"a file {self.keys[id(other)]} copies",
                    )
                    break

    def known_keys(self, table: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
        for k in table:
            if k not in allowed:
                close = difflib.get_close_matches(k, sorted(allowed), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.note(prefix + k, f"unknown key{hint}")

    # -- typed getters: a wrong value is recorded and read as the default ---------------------
    def string(self, t: Mapping[str, Any], k: str, prefix: str, required: bool = False) -> str:
        if k not in t:
            if required:
                self.note(prefix + k, "missing (required)")
            return ""
        value = t[k]
        if not isinstance(value, str) or (required and not value.strip()):
            self.note(prefix + k, f"must be a non-empty string, got {shown(value)}")
            return ""
        if "\x00" in value:
            self.note(prefix + k, f"contains a NUL character: {shown(value)}")
            return ""
        return value

    def string_list(self, t: Mapping[str, Any], k: str, prefix: str) -> list[str]:
        value = t.get(k, [])
        if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
            self.note(prefix + k, f"must be a list of strings, got {shown(value)}")
            return []
        if any("\x00" in x for x in value):
            self.note(prefix + k, f"contains a NUL character: {shown(value)}")
            return []
        return list(value)

    def size(self, t: Mapping[str, Any], k: str, prefix: str) -> Optional[int]:
        value = t.get(k)
        if value is not None and (type(value) is not int or not 0 <= value <= MAX_INT):
            self.note(prefix + k, f"must be a whole number of bytes, got {shown(value)}")
            return None
        return value

    def boolean(self, t: Mapping[str, Any], k: str, prefix: str) -> Optional[bool]:
        value = t.get(k)
        if value is not None and not isinstance(value, bool):
            self.note(prefix + k, f"must be true or false, got {shown(value)}")
            return None
        return value

    def relative_path(self, t: Mapping[str, Any], k: str, prefix: str) -> str:
        value = self.string(t, k, prefix)
        parts = value.replace("\\", "/").rstrip("/").split("/") if value else []
        if value.startswith(("/", "\\", "~")) or any(p in ("", ".", "..") for p in parts):
            self.note(
                prefix + k,
                f"must be a plain relative path inside the dataset, got {shown(value)}",
            )
            return ""
        if any(_too_long(p) for p in parts):
            self.note(
                prefix + k, f"has a part longer than a file name may be ({MAX_NAME_BYTES} bytes)"
            )
            return ""
        return "/".join(parts)


def _lands_as_itself(entry: FileEntry) -> bool:
    """Copied under its own name, not unpacked (no ``extract`` key: guessed from the name)."""
    return entry.extract is False or (entry.extract is None and not archive_suffix(entry.name))


def _too_long(name: str) -> bool:
    """Longer than one path component may be (255 bytes on Linux file systems)."""
    try:  # a name listed from a local folder keeps its non-UTF-8 bytes as surrogate escapes
        size = len(name.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        size = len(name.encode("utf-8", "surrogatepass"))
    return size > MAX_NAME_BYTES


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlist = _REPR.maxdict = 4
_REPR.maxlevel = 2


def _cut(text: str, limit: int = 300) -> str:
    """A key or reason of readable length (a digest library may quote a megabyte value)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(value: Any) -> str:
    """``repr(value)`` cut to a readable length: error lines quote values, never megabytes."""
    return _REPR.repr(value)
