"""`judgeeye app`'s server: a child process that stops when `judgeeye app` stops.

Streamlit runs as a child (its own interpreter and signal handling). A signal that stops
`judgeeye app` (SIGTERM, SIGINT from Ctrl-C, SIGHUP when its terminal closes) is passed on, and
a child still there after a grace period is killed, so no server keeps the port. On Linux the
child is also sent SIGTERM when `judgeeye app` dies without passing anything on (kill -9).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

#: how long the server may take to stop after being asked before it is killed
GRACE_SECONDS = 10.0
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))
_PR_SET_PDEATHSIG = 1


def _stop_with(parent_pid: int) -> Callable[[], None]:
    """Runs in the child before exec: SIGTERM when the parent dies (Linux prctl)."""

    def setup() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return setup


def run_until_stopped(cmd: Sequence[str], env: dict[str, str]) -> int:
    """Run ``cmd`` as a child until it ends or this process is told to stop; returns the exit
    status to end with (128 + the signal's number when a signal ended the child)."""
    linux = sys.platform.startswith("linux")
    proc = subprocess.Popen(list(cmd), env=env, preexec_fn=_stop_with(os.getpid()) if linux else None)
    asked_at: list[float] = []

    def pass_on(_signum: int, _frame: object) -> None:
        if not asked_at:
            asked_at.append(time.monotonic())
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # Streamlit stops its server cleanly on SIGTERM

    previous = {sig: signal.signal(sig, pass_on) for sig in STOP_SIGNALS}
    try:
        while True:
            try:
                code = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if asked_at and time.monotonic() - asked_at[0] > GRACE_SECONDS:
                    proc.kill()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # an error here: never leave the server behind
            proc.kill()
            proc.wait()
    return 128 - code if code < 0 else code
