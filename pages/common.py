"""Small Streamlit helpers shared by pages (no business logic: that lives in `judgeeye`)."""

from __future__ import annotations

import streamlit as st
from sqlalchemy import select

from judgeeye.store import Project, session_scope


def project_picker(label: str = "Project") -> Project | None:
    """Select a project; the choice is kept across pages in session state and the URL."""
    with session_scope() as session:
        projects = session.scalars(select(Project).order_by(Project.id)).all()
    if not projects:
        st.info("No projects yet: import a dataset on the **Data** page.")
        return None
    ids = [p.id for p in projects]
    wanted = st.session_state.get("project_id") or _query_project()
    index = ids.index(wanted) if wanted in ids else 0
    chosen = st.selectbox(label, projects, index=index, format_func=lambda p: f"{p.name} (#{p.id})",
                          key="project_picker")
    st.session_state["project_id"] = chosen.id
    st.query_params["project"] = str(chosen.id)
    return chosen


def _query_project() -> int | None:
    value = st.query_params.get("project")
    return int(value) if value and value.isdigit() else None
