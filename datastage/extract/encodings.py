"""Member names that are not UTF-8: the encoding the manifest names, or a careful guess.

Owns: decoding zip names written without the UTF-8 flag (zipfile reads them as cp437, which
turns a Chinese, Japanese or Russian Windows zip into mojibake) and tar names that are not
UTF-8. ``name_encoding = "gbk"`` in a manifest entry (or ``--name-encoding``) decides; without
it the raw bytes are tried as UTF-8, then scored under each candidate encoding, the best
plausible one wins, and one warning per archive names the encoding chosen.

The setting travels in a context variable, set around one archive's extraction by nesting.py,
so the format readers need no extra parameter.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Optional

#: Tried in this order; ties go to the earlier one. cp437 is the zip specification's default.
CANDIDATES = ("gbk", "cp932", "cp866", "koi8-r", "cp437")


@dataclass
class _Setting:
    explicit: Optional[str] = None
    chosen: dict[str, str] = field(default_factory=dict)  # archive -> encoding warned about


_setting: contextvars.ContextVar[_Setting] = contextvars.ContextVar("name_encoding")


@contextlib.contextmanager
def name_encoding(encoding: Optional[str]) -> Iterator[None]:
    """Decode non-UTF-8 member names with ``encoding`` (None: detect) inside this block."""
    token = _setting.set(_Setting(encoding))
    try:
        yield
    finally:
        _setting.reset(token)


def check_encoding(encoding: str) -> str:
    """The codec's canonical name, or LookupError for a name Python does not know."""
    import codecs

    return codecs.lookup(encoding).name


def _current() -> _Setting:
    setting = _setting.get(None)
    if setting is None:
        setting = _Setting()
        _setting.set(setting)
    return setting


def decode_name(name: str, archive: str) -> str:
    """A tar name: tarfile leaves bytes that are not UTF-8 as surrogates; decode those."""
    if name.isascii():
        return name
    try:
        name.encode("utf-8")  # fails only on the surrogates tarfile left for undecodable bytes
    except UnicodeEncodeError:
        pass
    else:
        return name
    raw = name.encode("utf-8", "surrogateescape")
    return decode_raw([raw], archive, fallback=None).get(raw, name)


def decode_raw(
    raws: Iterable[bytes], archive: str, fallback: Optional[str] = "cp437"
) -> dict[bytes, str]:
    """Names for raw (non-UTF-8-flagged) names, decoded with one encoding for the archive.

    Valid UTF-8 stays UTF-8 (many tools omit the flag). The rest use the explicit encoding,
    else the one already chosen for this archive, else the best-scoring candidate; with no
    plausible candidate, ``fallback`` (None: leave them undecoded, as bsdtar writes them).
    """
    setting = _current()
    out: dict[bytes, str] = {}
    rest = []
    for raw in raws:
        try:
            out[raw] = raw.decode("utf-8")
        except UnicodeDecodeError:
            rest.append(raw)
    if not rest:
        return out
    encoding = setting.explicit or setting.chosen.get(archive) or _guess(rest) or fallback
    if encoding is None:
        return out
    if not setting.explicit and archive not in setting.chosen:
        setting.chosen[archive] = encoding
        print(
            f"warning: {archive}: member names are not UTF-8; decoded them as {encoding} "
            f"(set name_encoding in the manifest, or --name-encoding, if that is wrong)",
            file=sys.stderr,
            flush=True,
        )
    for raw in rest:
        if _ok(raw, encoding):
            out[raw] = raw.decode(encoding)
        elif setting.explicit:
            from ..core.errors import UnsupportedArchive

            raise UnsupportedArchive(
                f"{archive}: member name {raw!r} is not valid {encoding} (name_encoding)"
            )
        elif fallback is not None:
            out[raw] = raw.decode(fallback, "replace")
    return out


def _ok(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _guess(raws: list[bytes]) -> Optional[str]:
    best, best_score = None, 0.0
    for encoding in CANDIDATES[:-1]:
        try:
            texts = [raw.decode(encoding) for raw in raws]
        except UnicodeDecodeError:
            continue
        score = sum(_score(text, encoding) for text in texts)
        if score > best_score:
            best, best_score = encoding, score
    return best


def _score(text: str, encoding: str) -> float:
    """How much ``text`` looks like real names: common ideographs, kana and properly cased
    Cyrillic score per byte; half-width katakana, box drawing and other symbols cost."""
    score = 0.0
    previous = ""
    for c in text:
        if c.isascii():
            previous = c
            continue
        width = len(c.encode(encoding))
        name = unicodedata.name(c, "")
        if "CJK UNIFIED IDEOGRAPH" in name:
            score += width * (1.0 if _common_hanzi(c) or encoding == "cp932" else 0.25)
        elif name.startswith(("HIRAGANA", "KATAKANA")):
            score += width * 1.5
        elif name.startswith("CYRILLIC"):
            wrong_case = c.isupper() and previous.isalpha() and previous.islower()
            score += -1 if wrong_case else width
        elif name.startswith("HALFWIDTH KATAKANA") or "IDEOGRAPHIC" in name:
            score -= 1
        else:
            score -= 2
        previous = c
    return score


def _common_hanzi(c: str) -> bool:
    try:
        c.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True
