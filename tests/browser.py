"""Shared plumbing for the browser tests: `streamlit run app.py` on a free loopback port, Debian's
chromium driven by Playwright (no browser download), waiting on the store, and a full-page
screenshot kept under the test's tmp folder when a step fails."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from waiting import wait_for  # noqa: F401 - the browser tests import it from here

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_app(log_dir: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """The app as users start it, on loopback; yields its URL. Skips where chromium is absent."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (scripts/install.sh --dev installs it)")
    port = _free_port()
    log_path = log_dir / "streamlit.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=REPO, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise AssertionError("streamlit did not start: " + log_path.read_text()[-3000:])
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def browser_page(tmp_path: Path, name: str) -> Iterator[Any]:
    """A chromium page with generous timeouts (a first run on two busy cores takes seconds); on
    failure a full-page screenshot is written to ``tmp_path/<name>-failure.png``."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)
        try:
            yield page
        except BaseException:
            shot = tmp_path / f"{name}-failure.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}\nserver log: {tmp_path / 'streamlit.log'}")
            raise
        finally:
            browser.close()


def log_in(page: Any, name: str, password: str) -> None:
    """Fill the login form; the caller checks where the user lands."""
    page.get_by_role("textbox", name="Name").fill(name)
    box = page.get_by_role("textbox", name="Password")
    box.fill(password)
    box.press("Enter")


def settled(page: Any) -> None:
    """Wait until the app is not running a script (a click mid-rerun can reach a replaced widget)."""
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stStatusWidget")).to_be_hidden()
    page.wait_for_timeout(300)


def enter(page: Any, field: Any, text: str) -> None:
    """Type into a text field and leave it (Streamlit commits a text box's value on blur), then
    wait for the rerun that follows."""
    field.fill(text)
    field.press("Tab")
    settled(page)
