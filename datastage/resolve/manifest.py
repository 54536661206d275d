"""Dataset manifests: frozen dataclasses, loaded from TOML and validated before any network use.

Owns: the manifest schema, its validation (every error names the file and the key) and the
"content key" that says whether a staged copy still matches its manifest. This module loads a
manifest and is the name callers import; the parts are model.py (the schema as dataclasses),
validate.py (the Validator; name and URL checks) and tables.py (a reader per TOML table).
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

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from ..core import tomlio
from ..core.errors import ManifestError
from ..core.tomlio import tomllib  # authoring.py checks what it writes with it
from ..core.urls import check_url, file_name_from_url
from .model import (
    ACCESS_VALUES,
    FILE_KEYS,
    LAYOUT_KEYS,
    MAX_INT,
    MAX_NAME_BYTES,
    NAME_PATTERN,
    NO_URL,
    PART_KEYS,
    SUBSET_KEYS,
    SUBSET_SEPARATOR,
    TAG_PATTERN,
    TOP_KEYS,
    URL_SCHEME,
    FileEntry,
    Layout,
    Manifest,
    resolve_url,
)
from .tables import (
    merged,
    read_access,
    read_aliases,
    read_files,
    read_layout,
    read_subsets,
    read_tags,
    union,
)
from .validate import Validator, check_name

__all__ = [
    "ACCESS_VALUES",
    "FILE_KEYS",
    "LAYOUT_KEYS",
    "MAX_INT",
    "MAX_NAME_BYTES",
    "NAME_PATTERN",
    "NO_URL",
    "PART_KEYS",
    "SUBSET_KEYS",
    "SUBSET_SEPARATOR",
    "TAG_PATTERN",
    "TOP_KEYS",
    "URL_SCHEME",
    "FileEntry",
    "Layout",
    "Manifest",
    "check_name",
    "check_url",
    "file_name_from_url",
    "from_dict",
    "load",
    "resolve_url",
    "tomllib",
]


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
    v = Validator(where)
    v.known_keys(data, TOP_KEYS, "")
    name = v.string(data, "name", "", required=True)
    if name:
        v.folder_name(name, "name")
    base = source.parent if source else Path.cwd()
    access = read_access(v, data)
    v.gated, v.dataset = access[0] == "gated", name  # how tables reads entries without url
    files = v.attempt((), read_files, v, data, "", base, "subsets" not in data)
    root = v.relative_path(data, "root", "")
    text = {k: v.string(data, k, "") for k in ("description", "homepage", "license")}
    text |= {k: v.string(data, k, "") for k in ("citation", "version", "license_note")}
    noncommercial = bool(v.boolean(data, "noncommercial", ""))
    layout = v.attempt(Layout(), read_layout, v, data, "")
    licensing = (text["license"], noncommercial, text["license_note"])
    tags = read_tags(v, data, "")
    subsets = v.attempt((), read_subsets, v, data, base, name, root, licensing)
    subsets = _inheriting(subsets, source, text, tags, access)
    for sub in subsets:
        if sub.whole:
            files = union(files, sub.files)
            if sub.root == root:  # a layout is relative to its root
                layout = layout.merged(sub.layout)
    if not files and not v.problems:
        v.note("subsets", "every subset has whole = false: the whole dataset would be empty")
    for files_of_one in (files, *(sub.files for sub in subsets)):
        v.no_overlaps(files_of_one)
    aliases = tuple(read_aliases(v, data))
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
        tags=merged(tags, *(sub.tags for sub in subsets)),
        access=access[0],
        register=access[1],
        instructions=access[2],
    )


def _inheriting(
    subsets: tuple[Manifest, ...],
    source: Optional[Path],
    text: Mapping[str, str],
    tags: tuple[str, ...],
    access: tuple[str, str, str],
) -> tuple[Manifest, ...]:
    """The subsets with what they share with their dataset: file, links, tags and access."""
    return tuple(
        replace(
            sub,
            path=source,
            homepage=text["homepage"],
            citation=text["citation"],
            version=text["version"],
            tags=merged(tags, sub.tags),
            access=access[0],
            register=access[1],
            instructions=access[2],
        )
        for sub in subsets
    )
