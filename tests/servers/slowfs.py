"""A real slow mount: a read-only FUSE passthrough that adds latency per open and caps bandwidth.

    with SlowMount(source_dir, mount_point, open_latency=0.005, rate=20e6):
        ...  # mount_point shows source_dir, like a Google Drive / network mount

Runs ``python -m tests.servers.slowfs SRC MNT --latency S --rate B`` in a subprocess (fusepy,
libfuse 2) so a crash of the test never leaves a hung mount in the test process. ``available()``
says whether this machine can mount FUSE at all (device, library, permission); tests skip
otherwise. Latency is paid on every open, stat-heavy listing gets a smaller one (like Drive's
metadata cache), and reads share one token bucket: a mount is a single link, not one per file.
"""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

FUSE_SUPER_MAGIC = 0x65735546


def available() -> Optional[str]:
    """None when FUSE mounts work here, else the reason they do not."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    try:
        import fuse  # noqa: F401  (fusepy: raises OSError when libfuse is missing)
    except (ImportError, OSError) as e:
        return f"fusepy/libfuse unavailable: {e}"
    return None


class SlowMount:
    def __init__(
        self,
        source: Path,
        mount_point: Path,
        open_latency: float = 0.005,
        rate: Optional[float] = None,
        stat_latency: float = 0.0,
    ) -> None:
        self.source = source
        self.mount_point = mount_point
        self.args = [
            sys.executable,
            "-m",
            "tests.servers.slowfs",
            str(source),
            str(mount_point),
            "--latency",
            str(open_latency),
            "--stat-latency",
            str(stat_latency),
        ]
        if rate:
            self.args += ["--rate", str(rate)]
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def __enter__(self) -> Path:
        self.mount_point.mkdir(parents=True, exist_ok=True)
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(self.args, cwd=root, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if os.path.ismount(self.mount_point):
                return self.mount_point
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise OSError(f"FUSE mount failed: {err.strip()[-300:]}")
            time.sleep(0.05)
        self.__exit__()
        raise OSError("FUSE mount did not appear within 15 s")

    def __exit__(self, *exc: Any) -> None:
        for tool in ("fusermount", "fusermount3", "umount"):
            args = [tool, "-u", str(self.mount_point)] if tool != "umount" else [tool, "-l"]
            if tool == "umount":
                args.append(str(self.mount_point))
            try:
                if subprocess.run(args, capture_output=True).returncode == 0:
                    break
            except FileNotFoundError:
                continue
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _Bucket:
    def __init__(self, rate: Optional[float]) -> None:
        self.rate = rate
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def take(self, n: int) -> None:
        if not self.rate:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_free)
            self.next_free = start + n / self.rate
            wait = self.next_free - now
        if wait > 0:
            time.sleep(wait)


def _serve(source: str, mount_point: str, latency: float, stat_latency: float, rate: Any) -> None:
    from fuse import FUSE, FuseOSError, Operations

    bucket = _Bucket(rate)

    class Passthrough(Operations):  # type: ignore[misc]
        def _full(self, path: str) -> str:
            return os.path.join(source, path.lstrip("/"))

        def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
            if stat_latency:
                time.sleep(stat_latency)
            try:
                st = os.lstat(self._full(path))
            except OSError as e:
                raise FuseOSError(e.errno) from e
            keys = ("st_mode", "st_size", "st_mtime", "st_atime", "st_ctime", "st_nlink")
            out = {k: getattr(st, k) for k in keys}
            out.update(st_uid=st.st_uid, st_gid=st.st_gid)
            return out

        def readdir(self, path: str, fh: Any) -> list[str]:
            return [".", "..", *os.listdir(self._full(path))]

        def open(self, path: str, flags: int) -> int:
            if flags & (os.O_WRONLY | os.O_RDWR):
                raise FuseOSError(errno.EROFS)
            time.sleep(latency)  # a round trip to the remote side per file
            return os.open(self._full(path), os.O_RDONLY)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            data = os.pread(fh, size, offset)
            bucket.take(len(data))
            return data

        def release(self, path: str, fh: int) -> None:
            os.close(fh)

        def statfs(self, path: str) -> dict[str, Any]:
            st = os.statvfs(source)
            keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree")
            return {k: getattr(st, k) for k in (*keys, "f_files", "f_frsize", "f_namemax")}

    FUSE(Passthrough(), mount_point, foreground=True, nothreads=False, ro=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("mount_point")
    parser.add_argument("--latency", type=float, default=0.005)
    parser.add_argument("--stat-latency", type=float, default=0.0)
    parser.add_argument("--rate", type=float, default=None)
    a = parser.parse_args()
    _serve(a.source, a.mount_point, a.latency, a.stat_latency, a.rate)


if __name__ == "__main__":
    main()
