"""``datastage pack DIR --to PATH``: a folder of many small files -> one tar + a manifest.

Audio and images do not compress, and an uncompressed tar extracts at disk speed, so the tar is
plain. ``<name>.toml`` beside it (written with tomli-w: any path, newline or quote included,
stays loadable) lets every later session stage it with ``datastage get PATH/<name>.toml`` in one
sequential read.

The folder is read by the rules of srctree.py (links kept as link members and confined, FIFOs
and devices skipped with a warning, files checked against their listing). The source is often a
slow mount where every open costs a round trip, so files are opened and read by a pool of
threads ahead of the one thread that writes the tar in order; small files are read whole, large
ones are streamed, and at most ``PREFETCH`` files are in flight.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Optional, Union

from ..core.errors import UsageError
from ..core.fsutil import atomic_file, user_path, write_atomic
from ..core.progress import Bar, Reporter
from .folder import DEFAULT_WORKERS, checked_name
from .srctree import FileInfo, Listing, check_unchanged, list_tree, open_listed, refuse_nested

#: Files up to this size are read whole by the pool; larger ones are streamed by the writer.
WHOLE_FILE = 1 << 20
PREFETCH = 4 * DEFAULT_WORKERS


class _HashingWriter:
    """A file object that hashes and counts what tarfile writes through it."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.size += len(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.size


class _Bounded(io.RawIOBase):
    """A listed file read up to its listed size (+1 to notice growth), checked at the end."""

    def __init__(self, fd: int, path: str, info: FileInfo) -> None:
        self.f = os.fdopen(fd, "rb", buffering=0)
        self.path, self.info, self.read_bytes = path, info, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Union[bytearray, memoryview]) -> int:  # type: ignore[override]
        view = memoryview(b)[: max(0, self.info.size + 1 - self.read_bytes)]
        n = self.f.readinto(view) or 0
        self.read_bytes += n
        if n == 0 or self.read_bytes > self.info.size:
            check_unchanged(self.f.fileno(), self.path, self.info, self.read_bytes)
        return n

    def check(self) -> None:
        """After tarfile took its listed size: the file must not have changed meanwhile."""
        check_unchanged(self.f.fileno(), self.path, self.info, min(self.read_bytes, self.info.size))

    def close(self) -> None:
        self.f.close()
        super().close()


def _fetch(path: str, info: FileInfo) -> Union[bytes, _Bounded]:
    """Open (and for a small file, read) one listed file: the pool's job."""
    fd = open_listed(path, info)
    stream = _Bounded(fd, path, info)
    if info.size > WHOLE_FILE:
        return stream
    with stream:
        data = stream.read(info.size + 1) or b""
        check_unchanged(fd, path, info, len(data))
    return data


def pack(src: Path, dest: Path, name: Optional[str] = None, quiet: bool = False) -> Path:
    """Write ``dest/<name>.tar`` and ``dest/<name>.toml`` for folder ``src``; return the TOML."""
    import tomli_w

    src = user_path(str(src)).absolute()
    if not src.is_dir():
        raise UsageError(f"{src}: not a folder")
    name = checked_name(src, name)
    reporter = Reporter(quiet)
    dest = user_path(str(dest)).absolute()
    # a tar written inside SRC would be packed into the next tar (and a re-run's into itself)
    refuse_nested(src, dest, "--to", both_ways=False)
    dest.mkdir(parents=True, exist_ok=True)
    listing = list_tree(src, reporter.warn)
    unpacked = sum(info.size for info in listing.files.values())
    archive = dest / f"{name}.tar"
    bar = reporter.bar(f"packing {src.name}", unpacked)
    try:
        sha256, size = _write_tar(archive, src, listing, bar)
    finally:
        bar.close()
    file = {"url": archive.name, "sha256": sha256, "size": size, "unpacked_size": unpacked}
    manifest = {
        "name": name,
        "description": f"packed from {src} by datastage pack",
        "files": [file],
    }
    path = dest / f"{name}.toml"
    write_atomic(path, tomli_w.dumps(manifest).encode())
    # mkstemp makes both private; a packed dataset is for every session and teammate that can
    # read the folder, like a tar made by hand (less the umask)
    umask = os.umask(0o022)
    os.umask(umask)
    for made in (archive, path):
        os.chmod(made, 0o644 & ~umask)
    return path


def _write_tar(archive: Path, src: Path, listing: Listing, bar: Bar) -> tuple[str, int]:
    """One plain tar of ``listing``: empty folders, links, then the files in order, read ahead
    by a thread pool. Returns its sha256 and size, measured as it is written."""
    # A large buffer: tarfile writes in small pieces, and a network mount pays per write.
    with atomic_file(archive, buffering=8 << 20) as raw:
        out = _HashingWriter(raw)
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for rel in sorted(listing.empty_dirs):
                tar.addfile(_member(rel, tarfile.DIRTYPE, listing.dirs[rel]))
            for rel, text in listing.links.items():
                link = _member(rel, tarfile.SYMTYPE, 0o777)
                link.linkname = text
                tar.addfile(link)
            for rel, info, content in _read_ahead(src, listing.files):
                member = _member(rel, tarfile.REGTYPE, info.mode)
                member.size, member.mtime = info.size, info.mtime_ns // 1_000_000_000
                if isinstance(content, bytes):
                    tar.addfile(member, io.BytesIO(content))
                else:
                    with content, io.BufferedReader(content, 1 << 20) as buffered:
                        tar.addfile(member, buffered)
                        content.check()
                bar.update(info.size)
    return out.h.hexdigest(), out.size


def _member(rel: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.type = kind
    info.mode = mode & 0o777
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _read_ahead(
    src: Path, files: dict[str, FileInfo]
) -> Iterator[tuple[str, FileInfo, Union[bytes, _Bounded]]]:
    """Every listed file in order, opened and read by a pool up to PREFETCH files ahead."""
    pending: deque[tuple[str, FileInfo, Future[Union[bytes, _Bounded]]]] = deque()
    todo = iter(files.items())
    with ThreadPoolExecutor(DEFAULT_WORKERS) as pool:
        try:
            for rel, info in todo:
                pending.append((rel, info, pool.submit(_fetch, str(src / rel), info)))
                if len(pending) >= PREFETCH:
                    break
            while pending:
                rel, info, future = pending.popleft()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append((*nxt, pool.submit(_fetch, str(src / nxt[0]), nxt[1])))
                yield rel, info, future.result()
        finally:
            for *_, future in pending:
                if not future.cancel():
                    content = future.exception() is None and future.result()
                    if isinstance(content, _Bounded):
                        content.close()
