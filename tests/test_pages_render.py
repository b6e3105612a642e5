"""Every page of the app renders for every role that can reach it, on a fresh store (only the
sample project that the first start imports) and on a store with data (sampling runs, rater runs,
reviews and an open review round): no exception and no traceback on the page. The pages' own
tests check what they show; this one catches a page that crashes on a state nobody tried."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from apptest_login import REPO, SESSION_KEY, app_as, login_as
from judgeeye.auth import ROLES, can_see_page
from synthetic_project import fill_synthetic
from judgeeye.store import session_scope
from review_traces import traces_round

VIEWS = Path(__file__).resolve().parents[1] / "judgeeye_app" / "views"
PAGES = sorted(p.stem for p in VIEWS.glob("*.py") if p.stem != "login")  # login: tests/test_review_pages.py
SHOWN = ("markdown", "caption", "text", "code", "error", "warning", "info", "success", "exception")


def assert_rendered(at: AppTest, page: str) -> None:
    assert not at.exception, (page, [e.value for e in at.exception])
    for kind in SHOWN:
        for element in getattr(at, kind):
            assert "Traceback (most recent call last)" not in str(element.value), (page, kind, element.value)


@pytest.mark.parametrize("filled", [False, True], ids=["fresh store", "store with data"])
@pytest.mark.parametrize("role", ROLES)
def test_every_page_renders_for_every_role_that_reaches_it(store_url: str, role: str, filled: bool) -> None:
    login_as(role)
    if filled:
        with session_scope() as s:
            fill_synthetic(s, n_items=60, k=4, seed=1)
        traces_round([f"test-{role}"], 4)
    pages = [p for p in PAGES if can_see_page(role, p)]
    assert pages, role
    assert_rendered(app_as(role), "landing")  # the role's landing page
    for page in pages:  # each page opened afresh, as a link would open it
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
        at.session_state[SESSION_KEY] = login_as(role)
        assert_rendered(at.switch_page(f"judgeeye_app/views/{page}.py").run(), page)
