"""The whole journey of a new team, in a real browser (issue 8): Debian's chromium driven by
Playwright against `streamlit run app.py` on loopback and a real store.

An admin logs in, adds an annotator, imports a small CSV through the Data page's uploader with a
column mapping, samples traces with the embedded model, opens a review round; the annotator logs
in and reviews with the keyboard; the admin refines the codebook, edits it side by side and
saves, starts a short training run, watches its curve, stops it, starts a rater run on the
Agreement page and reads τ / ICC / MSE, which must equal the store's summary. Every step is as
small as it can be (6 items, k=2, 24 tokens, a tiny training run) so it fits CI on two cores.

Security on the way: item and codebook text carry a ``<script>``, an ``<img onerror>`` and a
``javascript:`` markdown link; every page that shows them must show text, run nothing and make
no ``javascript:`` link. A failed step leaves a full-page screenshot under the test's tmp folder.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from browser import browser_page, enter, log_in, settled, streamlit_app, wait_for
from judgeeye.auth import authenticate
from judgeeye.evaluate.summary import summary
from judgeeye.store import (
    Annotator,
    Candidate,
    Codebook,
    Item,
    Job,
    Project,
    RaterRun,
    ReviewRound,
    SamplingRun,
    Selection,
    TrainingMetric,
    TrainingRun,
    session_scope,
)
from review_data import PASSWORD, make_users

pytestmark = pytest.mark.slow

SCRIPT = "<script>window.pwned=1</script>"
IMG = '<img src=x onerror="window.pwned2=1">'
LINK = "[x](javascript:alert(1))"
HOSTILE = f"{SCRIPT} {IMG} {LINK}"
PROJECT = "journey"
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
    make_users(("admin", "admin"))  # the store's first admin, with a known password
    with streamlit_app(tmp_path, env={"OMP_NUM_THREADS": "1"}) as url:
        yield url


def _csv(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "story", "r1", "r2", "r3"])
        for ext, story, ratings in STORIES:
            w.writerow([ext, f"{story} {HOSTILE}", *ratings])
    return path


# ------------------------------------------------------------------------------ page helpers
def inert(page: Any, shown: tuple[str, ...] = ()) -> None:
    """Hostile text is on the page as text (each of ``shown``), nothing ran, no javascript: link."""
    body = page.locator("body").inner_text()
    for text in shown:
        assert text in body, f"{text!r} is not shown as text"
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("typeof window.pwned2") == "undefined"
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.locator("script:not([src])").filter(has_text="pwned").count() == 0
    assert page.locator("img[onerror]").count() == 0


def go(page: Any, name: str) -> None:
    """Open a page from the sidebar (a reload would end the session)."""
    settled(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=name, exact=True).click()
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", level=1).first).to_be_visible()
    settled(page)


def tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    settled(page)


def choose(page: Any, label: str, option: str | re.Pattern, *, scope: Any = None) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    where = scope or page
    where.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option).first.click()
    settled(page)


def pick_many(page: Any, label: str, options: list[str]) -> None:
    box = page.get_by_role("combobox", name=label)
    for option in options:
        box.click()
        page.get_by_role("option", name=option, exact=True).click()
        settled(page)
    page.keyboard.press("Escape")


def number(page: Any, label: str, value: float | int, *, scope: Any = None) -> None:
    box = (scope or page).get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    settled(page)


def log_out_and_in(page: Any, name: str, password: str) -> None:
    """Log out, then in as someone else. The login page can be replaced once more after it
    first shows (the rerun that follows logging out), so the form is filled until it holds."""
    from playwright.sync_api import expect

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_text("Log in to review traces")).to_be_visible()
    for _ in range(10):
        settled(page)
        page.get_by_role("textbox", name="Name").fill(name)
        page.get_by_role("textbox", name="Password").fill(password)
        page.wait_for_timeout(300)
        if page.get_by_role("textbox", name="Name").input_value() == name:
            break
    page.get_by_role("textbox", name="Password").press("Enter")
    expect(page.get_by_text(f"Logged in as {name}")).to_be_visible()


def job_of(kind: str) -> Job | None:
    with session_scope() as s:
        return s.scalar(select(Job).where(Job.kind == kind).order_by(Job.id.desc()))


def project_id() -> int:
    with session_scope() as s:
        return s.scalar(select(Project.id).where(Project.name == PROJECT))


# ------------------------------------------------------------------------------ the journey
def test_a_new_team_walks_the_whole_journey(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    upload = _csv(tmp_path / "stories.csv")
    with browser_page(tmp_path, "journey") as page:
        page.goto(server)

        # --- the admin logs in and adds an annotator; the generated password is read off the page
        log_in(page, "admin", PASSWORD)
        expect(page.get_by_text("Logged in as admin")).to_be_visible()
        go(page, "Users")
        page.get_by_label("Name or e-mail").fill("ann")
        page.get_by_role("button", name="Add", exact=True).click()
        shown = page.get_by_text("Password for ann")
        expect(shown).to_be_visible()
        ann_password = re.search(r"Password for ann: (\S+) \(shown once", shown.inner_text()).group(1)
        with session_scope() as s:
            assert s.scalar(select(Annotator.role).where(Annotator.name == "ann")) == "annotator"
            assert authenticate(s, "ann", ann_password) is not None, ann_password

        # --- Data: upload the CSV, map its columns, check, import
        go(page, "Data")
        page.locator("input[type=file]").set_input_files(str(upload))
        expect(page.get_by_role("combobox", name="Id column")).to_be_visible()
        settled(page)
        pick_many(page, "Text fields (what the rater reads)", ["story"])
        pick_many(page, "Annotators' rating columns", ["r1", "r2", "r3"])
        expect(page.get_by_text("Gold label histogram").first).to_be_visible()
        number(page, "Train", 0.5)
        number(page, "Validation", 0.2)
        number(page, "Test", 0.3)
        name = page.get_by_label("Project name")
        name.fill(PROJECT)
        name.press("Enter")
        settled(page)
        page.get_by_role("button", name="Import", exact=True).click()
        expect(page.get_by_text("gold items into project")).to_be_visible()
        inert(page)
        with session_scope() as s:
            items = s.scalars(select(Item).join(Project).where(Project.name == PROJECT)).all()
            splits = sorted(i.split for i in items)
            assert len(items) == 6 and all(i.gold_status == "gold" for i in items)
            assert splits == ["test", "test", "train", "train", "train", "validation"]
            assert all(i.fields["story"].endswith(HOSTILE) for i in items)  # stored as written

        # --- Sample: two traces per train item from the embedded model, 24 tokens each
        go(page, "Sample")
        expect(page.get_by_role("combobox", name="Project")).to_have_value(re.compile(PROJECT))
        number(page, "k (candidates per item)", 2)
        number(page, "Max tokens", 24)
        page.get_by_role("button", name="Start sampling").click()
        expect(page.get_by_text(re.compile(r"Run \d+ started"))).to_be_visible()
        tab(page, "Runs")
        expect(page.get_by_text(re.compile(r"job \d+: succeeded"))).to_be_visible(timeout=150_000)
        settled(page)
        with session_scope() as s:
            run = s.scalar(select(SamplingRun).join(Project).where(Project.name == PROJECT))
            n_candidates = s.scalar(select(func.count()).select_from(Candidate).where(Candidate.run_id == run.id))
            assert run.k == 2 and n_candidates == 3 * 2  # three train items, k = 2
        inert(page)

        # --- Assignments: a review round over every sampled item, for the annotator
        go(page, "Assignments")
        tab(page, "Open a round")
        page.get_by_text("Also items without an accepted trace (all their traces are shown)").click()
        page.get_by_role("button", name="Open round").click()
        expect(page.get_by_text(re.compile(r"Opened round #\d+ “.+”: 3 items"))).to_be_visible()
        with session_scope() as s:
            assert s.scalar(select(func.count()).select_from(ReviewRound)) == 1

        # --- the annotator logs in and reviews the three items with the keyboard only
        log_out_and_in(page, "ann", ann_password)
        expect(page.get_by_text("Your progress")).to_be_visible()  # annotators land on Review
        nav = page.get_by_test_id("stSidebarNav").inner_text()
        assert "Review" in nav and "Users" not in nav and "Train" not in nav
        expect(page.get_by_role("button", name="Choose 1")).to_be_visible()
        settled(page)
        inert(page, shown=(SCRIPT, IMG, LINK))

        def press(key: str, ready: str) -> None:
            expect(page.get_by_role("button", name=ready)).to_be_visible()
            settled(page)
            page.evaluate("document.activeElement && document.activeElement.blur()")
            page.keyboard.press(key)

        def submitted() -> list[Selection]:
            with session_scope() as s:
                return list(s.scalars(select(Selection).where(Selection.state == "submitted")
                                      .order_by(Selection.updated_at)).all())

        press("1", "Choose 1")
        wait_for(lambda: len(submitted()) == 1, "trace 1 chosen")
        expect(page.get_by_text("1 of 3 done")).to_be_visible()
        inert(page, shown=(SCRIPT,))
        press("e", "Edit")
        box = page.get_by_label("Your version of the reasoning")
        expect(box).to_be_visible()
        box.fill("The story has one turn and plain characters. " + SCRIPT)
        box.press("Tab")
        press("Alt+Enter", "Submit edit")
        wait_for(lambda: len(submitted()) == 2, "the edit submitted")
        press("n", "None fits")
        wait_for(lambda: len(submitted()) == 3, "none fits")
        expect(page.get_by_text("Nothing left for you in this round")).to_be_visible()
        assert [s.verdict for s in submitted()] == ["chosen", "edited", "none_fits"]
        inert(page)
        log_out_and_in(page, "admin", PASSWORD)
        expect(page.get_by_text("Logged in as admin")).to_be_visible()

        # --- Refine: new instructions from one trace per level, by the embedded model
        go(page, "Refine")
        choose(page, "Project", re.compile(PROJECT))  # a new login starts on the first project
        expect(page.get_by_role("combobox", name="Project")).to_have_value(re.compile(PROJECT))
        choose(page, "What to refine", "instructions")
        number(page, "Traces per level (instructions)", 1)
        number(page, "Attempts per step", 3)
        number(page, "Max tokens (codebook)", 160)
        page.get_by_role("button", name="Start refinement").click()
        expect(page.get_by_text(re.compile(r"Refinement started \(job \d+\)"))).to_be_visible()
        expect(page.get_by_text(re.compile(r"job \d+: (succeeded|failed)"))).to_be_visible(timeout=150_000)
        if page.get_by_text(re.compile(r"job \d+: failed")).count():  # a 135M model may never close its answer
            assert "no usable answer" in job_of("refine").error  # ... which the page says; Resume samples afresh
            page.get_by_role("button", name="Resume").click()
            expect(page.get_by_text(re.compile(r"job \d+: succeeded"))).to_be_visible(timeout=150_000)
        expect(page.get_by_text("Wrote codebook version 2 (refined instructions)")).to_be_visible()
        inert(page)

        # --- Codebooks: edit the refined version side by side (hostile text included) and save
        go(page, "Codebooks")
        tab(page, "Edit")
        instructions = page.get_by_label("Instructions", exact=True)
        expect(instructions).to_be_visible()
        enter(page, instructions, "Rate how complex the story is. " + HOSTILE)
        enter(page, page.get_by_label("Level 1", exact=True), "1: one event, no turn. " + LINK)
        enter(page, page.get_by_label("Note for this version"), "journey edit")
        page.get_by_role("button", name="Save as a new version").click()
        expect(page.get_by_text("Saved as version 3, now the current one.")).to_be_visible()
        settled(page)
        tab(page, "Diff")
        choose(page, "To version", "3")
        inert(page, shown=(SCRIPT, IMG))
        with session_scope() as s:
            pid = project_id()
            v3 = s.scalar(select(Codebook).where(Codebook.project_id == pid, Codebook.version == 3))
            assert v3.instructions.endswith(HOSTILE) and s.get(Project, pid).current_codebook_id == v3.id
        tab(page, "View")
        choose(page, "Version", "3")
        inert(page, shown=(SCRIPT, IMG, LINK))

        # --- Train: a short run; its loss curve appears; Stop; it shows stopped
        go(page, "Train")
        number(page, "Max steps", 200)
        number(page, "Batch size per device", 1)
        number(page, "Gradient accumulation", 1)
        number(page, "Max length (tokens)", 1024)
        number(page, "Tokens per rating", 8)  # validation rates as the test would, briefly here
        expect(page.get_by_text("Optimizer steps (most)")).to_be_visible()  # the plan, before Start
        page.get_by_text("Evaluate on the test split").click()
        settled(page)
        page.get_by_role("button", name="Start training").click()
        expect(page.get_by_text(re.compile(r"Training run \d+ started"))).to_be_visible()
        tab(page, "Runs")
        expect(page.get_by_text("Training loss", exact=True)).to_be_visible(timeout=150_000)  # the curve's title
        stop = page.get_by_role("button", name="Stop (saves a checkpoint)")
        stop.click()
        expect(page.get_by_text(re.compile(r"job \d+: cancelled"))).to_be_visible(timeout=90_000)
        expect(page.get_by_role("button", name="Resume from the last checkpoint")).to_be_visible()
        with session_scope() as s:
            run = s.scalar(select(TrainingRun).where(TrainingRun.project_id == project_id()))
            steps = s.scalar(select(func.count()).select_from(TrainingMetric)
                             .where(TrainingMetric.run_id == run.id, TrainingMetric.name == "loss"))
            assert run.status != "completed" and 1 <= steps < 200, (run.status, steps)
        inert(page)

        # --- Agreement: a rater run on the test split, then its τ / ICC / MSE as the store has them
        go(page, "Agreement")
        tab(page, "New rater run")
        number(page, "Max tokens", 24)
        choose(page, "Read-out", "expected")  # the score read-out rates every item, so τ/ICC/MSE are numbers
        page.get_by_role("button", name="Start rating").click()
        expect(page.get_by_text(re.compile(r"Rater run \d+ started"))).to_be_visible()
        wait_for(lambda: (job_of("evaluate") or Job(status="queued")).status in ("succeeded", "failed"),
                 "the rater run", timeout=150)
        assert job_of("evaluate").status == "succeeded", job_of("evaluate").error
        tab(page, "Rater runs")
        with session_scope() as s:
            rater_run = s.scalar(select(RaterRun).where(RaterRun.project_id == project_id()))
            got = summary(s, rater_run.id)
            assert rater_run.split == "test" and got.n_predictions == 2  # the two test items

        def ci(value: float, lo: float, hi: float) -> str:
            f = lambda v: "—" if math.isnan(v) else f"{v:.3f}"  # noqa: E731
            return f"{f(value)} [{f(lo)}, {f(hi)}]"

        assert not math.isnan(got.mse)
        wanted = [ci(got.tau, got.tau_lo, got.tau_hi), ci(got.icc3, got.icc3_lo, got.icc3_hi),
                  ci(got.mse, got.mse_lo, got.mse_hi)]
        # the grid is drawn on a canvas; its accessible table beside it carries the cells as text
        grid = page.get_by_test_id("stDataFrame").first
        expect(grid).to_be_visible()

        def run_row() -> Any:
            for row in grid.locator("tr").all():
                cells = [c.strip() for c in row.locator("td").all_inner_texts()]
                if cells and cells[0] == str(rater_run.id):
                    return row
            return None

        row = wait_for(run_row, "the rater run's row in the table")
        index = row.get_attribute("aria-rowindex")
        shown = set(row.locator("td").all_inner_texts())
        grid.hover()
        page.mouse.wheel(3000, 0)  # the table is wider than the page: its right-hand columns scroll in
        page.wait_for_timeout(500)
        shown |= set(grid.locator(f"tr[aria-rowindex='{index}'] td").all_inner_texts())
        assert all(w in shown for w in wanted), (wanted, sorted(shown))
        inert(page)
        tab(page, "One run")  # the worst disagreements show the items' text
        inert(page)
