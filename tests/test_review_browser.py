"""The Review screen in a real browser: Debian's chromium driven by Playwright against
`streamlit run app.py` on loopback. An annotator logs in, reviews three items with the keyboard
only (choose, edit, none fits), reloads the page in the middle of an edit, and the store holds
exactly what they did. Screenshots of a failure are kept under the test's tmp folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from browser import browser_page, log_in, streamlit_app, wait_for
from judgeeye.review import open_round
from judgeeye.store import Annotator, Selection, SelectionEvent, session_scope
from review_data import PASSWORD, SYSTEM, make_project, make_users

pytestmark = pytest.mark.slow


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[str]:
    with streamlit_app(tmp_path) as url:
        yield url


def _selections(name: str) -> list[Selection]:
    with session_scope() as s:
        uid = s.scalar(select(Annotator.id).where(Annotator.name == name))
        return list(s.scalars(select(Selection).where(Selection.annotator_id == uid)
                              .order_by(Selection.updated_at)).all())


def test_annotator_reviews_three_items_with_the_keyboard(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    make_users(("ann", "annotator"))
    _, run_id = make_project(3, text="<script>window.pwned = 1</script> A [link](javascript:alert(1)) story.")
    with session_scope() as s:
        round_id = open_round(s, SYSTEM, run_id, ["ann"]).id

    with browser_page(tmp_path, "review") as page:

        def ann_logs_in() -> None:
            log_in(page, "ann", PASSWORD)
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

        # Streamlit shows "Page not found" for a deep link in the first session after the server
        # starts (it learns the page list from the first run); a real user closes it, the test
        # opens the app once before
        page.goto(server)
        page.get_by_text("Log in to review").wait_for()
        page.goto(f"{server}/users")  # a deep link to an admin page: login first, then not there
        ann_logs_in()
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
        first = wait_for(lambda: [s for s in _selections("ann") if s.state == "submitted"], "trace 2 chosen")[0]
        assert first.verdict == "chosen"
        expect(page.get_by_text("1 of 3 done")).to_be_visible()

        press("e", "Edit")  # item 2: edit trace 1 ...
        box = page.get_by_label("Your version of the reasoning")
        expect(box).to_be_visible()
        box.fill("My reasoning: the story is plain, but its ending surprised me.")
        box.press("Tab")  # leaving the box saves the draft
        wait_for(lambda: [s for s in _selections("ann") if s.state == "draft"], "the draft")
        page.reload()  # ... reload in the middle of the edit
        ann_logs_in()
        box = page.get_by_label("Your version of the reasoning")
        expect(box).to_have_value("My reasoning: the story is plain, but its ending surprised me.")
        press("Alt+Enter", "Submit edit")  # submit the edit
        wait_for(lambda: len([s for s in _selections("ann") if s.state == "submitted"]) == 2, "the edit submitted")
        expect(page.get_by_role("button", name="Choose 1")).to_be_visible()

        press("n", "None fits")  # item 3: none fits
        wait_for(lambda: len([s for s in _selections("ann") if s.state == "submitted"]) == 3, "none fits")
        expect(page.get_by_text("Nothing left for you in this round")).to_be_visible()

    selections = _selections("ann")
    assert [s.verdict for s in selections] == ["chosen", "edited", "none_fits"]
    assert all(s.state == "submitted" and s.round_id == round_id for s in selections)
    assert selections[1].edited_text == "My reasoning: the story is plain, but its ending surprised me."
    with session_scope() as s:
        actions = [e.action for e in s.scalars(select(SelectionEvent).order_by(SelectionEvent.id)).all()]
    assert actions.count("assign") == 3 and "choose" in actions and "edit_submit" in actions and "none_fits" in actions
