"""File-name conventions shared by the modules that name things: which suffixes mark an archive,
and which names datastage keeps for itself inside a staged folder.

Owns: the list of archive suffixes and stripping one from a name; the reserved record
names. Suffixes derive dataset names (direct.py, authoring.py, folders.py) and, in
manifest.py, guess whether an entry with no ``extract`` key will be unpacked (the bytes decide
at staging time; the name is the guess).
"""

from __future__ import annotations

#: The completion marker, written last (stage.py).
MARKER = ".datastage.json"
#: The per-file record the marker vouches for by size and sha256 (stage.py).
FILE_LIST = ".datastage-files.json"
#: Top-level names of every staged folder that belong to datastage: an archive member of such a
#: name is left out (a file) or refused (a folder); `stage SRC` never copies them. The last one
#: is an earlier build's damage note, still kept out of datasets.
RESERVED_NAMES = frozenset({MARKER, FILE_LIST, ".datastage-damaged"})

# Compound suffixes first, so "x.tar.gz" loses ".tar.gz", not just ".gz".
ARCHIVE_SUFFIXES = (
    *(".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst", ".tgz", ".tbz2", ".txz", ".tar"),
    *(".tar.lz4", ".tar.lz", ".tar.lzma", ".tar.z", ".tar.lzo"),  # read through bsdtar
    *(".tlz", ".tbz", ".cpio.z", ".cpio.lzma", ".iso.z", ".iso.lzma"),
    *(".cpio", ".iso", ".xar", ".lha", ".lzh", ".cab", ".warc"),
    *(".zip", ".7z", ".rar", ".gz", ".bz2", ".xz", ".zst"),
)


def archive_suffix(name: str) -> str:
    """The archive suffix ``name`` ends with (lowercase), or "" (a bare suffix is no archive)."""
    lowered = name.lower()
    return next((s for s in ARCHIVE_SUFFIXES if lowered.endswith(s) and len(lowered) > len(s)), "")


def strip_archive_suffix(name: str) -> str:
    """``LJSpeech-1.1.tar.bz2`` -> ``LJSpeech-1.1``; other names unchanged."""
    suffix = archive_suffix(name)
    return name[: -len(suffix)] if suffix else name
