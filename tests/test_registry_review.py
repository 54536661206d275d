"""Review of the registry's breadth (issue 16): the compact ``list`` table on a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import run_cli


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


@pytest.mark.parametrize("columns", [80, 100, 160])
def test_list_fits_the_terminal(columns):
    """NAME..TAGS alone were ~90 columns and the description kept at least 20: every line of
    `list` wrapped on an 80-column terminal."""
    lines = _on_a_terminal(columns, "list")
    assert len(lines) > 30
    too_wide = [line for line in lines if len(line) > columns]
    assert not too_wide, f"{len(too_wide)} of {len(lines)} lines wrap, e.g. {too_wide[0]!r}"
    assert any(line.startswith("librispeech ") for line in lines)
    if columns >= 160:  # room for everything: nothing cut
        assert any("LibriSpeech ASR corpus" in line for line in lines)


def test_tags_given_with_commas_are_each_a_tag():
    rows = run_cli("list", "--tag", "zh,tts").stdout.splitlines()[1:]
    assert {line.split()[0] for line in rows} == {"aishell3", "bznsyp", "css10"}


def test_the_whole_of_librilight_is_not_3_tb():
    whole = run_cli("info", "librilight", "--json")
    assert [f["name"] for f in json.loads(whole.stdout)["files"]] == ["small.tar"]
