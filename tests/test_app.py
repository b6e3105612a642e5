"""The app's pages, run headless with Streamlit's AppTest against a real SQLite store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from judgeeye.projects import SAMPLE_PROJECT
from judgeeye.store import Codebook, Item, Project, session_scope
from apptest_login import SESSION_KEY, app_as, login_as

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"


def _app() -> AppTest:
    return app_as("admin")


def _page(at: AppTest, page: str) -> AppTest:
    return at.switch_page(page).run()


def test_first_start_shows_the_sample_project(store_url: str) -> None:
    at = _app()
    assert not at.exception
    table = at.dataframe[0].value
    assert SAMPLE_PROJECT in list(table["Project"])
    row = table[table["Project"] == SAMPLE_PROJECT].iloc[0]
    assert row["Items"] == 300
    assert 0 < row["Gold items"] < 300
    assert row["Codebook"] == "v1 of 1"


def test_data_page_imports_a_builtin_format(store_url: str) -> None:
    at = _page(_app(), "judgeeye_app/views/data.py")
    assert not at.exception
    at.radio(key="data_source").set_value("Bundled sample (HANNA, 300 stories)").run()
    at.selectbox(key="data_loader").set_value("hanna").run()
    at.selectbox(key="data_dimension").set_value("engagement").run()
    assert not at.exception
    assert [m.label for m in at.metric][:3] == ["Items", "Gold items", "Dropped (raters disagree)"]
    assert at.metric[0].value == "300"
    at.text_input(key="import_name").set_value("engagement from the app").run()
    at.button(key="import_go").click().run()
    assert not at.exception
    assert at.success, [e.value for e in at.error]
    with session_scope() as s:
        project = s.scalar(select(Project).where(Project.name == "engagement from the app"))
        assert project is not None and project.dimension == "engagement"
        n_gold = s.scalar(select(func.count()).select_from(Item).where(
            Item.project_id == project.id, Item.gold_status == "gold"))
        assert str(n_gold) == at.metric[1].value
        assert s.scalar(select(func.count()).select_from(Codebook).where(Codebook.project_id == project.id)) == 1


def _upload(data_dir: Path, name: str) -> None:
    target = data_dir / "uploads"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / name, target / name)


def test_data_page_maps_columns_of_an_uploaded_file(store_url: str, data_dir: Path) -> None:
    _upload(data_dir, "generic_ratings.csv")
    at = _page(_app(), "judgeeye_app/views/data.py")
    at.radio(key="data_source").set_value("A file uploaded before").run()
    at.radio(key="data_kind").set_value("Map columns").run()
    at.selectbox(key="map_id").set_value("id").run()
    at.multiselect(key="map_text").set_value(["text"]).run()
    at.multiselect(key="map_raters").set_value(["r1", "r2", "r3"]).run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    at.text_input(key="import_name").set_value("mapped").run()
    at.button(key="import_go").click().run()
    assert at.success
    with session_scope() as s:
        project = s.scalar(select(Project).where(Project.name == "mapped"))
        items = s.scalars(select(Item).where(Item.project_id == project.id)).all()
        assert {i.external_id for i in items} == {"a", "b", "c", "d", "e", "f"}


def test_data_page_shows_validation_errors_inline(store_url: str, data_dir: Path) -> None:
    _upload(data_dir, "generic_ratings_bad.csv")
    at = _page(_app(), "judgeeye_app/views/data.py")
    at.radio(key="data_source").set_value("A file uploaded before").run()
    at.radio(key="data_kind").set_value("Map columns").run()
    at.selectbox(key="map_id").set_value("id").run()
    at.multiselect(key="map_text").set_value(["text"]).run()
    at.multiselect(key="map_raters").set_value(["r1", "r2", "r3"]).run()
    assert at.error and "nothing was written" in at.error[0].value
    assert "**row 3, field “r2”:** rating 'seven' is not a number" in at.error[0].value  # in full, as text
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Project)) == 1  # only the sample


def test_codebooks_page_views_and_diffs(store_url: str) -> None:
    at = _page(_app(), "judgeeye_app/views/codebooks.py")
    assert not at.exception
    assert any("Rubric" in m.value for m in at.markdown)
    assert at.dataframe[0].value["Level"].tolist() == [1, 2, 3, 4, 5]
    at.selectbox(key="cb_diff_b_1").set_value(1).run()
    assert any("identical" in s.value for s in at.success)


def test_pages_say_what_to_do_with_an_empty_store(store_url: str) -> None:
    at = AppTest.from_file(str(REPO / "judgeeye_app" / "views" / "codebooks.py"), default_timeout=30)
    at.session_state[SESSION_KEY] = login_as("author")  # every page checks the session itself
    at.run()
    assert not at.exception
    assert any("No projects yet" in i.value for i in at.info)


def test_browse_tab_lists_items_even_before_a_file_is_chosen(store_url: str) -> None:
    at = _page(_app(), "judgeeye_app/views/data.py")
    assert not at.exception
    frames = [d.value for d in at.dataframe]
    assert any(len(f) == 300 and "gold" in f.columns for f in frames)
    at.selectbox(key="browse_status").set_value("dropped_disagreement").run()
    dropped = [d.value for d in at.dataframe if "status" in d.value.columns][0]
    assert len(dropped) > 0 and set(dropped["status"]) == {"dropped: raters disagree"}


def test_a_page_run_on_its_own_asks_for_a_login(store_url: str) -> None:
    """Streamlit runs a page file without app.py on a deep link to a fresh server (in a pages/
    folder mode): the page itself refuses to work without a session."""
    for page in ("home", "data", "codebooks", "sample", "review", "assignments", "users"):
        at = AppTest.from_file(str(REPO / "judgeeye_app" / "views" / f"{page}.py"), default_timeout=30).run()
        assert not at.exception, page
        assert [e.value for e in at.error] == ["Log in first."], page
        assert not at.dataframe and not at.text_input and not at.button, page
