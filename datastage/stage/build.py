"""Files from verified cache blobs, into a partial folder: archives extracted, the rest copied.

A cache blob that this run did not verify itself is re-hashed beside the extraction
(``BlobCheck``); a damaged one fails the staging with DamagedBlob (api.py drops it, fetches it
again and re-stages). Nothing is ever written through a link while the tree is built: an
earlier entry's links are only checked once the tree is finished (links.py), and a later entry
may re-target them.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ..core.errors import DamagedBlob, UnsafeArchiveMember, UnsupportedArchive
from ..core.progress import Reporter
from ..obtain.cache import Blob, damaged
from ..resolve.manifest import FileEntry

if TYPE_CHECKING:  # the extract package (tarfile, zipfile, subprocess, ...) loads only when
    # something is staged: a repeated `get` of a staged dataset needs none of it
    from ..extract import Format


class BlobCheck:
    """Re-hashes, in a thread beside the extraction, the cache blobs this run did not verify
    itself (``Blob.fresh`` False): a blob altered on disk must not become a staging whose
    marker vouches for it. Reading a file the extraction also reads costs little (page cache).
    """

    def __init__(self, blobs: Sequence[Blob]) -> None:
        unique = {b.path: b for b in blobs if not b.fresh}
        self._blobs = list(unique.values())
        self._stop = threading.Event()
        self._damaged: list[tuple[Blob, str]] = []
        self._thread: Optional[threading.Thread] = None
        if self._blobs:
            self._thread = threading.Thread(target=self._run, name="datastage-blobcheck")
            self._thread.daemon = True  # Ctrl-C must not wait for a multi-GB hash
            self._thread.start()

    def _run(self) -> None:
        for blob in self._blobs:
            why = damaged(blob, stop=self._stop)
            if self._stop.is_set():
                return
            if why is not None:
                self._damaged.append((blob, why))

    def raise_if_damaged(self) -> None:
        """Wait for the hashes; raise DamagedBlob naming every blob that does not match."""
        if self._thread is not None:
            self._thread.join()
        if self._damaged:
            raise damaged_blobs_error(self._damaged)

    def cancel(self) -> None:
        self._stop.set()


def damaged_blobs_error(found: Sequence[tuple[Blob, str]]) -> DamagedBlob:
    listed = "; ".join(f"{blob.path} ({why})" for blob, why in found)
    return DamagedBlob(
        f"{len(found)} cached file(s) no longer matching their sha256: {listed}",
        tuple(blob for blob, _ in found),
        hint="the cache's disk may be failing; datastage drops such files and downloads "
        "them again (re-run the command)",
    )


@dataclass(frozen=True)
class Item:
    """One verified file and what staging will do with it (``fmt`` None: copy as is)."""

    entry: FileEntry
    blob: Blob
    fmt: Optional[Format]

    @classmethod
    def of(cls, entry: FileEntry, blob: Blob) -> Item:
        """Detect the blob's format: UnsupportedArchive if it cannot be staged as the entry
        says."""
        return cls(entry, blob, _format_of(entry, blob))

    def unpacked_size(self) -> Optional[int]:
        """Bytes it will occupy once staged, when that is known without unpacking."""
        if self.entry.unpacked_size is not None:
            return self.entry.unpacked_size
        if self.fmt is None:
            return self.blob.size
        from ..extract import declared_size

        return declared_size(self.blob.path, self.fmt)


def _format_of(entry: FileEntry, blob: Blob) -> Optional[Format]:
    if entry.extract is False:
        return None
    from ..extract import detect, refuse_unrecognised

    fmt = detect(blob.path)
    if fmt.is_archive:
        return fmt
    refuse_unrecognised(entry.name, fmt)  # named like an archive: never a copy with exit 0
    if entry.extract:
        raise UnsupportedArchive(
            f"{entry.name} is not an archive datastage recognises, "
            "but the manifest says extract = true"
        )
    return None


def build(items: Sequence[Item], partial: Path, reporter: Reporter) -> dict[str, Any]:
    """Stage every item into ``partial``; return the record of every file written
    (rel -> {size, sha256} or {symlink}), for the marker."""
    from ..extract.nesting import Step, unpack

    record: dict[str, Any] = {}
    for entry, blob, fmt in ((i.entry, i.blob, i.fmt) for i in items):
        folder = _entry_folder(partial, entry)
        if fmt is not None:
            step = Step(
                entry.name,
                entry.dest,
                entry.strip_components,
                entry.nested,
                entry.extract_nested,
                entry.unpacked_size,
                entry.name_encoding,
            )
            unpack(step, blob.path, fmt, partial, record, reporter.bar)
        else:
            _copy_blob(blob.path, folder / entry.name, entry)
            rel = f"{entry.dest}/{entry.name}" if entry.dest else entry.name
            record[rel] = {"size": blob.size, "sha256": blob.sha256}
    return record


def _entry_folder(partial: Path, entry: FileEntry) -> Path:
    """The folder an entry lands in, made one component at a time. An earlier entry's links
    are only checked once the tree is finished (links.py), and a later one may re-target them,
    so nothing is ever written through a link: a ``dest`` that goes through one is refused."""
    folder = partial
    for part in entry.dest.split("/") if entry.dest else ():
        folder = folder / part
        try:
            os.mkdir(folder, 0o755)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                raise _written_through(entry, folder.relative_to(partial)) from None
    return folder


def _copy_blob(source: Path, path: Path, entry: FileEntry) -> None:
    """Copy a cache blob to ``path`` as a new file, never through a link of that name."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:  # an earlier archive's member of that name (a link included) is replaced
        if stat.S_ISDIR(st.st_mode):
            raise _written_through(entry, Path(entry.dest or ".", entry.name))
        os.unlink(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    os.close(os.open(path, flags, 0o644))  # ours now, in a private folder: copy in place
    shutil.copyfile(source, path)
    from ..extract.writer import without_umask

    os.chmod(path, without_umask(0o644))


def _written_through(entry: FileEntry, rel: Path) -> UnsafeArchiveMember:
    return UnsafeArchiveMember(
        f"{entry.name} would be written through {rel.as_posix()!r}, which an earlier file of "
        "the dataset made a symlink or a file; nothing was staged",
        hint="the data may be malicious or damaged; get it from a trusted source",
    )
