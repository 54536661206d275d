#!/usr/bin/env python3
"""Hostile manifests must fail in time linear in their size, never quadratic.

    python scripts/bench_badinput.py [--sizes 5000,10000,20000]

For each size N, seconds to refuse (median of 3):

    problems      a manifest of N ``[[files]]`` entries, each with an unknown key: N problems
                  collected (InvalidManifest); each note used to scan the list of earlier ones
    whole subset  a valid manifest of N files and a subset of N more: merging the subset's files
                  into the whole dataset compared each with every earlier one (N*N)
    dotted key    one key of N escaped-quote parts ("a\\"b"."a\\"b"....); tomllib's parse of it
                  is quadratic, tomlio refuses it before parsing

A ratio t(2N)/t(N) near 2 is linear; near 4 is quadratic.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datastage.core import tomlio  # noqa: E402
from datastage.core.errors import ManifestError  # noqa: E402
from datastage.resolve import manifest  # noqa: E402


def _problems(n: int) -> Callable[[], None]:
    text = "name = 'x'\n" + "".join(
        f'[[files]]\nurl = "http://h/{i}"\nbogus{i} = 1\n' for i in range(n)
    )
    data = tomlio.loads(text)

    def run() -> None:
        try:
            manifest.from_dict(data)
        except ManifestError:
            return
        raise AssertionError("accepted")

    return run


def _subset(n: int) -> Callable[[], None]:
    text = "name = 'x'\n" + "".join(f'[[files]]\nurl = "http://h/{i}"\n' for i in range(n))
    text += "[subsets.a]\n" + "".join(
        f'[[subsets.a.files]]\nurl = "http://h/a{i}"\n' for i in range(n)
    )
    data = tomlio.loads(text)

    def run() -> None:
        assert len(manifest.from_dict(data).files) == 2 * n

    return run


def _dotted(n: int) -> Callable[[], None]:
    text = "name = 'x'\n" + ".".join(['"a\\"b"'] * n) + " = 1\n"

    def run() -> None:
        try:
            tomlio.loads(text)
        except tomlio.BadTOML:
            return
        raise AssertionError("accepted")

    return run


def _median(run: Callable[[], None]) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,10000,20000")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    print(f"{'case':<12} " + " ".join(f"{n:>10}" for n in sizes))
    cases = (("problems", _problems), ("whole subset", _subset), ("dotted key", _dotted))
    for label, make in cases:
        print(f"{label:<12} " + " ".join(f"{_median(make(n)):>9.3f}s" for n in sizes))


if __name__ == "__main__":
    main()
