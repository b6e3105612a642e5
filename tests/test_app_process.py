"""`judgeeye app` and the processes it starts, as real processes: stopping it stops its server,
and job workers it starts (detached on purpose, so they outlive page reloads and app restarts)
are reaped when they end, never left defunct."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from judgeeye.jobs import create_job, start_job
from judgeeye.store import Job, session_scope
from waiting import wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) from /proc, or None when the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _processes_in_group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[2] == pgid:
                pids.append(int(entry.name))
    return pids


def _children(pid: int) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and (s := _stat(int(p.name))) is not None and s[1] == pid]


def _serving(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok"
    except OSError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_sigterm_stops_the_app_and_everything_in_it(store_url: str, tmp_path: Path) -> None:
    port = _free_port()
    log = (tmp_path / "app.log").open("w")
    # its own process group, so that what is left of it afterwards can be found
    app = subprocess.Popen([sys.executable, "-m", "judgeeye.cli", "app", "--port", str(port), "--no-sample"],
                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ})
    try:
        wait_for(lambda: _serving(port) or app.poll() is not None, "the app to serve", timeout=120)
        assert app.poll() is None, (tmp_path / "app.log").read_text()
        server = _children(app.pid)
        assert server, "the server runs as a child of judgeeye app"
        app.send_signal(signal.SIGTERM)
        code = app.wait(timeout=30)
        wait_for(lambda: not _port_open(port), "the port to close", timeout=15)
        wait_for(lambda: not _processes_in_group(app.pid), "no process of the app left", timeout=15)
        assert all(_stat(pid) is None for pid in server)
        assert code == 0, (tmp_path / "app.log").read_text()  # stopped cleanly, not killed
    finally:
        if app.poll() is None:
            app.kill()
        for pid in _processes_in_group(app.pid):
            os.kill(pid, signal.SIGKILL)
        log.close()


def test_a_finished_job_worker_is_reaped_by_its_starter(store_url: str) -> None:
    """The app's server starts job workers and lives on: a worker that ended must not stay a
    defunct child of it. (A job that fails at once: its run does not exist.)"""
    with session_scope() as session:
        job_id = create_job(session, "sample", {"run_id": 999_999}).id
    pid = start_job(job_id)
    assert pid is not None
    wait_for(lambda: _stat(pid) is None or _stat(pid)[0] == "Z", "the worker to end", timeout=120)
    wait_for(lambda: _stat(pid) is None, "the ended worker to be reaped (not left defunct)", timeout=10)
    with session_scope() as session:
        assert session.get(Job, job_id).status == "failed"
