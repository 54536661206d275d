"""System tools (7z, bsdtar) as extraction back ends, held to SafeWriter's rules.

Owns: running a tool so that it can never write outside our folder, and bringing what it wrote
under SafeWriter. Both tools are used the same way: list the members first (``7z l -slt``,
``bsdtar -tv``) and refuse the archive on any unsafe name, special member, member beneath a
symlink member or hard link to a non-member; extract into a private folder inside the partial
folder; a non-zero exit is a damaged archive; then walk what the tool really wrote (lstat,
never following links), refuse anything not listed or special, move each file into place
through SafeWriter, which hashes it in a worker thread, and fail naming any listed member the
tool did not write. (bsdtar is never used to re-pack an archive as a tar stream: that exits 0
on a zip member with a bad CRC and drops the data of cpio hard links.)

A tool's child process dies with us (PR_SET_PDEATHSIG), so a kill -9 leaves no writer behind
in a partial folder the next run deletes.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.errors import UnsafeArchiveMember
from ..core.fsutil import remove_tree
from .streams import BadData, child_dies_with_us
from .tarfmt import MAX_LINK_TARGET
from .writer import SafeWriter


def seven_zip() -> Optional[str]:
    """The 7-Zip command on PATH (7z from p7zip-full, 7zz from 7zip, 7za), or None."""
    for name in ("7z", "7zz", "7za"):
        found = shutil.which(name)
        if found:
            return found
    return None


def bsdtar() -> Optional[str]:
    return shutil.which("bsdtar")


# -- bsdtar: any libarchive format, extracted privately and checked like 7z ------------------

#: bsdtar converts member names to the locale's charset: UTF-8, whatever the caller's locale.
_UTF8_LOCALE = {"LC_ALL": "C.UTF-8"}


def extract_with_bsdtar(
    archive: Path,
    writer: SafeWriter,
    backslash_separates: bool = False,
    crcs: Optional[dict[str, int]] = None,
) -> None:
    """Any format libarchive reads: list and check its members, ``bsdtar -x`` into a private
    folder, check what it wrote against the listing, then move it into place.

    Not a re-packed tar stream (``bsdtar -c @archive``): that exits 0 on a zip member whose
    CRC is wrong and drops the data of cpio hard links. ``crcs`` (name -> CRC-32): checked
    before adoption, for RAR members whose CRC libarchive does not check.
    """
    tool = bsdtar()
    if tool is None:
        from ..core.errors import MissingDependency

        raise MissingDependency(
            f"{writer.archive} is in a format datastage reads through bsdtar",
            hint="install it: apt-get install libarchive-tools",
        )
    members = list_bsdtar_members(tool, archive, backslash_separates)
    check_listing(members, writer)
    listed = {writer.check_name(m.name): m for m in members}
    private = Path(tempfile.mkdtemp(dir=writer.root, prefix=".datastage-bsdtar-"))
    try:
        done = subprocess.run(
            [tool, "-x", "-f", str(archive), "-C", str(private), "--no-same-owner", "-o"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=child_dies_with_us,
            env={**os.environ, **_UTF8_LOCALE},
        )
        if done.returncode != 0:
            raise BadData("bsdtar: " + _first_line(done.stderr))
        if crcs:
            _check_crcs(private, crcs, backslash_separates)
        seen = _adopt_tree(private, listed, writer, {}, backslash_separates)
        _check_complete(listed, seen, writer)
    finally:
        remove_tree(private)


extract_any = extract_with_bsdtar  # formats only libarchive reads (libarchive.py)


def _check_crcs(private: Path, crcs: dict[str, int], backslash_separates: bool) -> None:
    for folder, _dirs, files in os.walk(private):
        for name in files:
            path = Path(folder) / name
            rel = path.relative_to(private).as_posix()
            rel = rel.replace("\\", "/") if backslash_separates else rel
            if rel not in crcs or path.is_symlink():
                continue
            crc = 0
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    crc = zlib.crc32(chunk, crc)
            if crc != crcs[rel]:
                raise BadData(f"member {rel!r} fails its CRC check (damaged)")


_BSDTAR_KINDS = {"d": "dir", "-": "file", "l": "symlink", "h": "file"}
#: ``mode links owner group size date name``: anchored on the date (``%b %e %H:%M`` or
#: ``%b %e  %Y``, C.UTF-8), so that owner names with spaces and names that begin with one
#: are read as bsdtar wrote them.
_BSDTAR_LINE = re.compile(
    r"\S{10}\S?\s+\d+\s+.*?\s(?P<size>\S+)"
    r" [A-Z][a-z]{2} [ \d]\d (?:[ \d]\d:\d\d| \d{4}) (?P<name>.*)\Z"
)


def list_bsdtar_members(
    tool: str, archive: Path, backslash_separates: bool = False
) -> list[Listed]:
    """Members as ``bsdtar -tv`` lists them (kind from the mode's first letter)."""
    done = subprocess.run(
        [tool, "-t", "-v", "-f", str(archive)],
        capture_output=True,
        preexec_fn=child_dies_with_us,
        env={**os.environ, **_UTF8_LOCALE},
    )
    if done.returncode != 0:
        raise BadData("bsdtar: " + _first_line(done.stderr))
    members = []
    for line in done.stdout.decode("utf-8", "surrogateescape").splitlines():
        fields = _BSDTAR_LINE.match(line)
        if fields is None:
            continue
        kind = _BSDTAR_KINDS.get(line[:1], "special")
        name, target, symlink_to = fields["name"], "", ""
        if kind == "symlink" and " -> " in name:
            name, symlink_to = name.split(" -> ", 1)
        elif " link to " in name:
            name, target = name.split(" link to ", 1)
        if backslash_separates:
            name, target = name.replace("\\", "/"), target.replace("\\", "/")
        size = int(fields["size"]) if fields["size"].isdigit() else 0
        members.append(Listed(name, size, kind, target, symlink_to))
    return members


# -- 7z: list, check, extract privately, re-check, adopt --------------------------------------


@dataclass(frozen=True)
class Listed:
    name: str
    size: int
    kind: str  # "file", "dir", "symlink", or "special"
    hardlink_to: str = ""  # a hard link's target (bsdtar listings show them)
    symlink_to: str = ""  # a symbolic link's target, when the listing shows it


def list_7z(tool: str, archive: Path, backslash_separates: bool = False) -> list[Listed]:
    """Members as 7z reports them (``-slt``: one ``Key = value`` block per member).

    ``backslash_separates``: a '\\' in a name is a folder separator (7z archives: py7zr reads
    them so, and datastage gives one tree whatever the back end)."""
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
        path = fields["Path"].replace("\\", "/") if backslash_separates else fields["Path"]
        members.append(Listed(path, int(fields.get("Size") or 0), _kind(fields.get("Attributes"))))
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
        if len(m.symlink_to.encode("utf-8", "surrogateescape")) > MAX_LINK_TARGET:
            raise writer.refuse(m.name, f"symlink target longer than {MAX_LINK_TARGET} bytes")
        if m.kind == "special":
            writer.special(m.name, "device, FIFO or socket")
        if m.kind == "symlink":
            links.add(writer.check_name(m.name))
    names = {writer.check_name(m.name) for m in members}
    for m in members:
        parts = writer.check_name(m.name).split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in links:
                raise writer.refuse(m.name, "would be written through a symlink member")
        if m.hardlink_to:  # the tool would link to it on disk: it must be one of ours
            try:
                target = writer.check_name(m.hardlink_to)
            except UnsafeArchiveMember:
                raise writer.refuse(m.name, f"hard link to {m.hardlink_to!r}") from None
            if target not in names or target in links:
                raise writer.refuse(m.name, f"hard link to {m.hardlink_to!r}, not a member")


def extract_7z(
    tool: str, archive: Path, writer: SafeWriter, backslash_separates: bool = False
) -> None:
    members = list_7z(tool, archive, backslash_separates)
    check_listing(members, writer)
    listed = {writer.check_name(m.name): m for m in members}
    private = Path(tempfile.mkdtemp(dir=writer.root, prefix=".datastage-7z-"))
    try:
        done = subprocess.run(
            # -spd off: names were checked above
            [tool, "x", "-y", "-bd", "-bb0", "-p", f"-o{private}", str(archive)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=child_dies_with_us,
        )
        links = _links_7z_declined(done.stderr)
        if done.returncode != 0 and not (links and _only_declined_links(done.stderr)):
            raise BadData("7z: " + _first_line(done.stderr))
        seen = _adopt_tree(private, listed, writer, links, backslash_separates)
        _check_complete(listed, seen, writer)
    finally:
        remove_tree(private)


def _check_complete(listed: dict[str, Listed], seen: set[str], writer: SafeWriter) -> None:
    """A tool that exits 0 but leaves out a member its listing promised is a damaged archive."""
    missing = sorted(rel for rel, m in listed.items() if rel and rel not in seen)
    if missing:
        raise BadData(
            f"member {missing[0]!r} is listed but was not extracted"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )


def _adopt_tree(
    private: Path,
    listed: dict[str, Listed],
    writer: SafeWriter,
    links: dict[str, str],
    backslash_separates: bool,
) -> set[str]:
    """Walk what the tool wrote (never following links) and hand it to the writer."""
    implied = {rel.rsplit("/", i)[0] for rel in listed for i in range(1, rel.count("/") + 1)}
    seen: set[str] = set()
    for folder, dirs, files in os.walk(private):
        for name in sorted(dirs) + sorted(files):
            path = Path(folder) / name
            on_disk = path.relative_to(private).as_posix()
            rel = on_disk.replace("\\", "/") if backslash_separates else on_disk
            st = os.lstat(path)
            member = listed.get(rel)
            if member is None and stat.S_ISDIR(st.st_mode) and rel in implied:
                member = Listed(rel, 0, "dir")  # a parent folder the archive does not list
            if member is None:
                raise writer.refuse(rel, "written by the tool but not in the archive's listing")
            seen.add(rel)
            if on_disk in links:  # 7z declined to make it: our rules decide instead
                writer.symlink(rel, links[on_disk])
            elif stat.S_ISDIR(st.st_mode):
                writer.directory(rel)
            elif stat.S_ISLNK(st.st_mode):
                writer.symlink(rel, os.readlink(path))
                if name in dirs:
                    dirs.remove(name)
            elif stat.S_ISREG(st.st_mode) and member.kind == "symlink":
                if st.st_size > MAX_LINK_TARGET:
                    raise writer.refuse(rel, f"symlink target longer than {MAX_LINK_TARGET} bytes")
                writer.symlink(rel, path.read_bytes().decode("utf-8", "surrogateescape"))
            elif stat.S_ISREG(st.st_mode):
                writer.adopt(rel, path, st.st_mode)
            else:
                writer.special(rel, "device, FIFO or socket")
    return seen


_DECLINED = "Dangerous link path was ignored"


def _links_7z_declined(stderr: bytes) -> dict[str, str]:
    """7-Zip declines links it finds "dangerous" (even ``lnk -> .``) and leaves an empty file:
    name -> target, so SafeWriter's rules (the same as for py7zr and bsdtar) decide."""
    links = {}
    for line in stderr.decode("utf-8", "surrogateescape").splitlines():
        if _DECLINED in line:
            parts = [p.strip() for p in line.split(" : ")]
            if len(parts) >= 3:
                links[parts[1]] = " : ".join(parts[2:])
    return links


def _only_declined_links(stderr: bytes) -> bool:
    errors = [
        ln
        for ln in stderr.decode("utf-8", "replace").splitlines()
        if ln.strip() and "error" in ln.lower()
    ]
    return all(_DECLINED in ln for ln in errors)


def _first_line(output: bytes) -> str:
    """The tool's first real complaint (not bsdtar's closing "Error exit delayed ...")."""
    lines = [ln.strip() for ln in output.decode("utf-8", "replace").splitlines() if ln.strip()]
    lines = [ln.removeprefix("bsdtar: ") for ln in lines if "exit delayed" not in ln] or lines
    errors = [ln for ln in lines if "error" in ln.lower()] or lines
    return errors[0] if errors else "failed"
