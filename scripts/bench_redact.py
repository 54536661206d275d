#!/usr/bin/env python3
"""Benchmark: redaction's cost on hostile and large inputs (not a test).

    python scripts/bench_redact.py            # each case once, seconds per call

Redaction runs on every message, warning and traceback (redact.py), so it must stay linear in
the text's length whatever a server or manifest puts there: a 64 KB HTTP reason phrase shaped
like a query string, long runs of ``a:``/``a.``/``=``, thousands of URLs; and ``remember`` must
stay cheap for a manifest of 10,000 presigned URLs. Target: every row well under a second (the
unbounded patterns of the first version took 10-35 s on the 40-80 KB rows).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from typing import Callable

from datastage.core import redact

CASES: dict[str, str] = {
    "reason phrase '?a=b&' x 13k (64 KB)": "HTTP 404 " + "?a=b&" * 13_000,
    "query 'token=b&' x 10k in a URL": "http://h/x?" + "token=b&" * 10_000,
    "'!a:b' x 16k (bare user:pw starts)": "!a:b" * 16_000,
    "'a.' x 32k (scheme starts)": "a." * 32_000,
    "'=' x 64k": "?" + "=" * 64_000,
    "';a=b' x 16k in a path": "http://h/" + ";a=b" * 16_000,
    "'http://a ' x 10k": "http://a " * 10_000,
    "nested %-encoding x 20k": "http://h/x?a=" + "%25" * 20_000 + "41",
}


def _time(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _remember_each(urls: Iterable[str]) -> None:
    for url in urls:  # one at a time, as manifest entries are
        redact.remember(url)


def main() -> None:
    print(f"{'case':42} {'chars':>7} {'redact_text':>12} {'redact_url':>11}")
    for name, text in CASES.items():
        as_text = _time(functools.partial(redact.redact_text, text))
        as_url = _time(functools.partial(redact.redact_url, text))
        print(f"{name:42} {len(text):7} {as_text:11.3f}s {as_url:10.3f}s")
    urls = [
        f"https://b.s3.amazonaws.com/f{i}.bin?X-Amz-Credential=AKIA{i:08d}"
        f"&X-Amz-Signature={i:064x}&X-Amz-Security-Token=IQo{i:040d}"
        for i in range(10_000)
    ]
    spent = _time(functools.partial(_remember_each, urls))
    print(f"{'remember 10k presigned URLs':42} {'':7} {spent:11.3f}s")
    odd = [f'https://u:pa"ss{i:06d}@h/f{i}.bin' for i in range(3_000)]
    spent = _time(functools.partial(_remember_each, odd))
    print(f"{'remember 3k URLs with a quote in the password':42} {'':7} {spent:11.3f}s")
    spent = _time(
        lambda: [redact.redact_text(f"pinned f{i}.bin sha256:{'a' * 64}") for i in range(1000)]
    )
    print(f"{'1000 messages, list full':42} {'':7} {spent:11.3f}s")


if __name__ == "__main__":
    main()
