"""The Review page's layouts in a real browser (Debian's chromium, Playwright, `streamlit run
app.py` on loopback): items with 4 traces open side by side (two rows of two) and stacked (one
under the other), and in the stacked layout the keyboard chooses a trace, says none fits and
edits one. Streamlit 1.67 crashed the stacked layout, and with it every 4-trace item."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from browser import browser_page, log_in, streamlit_app, wait_for
from judgeeye.store import Annotator, Selection, session_scope
from review_data import PASSWORD, make_users
from review_traces import traces_round

pytestmark = pytest.mark.slow


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[str]:
    with streamlit_app(tmp_path) as url:
        yield url


def _submitted(name: str) -> list[Selection]:
    with session_scope() as s:
        uid = s.scalar(select(Annotator.id).where(Annotator.name == name))
        return list(s.scalars(select(Selection).where(Selection.annotator_id == uid, Selection.state == "submitted")
                              .order_by(Selection.updated_at)).all())


def test_four_traces_in_both_layouts_and_the_keyboard_when_stacked(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    make_users(("ann", "annotator"))
    traces_round(["ann"], 4, n_items=4)

    with browser_page(tmp_path, "review-layouts") as page:

        def ready(button: str) -> None:
            """The screen is settled with ``button`` on it, nothing crashed, and no input has the
            focus (keys typed into an input are text, not shortcuts)."""
            expect(page.get_by_role("button", name=button).first).to_be_visible()
            expect(page.get_by_test_id("stStatusWidget")).to_be_hidden()
            expect(page.get_by_test_id("stException")).to_have_count(0)
            page.wait_for_timeout(300)
            page.evaluate("document.activeElement && document.activeElement.blur()")

        def choose_boxes() -> list[dict[str, float]] | None:
            """Where the four Choose buttons are (None while a rerun still shows the old ones too)."""
            buttons = [page.get_by_role("button", name=f"Choose {n}") for n in range(1, 5)]
            if any(b.count() != 1 for b in buttons):
                return None
            boxes = [b.bounding_box() for b in buttons]
            return boxes if all(boxes) else None

        def stacked() -> list[dict[str, float]] | None:
            """The Choose buttons' boxes once they stand one under the other in one column."""
            boxes = choose_boxes()
            if not boxes or not all(abs(b["x"] - boxes[0]["x"]) < 2 for b in boxes):
                return None
            return boxes if all(b["y"] > a["y"] + 50 for a, b in zip(boxes, boxes[1:])) else None

        page.goto(server)
        page.get_by_text("Log in to review").wait_for()
        log_in(page, "ann", PASSWORD)
        expect(page.get_by_role("heading", name="Item 1 of 4")).to_be_visible()  # annotators land on Review

        # item 1, side by side (the default for 4 short traces): two rows of two
        ready("Choose 1")
        one, two, three, four = wait_for(choose_boxes, "four traces")
        assert abs(one["y"] - two["y"]) < 2 and abs(three["y"] - four["y"]) < 2 and three["y"] > one["y"] + 50
        assert abs(one["x"] - three["x"]) < 2 and two["x"] > one["x"] + 200
        page.keyboard.press("3")
        wait_for(lambda: len(_submitted("ann")) == 1, "item 1: trace 3 chosen")
        expect(page.get_by_role("heading", name="Item 2 of 4")).to_be_visible()

        # item 2: switch to stacked; the traces stand one under the other, full width
        page.get_by_role("radio", name="Stacked").click()
        boxes = wait_for(stacked, "the stacked layout")
        ready("Choose 1")
        assert boxes[0]["width"] > two["width"] * 1.5
        page.keyboard.press("2")  # choose, by key
        wait_for(lambda: len(_submitted("ann")) == 2, "item 2: trace 2 chosen")

        expect(page.get_by_role("heading", name="Item 3 of 4")).to_be_visible()
        ready("None fits")
        wait_for(stacked, "item 3 stacked too")  # the layout stays as chosen
        page.keyboard.press("n")  # none fits, by key
        wait_for(lambda: len(_submitted("ann")) == 3, "item 3: none fits")

        expect(page.get_by_role("heading", name="Item 4 of 4")).to_be_visible()
        ready("Edit")
        page.keyboard.press("e")  # edit, by key
        box = page.get_by_label("Your version of the reasoning")
        expect(box).to_be_visible()
        box.fill("My reasoning: four traces, and the second one is closest.")
        box.press("Tab")
        ready("Submit edit")
        page.keyboard.press("Alt+Enter")
        wait_for(lambda: len(_submitted("ann")) == 4, "item 4: the edit submitted")
        expect(page.get_by_text("Nothing left for you in this round")).to_be_visible()
        expect(page.get_by_test_id("stException")).to_have_count(0)

    done = _submitted("ann")
    assert [s.verdict for s in done] == ["chosen", "chosen", "none_fits", "edited"]
    assert done[3].edited_text == "My reasoning: four traces, and the second one is closest."
