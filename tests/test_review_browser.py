"""The Review screen in a real browser: Debian's chromium driven by Playwright against
`streamlit run app.py` on loopback. An annotator logs in, reviews three items with the keyboard
only (choose, edit, none fits), reloads the page in the middle of an edit, and the store holds
exactly what they did. Screenshots of a failure are kept under the test's tmp folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from judgeeye.review import open_round
from judgeeye.store import Annotator, Selection, SelectionEvent, session_scope
from review_data import PASSWORD, SYSTEM, make_project, make_users

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (scripts/install.sh --dev installs it)")
    port = _free_port()
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=REPO, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise AssertionError("streamlit did not start: " + (tmp_path / "streamlit.log").read_text()[-3000:])
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _selections(name: str) -> list[Selection]:
    with session_scope() as s:
        uid = s.scalar(select(Annotator.id).where(Annotator.name == name))
        return list(s.scalars(select(Selection).where(Selection.annotator_id == uid)
                              .order_by(Selection.updated_at)).all())


def _wait_for(predicate, what: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for the store: {what}")


def test_annotator_reviews_three_items_with_the_keyboard(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    make_users(("ann", "annotator"))
    _, run_id = make_project(3, text="<script>window.pwned = 1</script> A [link](javascript:alert(1)) story.")
    with session_scope() as s:
        round_id = open_round(s, SYSTEM, run_id, ["ann"]).id

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)  # a first run on two busy cores takes seconds

        def log_in() -> None:
            page.get_by_role("textbox", name="Name").fill("ann")
            password = page.get_by_role("textbox", name="Password")
            password.fill(PASSWORD)
            password.press("Enter")
            expect(page.get_by_text("Your progress")).to_be_visible()  # annotators land on Review
            blur()

        def blur() -> None:
            """Keys typed into an input are text, not shortcuts: leave every input."""
            page.evaluate("document.activeElement && document.activeElement.blur()")

        def press(key: str, ready: str) -> None:
            """Press a shortcut once the screen is settled: the button it clicks is on screen and
            the app is not running (a key pressed mid-rerun can reach a button being replaced)."""
            expect(page.get_by_role("button", name=ready)).to_be_visible()
            expect(page.get_by_test_id("stStatusWidget")).to_be_hidden()
            page.wait_for_timeout(300)
            blur()
            page.keyboard.press(key)

        try:
            page.goto(f"{server}/users")  # a deep link to an admin page: login first, then not there
            log_in()
            expect(page.get_by_role("heading", name="Users")).to_have_count(0)
            expect(page.get_by_role("button", name="Choose 1")).to_be_visible()
            expect(page.get_by_text("Keys:")).to_be_visible()
            nav = page.get_by_role("navigation").inner_text()
            assert "Review" in nav and "Data" not in nav and "Users" not in nav  # an annotator's pages
            body = page.locator("body").inner_text()
            assert "<script>window.pwned = 1</script>" in body  # shown as text ...
            assert page.evaluate("window.pwned") is None  # ... never run
            assert page.locator("a[href^='javascript']").count() == 0

            press("2", "Choose 2")  # item 1: choose trace 2
            first = _wait_for(lambda: [s for s in _selections("ann") if s.state == "submitted"], "trace 2 chosen")[0]
            assert first.verdict == "chosen"
            expect(page.get_by_text("1 of 3 done")).to_be_visible()

            press("e", "Edit")  # item 2: edit trace 1 ...
            box = page.get_by_label("Your version of the reasoning")
            expect(box).to_be_visible()
            box.fill("My reasoning: the story is plain, but its ending surprised me.")
            box.press("Tab")  # leaving the box saves the draft
            _wait_for(lambda: [s for s in _selections("ann") if s.state == "draft"], "the draft")
            page.reload()  # ... reload in the middle of the edit
            log_in()
            box = page.get_by_label("Your version of the reasoning")
            expect(box).to_have_value("My reasoning: the story is plain, but its ending surprised me.")
            press("Alt+Enter", "Submit edit")  # submit the edit
            _wait_for(lambda: len([s for s in _selections("ann") if s.state == "submitted"]) == 2, "the edit submitted")
            expect(page.get_by_role("button", name="Choose 1")).to_be_visible()

            press("n", "None fits")  # item 3: none fits
            _wait_for(lambda: len([s for s in _selections("ann") if s.state == "submitted"]) == 3, "none fits")
            expect(page.get_by_text("Nothing left for you in this round")).to_be_visible()
        except Exception:
            shot = tmp_path / "review-failure.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}\nserver log: {tmp_path / 'streamlit.log'}")
            raise
        finally:
            browser.close()

    selections = _selections("ann")
    assert [s.verdict for s in selections] == ["chosen", "edited", "none_fits"]
    assert all(s.state == "submitted" and s.round_id == round_id for s in selections)
    assert selections[1].edited_text == "My reasoning: the story is plain, but its ending surprised me."
    with session_scope() as s:
        actions = [e.action for e in s.scalars(select(SelectionEvent).order_by(SelectionEvent.id)).all()]
    assert actions.count("assign") == 3 and "choose" in actions and "edit_submit" in actions and "none_fits" in actions
