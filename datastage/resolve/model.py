"""The manifest schema as data: its keys and name rules, and the frozen dataclasses a manifest
becomes (``Manifest``, its ``FileEntry`` list, its ``Layout``).

The schema itself (each key, with an example) is documented in manifest.py; reading and checking
a manifest is validate.py and tables.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..core.digests import HEX_LENGTHS, Digest
from ..core.fsutil import user_path
from ..core.urls import URL_SCHEME

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*\Z")  # \Z: "name\n" is not a name
MAX_NAME_BYTES = 255  # one path component on Linux file systems
MAX_INT = 2**63 - 1  # sizes and counts beyond it describe no real file

TOP_KEYS = {"name", "description", "homepage", "license", "citation", "version", "root", "files"}
TOP_KEYS |= {"noncommercial", "license_note", "layout", "subsets", "aliases", "tags"}
TOP_KEYS |= {"access", "register", "instructions"}  # gated datasets (localcopy.py)
ACCESS_VALUES = ("public", "gated")
FILE_KEYS = {"url", "mirrors", "size", "extract", "name", "dest", "unpacked_size", *HEX_LENGTHS}
FILE_KEYS |= {"parts"}  # a file published in split parts, joined before use (parts.py)
PART_KEYS = {"name", "url", "mirrors", "size", *HEX_LENGTHS}
#: The ``url`` of an entry that has none (a gated file, a file joined from parts): a key for
#: pins, the cache and sidecars (``no-url:<dataset>/<name>``), never fetched (``urls`` is empty).
NO_URL = "no-url:"
# pinned: a declaration (false = no confirmed digest, trust on first use); the others say how
# an archive is unpacked (extract/steps.py).
FILE_KEYS |= {"pinned", "strip_components", "nested", "extract_nested", "name_encoding"}
LAYOUT_KEYS = {"paths", "counts"}
SUBSET_KEYS = {"description", "root", "files", "includes", "whole", "layout", "tags"}
# A tag is a short word users filter by: a task (asr, tts, kws, noise, speaker) or a language
# code (en, zh, pt-br). Lowercase, so `list --tag ZH` and the manifest always agree.
TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9+-]{0,23}\Z")
SUBSET_SEPARATOR = "/"  # "librispeech/train-clean-100"; staged as DIR/librispeech-train-clean-100


@dataclass(frozen=True)
class Layout:
    """What a staged dataset should look like, relative to its root (checked after staging)."""

    paths: tuple[str, ...] = ()  # globs that must each match at least one path
    counts: tuple[tuple[str, int], ...] = ()  # (glob, number of files it matches)

    def __bool__(self) -> bool:
        return bool(self.paths or self.counts)

    def merged(self, other: Layout) -> Layout:
        return Layout(
            tuple(dict.fromkeys(self.paths + other.paths)),
            tuple(dict(self.counts + other.counts).items()),
        )


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset: where to get it, how to check it, what to do with it."""

    url: str
    name: str
    mirrors: tuple[str, ...] = ()
    digests: tuple[Digest, ...] = ()
    size: Optional[int] = None
    extract: Optional[bool] = None  # None: extract if the bytes are an archive
    dest: str = ""  # folder inside the staged dataset
    unpacked_size: Optional[int] = None
    strip_components: int = 0
    nested: tuple[str, ...] = ()  # archives inside this one (paths after stripping)
    extract_nested: bool = False  # every tar/zip/7z/rar found inside, recursively
    name_encoding: Optional[str] = None  # of archive member names not in UTF-8 (None: detect)
    parts: tuple[FileEntry, ...] = ()  # published split: these, joined in order, are this file
    # Where this run reads the bytes instead of ``urls`` (``get --from``: localcopy.py). Not
    # part of the entry's identity: the staging and the cache are the same whichever copy.
    source: str = field(default="", compare=False)

    @property
    def urls(self) -> tuple[str, ...]:
        """Where the bytes can be fetched: ``source`` alone when set, none for a gated file."""
        if self.source:
            return (self.source,)
        if self.url.startswith(NO_URL):
            return ()
        return (self.url, *self.mirrors)

    @property
    def has_url(self) -> bool:
        """The manifest gives a URL for this file (a gated or joined one has none of its own)."""
        return not self.url.startswith(NO_URL)

    @property
    def pinned(self) -> bool:
        return bool(self.digests)

    def digest(self, algorithm: str) -> Optional[Digest]:
        return next((d for d in self.digests if d.algorithm == algorithm), None)

    @property
    def layout(self) -> list[Any]:
        """Settings that shape the extracted tree; empty when default (keeps old keys stable)."""
        if not (self.strip_components or self.nested or self.extract_nested or self.name_encoding):
            return []
        shape = [self.strip_components, list(self.nested), self.extract_nested]
        return [*shape, self.name_encoding] if self.name_encoding else shape

    @property
    def identity(self) -> str:
        """What makes two entries the same bytes: the strongest digest, else the URL."""
        if self.digests:
            best = min(self.digests, key=lambda d: list(HEX_LENGTHS).index(d.algorithm))
            return str(best)
        return "url:" + self.url


@dataclass(frozen=True)
class Manifest:
    name: str
    files: tuple[FileEntry, ...]
    root: str = ""
    description: str = ""
    homepage: str = ""
    license: str = ""
    citation: str = ""
    version: str = ""
    path: Optional[Path] = field(default=None, compare=False)
    noncommercial: bool = False
    license_note: str = ""
    layout: Layout = Layout()
    subsets: tuple[Manifest, ...] = ()  # each addressable as "<name>/<subset>"
    subset: str = ""  # set on a subset: its name (``name`` is then "<dataset>-<subset>")
    dataset: str = ""  # set on a subset: the dataset it belongs to
    whole: bool = True  # a subset that is part of the whole dataset
    aliases: tuple[str, ...] = ()  # other names users know it by ("baker" for "bznsyp")
    # Task and language tags. A subset has its dataset's tags and its own; a dataset also has
    # those of its subsets (so `list --tag de` finds a multilingual corpus).
    tags: tuple[str, ...] = ()
    access: str = "public"  # "gated": some files have no URL; users register and use --from
    register: str = ""  # where to register for a gated dataset
    instructions: str = ""  # what to download there
    # How the user named it (a .toml path, a URL): what hints tell them to type again.
    typed: str = field(default="", compare=False)
    # A one-liner's --name as the user gave it: hints repeat it (else they stage elsewhere).
    typed_name: str = field(default="", compare=False)
    # A one-liner's archive: its single top folder (if it has one) is the root users get.
    detect_root: bool = False

    @property
    def gated(self) -> bool:
        return self.access == "gated"

    @property
    def address(self) -> str:
        """What users type: "librispeech" or "librispeech/train-clean-100"."""
        return f"{self.dataset}{SUBSET_SEPARATOR}{self.subset}" if self.subset else self.name

    @property
    def target(self) -> str:
        """What to type to get this manifest again: as the user typed it, else its address."""
        return self.typed or self.address

    def find_subset(self, wanted: str) -> Optional[Manifest]:
        """The subset called ``wanted`` ('_' and '-' and case are interchangeable)."""
        key = _subset_key(wanted)
        return next((s for s in self.subsets if _subset_key(s.subset) == key), None)

    @property
    def content_key(self) -> str:
        """Changes exactly when the staged tree would change (not for a new mirror or text)."""
        payload = {
            "root": self.root,
            "files": [[f.identity, f.name, f.dest, f.extract, *f.layout] for f in self.files],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    @property
    def total_size(self) -> Optional[int]:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)


def _subset_key(name: str) -> str:
    return name.lower().replace("_", "-")


def resolve_url(url: str, base: Path) -> str:
    """URLs stay as they are; a plain path is made absolute against the manifest's folder."""
    if URL_SCHEME.match(url):
        return url
    return str((base / user_path(url)).resolve())
