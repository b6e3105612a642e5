"""The Streamlit app's entry script: `judgeeye app` runs this file (`streamlit run app.py` in a
checkout runs it through the thin top-level app.py). Pages live in ``views/``, one file each,
and shared widgets in ``ui/``; neither holds business logic, which lives in ``judgeeye``."""

from __future__ import annotations

import importlib
from pathlib import Path

import streamlit as st

from judgeeye.auth import FIRST_ADMIN, can_see_page, ensure_first_admin
from judgeeye.projects import ensure_sample_project
from judgeeye.store import database_url, session_scope
from judgeeye_app.ui.access import account_box, current_actor
from judgeeye_app.ui.common import store_busy_notice

#: the page files run by st.navigation (not a Streamlit "pages/" folder: nothing runs a page
#: without this script's login and navigation)
VIEWS = Path(__file__).resolve().parent / "views"


@st.cache_resource(show_spinner="Preparing the store…")
def _first_start(url: str) -> int | None:
    """Once per server process and store: upgrade the schema, import the sample into an empty
    store, and create the first admin, whose password is printed here once. The library loads
    scipy.stats and scikit-learn on first use (so the CLI starts sooner); the server loads them
    here, before the first page, so that no page's run pays for them."""
    for module in ("scipy.stats", "sklearn.model_selection"):
        importlib.import_module(module)
    project_id = ensure_sample_project(url)
    with session_scope(url) as session:
        password = ensure_first_admin(session)
    if password:
        print(f"JudgeEye first start: created user {FIRST_ADMIN!r} with password {password} "
              "(shown once; log in and change it)", flush=True)
    return project_id


def login_only() -> None:
    """Every page but this one needs a session. A deep link to a page (``/review``) shows the
    login under that address, so after logging in the user is where the link pointed."""
    login = st.Page(VIEWS / "login.py", title="Log in", icon=":material/login:", default=True)  # "/" before and after
    aliases = [st.Page(VIEWS / "login.py", title="Log in", url_path=page.stem)
               for page in sorted(VIEWS.glob("*.py")) if page.stem != "login"]
    st.navigation([login, *aliases], position="hidden").run()


def pages_for(role: str) -> dict[str, list]:
    annotator_home = role == "annotator"  # annotators land on their review queue
    pages = {
        "Projects": [
            st.Page(VIEWS / "home.py", title="Home", icon=":material/home:", default=not annotator_home),
            st.Page(VIEWS / "data.py", title="Data", icon=":material/upload_file:"),
            st.Page(VIEWS / "codebooks.py", title="Codebooks", icon=":material/menu_book:"),
            st.Page(VIEWS / "refine.py", title="Refine", icon=":material/auto_fix_high:"),
        ],
        "Traces": [
            st.Page(VIEWS / "sample.py", title="Sample", icon=":material/psychology:"),
            st.Page(VIEWS / "review.py", title="Review", icon=":material/rate_review:", default=annotator_home),
            st.Page(VIEWS / "assignments.py", title="Assignments", icon=":material/assignment_ind:"),
        ],
        "Evaluate": [
            st.Page(VIEWS / "agreement.py", title="Agreement", icon=":material/monitoring:"),
            st.Page(VIEWS / "experiments.py", title="Experiments", icon=":material/science:"),
        ],
        "Models": [
            st.Page(VIEWS / "train.py", title="Train", icon=":material/model_training:"),
        ],
        "Admin": [
            st.Page(VIEWS / "users.py", title="Users", icon=":material/group:"),
        ],
    }
    # roles decide which pages exist for this session (judgeeye.auth.PAGE_PERMISSIONS; pages not
    # listed there are for leads and admins); the library checks every action again
    visible = {section: [p for p in entries if can_see_page(role, p.url_path)] for section, entries in pages.items()}
    return {section: entries for section, entries in visible.items() if entries}


def run() -> None:
    """One run of the app script: first start, then the login page or the user's pages."""
    st.set_page_config(page_title="JudgeEye", page_icon=":material/visibility:", layout="wide")
    _first_start(database_url())
    with store_busy_notice():  # a store locked past its retries: a clear message, not a traceback
        actor = current_actor()
        if actor is None:
            login_only()  # no st.stop() here: a stopped main script confuses multipage reruns
        else:
            account_box(actor)
            st.navigation(pages_for(actor.role)).run()


if __name__ == "__main__":  # streamlit runs this file as __main__
    run()
