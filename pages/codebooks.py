"""Codebooks: every version of a project's codebook, its history, and a diff of any two."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from judgeeye.codebook import diff_codebooks, list_versions, render_codebook, to_markdown, to_spec
from judgeeye.display import escape_markdown
from pages.common import project_picker
from judgeeye.store import session_scope
from pages.access import require_page

require_page("codebooks")  # every page checks the session itself (see pages/access.py)

st.title("Codebooks")
project = project_picker()
if project is None:
    st.stop()

with session_scope() as session:
    versions = list_versions(session, project.id)
    specs = {v.version: to_spec(v, project) for v in versions}
if not versions:
    st.info("This project has no codebook yet.")
    st.stop()

by_id = {v.id: v.version for v in versions}
current = next((v.version for v in versions if v.id == project.current_codebook_id), versions[-1].version)
history = pd.DataFrame(
    [
        {"Version": v.version, "Current": v.version == current, "Parent": by_id.get(v.parent_id),
         "Origin": v.origin, "Author": v.author or "", "Created": v.created_at, "Note": v.note or ""}
        for v in versions
    ]
)

view_tab, diff_tab, history_tab = st.tabs(["View", "Diff", "History"])

with view_tab:
    version = st.selectbox("Version", list(specs), index=list(specs).index(current), key="cb_view_version")
    spec = specs[version]
    st.caption(f"Scale {spec.scale_min}–{spec.scale_max} · {len(spec.rubric)} rubric levels")
    st.markdown("**Instructions**")
    st.text(spec.instructions)
    st.markdown("**Rubric**")
    st.dataframe(pd.DataFrame([{"Level": r.level, "Description": r.text} for r in spec.rubric]),
                 hide_index=True, width="stretch")
    st.markdown("**Output format**")
    st.text(spec.output_format)
    c1, c2 = st.columns(2)
    c1.download_button("Download JSON", spec.model_dump_json(indent=2), file_name=f"codebook-v{version}.json",
                       mime="application/json")
    c2.download_button("Download Markdown", to_markdown(spec), file_name=f"codebook-v{version}.md",
                       mime="text/markdown")
    with st.expander("As the rater sees it"):
        st.text(render_codebook(spec))

with diff_tab:
    names = list(specs)
    c1, c2 = st.columns(2)
    a = c1.selectbox("From version", names, index=0, key="cb_diff_a")
    b = c2.selectbox("To version", names, index=len(names) - 1, key="cb_diff_b")
    diff = diff_codebooks(specs[a], specs[b])
    if not diff.changed_sections:
        st.success(f"Versions {a} and {b} are identical.")
    for section in diff.sections:
        if not section.changed:
            continue
        st.markdown(f"**{escape_markdown(section.name)}**")
        parts = []
        for op in section.ops:
            if op.kind == "equal":
                parts.append(escape_markdown(op.text))
            elif op.kind == "delete":
                parts.append(f":red[~~{escape_markdown(op.text)}~~]")
            elif op.kind == "insert":
                parts.append(f":green[{escape_markdown(op.text)}]")
            else:  # replace
                parts.append(f":red[~~{escape_markdown(op.old)}~~] :green[{escape_markdown(op.text)}]")
        st.markdown(" ".join(parts))

with history_tab:
    st.dataframe(history, hide_index=True, width="stretch")
