"""Extract while downloading: unpack a streamable archive as its bytes reach the ``.part`` file.

Owns: deciding when overlap is safe and simple (one file, not cached, no nesting; format seen
in the first bytes is tar.* or a single compressed file), the "growing file" reader over the
``.part``, and running the download (a thread) beside the extraction (this thread) into the
usual hidden partial folder under the usual stage lock. The staging is committed (marker,
rename) only after the download's final digest verified; otherwise the partial folder goes
and the download's error is what the user sees. A corrupt archive stops the download, unless
a digest can still explain it: several mirrors (the next may be sound) or a first-use pin
(bytes that differ from the pin are a checksum mismatch, exit 5, not an archive error; a pin is
never forgotten because of a broken archive, see api.py).
Everything else (zip, 7z, plain files, several files, nested archives, a tier or source-folder
hit, DATASTAGE_OVERLAP=0) takes the usual path: download, then stage.

A resumed download is read from byte 0: the prefix already on disk is extracted first, then
the new bytes as they come. kill -9 leaves a resumable ``.part`` and a partial folder that the
next run removes (staging.py), so a rerun resumes the download and builds the exact tree.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import os
import threading
import zlib
from pathlib import Path
from typing import Any, Callable, Optional

from ..core import locks
from ..core.errors import ArchiveError, UnsupportedArchive
from ..core.fsutil import SPACE_MARGIN, free_bytes
from ..core.progress import Reporter
from ..core.text import switch
from ..extract import Format, SafeWriter, extract_stream, output_name
from ..extract.streams import ReadStream
from ..extract.writer import SizeBudget
from ..obtain.cache import Blob, Cache
from ..resolve.manifest import FileEntry, Manifest
from ..settings.config import Settings
from .staging import Staging, stage

ENV = "DATASTAGE_OVERLAP"
HEAD_MIN = 512
HEAD_MAX = 4 << 20  # a bz2 block (up to 900 kB) must be read before it yields a byte
_COMPRESSION_MAGIC = {b"\x1f\x8b": "gz", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz", b"(\xb5/\xfd": "zst"}
_NOT_STREAMABLE = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08", b"7z\xbc\xaf\x27\x1c", b"Rar!")


def enabled() -> bool:
    return switch(os.environ.get(ENV), default=True)


def eligible(manifest: Manifest, pinned: list[FileEntry], store: Cache) -> bool:
    """One archive not yet in the cache, extracted without nesting: worth overlapping."""
    if not enabled() or len(manifest.files) != 1:
        return False
    entry = pinned[0]
    if entry.extract is False or entry.nested or entry.extract_nested or entry.parts:
        return False  # parts: the joined file is made in one go (parts.py), not downloaded
    return store.find(entry) is None


class _Cancelled(BaseException):
    """Raised inside the download (from ``on_prefix``) to stop it: the extraction failed.
    A BaseException, so no retry or mirror loop takes it for a network error."""


class _Restarted(Exception):
    """The download started the file over (``on_prefix`` went back): bytes already read may
    be stale, so this extraction is abandoned and redone from the verified blob."""


class _DownloadFailed(Exception):
    """The download ended in an error; the caller raises the download's own error."""


class GrowingFile(ReadStream):
    """A read-only, non-seekable view of a ``.part`` file that is still being written.

    ``advance(n)`` (the download's ``on_prefix``) says bytes ``[0, n)`` are final; ``read``
    blocks until there is something past its position, the download ends (then the blob is
    read to its end) or fails (then it raises).
    """

    def __init__(self, part: Path) -> None:
        self._part = part
        self._cond = threading.Condition()
        self._ready = 0
        self._blob: Optional[Blob] = None
        self._failed = False
        self._cancelled = False
        self._restarted = False
        self._fd: Optional[int] = None
        self._pos = 0
        self._sha256 = hashlib.sha256()  # of the bytes handed out: proves they were the blob's

    # -- the download's side ---------------------------------------------------------------
    def advance(self, n: int) -> None:
        with self._cond:
            if self._cancelled:
                raise _Cancelled()
            if n < self._ready:
                self._restarted = True
            self._ready = max(self._ready, n)
            self._cond.notify_all()

    def finish(self, blob: Blob) -> None:
        with self._cond:
            self._blob = blob
            self._cond.notify_all()

    def fail(self) -> None:
        with self._cond:
            self._failed = True
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    # -- the extraction's side -------------------------------------------------------------
    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 20
        with self._cond:
            while True:
                if self._failed or self._cancelled:
                    raise _DownloadFailed("the download stopped")
                if self._restarted:
                    raise _Restarted("the download started over")
                end = self._blob.size if self._blob is not None else self._ready
                if self._pos < end or self._blob is not None:
                    break
                self._cond.wait()
            blob = self._blob
        if self._pos >= end:
            return b""
        if self._fd is None:
            self._fd = self._open(blob)
        data = os.pread(self._fd, min(n, end - self._pos), self._pos)
        if not data:  # shorter than reported: the download replaced the file
            raise _Restarted("the download started over")
        self._pos += len(data)
        self._sha256.update(data)
        return data

    @property
    def restarted(self) -> bool:
        return self._restarted

    def digest_to_end(self) -> str:
        """Read what the extraction left (tar padding) and return the sha256 of all bytes
        handed out; call once the download committed."""
        while self.read(1 << 20):
            pass
        return self._sha256.hexdigest()

    def _open(self, blob: Optional[Blob]) -> int:
        try:  # the .part; once open, its rename to the blob does not matter
            return os.open(self._part if blob is None else blob.path, os.O_RDONLY)
        except FileNotFoundError:
            if blob is not None:
                raise
        with self._cond:  # renamed between on_prefix and open: wait for the blob's name
            while self._blob is None and not self._failed:
                self._cond.wait()
            if self._blob is None:
                raise _DownloadFailed("the download stopped")
            return os.open(self._blob.path, os.O_RDONLY)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def closed(self) -> bool:
        return False


class _Headed(ReadStream):
    """The stream with its first bytes (read for detection) put back in front."""

    def __init__(self, head: bytes, rest: GrowingFile) -> None:
        self._head = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0 or n >= len(self._head):
                data, self._head = self._head, b""
            else:
                data, self._head = self._head[:n], self._head[n:]
            return data
        return self._rest.read(n)

    def close(self) -> None:
        pass


def detect_head(head: bytes, at_end: bool) -> Optional[Format]:
    """``extract.detect`` on the first bytes of a stream; None: give me more bytes."""
    if head.startswith(_NOT_STREAMABLE):
        return Format("zip")  # any non-streamable kind: the usual path detects it exactly
    for magic, compression in _COMPRESSION_MAGIC.items():
        if head.startswith(magic):
            inner = _decompress_some(head, compression)
            if inner is None:
                return Format("compressed", compression)  # extraction reports the damage
            if len(inner) >= HEAD_MIN:
                if _is_tar_header(inner[:512]):
                    return Format("tar", compression)
                if _may_hold_archive(inner):  # cpio.gz, zip.xz, iso.zst: the usual path
                    return Format("zip")
                return Format("compressed", compression)
            return Format("compressed", compression) if at_end or len(head) >= HEAD_MAX else None
    if len(head) >= HEAD_MIN or at_end:
        return Format("tar") if _is_tar_header(head[:512]) else Format("plain")
    return None


def _may_hold_archive(inner: bytes) -> bool:
    """A compressed stream whose first bytes name another archive (or are all zeros, as the
    system area of an ISO 9660 image): ``extract.detect`` looks at it after the download."""
    from ..extract.libarchive import magic_name

    return magic_name(inner) is not None or not any(inner)


def _decompress_some(head: bytes, compression: str) -> Optional[bytes]:
    """Up to 4 kB of what ``head`` decompresses to; None when the decompressor finds it
    damaged (only its own error: anything else is a bug, and is not hidden)."""
    if compression == "zst":
        import zstandard

        try:
            return zstandard.ZstdDecompressor().decompressobj().decompress(head)[:4096]
        except zstandard.ZstdError:
            return None
    try:
        if compression == "gz":
            return zlib.decompressobj(47).decompress(head, 4096)
        if compression == "bz2":
            return bz2.BZ2Decompressor().decompress(head, 4096)
        return lzma.LZMADecompressor().decompress(head, 4096)
    except (zlib.error, OSError, lzma.LZMAError):  # bz2 reports damage as OSError
        return None


def _is_tar_header(block: bytes) -> bool:
    from ..extract import is_tar_header as is_tar

    return is_tar(block)


def _read_head(reader: GrowingFile) -> tuple[bytes, Format]:
    head = b""
    while True:
        chunk = reader.read(HEAD_MAX - len(head) if len(head) < HEAD_MAX else 1 << 16)
        head += chunk
        fmt = detect_head(head, at_end=not chunk)
        if fmt is not None:
            return head, fmt


# -- the pipeline ------------------------------------------------------------------------------


class _Download:
    """The download, in a thread beside the extraction, telling ``reader`` how much of the
    ``.part`` is final. A daemon thread: Ctrl-C must not wait for a slow server (the ``.part``
    stays resumable)."""

    def __init__(self, fetch: Callable[[Callable[[int], None]], Blob], reader: GrowingFile) -> None:
        self.reader = reader
        self.blob: Optional[Blob] = None
        self._fetch = fetch
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="datastage-overlap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.blob = self._fetch(self.reader.advance)
            self.reader.finish(self.blob)
        except BaseException as e:
            self._error = e
            self.reader.fail()

    def settled(self) -> Optional[Blob]:
        """Wait for the download; its error wins over whatever the extraction saw.
        None: it was cancelled (the extraction failed first)."""
        self._thread.join()
        self.reader.close()
        if self._error is not None and not isinstance(self._error, _Cancelled):
            raise self._error
        return self.blob

    def stop(self) -> None:
        """Cancel the download and wait until it has stopped."""
        self.reader.cancel()
        self._thread.join()


def get(
    manifest: Manifest,
    pinned: list[FileEntry],
    dest: Path,
    settings: Settings,
    reporter: Reporter,
    store: Cache,
    force: bool = False,
) -> Path:
    """Download the manifest's one file and stage it, extracting while it downloads.
    ``force``: stage it again even if a current staging is in place."""
    from ..obtain import usage
    from ..obtain.obtaining import obtain_one

    entry, expected = manifest.files[0], pinned[0]
    reader = GrowingFile(store.partial_paths(expected)[0])
    download = _Download(
        lambda on_prefix: obtain_one(
            entry, manifest, store, settings, reporter, expected=expected, on_prefix=on_prefix
        ),
        reader,
    )
    try:
        head, fmt = _read_head(reader)
    except (_DownloadFailed, _Restarted):
        fmt, head = Format("plain"), b""

    def usual() -> Path:
        """Download, then stage from the verified blob: what api.get_manifest does."""
        blob = _must(download.settled())
        usage.record_use(store, manifest, [(entry, blob)])
        return stage(manifest, [(entry, blob)], dest, reporter, settings.lock_timeout, force=force)

    if fmt.kind not in ("tar", "compressed"):  # not streamable
        return usual()
    try:
        root = _stage_streaming(
            manifest, expected, fmt, _Headed(head, reader), download, dest, reporter, settings,
            force,
        )  # fmt: skip
    except _Restarted:
        # the bytes changed under the extraction (the download started over): stage from the
        # verified blob instead
        return usual()
    except ArchiveError:
        download.stop()
        _discard_download(store, expected, settings, reporter)
        raise
    except BaseException:
        reader.cancel()
        raise
    usage.record_use(store, manifest, [(entry, _must(download.blob))])
    return root


def _stage_streaming(
    manifest: Manifest,
    entry: FileEntry,
    fmt: Format,
    stream: _Headed,
    download: _Download,
    to: Path,
    reporter: Reporter,
    settings: Settings,
    force: bool,
) -> Path:
    """``staging.stage`` with the one file extracted from ``stream`` as it grows.
    ``entry`` carries the expected digests: the manifest's, or its first-use pin's."""
    reader = download.reader
    with Staging.of(manifest, to, reporter, settings.lock_timeout, force=force) as staging:
        if staging.current:
            download.settled()
            return staging.root
        declared = entry.unpacked_size
        if declared is None and fmt.kind == "tar" and fmt.compression is None:
            declared = entry.size  # members + headers: an upper bound
        with staging.building(declared) as partial:
            record: dict[str, Any] = {}
            writer = _writer(entry, declared, partial, record)
            out_name = output_name(entry.name, fmt.compression)
            try:
                extract_stream(stream, fmt, writer, out_name, entry.name_encoding)  # type: ignore[arg-type]
            except (_DownloadFailed, ArchiveError):
                # Let the download finish when stale bytes (a restart) may explain the
                # damage, or when a digest can tell a bad mirror from a bad archive: the
                # download then moves on to the next mirror itself, as on the usual path.
                # A first-use pin decides too: bytes that differ from it are a checksum
                # mismatch (exit 5, both values), never an archive error, so a server
                # cannot pass off other content as "damaged". Otherwise stop it now (its
                # .part is dropped: a rerun starts afresh).
                if not reader.restarted and not _digest_decides(manifest, entry):
                    reader.cancel()
                if download.settled() is not None:  # it finished first: let the blob decide
                    raise _Restarted("the download finished despite the damage") from None
                raise  # (a failed download raised its own error in settled())
            blob = _must(download.settled())  # verified: only now may the staging be visible
            if reader.digest_to_end() != blob.sha256:
                raise _Restarted("the extracted bytes are not the verified file's")
            staging.seal([(manifest.files[0], blob)], record)
        staging.swap()
        return staging.root


def _writer(
    entry: FileEntry, declared: Optional[int], partial: Path, record: dict[str, Any]
) -> SafeWriter:
    """The writer of the entry's members, under its ``dest`` in the partial folder."""
    folder = partial / entry.dest if entry.dest else partial
    folder.mkdir(parents=True, exist_ok=True)
    budget = _budget(entry, declared, folder)
    return SafeWriter(folder, entry.dest, entry.name, record, budget, entry.strip_components)


def _digest_decides(manifest: Manifest, expected: FileEntry) -> bool:
    """Wait for the download's digest after an archive error? Yes for a first-use pin (its
    verdict is exit 5 or a genuine archive error) and for several mirrors (the next one may
    be sound); a single URL pinned by the manifest stops at once (the bytes are lost anyway)."""
    pinned_on_first_use = expected.pinned and not manifest.files[0].pinned
    return pinned_on_first_use or (expected.pinned and len(expected.urls) > 1)


def _must(blob: Optional[Blob]) -> Blob:
    assert blob is not None, "a download that was not cancelled returns a blob or raises"
    return blob


def _budget(entry: FileEntry, declared: Optional[int], folder: Path) -> SizeBudget:
    if declared is not None:
        by = "the manifest (unpacked_size)" if entry.unpacked_size else "the archive's own listing"
        return SizeBudget(declared, by)
    return SizeBudget(max(0, free_bytes(folder) - SPACE_MARGIN // 4), "", free_space_of=folder)


def _discard_download(
    store: Cache, entry: FileEntry, settings: Settings, reporter: Reporter
) -> None:
    """The archive is broken: its unfinished bytes are not worth resuming."""
    with locks.hold(
        store.lock_path(entry), f"download of {entry.name}", settings.lock_timeout, reporter.say
    ):
        for path in store.partial_paths(entry):
            path.unlink(missing_ok=True)


__all__ = ["ENV", "GrowingFile", "UnsupportedArchive", "detect_head", "eligible", "get"]
