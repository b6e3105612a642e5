"""JudgeEye app entry point: `judgeeye app` (or `streamlit run app.py`)."""

from __future__ import annotations

import streamlit as st

from judgeeye.auth import FIRST_ADMIN, can_see_page, ensure_first_admin
from judgeeye.projects import ensure_sample_project
from judgeeye.store import database_url, session_scope
from pages.access import account_box, current_actor
from pages.common import store_busy_notice

st.set_page_config(page_title="JudgeEye", page_icon=":material/visibility:", layout="wide")


@st.cache_resource(show_spinner="Preparing the store…")
def _first_start(url: str) -> int | None:
    """Once per server process and store: upgrade the schema, import the sample into an empty
    store, and create the first admin, whose password is printed here once."""
    project_id = ensure_sample_project(url)
    with session_scope(url) as session:
        password = ensure_first_admin(session)
    if password:
        print(f"JudgeEye first start: created user {FIRST_ADMIN!r} with password {password} "
              "(shown once; log in and change it)", flush=True)
    return project_id


_first_start(database_url())


def login_only() -> None:
    """Every page but this one needs a session."""
    login = st.Page("pages/login.py", title="Log in", icon=":material/login:", default=True)  # "/" before and after
    st.navigation([login], position="hidden").run()


def pages_for(role: str) -> dict[str, list]:
    annotator_home = role == "annotator"  # annotators land on their review queue
    pages = {
        "Projects": [
            st.Page("pages/home.py", title="Home", icon=":material/home:", default=not annotator_home),
            st.Page("pages/data.py", title="Data", icon=":material/upload_file:"),
            st.Page("pages/codebooks.py", title="Codebooks", icon=":material/menu_book:"),
            st.Page("pages/refine.py", title="Refine", icon=":material/auto_fix_high:"),
        ],
        "Traces": [
            st.Page("pages/sample.py", title="Sample", icon=":material/psychology:"),
            st.Page("pages/review.py", title="Review", icon=":material/rate_review:", default=annotator_home),
            st.Page("pages/assignments.py", title="Assignments", icon=":material/assignment_ind:"),
        ],
        "Evaluate": [
            st.Page("pages/agreement.py", title="Agreement", icon=":material/monitoring:"),
        ],
        "Models": [
            st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        ],
        "Admin": [
            st.Page("pages/users.py", title="Users", icon=":material/group:"),
        ],
    }
    # roles decide which pages exist for this session (judgeeye.auth.PAGE_PERMISSIONS; pages not
    # listed there are for leads and admins); the library checks every action again
    visible = {section: [p for p in entries if can_see_page(role, p.url_path)] for section, entries in pages.items()}
    return {section: entries for section, entries in visible.items() if entries}


with store_busy_notice():  # a store locked past its retries: a clear message, not a traceback
    actor = current_actor()
    if actor is None:
        login_only()  # no st.stop() here: a stopped main script confuses multipage reruns
    else:
        account_box(actor)
        st.navigation(pages_for(actor.role)).run()
