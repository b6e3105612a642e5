"""What AppTest cannot see, in a real browser (Debian's chromium, `streamlit run app.py` on
loopback): labels cut off by their layout, and a page that must update itself when a background
job ends, with nobody touching it.

A rater run is started on the Agreement page against a real OpenAI-compatible server on loopback
(tests/chat_server.py) whose answers wait for the test's go; its worker is the real job
subprocess. Screenshots of a failure are kept under the test's tmp folder."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser import browser_page, log_in, settled, streamlit_app
from chat_server import chat_server
from review_data import PASSWORD, make_project, make_users
from test_agreement_states import agreement_project, rated_run

pytestmark = pytest.mark.slow

#: true when the element (or the label box around it) hides part of its text
CUT_OFF = """el => {
  for (let node = el, up = 0; node && up < 4; node = node.parentElement, up++) {
    if (node.scrollWidth > node.clientWidth + 1) return true;
  }
  return false;
}"""


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[str]:
    with streamlit_app(tmp_path, env={"OMP_NUM_THREADS": "1"}) as url:
        yield url


def go(page: Any, name: str, project: str) -> None:
    from playwright.sync_api import expect

    settled(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    settled(page)
    page.get_by_role("combobox", name="Project").click()
    page.get_by_role("option", name=re.compile(project)).click()
    settled(page)


def tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    settled(page)


def test_labels_are_whole_and_the_agreement_page_follows_a_run_to_its_end(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    make_users(("lea", "lead"), ("ann", "annotator"))
    make_project(3)  # "review test", for Assignments
    project_id = agreement_project()
    first = rated_run(project_id, "earlier run")
    go_ahead = threading.Event()

    def reply(prompt: str, body: dict) -> tuple[str, str]:
        go_ahead.wait(120)
        return "The story is plain.\n<rating>3</rating>", "stop"

    with chat_server(reply) as (url, _), browser_page(tmp_path, "views") as page:
        page.goto(server)
        log_in(page, "lea", PASSWORD)
        expect(page.get_by_text("Logged in as lea")).to_be_visible()

        # --- Assignments: the checkbox label is not cut off
        go(page, "Assignments", "review test")
        tab(page, "Open a round")
        label = page.get_by_text("Also items without an accepted trace (all their traces are shown)")
        expect(label).to_be_visible()
        assert not label.evaluate(CUT_OFF), "the checkbox label is cut off"

        # --- Agreement: start a rater run: at once, the progress panel and the One run tab show it
        go(page, "Agreement", "agreement states")
        tab(page, "New rater run")
        page.get_by_text("OpenAI-compatible server", exact=True).click()
        settled(page)
        for field, value in (("Base URL", url), ("Model", "scripted")):
            box = page.get_by_label(field, exact=True)
            box.fill(value)
            box.press("Tab")
            settled(page)
        page.get_by_role("button", name="Start rating").click()
        new = first + 1
        expect(page.get_by_text(f"Rater run {new} started")).to_be_visible()
        panel = page.get_by_text(re.compile(rf"^Run {new} · .* · job \d+: (queued|running)"))
        expect(panel).to_be_visible()
        tab(page, "One run")
        picker = page.get_by_role("combobox", name="Rater run")
        expect(picker).to_have_value(re.compile(rf"^Run {new} · .* · (queued|running)$"))
        page.screenshot(path=str(tmp_path / "while-rating.png"), full_page=True)

        # --- the job ends while nobody touches the page: the page follows by itself
        go_ahead.set()
        expect(page.get_by_text(f"Finished: rater run {new} succeeded.")).to_be_visible(timeout=120_000)
        expect(picker).to_have_value(re.compile(rf"^Run {new} · .* · completed$"))
        expect(panel).to_have_count(0)
        expect(page.get_by_role("heading", name="Worst disagreements")).to_be_visible()  # its items, rated
        page.screenshot(path=str(tmp_path / "after-rating.png"), full_page=True)

        # --- the two charts side by side: their download buttons show their labels
        buttons = [b for name in ("PNG", "HTML") for b in page.get_by_role("button", name=name, exact=True).all()]
        assert len(buttons) == 4
        for button in buttons:
            assert (button.inner_text().split() or [""])[-1] in ("PNG", "HTML") and not button.evaluate(CUT_OFF), \
                button.inner_text()
