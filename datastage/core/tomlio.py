"""Reading and writing the TOML files users hand datastage (manifests, the config file).

Owns: turning any bytes into either a dict or one ``BadTOML`` line, and writing TOML that
always reads back (tomli-w, never string formatting). Whoever calls it decides the error class
and exit code (ManifestError for manifests, UsageError for the config file).

Hostile or broken input this turns into a ``BadTOML`` instead of a traceback: bytes that are not
UTF-8, syntax errors, nesting deep enough to exhaust Python's recursion (``[[[[...``) or its
patience (a 50,000-part ``a.a.a...`` key takes tomllib a minute), and integers longer than
Python parses.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib

MAX_DEPTH = 64  # tables and arrays inside each other; no real manifest gets near it
# A dotted key of more than MAX_DEPTH parts (a.b.c...). tomllib's time grows with the square of
# a key's parts (50,000 parts: a minute), so such a key is refused before parsing.
# Only where a key can start (a line, a [table] header, after "{" or ","), not inside values.
# A basic-string part may hold escaped quotes ("a\"b"): they are skipped, not taken for its end,
# else 50,000 such parts pass unseen and take tomllib a minute.
_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')[ \t]*\.[ \t]*"""
_LONG_DOTTED_KEY = re.compile(
    rf"(?:^|[{{,\[])[ \t]*(?:{_KEY_PART}){{{MAX_DEPTH + 1},}}", re.MULTILINE
)


MAX_BYTES = 256 * 1024 * 1024  # a 100,000-file manifest is ~20 MB; /dev/zero is endless


class BadTOML(ValueError):
    """Why some text is not TOML datastage can use; ``str()`` is one line."""


def read(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_BYTES, or BadTOML.

    A FIFO (or a link to one) named ``x.toml`` in a registry folder would block ``open`` for
    ever, and ``/dev/zero`` would fill the memory: the file is opened without blocking and
    refused unless it is a regular file. OSError (missing, unreadable) is the caller's to word.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadTOML("not a regular file")
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise BadTOML(f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
    return data


def decode(data: bytes) -> str:
    """UTF-8 text (a leading byte-order mark is allowed), or BadTOML naming the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadTOML(f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def loads(text: str) -> dict[str, Any]:
    """Parse ``text``; every failure is a BadTOML with a one-line reason."""
    if _LONG_DOTTED_KEY.search(text):
        raise BadTOML(f"a dotted key nested more than {MAX_DEPTH} levels deep")
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BadTOML(f"TOML syntax error: {e}") from None
    except RecursionError:
        raise BadTOML("TOML nested too deeply to read") from None
    except ValueError as e:  # e.g. an integer with more digits than int() accepts
        raise BadTOML(f"TOML value cannot be read: {e}") from None
    _check(data, "", 0)
    return data


def dumps(data: Mapping[str, Any]) -> str:
    """TOML text for ``data`` that ``loads`` reads back to the same values (any string)."""
    import tomli_w

    return tomli_w.dumps(data)


def _check(value: Any, key: str, depth: int) -> None:
    """Nesting depth; the recursion stops at MAX_DEPTH, far below Python's limit, so code that
    walks a value later (repr in an error message, json) cannot exhaust it either."""
    if depth > MAX_DEPTH:
        where = key if len(key) <= 60 else key[:57] + "..."
        raise BadTOML(f"nested more than {MAX_DEPTH} levels deep (at {where})")
    if isinstance(value, dict):
        for k, v in value.items():
            _check(v, f"{key}.{k}" if key else k, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check(v, f"{key}[{i}]", depth + 1)
