"""Credentials out of everything datastage prints or stores (issue 11 item 4).

    https://user:pw@host/x?token=S&sig=T&X-Amz-Expires=60
    -> https://***@host/x?token=***&sig=***&X-Amz-Expires=60

One rule, applied at the sinks (error and warning lines, ``info``, ``env``, tracebacks, the
marker, pins, cache index records, persistent-tier sidecars); the URL used for the request is
never changed. What counts as secret:

- the whole userinfo (``user:password@``, and a bare ``token@``: GitHub tokens go there), for
  every scheme but ``hf://`` (whose ``@`` names a revision);
- the value of a query or fragment parameter whose name, percent-decoded and compared without
  case (``-`` and ``_`` alike), is ``key``/``sig``/``sign``/``auth``/``authorization``/
  ``pass``/``pwd``/``jwt``/``hdnts``/``hdnea``, contains ``token``, ``secret``, ``passw``,
  ``signature``, ``credential``, ``apikey``/``api_key``, ``accesskey``/``access_key``,
  ``session`` or ``private``, ends in ``key`` (``resourcekey``, ``subscription-key``), or starts
  with ``x-amz-``/``x-goog-``. Presigned URLs keep what helps to debug them and is no secret:
  ``X-Amz-``/``X-Goog-`` ``Algorithm``, ``Date``, ``Expires``, ``SignedHeaders``; Azure SAS
  ``sv``/``se``/``sp``/``st``/``sr`` (its ``sig`` goes); ``Expires``.

Stored records still need the URL as a key. Pins, ``index/url/`` records and partial downloads
keep the key they always had (their file name: the full URL's sha256, or the file's digest)
and store only ``redact_url(url)`` for display; ``same_url`` accepts a record of either form,
so caches written before this change keep working. A persistent-tier or shared-cache sidecar is
found by its file name, so it also stores the full URL's sha256 (``url_fields``,
``record_matches``): two URLs that differ only in a token may be two files. A hash is not the
secret, but a weak password in a URL can be guessed back from it: where others can read the
cache or the tier, prefer a token (or a header) to a URL password.

Imports nothing heavy: errors.py and progress.py use it on every message.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from typing import Any, Callable, TypeVar
from urllib.parse import unquote_plus

MASK = "***"

_EXACT = frozenset(
    {"key", "sig", "sign", "auth", "authorization", "pass", "pwd", "jwt", "hdnts", "hdnea"}
)
_CONTAINS = (
    "token",
    "secret",
    "passw",
    "signature",
    "credential",
    "apikey",
    "api_key",
    "accesskey",
    "access_key",
    "session",
    "private",
)
_SIGNED_PREFIXES = ("x_amz_", "x_goog_")
_SIGNED_PUBLIC = frozenset({"algorithm", "date", "expires", "signedheaders"})

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# Text that ends a URL or a value in prose: "{url}: {reason}", "(... {url})", "{url}, ...".
_TRAILING = r".,:;)!?"
# A URL inside free text: from its scheme to the first character no URL contains.
_URL_IN_TEXT = re.compile(
    rf"\b[A-Za-z][A-Za-z0-9+.-]{{0,31}}://[^\s'\"<>`{{}}|\\^]*[^\s'\"<>`{{}}|\\^{_TRAILING}]"
)
# ``user:password@host`` without a scheme, not inside a path (``hf://org/repo@rev``). Bounded:
# unbounded, every start in a long run of text would scan to its end (quadratic time).
_BARE_USERINFO = re.compile(
    r"(?<![\w/@:%.+~-])[^\s/@:'\"<>()\[\]]{1,256}:[^\s/@'\"<>]{1,512}@(?=[\w\[])"
)
# ``key=value`` after ``?``, ``&``, ``;`` or ``#`` (also a path and query urllib3 prints bare);
# in a path (``;jsessionid=``) the value ends at ``/``.
_VALUE = r"[^&;#\s'\"<>{stop}]*"
_PARAM = re.compile(rf"(?<=[?&;#])([^=&;#\s'\"<>/]+)=({_VALUE.format(stop='')})")
_PATH_PARAM = re.compile(rf"(?<=;)([^=&;#\s'\"<>/]+)=({_VALUE.format(stop='/')})")
_PARAM_IN_TEXT = re.compile(
    rf"(?<=[?&;#])([^=&;#\s'\"<>/]+)=((?:{_VALUE.format(stop='')}[^&;#\s'\"<>{_TRAILING}])?)"
)

F = TypeVar("F", bound=Callable[..., Any])


def is_secret_key(name: str) -> bool:
    """Whether a query parameter called ``name`` carries a credential (rules: module doc)."""
    key = unquote_plus(name).strip().lower().replace("-", "_")
    if key in _EXACT or key.endswith("key") or any(part in key for part in _CONTAINS):
        return True
    for prefix in _SIGNED_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :] not in _SIGNED_PUBLIC
    return False


def redact_url(url: str) -> str:
    """``url`` with its userinfo and secret parameter values replaced by ``***``; never raises,
    whatever the string (a broken URL, a local path), and changes nothing else."""
    scheme_match = _SCHEME.match(url)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    if scheme and url[len(scheme) + 1 : len(scheme) + 3] == "//":
        start = len(scheme) + 3
    elif url.startswith("//"):
        start = 2  # scheme-relative
    else:
        start = 0
    body = url[start:]
    if not start:
        body = _BARE_USERINFO.sub(MASK + "@", body, count=1)  # user:pw@host/x, no scheme
    elif scheme != "hf":
        body = _mask_userinfo(body)
    cut = min((i for i in map(body.find, "?#") if i >= 0), default=len(body))
    path = _PATH_PARAM.sub(_masked_param, body[:cut])
    return url[:start] + path + _PARAM.sub(_masked_param, body[cut:])


def redact_text(text: str) -> str:
    """Free text (a message, a traceback) with every URL in it redacted, and every secret
    ``key=value`` that follows ``?``/``&``/``#`` (urllib3 prints the path and query alone)."""
    if not text:
        return text
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    text = _BARE_USERINFO.sub(MASK + "@", text)
    return _PARAM_IN_TEXT.sub(_masked_param, text)


def same_url(stored: object, url: str) -> bool:
    """The ``url`` field of a record found by a key made from the full URL (a pin, a partial
    download's state) names ``url``: written redacted now, in full before this change."""
    return isinstance(stored, str) and stored in (url, redact_url(url))


def url_fields(url: str) -> dict[str, str]:
    """What a record found by other means (a sidecar: by file name) keeps of ``url``: the
    redacted form to show, and the full URL's sha256 to match on. Two URLs differing only in a
    secret are different files (``?token=`` may be all that names the file)."""
    return {"url": redact_url(url), "url_sha256": _sha256(url)}


def record_matches(record: Mapping[str, Any], url: str) -> bool:
    """A record written with ``url_fields`` (or, before them, holding the full URL) is about
    ``url``."""
    digest = record.get("url_sha256")
    if digest is not None:
        return bool(digest == _sha256(url))
    return bool(record.get("url") == url)


def scrubbed(function: F) -> F:
    """Decorate a public API function: an exception leaving it keeps its type and message
    (already redacted, errors.py), but the third-party exceptions chained behind it (the
    requests error naming ``/x?token=...``) are replaced by one redacted rendering of them,
    so a notebook's traceback shows no secret."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as e:
            scrub_chain(e)
            raise

    return wrapper  # type: ignore[return-value]


class RedactedCause(Exception):
    """Stands in for exceptions whose text held a credential: their redacted traceback."""


def scrub_chain(error: BaseException) -> None:
    """Replace what ``error`` was raised from (or during) by a redacted rendering, when that
    chain names a secret; a chain without one is kept as it is, for debuggers."""
    behind = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    if behind is None:
        return
    import traceback

    text = "".join(traceback.format_exception(type(behind), behind, behind.__traceback__))
    clean = redact_text(text)
    if clean != text:
        error.__cause__ = RedactedCause(
            f"what led to it, URL credentials masked:\n{clean.rstrip()}"
        )
        error.__suppress_context__ = True


# -- helpers -----------------------------------------------------------------------------------


def _sha256(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8", "surrogateescape")).hexdigest()


def _mask_userinfo(body: str) -> str:
    """``user:pw@host/path`` -> ``***@host/path``. The authority ends at the first ``/``, ``?``
    or ``#``; its last ``@`` ends the userinfo (an unescaped ``@`` in a password). A password
    with an unescaped ``/``, ``?`` or ``#`` leaves ``user:pa`` looking like a host with a bad
    port: then the userinfo runs to the next ``@``."""
    end = min((i for i in map(body.find, "/?#") if i >= 0), default=len(body))
    authority = body[:end]
    at = authority.rfind("@")
    if at < 0 and _bad_port(authority):
        at = body.find("@")
    return MASK + body[at:] if at > 0 else body


def _bad_port(authority: str) -> bool:
    host_port = authority.rsplit("]", 1)[-1]  # an IPv6 literal's colons are not a port
    if ":" not in host_port:
        return False
    port = host_port.rsplit(":", 1)[1]
    return bool(port) and not port.isdigit()


def _masked_param(match: re.Match[str]) -> str:
    name, value = match.group(1), match.group(2)
    if is_secret_key(name):
        return f"{name}={MASK}" if value else match.group(0)
    if "://" in value:  # a URL passed along unescaped (?next=https://u:p@h/)
        return f"{name}={redact_url(value)}"
    return match.group(0)
