"""Helpers for tests that watch real processes: wait for an observable state, kill -9."""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Callable, Optional


def wait_for(
    condition: Callable[[], bool],
    proc: Optional[subprocess.Popen] = None,  # type: ignore[type-arg]
    timeout: float = 30,
    what: str = "condition",
) -> None:
    """Poll ``condition`` until true; fail if ``proc`` ends first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr is not None else ""
            raise AssertionError(f"process ended before {what}: {proc.returncode} {err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s")
        time.sleep(0.01)


def kill9(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """SIGKILL: no cleanup code of the process runs. Checks it really died of it."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, proc.returncode
