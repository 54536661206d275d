"""Dataset manifests: frozen dataclasses, loaded from TOML and validated before any network use.

Owns: the manifest schema, its validation (every error names the file and the key) and the
"content key" that says whether a staged copy still matches its manifest.
Does not own: finding manifests by name (registry.py) or acting on them (api.py).

    name = "tiny"                      # [a-z0-9][a-z0-9._-]*
    root = "tiny-1.0"                  # optional: the folder inside the archive to hand to users
    [[files]]
    url = "https://example.org/tiny.tar.gz"   # or a path, relative to the manifest's folder
    mirrors = ["https://mirror.example/tiny.tar.gz"]
    sha256 = "<64 hex>"                # or md5 / sha1 / sha512 (several allowed)
    size = 12345                       # optional, bytes
    extract = false                    # optional; archives are extracted by default
    strip_components = 1               # optional: drop leading folders of every member
    nested = ["inner.zip"]             # optional: archives inside it to extract in turn
    extract_nested = true              # optional: ... or every archive found inside it
    pinned = false                     # optional: says "no confirmed digest" (trust on first use)

    aliases = ["baker"]                # optional: other names that find this manifest
    tags = ["tts", "zh"]               # optional: task and language codes (list --tag, search)
    noncommercial = true               # optional: warn on stderr before downloading
    license_note = "..."               # optional: shown with that warning
    [layout]                           # optional: checked after staging (a warning if it differs)
    paths = ["metadata.csv"]           # globs under the root that must match something
    counts = { "wavs/*.wav" = 13100 }  # globs under the root and how many files they match
    [subsets.<name>]                   # optional: addressed as "<name>/<subset>"; own files,
    files = [...]                      # root, layout, description; or includes = [<subsets>];
                                       # whole = false keeps it out of the whole dataset;
                                       # tags = [...] adds to the dataset's tags

    access = "gated"                   # optional: files may have no url (registration needed);
    register = "https://..."           # where users register (required when gated)
    instructions = "..."               # optional: what to download there
    [[files]]
    name = "vox1_dev_wav.zip"          # a gated file: a name, no url (`get --from DIR` finds it)
    md5 = "..."
    parts = [{ name = "vox1_dev_wav_partaa", md5 = "..." }, ...]   # optional: published split;
                                       # each part has name/url/mirrors/size/digests; joined in
                                       # order, then verified as this entry (parts.py)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, TypeVar, Union

from ..core import tomlio
from ..core.digests import HEX_LENGTHS, Digest
from ..core.errors import InvalidManifest, ManifestError
from ..core.fsutil import user_path
from ..core.names import archive_suffix
from ..core.redact import remember
from ..core.tomlio import tomllib  # noqa: F401 - authoring.py checks what it writes with it
from ..core.urls import URL_SCHEME, check_url, file_name_from_url

T = TypeVar("T")
D = TypeVar("D")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*\Z")  # \Z: "name\n" is not a name
MAX_NAME_BYTES = 255  # one path component on Linux file systems
MAX_INT = 2**63 - 1  # sizes and counts beyond it describe no real file
_PRINTED_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL, C1 (\x9b starts an escape)

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


def load(path: Path) -> Manifest:
    """Read and validate a manifest file; every problem is a ManifestError naming the file."""
    try:
        raw = tomlio.read(path)
    except FileNotFoundError:
        raise ManifestError(f"manifest {path}: no such file") from None
    except OSError as e:
        raise ManifestError(f"manifest {path}: cannot read: {e.strerror or e}") from e
    except tomlio.BadTOML as e:
        raise ManifestError(f"manifest {path}: cannot read: {e}") from None
    try:
        text = tomlio.decode(raw)
    except tomlio.BadTOML as e:
        raise ManifestError(f"manifest {path}: cannot read: {e}") from None
    try:
        data = tomlio.loads(text)
    except tomlio.BadTOML as e:
        raise ManifestError(f"manifest {path}: {e}") from None
    return from_dict(data, source=path)


def from_dict(data: Mapping[str, Any], source: Optional[Path] = None) -> Manifest:
    """Validate a parsed manifest; ``source`` names the file in errors, anchors relative paths.

    Every problem is collected, then raised together (InvalidManifest), so a manifest is fixed
    in one round; a value that is wrong is left out, so one mistake is not reported twice.
    """
    where = f"manifest {source}" if source else "manifest"
    v = _Validator(where)
    v.known_keys(data, TOP_KEYS, "")
    name = v.string(data, "name", "", required=True)
    if name:
        v.folder_name(name, "name")
    base = source.parent if source else Path.cwd()
    access = _access(v, data)
    v.gated, v.dataset = access[0] == "gated", name  # how _file_entry reads entries without url
    files = v.attempt((), _files, v, data, "", base, "subsets" not in data)
    root = v.relative_path(data, "root", "")
    text = {k: v.string(data, k, "") for k in ("description", "homepage", "license")}
    text |= {k: v.string(data, k, "") for k in ("citation", "version", "license_note")}
    noncommercial = bool(v.boolean(data, "noncommercial", ""))
    layout = v.attempt(Layout(), _layout, v, data, "")
    licensing = (text["license"], noncommercial, text["license_note"])
    tags = _tags(v, data, "")
    subsets = v.attempt((), _subsets, v, data, base, name, root, licensing)
    subsets = tuple(
        replace(
            sub,
            path=source,
            homepage=text["homepage"],
            citation=text["citation"],
            version=text["version"],
            tags=_merged(tags, sub.tags),
            access=access[0],
            register=access[1],
            instructions=access[2],
        )
        for sub in subsets
    )
    for sub in subsets:
        if sub.whole:
            files = _union(files, sub.files)
            if sub.root == root:  # a layout is relative to its root
                layout = layout.merged(sub.layout)
    if not files and not v.problems:
        v.note("subsets", "every subset has whole = false: the whole dataset would be empty")
    for files_of_one in (files, *(sub.files for sub in subsets)):
        v.no_overlaps(files_of_one)
    aliases = tuple(_aliases(v, data))
    v.raise_problems()
    return Manifest(
        name=name,
        files=files,
        root=root,
        description=text["description"],
        homepage=text["homepage"],
        license=text["license"],
        citation=text["citation"],
        version=text["version"],
        path=source,
        noncommercial=noncommercial,
        license_note=text["license_note"],
        layout=layout,
        subsets=subsets,
        aliases=aliases,
        tags=_merged(tags, *(sub.tags for sub in subsets)),
        access=access[0],
        register=access[1],
        instructions=access[2],
    )


def _access(v: _Validator, data: Mapping[str, Any]) -> tuple[str, str, str]:
    """``access``, ``register`` and ``instructions``: a gated dataset says where to register."""
    access = v.string(data, "access", "") or "public"
    if access not in ACCESS_VALUES:
        v.note("access", f"must be one of {', '.join(ACCESS_VALUES)}, got {_shown(access)}")
        access = "public"
    register = v.string(data, "register", "")
    instructions = " ".join(v.string(data, "instructions", "").split())  # one hint line
    bad = _PRINTED_CONTROL.search(instructions)
    if bad:  # printed in the hint: a terminal escape could clear the screen or hide text
        v.note("instructions", f"contains the control character {bad.group()!r}")
        instructions = ""
    if access == "gated" and not register:
        v.note(
            "register", 'missing: a gated dataset says where to register (register = "https://...")'
        )
    if register and not re.match(r"^https?://", register):
        v.note("register", f"must be an http(s) URL, got {_shown(register)}")
    elif register:
        bad = _PRINTED_CONTROL.search(register)  # check_url lets C1 (\x9b: an escape) through
        reason = check_url(register) or (bad and f"contains the control character {bad.group()!r}")
        if reason:
            v.note("register", reason)
    for key, value in (("register", register), ("instructions", instructions)):
        if value and access != "gated":
            v.note(key, 'only applies to access = "gated"')
    return access, register, instructions


def check_name(name: str) -> Optional[str]:
    """Why ``name`` cannot name a dataset (its folder), or None; for --name and manifests."""
    if not NAME_PATTERN.match(name):
        return f"{_shown(name)} is not a valid name (lowercase letters, digits, '.', '_', '-')"
    if len(name) > MAX_NAME_BYTES:
        return f"is too long ({len(name)} characters; a folder name holds at most {MAX_NAME_BYTES})"
    return None


def _tags(v: _Validator, table: Mapping[str, Any], prefix: str) -> tuple[str, ...]:
    """``tags = ["asr", "zh"]``: short lowercase words; a bad list is reported as a whole."""
    tags = v.string_list(table, "tags", prefix)
    bad = [t for t in tags if not TAG_PATTERN.match(t)]
    if bad:
        v.note(
            prefix + "tags",
            f"{_shown(bad[0])} is not a tag (1-24 lowercase letters, digits, '-' or '+', "
            'e.g. "asr", "zh", "pt-br")',
        )
        return ()
    return tuple(dict.fromkeys(tags))


def _merged(*groups: tuple[str, ...]) -> tuple[str, ...]:
    """Tags of several groups, each once, in order of first appearance."""
    return tuple(dict.fromkeys(t for group in groups for t in group))


def _aliases(v: _Validator, data: Mapping[str, Any]) -> list[str]:
    aliases = v.string_list(data, "aliases", "")
    for alias in aliases:
        if not NAME_PATTERN.match(alias):
            v.note("aliases", f"{_shown(alias)} is not a valid name")
    return aliases


def _files(
    v: _Validator, table: Mapping[str, Any], prefix: str, base: Path, required: bool
) -> tuple[FileEntry, ...]:
    """The valid entries of ``files``; each invalid one is reported and left out."""
    if "files" not in table and not required:
        return ()
    raw_files = table.get("files")
    if not isinstance(raw_files, list) or not raw_files:
        v.fail(prefix + "files", "needs at least one [[files]] entry")
    entries = []
    for i, raw in enumerate(raw_files):
        entry = v.attempt(None, _file_entry, v, raw, f"{prefix}files[{i}]", base)
        if entry is not None:
            v.keys[id(entry)] = f"{prefix}files[{i}]"
            entries.append(entry)
    return tuple(entries)


def _layout(v: _Validator, table: Mapping[str, Any], prefix: str) -> Layout:
    raw = table.get("layout", {})
    if not isinstance(raw, dict):
        v.fail(prefix + "layout", "must be a table ([layout])")
    v.known_keys(raw, LAYOUT_KEYS, prefix + "layout.")
    paths = v.string_list(raw, "paths", prefix + "layout.")
    counts = raw.get("counts", {})
    if not isinstance(counts, dict):
        v.note(prefix + "layout.counts", 'must be a table of glob = count, e.g. {"*.wav" = 3}')
        counts = {}
    good_counts = {}
    for pattern, count in counts.items():
        if type(count) is not int or not 0 <= count <= MAX_INT:
            v.note(
                f"{prefix}layout.counts.{pattern}", f"must be a whole number, got {_shown(count)}"
            )
        else:
            good_counts[pattern] = count
    for pattern in [*paths, *good_counts]:
        if pattern.startswith(("/", "~")) or ".." in pattern.split("/") or "\x00" in pattern:
            v.note(prefix + "layout", f"{_shown(pattern)} must be a glob relative to the root")
    return Layout(tuple(paths), tuple(good_counts.items()))


def _subsets(
    v: _Validator,
    data: Mapping[str, Any],
    base: Path,
    dataset: str,
    root: str,
    licensing: tuple[str, bool, str],
) -> tuple[Manifest, ...]:
    """Subsets inherit root and licensing; ``includes`` makes a union of other subsets."""
    raw = data.get("subsets", {})
    if not isinstance(raw, dict) or ("subsets" in data and not raw):
        v.fail("subsets", "must be a table of [subsets.<name>] tables")
    parsed: dict[str, tuple[Manifest, list[str]]] = {}
    for sub, table in raw.items():
        one = v.attempt(None, _subset, v, sub, table, base, dataset, root, licensing)
        if one is not None:
            parsed[sub] = one
    subsets = (v.attempt(None, _with_includes, v, sub, parsed) for sub in parsed)
    return tuple(s for s in subsets if s is not None)


def _subset(
    v: _Validator,
    sub: str,
    table: Any,
    base: Path,
    dataset: str,
    root: str,
    licensing: tuple[str, bool, str],
) -> tuple[Manifest, list[str]]:
    key = f"subsets.{sub}."
    start = len(v.problems)
    if not NAME_PATTERN.match(sub):
        v.note(key.rstrip("."), "not a valid subset name (lowercase letters, digits, . _ -)")
    elif dataset:
        v.folder_name(f"{dataset}-{sub}", key.rstrip("."))
    if not isinstance(table, dict):
        v.fail(key.rstrip("."), "must be a table")
    v.known_keys(table, SUBSET_KEYS, key)
    includes = v.string_list(table, "includes", key)
    if ("files" in table) == bool(includes):
        v.note(key + "files", "a subset needs either [[files]] or includes = [...]")
    whole = v.boolean(table, "whole", key)
    files = v.attempt((), _files, v, table, key, base, not includes)
    manifest = Manifest(
        name=f"{dataset}-{sub}",
        files=files,
        root=v.relative_path(table, "root", key) if "root" in table else root,
        description=v.string(table, "description", key),
        license=licensing[0],
        noncommercial=licensing[1],
        license_note=licensing[2],
        layout=v.attempt(Layout(), _layout, v, table, key),
        path=None,
        subset=sub,
        dataset=dataset,
        whole=whole if whole is not None else not includes,
        tags=_tags(v, table, key),
    )
    v.skip_if_new_problems(start)
    return manifest, includes


def _with_includes(
    v: _Validator, sub: str, parsed: dict[str, tuple[Manifest, list[str]]]
) -> Manifest:
    manifest, includes = parsed[sub]
    files, layout, tags = manifest.files, manifest.layout, manifest.tags
    for other in includes:
        if other not in parsed or parsed[other][1]:
            v.fail(f"subsets.{sub}.includes", f"{_shown(other)} is not a subset with its own files")
        files = _union(files, parsed[other][0].files)
        layout = layout.merged(parsed[other][0].layout)
        tags = _merged(tags, parsed[other][0].tags)
    return replace(manifest, files=files, layout=layout, tags=tags)


def _union(files: tuple[FileEntry, ...], more: tuple[FileEntry, ...]) -> tuple[FileEntry, ...]:
    """``files`` then those of ``more`` not among them, in order. A set, not ``f not in files``:
    that compared every entry with every earlier one (10,000 + 10,000 files: a minute)."""
    seen = set(files)
    return files + tuple(f for f in more if f not in seen)


def _subset_key(name: str) -> str:
    return name.lower().replace("_", "-")


def _file_entry(v: _Validator, raw: Any, key: str, base: Path) -> FileEntry:
    """One ``[[files]]`` table; every problem in it is reported, then the entry is skipped."""
    if not isinstance(raw, dict):
        v.fail(key, "must be a table ([[files]])")
    start = len(v.problems)
    v.known_keys(raw, FILE_KEYS, key + ".")
    parts = _parts(v, raw, key, base)
    url, mirrors = _url_and_mirrors(v, raw, key, base, needed=not parts and not v.gated)
    if parts and (url or mirrors):
        v.note(key + ".parts", "cannot be used with url or mirrors (the parts are the file)")
    size = v.size(raw, "size", key + ".")
    part_sizes = [p.size for p in parts]
    if parts and size is not None and None not in part_sizes:
        total = sum(s for s in part_sizes if s is not None)
        if total != size:
            v.note(key + ".parts", f"sizes add up to {total} bytes, but size = {size}")
    if v.gated and not parts and "url" not in raw and "name" not in raw:
        v.note(key + ".name", "missing (required for a file without url)")
    digests = _digests(v, raw, key)
    pinned = v.boolean(raw, "pinned", key + ".")
    if pinned is False and digests:
        v.note(f"{key}.pinned", "is false but the entry has a digest; drop one of them")
    if pinned and not digests and not any(a in raw for a in HEX_LENGTHS):
        v.note(f"{key}.pinned", "is true but the entry has no sha256/md5/sha1/sha512")
    # an explicit name = "" is a mistake, not a request for the default
    if "name" in raw:
        name = v.string(raw, "name", key + ".", required=True)
    else:
        name = file_name_from_url(url) if url else ""
    if name or (url and "name" not in raw):
        v.file_name(name, f"{key}.name")
    entry = FileEntry(
        url=url or f"{NO_URL}{v.dataset}/{name}",
        name=name,
        mirrors=mirrors,
        digests=tuple(digests),
        size=size,
        extract=v.boolean(raw, "extract", key + "."),
        dest=v.relative_path(raw, "dest", key + "."),
        unpacked_size=v.size(raw, "unpacked_size", key + "."),
        strip_components=_strip_components(v, raw, key + "."),
        nested=tuple(_nested_paths(v, raw, key + ".")),
        extract_nested=v.boolean(raw, "extract_nested", key + ".") or False,
        name_encoding=_name_encoding(v, raw, key + "."),
        parts=parts,
    )
    v.skip_if_new_problems(start)
    return entry


def _url_and_mirrors(
    v: _Validator, raw: Mapping[str, Any], key: str, base: Path, needed: bool
) -> tuple[str, tuple[str, ...]]:
    """``url`` (required unless ``needed`` is False: gated, or joined from parts) and mirrors."""
    url = v.url(v.string(raw, "url", key + ".", required=needed), base, key + ".url")
    mirrors = tuple(
        v.url(m, base, key + ".mirrors") for m in v.string_list(raw, "mirrors", key + ".")
    )
    if mirrors and "url" not in raw:
        v.note(key + ".mirrors", "needs a url (mirrors are other places for the same file)")
    remember(url, *mirrors)  # their secrets are masked in every message from now on
    return url, mirrors


def _digests(v: _Validator, raw: Mapping[str, Any], key: str) -> list[Digest]:
    digests = []
    for algorithm in HEX_LENGTHS:
        if algorithm in raw:
            text = v.string(raw, algorithm, key + ".")
            try:
                digests.append(Digest.parse(text, algorithm))
            except ValueError as e:
                if text:  # a wrong type was already reported
                    v.note(f"{key}.{algorithm}", str(e))
    return digests


def _parts(v: _Validator, raw: Mapping[str, Any], key: str, base: Path) -> tuple[FileEntry, ...]:
    """``parts = [{name, url?, mirrors?, size?, md5/sha256/...?}, ...]``: each part is fetched
    (or found under --from by its name) and checked on its own, then they are joined."""
    if "parts" not in raw:
        return ()
    value = raw["parts"]
    if not isinstance(value, list) or not value:
        v.fail(key + ".parts", "must be a non-empty list of tables ({ name = ..., md5 = ... })")
    if "name" not in raw:
        v.note(key + ".name", "missing (required with parts: the joined file's name)")
    parts = []
    for i, table in enumerate(value):
        where = f"{key}.parts[{i}]"
        if not isinstance(table, dict):
            v.note(where, "must be a table ({ name = ..., md5 = ... })")
            continue
        v.known_keys(table, PART_KEYS, where + ".")
        url, mirrors = _url_and_mirrors(v, table, where, base, needed=not v.gated)
        name = v.string(table, "name", where + ".", required=not url)
        name = name or (file_name_from_url(url) if url else "")
        if name or url:
            v.file_name(name, where + ".name")
        parts.append(
            FileEntry(
                url=url or f"{NO_URL}{v.dataset}/{name}",
                name=name,
                mirrors=mirrors,
                digests=tuple(_digests(v, table, where)),
                size=v.size(table, "size", where + "."),
                extract=False,
            )
        )
    names = [p.name for p in parts]
    for name in {n for n in names if names.count(n) > 1}:
        v.note(key + ".parts", f"lists {_shown(name)} more than once")
    return tuple(parts)


def _name_encoding(v: _Validator, raw: Mapping[str, Any], prefix: str) -> Optional[str]:
    """``name_encoding = "gbk"``: a codec Python knows (extract/encodings.py uses it)."""
    value = v.string(raw, "name_encoding", prefix)
    if not value:
        return None
    import codecs

    try:
        return codecs.lookup(value).name
    except LookupError:
        v.fail(prefix + "name_encoding", f"unknown encoding {value!r} (e.g. gbk, cp932, cp866)")


def _nested_paths(v: _Validator, raw: Mapping[str, Any], prefix: str) -> list[str]:
    paths = [
        v.relative_path({"nested": p}, "nested", prefix)  # same rules as dest
        for p in v.string_list(raw, "nested", prefix)
    ]
    if paths and raw.get("extract") is False:
        v.note(prefix + "nested", "cannot be used with extract = false")
    return paths


def _strip_components(v: _Validator, raw: Mapping[str, Any], prefix: str) -> int:
    value = raw.get("strip_components", 0)
    if type(value) is not int or not 0 <= value <= MAX_INT:
        v.note(prefix + "strip_components", f"must be a whole number >= 0, got {_shown(value)}")
        return 0
    return int(value)


def _lands_as_itself(entry: FileEntry) -> bool:
    """Copied under its own name, not unpacked (no ``extract`` key: guessed from the name)."""
    return entry.extract is False or (entry.extract is None and not archive_suffix(entry.name))


def resolve_url(url: str, base: Path) -> str:
    """URLs stay as they are; a plain path is made absolute against the manifest's folder."""
    if URL_SCHEME.match(url):
        return url
    return str((base / user_path(url)).resolve())


class _Skip(Exception):
    """Raised after a problem was recorded: abandons the value being read, not the manifest."""


class _Validator:
    """Typed getters that record problems (file and key) and return a harmless default.

    ``note`` records a problem; ``fail`` records one and abandons the current value (an entry,
    a subset) through ``attempt``; ``raise_problems`` raises them all as one InvalidManifest.
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.gated = False  # access = "gated": a file may have no url
        self.dataset = ""  # the manifest's name: keys entries without url (NO_URL)
        self.problems: list[tuple[str, str]] = []  # (key, reason), in the order found
        self._noted: set[tuple[str, str]] = set()  # the same, to skip repeats in O(1)
        self.keys: dict[int, str] = {}  # id(entry) -> where it was written, for messages

    # -- collecting ---------------------------------------------------------------------------
    def note(self, key: str, reason: str) -> None:
        key, reason = _cut(key), _cut(reason)
        if (key, reason) not in self._noted:  # a list scan here made 30,000 problems take 20 s
            self._noted.add((key, reason))
            self.problems.append((key, reason))

    def fail(self, key: str, reason: str) -> NoReturn:
        self.note(key, reason)
        raise _Skip

    def attempt(self, default: D, read: Callable[..., T], *args: Any) -> Union[T, D]:
        """``read(*args)``, or ``default`` when it abandoned its value (the problem is recorded)."""
        try:
            return read(*args)
        except _Skip:
            return default

    def skip_if_new_problems(self, start: int) -> None:
        """Leave out a value that had problems, so later checks do not report it again."""
        if len(self.problems) > start:
            raise _Skip

    def raise_problems(self) -> None:
        if self.problems:
            raise InvalidManifest(self.where, self.problems)

    # -- checks ---------------------------------------------------------------------------------
    def url(self, text: str, base: Path, key: str) -> str:
        """A checked URL (a plain path made absolute against ``base``), or "" after a problem."""
        if not text:
            return ""
        reason = check_url(text) or self.served(text)
        if reason:
            self.note(key, reason)
            return ""
        return resolve_url(text, base)

    def served(self, url: str) -> Optional[str]:
        """A URL scheme no source serves (``htps://``) is a mistake in the manifest.

        Checked against the sources table, which lists the fsspec protocols datastage hands on
        whether or not fsspec is installed: a missing library is a MissingDependency with an
        install hint when the file is fetched, an unknown scheme is a mistake in the manifest.
        """
        from ..sources import supported_schemes, url_scheme

        scheme = url_scheme(url)
        if scheme not in supported_schemes():
            known = ", ".join(sorted(supported_schemes()))
            return f"unsupported URL scheme {_shown(scheme)} in {_shown(url)} (supported: {known})"
        return None

    def folder_name(self, name: str, key: str) -> None:
        reason = check_name(name)
        if reason:
            self.note(key, reason)

    def file_name(self, name: str, key: str) -> None:
        if not name or "/" in name or name in (".", "..") or "\x00" in name:
            self.note(key, f'cannot use {_shown(name)} as a file name; set name = "..."')
        elif _too_long(name):
            self.note(
                key, f"{_shown(name)} is longer than a file name may be ({MAX_NAME_BYTES} bytes)"
            )

    def no_overlaps(self, files: tuple[FileEntry, ...]) -> None:
        """Two entries may not land on one path, nor a copied file where a folder must be."""
        landed: dict[str, FileEntry] = {}
        for entry in files:
            if _lands_as_itself(entry):
                path = f"{entry.dest}/{entry.name}" if entry.dest else entry.name
                if path in landed:
                    self.note(
                        self.keys[id(entry)],
                        f"lands on {_shown(path)} like {self.keys[id(landed[path])]}; "
                        'give one of them another name = "..." or dest = "..."',
                    )
                    continue
                landed[path] = entry
        for entry in files:
            parts = entry.dest.split("/") if entry.dest else []
            for depth in range(1, len(parts) + 1):  # each folder on the way: a dict lookup
                other = landed.get("/".join(parts[:depth]))
                if other is not None:
                    self.note(
                        self.keys[id(entry)] + ".dest",
                        f"{_shown(entry.dest)} is inside {_shown('/'.join(parts[:depth]))}, "
                        f"a file {self.keys[id(other)]} copies",
                    )
                    break

    def known_keys(self, table: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
        for k in table:
            if k not in allowed:
                close = difflib.get_close_matches(k, sorted(allowed), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.note(prefix + k, f"unknown key{hint}")

    # -- typed getters: a wrong value is recorded and read as the default ---------------------
    def string(self, t: Mapping[str, Any], k: str, prefix: str, required: bool = False) -> str:
        if k not in t:
            if required:
                self.note(prefix + k, "missing (required)")
            return ""
        value = t[k]
        if not isinstance(value, str) or (required and not value.strip()):
            self.note(prefix + k, f"must be a non-empty string, got {_shown(value)}")
            return ""
        if "\x00" in value:
            self.note(prefix + k, f"contains a NUL character: {_shown(value)}")
            return ""
        return value

    def string_list(self, t: Mapping[str, Any], k: str, prefix: str) -> list[str]:
        value = t.get(k, [])
        if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
            self.note(prefix + k, f"must be a list of strings, got {_shown(value)}")
            return []
        if any("\x00" in x for x in value):
            self.note(prefix + k, f"contains a NUL character: {_shown(value)}")
            return []
        return list(value)

    def size(self, t: Mapping[str, Any], k: str, prefix: str) -> Optional[int]:
        value = t.get(k)
        if value is not None and (type(value) is not int or not 0 <= value <= MAX_INT):
            self.note(prefix + k, f"must be a whole number of bytes, got {_shown(value)}")
            return None
        return value

    def boolean(self, t: Mapping[str, Any], k: str, prefix: str) -> Optional[bool]:
        value = t.get(k)
        if value is not None and not isinstance(value, bool):
            self.note(prefix + k, f"must be true or false, got {_shown(value)}")
            return None
        return value

    def relative_path(self, t: Mapping[str, Any], k: str, prefix: str) -> str:
        value = self.string(t, k, prefix)
        parts = value.replace("\\", "/").rstrip("/").split("/") if value else []
        if value.startswith(("/", "\\", "~")) or any(p in ("", ".", "..") for p in parts):
            self.note(
                prefix + k,
                f"must be a plain relative path inside the dataset, got {_shown(value)}",
            )
            return ""
        if any(_too_long(p) for p in parts):
            self.note(
                prefix + k, f"has a part longer than a file name may be ({MAX_NAME_BYTES} bytes)"
            )
            return ""
        return "/".join(parts)


def _too_long(name: str) -> bool:
    """Longer than one path component may be (255 bytes on Linux file systems)."""
    try:  # a name listed from a local folder keeps its non-UTF-8 bytes as surrogate escapes
        size = len(name.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        size = len(name.encode("utf-8", "surrogatepass"))
    return size > MAX_NAME_BYTES


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlist = _REPR.maxdict = 4
_REPR.maxlevel = 2


def _cut(text: str, limit: int = 300) -> str:
    """A key or reason of readable length (a digest library may quote a megabyte value)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value: Any) -> str:
    """``repr(value)`` cut to a readable length: error lines quote values, never megabytes."""
    return _REPR.repr(value)
