"""The Assignments and Users pages show the state an action leaves, at once, and no internals
(AppTest, real store)."""

from __future__ import annotations

import re
import sqlite3

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from apptest_widgets import box
from apptest_login import app_as
from judgeeye.review import choose, get_round, next_item, none_fits, open_round, shown_candidates
from judgeeye.store import Annotator, ReviewRound, data_dir, dispose_engines, session_scope
from review_data import SYSTEM, make_project, make_users

ASSIGNMENTS = "judgeeye_app/views/assignments.py"


def assignments(project_name: str = "review test"):  # type: ignore[no-untyped-def]
    at = app_as("lead", "lea", page=ASSIGNMENTS)
    picker = at.selectbox(key="project_picker")
    picker.select_index([i for i, o in enumerate(picker.options) if project_name in o][0]).run()
    assert not at.exception, at.exception
    return at


def test_a_round_shows_on_the_rounds_tab_the_moment_it_opens_or_closes(store_url: str) -> None:
    make_users(("ann", "annotator"))
    make_project(3)
    at = assignments()
    assert any(i.value.startswith("No review round yet") for i in at.info)
    at.multiselect(key="as_people").set_value(["ann"])
    at.text_input(key="as_name").input("first look")
    at.button[[b.label for b in at.button].index("Open round")].click().run()
    assert not at.error, [e.value for e in at.error]
    assert not any(i.value.startswith("No review round yet") for i in at.info), "Rounds still says no round"
    rounds = at.dataframe[0].value
    assert list(rounds["Name"]) == ["first look"] and list(rounds["Status"]) == ["open"]
    assert any(s.value.startswith("Opened round #1 “first look”: 3 items") for s in at.success)

    at.button(key="as_status_go").click().run()  # close it: the table, the picker and the button follow
    assert list(at.dataframe[0].value["Status"]) == ["closed"]
    assert box(at, "Round").format_func(1).endswith("(closed)")
    assert at.button(key="as_status_go").label == "Reopen round"


def test_team_and_export_show_words_not_internals(store_url: str) -> None:
    users = make_users(("ann", "annotator"), ("bob", "annotator"))
    _, run_id = make_project(2)
    with session_scope() as s:
        round_id = open_round(s, SYSTEM, run_id, ["ann", "bob"], overlap=2).id
    for name, verdict in (("ann", "choose"), ("bob", "none")):
        for _ in range(2):
            with session_scope() as s:
                item = next_item(s, users[name], round_id)
                if verdict == "choose":
                    choose(s, users[name], round_id, item, shown_candidates(s, get_round(s, round_id), item)[0].id)
                else:
                    none_fits(s, users[name], round_id, item)
    at = assignments()
    team = next(df.value for df in at.dataframe if "annotator" in df.value.columns)
    assert list(team.columns) == ["annotator", "role", "assigned", "submitted", "skipped", "none fits", "edited",
                                  "drafts", "today", "pace (items/h)", "last active"]
    assert all(re.fullmatch(r"—|\d{1,3}(,\d{3})*", v) for v in team["pace (items/h)"])  # whole items per hour
    assert all(v.endswith(" UTC") for v in team["last active"])
    assert "None" not in team.astype(str).to_numpy().ravel().tolist()

    at.button(key="as_export").click().run()
    assert not at.error, [e.value for e in at.error]
    said = [s.value for s in at.success]
    assert said == ["Exported 2 rows."], said
    assert not at.json, "no JSON tree"
    shown = " ".join(said + [m.value for m in at.markdown] + [c.value for c in at.caption])
    assert str(data_dir()) not in shown and "exports" not in shown, "no server path"
    provenance = next(df.value for df in at.dataframe if "trace from" in df.value.columns)
    assert provenance.to_dict("records") == [{"trace from": "human-selected", "rows": 2}]
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["JSONL", "Parquet", "Hugging Face dataset (zip)"], labels


def test_users_page_follows_a_role_changed_elsewhere(store_url: str) -> None:
    make_users(("ann", "annotator"))
    at = app_as("admin", page="judgeeye_app/views/users.py")
    at.selectbox(key="users_pick").set_value("ann").run()
    assert [b.value for b in at.selectbox if b.label == "Role" and b.key.startswith("users_role_ann")] == ["annotator"]
    with session_scope() as s:  # another admin, or the CLI, makes ann an author
        s.scalar(select(Annotator).where(Annotator.name == "ann")).role = "author"
    at.run()
    assert at.dataframe[0].value.set_index("Name").loc["ann", "Role"] == "author"
    assert [b.value for b in at.selectbox if b.label == "Role" and b.key.startswith("users_role_ann")] == ["author"]


def test_users_buttons_do_what_they_showed_and_the_table_follows(store_url: str) -> None:
    make_users(("ann", "annotator"), ("bob", "annotator"))
    at = app_as("admin", page="judgeeye_app/views/users.py")
    at.selectbox(key="users_pick").set_value("ann").run()
    assert at.button(key="users_active").label == "Deactivate"  # shown for ann
    at.selectbox(key="users_pick").set_value("bob")  # picked while the click was on its way
    at.button(key="users_active").click().run()
    active = at.dataframe[0].value.set_index("Name")["Active"]
    assert (bool(active["ann"]), bool(active["bob"])) == (False, True), "the button acts on whom it showed"
    at.selectbox(key="users_pick").set_value("ann").run()
    assert at.button(key="users_active").label == "Activate"
    at.selectbox(key="users_pick").set_value("test-admin").run()
    at.button(key="users_active").click().run()  # an admin cannot lock themselves out
    assert at.error and not at.exception
    assert bool(at.dataframe[0].value.set_index("Name").loc["test-admin", "Active"])


def test_an_action_on_a_locked_store_says_so_and_saves_nothing(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Actions run as callbacks, outside the page's busy-store guard: a store locked by another
    writer past the retries is a message beside the action, not a traceback."""
    if not store_url.startswith("sqlite"):
        pytest.skip("SQLite locking")
    make_users(("ann", "annotator"))
    make_project(3)
    at = assignments()
    monkeypatch.setenv("JUDGEEYE_DB_BUSY_TIMEOUT_MS", "200")
    monkeypatch.setenv("JUDGEEYE_DB_RETRIES", "1")
    monkeypatch.setenv("JUDGEEYE_DB_RETRY_SECONDS", "0.05")
    dispose_engines()
    at.multiselect(key="as_people").set_value(["ann"])
    lock = sqlite3.connect(make_url(store_url).database, isolation_level=None, timeout=10)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        at.button[[b.label for b in at.button].index("Open round")].click().run()
    finally:
        lock.rollback()
        lock.close()
    assert not at.exception, at.exception
    assert any(e.value.startswith("The database is busy; nothing was saved") for e in at.error)
    with session_scope() as s:
        assert not s.scalars(select(ReviewRound)).all()
