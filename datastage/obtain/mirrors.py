"""Mirrors chosen by speed: which of a file's URLs to download from first.

Owns: the ``--mirror`` policy (``auto``, the default; ``listed``: the manifest's order; any
other text: URLs containing it first, as before), the probe, and the small record of what it
measured (``index/mirrors.json`` in the cache, shown by ``datastage info``).

The probe: one ranged GET (``Range: bytes=0-PROBE_BYTES-1``) per http(s) host, all hosts in
parallel, about ``PROBE_SECONDS`` in all. It measures the time to the response headers (TTFB)
and the rate of what arrives in the rest of the second. A refused connection, a DNS failure,
an error status, an HTML page or a size other than the manifest's is a failure; a host that
has not answered when time is up is a timeout (its thread is left to end on its own). Hosts
are ranked by the time they would take for the whole file (TTFB + size / rate); the others stay
as fallbacks, failed hosts last (a probe failure may be passing). Measurements are per host and
reused for ``FRESH_SECONDS``, so a 30-file dataset on two hosts probes twice, not sixty times;
a failure tied to one URL (404, HTML, wrong size) is only reused for that URL.

The probe samples the first 256 KiB only: a host with a burst allowance (nginx
``limit_rate_after``) looks fast, then crawls. ``Pace`` watches the download itself and says
when the chosen host has fallen far below what the next one promised (download.py then moves
on); ``observed`` writes the rate the host really kept into the record, so later files and runs
within ``FRESH_SECONDS`` rank it by that, not by its burst.

Not probed: a single candidate, candidates all on one host, a file already in the cache (the
download never asks), other schemes (kept after the probed ones, in their order).

The record is a hint anyone who can write the cache can tamper with: it is read only as a
regular file of bounded size, entry by entry, and what a server sent is stored printable.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from ..core.redact import redact_url, url_fields
from ..settings.config import Settings

AUTO = "auto"  # probe and rank (the default)
LISTED = "listed"  # the manifest's order, no probe
PROBE_BYTES = 256 * 1024  # asked of each host: enough for a rate, little to waste
PROBE_SECONDS = 1.0  # all probes of one ranking together
FRESH_SECONDS = 600.0  # a measurement is reused this long
KEEP_SECONDS = 30 * 86400.0  # older measurements leave the record (info shows the rest)
SPREAD_FACTOR = 4.0  # a mirror this many times slower than the fastest gets no segments
NOMINAL_SIZE = 64 * 1024 * 1024  # the size ranked for when the file's size is unknown
RECORD = "index/mirrors.json"
MAX_RECORD_BYTES = 1 << 20  # thousands of hosts; more is not a record of ours
HTTP_SCHEMES = ("http", "https")
READ_BYTES = 16 * 1024  # one read of the sample: small, so a slow host still answers in time
_CONTENT_RANGE_TOTAL = re.compile(r"/(\d+)\s*$")
# A terminal's control sequences: CSI (colours, clear screen), OSC (window title), others.
_ESCAPE_SEQUENCE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|.?)")

_lock = threading.Lock()  # one probe at a time per process: parallel files share its result


@dataclass(frozen=True)
class Measurement:
    """What one probe of one host found."""

    host: str  # scheme://host:port, no login
    url: str  # the URL probed, redacted
    url_sha256: str  # of the full URL: a URL-specific failure applies to it only
    measured_at: float  # time.time()
    ttfb: Optional[float] = None  # seconds to the response headers
    rate: Optional[float] = None  # bytes per second after them
    error: Optional[str] = None  # why the host was skipped
    url_specific: bool = False  # the failure is the URL's (404, HTML, size), not the host's
    total: Optional[int] = None  # the size of the file at ``url``, as the host announced it

    @property
    def ok(self) -> bool:
        return self.error is None

    def seconds_for(self, size: int) -> float:
        """Estimated time to download ``size`` bytes from this host."""
        if not self.ok or self.ttfb is None or not self.rate:
            return float("inf")
        return self.ttfb + size / self.rate


@dataclass
class Ranking:
    """A file's URLs in the order to try, and which of them may serve segments alongside."""

    urls: list[str]
    slow: set[str] = field(default_factory=set)  # failed or clearly slower: no segments
    measured: dict[str, Measurement] = field(default_factory=dict)  # by URL, when probed

    def segment_peers(self, rest: list[str]) -> list[str]:
        return [u for u in rest if u not in self.slow]

    def promise(self, url: str) -> Optional[Measurement]:
        """What the probe found for ``url``, if it measured a rate there."""
        m = self.measured.get(url)
        return m if m is not None and m.ok and m.rate else None

    def alternative(self, url: str, rest: list[str]) -> Optional[Measurement]:
        """What a download from ``url`` is held to (``Pace``): the promise of the next URL in
        ``rest`` on another host, when both were measured. Another URL on the same host would
        crawl the same way."""
        if self.promise(url) is None:
            return None
        other = next((u for u in rest if host_of(u) != host_of(url)), None)
        return self.promise(other) if other is not None else None

    def kept(self, url: str, rate: float) -> None:
        """A download from ``url`` only kept ``rate``: every URL on its host is ranked by that,
        gets no segments, and goes last (a fallback)."""
        host = host_of(url)
        same = [u for u in self.urls if host_of(u) == host]
        self.slow.update(same)
        for u in same:
            if u in self.measured:
                self.measured[u] = replace(self.measured[u], rate=round(rate))
        self.urls = [u for u in self.urls if u not in same] + same


_FIELDS = frozenset(f.name for f in fields(Measurement))  # what a stored measurement may hold


def host_of(url: str) -> str:
    """``scheme://host:port`` of an http(s) URL, without any login (what the record keys on)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        port = 0
    return f"{parts.scheme.lower()}://{parts.hostname or '?'}:{port}"


def probes(settings: Settings, urls: Optional[list[str]] = None) -> bool:
    """Whether the ``mirror`` setting asks for ranking by speed (for ``urls``): ``auto`` does;
    so does a preferred host that none of ``urls`` is on (a typo, or a file that host does not
    serve): there is nothing to force, and the listed order is no better a guess."""
    preferred = settings.mirror or AUTO
    if settings.offline:
        return False
    choice = preferred.strip().lower()
    if choice in (AUTO, LISTED):
        return choice == AUTO
    return urls is not None and not any(preferred in u for u in urls)


def preferred_first(urls: list[str], settings: Settings) -> list[str]:
    """The order before any probe: ``--mirror TEXT`` puts URLs containing TEXT first."""
    preferred = settings.mirror
    if not preferred or preferred.strip().lower() in (AUTO, LISTED):
        return urls
    return [u for u in urls if preferred in u] + [u for u in urls if preferred not in u]


def rank(urls: list[str], settings: Settings, size: Optional[int] = None) -> Ranking:
    """``urls`` fastest first (probing the hosts without a fresh measurement), then the URLs of
    other schemes in their order, then those whose host failed. Unchanged when there is
    nothing to choose between."""
    if not probes(settings, urls) or size == 0:
        return Ranking(list(urls))
    web = [u for u in urls if _is_web(u)]
    if len({host_of(u) for u in web}) < 2:
        return Ranking(list(urls))
    with _lock:
        found = _measure(web, settings, size)
    best = {u: found[u].seconds_for(size or NOMINAL_SIZE) for u in web}
    other_file = set() if size is not None else _other_files(web, found)
    good = sorted((u for u in web if found[u].ok and u not in other_file), key=lambda u: best[u])
    failed = [u for u in web if not found[u].ok or u in other_file]
    others = [u for u in urls if u not in web]
    slow = set(failed)
    fastest = max((found[u].rate or 0.0) for u in good) if good else 0.0
    slow.update(u for u in good if (found[u].rate or 0.0) * SPREAD_FACTOR < fastest)
    return Ranking(good + others + failed, slow, {u: found[u] for u in good})


class Pace:
    """Does the mirror a download chose keep up with what the next one promised?

    ``slower(have)`` is called after each chunk. It compares the rate of the last ``WINDOW``
    seconds or more (from the newest chunk at least that old: a burst at the start does not
    dilute it, and the first chunk's wait, the TTFB, is not in it) with the probe's rate of
    ``alternative``. It says yes when that rate is over ``SPREAD_FACTOR`` times lower and moving
    would save at least ``MIN_SAVING`` seconds: the rest of the file (all of it when ``restart``:
    an unpinned file starts over on the other mirror) at the promised rate, plus its TTFB, against
    the rest at the rate seen. A short file on a fast link is never worth a move, whatever a
    scheduling pause does to one window. ``rate`` keeps the rate that decided it.
    """

    WINDOW = 0.5  # seconds: long enough to smooth chunks, short enough for a 1 MB file
    MIN_SAVING = 0.5  # seconds a move must save: below it, a new request is not worth it

    def __init__(self, alternative: Measurement, size: Optional[int], restart: bool) -> None:
        self.alternative, self.size, self.restart = alternative, size, restart
        self.rate: Optional[float] = None
        self._samples: deque[tuple[float, int]] = deque()

    def slower(self, have: int) -> bool:
        if self.rate is not None:
            return True
        now = time.monotonic()
        samples = self._samples
        samples.append((now, have))
        while len(samples) > 2 and now - samples[1][0] >= self.WINDOW:
            samples.popleft()  # the newest sample at least WINDOW old stays first
        began, had = samples[0]
        promised = self.alternative.rate or 0.0
        if self.size is None or now - began < self.WINDOW or not promised:
            return False
        rate = (have - had) / (now - began)
        if rate * SPREAD_FACTOR >= promised:
            return False
        left = max(0, self.size - have)
        stay = left / rate if rate > 0 else float("inf")
        move = (self.alternative.ttfb or 0.0) + (self.size if self.restart else left) / promised
        if stay - move < self.MIN_SAVING:
            return False
        self.rate = rate
        return True


def observed(cache_dir: Path, url: str, rate: float) -> None:
    """Record that a download from ``url`` really got ``rate`` bytes per second, far below
    what its host's probe measured: the host is ranked by it while the record is fresh."""
    host = host_of(url)
    known = _load(cache_dir).get(host)
    ttfb = (known.ttfb or 0.0) if known is not None and known.ok else 0.0
    own = known is not None and known.url_sha256 == url_fields(url)["url_sha256"]
    total = known.total if known is not None and own else None  # not another URL's file
    _save(cache_dir, {host: _measured(url, ttfb=ttfb, rate=round(rate), total=total)})


def _other_files(web: list[str], found: dict[str, Measurement]) -> set[str]:
    """For a file of unknown size (not pinned: its first download pins it), the URLs whose host
    announced another size than the first URL that answered: they serve some other file (an old
    release, a truncated copy), which must not become the pin because its host is fastest."""

    def total(url: str) -> Optional[int]:
        m = found[url]
        own = m.url_sha256 == url_fields(url)["url_sha256"]  # not another URL's on the host
        return m.total if m.ok and own else None

    sizes = [(u, total(u)) for u in web]
    reference = next((t for _, t in sizes if t is not None), None)
    return {u for u, t in sizes if reference is not None and t is not None and t != reference}


def last_measured(cache_dir: Path, urls: list[str]) -> list[Measurement]:
    """What was last measured for the hosts of ``urls`` (any age), one per host."""
    hosts = dict.fromkeys(host_of(u) for u in urls if _is_web(u))
    record = _load(cache_dir)
    return [record[h] for h in hosts if h in record]


def report(cache_dir: Path, urls: list[str]) -> dict[str, Any]:
    """``info``'s view of the last measurements for ``urls``: per host, and as lines."""
    found = last_measured(cache_dir, urls)
    hidden = ("url_sha256", "url_specific")
    return {
        "hosts": [{k: v for k, v in asdict(m).items() if k not in hidden} for m in found],
        "lines": [f"{describe(m)}  ({_ago(m.measured_at)})" for m in found],
    }


def _ago(when: float) -> str:
    """``measured 3 min ago``: how old a measurement is, roughly."""
    seconds = max(0, int(time.time() - when))
    if seconds < 120:
        return f"measured {seconds} s ago"
    if seconds < 7200:
        return f"measured {seconds // 60} min ago"
    return f"measured {seconds // 3600} h ago"


def describe(m: Measurement) -> str:
    """One line for ``info``: the host, then its TTFB and rate or why it was skipped."""
    from ..core.units import human_bytes

    if not m.ok:
        return f"{_printable(m.host)}  failed: {_printable(m.error or '')[:80]}"
    rate = f"{human_bytes(int(m.rate))}/s" if m.rate else "no data within the probe"
    return f"{m.host}  ttfb {(m.ttfb or 0) * 1000:.0f} ms, {rate}"


# -- measuring ---------------------------------------------------------------------------


def _is_web(url: str) -> bool:
    from ..sources import url_scheme

    return url_scheme(url) in HTTP_SCHEMES


def _measure(urls: list[str], settings: Settings, size: Optional[int]) -> dict[str, Measurement]:
    """A measurement for each URL: fresh ones from the record, the rest probed now."""
    record = _load(settings.cache_dir)
    now = time.time()
    found: dict[str, Measurement] = {}
    wanted: dict[str, str] = {}  # host -> the URL to probe it with
    for url in urls:
        host = host_of(url)
        known = record.get(host)
        if known and now - known.measured_at < FRESH_SECONDS and _applies(known, url):
            found[url] = known
        elif host not in wanted:
            wanted[host] = url
    if wanted:
        fresh = _probe_all(list(wanted.values()), settings, size)
        measured = {m.host: m for m in fresh.values()}
        record.update(measured)
        _save(settings.cache_dir, measured)
        for url in urls:
            if url not in found:
                m = record[host_of(url)]
                # another URL's 404 on the same host says nothing of this one: unranked
                found[url] = m if _applies(m, url) else replace(m, error=None, ttfb=None)
    return found


def _applies(m: Measurement, url: str) -> bool:
    """A host's measurement stands for ``url`` unless it is another URL's own failure."""
    return not m.url_specific or m.url_sha256 == url_fields(url)["url_sha256"]


def _probe_all(urls: list[str], settings: Settings, size: Optional[int]) -> dict[str, Measurement]:
    """Probe every URL in its own thread; wait for them at most PROBE_SECONDS (plus a little
    for the threads to stop reading)."""
    results: dict[str, Measurement] = {}
    began = time.monotonic()
    deadline = began + PROBE_SECONDS
    threads = []
    for url in urls:
        t = threading.Thread(
            target=lambda u=url: results.__setitem__(u, _probe(u, settings, size, deadline)),
            name=f"probe {host_of(url)}",
            daemon=True,  # a host that never answers must not keep datastage alive
        )
        t.start()
        threads.append(t)
    for t in threads:
        t.join(max(0.0, deadline + 0.2 - time.monotonic()))
    out = {}
    for url in urls:
        out[url] = results.get(url) or _failed(url, f"no answer within {PROBE_SECONDS:g} s")
    return out


def _probe(url: str, settings: Settings, size: Optional[int], deadline: float) -> Measurement:
    """One ranged GET: TTFB, then bytes until PROBE_BYTES or the deadline. The session is the
    HTTP source's (proxies, User-Agent, identity encoding); reads are small, so a slow host
    still yields a rate within the second."""
    from ..sources.http import HTTPSource

    session = HTTPSource(settings).session  # its own pool: closed with the probe
    wait = max(0.05, deadline - time.monotonic())
    asked = time.monotonic()
    try:
        response = session.get(
            url, headers={"Range": f"bytes=0-{PROBE_BYTES - 1}"}, stream=True, timeout=wait
        )
    except Exception as e:  # a probe must never break the download it serves
        session.close()
        return _failed(url, _why(e))
    ttfb = time.monotonic() - asked
    got = 0
    try:
        problem = _refusal(response, size)
        if problem:
            return _failed(url, problem[0], url_specific=problem[1])
        started = time.monotonic()
        while got < PROBE_BYTES and time.monotonic() < deadline:
            chunk = response.raw.read(READ_BYTES, decode_content=False)
            if not chunk:
                break
            if not got and _is_html(chunk):
                return _failed(url, "an HTML page instead of the file", url_specific=True)
            got += len(chunk)
        spent = time.monotonic() - started
    except Exception as e:  # the connection broke mid-sample
        if not got:
            return _failed(url, _why(e))
        spent = time.monotonic() - started
    finally:
        response.close()
        session.close()
    rate = round(got / max(spent, 1e-6))  # 0: headers, then nothing in time (ranked last)
    return _measured(url, ttfb=round(ttfb, 4), rate=rate, total=_total_size(response))


def _refusal(response: Any, size: Optional[int]) -> Optional[tuple[str, bool]]:
    """Why a response is not the file (and whether that is the URL's fault, not the host's)."""
    status = response.status_code
    if status >= 400:
        phrase = _printable(str(response.reason or ""))[:60]  # a server's: any length, any bytes
        reason = f"HTTP {status} {phrase}".strip()
        return reason, status < 500 and status not in (408, 429)
    if response.headers.get("Content-Type", "").lower().startswith("text/html"):
        return "an HTML page instead of the file", True
    total = _total_size(response)
    if size is not None and total is not None and total != size:
        return f"serves {total} bytes, not {size}", True
    return None


def _total_size(response: Any) -> Optional[int]:
    """The whole file's size: from Content-Range (206) or Content-Length (200)."""
    if response.status_code == 206:
        match = _CONTENT_RANGE_TOTAL.search(response.headers.get("Content-Range", ""))
        return int(match.group(1)) if match else None
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _printable(text: str) -> str:
    """``text`` as one line of printable characters: a server's reason phrase (or a foreign
    record) may hold terminal escape sequences, which ``info`` must not pass to a terminal."""
    text = _ESCAPE_SEQUENCE.sub("", text[:4096])
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def _is_html(head: bytes) -> bool:
    from ..sources import looks_like_html

    return looks_like_html(head)


def _why(e: BaseException) -> str:
    """A short reason for a failed connection: what the user can act on, no URL."""
    import socket

    seen: list[BaseException] = []
    cause: Optional[BaseException] = e
    while cause is not None and cause not in seen:
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    for c in seen:
        if isinstance(c, ConnectionRefusedError):
            return "connection refused"
        if isinstance(c, socket.gaierror):
            return "host name not found"
        if isinstance(c, (TimeoutError, socket.timeout)):
            return f"no answer within {PROBE_SECONDS:g} s"
    text = " ".join(str(c) for c in seen).lower()
    for marker, reason in (
        ("refused", "connection refused"),
        ("name or service not known", "host name not found"),
        ("nodename nor servname", "host name not found"),
        ("timed out", f"no answer within {PROBE_SECONDS:g} s"),
        ("remotedisconnected", "connection closed without an answer"),
        ("connection aborted", "connection closed without an answer"),
        ("reset", "connection reset"),
        ("ssl", "TLS error"),
    ):
        if marker in text:
            return reason
    return type(e).__name__


def _failed(url: str, error: str, url_specific: bool = False) -> Measurement:
    return _measured(url, error=error, url_specific=url_specific)


def _measured(url: str, **found: Any) -> Measurement:
    """A measurement of ``url``'s host made now: the URL kept only redacted and as a digest."""
    fields = url_fields(url)
    return Measurement(
        host=host_of(url),
        url=fields["url"],
        url_sha256=fields["url_sha256"],
        measured_at=time.time(),
        **found,
    )


# -- the record --------------------------------------------------------------------------


def _load(cache_dir: Path) -> dict[str, Measurement]:
    """The record; an unreadable, foreign or hostile one counts as empty (it is only a hint),
    and an entry of the wrong shape is dropped alone. Anyone who can write the cache can put
    anything under that name: only a regular file of at most ``MAX_RECORD_BYTES`` is read, never
    through a link (a FIFO would block ``get`` forever, a link to /dev/zero fill its memory)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
    try:
        with open(os.open(cache_dir / RECORD, flags), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return {}
            text = f.read(MAX_RECORD_BYTES + 1)
        if len(text) > MAX_RECORD_BYTES:
            return {}
        hosts = json.loads(text)["hosts"]
        parsed = {h: _parsed(h, m) for h, m in hosts.items()}
    except Exception:  # OSError, ValueError, RecursionError (deep nesting), a list for a dict
        return {}
    return {h: m for h, m in parsed.items() if m is not None}


def _parsed(host: object, raw: object) -> Optional[Measurement]:
    """One stored measurement, if every field has the type and range ``Measurement`` needs:
    a string where a string is shown, a finite number where one is computed with."""

    def number(value: object, optional: bool = True) -> bool:
        if value is None:
            return optional
        if type(value) is int:  # not a bool; not 10**400 (no float holds it)
            return 0 <= value < 1 << 53
        return type(value) is float and math.isfinite(value) and value >= 0

    if not isinstance(host, str) or not isinstance(raw, dict) or set(raw) - _FIELDS:
        return None
    texts = all(isinstance(raw.get(k), str) for k in ("host", "url", "url_sha256"))
    error = raw.get("error")
    if not texts or raw["host"] != host or not (error is None or isinstance(error, str)):
        return None
    when = raw.get("measured_at")
    if not number(when, optional=False) or when > time.time() + 86400:  # type: ignore[operator]
        return None  # a date in the future would stay fresh for ever
    if not all(number(raw.get(k)) for k in ("ttfb", "rate", "total")):
        return None
    return Measurement(**raw) if isinstance(raw.get("url_specific", False), bool) else None


def _save(cache_dir: Path, measured: dict[str, Measurement]) -> None:
    """Add ``measured`` to the record, atomically; a cache that cannot be written only loses
    the hint. The record is read again just before: another process sharing the cache may have
    saved its own hosts while this one probed (the newer measurement of a host wins)."""
    import filelock

    try:  # one saver at a time: two read-merge-writes at once would lose one's hosts
        (cache_dir / RECORD).parent.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(str(cache_dir / (RECORD + ".lock")), timeout=5):
            _merge_and_write(cache_dir, measured)
    except (filelock.Timeout, OSError):
        pass  # only a hint is lost


def _merge_and_write(cache_dir: Path, measured: dict[str, Measurement]) -> None:
    from ..core.fsutil import write_atomic

    record = _load(cache_dir)
    record.update(
        {
            h: m
            for h, m in measured.items()
            if h not in record or m.measured_at >= record[h].measured_at
        }
    )
    now = time.time()
    kept = {h: m for h, m in sorted(record.items()) if now - m.measured_at < KEEP_SECONDS}
    data: dict[str, Any] = {"hosts": {h: asdict(m) for h, m in kept.items()}}
    for m in data["hosts"].values():
        m["url"] = redact_url(m["url"])  # stored redacted already; never a secret on disk
    with contextlib.suppress(OSError):
        write_atomic(cache_dir / RECORD, (json.dumps(data, indent=1) + "\n").encode())
