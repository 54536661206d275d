"""System tools (7z, bsdtar) as extraction back ends, held to SafeWriter's rules.

Owns: running a tool so that it can never write outside our folder, and bringing what it wrote
under SafeWriter. Two ways, both checked:

- ``bsdtar -cf - @archive`` re-packs any format libarchive reads (RAR, 7z, ...) as a tar
  stream on a pipe; our tar reader applies every rule member by member. Nothing touches disk
  until SafeWriter writes it.
- ``7z``: list the members first (``7z l -slt``) and refuse the archive on any unsafe name,
  special member or member beneath a symlink member; extract into a private folder inside the
  partial folder; then walk what the tool really wrote (lstat, never following links), refuse
  anything not listed or special, and move each file into place through SafeWriter, which
  hashes it in a worker thread.

A tool's child process dies with us (PR_SET_PDEATHSIG), so a kill -9 leaves no writer behind
in a partial folder the next run deletes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

from ..fsutil import remove_tree
from .streams import BadData
from .writer import SafeWriter

PR_SET_PDEATHSIG = 1


def child_dies_with_us() -> None:
    """preexec_fn: the kernel kills the child when its parent dies (Linux; no-op elsewhere)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def seven_zip() -> Optional[str]:
    """The 7-Zip command on PATH (7z from p7zip-full, 7zz from 7zip, 7za), or None."""
    for name in ("7z", "7zz", "7za"):
        found = shutil.which(name)
        if found:
            return found
    return None


def bsdtar() -> Optional[str]:
    return shutil.which("bsdtar")


# -- bsdtar: any libarchive format as a tar stream -------------------------------------------


@contextlib.contextmanager
def as_tar_stream(archive: Path) -> Iterator[IO[bytes]]:
    """Yield a pax tar stream of ``archive``'s members, converted by bsdtar on the fly."""
    tool = bsdtar()
    assert tool is not None
    proc = subprocess.Popen(
        [tool, "-c", "-f", "-", "-P", "--format", "pax", f"@{archive}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=child_dies_with_us,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        yield proc.stdout
        proc.stdout.read()  # the end-of-archive padding the tar reader leaves
        if proc.wait() != 0:
            raise BadData("bsdtar: " + _first_line(proc.stderr.read()))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# -- 7z: list, check, extract privately, re-check, adopt --------------------------------------


@dataclass(frozen=True)
class Listed:
    name: str
    size: int
    kind: str  # "file", "dir", "symlink", or "special"


def list_7z(tool: str, archive: Path) -> list[Listed]:
    """Members as 7z reports them (``-slt``: one ``Key = value`` block per member)."""
    done = subprocess.run(
        [tool, "l", "-slt", "-ba", "-sccUTF-8", "-p", str(archive)],
        capture_output=True,
        preexec_fn=child_dies_with_us,
    )
    if done.returncode != 0:
        raise BadData("7z: " + _first_line(done.stderr or done.stdout))
    members = []
    for block in done.stdout.decode("utf-8", "surrogateescape").split("\n\n"):
        fields = dict(line.split(" = ", 1) for line in block.splitlines() if " = " in line)
        if "Path" not in fields:
            continue
        members.append(
            Listed(fields["Path"], int(fields.get("Size") or 0), _kind(fields.get("Attributes")))
        )
    return members


def _kind(attributes: Optional[str]) -> str:
    """``D drwxr-xr-x`` / ``A -rw-r--r--`` / ``A lrwxrwxrwx``: the unix part decides."""
    parts = (attributes or "").split()
    unix = next((p for p in parts if len(p) == 10 and p[1:4].strip("rwxsStT-") == ""), "")
    if unix:
        return {"d": "dir", "-": "file", "l": "symlink"}.get(unix[0], "special")
    return "dir" if parts and "D" in parts[0] else "file"


def check_listing(members: list[Listed], writer: SafeWriter) -> None:
    """Refuse the archive before anything is extracted."""
    links = set()
    for m in members:
        writer.check_name(m.name)
        if m.kind == "special":
            writer.special(m.name, "device, FIFO or socket")
        if m.kind == "symlink":
            links.add(writer.check_name(m.name))
    for m in members:
        parts = writer.check_name(m.name).split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in links:
                raise writer.refuse(m.name, "would be written through a symlink member")


def extract_7z(tool: str, archive: Path, writer: SafeWriter) -> None:
    members = list_7z(tool, archive)
    check_listing(members, writer)
    listed = {writer.check_name(m.name): m for m in members}
    private = Path(tempfile.mkdtemp(dir=writer.root, prefix=".datastage-7z-"))
    try:
        done = subprocess.run(
            # -snld-: no "dangerous" links; -spd off: names were checked above
            [tool, "x", "-y", "-bd", "-bb0", "-p", f"-o{private}", str(archive)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=child_dies_with_us,
        )
        if done.returncode != 0:
            _refuse_dangerous_link(done.stderr, writer)
            raise BadData("7z: " + _first_line(done.stderr))
        _adopt_tree(private, listed, writer)
    finally:
        remove_tree(private)


def _adopt_tree(private: Path, listed: dict[str, Listed], writer: SafeWriter) -> None:
    """Walk what the tool wrote (never following links) and hand it to the writer."""
    implied = {rel.rsplit("/", i)[0] for rel in listed for i in range(1, rel.count("/") + 1)}
    for folder, dirs, files in os.walk(private):
        for name in sorted(dirs) + sorted(files):
            path = Path(folder) / name
            rel = path.relative_to(private).as_posix()
            st = os.lstat(path)
            member = listed.get(rel)
            if member is None and stat.S_ISDIR(st.st_mode) and rel in implied:
                member = Listed(rel, 0, "dir")  # a parent folder the archive does not list
            if member is None:
                raise writer.refuse(rel, "written by the tool but not in the archive's listing")
            if stat.S_ISDIR(st.st_mode):
                writer.directory(rel)
            elif stat.S_ISLNK(st.st_mode):
                writer.symlink(rel, os.readlink(path))
                if name in dirs:
                    dirs.remove(name)
            elif stat.S_ISREG(st.st_mode) and member.kind == "symlink":
                writer.symlink(rel, path.read_bytes().decode("utf-8", "surrogateescape"))
            elif stat.S_ISREG(st.st_mode):
                writer.adopt(rel, path, st.st_mode)
            else:
                writer.special(rel, "device, FIFO or socket")


def _refuse_dangerous_link(stderr: bytes, writer: SafeWriter) -> None:
    """7z refuses links leading outside itself ("Dangerous link path was ignored : L : T")."""
    for line in stderr.decode("utf-8", "replace").splitlines():
        if "Dangerous link path" in line:
            _, name, target = (p.strip() for p in [*line.split(" : ", 2), "", ""][:3])
            raise writer.refuse(name or line, f"symlink leads outside the target ({target!r})")


def _first_line(output: bytes) -> str:
    lines = [ln.strip() for ln in output.decode("utf-8", "replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()] or lines
    return errors[0] if errors else "failed"
