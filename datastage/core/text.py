"""Text rules the whole package shares: one-line messages and the words that mean yes or no.

An ``error:`` line, a ``hint:`` or a problem listed under an error must stay one line whatever
a library put in its exception's message (botocore, py7zr and huggingface_hub use newlines).
Printed, control characters are escaped (``printable``): names come from manifests and servers.
A switch reads the same words in the environment, on the command line and in the config file.
"""

from __future__ import annotations

import re
from typing import Optional

#: C0 controls, DEL and C1 controls: ESC and CSI (0x9b) start terminal escapes, BEL ends one.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def one_line(value: object, limit: Optional[int] = None) -> str:
    """``value`` as text on one line: each run of whitespace (newlines too) becomes one space.

    An exception without a message reads as its type name, so a message never ends in
    ``": "``. ``limit`` keeps at most that many characters (a server's error page).
    """
    text = " ".join(str(value).split())[:limit]
    if not text and isinstance(value, BaseException):
        return type(value).__name__
    return text


def printable(text: str) -> str:
    """``text`` with each control character shown as ``\\xNN``: a file name from a manifest or
    a server ("a\\x1b]0;owned\\x07.zip") printed on a terminal cannot retitle the window, clear
    the screen or hide text. Applied last, after redaction: a secret is matched as it is."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def boolean(raw: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``, in any case; any other word is a ValueError,
    so a typo in a setting is reported instead of guessed."""
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(raw)


def switch(raw: Optional[str], default: bool) -> bool:
    """An on/off environment variable: unset or empty is ``default``, a false word turns it
    off and any other value turns it on (``DATASTAGE_DEBUG=2`` is on)."""
    word = (raw or "").strip().lower()
    if not word:
        return default
    return word not in FALSE_WORDS
