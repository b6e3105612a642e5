"""Home: per project what to do next, by role, linked to the page that does it (the decision is
judgeeye.projects.next_step; the page renders it), the store's location, no internals; and the
sidebar's account buttons read in full."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from apptest_login import app_as
from judgeeye.auth import Actor
from judgeeye.projects import ensure_sample_project, next_step, pipeline_status
from judgeeye.review import next_item, open_round
from judgeeye.review.actions import choose
from judgeeye.review.rounds import set_round_status, shown_candidates
from judgeeye.store import (Item, Job, Project, RaterRun, ReviewRound, SamplingRun, TrainingRun, read_scope,
                            session_scope, store_location)
from review_data import PASSWORD, SYSTEM, make_project, make_users

ROLES = ("annotator", "author", "lead", "admin")


def _steps(project_id: int, actors: dict[str, Actor]) -> dict[str, tuple[str | None, str, str]]:
    """(page, link label, sentence) of the project's next step for each user."""
    out = {}
    with read_scope() as s:
        for name, actor in actors.items():
            status = next(p for p in pipeline_status(s, actor) if p.id == project_id)
            step = next_step(status, actor.role)
            out[name] = (step.page, step.label, step.text)
    return out


def _pages(project_id: int, actors: dict[str, Actor]) -> dict[str, str | None]:
    return {name: page for name, (page, _, _) in _steps(project_id, actors).items()}


def test_the_next_step_follows_the_pipeline_for_each_role(store_url: str) -> None:
    actors = make_users(("ann", "annotator"), ("aut", "author"), ("lea", "lead"), ("adm", "admin"))
    project_id, run_id = make_project(4)

    # no gold item: import again; the annotator waits, the author works from the traces there are
    with session_scope() as s:
        s.execute(update(Item).where(Item.project_id == project_id).values(gold_status="dropped_disagreement"))
    assert _pages(project_id, actors) == {"ann": None, "aut": "refine", "lea": "data", "adm": "data"}
    with session_scope() as s:
        s.execute(update(Item).where(Item.project_id == project_id).values(gold_status="gold"))
        s.add(Job(kind="sample", project_id=project_id, status="running"))  # sampling more
    steps = _steps(project_id, actors)
    assert steps["lea"][:2] == ("sample", "Follow the sampling run")
    assert steps["aut"][0] == "refine"  # the run's accepted traces are there already
    assert steps["ann"] == (None, "", steps["ann"][2]) and "review round" in steps["ann"][2]

    # accepted traces, no round: the lead opens one
    with session_scope() as s:
        s.execute(update(Job).values(status="succeeded"))
    steps = _steps(project_id, actors)
    assert steps["lea"][:2] == ("assignments", "Open a review round") and "4 items have accepted traces" in steps["lea"][2]

    # a round with ann: ann reviews, the lead follows the round
    with session_scope() as s:
        round_id = open_round(s, SYSTEM, run_id, ["ann"]).id
    steps = _steps(project_id, actors)
    assert steps["ann"][:2] == ("review", "Review") and steps["ann"][2].startswith("4 items of an open round")
    assert steps["lea"][:2] == ("assignments", "Follow the review round")
    with session_scope() as s:  # closed before anyone reviewed: open one again
        set_round_status(s, SYSTEM, round_id, "closed")
    assert _steps(project_id, actors)["lea"][:2] == ("assignments", "Open a review round")
    assert _pages(project_id, actors)["ann"] is None
    with session_scope() as s:
        set_round_status(s, SYSTEM, round_id, "open")

    # ann reviews everything: nothing waits for her; the lead trains a rater
    for _ in range(4):
        with session_scope() as s:
            item_id = next_item(s, actors["ann"], round_id)
            choose(s, actors["ann"], round_id, item_id, shown_candidates(s, s.get(ReviewRound, round_id), item_id)[0].id)
    steps = _steps(project_id, actors)
    assert steps["ann"][0] is None and "Nothing waits for your review" in steps["ann"][2]
    assert steps["lea"][:2] == ("train", "Train a rater") and "4 items reviewed" in steps["lea"][2]
    assert steps["aut"][0] == "refine"

    # a trained rater: measure agreement; once measured: see it
    with session_scope() as s:
        s.add(TrainingRun(project_id=project_id, status="succeeded"))
    assert _steps(project_id, actors)["lea"][:2] == ("agreement", "Measure agreement")
    with session_scope() as s:
        s.add(RaterRun(project_id=project_id, codebook_id=s.get(Project, project_id).current_codebook_id, name="r"))
    steps = _steps(project_id, actors)
    assert steps["lea"][:2] == steps["adm"][:2] == ("agreement", "See agreement")


def test_a_project_without_sampled_traces_starts_with_sampling(store_url: str) -> None:
    actors = make_users(("lea", "lead"), ("aut", "author"))
    project_id, run_id = make_project(3)
    with session_scope() as s:  # no run yet
        s.delete(s.get(SamplingRun, run_id))
    steps = _steps(project_id, actors)
    assert steps["lea"] == ("sample", "Sample traces", "Sample reasoning traces for the 3 gold items.")
    assert steps["aut"][0] == "codebooks" and steps["aut"][2].startswith("Waiting for a lead to sample traces.")


# ----------------------------------------------------------------------------- the page

INTERNALS = re.compile(r"\bNone\b|\{'|\[\]|_id\b|items_with_accepted|gold_items")


def _texts(at) -> str:  # type: ignore[no-untyped-def]
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [str(e.proto) for e in at.get("page_link")]
    return "\n".join(parts).replace("\\", "")  # markdown escapes


@pytest.mark.parametrize("role", ROLES)
def test_home_shows_each_project_s_next_step_and_no_internals(store_url: str, role: str) -> None:
    ensure_sample_project()  # project 1, nothing sampled yet
    make_project(3, name="second project")  # project 2, accepted traces
    at = app_as(role)
    assert not at.exception
    text = _texts(at)
    links = at.get("page_link")
    if role == "annotator":  # lands on Review; Home is one click away
        at.switch_page("judgeeye_app/views/home.py").run()
        text, links = _texts(at), at.get("page_link")
    assert "Next steps" in [h.value for h in at.subheader]
    assert "HANNA story complexity (sample)" in text and "second project" in text
    assert not INTERNALS.search(text), INTERNALS.search(text)
    shown_store = f"`{store_location()}`" in text
    assert shown_store == (role in ("lead", "admin"))  # for those who manage the data
    labels = [link.proto.label for link in links]
    if role in ("lead", "admin"):
        assert labels == ["Sample traces", "Open a review round"]
        assert [link.proto.page for link in links] == ["sample", "assignments"]
        assert all(link.proto.query_string == f"project={i}" for i, link in zip((1, 2), links))
    elif role == "author":
        assert labels == ["Check the codebook", "Refine the codebook"]
    else:
        assert labels == []


# ----------------------------------------------------------------------------- in chromium


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[str]:
    from browser import streamlit_app

    with streamlit_app(tmp_path) as url:
        yield url


@pytest.mark.slow
def test_a_lead_follows_a_next_step_and_reads_the_sidebar_in_full(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from browser import browser_page, log_in, settled

    make_users(("lea", "lead"))
    ensure_sample_project()
    make_project(3, name="second project")
    with browser_page(tmp_path, "home") as page:
        page.goto(server)
        log_in(page, "lea", PASSWORD)
        expect(page.get_by_text("Next steps")).to_be_visible()
        expect(page.get_by_text(store_location())).to_be_visible()
        settled(page)
        sidebar = page.get_by_test_id("stSidebar")
        for name in ("Log out", "Change password"):
            label = sidebar.get_by_role("button", name=name).get_by_test_id("stMarkdownContainer")
            expect(label).to_have_text(name)
            width, shown = label.evaluate("el => [el.scrollWidth, el.clientWidth]")
            assert width <= shown, f"the {name!r} button's label is cut off ({width} px in {shown} px)"

        page.locator(".st-key-next_2").get_by_role("link", name="Open a review round").click()
        expect(page.get_by_role("heading", name="Assignments")).to_be_visible()
        expect(page).to_have_url(re.compile(r"/assignments\?project=2$"))
        settled(page)
        # the page opens on the project the step was for, not the first one
        expect(page.get_by_role("combobox", name="Project")).to_have_value("second project (#2)")
