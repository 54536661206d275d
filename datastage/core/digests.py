"""Digests ("alg:hex"), streaming hashers and size/digest checks.

Owns: parsing and comparing digests, hashing bytes as they stream past, hashing files.
Does not own: deciding *when* to hash (fetch, cache and stage decide that).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .errors import ChecksumMismatch, SizeMismatch

#: Hex length of every algorithm a manifest may use; the cache is keyed by sha256.
HEX_LENGTHS = {"sha256": 64, "sha512": 128, "sha1": 40, "md5": 32}
CACHE_ALGORITHM = "sha256"
READ_CHUNK = 1 << 20

_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True)
class Digest:
    algorithm: str
    hexdigest: str

    @classmethod
    def parse(cls, text: str, algorithm: Optional[str] = None) -> Digest:
        """Parse ``"sha256:ab12…"`` (or a bare hex string when ``algorithm`` is given).

        Raises ValueError with a reason a person can act on.
        """
        text = text.strip()
        if algorithm is None:
            algorithm, sep, text = text.partition(":")
            if not sep:
                raise ValueError("expected 'algorithm:hex', e.g. 'sha256:ab12…'")
        algorithm = algorithm.lower()
        hexdigest = text.lower()
        if algorithm not in HEX_LENGTHS:
            raise ValueError(
                f"unknown algorithm {algorithm!r} (use one of {', '.join(HEX_LENGTHS)})"
            )
        if len(hexdigest) != HEX_LENGTHS[algorithm] or not _HEX.match(hexdigest):
            raise ValueError(
                f"{algorithm} must be {HEX_LENGTHS[algorithm]} hex characters, got {text!r}"
            )
        return cls(algorithm, hexdigest)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


class Hasher:
    """Hashes a byte stream with several algorithms in one pass; counts its size too."""

    def __init__(self, algorithms: Iterable[str] = (CACHE_ALGORITHM,)) -> None:
        names = dict.fromkeys([CACHE_ALGORITHM, *algorithms])
        self._hashes = {name: _new_hash(name) for name in names}
        self.size = 0

    def update(self, data: bytes) -> None:
        for h in self._hashes.values():
            h.update(data)
        self.size += len(data)

    def hexdigests(self) -> dict[str, str]:
        return {name: h.hexdigest() for name, h in self._hashes.items()}


def _new_hash(name: str) -> hashlib._Hash:
    # md5/sha1 are integrity checks here, not security; FIPS builds refuse them otherwise.
    return hashlib.new(name, usedforsecurity=False)


def hash_file(
    path: Path,
    algorithms: Iterable[str] = (CACHE_ALGORITHM,),
    on_bytes: Optional[Callable[[int], None]] = None,
    limit: Optional[int] = None,
) -> Hasher:
    """Hash a file (or its first ``limit`` bytes) in one sequential read."""
    hasher = Hasher(algorithms)
    remaining = limit
    with open(path, "rb") as f:
        while remaining is None or remaining > 0:
            chunk = f.read(READ_CHUNK if remaining is None else min(READ_CHUNK, remaining))
            if not chunk:
                break
            hasher.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return hasher


def check(
    what: str,
    size: int,
    digests: Mapping[str, str],
    expected_size: Optional[int],
    expected: Iterable[Digest],
    why: str = "",
) -> None:
    """Raise SizeMismatch / ChecksumMismatch unless the observed values match the expected ones.

    ``why`` is appended to the message (e.g. "it looks like an HTML page").
    """
    suffix = f"; {why}" if why else ""
    if expected_size is not None and size != expected_size:
        raise SizeMismatch(
            f"size mismatch for {what}: expected {expected_size} bytes, got {size}{suffix}",
            expected=expected_size,
            actual=size,
        )
    for digest in expected:
        actual = digests.get(digest.algorithm)
        if actual is not None and actual != digest.hexdigest:
            raise ChecksumMismatch(
                f"checksum mismatch for {what}: expected {digest}, "
                f"got {digest.algorithm}:{actual}{suffix}",
                expected=str(digest),
                actual=f"{digest.algorithm}:{actual}",
            )
