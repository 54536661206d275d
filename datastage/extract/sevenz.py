"""7z and RAR: system tools when installed (faster), py7zr as the pure-Python path for 7z.

Owns: choosing the back end and reading members into SafeWriter.

Measured on 2 cores (116 MB of WAV, 91 MB .7z, one solid LZMA2 block): ``7z x`` 5.1 s,
py7zr 6.5 s, ``bsdtar`` re-packing to tar 5.7 s. So 7z goes to ``7z`` when installed, else
py7zr, else bsdtar. RAR has no Python reader we trust: ``7z`` (it checks CRCs of stored
members, libarchive does not), else bsdtar (streamed through our tar reader), else
MissingDependency with the install hint.
"""

from __future__ import annotations

import lzma
import os
from pathlib import Path
from typing import Any, Optional, cast

from ..core.errors import (
    CorruptArchive,
    MissingDependency,
    UnsupportedArchive,
    install_hint,
    raised_in,
)
from ..core.text import one_line
from . import external
from .streams import BadData
from .tarfmt import MAX_LINK_TARGET
from .writer import MemberSink, SafeWriter

BACKEND_ENV = "DATASTAGE_7Z"  # "py7zr", "7z" or "bsdtar": force one (benchmarks, tests)
INSTALL_HINT = "install one: apt-get install libarchive-tools (or 7zip / p7zip-full)"


def extract_7z(path: Path, writer: SafeWriter) -> None:
    """The first back end that is installed (or forced) and reads this archive's methods.

    Every back end gives the same tree: '\\' in a 7z name is a folder separator (py7zr
    reads it so), and links are judged by SafeWriter's rules alone.
    """
    choice = os.environ.get(BACKEND_ENV, "")
    tool = external.seven_zip()
    if tool and choice in ("", "7z"):
        external.extract_7z(tool, path, writer, backslash_separates=True)
        return
    if choice in ("", "py7zr") and _have_py7zr():
        unreadable = _py7zr_cannot_read(path)
        if not unreadable:
            _extract_py7zr(path, writer)
            return
        if choice or not external.bsdtar():
            raise UnsupportedArchive(
                f"{writer.archive} uses 7z methods py7zr cannot read ({', '.join(unreadable)})",
                hint="install the 7z tool or bsdtar (apt-get install 7zip or libarchive-tools); "
                "datastage uses them automatically",
            )
    if external.bsdtar() and choice in ("", "bsdtar"):
        external.extract_with_bsdtar(path, writer, backslash_separates=True)
        return
    raise MissingDependency(
        f"{writer.archive} is a 7z archive; reading it needs py7zr or a 7z tool",
        hint=f"{install_hint('7z')} (or apt-get install 7zip / p7zip-full)",
    )


#: 7z coders and filters py7zr does not implement, by the names py7zr reports.
PY7ZR_UNREADABLE = {"BCJ2", "LZ4", "LIZARD", "LZ5", "BROTLI", "ZSTD", "ARM64", "RISCV", "SPARC"}


def _py7zr_cannot_read(path: Path) -> list[str]:
    """The archive's methods py7zr cannot decode, found before anything is written."""
    listing = _py7zr_listing(path)
    names = listing[0] if listing else []  # a damaged one: the extraction says how
    return [n for n in names if n.split(":")[0].rstrip("*").upper() in PY7ZR_UNREADABLE]


def _py7zr_listing(path: Path) -> Optional[tuple[list[str], int]]:
    """The methods and unpacked size py7zr reads in the header; None if it refuses it."""
    import py7zr

    try:
        with py7zr.SevenZipFile(path) as archive:
            info = archive.archiveinfo()
            return list(info.method_names), int(info.uncompressed)
    except Exception as e:
        if _py7zr_refused(e):
            return None
        raise  # a bug: ours, or py7zr's on a file it should have read


def _py7zr_refused(e: BaseException) -> bool:
    """py7zr's answer to a damaged, truncated, encrypted or hostile archive: its own errors,
    and the TypeError, IndexError, AssertionError... its header parser raises on crafted
    bytes (raised in py7zr's code, not in datastage's)."""
    import py7zr.exceptions

    refusals = (py7zr.exceptions.ArchiveError, py7zr.exceptions.PasswordRequired)
    if isinstance(e, (*refusals, lzma.LZMAError, EOFError, ValueError)):
        return True
    return raised_in(e, os.path.dirname(os.path.abspath(py7zr.__file__)))


def extract_rar(path: Path, writer: SafeWriter) -> None:
    # 7z first: it checks the CRC of stored members, which libarchive does not.
    tool = external.seven_zip()
    if tool and os.environ.get(BACKEND_ENV, "") in ("", "7z"):
        external.extract_7z(tool, path, writer)
        return
    if external.bsdtar():
        from .rarinfo import file_crcs

        external.extract_with_bsdtar(path, writer, crcs=file_crcs(path))
        return
    raise MissingDependency(
        f"{writer.archive} is a RAR archive; datastage reads RAR through a system tool",
        hint=INSTALL_HINT,
    )


def declared_size(path: Path) -> Optional[int]:
    """Bytes the listing promises; None when it cannot be read (the extraction then reports
    the damage in its own words)."""
    tool = external.seven_zip()
    if tool:
        try:
            return sum(m.size for m in external.list_7z(tool, path))
        except (BadData, OSError, ValueError):  # 7z refused it, or listed a size that is not one
            return None
    if _have_py7zr():
        listing = _py7zr_listing(path)
        return listing[1] if listing else None
    return None


def _have_py7zr() -> bool:
    try:
        import py7zr  # noqa: F401
    except ImportError:
        return False
    return True


def _extract_py7zr(path: Path, writer: SafeWriter) -> None:
    import py7zr.exceptions

    try:
        _extract_py7zr_checked(path, writer)
    except py7zr.exceptions.PasswordRequired as e:
        raise UnsupportedArchive(
            f"{writer.archive} is encrypted; password-protected 7z archives are not supported"
        ) from e
    except py7zr.exceptions.UnsupportedCompressionMethodError as e:
        raise UnsupportedArchive(
            f"{writer.archive} uses a 7z method py7zr cannot read: {one_line(e)}",
            hint="install the 7z tool or bsdtar (apt-get install 7zip or libarchive-tools); "
            "datastage uses them automatically",
        ) from e
    except (py7zr.exceptions.ArchiveError, lzma.LZMAError, EOFError, ValueError) as e:
        # py7zr's base ArchiveError covers Bad7zFile, CrcError, DecompressionError, ...
        raise CorruptArchive(
            f"{writer.archive} is damaged or truncated (7z): {one_line(e)}",
            hint="delete it from the cache if this persists; re-run to download it again",
            path=writer.archive,
        ) from e


def _extract_py7zr_checked(path: Path, writer: SafeWriter) -> None:
    import py7zr
    import py7zr.io

    class Factory(py7zr.io.WriterFactory):
        def create(self, filename: str) -> py7zr.io.Py7zIO:
            if filename in links:
                return cast(py7zr.io.Py7zIO, _LinkTarget(writer, filename))
            sink = writer.sink(filename, modes.get(filename, 0o644))
            return cast(py7zr.io.Py7zIO, _SinkIO(sink))

    with py7zr.SevenZipFile(path) as archive:
        links = set()
        modes: dict[str, int] = {}
        for f in archive.files:  # refuse before anything is written
            writer.check_name(f.filename)
            if f.is_socket or f.is_junction:
                writer.special(f.filename, "socket or junction")
            if f.is_directory:
                writer.directory(f.filename)
            elif f.is_symlink:
                if int(f.uncompressed or 0) > MAX_LINK_TARGET:  # refused before it is read
                    raise writer.refuse(
                        f.filename, f"symlink target longer than {MAX_LINK_TARGET} bytes"
                    )
                links.add(f.filename)
            else:
                modes[f.filename] = int(getattr(f, "posix_mode", None) or 0o644)
        archive.extract(factory=Factory())


class _SinkIO:
    """py7zr pushes each member's bytes here; SafeWriter's sink writes and hashes them."""

    def __init__(self, sink: Optional[MemberSink]) -> None:
        self._sink = sink
        self._size = 0

    def write(self, s: Any) -> int:
        self._size += len(s)
        return self._sink.write(bytes(s)) if self._sink else len(s)

    def read(self, size: Optional[int] = None) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def flush(self) -> None:
        pass

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()


class _LinkTarget(_SinkIO):
    """A symlink member's content is its target; SafeWriter creates links last, checked."""

    def __init__(self, writer: SafeWriter, name: str) -> None:
        super().__init__(None)
        self._writer = writer
        self._name = name
        self._data = bytearray()
        self._too_long = False

    def write(self, s: Any) -> int:
        if len(self._data) + len(s) > MAX_LINK_TARGET:  # never held whole: refused at once
            self._too_long = True
            raise self._writer.refuse(
                self._name, f"symlink target longer than {MAX_LINK_TARGET} bytes"
            )
        self._data += s
        return len(s)

    def close(self) -> None:
        if not self._too_long:
            self._writer.symlink(self._name, self._data.decode("utf-8", "surrogateescape"))
