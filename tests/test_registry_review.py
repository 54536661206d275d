"""Review of the registry's breadth (issue 16): the compact ``list`` table on a terminal."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _on_a_terminal(columns: int, *args: str) -> list[str]:
    """``datastage ARGS`` with its output on a real pseudo-terminal ``columns`` wide."""
    import fcntl
    import pty
    import struct
    import termios

    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb"}
    with subprocess.Popen(
        [sys.executable, "-m", "datastage", *args], stdout=child, stderr=child, env=env
    ) as p:
        os.close(child)
        out = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert p.wait(30) == 0, out.decode(errors="replace")
    os.close(main)
    return out.decode().replace("\r\n", "\n").splitlines()


@pytest.mark.xfail(
    strict=True,
    reason="cli/main.py _table: NAME..TAGS alone are ~90 columns and the description keeps at "
    "least 20, so every line of `list` wraps on an 80-column terminal",
)
def test_list_fits_an_80_column_terminal():
    lines = _on_a_terminal(80, "list")
    assert len(lines) > 30
    too_wide = [line for line in lines if len(line) > 80]
    assert not too_wide, f"{len(too_wide)} of {len(lines)} lines wrap, e.g. {too_wide[0]!r}"
    assert any(line.startswith("librispeech ") for line in lines)
