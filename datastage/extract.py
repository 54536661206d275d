"""Archive formats, detected from their bytes, and safe extraction into a folder of ours.

Owns: recognising tar (plain/gz/bz2/xz), zip and single compressed files by magic bytes;
reading their members; writing them under a root without ever writing outside it; recording
each file's size and sha256 for the completion marker.
Does not own: where the root is or when it becomes visible (stage.py).

Safety rules, the same for every format (enforced by ``SafeWriter``):
- a member name must be relative and stay inside the root: absolute paths, drive letters,
  ``..`` components (with ``/`` or ``\\`` separators) and NUL bytes refuse the archive;
- device, FIFO and other special members refuse the archive;
- hard links must name a regular file extracted earlier from the same archive;
- symbolic links are created *after* every regular file of the archive, never written
  through, must be relative, and must resolve inside the root once all of them exist;
- no member is written through a symlink, and files are created with O_EXCL|O_NOFOLLOW.
The first violation raises UnsafeArchiveMember naming the member; the caller discards the
whole partial folder, so a refused archive leaves nothing behind.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Optional

from .digests import Hasher
from .errors import CorruptArchive, UnsafeArchiveMember, UnsupportedArchive

READ_CHUNK = 1 << 20

# magic bytes -> compression name
_COMPRESSION_MAGIC = {
    b"\x1f\x8b": "gz",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
}
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_OTHER_ARCHIVES = {b"7z\xbc\xaf\x27\x1c": "7z", b"Rar!\x1a\x07": "rar", b"\x28\xb5\x2f\xfd": "zst"}
_OPENERS: dict[str, Callable[..., Any]] = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}
_SUFFIXES = {"gz": (".gz",), "bz2": (".bz2",), "xz": (".xz",)}
# zip compression methods Python may not read, by their number in the zip header
_ZIP_METHODS = {9: "Deflate64", 93: "Zstandard", 95: "xz", 97: "WavPack", 98: "PPMd", 99: "AES"}
_DECOMPRESSION_ERRORS = (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile, tarfile.TarError)


@dataclass(frozen=True)
class Format:
    """What a file is: ``kind`` is tar, zip, compressed (a single file) or plain."""

    kind: str
    compression: Optional[str] = None

    def __str__(self) -> str:
        if self.kind == "tar" and self.compression:
            return f"tar.{self.compression}"
        return (self.compression or self.kind) if self.kind == "compressed" else self.kind

    @property
    def is_archive(self) -> bool:
        return self.kind != "plain"


def detect(path: Path) -> Format:
    """Look at the bytes (never only the name) to tell what ``path`` is."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(_ZIP_MAGIC):
        return Format("zip")
    for magic, name in _OTHER_ARCHIVES.items():
        if head.startswith(magic):
            return Format(name)
    for magic, compression in _COMPRESSION_MAGIC.items():
        if head.startswith(magic):
            try:
                with _OPENERS[compression](path, "rb") as inner:
                    inner_head = inner.read(512)
            except (OSError, *_DECOMPRESSION_ERRORS):
                return Format("compressed", compression)  # extraction reports the damage
            kind = "tar" if _is_tar_header(inner_head) else "compressed"
            return Format(kind, compression)
    return Format("tar") if _is_tar_header(head) else Format("plain")


def _is_tar_header(block: bytes) -> bool:
    if len(block) < 512:
        return False
    if block[257:262] == b"ustar":
        return True
    try:  # pre-POSIX (v7) tar: no magic, but the header checksum must add up
        stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(block[:148]) + 8 * 32 + sum(block[156:512])


# -- the writer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    size: int
    sha256: str


class SafeWriter:
    """Creates archive members under ``root`` and records them as ``prefix/<member>``."""

    def __init__(self, root: Path, prefix: str, archive: str, record: dict[str, Any]) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.prefix = prefix
        self.archive = archive
        self.record = record
        self._dirs: set[str] = {""}
        self._files: dict[str, Recorded] = {}
        self._symlinks: list[tuple[str, str]] = []

    # names -------------------------------------------------------------------------------
    def refuse(self, member: str, reason: str) -> UnsafeArchiveMember:
        return UnsafeArchiveMember(
            f"unsafe member {member!r} in {self.archive}: {reason}; the archive was not extracted",
            hint="the archive may be malicious or damaged; get it from a trusted source",
        )

    def clean_name(self, member: str) -> str:
        """The member's path relative to the root, or UnsafeArchiveMember."""
        if "\0" in member:
            raise self.refuse(member, "NUL byte in name")
        if member.startswith(("/", "\\")) or (len(member) > 1 and member[1] == ":"):
            raise self.refuse(member, "absolute path")
        parts = [p for p in member.split("/") if p not in ("", ".")]
        if any(".." in p.split("\\") for p in parts):
            raise self.refuse(member, "path leads outside the target ('..')")
        return "/".join(parts)

    def _recorded_name(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    # members -----------------------------------------------------------------------------
    def directory(self, member: str) -> None:
        rel = self.clean_name(member)
        if rel:
            self._make_dirs(member, rel)

    def file(
        self, member: str, chunks: Iterable[bytes], mode: int = 0o644, mtime: Optional[float] = None
    ) -> None:
        rel = self.clean_name(member)
        if not rel:
            raise self.refuse(member, "a file member without a name")
        path = self._prepare(member, rel)
        hasher = Hasher()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o755 if mode & 0o111 else 0o644)
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                hasher.update(chunk)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        self._remember(rel, Recorded(hasher.size, hasher.hexdigests()["sha256"]))

    def hardlink(self, member: str, target: str) -> None:
        rel = self.clean_name(member)
        try:
            target_rel = self.clean_name(target)
        except UnsafeArchiveMember:  # name the member, not only its link target
            raise self.refuse(member, f"hard link to {target!r} leads outside the target") from None
        source = self._files.get(target_rel)
        if source is not None and target_rel == rel:
            return  # GNU tar stores a file archived twice as a link to itself: it is there
        if source is None:
            raise self.refuse(
                member, f"hard link to {target!r}, which is not a file extracted before it"
            )
        path = self._prepare(member, rel)
        try:
            os.link(self.root / target_rel, path, follow_symlinks=False)
        except OSError:  # file systems without hard links get a copy
            with open(self.root / target_rel, "rb") as src, open(path, "xb") as dst:
                while chunk := src.read(READ_CHUNK):
                    dst.write(chunk)
        self._remember(rel, source)

    def symlink(self, member: str, target: str) -> None:
        rel = self.clean_name(member)
        if not rel:
            raise self.refuse(member, "a link without a name")
        if not target or target.startswith(("/", "\\")) or (len(target) > 1 and target[1] == ":"):
            raise self.refuse(member, f"symlink to absolute path {target!r}")
        if "\0" in target:
            raise self.refuse(member, "NUL byte in link target")
        lexical = os.path.normpath(os.path.join(os.path.dirname(rel), target))
        if lexical == ".." or lexical.startswith("../"):
            raise self.refuse(member, f"symlink leads outside the target ({target!r})")
        self._symlinks.append((rel, target))

    def special(self, member: str, what: str) -> None:
        raise self.refuse(member, f"{what} members are not allowed")

    def finish(self) -> None:
        """Create the deferred symlinks, then check that every one resolves inside the root."""
        for rel, target in self._symlinks:
            path = self._prepare(rel, rel)
            os.symlink(target, path)
        for rel, target in self._symlinks:
            resolved = os.path.realpath(self.root / rel)
            if not _inside(resolved, self.real_root):
                raise self.refuse(rel, f"symlink leads outside the target ({target!r})")
            self.record[self._recorded_name(rel)] = {"symlink": target}

    # helpers -----------------------------------------------------------------------------
    def _make_dirs(self, member: str, rel: str) -> None:
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub in self._dirs:
                continue
            path = self.root / sub
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                os.mkdir(path, 0o755)
            else:
                if stat.S_ISLNK(st.st_mode):
                    raise self.refuse(member, f"would be written through the symlink {sub!r}")
                if not stat.S_ISDIR(st.st_mode):
                    raise self.refuse(member, f"{sub!r} is a file, not a folder")
            self._dirs.add(sub)

    def _prepare(self, member: str, rel: str) -> Path:
        """Make the parent folders; clear the final name (a later member replaces an earlier)."""
        parent = rel.rpartition("/")[0]
        if parent:
            self._make_dirs(member, parent)
        path = self.root / rel
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return path
        if stat.S_ISDIR(st.st_mode):
            raise self.refuse(member, "a folder of the same name was extracted before it")
        os.unlink(path)
        self._files.pop(rel, None)
        self.record.pop(self._recorded_name(rel), None)
        return path

    def _remember(self, rel: str, recorded: Recorded) -> None:
        self._files[rel] = recorded
        self.record[self._recorded_name(rel)] = {"size": recorded.size, "sha256": recorded.sha256}


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# -- formats ---------------------------------------------------------------------------------


def extract(
    path: Path, fmt: Format, writer: SafeWriter, out_name: str, on_bytes: Callable[[int], None]
) -> None:
    """Unpack ``path`` (of format ``fmt``) through ``writer``.

    ``out_name`` names the output of a single compressed file. ``on_bytes`` reports progress
    in bytes of the archive read.
    """
    try:
        if fmt.kind == "tar":
            _extract_tar(path, fmt.compression, writer, on_bytes)
        elif fmt.kind == "zip":
            _extract_zip(path, writer, on_bytes)
        elif fmt.kind == "compressed" and fmt.compression in _OPENERS:
            _decompress_single(path, fmt.compression, writer, out_name, on_bytes)
        else:
            raise UnsupportedArchive(f"{path.name}: {fmt} archives are not supported yet")
        writer.finish()
    except (*_DECOMPRESSION_ERRORS, zipfile.BadZipFile) as e:
        raise CorruptArchive(
            f"{writer.archive} is damaged or truncated ({fmt}): {_one_line(e)}"
        ) from e
    except OSError as e:
        if isinstance(e.__context__, _DECOMPRESSION_ERRORS) or "Invalid data stream" in str(e):
            raise CorruptArchive(
                f"{writer.archive} is damaged or truncated ({fmt}): {_one_line(e)}"
            ) from e
        raise


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
        data = self._raw.read(n)
        self._on_bytes(len(data))
        return data

    def readinto(self, b: Any) -> int:
        n = self._raw.readinto(b)
        self._on_bytes(n or 0)
        return n or 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def _open_decompressed(raw: IO[bytes], compression: Optional[str]) -> IO[bytes]:
    if compression is None:
        return raw
    return _OPENERS[compression](raw, "rb")


def _extract_tar(
    path: Path, compression: Optional[str], writer: SafeWriter, on_bytes: Callable[[int], None]
) -> None:
    with open(path, "rb") as raw_file:
        stream = _open_decompressed(_CountingReader(raw_file, on_bytes), compression)  # type: ignore[arg-type]
        with tarfile.open(fileobj=stream, mode="r|", bufsize=READ_CHUNK) as tar:
            for member in tar:
                _tar_member(tar, member, writer)


def _tar_member(tar: tarfile.TarFile, member: tarfile.TarInfo, writer: SafeWriter) -> None:
    if member.isreg():
        f = tar.extractfile(member)
        assert f is not None
        writer.file(member.name, _chunks(f), member.mode, member.mtime)
    elif member.isdir():
        writer.directory(member.name)
    elif member.issym():
        writer.symlink(member.name, member.linkname)
    elif member.islnk():
        writer.hardlink(member.name, member.linkname)
    elif member.ischr() or member.isblk():
        writer.special(member.name, "device")
    elif member.isfifo():
        writer.special(member.name, "FIFO")
    else:
        writer.special(member.name, f"type {member.type!r}")


def _extract_zip(path: Path, writer: SafeWriter, on_bytes: Callable[[int], None]) -> None:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            unix_mode = info.external_attr >> 16
            kind = stat.S_IFMT(unix_mode)
            if info.is_dir():
                writer.directory(info.filename)
            elif kind == stat.S_IFLNK:
                with _open_zip_member(zf, info, writer) as member:
                    target = member.read()
                writer.symlink(info.filename, target.decode("utf-8", "surrogateescape"))
            elif kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
                writer.special(info.filename, "device or FIFO")
            else:
                mtime = _zip_mtime(info)
                with _open_zip_member(zf, info, writer) as member:
                    writer.file(info.filename, _chunks(member), unix_mode or 0o644, mtime)
            on_bytes(info.compress_size)


def _open_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, writer: SafeWriter) -> IO[bytes]:
    """``zf.open``, with encryption and unknown methods (Windows writes Deflate64 for big
    files) reported as UnsupportedArchive rather than zipfile's RuntimeError/NotImplementedError."""
    if info.flag_bits & 0x1:
        raise UnsupportedArchive(
            f"{writer.archive}: member {info.filename!r} is encrypted; "
            "password-protected zips are not supported"
        )
    try:
        return zf.open(info)
    except NotImplementedError:
        method = _ZIP_METHODS.get(info.compress_type, f"method {info.compress_type}")
        raise UnsupportedArchive(
            f"{writer.archive}: member {info.filename!r} is compressed with {method}, "
            "which Python's zipfile cannot read",
            hint="re-pack it as a standard zip (deflate) or a tar.gz",
        ) from None


def _zip_mtime(info: zipfile.ZipInfo) -> Optional[float]:
    import time

    try:
        return time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return None


def _decompress_single(
    path: Path, compression: str, writer: SafeWriter, out_name: str, on_bytes: Callable[[int], None]
) -> None:
    with open(path, "rb") as raw_file:
        stream = _open_decompressed(_CountingReader(raw_file, on_bytes), compression)  # type: ignore[arg-type]
        writer.file(out_name, _chunks(stream))


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(READ_CHUNK):
        yield chunk


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
