"""Credentials out of everything datastage prints or stores (issue 11 item 4).

    https://user:pw@host/x?token=S&sig=T&X-Amz-Expires=60
    -> https://***@host/x?token=***&sig=***&X-Amz-Expires=60

One rule, applied at the sinks (error and warning lines, ``info``, ``env``, tracebacks, the
marker, pins, cache index records, persistent-tier sidecars); the URL used for the request is
never changed. What counts as secret:

- the whole userinfo (``user:password@``, and a bare ``token@``: GitHub tokens go there), for
  every scheme but ``hf://`` (whose ``@`` names a revision), also of a URL further on in the
  string (``HF_ENDPOINT``'s comma-separated list, ``https://archive/web/1/http://u:p@h/``);
- the value, up to the next ``&``/``;``/``#`` whatever it holds, of a query or fragment
  parameter whose name, percent-decoded, NFKC-normalised and compared without case (``-`` and
  ``_`` alike), is ``key``/``sig``/``sign``/``auth``/``authorization``/``pass``/``pw``/``pwd``/
  ``passcode``/``jwt``/``hdnts``/``hdnea``/``sid``/``otp``/``bearer``/``ticket``/``hmac``/
  ``cred``/``sas``, contains ``token``, ``secret``, ``passw``,
  ``signature``, ``credential``, ``apikey``/``api_key``, ``accesskey``/``access_key``,
  ``session`` or ``private``, ends in ``key`` (``resourcekey``, ``subscription-key``), or starts
  with ``x-amz-``/``x-goog-``. Presigned URLs keep what helps to debug them and is no secret:
  ``X-Amz-``/``X-Goog-`` ``Algorithm``, ``Date``, ``Expires``, ``SignedHeaders``; Azure SAS
  ``sv``/``se``/``sp``/``st``/``sr`` (its ``sig`` goes); ``Expires``;
- the whole value of any other parameter that percent-decodes to a URL or query holding one of
  the above (``?next=https%3A%2F%2Fu%3Apw%40h%2F``).

Stored records still need the URL as a key. Pins, ``index/url/`` records and partial downloads
keep the key they always had (their file name: the full URL's sha256, or the file's digest)
and store only ``redact_url(url)`` for display; ``same_url`` accepts a record of either form,
so caches written before this change keep working. A persistent-tier or shared-cache sidecar is
found by its file name, so it also stores the full URL's sha256 (``url_fields``,
``record_matches``): two URLs that differ only in a token may be two files. A hash is not the
secret, but a weak password in a URL can be guessed back from it: where others can read the
cache or the tier, prefer a token (or a header) to a URL password.

Free text (messages, tracebacks) is searched for URLs, which a password with a quote or a space
can cut short; so the URLs datastage is given (``remember``: manifest entries, one-liner
targets, proxy and endpoint variables) have such secrets noted, and ``redact_text`` masks them
wherever they appear, raw or percent-encoded (at most ``MAX_KNOWN``, of 6 characters or more:
a shorter one would mask ordinary words). Every pattern is bounded, so a hostile server's 64 KB
reason phrase costs linear time (scripts/bench_redact.py).

Imports nothing heavy: errors.py and progress.py use it on every message.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
import unicodedata
from collections.abc import Mapping
from typing import Any, Callable, TypeVar
from urllib.parse import quote, unquote, unquote_plus

MASK = "***"

_EXACT = frozenset(
    {"key", "sig", "sign", "auth", "authorization", "pass", "pw", "pwd", "passcode", "jwt"}
    | {"hdnts", "hdnea", "sid", "otp", "bearer", "ticket", "hmac", "cred", "sas"}
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
# A URL inside free text: from its scheme to the first character no URL contains; a userinfo
# may hold any of them but a space or "/" (a password with a quote), up to its last "@".
_URL_IN_TEXT = re.compile(
    r"\b[A-Za-z][A-Za-z0-9+.-]{0,31}://(?:[^\s/?#]{1,512}@(?=[\w\[]))?"
    rf"[^\s'\"<>`{{}}|\\^]*[^\s'\"<>`{{}}|\\^{_TRAILING}]"
)
# ``user:password@host`` without a scheme, not inside a path (``hf://org/repo@rev``). Bounded:
# unbounded, every start in a long run of text would scan to its end (quadratic time).
_BARE_USERINFO = re.compile(
    r"(?<![\w/@:%.+~-])[^\s/@:'\"<>()\[\]]{1,256}:[^\s/@'\"<>]{1,512}@(?=[\w\[])"
)
# Another URL's userinfo further on: HF_ENDPOINT lists URLs, an archive's path holds one.
_EMBEDDED_USERINFO = re.compile(
    r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]{0,31})://([^/?#\s]{1,512})@"
)
# ``key=value`` after ``?``, ``&``, ``;`` or ``#`` (also a path and query urllib3 prints bare);
# in a path (``;jsessionid=``) the value ends at ``/``.
# Inside one URL a value runs to the next separator, whatever it holds (a quote, a space).
_VALUE = r"[^&;#\s'\"<>{stop}]*"
_PARAM = re.compile(r"(?<=[?&;#])([^=&;#\s'\"<>/]+)=([^&;#]*)")
_PATH_PARAM = re.compile(r"(?<=;)([^=&;#\s'\"<>/]+)=([^&;#/]*)")
_PARAM_IN_TEXT = re.compile(
    rf"(?<=[?&;#])([^=&;#\s'\"<>/]+)=((?:{_VALUE.format(stop='')}[^&;#\s'\"<>{_TRAILING}])?)"
)

F = TypeVar("F", bound=Callable[..., Any])


def is_secret_key(name: str) -> bool:
    """Whether a query parameter called ``name`` carries a credential (rules: module doc)."""
    key = unicodedata.normalize("NFKC", unquote_plus(name)).strip().lower().replace("-", "_")
    if key in _EXACT or key.endswith("key") or any(part in key for part in _CONTAINS):
        return True
    for prefix in _SIGNED_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :] not in _SIGNED_PUBLIC
    return False


def redact_url(url: str) -> str:
    """``url`` with its userinfo and secret parameter values replaced by ``***``; never raises,
    whatever the string (a broken URL, a local path), and changes nothing else."""
    scheme, start = _scheme_and_start(url)
    body = url[start:]
    if not start:
        body = _BARE_USERINFO.sub(MASK + "@", body, count=1)  # user:pw@host/x, no scheme
    elif scheme != "hf":
        body = _mask_userinfo(body)
    body = _EMBEDDED_USERINFO.sub(_masked_embedded, body)  # "http://a,http://u:p@b" (a list)
    cut = min((i for i in map(body.find, "?#") if i >= 0), default=len(body))
    path = _PATH_PARAM.sub(_masked_param, body[:cut])
    return url[:start] + path + _PARAM.sub(_masked_param, body[cut:])


def redact_text(text: str) -> str:
    """Free text (a message, a traceback) with every URL in it redacted, every secret
    ``key=value`` that follows ``?``/``&``/``#`` (urllib3 prints the path and query alone), and
    every secret ``remember`` noted, wherever it appears."""
    if not text:
        return text
    _remember_environment()
    for secret in _known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    text = _BARE_USERINFO.sub(MASK + "@", text)
    return _PARAM_IN_TEXT.sub(_masked_param, text)


def remember(*urls: str) -> None:
    """Note the secret parts of ``urls`` that the text patterns cannot find (a password holding
    a quote or a space cuts a URL short in free text), so that ``redact_text`` masks them
    wherever they appear: as given, percent-decoded and -encoded. Plain secrets, the usual
    kind, are left to the patterns: the list stays short, and checking it cheap."""
    global _known
    odd = {secret for url in urls for secret in _secrets_in(url) if _ODD.search(secret)}
    found = {form for secret in odd for form in _forms(secret)}
    found = {f for f in found if len(f) >= MIN_KNOWN and MASK not in f and f not in _known}
    if found:
        with _known_lock:  # a tuple swapped whole: readers in other threads never see it change
            known = sorted({*_known, *found}, key=len, reverse=True)
            _known = tuple(known[:MAX_KNOWN])


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

#: Secrets shorter than this are masked only where a pattern finds them, never as bare words.
MIN_KNOWN = 6
#: A bound on the list (a hostile manifest could fill it): each message is checked against all.
MAX_KNOWN = 1000
#: What ends a URL or a value for the text patterns: a secret holding one must be remembered.
_ODD = re.compile(r"[\s'\"<>`{}|\\^]")
_known: tuple[str, ...] = ()  # longest first: a secret containing another is masked whole
_known_lock = threading.Lock()
#: Variables whose URLs requests and the sources read on their own (not through a manifest).
_URL_VARIABLES = (
    "http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
    "HF_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
)  # fmt: skip
_environment_seen: tuple[str, ...] = ()


def _remember_environment() -> None:
    global _environment_seen
    values = tuple(os.environ.get(name, "") for name in _URL_VARIABLES)
    if values != _environment_seen:
        _environment_seen = values
        remember(*(v for v in values if v))


def _scheme_and_start(url: str) -> tuple[str, int]:
    """The lower-cased scheme ('' if none) and where the part after ``scheme://`` begins."""
    scheme_match = _SCHEME.match(url)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    if scheme and url[len(scheme) + 1 : len(scheme) + 3] == "//":
        return scheme, len(scheme) + 3
    if url.startswith("//"):
        return scheme, 2  # scheme-relative
    return scheme, 0


def _secrets_in(url: str) -> list[str]:
    """What ``redact_url`` masks in ``url``: its userinfo (and password), secret values."""
    scheme, start = _scheme_and_start(url)
    body = url[start:]
    found = []
    if not start:
        bare = _BARE_USERINFO.search(body)
        userinfo = bare.group(0)[:-1] if bare else ""
    elif scheme != "hf":
        userinfo = body[: len(body) - len(_mask_userinfo(body)) + len(MASK)]
    else:
        userinfo = ""
    logins = [userinfo] + [m.group(2) for m in _EMBEDDED_USERINFO.finditer(body)]
    # user:password and the password; a bare user name may be a word ("datastage@host")
    found += [part for login in logins if ":" in login for part in (login, login.split(":", 1)[1])]
    cut = min((i for i in map(body.find, "?#") if i >= 0), default=len(body))
    for pattern, part in ((_PATH_PARAM, body[:cut]), (_PARAM, body[cut:])):
        found += [m.group(2) for m in pattern.finditer(part) if is_secret_key(m.group(1))]
        found += [
            secret
            for m in pattern.finditer(part)
            if "://" in m.group(2)
            for secret in _secrets_in(m.group(2))
        ]
    return found


def _forms(secret: str) -> set[str]:
    """``secret`` as written, decoded, and encoded as requests/urllib3 may print it."""
    decoded = {secret, unquote(secret), unquote_plus(secret)}
    return decoded | {quote(d, safe=q) for d in decoded for q in ("", "!$&'()*+,;=:@~")}


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


def _masked_embedded(match: re.Match[str]) -> str:
    scheme, userinfo = match.group(1), match.group(2)
    return match.group(0) if scheme.lower() == "hf" or userinfo == MASK else f"{scheme}://{MASK}@"


def _masked_param(match: re.Match[str]) -> str:
    name, value = match.group(1), match.group(2)
    if is_secret_key(name):
        return f"{name}={MASK}" if value else match.group(0)
    shown = redact_url(value) if "://" in value else value  # ?next=https://u:p@h/ unescaped
    decoded = unquote_plus(shown)
    if decoded != shown and redact_text(decoded) != decoded:  # ?next=https%3A%2F%2Fu%3Ap%40h
        return f"{name}={MASK}"
    return f"{name}={shown}"
