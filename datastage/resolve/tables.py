"""The readers of a manifest's TOML tables (access, files, parts, layout, subsets, tags): each
turns raw TOML into model values and reports what is wrong through the ``Validator``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from ..core.digests import HEX_LENGTHS, Digest
from ..core.redact import remember
from ..core.urls import check_url, file_name_from_url
from .model import (
    ACCESS_VALUES,
    FILE_KEYS,
    LAYOUT_KEYS,
    MAX_INT,
    NAME_PATTERN,
    NO_URL,
    PART_KEYS,
    SUBSET_KEYS,
    TAG_PATTERN,
    FileEntry,
    Layout,
    Manifest,
)
from .validate import Validator, shown

PRINTED_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL, C1 (\x9b starts an escape)


def read_access(v: Validator, data: Mapping[str, Any]) -> tuple[str, str, str]:
    """``access``, ``register`` and ``instructions``: a gated dataset says where to register."""
    access = v.string(data, "access", "") or "public"
    if access not in ACCESS_VALUES:
        v.note("access", f"must be one of {', '.join(ACCESS_VALUES)}, got {shown(access)}")
        access = "public"
    register = v.string(data, "register", "")
    instructions = " ".join(v.string(data, "instructions", "").split())  # one hint line
    bad = PRINTED_CONTROL.search(instructions)
    if bad:  # printed in the hint: a terminal escape could clear the screen or hide text
        v.note("instructions", f"contains the control character {bad.group()!r}")
        instructions = ""
    if access == "gated" and not register:
        v.note(
            "register", 'missing: a gated dataset says where to register (register = "https://...")'
        )
    if register and not re.match(r"^https?://", register):
        v.note("register", f"must be an http(s) URL, got {shown(register)}")
    elif register:
        bad = PRINTED_CONTROL.search(register)  # check_url lets C1 (\x9b: an escape) through
        reason = check_url(register) or (bad and f"contains the control character {bad.group()!r}")
        if reason:
            v.note("register", reason)
    for key, value in (("register", register), ("instructions", instructions)):
        if value and access != "gated":
            v.note(key, 'only applies to access = "gated"')
    return access, register, instructions


def read_tags(v: Validator, table: Mapping[str, Any], prefix: str) -> tuple[str, ...]:
    """``tags = ["asr", "zh"]``: short lowercase words; a bad list is reported as a whole."""
    tags = v.string_list(table, "tags", prefix)
    bad = [t for t in tags if not TAG_PATTERN.match(t)]
    if bad:
        v.note(
            prefix + "tags",
            f"{shown(bad[0])} is not a tag (1-24 lowercase letters, digits, '-' or '+', "
            'e.g. "asr", "zh", "pt-br")',
        )
        return ()
    return tuple(dict.fromkeys(tags))


def merged(*groups: tuple[str, ...]) -> tuple[str, ...]:
    """Tags of several groups, each once, in order of first appearance."""
    return tuple(dict.fromkeys(t for group in groups for t in group))


def read_aliases(v: Validator, data: Mapping[str, Any]) -> list[str]:
    aliases = v.string_list(data, "aliases", "")
    for alias in aliases:
        if not NAME_PATTERN.match(alias):
            v.note("aliases", f"{shown(alias)} is not a valid name")
    return aliases


def read_files(
    v: Validator, table: Mapping[str, Any], prefix: str, base: Path, required: bool
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


def read_layout(v: Validator, table: Mapping[str, Any], prefix: str) -> Layout:
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
                f"{prefix}layout.counts.{pattern}", f"must be a whole number, got {shown(count)}"
            )
        else:
            good_counts[pattern] = count
    for pattern in [*paths, *good_counts]:
        if pattern.startswith(("/", "~")) or ".." in pattern.split("/") or "\x00" in pattern:
            v.note(prefix + "layout", f"{shown(pattern)} must be a glob relative to the root")
    return Layout(tuple(paths), tuple(good_counts.items()))


def read_subsets(
    v: Validator,
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
    v: Validator,
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
    files = v.attempt((), read_files, v, table, key, base, not includes)
    manifest = Manifest(
        name=f"{dataset}-{sub}",
        files=files,
        root=v.relative_path(table, "root", key) if "root" in table else root,
        description=v.string(table, "description", key),
        license=licensing[0],
        noncommercial=licensing[1],
        license_note=licensing[2],
        layout=v.attempt(Layout(), read_layout, v, table, key),
        path=None,
        subset=sub,
        dataset=dataset,
        whole=whole if whole is not None else not includes,
        tags=read_tags(v, table, key),
    )
    v.skip_if_new_problems(start)
    return manifest, includes


def _with_includes(
    v: Validator, sub: str, parsed: dict[str, tuple[Manifest, list[str]]]
) -> Manifest:
    manifest, includes = parsed[sub]
    files, layout, tags = manifest.files, manifest.layout, manifest.tags
    for other in includes:
        if other not in parsed or parsed[other][1]:
            v.fail(f"subsets.{sub}.includes", f"{shown(other)} is not a subset with its own files")
        files = union(files, parsed[other][0].files)
        layout = layout.merged(parsed[other][0].layout)
        tags = merged(tags, parsed[other][0].tags)
    return replace(manifest, files=files, layout=layout, tags=tags)


def union(files: tuple[FileEntry, ...], more: tuple[FileEntry, ...]) -> tuple[FileEntry, ...]:
    """``files`` then those of ``more`` not among them, in order. A set, not ``f not in files``:
    that compared every entry with every earlier one (10,000 + 10,000 files: a minute)."""
    seen = set(files)
    return files + tuple(f for f in more if f not in seen)


def _file_entry(v: Validator, raw: Any, key: str, base: Path) -> FileEntry:
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
    v: Validator, raw: Mapping[str, Any], key: str, base: Path, needed: bool
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


def _digests(v: Validator, raw: Mapping[str, Any], key: str) -> list[Digest]:
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


def _parts(v: Validator, raw: Mapping[str, Any], key: str, base: Path) -> tuple[FileEntry, ...]:
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
        v.note(key + ".parts", f"lists {shown(name)} more than once")
    return tuple(parts)


def _name_encoding(v: Validator, raw: Mapping[str, Any], prefix: str) -> Optional[str]:
    """``name_encoding = "gbk"``: a codec Python knows (extract/encodings.py uses it)."""
    value = v.string(raw, "name_encoding", prefix)
    if not value:
        return None
    import codecs

    try:
        return codecs.lookup(value).name
    except LookupError:
        v.fail(prefix + "name_encoding", f"unknown encoding {value!r} (e.g. gbk, cp932, cp866)")


def _nested_paths(v: Validator, raw: Mapping[str, Any], prefix: str) -> list[str]:
    paths = [
        v.relative_path({"nested": p}, "nested", prefix)  # same rules as dest
        for p in v.string_list(raw, "nested", prefix)
    ]
    if paths and raw.get("extract") is False:
        v.note(prefix + "nested", "cannot be used with extract = false")
    return paths


def _strip_components(v: Validator, raw: Mapping[str, Any], prefix: str) -> int:
    value = raw.get("strip_components", 0)
    if type(value) is not int or not 0 <= value <= MAX_INT:
        v.note(prefix + "strip_components", f"must be a whole number >= 0, got {shown(value)}")
        return 0
    return int(value)
