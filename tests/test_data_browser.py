"""Importing a CSV through the Data page in a real browser: Debian's chromium driven by Playwright
against `streamlit run app.py` on loopback and a real store (the file input, the column mapping,
the splits and the import, as a lead clicks them). Item text carries a ``<script>``, an ``<img
onerror>`` and a ``javascript:`` markdown link, which are stored as written and shown inert."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from browser import assert_shows_no_internals, browser_page, log_in, settled, streamlit_app
from judgeeye.store import Item, Project, session_scope
from review_data import PASSWORD, make_users

pytestmark = pytest.mark.slow

SCRIPT = "<script>window.pwned=1</script>"
IMG = '<img src=x onerror="window.pwned2=1">'
LINK = "[x](javascript:alert(1))"
HOSTILE = f"{SCRIPT} {IMG} {LINK}"
STORIES = [  # id, story, three raters' ratings (they agree: every item is gold)
    ("j1", "A boy finds a coin and buys bread.", (1, 1, 2)),
    ("j2", "Two sisters argue about a letter, then read it together.", (2, 2, 3)),
    ("j3", "A sailor keeps a diary of a storm that changes his mind about home.", (3, 3, 3)),
    ("j4", "An old clockmaker repairs time itself, at a cost nobody expected.", (4, 4, 5)),
    ("j5", "Three narrators tell one murder; each lies about a different hour.", (5, 5, 4)),
    ("j6", "A cat waits by the door every evening for someone who moved away.", (2, 3, 2)),
]


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[str]:
    make_users(("lead", "lead"))
    with streamlit_app(tmp_path) as url:
        yield url


def _csv(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "story", "r1", "r2", "r3"])
        for ext, story, ratings in STORIES:
            w.writerow([ext, f"{story} {HOSTILE}", *ratings])
    return path


def inert(page: Any) -> None:
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("typeof window.pwned2") == "undefined"
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.locator("img[onerror]").count() == 0


def test_a_lead_imports_a_csv_with_a_column_mapping(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    upload = _csv(tmp_path / "stories.csv")
    with browser_page(tmp_path, "data") as page:
        page.goto(server)
        log_in(page, "lead", PASSWORD)
        expect(page.get_by_text("Logged in as lead")).to_be_visible()
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Data", exact=True).click()
        expect(page.get_by_role("heading", name="Data", level=1)).to_be_visible()
        page.locator("input[type=file]").set_input_files(str(upload))
        expect(page.get_by_role("combobox", name="Id column")).to_be_visible()
        settled(page)
        for label, options in (("Text fields (what the rater reads)", ["story"]),
                               ("Annotators' rating columns", ["r1", "r2", "r3"])):
            box = page.get_by_role("combobox", name=label)
            for option in options:
                box.click()
                page.get_by_role("option", name=option, exact=True).click()
                settled(page)
            page.keyboard.press("Escape")
        expect(page.get_by_text("Gold label histogram").first).to_be_visible()
        for label, share in (("Train", 0.5), ("Validation", 0.2), ("Test", 0.3)):
            box = page.get_by_label(label, exact=True)
            box.fill(str(share))
            box.press("Enter")
            settled(page)
        name = page.get_by_label("Project name")
        name.fill("stories")
        name.press("Enter")
        settled(page)
        assert_shows_no_internals(page, "the mapped upload")
        page.get_by_role("button", name="Import", exact=True).click()
        expect(page.get_by_text("gold items into project")).to_be_visible()
        assert_shows_no_internals(page, "the import's report")
        inert(page)
        page.get_by_role("tab", name="Browse items", exact=True).click()
        settled(page)
        assert_shows_no_internals(page, "the items")
        inert(page)
        with session_scope() as s:
            items = s.scalars(select(Item).join(Project).where(Project.name == "stories")).all()
            assert len(items) == 6 and all(i.gold_status == "gold" for i in items)
            assert sorted(i.split for i in items) == ["test", "test", "train", "train", "train", "validation"]
            assert all(i.fields["story"].endswith(HOSTILE) for i in items)  # stored as written
