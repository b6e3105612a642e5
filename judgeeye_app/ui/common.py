"""Small Streamlit helpers shared by pages (no business logic: that lives in `judgeeye`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st
from sqlalchemy.exc import DBAPIError
from sqlalchemy import select

from judgeeye.store import Project, read_scope
from judgeeye.store.retry import StoreBusyError, busy_message, is_transient


def project_picker(label: str = "Project") -> Project | None:
    """Select a project; the choice is kept across pages in session state and the URL."""
    with read_scope() as session:
        projects = session.scalars(select(Project).order_by(Project.id)).all()
    if not projects:
        st.info("No projects yet: import a dataset on the **Data** page.")
        return None
    by_id = {p.id: p for p in projects}
    query = _query_project()
    if query is not None and query != st.session_state.get("project_query"):
        st.session_state["project_id"] = query  # a link (Home's next steps) or a bookmark chose it
    wanted = st.session_state.get("project_id") or query
    # the widget follows "project_id", which an action (an import) may set after the widget last
    # ran: stale widget state would otherwise win and switch the user back to the old project
    st.session_state["project_picker"] = wanted if wanted in by_id else projects[0].id
    chosen = by_id[st.selectbox(label, list(by_id), format_func=lambda i: f"{by_id[i].name} (#{i})",
                                key="project_picker", on_change=_picked)]
    st.session_state["project_id"] = st.session_state["project_query"] = chosen.id
    st.query_params["project"] = str(chosen.id)
    return chosen


def _picked() -> None:
    st.session_state["project_id"] = st.session_state["project_picker"]


def _query_project() -> int | None:
    value = st.query_params.get("project")
    return int(value) if value and value.isdigit() else None


@contextmanager
def store_busy_notice() -> Iterator[None]:
    """Around a page action (or a whole page): a database that stays locked or unreachable
    through the store's retries shows a clear message instead of a traceback. The failed
    transaction was rolled back, so nothing of the action was saved."""
    try:
        yield
    except (DBAPIError, StoreBusyError) as exc:
        st.error(busy_text(exc), icon=":material/database:")


def busy_text(exc: DBAPIError | StoreBusyError) -> str:
    """What a user reads when the store stayed busy; re-raises a database error that is not that."""
    if not isinstance(exc, StoreBusyError) and not is_transient(exc):
        raise exc
    return f"The database is busy; nothing was saved — try again in a moment. ({busy_message(exc)})"
