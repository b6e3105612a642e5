"""Shared plumbing for the browser tests: `streamlit run app.py` (or `judgeeye app`, as a newcomer
starts it) on a free loopback port, Debian's chromium driven by Playwright (no browser download),
waiting on the store, a check that a page shows users no internals, and full-page screenshots
kept under the test's tmp folder (always one when a step fails)."""

from __future__ import annotations

import contextlib
import os
import re
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
def _serving(cmd: list[str], log_path: Path, env: dict[str, str] | None, port: int) -> Iterator[str]:
    """Run ``cmd`` (a server on ``port``) until the context ends; yields its URL once it answers."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (scripts/install.sh --dev installs it)")
    log = log_path.open("w")
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise AssertionError("the app did not start: " + log_path.read_text()[-3000:])
        yield url
    finally:
        proc.terminate()  # `judgeeye app` stops its server on SIGTERM (tests/test_app_process.py)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def streamlit_app(log_dir: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """The app on loopback (``streamlit run app.py``); yields its URL. Skips where chromium is absent."""
    port = _free_port()
    with _serving([sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port),
                   "--server.address", "127.0.0.1", "--server.headless", "true",
                   "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                  log_dir / "streamlit.log", env, port) as url:
        yield url


@contextmanager
def judgeeye_app(log_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """The app as a newcomer starts it, `judgeeye app` (first start: the store, the sample project,
    the first admin's password in its output, written to ``log_path``); yields its URL."""
    port = _free_port()
    with _serving([sys.executable, "-m", "judgeeye.cli", "app", "--port", str(port)], log_path, env, port) as url:
        yield url


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
            print(f"screenshot: {shot}\nserver log: {tmp_path} (streamlit.log or app.log)")
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


#: what no page may show a user (issue 14): the code's internals in place of words
LEAKS = {
    "a traceback": re.compile(r"Traceback"),
    # "None fits", "None of the traces …" are words; "Parent: None", a lone "None" are not
    "a bare None": re.compile(r"(?<![\w'\"])None(?![\w'\"]| [a-z])"),
    "a Python dict or list": re.compile(r"\{\s*'|\[\s*'|\{\s*\"[^\"\n]*\"\s*:|'\w+'\s*:\s"),
    "a {placeholder}": re.compile(r"\{[A-Za-z_]\w*\}"),
}
#: table cells that are a missing value as code writes it, not as a reader would
EMPTY_CELLS = {"None", "nan", "NaN", "<NA>", "null", "NaT"}
RAW_COLUMN = re.compile(r"^[a-z]+(_[a-z0-9]+)+$")  # pace_per_hour


def _table_texts(page: Any) -> tuple[list[str], list[str]]:
    """The header and cell texts of every ``st.dataframe`` on the page. The grid draws on a canvas;
    the accessible table beside it, which it fills once drawn, carries the visible cells as text."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    headers: list[str] = []
    cells: list[str] = []
    for grid in page.get_by_test_id("stDataFrame").all():
        if not grid.is_visible():
            continue
        with contextlib.suppress(PlaywrightTimeout):  # a table without columns has no header to wait for
            grid.locator("table th").first.wait_for(state="attached", timeout=5_000)
        headers += [t.strip() for t in grid.locator("table th").all_text_contents()]
        cells += [t.strip() for t in grid.locator("table td").all_text_contents()]
    return headers, cells


def assert_shows_no_internals(page: Any, where: str) -> None:
    """The page as a user sees it shows no traceback, no bare "None", no Python dict or list, no
    unfilled ``{placeholder}``, no raw column name and no missing-value cell like "nan"."""
    settled(page)
    assert page.get_by_test_id("stException").count() == 0, f"{where}: an exception box is shown"
    text = page.locator("body").inner_text()
    headers, cells = _table_texts(page)
    problems = []
    for what, pattern in LEAKS.items():
        for source in (text, *headers, *cells):
            if m := pattern.search(source):
                problems.append(f"{what}: …{source[max(0, m.start() - 60):m.end() + 60]}…")
                break
    problems += [f"a missing-value cell: {c!r}" for c in cells if c in EMPTY_CELLS][:1]
    problems += [f"a raw column name: {h!r}" for h in headers if RAW_COLUMN.match(h)]
    assert not problems, f"{where} shows internals:\n" + "\n".join(problems)


def snapshot(page: Any, path: Path) -> None:
    """A screenshot of the whole page. Streamlit scrolls inside its main section, not the window,
    so the window is made as tall as that section's content for the shot (at most 8000 px)."""
    settled(page)
    size = page.viewport_size
    height = size["height"]
    for _ in range(3):  # widgets and charts redraw at the new size, and may grow the page
        tall = page.evaluate("() => (document.querySelector('[data-testid=stMain]') || document.body).scrollHeight")
        if int(tall) <= height:
            break
        height = min(int(tall), 8000)
        page.set_viewport_size({"width": size["width"], "height": height})
        page.wait_for_timeout(600)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
