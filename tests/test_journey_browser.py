"""A newcomer's first hour, in a real browser (issue 14): Debian's chromium driven by Playwright
against `judgeeye app` on loopback, started on an empty store, with the embedded model.

The admin reads the first password from the app's output, logs in, changes it and adds a lead,
an annotator and a guideline author. The lead imports nothing: the sample project is there, and
Home's next-step links lead the way. The lead samples with the Sample page's defaults (the
embedded demo preset; only the seed is set, so the run repeats) and gets accepted traces, then
opens a review round. The annotator reviews every item by keyboard, 4-trace items in both
layouts. The author refines the codebook with the embedded model and edits the result side by
side (hostile text included, which must stay inert). The lead trains a rater for a few steps,
rates a few test items with it on the Agreement page, and reads τ / ICC / MSE, which must equal
the store's summary.

Every page visited must show no traceback, no bare "None", no Python dict or list, no unfilled
``{placeholder}``, no raw column name (:func:`browser.assert_shows_no_internals`); a screenshot
of each is kept under the test's tmp folder (``shots/``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from browser import assert_shows_no_internals, browser_page, enter, judgeeye_app, log_in, settled, snapshot, wait_for
from judgeeye.evaluate.summary import summary
from judgeeye.store import (
    Candidate,
    Codebook,
    Item,
    Project,
    RaterRun,
    ReviewRound,
    SamplingRun,
    Selection,
    TrainingMetric,
    TrainingRun,
    session_scope,
)

pytestmark = pytest.mark.slow

SCRIPT = "<script>window.pwned=1</script>"
IMG = '<img src=x onerror="window.pwned2=1">'
LINK = "[x](javascript:alert(1))"
HOSTILE = f"{SCRIPT} {IMG} {LINK}"
#: the sampling run's seed (the one thing set beyond the defaults): with it the embedded demo on the
#: sample project gives accepted traces and items without any, whose four traces all show
SEED = 597741437
LAYOUTS = ("Side by side", "Stacked")


@pytest.fixture
def app(data_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`judgeeye app` on a store location where nothing exists yet; yields its URL and its output."""
    assert not data_dir.exists(), "the journey starts on an empty store"
    log = tmp_path / "app.log"
    with judgeeye_app(log, env={"OMP_NUM_THREADS": "1"}) as url:
        yield url, log


class Journey:
    """The browser page, with a look at every page the newcomer visits."""

    def __init__(self, page: Any, shots: Path) -> None:
        self.page, self.shots, self.n = page, shots, 0
        shots.mkdir()

    def look(self, name: str) -> None:
        """The page shows users no internals; its screenshot is kept as ``shots/NN-name.png``."""
        self.n += 1
        try:
            assert_shows_no_internals(self.page, name)
        finally:
            snapshot(self.page, self.shots / f"{self.n:02d}-{name}.png")

    def go(self, name: str) -> None:
        """Open a page from the sidebar (a reload would end the session)."""
        from playwright.sync_api import expect

        settled(self.page)
        self.page.get_by_test_id("stSidebarNav").get_by_role("link", name=name, exact=True).click()
        expect(self.page.get_by_role("heading", level=1).first).to_be_visible()
        settled(self.page)

    def next_step(self, label: str, heading: str) -> None:
        """Follow Home's next-step link ``label`` to the page titled ``heading``."""
        from playwright.sync_api import expect

        self.go("Home")
        self.look(f"home-{label.lower().replace(' ', '-')}")
        self.page.get_by_role("link", name=label, exact=True).click()
        expect(self.page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        settled(self.page)

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name, exact=True).click()
        settled(self.page)

    def choose(self, label: str, option: str | re.Pattern) -> None:
        box = self.page.get_by_role("combobox", name=label)
        box.scroll_into_view_if_needed()
        box.click()
        self.page.get_by_role("option", name=option).first.click()
        settled(self.page)

    def number(self, label: str, value: float) -> None:
        box = self.page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Enter")
        settled(self.page)

    def log_out_and_in(self, name: str, password: str) -> None:
        """Log out, then in as someone else. The login page can be replaced once more after it
        first shows (the rerun that follows logging out), so the form is filled until it holds."""
        from playwright.sync_api import expect

        page = self.page
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
        settled(page)


def inert(page: Any, shown: tuple[str, ...] = ()) -> None:
    """Hostile text is on the page as text (each of ``shown``), nothing ran, no javascript: link."""
    body = page.locator("body").inner_text()
    for text in shown:
        assert text in body, f"{text!r} is not shown as text"
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("typeof window.pwned2") == "undefined"
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.locator("img[onerror]").count() == 0


def metric(page: Any, label: str) -> Any:
    """The value of the metric labelled ``label``."""
    return page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue")


def project_id() -> int:
    with session_scope() as s:
        return s.scalar(select(Project.id))


# ------------------------------------------------------------------------------------ the steps
def admin_adds_the_team(j: Journey, first_password: str) -> dict[str, str]:
    """The admin logs in with the printed password, changes it and adds three people; their
    generated passwords are read off the page."""
    from playwright.sync_api import expect

    page = j.page
    expect(page.get_by_text("Log in to review traces")).to_be_visible()
    j.look("login")
    log_in(page, "admin", first_password)
    expect(page.get_by_text("Logged in as admin")).to_be_visible()
    expect(page.get_by_role("link", name="Sample traces")).to_be_visible()  # the sample project is there
    j.look("admin-home")
    page.get_by_role("button", name="Change password").click()
    page.get_by_label("New password").fill("a newcomer's own password")
    page.get_by_label("Again").fill("a newcomer's own password")
    page.get_by_role("button", name="Change", exact=True).click()
    expect(page.get_by_text("Password changed.")).to_be_visible()
    page.keyboard.press("Escape")
    j.go("Users")
    passwords = {}
    for name, role in (("lena", "lead"), ("ann", "annotator"), ("otto", "author")):
        page.get_by_label("Name or e-mail").fill(name)
        page.get_by_role("combobox", name="Role").first.click()  # the Add form's (a user's is beside it)
        page.get_by_role("option", name=role, exact=True).click()
        page.get_by_role("button", name="Add", exact=True).click()
        shown = page.get_by_text(f"Password for {name}")
        expect(shown).to_be_visible()
        passwords[name] = re.search(rf"Password for {name}: (\S+) \(shown once", shown.inner_text()).group(1)
        settled(page)
    j.look("users")
    j.log_out_and_in("admin", "a newcomer's own password")  # the new password holds
    return passwords


def lead_samples_with_the_defaults(j: Journey) -> None:
    from playwright.sync_api import expect

    page = j.page
    j.go("Data")  # nothing to import: the sample project came with the first start
    j.look("data")
    j.next_step("Sample traces", "Sample traces")
    expect(page.get_by_role("combobox", name="Project")).to_have_value(re.compile(r"\(sample\)"))
    expect(page.get_by_role("radio", name="Embedded demo")).to_be_checked()
    expect(page.get_by_label("k (candidates per item)", exact=True)).to_have_value("4")
    expect(page.get_by_label("Max tokens", exact=True)).to_have_value("96")
    expect(page.get_by_label("Only the first N items", exact=True)).to_have_value("8")
    expect(page.get_by_role("combobox", name="Acceptance mode")).to_have_value("forced cue")
    # the whole form is drawn (a user reads it before typing) and shows the preset's splits
    expect(page.get_by_role("button", name="Start sampling")).to_be_visible()
    expect(page.get_by_test_id("stMultiSelect").filter(has_text="Splits")).to_contain_text("train")
    page.get_by_text("More settings", exact=True).click()
    expect(page.get_by_role("checkbox", name="Rating-token read-out")).to_be_checked()
    j.number("Seed", SEED)
    expect(page.get_by_test_id("stMultiSelect").filter(has_text="Splits")).to_contain_text("train")
    j.look("sample-form")
    page.get_by_role("button", name="Start sampling").click()
    expect(page.get_by_text(re.compile(r"Run 1 started \(job \d+\)"))).to_be_visible()
    j.tab("Runs")
    expect(page.get_by_text(re.compile(r"Run 1 · job \d+: (queued|running)"))).to_be_visible()
    j.look("sample-running")
    # the live panel follows the run to its end, and the page then shows the run as it ended
    expect(page.get_by_text("Finished: sampling run 1 succeeded.")).to_be_visible(timeout=900_000)
    settled(page)
    expect(page.get_by_role("combobox", name="Run", exact=True)).to_have_value(re.compile(r"· completed$"))
    with session_scope() as s:
        run = s.scalar(select(SamplingRun))
        modes = dict(s.execute(select(Candidate.acceptance_mode, func.count())
                               .group_by(Candidate.acceptance_mode)).all())
        accepted = s.scalar(select(func.count()).select_from(Candidate).where(Candidate.accepted.is_(True)))
        assert (run.k, run.max_tokens, run.status) == (4, 96, "completed")
        assert sum(modes.values()) == 8 * 4 and modes.get("forced_cue"), modes
    assert accepted, "the embedded defaults gave no accepted trace"
    expect(metric(page, "Accepted")).to_have_text(str(accepted))
    j.look("sample-done")


def lead_opens_a_round(j: Journey) -> None:
    from playwright.sync_api import expect

    page = j.page
    j.next_step("Open a review round", "Assignments")
    j.tab("Open a round")
    # items without an accepted trace are reviewed too, over all four of their traces
    page.get_by_text("Also items without an accepted trace (all their traces are shown)").click()
    page.get_by_role("button", name="Open round").click()
    expect(page.get_by_text("Opened round #1 “run 1 review”: 8 items, 8 reviews from 1 person.",
                            exact=False)).to_be_visible()
    j.look("round-opened")
    j.tab("Rounds")
    expect(page.get_by_role("combobox", name="Round")).to_have_value("#1 run 1 review (open)")
    j.look("rounds")
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(ReviewRound)) == 1


def annotator_reviews_by_keyboard(j: Journey) -> None:
    """Every item of the round, by keyboard: choose, none fits, edit, skip in turn. Each layout
    gets keyboard actions on a 4-trace item: the first one is opened in both."""
    from playwright.sync_api import expect

    page = j.page
    expect(page.get_by_text("Your progress")).to_be_visible()  # annotators land on Review
    nav = page.get_by_test_id("stSidebarNav").inner_text()
    assert "Review" in nav and "Users" not in nav and "Train" not in nav

    def press(key: str, ready: str) -> None:
        expect(page.get_by_role("button", name=ready)).to_be_visible()
        settled(page)
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.keyboard.press(key)
        settled(page)

    def layout(name: str) -> None:
        radio = page.get_by_role("radio", name=name, exact=True)
        if radio.get_attribute("aria-checked") != "true":
            radio.click()
            settled(page)
        expect(radio).to_have_attribute("aria-checked", "true")

    choose_buttons = page.get_by_role("button", name=re.compile(r"^Choose \d+"))

    def shown_traces() -> int:
        """The traces of the item on screen, by the store: its accepted ones, or all four of its
        candidates when none was accepted; the page must show as many Choose buttons."""
        caption = page.get_by_text(re.compile(r"· item id \S+$")).first.inner_text()
        external_id = caption.rsplit("item id ", 1)[1].strip()
        with session_scope() as s:
            accepted = s.scalars(select(Candidate.accepted).join(Item, Item.id == Candidate.item_id)
                                 .where(Item.external_id == external_id)).all()
        n = sum(accepted) or len(accepted)
        expect(choose_buttons).to_have_count(n)
        return n

    four_trace_layouts: set[str] = set()
    verdicts = []
    for position in range(1, 9):
        expect(page.get_by_role("heading", name=f"Item {position} of 8")).to_be_visible()
        settled(page)
        n = shown_traces()
        if n == 4 and not four_trace_layouts:  # opened stacked: its editor opens and closes by keyboard
            layout("Stacked")
            expect(choose_buttons).to_have_count(4)
            j.look("review-stacked")
            press("e", "Edit")
            expect(page.get_by_label(re.compile("Your version of the reasoning"))).to_be_visible()
            press("Escape", "Cancel")
            expect(choose_buttons).to_have_count(4)
            four_trace_layouts.add("Stacked")
        shown = LAYOUTS[position % 2] if n != 4 or "Side by side" in four_trace_layouts else "Side by side"
        layout(shown)
        expect(choose_buttons).to_have_count(n)
        if n == 4:
            four_trace_layouts.add(shown)
        j.look(f"review-item-{position}")
        action = ("choose", "none", "edit", "skip")[(position - 1) % 4]
        if action == "choose":
            press(str(min(2, n)), f"Choose {min(2, n)}")
        elif action == "none":
            press("n", "None fits")
        elif action == "edit":
            press("e", "Edit")
            box = page.get_by_label(re.compile("Your version of the reasoning"))
            expect(box).to_be_visible()
            enter(page, box, "One event, one turn, two flat characters: a simple story.")
            j.look("review-edit")
            press("Alt+Enter", "Submit edit")
        else:
            press("s", "Skip")
        verdicts.append(action)
    expect(page.get_by_text("Nothing left for you in this round")).to_be_visible()
    j.look("review-done")
    assert four_trace_layouts == set(LAYOUTS), f"4-trace items were reviewed in {sorted(four_trace_layouts)} only"
    with session_scope() as s:
        done = s.scalars(select(Selection.verdict).where(Selection.state == "submitted")).all()
        skipped = s.scalar(select(func.count()).select_from(Selection).where(Selection.state == "skipped"))
    assert sorted(done) == sorted({"choose": "chosen", "none": "none_fits", "edit": "edited"}[v]
                                  for v in verdicts if v != "skip")
    assert skipped == verdicts.count("skip")


def author_refines_and_edits(j: Journey) -> None:
    from playwright.sync_api import expect

    page = j.page
    j.next_step("Refine the codebook", "Refine the codebook")
    j.choose("What to refine", "instructions")
    j.number("Traces per level (instructions)", 1)
    j.number("Attempts per step", 3)
    j.number("Max tokens (codebook)", 160)
    j.look("refine-form")
    page.get_by_role("button", name="Start refinement").click()
    expect(page.get_by_text(re.compile(r"Refinement started \(job \d+\)"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"Finished: refinement job \d+ (succeeded|failed)"))).to_be_visible(
        timeout=300_000)
    if page.get_by_text(re.compile(r"job \d+: failed")).count():  # a 135M model may never close its answer
        expect(page.get_by_text("no usable answer").first).to_be_visible()  # ... which the page says
        page.get_by_role("button", name="Resume").click()
        expect(page.get_by_text(re.compile(r"job \d+: succeeded"))).to_be_visible(timeout=300_000)
    expect(page.get_by_text("Wrote codebook version 2 (refined instructions)")).to_be_visible()
    j.look("refined")

    page.get_by_role("link", name="Open the editor").click()
    expect(page.get_by_role("heading", name="Codebooks", level=1)).to_be_visible()
    settled(page)
    j.tab("Edit")
    expect(page.get_by_role("combobox", name="Right: edit")).to_have_value("v2 · refined instructions")
    enter(page, page.get_by_label("Instructions", exact=True), "Rate how complex the subject story is. " + HOSTILE)
    enter(page, page.get_by_label("Level 1", exact=True), "1: one event, no turn. " + LINK)
    enter(page, page.get_by_label("Note for this version"), "plainer instructions")
    j.look("codebook-edit")
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.get_by_text("Saved as version 3, now the current one.")).to_be_visible()
    inert(page, shown=(SCRIPT, IMG))
    j.tab("History")
    expect(page.get_by_role("combobox", name="Make a version current")).to_have_value("v3 · edited")
    j.look("codebook-history")
    j.tab("View")
    expect(page.get_by_role("combobox", name="Version", exact=True)).to_have_value("v3 · edited")
    inert(page, shown=(SCRIPT, IMG, LINK))
    j.look("codebook-view")
    with session_scope() as s:
        pid = project_id()
        v3 = s.scalar(select(Codebook).where(Codebook.project_id == pid, Codebook.version == 3))
        assert v3.instructions.endswith(HOSTILE) and s.get(Project, pid).current_codebook_id == v3.id


def lead_trains_a_few_steps(j: Journey) -> None:
    from playwright.sync_api import expect

    page = j.page
    j.next_step("Train a rater", "Train a rater")
    j.number("Max steps", 2)
    j.number("Batch size per device", 1)
    j.number("Gradient accumulation", 1)
    j.number("Max length (tokens)", 2048)  # the sample's stories with their prompts fit
    j.number("Validations over the run", 1)  # a validation rates the long stories: one, at the end
    j.number("Validation items", 2)
    j.number("Tokens per rating", 8)
    j.choose("Read-out", re.compile("^expected"))
    page.get_by_text("Evaluate on the test split").click()  # the lead rates the test split next
    settled(page)
    expect(metric(page, "Optimizer steps (most)")).to_have_text("2")  # the plan, before Start
    expect(page.get_by_text("This plan cannot train meaningfully")).to_be_visible()  # one validation is
    page.get_by_text("Train anyway").click()  # too few to pick a checkpoint or stop early: a try run
    settled(page)
    j.look("train-form")
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text(re.compile(r"Training run 1 started \(job \d+\)"))).to_be_visible()
    j.tab("Runs")
    expect(page.get_by_text("Finished: training run 1 succeeded.")).to_be_visible(timeout=600_000)
    expect(page.get_by_text("Training loss", exact=True)).to_be_visible()  # the curve's title
    j.look("train-done")
    with session_scope() as s:
        run = s.scalar(select(TrainingRun))
        steps = s.scalar(select(func.count()).select_from(TrainingMetric)
                         .where(TrainingMetric.run_id == run.id, TrainingMetric.name == "loss"))
        assert (run.status, steps) == ("completed", 2) and run.adapter_path


def lead_rates_with_the_trained_rater(j: Journey) -> None:
    from playwright.sync_api import expect

    page = j.page
    j.next_step("Measure agreement", "Agreement")
    expect(page.get_by_text("No rater runs yet")).to_be_visible()
    j.tab("New rater run")
    j.choose("Trained rater", re.compile(r"^Training run 1 · SFT on traces"))
    with session_scope() as s:
        adapter = s.scalar(select(TrainingRun.adapter_path))
    expect(page.get_by_role("textbox", name="LoRA adapter directory")).to_have_value(adapter)  # no path to type
    expect(page.get_by_role("combobox", name="Codebook version")).to_have_value("v3")
    j.choose("Read-out", re.compile("^expected"))  # a score for every item, so τ / ICC / MSE are numbers
    j.number("Only the first N items", 3)
    j.number("Max tokens", 8)
    j.look("rater-run-form")
    page.get_by_role("button", name="Start rating").click()
    expect(page.get_by_text(re.compile(r"Rater run 1 started \(job \d+\)"))).to_be_visible()
    expect(page.get_by_text("Finished: rater run 1 succeeded.")).to_be_visible(timeout=600_000)
    j.tab("Rater runs")
    with session_scope() as s:
        rater_run = s.scalar(select(RaterRun))
        got = summary(s, rater_run.id)
        assert rater_run.rater["engine"]["adapter"] == adapter
        assert rater_run.split == "test" and got.n_predictions == 3

    def num(v: float) -> str:
        return "—" if math.isnan(v) else f"{v:.3f}"

    def ci(value: float, lo: float, hi: float) -> str:
        return f"{num(value)} [{num(lo)}, {num(hi)}]"

    assert not any(math.isnan(v) for v in (got.tau, got.icc3, got.mse)), got
    wanted = [ci(got.tau, got.tau_lo, got.tau_hi), ci(got.icc3, got.icc3_lo, got.icc3_hi),
              ci(got.mse, got.mse_lo, got.mse_hi)]
    # the grid is drawn on a canvas; its accessible table beside it carries the cells as text
    grid = page.get_by_test_id("stDataFrame").first
    expect(grid).to_be_visible()
    row = wait_for(lambda: next((r for r in grid.locator("tr").all()
                                 if [c.strip() for c in r.locator("td").all_inner_texts()][:1] == ["1"]), None),
                   "the rater run's row in the table")
    index = row.get_attribute("aria-rowindex")
    shown = set(row.locator("td").all_inner_texts())
    grid.hover()
    page.mouse.wheel(3000, 0)  # the table is wider than the page: its right-hand columns scroll in
    page.wait_for_timeout(500)
    shown |= set(grid.locator(f"tr[aria-rowindex='{index}'] td").all_inner_texts())
    assert all(w in shown for w in wanted), (wanted, sorted(shown))
    j.look("agreement-runs")
    j.tab("One run")
    j.look("agreement-one-run")
    j.go("Home")
    expect(page.get_by_text("1 rater run measured")).to_be_visible()
    j.look("home-at-the-end")


# ---------------------------------------------------------------------------------- the journey
def test_a_newcomer_goes_from_the_sample_project_to_agreement(app: tuple[str, Path], tmp_path: Path) -> None:
    url, log = app
    first = wait_for(lambda: re.search(r"created user 'admin' with password (\S+)", log.read_text()),
                     "the first admin's password in the app's output").group(1)
    with browser_page(tmp_path, "journey") as page:
        j = Journey(page, tmp_path / "shots")
        page.goto(url)
        passwords = admin_adds_the_team(j, first)
        j.log_out_and_in("lena", passwords["lena"])
        lead_samples_with_the_defaults(j)
        lead_opens_a_round(j)
        j.log_out_and_in("ann", passwords["ann"])
        annotator_reviews_by_keyboard(j)
        j.log_out_and_in("otto", passwords["otto"])
        author_refines_and_edits(j)
        j.log_out_and_in("lena", passwords["lena"])
        lead_trains_a_few_steps(j)
        lead_rates_with_the_trained_rater(j)
