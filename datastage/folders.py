"""The user's own data: ``datastage stage SRC --to DIR`` and ``datastage pack DIR --to PATH``.

stage (a folder) — from a slow mount (Drive, autodl-fs, NFS) to fast disk:

    DIR/<name>/                          the copy; .datastage.json (marker) written last
    DIR/.<name>.partial/                 work in progress, kept across runs (resume)
    DIR/.<name>.partial/.datastage-journal.jsonl   one line per file copied and verified

A slow mount is latency-bound (every open costs a round trip), not bandwidth-bound, so many
files are copied at once by threads. Each file is hashed while it is read, written under a
temporary name, re-hashed from the fast disk and renamed; the journal line comes after. A re-run
skips every journalled file whose source size and mtime are unchanged. The finished folder gets
the same marker as ``get`` and is renamed into place. One stager per target (local lock).

stage (an archive) is ``get`` with a one-file manifest: one sequential read into the cache,
verified, extracted.

pack — a folder of many small files becomes one uncompressed tar (audio and images do not
compress; an uncompressed tar extracts at disk speed) plus ``<name>.toml`` beside it, so every
later session stages it with ``datastage get PATH/<name>.toml`` in one sequential read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Optional

from . import __version__, config, locks
from .digests import READ_CHUNK, hash_file
from .errors import IntegrityError, UsageError
from .fsutil import atomic_file, disk_full_as_error, ensure_free, write_atomic
from .manifest import NAME_PATTERN
from .names import strip_archive_suffix
from .progress import Reporter
from .stage import (
    MARKER,
    MARKER_FORMAT,
    _problems,
    _refuse_foreign,
    _swap_into_place,
    lock_for,
    read_marker,
)

JOURNAL = ".datastage-journal.jsonl"
DEFAULT_WORKERS = 32


def dataset_name(path: Path) -> str:
    """A valid manifest name from a folder or archive name: ``LJSpeech-1.1`` -> ``ljspeech-1.1``."""
    stem = strip_archive_suffix(path.name)
    name = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-.")
    if not name or not NAME_PATTERN.match(name):
        raise UsageError(f"cannot derive a dataset name from {path.name!r}; pass --name")
    return name


def stage(
    src: Path,
    to: Path,
    name: Optional[str] = None,
    workers: int = DEFAULT_WORKERS,
    quiet: bool = False,
) -> Path:
    """Copy folder ``src`` (or extract archive ``src``) to ``to/<name>``; return that folder."""
    src = src.expanduser().absolute()
    name = name or dataset_name(src)
    if not NAME_PATTERN.match(name):
        raise UsageError(f"{name!r} is not a valid name (lowercase letters, digits, '.', '_', '-')")
    if src.is_file():
        return _stage_archive(src, to, name, quiet)
    if not src.is_dir():
        raise UsageError(f"{src}: no such folder or file")
    reporter = Reporter(quiet)
    to.mkdir(parents=True, exist_ok=True)
    target = to / name
    if _current(target, src):
        return target
    lock = lock_for(target)  # the lock `get` takes: the two never stage into one folder at once
    with locks.hold(lock, f"staging {src}", config.resolve().lock_timeout, reporter.say):
        if _current(target, src):
            return target
        _refuse_foreign(target)
        return _stage_folder(src, target, workers, reporter)


def _current(target: Path, src: Path) -> bool:
    """Staged from ``src`` and every file still there with its size (no hashing, no listing)."""
    marker = read_marker(target)
    if not marker or marker.get("source") != str(src):
        return False
    return not _problems(target, marker["files"], rehash=False, limit=1)


def _stage_archive(src: Path, to: Path, name: str, quiet: bool) -> Path:
    from . import api, stage
    from .manifest import from_dict

    manifest = from_dict({"name": name, "files": [{"url": str(src)}]})
    dest = to.expanduser().absolute()
    if stage.is_current(manifest, dest):
        return stage.root_of(manifest, dest)
    return api.get_manifest(manifest, dest, config.resolve(quiet=quiet))


def _listing(src: Path) -> dict[str, tuple[int, int]]:
    """Every regular file under ``src``: relative path -> (size, mtime_ns)."""
    files: dict[str, tuple[int, int]] = {}
    for folder, dirs, names in os.walk(src):
        dirs.sort()
        for n in names:
            path = os.path.join(folder, n)
            st = os.stat(path)  # follows links: a link's target is copied
            rel = os.path.relpath(path, src).replace(os.sep, "/")
            if rel == MARKER or rel.startswith(".datastage"):
                continue
            files[rel] = (st.st_size, st.st_mtime_ns)
    return files


def _stage_folder(src: Path, target: Path, workers: int, reporter: Reporter) -> Path:
    partial = target.parent / f".{target.name}.partial"
    partial.mkdir(exist_ok=True)
    reporter.say(f"listing {src}")
    files = _listing(src)
    done = _journal(partial, files)
    _drop_unjournalled(partial, done)
    todo = [rel for rel in files if rel not in done]
    ensure_free(target.parent, sum(files[r][0] for r in todo), f"to stage {src}")
    if done:
        reporter.say(f"resuming: {len(done)} of {len(files)} files already copied and verified")
    bar = reporter.bar(f"staging {src.name}", sum(files[r][0] for r in todo))
    journal_lock = threading.Lock()
    with (
        disk_full_as_error(target.parent, None, f"to stage {src}"),
        open(partial / JOURNAL, "a", encoding="utf-8") as journal,
        ThreadPoolExecutor(max(1, workers)) as pool,
    ):

        def copy(rel: str) -> None:
            size, mtime = files[rel]
            sha = _copy_file(src / rel, partial / rel, size, bar)
            line = json.dumps({"path": rel, "size": size, "mtime_ns": mtime, "sha256": sha})
            with journal_lock:
                journal.write(line + "\n")
                journal.flush()
                done[rel] = {"size": size, "sha256": sha}

        futures = [pool.submit(copy, rel) for rel in todo]
        try:
            for future in futures:
                future.result()
        except BaseException:
            # Fail (or stop on Ctrl-C) now, not after every queued file was copied anyway.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    bar.close()
    (partial / JOURNAL).unlink()
    marker = {
        "format": MARKER_FORMAT,
        "name": target.name,
        "content_key": "folder:" + hashlib.sha256(str(src).encode()).hexdigest(),
        "root": "",
        "source": str(src),
        "datastage": __version__,
        "staged_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": dict(sorted(done.items())),
    }
    write_atomic(partial / MARKER, json.dumps(marker, indent=1).encode())
    _swap_into_place(partial, target)
    return target


def _journal(partial: Path, files: dict[str, tuple[int, int]]) -> dict[str, dict[str, Any]]:
    """Files a previous run copied and verified, whose source has not changed since."""
    done: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(FileNotFoundError), open(partial / JOURNAL, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
                rel = rec["path"]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
            if files.get(rel) != (rec.get("size"), rec.get("mtime_ns")):
                continue
            with contextlib.suppress(OSError):
                if os.stat(partial / rel).st_size == rec["size"]:
                    done[rel] = {"size": rec["size"], "sha256": rec["sha256"]}
    return done


def _drop_unjournalled(partial: Path, done: dict[str, dict[str, Any]]) -> None:
    """Temporary files and unverified copies of a killed run: nothing vouches for them."""
    for folder, _dirs, names in os.walk(partial):
        for n in names:
            path = os.path.join(folder, n)
            rel = os.path.relpath(path, partial).replace(os.sep, "/")
            if rel != JOURNAL and rel not in done:
                os.unlink(path)


def _copy_file(src: Path, dest: Path, size: int, bar: Any) -> str:
    """Copy one file, hashing the source as it is read; check the written copy; rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{threading.get_ident()}.tmp")
    h = hashlib.sha256()
    copied = 0
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(4 * READ_CHUNK):
                fout.write(chunk)
                h.update(chunk)
                copied += len(chunk)
                bar.update(len(chunk))
        sha = h.hexdigest()
        if copied != size:
            raise IntegrityError(f"{src} changed while it was copied ({copied} of {size} bytes)")
        if hash_file(tmp).hexdigests()["sha256"] != sha:
            raise IntegrityError(f"the copy of {src} differs from what was read")
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return sha


# -- pack ------------------------------------------------------------------------------------


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


def pack(src: Path, dest: Path, name: Optional[str] = None, quiet: bool = False) -> Path:
    """Write ``dest/<name>.tar`` and ``dest/<name>.toml`` for folder ``src``; return the TOML."""
    src = src.expanduser().absolute()
    if not src.is_dir():
        raise UsageError(f"{src}: not a folder")
    name = name or dataset_name(src)
    if not NAME_PATTERN.match(name):
        raise UsageError(f"{name!r} is not a valid name (lowercase letters, digits, '.', '_', '-')")
    reporter = Reporter(quiet)
    dest = dest.expanduser().absolute()
    dest.mkdir(parents=True, exist_ok=True)
    files = _listing(src)
    unpacked = sum(size for size, _ in files.values())
    archive = dest / f"{name}.tar"
    bar = reporter.bar(f"packing {src.name}", unpacked)
    try:
        # A large buffer: tarfile writes in small pieces, and a network mount pays per write.
        with atomic_file(archive, buffering=8 << 20) as raw:
            out = _HashingWriter(raw)
            with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for rel in files:
                    with open(src / rel, "rb") as f:
                        # from the open file: a symlink is packed as the file it points to,
                        # as stage copies it (a link out of the folder would be refused later)
                        info = tar.gettarinfo(fileobj=f, arcname=rel)
                        info.uid = info.gid = 0
                        info.uname = info.gname = ""
                        tar.addfile(info, f)
                    bar.update(info.size)
    finally:
        bar.close()
    manifest = (
        f'name = "{name}"\n'
        f'description = "packed from {_toml_text(str(src))} by datastage pack"\n'
        "[[files]]\n"
        f'url = "{archive.name}"\n'
        f'sha256 = "{out.h.hexdigest()}"\n'
        f"size = {out.size}\n"
        f"unpacked_size = {unpacked}\n"
    )
    path = dest / f"{name}.toml"
    write_atomic(path, manifest.encode())
    # mkstemp makes both private; a packed dataset is for every session and teammate that can
    # read the folder, like a tar made by hand
    for made in (archive, path):
        os.chmod(made, 0o644)
    return path


def _toml_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
