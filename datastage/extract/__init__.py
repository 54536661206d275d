"""Archive formats, detected from their bytes, and safe extraction into a folder of ours.

Owns: recognising tar (plain/gz/bz2/xz/zst), zip, 7z, RAR and single compressed files
(gz/bz2/xz/zst) by magic bytes; what each declares it unpacks to; dispatching to the module
for its family. Every family writes through ``SafeWriter`` (writer.py), which holds the safety
rules and records each file's size and sha256 for the completion marker.
Does not own: where the root is or when it becomes visible (stage/staging.py).

    extract/
      writer.py    SafeWriter: safety rules, size budget, parallel write + hash
      streams.py   gz/bz2/xz/zst decompressors (parallel where possible), any file object
      tarfmt.py    tar.* as a one-pass stream       zipfmt.py   zip, members in parallel
      sevenz.py    7z and RAR back ends              external.py system tools, held to the rules
"""

from __future__ import annotations

import contextlib
import errno
import struct
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Optional

from ..core.errors import (
    ArchiveError,
    CorruptArchive,
    MissingDependency,
    UnsupportedArchive,
    raised_in,
)
from ..core.text import one_line
from .streams import DECOMPRESSION_ERRORS, decompressed
from .writer import SafeWriter, SizeBudget

__all__ = [
    "Format",
    "SafeWriter",
    "SizeBudget",
    "declared_size",
    "detect",
    "extract",
    "extract_stream",
    "output_name",
]

READ_CHUNK = 1 << 20

# magic bytes -> compression name
_COMPRESSION_MAGIC = {
    b"\x1f\x8b": "gz",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zst",
}
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_OTHER_ARCHIVES = {b"7z\xbc\xaf\x27\x1c": "7z", b"Rar!\x1a\x07": "rar"}
_SUFFIXES = {"gz": (".gz",), "bz2": (".bz2",), "xz": (".xz",), "zst": (".zst", ".zstd")}
_ARCHIVE_ERRORS = (*DECOMPRESSION_ERRORS, tarfile.TarError, zipfile.BadZipFile)


@dataclass(frozen=True)
class Format:
    """What a file is: ``kind`` is tar, zip, 7z, rar, compressed (one file), libarchive (a
    format only bsdtar reads; ``compression`` then names it) or plain."""

    kind: str
    compression: Optional[str] = None

    def __str__(self) -> str:
        if self.kind == "libarchive":
            return self.compression or "archive"
        if self.kind == "tar" and self.compression:
            return f"tar.{self.compression}"
        return (self.compression or self.kind) if self.kind == "compressed" else self.kind

    @property
    def is_archive(self) -> bool:
        return self.kind != "plain"


def detect(path: Path) -> Format:
    """Look at the bytes (never only the name) to tell what ``path`` is.

    As robust as bsdtar: compressed streams by their magic (zstd after skippable frames),
    tar by its header checksum (not only the ustar magic), zip by its end-of-central-directory
    too (self-extracting stubs and padding before the first local header).
    """
    with open(path, "rb") as f:
        head = f.read(512)
        if _is_skippable(head):
            head = _after_skippable_frames(f)
    if head.startswith(_ZIP_MAGIC):
        return Format("zip")
    for magic, name in _OTHER_ARCHIVES.items():
        if head.startswith(magic):
            return Format(name)
    for magic, compression in _COMPRESSION_MAGIC.items():
        if head.startswith(magic):
            try:
                with open(path, "rb") as raw, _plain_decompressor(raw, compression) as inner:
                    inner_head = inner.read(_INNER_HEAD)
            except (OSError, MissingDependency, *DECOMPRESSION_ERRORS):  # type: ignore[misc]
                return Format("compressed", compression)  # extraction reports the damage
            if is_tar_header(inner_head[:512]):
                return Format("tar", compression)
            from .libarchive import inner_archive

            inner_kind = inner_archive(path, inner_head)  # cpio.gz, zip.xz, iso.zst, ...
            if inner_kind:
                return Format("libarchive", f"{inner_kind} ({compression})")
            return Format("compressed", compression)
    if is_tar_header(head):
        return Format("tar")
    if _has_zip_directory(path):
        return Format("zip")
    from .libarchive import detect_other, self_extracting

    sfx = self_extracting(path, head)
    if sfx:
        return Format(sfx, "self-extracting" if sfx == "libarchive" else None)
    other = detect_other(path, head)
    return Format("libarchive", other) if other else Format("plain")


#: Decompressed bytes looked at to tell what a compressed stream holds (an ISO 9660
#: volume's magic is at 0x8001).
_INNER_HEAD = 0x8006

#: Skippable frames are skipped for at most this many bytes while looking for the real one.
_SKIPPABLE_LIMIT = 16 * 1024 * 1024


def _is_skippable(head: bytes) -> bool:
    """A zstd skippable frame: magic 0x184D2A50..0x184D2A5F (little-endian)."""
    return len(head) >= 8 and head[0] & 0xF0 == 0x50 and head[1:4] == b"\x2a\x4d\x18"


def _after_skippable_frames(f: IO[bytes]) -> bytes:
    """The first 512 bytes after the skippable frames that start the file, as a zstd head
    (the zstd reader skips those frames itself); b"" when they go on for too long."""
    offset = 0
    while offset < _SKIPPABLE_LIMIT:
        f.seek(offset)
        frame = f.read(8)
        if not _is_skippable(frame):
            f.seek(offset)
            head = f.read(512)
            return head if head.startswith(b"\x28\xb5\x2f\xfd") else b""
        offset += 8 + int.from_bytes(frame[4:8], "little")
    return b""


def _has_zip_directory(path: Path) -> bool:
    """unzip and bsdtar find a zip by its end-of-central-directory record, wherever the first
    local header is; zipfile does the same (and copes with the bytes before it)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return bool(zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return False


def refuse_unrecognised(name: str, fmt: Format) -> None:
    """A file named like an archive whose bytes no reader accepts is an error, not a file
    to copy as is (a wrong success): the caller says ``extract = false`` to copy it."""
    from ..core.names import archive_suffix

    suffix = archive_suffix(name)
    if fmt.is_archive or not suffix:
        return
    raise UnsupportedArchive(
        f"{name} is named like a {suffix.lstrip('.')} archive but no "
        f"{suffix.lstrip('.')} reader accepts its bytes; it was not staged",
        hint="if the file is meant to be copied as it is, set extract = false for it",
    )


def _plain_decompressor(raw: IO[bytes], compression: str) -> Any:
    """A single-threaded reader: detection reads 512 bytes, no worth starting threads."""
    import bz2
    import gzip
    import lzma

    if compression == "zst":
        from .streams import zstd_reader

        return zstd_reader(raw)
    opener = {"gz": gzip.GzipFile, "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}[compression]
    return opener(fileobj=raw) if compression == "gz" else opener(raw)


def is_tar_header(block: bytes) -> bool:
    """A tar header: its checksum adds up (unsigned, or signed as old tars summed it).

    The magic alone is not trusted either way: pre-POSIX (v7) tars have none, and an odd
    field elsewhere in a header must not make the archive a plain file.
    """
    if len(block) < 512 or not any(block[:100]):
        return False
    field = block[148:156].replace(b"\0", b" ").strip()
    try:
        stored = int(field.split(b" ", 1)[0] or b"-1", 8)
    except ValueError:
        return block[257:262] == b"ustar"
    rest = block[:148] + block[156:512]
    unsigned = sum(rest) + 8 * 32
    signed = unsigned - 256 * sum(1 for b in rest if b > 127)
    return stored in (unsigned, signed) or block[257:262] == b"ustar"


def declared_size(path: Path, fmt: Format) -> Optional[int]:
    """Bytes the archive says it unpacks to, when it says so without being unpacked."""
    if fmt.kind == "tar" and fmt.compression is None:
        return path.stat().st_size  # members + headers: an upper bound
    if fmt.kind == "zip":
        from .zipfmt import declared_size as zip_size

        return zip_size(path)
    if fmt.kind == "7z":
        from .sevenz import declared_size as sevenz_size

        return sevenz_size(path)
    return None


def extract(
    path: Path, fmt: Format, writer: SafeWriter, out_name: str, on_bytes: Callable[[int], None]
) -> None:
    """Unpack ``path`` (of format ``fmt``) through ``writer``.

    ``out_name`` names the output of a single compressed file. ``on_bytes`` reports progress
    in bytes of the archive read.
    """
    with _archive_errors(writer, fmt):
        if fmt.kind in ("tar", "compressed"):
            with open(path, "rb") as raw:
                _extract_stream(_CountingReader(raw, on_bytes), fmt, writer, out_name)  # type: ignore[arg-type]
        elif fmt.kind == "zip":
            from .zipfmt import extract_zip

            extract_zip(path, writer, on_bytes)
        elif fmt.kind == "7z":
            from .sevenz import extract_7z

            extract_7z(path, writer)
        elif fmt.kind == "rar":
            from .sevenz import extract_rar

            extract_rar(path, writer)
        elif fmt.kind == "libarchive":
            from .external import extract_any

            extract_any(path, writer)
        else:
            raise UnsupportedArchive(f"{path.name}: {fmt} archives are not supported")
        writer.finish()
    _refuse_empty(writer, fmt)


def _refuse_empty(writer: SafeWriter, fmt: Format) -> None:
    """An archive that staged nothing at all is an error, not an empty dataset with exit 0."""
    if fmt.kind != "compressed" and not writer.wrote_anything:
        raise CorruptArchive(
            f"{writer.archive} holds no files or folders ({fmt}); nothing to stage",
            hint="the archive is empty or damaged; get it again from its source",
            path=writer.archive,
        )


def extract_stream(
    stream: IO[bytes],
    fmt: Format,
    writer: SafeWriter,
    out_name: str = "",
    name_encoding: Optional[str] = None,
) -> None:
    """Unpack a streamable format (tar.*, single compressed file) from any readable file object.

    The stream need not be seekable: this is the entry point for extracting while downloading.
    ``name_encoding`` decodes member names that are not UTF-8 (None: detect them).
    """
    from .encodings import name_encoding as names_in

    with names_in(name_encoding), _archive_errors(writer, fmt):
        _extract_stream(stream, fmt, writer, out_name)
        writer.finish()
    _refuse_empty(writer, fmt)


def _extract_stream(stream: IO[bytes], fmt: Format, writer: SafeWriter, out_name: str) -> None:
    from .tarfmt import extract_tar_stream

    with decompressed(stream, fmt.compression, writer.archive) as data:
        if fmt.kind == "tar":
            extract_tar_stream(data, writer)
            # tar stops at its end-of-archive blocks; reading on to the end lets the
            # decompressor check its trailer (gzip's CRC covers a damaged stored block)
            while data.read(READ_CHUNK):
                pass
        elif fmt.kind == "compressed":
            writer.file(out_name, _chunks(data))
        else:
            raise UnsupportedArchive(f"{writer.archive}: {fmt} cannot be read as a stream")


@contextlib.contextmanager
def _archive_errors(writer: SafeWriter, fmt: Format) -> Iterator[None]:
    """Turn every backend's "bad data" into one CorruptArchive line naming the archive."""
    try:
        yield
    except BaseException as e:
        writer.abort()
        if _raised_by_a_reader_library(e):
            raise CorruptArchive(
                f"{writer.archive} is damaged ({fmt}): its reader failed with "
                f"{type(e).__name__}: {one_line(e)}",
                hint="delete it from the cache if this persists; re-run to download it again",
                path=writer.archive,
            ) from e
        if isinstance(e, ArchiveError) or not isinstance(e, (*_ARCHIVE_ERRORS, OSError)):
            raise
        # gzip.BadGzipFile is an OSError too: only other OSErrors may be the disk's, not data's
        if not isinstance(e, _ARCHIVE_ERRORS) and not _is_decompression_oserror(e):
            raise
        raise CorruptArchive(
            f"{writer.archive} is damaged or truncated ({fmt}): {one_line(e)}",
            hint="delete it from the cache if this persists; re-run to download it again",
            path=writer.archive,
        ) from e


#: What a parsing library raises on bytes it did not expect (fuzzed or damaged archives).
_PARSER_BUGS = (
    ValueError, IndexError, KeyError, TypeError, AttributeError, struct.error,
    OverflowError, UnicodeDecodeError, NotImplementedError, RecursionError, AssertionError,
)  # fmt: skip


def _raised_by_a_reader_library(e: BaseException) -> bool:
    """An unexpected exception whose innermost frame is in a third-party reader (zipfile,
    tarfile, py7zr, ...), not in datastage: the archive's bytes, never an internal error."""
    # a seek to a negative offset read from a damaged header (zipfile) is EINVAL; other
    # OSErrors (ENOSPC, EIO) are the disk's and stay what they are
    bad_seek = isinstance(e, OSError) and e.errno == errno.EINVAL
    if isinstance(e, ArchiveError) or not (isinstance(e, _PARSER_BUGS) or bad_seek):
        return False
    return e.__traceback__ is not None and not raised_in(e)


def _is_decompression_oserror(e: BaseException) -> bool:
    return isinstance(e.__context__, DECOMPRESSION_ERRORS) or "Invalid data stream" in str(e)


def output_name(archive_name: str, compression: Optional[str]) -> str:
    """``notes.txt.gz`` -> ``notes.txt``: the name for a single decompressed file."""
    lowered = archive_name.lower()
    for suffix in _SUFFIXES.get(compression or "", ()):
        if lowered.endswith(suffix) and len(archive_name) > len(suffix):
            return archive_name[: -len(suffix)]
    return archive_name


class _CountingReader:
    """Wraps the raw archive file to report progress in compressed bytes read."""

    def __init__(self, raw: Any, on_bytes: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_bytes = on_bytes

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._raw.read(n)
        self._on_bytes(len(data))
        return data

    def readinto(self, b: Any) -> int:
        n = self._raw.readinto(b)
        self._on_bytes(n or 0)
        return n or 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def _chunks(f: IO[bytes]) -> Any:
    while chunk := f.read(READ_CHUNK):
        yield chunk
