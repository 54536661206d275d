"""Running the real CLI entry point inside the test process (fast; same code as the console
script). Subprocess runs live in ``conftest.run_cli``."""

from __future__ import annotations

import pytest

from datastage.cli.main import main


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``datastage ARGS`` via ``datastage.cli.main``: (exit code, stdout, stderr)."""
    capsys.readouterr()  # start from a clean slate
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    code = done.value.code
    return (code if isinstance(code, int) else 1), out, err
