"""The critique map and the side-by-side editor in a real browser (Debian chromium, Playwright,
`streamlit run app.py` on loopback). A guideline author hovers a critique on the map, selects it
and reads the trace it came from; edits the refined codebook beside the original and saves; is
refused a stale save; makes the original current again in History. Critique and codebook text
carrying `<script>`, raw HTML and `javascript:` links stays inert."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from browser import browser_page, enter, log_in, settled, streamlit_app, wait_for
from chat_server import chat_server
from judgeeye.auth import Actor
from judgeeye.codebook import current_version, list_versions, to_spec
from judgeeye.engines import EngineConfig
from judgeeye.jobs import run_job
from judgeeye.refine import RefineSettings
from judgeeye.refine.runner import launch_refinement
from judgeeye.store import Candidate, Critique, Item, session_scope
from refine_data import make_project, save_as_another_author, scripted_reply
from review_data import PASSWORD, make_users

pytestmark = pytest.mark.slow
# no full stops: the scripted critic splits sentences on them
HOSTILE = "<script>pwned=1</script> The ending uses <img src=x onerror=pwned2=1> [here](javascript:alert(1))"


@pytest.fixture
def refined(store_url: str, tmp_path: Path) -> int:
    """A project refined (both) by a scripted model on loopback; one level-4 trace carries hostile text."""
    project_id = make_project(tmp_path, per_level=3, test_per_level=0)
    with session_scope() as s:
        cand = s.scalars(select(Candidate).join(Item, Item.id == Candidate.item_id)
                         .where(Item.external_id == "L4-0", Candidate.accepted.is_(True))).one()
        cand.answer = HOSTILE + ". " + cand.answer
    with chat_server(scripted_reply) as (url, _):
        engine = EngineConfig(kind="openai", model="scripted", base_url=url, max_retries=0)
        job_id = launch_refinement(project_id, RefineSettings(mode="both", engine=engine, n_inst=2, n_rubric=3,
                                                              k_max=3), actor=Actor.system(), start=False)
        assert run_job(job_id) == "succeeded"
    make_users(("ada", "author"))
    return project_id


@pytest.fixture
def server(refined: int, tmp_path: Path) -> Iterator[str]:
    with streamlit_app(tmp_path) as url:
        yield url


def _assert_inert(page) -> None:  # type: ignore[no-untyped-def]
    assert page.evaluate("window.pwned") is None and page.evaluate("window.pwned2") is None
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.locator("img[src='x']").count() == 0


def test_author_uses_the_critique_map_and_the_editor(server: str, refined: int, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    project_id = refined
    with session_scope() as s:
        hostile = s.scalars(select(Critique).where(Critique.text.contains("<script>pwned=1"))).first()
        assert hostile is not None, "the hostile sentence became a critique"
        hostile_text = hostile.text

    with browser_page(tmp_path, "refine") as page:
        page.goto(server)
        log_in(page, "ada", PASSWORD)
        page.get_by_role("link", name="Refine").click()
        page.get_by_role("tab", name="Critique map").click()
        plot = page.locator(".js-plotly-plot").first
        expect(plot).to_be_visible()
        expect(page.get_by_text("Level 4: 10 critiques")).to_be_visible()
        settled(page)

        # hover: the critique and its item in the label
        markers = plot.locator(".scatterlayer .trace").nth(3).locator("path.point")  # level 4
        expect(markers).to_have_count(10)
        for i in range(10):
            markers.nth(i).hover(force=True)
            label = plot.locator(".hoverlayer .hovertext")
            if label.count() and "pwned=1" in label.text_content():
                break
        else:
            raise AssertionError("no level-4 marker's hover label shows the hostile critique")
        hover = label.text_content()
        assert "item L4-0" in hover and "level 4" in hover
        _assert_inert(page)

        # select that point: the trace it came from opens beside the map
        markers.nth(i).click(force=True)
        expect(page.get_by_text("Critique (level 4)")).to_be_visible()
        trace = page.get_by_text("Trace (answer)")
        expect(trace).to_be_visible()
        body = page.locator("body").inner_text()
        assert hostile_text in body and "L4-0" in body
        assert "<script>pwned=1</script>" in body  # shown as text, never run
        _assert_inert(page)

        # the editor: original left, refined right; edit, see the live diff, save
        page.get_by_role("link", name="Codebooks").click()
        page.get_by_role("tab", name="Edit").click()
        expect(page.get_by_text("Version 2 (refined instructions and rubric), editable")).to_be_visible()
        instructions = page.get_by_label("Instructions", exact=True)
        added = "Step 4: check the ending twice. <script>window.pwned=1</script> [x](javascript:alert(1))"
        enter(page, instructions, instructions.input_value() + "\n" + added)
        # the live diff shows the inserted words as words: the script and the link are text in an <ins>
        inserted = page.locator("[data-testid='stHtml'] ins").filter(has_text="<script>window.pwned=1</script>")
        expect(inserted.first).to_be_visible()
        expect(page.locator("[data-testid='stHtml'] ins").filter(has_text="[x](javascript:alert(1))").first).to_be_visible()
        enter(page, page.get_by_label("Note for this version"), "clearer last step")
        page.get_by_role("button", name="Save as a new version").click()
        expect(page.get_by_text("Saved as version 3, now the current one.")).to_be_visible()
        with session_scope() as s:
            v3 = list_versions(s, project_id)[-1]
            assert (v3.version, v3.origin, v3.author, v3.note) == (3, "edited", "ada", "clearer last step")
            assert to_spec(v3).instructions.endswith(added)
        _assert_inert(page)

        # someone else saves meanwhile: this editor's save is refused with the diff
        save_as_another_author(project_id, 3, 5, "Masterfully layered.")
        settled(page)
        enter(page, page.get_by_label("Level 1"), "Nothing happens; no characters.")
        page.get_by_role("button", name="Save as a new version").click()
        expect(page.get_by_text("Not saved: someone saved version 4")).to_be_visible()
        expect(page.get_by_text("What changed meanwhile: version 3 → version 4")).to_be_visible()
        with session_scope() as s:
            assert [v.version for v in list_versions(s, project_id)] == [1, 2, 3, 4]

        # History: make the original current again
        page.get_by_role("tab", name="History").click()
        settled(page)
        page.get_by_label("Make a version current").click()
        page.get_by_role("option", name="v1 · original").click()
        settled(page)
        page.get_by_role("button", name="Make current").click()
        wait_for(lambda: _current(project_id) == 1, "version 1 made current")
        _assert_inert(page)


def _current(project_id: int) -> int:
    with session_scope() as s:
        return current_version(s, project_id).version
