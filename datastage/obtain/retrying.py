"""Patience with a failing URL: which failures are worth another try, how long to wait, saying so.

Owns: the one retry policy of every download (``download.py``'s single stream and each piece of
``transfer.py``), and the ``retry n/N in T s: reason (host:port)`` lines on stderr. The HTTP
session itself never retries (a hidden retry layer under this one multiplied the waits: a dead
host took 8 minutes to report, in silence).

Classes of failure (from the source's exception):

- transient — connection reset or closed mid-body, timeouts, HTTP 408, 429 and 5xx: back off
  ``backoff`` seconds, doubling, up to ``retries`` times; ``Retry-After`` is honoured;
- permanent-looking — connection refused, the host name does not resolve
  (``HostUnreachable``): ``QUICK_RETRIES`` short tries, in case a server is restarting, so a
  dead host is reported within seconds, as wget and curl do. Not once the URL has answered
  in this run (``alive``): then it is a restart or a network drop, not a typo or a dead
  host, and it gets the transient backoff (a 3 s server restart used to end a half-done
  download);
- permanent — TLS/certificate errors, any other 4xx, HTML pages, wrong sizes: no retry.

The waits of one URL without progress add up to at most ``MAX_WAIT`` seconds (about a minute),
whatever ``retries`` and ``Retry-After`` say, and no retry starts ``MAX_WAIT`` after the first
failure (tries that time out count too). Progress (a byte received) resets the patience.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from ..core.errors import HostUnreachable, HTTPStatusError, NetworkError, SourceError
from ..core.urls import origin

MAX_WAIT = 60.0  # seconds of backoff per URL without progress
QUICK_RETRIES = 2  # tries after a refused connection or an unresolved name
QUICK_DELAY = 0.5  # seconds, doubling: 0.5 then 1
QUICK_WITHIN = 4.0  # ... and none once this long has passed since the first try (slow DNS)
TRANSIENT_STATUSES = (408, 429)  # and every 5xx


def safe_url(url: str) -> str:
    """The URL for error messages: its login and secret query values masked (redact.py), so
    a user still sees which URL failed (``?file=a`` vs ``?file=b``)."""
    from ..core.redact import redact_url

    return redact_url(url)


def retries_for(error: BaseException, retries: int, alive: bool = False) -> int:
    """How many tries after the first ``error`` deserves (0: report it at once). ``alive``:
    the URL answered earlier in this run."""
    if isinstance(error, HostUnreachable) and not alive:
        return min(QUICK_RETRIES, retries)
    if isinstance(error, HTTPStatusError):
        status = error.status
        return retries if status in TRANSIENT_STATUSES or status >= 500 else 0
    if isinstance(error, NetworkError):
        return retries
    return 0


class Patience:
    """The retries left to one URL (or one piece of a file) since its last progress."""

    def __init__(
        self,
        retries: int,
        backoff: float,
        say: Callable[[str], None],
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.retries, self.backoff, self.say, self._sleep = retries, backoff, say, sleep
        self.reset()

    def reset(self) -> None:
        """Progress was made: the next failure starts a fresh count."""
        self.tries = 0
        self.waited = 0.0
        self.since: Optional[float] = None  # the first failure since the last progress
        self.began = time.monotonic()  # the first try since the last progress

    def wait(
        self,
        error: SourceError,
        url: str,
        stop: Optional[Callable[[], bool]] = None,
        alive: bool = False,
    ) -> None:
        """Sleep before the next try, saying why; re-raise ``error`` once patience is out.

        ``stop()`` (checked while sleeping) ends the wait early by re-raising too. ``alive``:
        ``url`` answered earlier in this run, so a refused connection is not a dead host.
        """
        allowed = retries_for(error, self.retries, alive)
        now = time.monotonic()
        if self.since is None:
            self.since = now
        # Waits, and tries that took long to fail (connect timeouts), count alike.
        left = MAX_WAIT - max(self.waited, now - self.since)
        quick = isinstance(error, HostUnreachable) and not alive
        if quick and now - self.began > QUICK_WITHIN:
            allowed = self.tries  # a resolver or connect that takes seconds to fail: no more
        if self.tries >= allowed or left <= 0:
            if self.tries:
                error.message = f"{error.message}; gave up after {self.tries + 1} tries"
            raise error
        self.tries += 1
        base = min(QUICK_DELAY, self.backoff) if quick else self.backoff
        delay = base * 2 ** (self.tries - 1)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, retry_after)
        delay = min(delay, left)
        self.waited += delay
        self.say(
            f"retry {self.tries}/{allowed} in {delay:.3g} s: {reason_of(error)} ({origin(url)})"
        )
        while delay > 0:  # in short naps, so a stop (another file failed) is heard
            if stop is not None and stop():
                raise error
            nap = min(delay, 0.1)
            self._sleep(nap)
            delay -= nap


def reason_of(error: BaseException) -> str:
    """The short reason a source attached to its error (``reason``), else the message."""
    return str(getattr(error, "reason", None) or error)
