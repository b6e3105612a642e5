"""Login, role-based navigation, and the Review, Assignments and Users pages in AppTest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from judgeeye.review import get_round, open_round, shown_candidates
from judgeeye.store import Adjudication, Annotator, ReviewRound, Selection, SelectionEvent, session_scope
from apptest_login import SESSION_KEY, app_as, login_as
from review_data import SYSTEM, make_project, make_users

REPO = Path(__file__).resolve().parents[1]


def test_first_start_prints_the_admin_password_and_login_works(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not at.exception
    printed = capsys.readouterr().out
    password = re.search(r"created user 'admin' with password (\S+)", printed).group(1)
    assert at.text_input(key="login_name") and not at.dataframe  # only the login page, no data
    at.text_input(key="login_name").input("admin")
    at.text_input(key="login_password").input("wrong password")
    at.button[0].click().run()
    assert at.error and SESSION_KEY not in at.session_state
    at.text_input(key="login_password").input(password)
    at.button[0].click().run()
    assert not at.exception and at.session_state[SESSION_KEY]["role"] == "admin"
    # AppTest reruns only the page script after the first run, so the app is opened afresh with
    # that session (the browser test follows the real redirect)
    home = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    home.session_state[SESSION_KEY] = at.session_state[SESSION_KEY]
    home.run()
    assert not home.exception and home.dataframe[0].value["Project"].tolist()  # Home, the sample project
    assert "created user" not in capsys.readouterr().out  # the password is printed once only


@pytest.mark.parametrize("role,allowed,denied", [
    ("annotator", ["judgeeye_app/views/review.py"], ["judgeeye_app/views/data.py", "judgeeye_app/views/codebooks.py", "judgeeye_app/views/sample.py",
                                        "judgeeye_app/views/assignments.py", "judgeeye_app/views/users.py"]),
    ("author", ["judgeeye_app/views/codebooks.py", "judgeeye_app/views/review.py"], ["judgeeye_app/views/data.py", "judgeeye_app/views/users.py", "judgeeye_app/views/assignments.py"]),
    ("lead", ["judgeeye_app/views/data.py", "judgeeye_app/views/sample.py", "judgeeye_app/views/assignments.py"], ["judgeeye_app/views/users.py"]),
    ("admin", ["judgeeye_app/views/users.py", "judgeeye_app/views/assignments.py"], []),
])
def test_navigation_follows_the_role(store_url: str, role: str, allowed: list[str], denied: list[str]) -> None:
    for page in allowed:
        at = app_as(role, page=page)
        assert not at.exception, (page, at.exception)
        assert not any("does not give access" in e.value for e in at.error)
    for page in denied:
        at = app_as(role)
        with pytest.raises(Exception):
            at.switch_page(page).run()
            assert False, f"{role} reached {page}"  # pragma: no cover


def test_a_deactivated_user_is_logged_out(store_url: str) -> None:
    at = app_as("annotator", "leo")
    assert not at.error
    with session_scope() as s:
        s.scalar(select(Annotator).where(Annotator.name == "leo")).active = False
    at.run()  # the page itself checks the session again and sends them to the login page
    assert at.text_input(key="login_name") and SESSION_KEY not in at.session_state
    fresh = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    fresh.session_state[SESSION_KEY] = {"id": 1, "name": "leo", "role": "admin"}  # a forged role does not help
    fresh.run()
    assert fresh.text_input(key="login_name") and SESSION_KEY not in fresh.session_state


def _round(names: list[str], **kw) -> int:  # type: ignore[no-untyped-def]
    _, run_id = make_project(4)
    with session_scope() as s:
        return open_round(s, SYSTEM, run_id, names, **kw).id


def _selection(name: str) -> list[Selection]:
    with session_scope() as s:
        uid = s.scalar(select(Annotator.id).where(Annotator.name == name))
        return list(s.scalars(select(Selection).where(Selection.annotator_id == uid).order_by(Selection.item_id)).all())


def test_review_page_choose_none_fits_edit_skip_back_undo(store_url: str) -> None:
    login_as("annotator", "ann")
    round_id = _round(["ann"])
    at = app_as("annotator", "ann")  # annotators land on Review
    assert not at.exception
    assert [b.label for b in at.button if b.key and b.key.startswith("rv_choose_")] == ["Choose 1", "Choose 2"]
    assert any("Keys:" in c.value for c in at.caption)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Done"] == "0 / 4" and metrics["Human rating"]
    first_item = _selection("ann")[0].item_id
    at.button(key="rv_choose_2").click().run()
    sel = _selection("ann")
    assert sel[0].state == "submitted" and sel[0].verdict == "chosen"
    with session_scope() as s:
        shown = {c.id for c in shown_candidates(s, get_round(s, round_id), first_item)}
    assert sel[0].candidate_id in shown
    assert {m.label: m.value for m in at.metric}["Done"] == "1 / 4"

    at.button(key="rv_none").click().run()
    assert _selection("ann")[1].verdict == "none_fits"

    at.button(key="rv_edit_open").click().run()
    area = [t for t in at.text_area if t.key.startswith("rv_edit_text_")][0]
    area.set_value("My own reasoning: the plot is simple.").run()  # saved as a draft on change
    assert _selection("ann")[2].state == "draft"
    at = app_as("annotator", "ann")  # a reload reopens the draft
    area = [t for t in at.text_area if t.key.startswith("rv_edit_text_")][0]
    assert area.value == "My own reasoning: the plot is simple."
    at.button(key="rv_edit_submit").click().run()
    edited = _selection("ann")[2]
    assert edited.state == "submitted" and edited.verdict == "edited" and edited.edit_diff

    at.button(key="rv_skip").click().run()
    assert _selection("ann")[3].state == "skipped"
    assert any("Nothing left" in s.value for s in at.success)

    at.button(key="rv_undo_done").click().run()  # un-skip: the item is back
    assert _selection("ann")[3].state == "pending"
    at.button(key="rv_back").click().run()
    assert any("you edited trace" in c.value for c in at.caption)
    at.button(key="rv_forward").click().run()
    with session_scope() as s:
        actions = [e.action for e in s.scalars(select(SelectionEvent).order_by(SelectionEvent.id)).all()]
    assert actions.count("undo") == 1 and actions.count("edit_draft") >= 1 and "edit_submit" in actions


def test_review_page_shows_item_text_inert(store_url: str) -> None:
    login_as("annotator", "ann")
    _, run_id = make_project(1, text="<script>alert(1)</script> [click](javascript:alert(1)) **bold**")
    with session_scope() as s:
        open_round(s, SYSTEM, run_id, ["ann"])
    at = app_as("annotator", "ann")
    story = [m.value for m in at.markdown if "script" in m.value][0]
    assert "\\<script\\>" in story and "\\[click\\]\\(javascript" in story and "\\*\\*bold" in story


def test_assignments_page_opens_a_round_settles_and_exports(store_url: str) -> None:
    make_users(("ann", "annotator"), ("bob", "annotator"))
    _, run_id = make_project(3)
    at = app_as("lead", "lea", page="judgeeye_app/views/assignments.py")
    assert not at.exception
    picker = at.selectbox(key="project_picker")
    picker.select_index([i for i, o in enumerate(picker.options) if "review test" in o][0]).run()
    at.multiselect(key="as_people").set_value(["ann", "bob"])
    at.number_input(key="as_overlap").set_value(2)
    at.slider(key="as_share").set_value(0.0)
    at.button[[b.label for b in at.button].index("Open round")].click().run()
    assert at.success and "3 items, 6 reviews" in at.success[0].value, [e.value for e in at.error]
    with session_scope() as s:
        rnd = s.scalars(select(ReviewRound)).one()
    ann, bob = (app_as("annotator", n) for n in ("ann", "bob"))
    ann.button(key="rv_choose_1").click().run()
    bob.button(key="rv_none").click().run()
    at = app_as("lead", "lea", page="judgeeye_app/views/assignments.py")
    picker = at.selectbox(key="project_picker")
    picker.select_index([i for i, o in enumerate(picker.options) if "review test" in o][0]).run()
    radios = [r for r in at.radio if r.key.startswith("as_settle_")]
    assert len(radios) == 1
    radios[0].set_value(0).run()  # ann's trace
    [b for b in at.button if b.key and b.key.startswith("as_settle_go_")][0].click().run()
    with session_scope() as s:
        settled = s.scalars(select(Adjudication)).one()
    assert settled.verdict == "chosen" and settled.round_id == rnd.id
    assert any("No open disagreements" in s.value for s in at.success)
    at.button(key="as_export").click().run()
    assert any(s.value.startswith("Exported 3 rows") for s in at.success), [e.value for e in at.error]


def test_users_page_adds_a_user_and_shows_the_password_once(store_url: str) -> None:
    at = app_as("admin", page="judgeeye_app/views/users.py")
    at.text_input(key="users_add_name").input("newbie")
    at.selectbox(key="users_add_role").set_value("author")
    [b for b in at.button if b.label == "Add"][0].click().run()
    assert not at.exception
    shown = [w.value for w in at.warning if "Password for" in w.value]
    assert shown
    password = re.search(r"`(\S+)`", shown[0]).group(1)
    from judgeeye.auth import authenticate
    with session_scope() as s:
        actor = authenticate(s, "newbie", password)
    assert actor is not None and actor.role == "author"
    at.run()
    assert not [w for w in at.warning if "Password for" in w.value]
