"""Can we write where we will write? Asked before any network access, so an unwritable ``--to``
or cache is reported at once, not after minutes of downloading (or of retrying a dead host).

Asking the permission bits is not enough (root passes ``os.access`` on a read-only mount and
on ``/sys``): the nearest existing folder of each path gets a real probe, a hidden folder made
and removed at once. A failure raises the ``OSError`` with the user's path as its file name,
which the CLI reports as one ``error:`` line with a hint (a bad path).
"""

from __future__ import annotations

import errno
import os
import tempfile
from typing import Optional, Union

from .fsutil import user_path

PathLike = Union[str, "os.PathLike[str]"]


def check(*paths: Optional[PathLike]) -> None:
    """Raise the OSError of the first path (a folder, existing or to be made) we cannot write."""
    for raw in paths:
        if raw is None:
            continue
        path = user_path(os.fspath(raw)).absolute()
        ancestor = path
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(ancestor))
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".datastage-write-test-", dir=ancestor))
        except OSError as e:
            raise type(e)(e.errno, f"cannot write there ({e.strerror})", str(path)) from e
