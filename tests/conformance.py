"""Real-world archive variants, made at test time with the real tools (GNU tar, bsdtar, zip,
zstd, 7z) or byte by byte where no tool writes them (encodings, header quirks).

Each builder takes a work folder and returns the archive's path; it calls ``pytest.skip`` when
the tool it needs is missing. test_conformance.py stages each with datastage and compares the
tree with what ``bsdtar -xf`` extracts. The README's "Archive formats and variants" table
lists them.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import struct
import subprocess
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import pytest

from tests.archives import make_rar
from tests.conftest import payload

Builder = Callable[[Path], Path]


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def run(*argv: str, cwd: Path) -> None:
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True)


def run_7z(*argv: str, cwd: Path) -> None:
    """7z builds a variant; a 7z too old for a switch (p7zip 16.02 vs 7-Zip 2x) skips it."""
    done = subprocess.run(["7z", *argv], cwd=cwd, capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"this 7z cannot build the variant: {done.stderr.decode()[-200:]}")


def source_tree(work: Path, long_names: bool = True) -> Path:
    """A small tree: nested folders, an empty folder, a long name, a symlink, a hard link."""
    src = work / "src"
    (src / "data" / "wavs").mkdir(parents=True)
    (src / "data" / "empty").mkdir()
    (src / "data" / "metadata.csv").write_bytes(b"LJ001|hello\n" * 50)
    for i in range(3):
        (src / "data" / "wavs" / f"clip-{i}.wav").write_bytes(payload(20_000 + 333 * i, seed=i))
    if long_names:  # GNU and pax hold any length; ustar and v7 cannot
        (src / "data" / ("long-name-" + "x" * 120 + ".txt")).write_bytes(b"long\n")
    os.symlink("metadata.csv", src / "data" / "latest.csv")
    os.link(src / "data" / "metadata.csv", src / "data" / "hard.csv")
    return src


def sparse_tree(work: Path) -> Path:
    src = work / "src"
    src.mkdir()
    with open(src / "sparse.bin", "wb") as f:
        f.seek(1 << 20)
        f.write(b"data" * 1000)
        f.seek(3 << 20)
        f.write(b"end")
    (src / "small.txt").write_bytes(b"hi\n")
    with open(src / "hole-at-end.bin", "wb") as f:
        f.write(b"start")
        f.truncate(2 << 20)
    return src


# -- tar ---------------------------------------------------------------------------------------


def gnu_tar(fmt: str, *extra: str, sparse: bool = False) -> Builder:
    def build(work: Path) -> Path:
        need("tar")
        src = sparse_tree(work) if sparse else source_tree(work, fmt not in ("ustar", "v7"))
        out = work / f"{fmt}.tar"
        run("tar", f"--format={fmt}", *extra, "-cf", str(out), "-C", str(src), ".", cwd=work)
        return out

    return build


def bsdtar_tar(fmt: str, *extra: str, sparse: bool = False) -> Builder:
    def build(work: Path) -> Path:
        need("bsdtar")
        src = sparse_tree(work) if sparse else source_tree(work, fmt != "ustar")
        out = work / f"bsd-{fmt}.tar"
        run("bsdtar", "--format", fmt, *extra, "-cf", str(out), "-C", str(src), ".", cwd=work)
        return out

    return build


def tar_with_volume_label(work: Path) -> Path:
    need("tar")
    src = source_tree(work)
    out = work / "label.tar"
    run("tar", "-V", "DATASET-2024", "-cf", str(out), "-C", str(src), ".", cwd=work)
    return out


def tar_gnu_incremental(work: Path) -> Path:
    """GNU tar -g: GNU headers whose atime/ctime fill the bytes ustar uses as a name prefix."""
    need("tar")
    src = source_tree(work)
    out = work / "incremental.tar"
    run("tar", "-g", str(work / "snapshot"), "-cf", str(out), "-C", str(src), ".", cwd=work)
    return out


def _raw_header(
    name: bytes, kind: bytes, size: int, magic: bytes = b"ustar\x0000", signed: bool = False
) -> bytes:
    """One tar header; ``signed``: the checksum summed as signed chars (old Unix tars), with a
    high-bit byte in the header so that it differs from the unsigned sum."""
    block = bytearray(512)
    block[: len(name)] = name
    block[100:108] = b"0000644\0"
    block[108:116] = b"0000000\0"
    block[116:124] = b"0000000\0"
    block[124:136] = b"%011o\0" % size
    block[136:148] = b"%011o\0" % 1_700_000_000
    block[156:157] = kind
    block[257:265] = magic
    if signed:
        block[len(name) + 1] = 0xE9  # after the name's NUL: read by no one, summed by all
    block[148:156] = b" " * 8
    total = sum(block) - (256 * sum(1 for b in block if b > 127) if signed else 0)
    block[148:156] = b"%06o\0 " % total
    return bytes(block)


def _member(
    name: bytes, kind: bytes, data: bytes, magic: bytes = b"ustar\x0000", signed: bool = False
) -> bytes:
    pad = -len(data) % 512
    return _raw_header(name, kind, len(data), magic, signed) + data + bytes(pad)


def tar_with_solaris_acl(work: Path) -> Path:
    """A Solaris ``A`` (ACL) member before the file it describes, as Solaris tar writes."""
    acl = b"1000004\0user::rw-,group::r--,mask:r--,other:r--\0"  # POSIX draft ACL, 4 entries
    body = _member(b"notes.txt", b"A", acl) + _member(b"notes.txt", b"0", b"hello\n")
    body += _member(b"dir/", b"5", b"") + _member(b"dir/a.txt", b"0", b"a\n")
    out = work / "acl.tar"
    out.write_bytes(body + bytes(1024))
    return out


def tar_with_odd_first_header(work: Path) -> Path:
    """A v7 header (no magic) whose checksum was summed as signed chars: bsdtar reads it."""
    body = _member(b"odd.txt", b"0", b"odd\n", magic=bytes(8), signed=True)
    body += _member(b"next.txt", b"0", b"next\n")
    out = work / "odd.tar"
    out.write_bytes(body + bytes(1024))
    return out


def tar_with_unknown_type(work: Path) -> Path:
    """A vendor member type (``Q``) with data: POSIX and bsdtar read it as a regular file."""
    body = _member(b"vendor.dat", b"Q", b"vendor data\n") + _member(b"b.txt", b"0", b"b\n")
    out = work / "vendor.tar"
    out.write_bytes(body + bytes(1024))
    return out


def tar_gbk_names(work: Path) -> Path:
    out = work / "gbk-names.tar"
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT, encoding="gbk") as tar:
        for name in ("数据/训练.txt", "数据/测试.txt"):
            info = tarfile.TarInfo(name)
            info.size = len(name.encode())
            tar.addfile(info, io.BytesIO(name.encode()))
    return out


def compressed_tar(compression: str, tool: tuple[str, ...]) -> Builder:
    def build(work: Path) -> Path:
        need("tar", tool[0])
        plain = gnu_tar("gnu")(work)
        out = work / f"data.tar.{compression}"
        with open(plain, "rb") as src, open(out, "wb") as dst:
            subprocess.run([*tool, "-c"], stdin=src, stdout=dst, check=True)
        return out

    return build


def _skippable(payload_bytes: bytes, nibble: int = 0) -> bytes:
    return struct.pack("<II", 0x184D2A50 + nibble, len(payload_bytes)) + payload_bytes


def zstd_with_skippable_frames(work: Path) -> Path:
    """Skippable frames before, between and after real ones (seekable zstd, pzstd write them)."""
    need("tar", "zstd")
    plain = gnu_tar("gnu")(work)
    data = plain.read_bytes()
    half = len(data) // 2

    def zstd(chunk: bytes) -> bytes:
        return subprocess.run(
            ["zstd", "-q", "-c"], input=chunk, capture_output=True, check=True
        ).stdout

    out = work / "skippable.tar.zst"
    out.write_bytes(
        _skippable(b"meta" * 10) + zstd(data[:half]) + _skippable(b"x", 5) + zstd(data[half:])
        + _skippable(b"seek-table", 14)
    )  # fmt: skip
    return out


# -- zip ---------------------------------------------------------------------------------------


def info_zip(*extra: str, name: str = "infozip.zip") -> Builder:
    def build(work: Path) -> Path:
        need("zip")
        src = source_tree(work)
        out = work.absolute() / name
        run("zip", "-q", "-r", "-y", *extra, str(out), ".", cwd=src)
        return out

    return build


def zip_with_stub(fix_offsets: bool) -> Builder:
    """A self-extracting stub before the zip; ``zip -A`` then adjusts the offsets, or not."""

    def build(work: Path) -> Path:
        plain = info_zip(name="inner.zip")(work)
        out = work / ("sfx-fixed.zip" if fix_offsets else "sfx.zip")
        out.write_bytes(b"MZ" + payload(4094, seed=5) + plain.read_bytes())
        if fix_offsets:
            run("zip", "-q", "-A", str(out), cwd=work)
        return out

    return build


def zip_stream(work: Path) -> Path:
    """``zip -`` from a pipe: data descriptors, sizes after the data."""
    need("zip")
    out = work / "stream.zip"
    data = payload(50_000, seed=9)
    with open(out, "wb") as f:
        subprocess.run(["zip", "-q", "-", "-"], input=data, stdout=f, check=True)
    return out


def zip_msdos_dirs(work: Path) -> Path:
    """Folders marked only by the MS-DOS directory attribute 0x10, no trailing '/'."""
    out = work / "msdos.zip"
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in (
            ("def", None),
            ("def/a.txt", b"a\n"),
            ("def/sub", None),
            ("b.txt", b"b"),
        ):
            info = zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0))
            info.create_system = 0
            info.external_attr = 0x10 if data is None else 0x20
            zf.writestr(info, data or b"")
    return out


def _zip_with_raw_names(out: Path, names: list[str], encoding: str) -> Path:
    """Names in ``encoding`` without the UTF-8 flag, as Windows zippers write them."""
    raws = [n.encode(encoding) for n in names]
    holders = [(b"N%d" % i).ljust(len(r), b"_") for i, r in enumerate(raws)]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for holder, name in zip(holders, names):
            zf.writestr(holder.decode(), name.encode("utf-8") * 3)
    data = out.read_bytes()
    for holder, raw in zip(holders, raws):
        data = data.replace(holder, raw)
    out.write_bytes(data)
    return out


def zip_cp936_names(work: Path) -> Path:
    names = ["语音数据/训练集/第一.wav", "语音数据/说明.txt"]
    return _zip_with_raw_names(work / "cp936.zip", names, "gbk")


def zip_cp932_names(work: Path) -> Path:
    names = ["音声データ/テスト.wav", "音声データ/読んでください.txt"]
    return _zip_with_raw_names(work / "cp932.zip", names, "cp932")


def zip_local_name_differs(work: Path) -> Path:
    """The UTF-8 flag only in the central directory: the local header's same UTF-8 bytes then
    read as cp437 ('cafÃ©'), and zipfile refused the member ("... differ")."""
    name, data = "café/menu.txt", b"menu\n"
    local_name = central_name = name.encode("utf-8")
    crc = zlib.crc32(data)
    local = struct.pack(
        "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, len(data), len(data),
        len(local_name), 0,
    ) + local_name + data  # fmt: skip
    central = struct.pack(
        "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0x800, 0, 0, 0, crc, len(data),
        len(data), len(central_name), 0, 0, 0, 0, 0o100644 << 16, 0,
    ) + central_name  # fmt: skip
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local), 0)
    out = work / "local-differs.zip"
    out.write_bytes(local + central + end)
    return out


# -- 7z and RAR --------------------------------------------------------------------------------


def seven_zip(*switches: str, name: str = "data.7z") -> Builder:
    def build(work: Path) -> Path:
        need("7z")
        src = source_tree(work)
        (src / "data" / "hard.csv").unlink()  # 7z stores hard links as copies: bsdtar agrees
        (src / "data" / "prog.bin").write_bytes(
            Path(shutil.which("7z") or "").read_bytes()[:60_000]
        )
        out = work.absolute() / name
        run_7z("a", "-bd", "-snl", *switches, str(out), ".", cwd=src)
        return out

    return build


def rar4_stored(work: Path) -> Path:
    members = [("top", None), ("top/a.txt", b"a" * 3000), ("top/b.bin", payload(40_000, seed=4))]
    out = work / "stored.rar"
    out.write_bytes(make_rar(members))
    return out


# -- formats only libarchive reads (datastage re-packs them through bsdtar) -------------------


def bsdtar_format(*switches: str, name: str, files_only: bool = False) -> Builder:
    def build(work: Path) -> Path:
        need("bsdtar")
        src = source_tree(work)
        out = work.absolute() / name
        if files_only:  # ar holds plain files only
            run("bsdtar", *switches, "-cf", str(out), "metadata.csv", "hard.csv", cwd=src / "data")
        else:
            run("bsdtar", *switches, "-cf", str(out), "-C", str(src), ".", cwd=work)
        return out

    return build


def cpio_odd_names(work: Path) -> Path:
    """Names that begin with a space or hold runs of them, and an owner name with a space,
    in a format read through bsdtar (its listing must be read as bsdtar wrote it)."""
    need("bsdtar")
    tar = work / "odd.tar"
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as out:
        for name in (" lead.txt", "two  spaces.txt", "dir/ inner.txt"):
            info = tarfile.TarInfo(name)
            info.size, info.uname = 3, "a b"
            out.addfile(info, io.BytesIO(b"abc"))
    for fmt, name in (("newc", "odd.cpio"), ("xar", "odd.xar")):
        run("bsdtar", "--format", fmt, "-cf", name, f"@{tar.name}", cwd=work)
    return work.absolute() / "odd.cpio"


def xar_odd_names(work: Path) -> Path:
    return cpio_odd_names(work).with_name("odd.xar")


def gzip_again(builder: Builder) -> Builder:
    """Another gzip layer around what ``builder`` makes (bsdtar peels any number)."""

    def build(work: Path) -> Path:
        inner = builder(work)
        out = inner.with_name(inner.name + ".gz")
        out.write_bytes(gzip.compress(inner.read_bytes()))
        return out

    return build


def seven_zip_zip(method: str) -> Builder:
    """A zip written by 7-Zip; PPMd (method 98) is one zipfile cannot read, bsdtar can."""

    def build(work: Path) -> Path:
        need("7z")
        src = source_tree(work)
        out = work.absolute() / f"7z-{method.lower()}.zip"
        run_7z("a", "-bd", "-tzip", f"-mm={method}", str(out), ".", cwd=src)
        return out

    return build


#: id -> (builder, bsdtar options for the reference extraction)
CASES: dict[str, tuple[Builder, tuple[str, ...]]] = {
    "tar-gnu": (gnu_tar("gnu"), ()),
    "tar-oldgnu": (gnu_tar("oldgnu"), ()),
    "tar-ustar": (gnu_tar("ustar"), ()),
    "tar-pax": (gnu_tar("pax"), ()),
    "tar-v7": (gnu_tar("v7"), ()),
    "tar-bsdtar-pax": (bsdtar_tar("pax"), ()),
    "tar-bsdtar-ustar": (bsdtar_tar("ustar"), ()),
    "tar-sparse-oldgnu": (gnu_tar("oldgnu", "--sparse", sparse=True), ()),
    "tar-sparse-gnu": (gnu_tar("gnu", "--sparse", sparse=True), ()),
    "tar-sparse-pax-0.0": (gnu_tar("pax", "--sparse", "--sparse-version=0.0", sparse=True), ()),
    "tar-sparse-pax-0.1": (gnu_tar("pax", "--sparse", "--sparse-version=0.1", sparse=True), ()),
    "tar-sparse-pax-1.0": (gnu_tar("pax", "--sparse", "--sparse-version=1.0", sparse=True), ()),
    "tar-sparse-bsdtar-pax": (bsdtar_tar("pax", "--read-sparse", sparse=True), ()),
    "tar-volume-label": (tar_with_volume_label, ()),
    "tar-gnu-incremental": (tar_gnu_incremental, ()),
    "tar-solaris-acl": (tar_with_solaris_acl, ()),
    "tar-odd-first-header": (tar_with_odd_first_header, ()),
    "tar-unknown-type": (tar_with_unknown_type, ()),
    "tar-gbk-names": (tar_gbk_names, ("--options", "hdrcharset=CP936")),
    "tar.gz": (compressed_tar("gz", ("gzip",)), ()),
    "tar.bz2": (compressed_tar("bz2", ("bzip2",)), ()),
    "tar.xz": (compressed_tar("xz", ("xz",)), ()),
    "tar.zst": (compressed_tar("zst", ("zstd", "-q")), ()),
    "tar.zst-skippable-frames": (zstd_with_skippable_frames, ()),
    "zip-infozip": (info_zip(), ()),
    "zip-infozip-stored": (info_zip("-0", name="stored.zip"), ()),
    "zip-infozip-bzip2": (info_zip("-Z", "bzip2", name="bzip2.zip"), ()),
    "zip-zip64": (info_zip("-fz", name="zip64.zip"), ()),
    "zip-sfx-stub": (zip_with_stub(False), ()),
    "zip-sfx-stub-zip-A": (zip_with_stub(True), ()),
    "zip-streamed": (zip_stream, ()),
    "zip-msdos-dirs": (zip_msdos_dirs, ()),
    "zip-cp936-names": (zip_cp936_names, ("--options", "hdrcharset=CP936")),
    "zip-cp932-names": (zip_cp932_names, ("--options", "hdrcharset=CP932")),
    "7z-lzma2": (seven_zip(), ()),
    "7z-bcj2": (seven_zip("-mf=BCJ2", name="bcj2.7z"), ()),
    "7z-ppmd": (seven_zip("-m0=PPMd", name="ppmd.7z"), ()),
    "7z-copy": (seven_zip("-m0=Copy", name="copy.7z"), ()),
    "rar4-stored": (rar4_stored, ()),
    "zip-7z-deflate": (seven_zip_zip("Deflate"), ()),
    "zip-7z-ppmd": (seven_zip_zip("PPMd"), ()),
    "cpio-newc": (bsdtar_format("--format", "newc", name="data.cpio"), ()),
    "cpio-odc": (bsdtar_format("--format", "odc", name="odc.cpio"), ()),
    "ar": (bsdtar_format("--format", "ar", name="data.a", files_only=True), ()),
    "iso9660": (bsdtar_format("--format", "iso9660", name="data.iso"), ()),
    "tar.Z": (bsdtar_format("-Z", name="data.tar.Z"), ()),
    "tar.lz4": (bsdtar_format("--lz4", name="data.tar.lz4"), ()),
    "tar.lz": (bsdtar_format("--lzip", name="data.tar.lz"), ()),
    "cpio-odd-names": (cpio_odd_names, ()),
    "xar-odd-names": (xar_odd_names, ()),
    "tar.lzma": (bsdtar_format("--lzma", name="data.tar.lzma"), ()),
    # not a tar inside gz/bz2/xz/zst: bsdtar unpacks it, never one opaque decompressed file
    "cpio.gz": (bsdtar_format("--format", "newc", "-z", name="data.cpio.gz"), ()),
    "cpio.lzma": (bsdtar_format("--format", "odc", "--lzma", name="data.cpio.lzma"), ()),
    "ar.xz": (bsdtar_format("--format", "ar", "-J", name="data.a.xz", files_only=True), ()),
    "zip.bz2": (bsdtar_format("--format", "zip", "-j", name="data.zip.bz2"), ()),
    "iso9660.zst": (bsdtar_format("--format", "iso9660", "--zstd", name="data.iso.zst"), ()),
    "tar.gz.gz": (gzip_again(bsdtar_format("-z", name="data.tgz")), ()),
}

#: Formats whose damaged variants (truncated, bit-flipped) are checked.
DAMAGED = ["tar-gnu", "tar.gz", "tar.bz2", "tar.xz", "tar.zst", "zip-infozip", "7z-lzma2",
           "rar4-stored", "tar-sparse-pax-1.0", "cpio-newc", "tar.lz4"]  # fmt: skip


def truncated(data: bytes) -> bytes:
    return data[: len(data) * 3 // 5]


def bit_flipped(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0x20 for b in data[middle : middle + 16]) + data[middle + 16 :]
