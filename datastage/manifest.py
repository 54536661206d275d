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
    noncommercial = true               # optional: warn on stderr before downloading
    license_note = "..."               # optional: shown with that warning
    [layout]                           # optional: checked after staging (a warning if it differs)
    paths = ["metadata.csv"]           # globs under the root that must match something
    counts = { "wavs/*.wav" = 13100 }  # globs under the root and how many files they match
    [subsets.<name>]                   # optional: addressed as "<name>/<subset>"; own files,
    files = [...]                      # root, layout, description; or includes = [<subsets>];
                                       # whole = false keeps it out of the whole dataset
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn, Optional
from urllib.parse import unquote, urlsplit

from .digests import HEX_LENGTHS, Digest
from .errors import ManifestError
from .names import archive_suffix

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

TOP_KEYS = {"name", "description", "homepage", "license", "citation", "version", "root", "files"}
TOP_KEYS |= {"noncommercial", "license_note", "layout", "subsets", "aliases"}
FILE_KEYS = {"url", "mirrors", "size", "extract", "name", "dest", "unpacked_size", *HEX_LENGTHS}
# pinned: a declaration (false = no confirmed digest, trust on first use); the others say how
# an archive is unpacked (extract/steps.py).
FILE_KEYS |= {"pinned", "strip_components", "nested", "extract_nested", "name_encoding"}
LAYOUT_KEYS = {"paths", "counts"}
SUBSET_KEYS = {"description", "root", "files", "includes", "whole", "layout"}
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

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.mirrors)

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

    @property
    def address(self) -> str:
        """What users type: "librispeech" or "librispeech/train-clean-100"."""
        return f"{self.dataset}{SUBSET_SEPARATOR}{self.subset}" if self.subset else self.name

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
    """Read and validate a manifest file; every problem is a one-line ManifestError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"manifest {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"manifest {path}: cannot read: {e}") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"manifest {path}: TOML syntax error: {e}") from e
    return from_dict(data, source=path)


def from_dict(data: Mapping[str, Any], source: Optional[Path] = None) -> Manifest:
    """Validate a parsed manifest; ``source`` names the file in errors, anchors relative paths."""
    where = f"manifest {source}" if source else "manifest"
    v = _Validator(where)
    v.known_keys(data, TOP_KEYS, "")
    name = v.string(data, "name", "", required=True)
    if not NAME_PATTERN.match(name):
        v.fail("name", f"{name!r} is not a valid name (lowercase letters, digits, '.', '_', '-')")
    base = source.parent if source else Path.cwd()
    files = _files(v, data, "", base, required="subsets" not in data)
    root = v.relative_path(data, "root", "")
    license_ = v.string(data, "license", "")
    noncommercial = bool(v.boolean(data, "noncommercial", ""))
    license_note = v.string(data, "license_note", "")
    layout = _layout(v, data, "")
    subsets = _subsets(v, data, base, name, root, (license_, noncommercial, license_note))
    homepage, citation = v.string(data, "homepage", ""), v.string(data, "citation", "")
    version = v.string(data, "version", "")
    subsets = tuple(
        replace(sub, path=source, homepage=homepage, citation=citation, version=version)
        for sub in subsets
    )
    for sub in subsets:
        if sub.whole:
            files += tuple(f for f in sub.files if f not in files)
            if sub.root == root:  # a layout is relative to its root
                layout = layout.merged(sub.layout)
    if not files:
        v.fail("subsets", "every subset has whole = false: the whole dataset would be empty")
    for files_of_one in (files, *(sub.files for sub in subsets)):
        v.no_overlaps(files_of_one)
    return Manifest(
        name=name,
        files=files,
        root=root,
        description=v.string(data, "description", ""),
        homepage=v.string(data, "homepage", ""),
        license=v.string(data, "license", ""),
        citation=v.string(data, "citation", ""),
        version=v.string(data, "version", ""),
        path=source,
        noncommercial=noncommercial,
        license_note=license_note,
        layout=layout,
        subsets=subsets,
        aliases=tuple(_aliases(v, data)),
    )


def _aliases(v: _Validator, data: Mapping[str, Any]) -> list[str]:
    aliases = v.string_list(data, "aliases", "")
    for alias in aliases:
        if not NAME_PATTERN.match(alias):
            v.fail("aliases", f"{alias!r} is not a valid name")
    return aliases


def _files(
    v: _Validator, table: Mapping[str, Any], prefix: str, base: Path, required: bool
) -> tuple[FileEntry, ...]:
    if "files" not in table and not required:
        return ()
    raw_files = table.get("files")
    if not isinstance(raw_files, list) or not raw_files:
        v.fail(prefix + "files", "needs at least one [[files]] entry")
    entries = []
    for i, raw in enumerate(raw_files):
        entry = _file_entry(v, raw, f"{prefix}files[{i}]", base)
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
        v.fail(prefix + "layout.counts", 'must be a table of glob = count, e.g. {"*.wav" = 3}')
    for pattern, count in counts.items():
        if type(count) is not int or count < 0:
            v.fail(f"{prefix}layout.counts.{pattern}", f"must be a whole number, got {count!r}")
    for pattern in [*paths, *counts]:
        if pattern.startswith(("/", "~")) or ".." in pattern.split("/"):
            v.fail(prefix + "layout", f"{pattern!r} must be a glob relative to the root")
    return Layout(tuple(paths), tuple(counts.items()))


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
        key = f"subsets.{sub}."
        if not NAME_PATTERN.match(sub):
            v.fail(key.rstrip("."), "not a valid subset name (lowercase letters, digits, . _ -)")
        if not isinstance(table, dict):
            v.fail(key.rstrip("."), "must be a table")
        v.known_keys(table, SUBSET_KEYS, key)
        includes = v.string_list(table, "includes", key)
        if ("files" in table) == bool(includes):
            v.fail(key + "files", "a subset needs either [[files]] or includes = [...]")
        whole = v.boolean(table, "whole", key)
        manifest = Manifest(
            name=f"{dataset}-{sub}",
            files=_files(v, table, key, base, required=not includes),
            root=v.relative_path(table, "root", key) if "root" in table else root,
            description=v.string(table, "description", key),
            license=licensing[0],
            noncommercial=licensing[1],
            license_note=licensing[2],
            layout=_layout(v, table, key),
            path=None,
            subset=sub,
            dataset=dataset,
            whole=whole if whole is not None else not includes,
        )
        parsed[sub] = (manifest, includes)
    return tuple(_with_includes(v, sub, parsed) for sub in parsed)


def _with_includes(
    v: _Validator, sub: str, parsed: dict[str, tuple[Manifest, list[str]]]
) -> Manifest:
    manifest, includes = parsed[sub]
    files, layout = manifest.files, manifest.layout
    for other in includes:
        if other not in parsed or parsed[other][1]:
            v.fail(f"subsets.{sub}.includes", f"{other!r} is not a subset with its own files")
        files += tuple(f for f in parsed[other][0].files if f not in files)
        layout = layout.merged(parsed[other][0].layout)
    return replace(manifest, files=files, layout=layout)


def _subset_key(name: str) -> str:
    return name.lower().replace("_", "-")


def _file_entry(v: _Validator, raw: Any, key: str, base: Path) -> FileEntry:
    if not isinstance(raw, dict):
        v.fail(key, "must be a table ([[files]])")
    v.known_keys(raw, FILE_KEYS, key + ".")
    url = resolve_url(v.string(raw, "url", key + ".", required=True), base)
    mirrors = tuple(resolve_url(m, base) for m in v.string_list(raw, "mirrors", key + "."))
    for where, each in [("url", url), *(("mirrors", m) for m in mirrors)]:
        v.served(each, f"{key}.{where}")
    digests = []
    for algorithm in HEX_LENGTHS:
        if algorithm in raw:
            try:
                digests.append(Digest.parse(v.string(raw, algorithm, key + "."), algorithm))
            except ValueError as e:
                v.fail(f"{key}.{algorithm}", str(e))
    pinned = v.boolean(raw, "pinned", key + ".")
    if pinned is False and digests:
        v.fail(f"{key}.pinned", "is false but the entry has a digest; drop one of them")
    if pinned and not digests:
        v.fail(f"{key}.pinned", "is true but the entry has no sha256/md5/sha1/sha512")
    # an explicit name = "" is a mistake, not a request for the default
    name = v.string(raw, "name", key + ".", required="name" in raw) or file_name_from_url(url)
    if not name or "/" in name or name in (".", ".."):
        v.fail(f"{key}.name", f'cannot use {name!r} as a file name; set name = "..."')
    return FileEntry(
        url=url,
        name=name,
        mirrors=mirrors,
        digests=tuple(digests),
        size=v.size(raw, "size", key + "."),
        extract=v.boolean(raw, "extract", key + "."),
        dest=v.relative_path(raw, "dest", key + "."),
        unpacked_size=v.size(raw, "unpacked_size", key + "."),
        strip_components=_strip_components(v, raw, key + "."),
        nested=tuple(_nested_paths(v, raw, key + ".")),
        extract_nested=v.boolean(raw, "extract_nested", key + ".") or False,
        name_encoding=_name_encoding(v, raw, key + "."),
    )


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
        v.fail(prefix + "nested", "cannot be used with extract = false")
    return paths


def _strip_components(v: _Validator, raw: Mapping[str, Any], prefix: str) -> int:
    value = raw.get("strip_components", 0)
    if type(value) is not int or value < 0:
        v.fail(prefix + "strip_components", f"must be a whole number >= 0, got {value!r}")
    return value


def _lands_as_itself(entry: FileEntry) -> bool:
    """Copied under its own name, not unpacked (no ``extract`` key: guessed from the name)."""
    return entry.extract is False or (entry.extract is None and not archive_suffix(entry.name))


def resolve_url(url: str, base: Path) -> str:
    """URLs stay as they are; a plain path is made absolute against the manifest's folder."""
    if URL_SCHEME.match(url):
        return url
    return str((base / Path(url).expanduser()).resolve())


def file_name_from_url(url: str) -> str:
    path = urlsplit(url).path if URL_SCHEME.match(url) else url
    return unquote(PurePosixPath(path).name)


class _Validator:
    """Typed getters that raise ManifestError naming the file and the key."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.keys: dict[int, str] = {}  # id(entry) -> where it was written, for messages

    def served(self, url: str, key: str) -> None:
        """Fail on a URL scheme no source serves (``htps://``), before any network use.

        Checked against the sources table, which lists the fsspec protocols datastage hands on
        whether or not fsspec is installed: a missing library is a MissingDependency with an
        install hint when the file is fetched, an unknown scheme is a mistake in the manifest.
        """
        from .sources import supported_schemes, url_scheme

        scheme = url_scheme(url)
        if scheme not in supported_schemes():
            known = ", ".join(sorted(supported_schemes()))
            self.fail(key, f"unsupported URL scheme {scheme!r} in {url} (supported: {known})")

    def no_overlaps(self, files: tuple[FileEntry, ...]) -> None:
        """Two entries may not land on one path, nor a copied file where a folder must be."""
        landed: dict[str, FileEntry] = {}
        for entry in files:
            if _lands_as_itself(entry):
                path = f"{entry.dest}/{entry.name}" if entry.dest else entry.name
                if path in landed:
                    self.fail(
                        self.keys[id(entry)],
                        f"lands on {path!r} like {self.keys[id(landed[path])]}; "
                        'give one of them another name = "..." or dest = "..."',
                    )
                landed[path] = entry
        for entry in files:
            parts = entry.dest.split("/") if entry.dest else []
            for depth in range(1, len(parts) + 1):  # each folder on the way: a dict lookup
                other = landed.get("/".join(parts[:depth]))
                if other is not None:
                    self.fail(
                        self.keys[id(entry)] + ".dest",
                        f"{entry.dest!r} is inside {'/'.join(parts[:depth])!r}, "
                        f"a file {self.keys[id(other)]} copies",
                    )

    def fail(self, key: str, reason: str) -> NoReturn:
        raise ManifestError(f"{self.where}: {key}: {reason}")

    def known_keys(self, table: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
        for k in table:
            if k not in allowed:
                close = difflib.get_close_matches(k, sorted(allowed), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(prefix + k, f"unknown key{hint}")

    def string(self, t: Mapping[str, Any], k: str, prefix: str, required: bool = False) -> str:
        if k not in t:
            if required:
                self.fail(prefix + k, "missing (required)")
            return ""
        if not isinstance(t[k], str) or (required and not t[k].strip()):
            self.fail(prefix + k, f"must be a non-empty string, got {t[k]!r}")
        return str(t[k])

    def string_list(self, t: Mapping[str, Any], k: str, prefix: str) -> list[str]:
        value = t.get(k, [])
        if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
            self.fail(prefix + k, f"must be a list of strings, got {value!r}")
        return list(value)

    def size(self, t: Mapping[str, Any], k: str, prefix: str) -> Optional[int]:
        value = t.get(k)
        if value is not None and (type(value) is not int or value < 0):
            self.fail(prefix + k, f"must be a whole number of bytes, got {value!r}")
        return value

    def boolean(self, t: Mapping[str, Any], k: str, prefix: str) -> Optional[bool]:
        value = t.get(k)
        if value is not None and not isinstance(value, bool):
            self.fail(prefix + k, f"must be true or false, got {value!r}")
        return value

    def relative_path(self, t: Mapping[str, Any], k: str, prefix: str) -> str:
        value = self.string(t, k, prefix)
        parts = value.replace("\\", "/").rstrip("/").split("/") if value else []
        if value.startswith(("/", "\\", "~")) or any(p in ("", ".", "..") for p in parts):
            self.fail(
                prefix + k, f"must be a plain relative path inside the dataset, got {value!r}"
            )
        return "/".join(parts)
