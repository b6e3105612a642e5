"""Codebooks: every version of a project's codebook, the side-by-side editor, diffs, history."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from judgeeye.codebook import (
    CodebookSpec,
    StaleVersionError,
    diff_codebooks,
    list_versions,
    render_codebook,
    to_markdown,
    to_spec,
)
from judgeeye.codebook.editor import EditError, default_pair, edited_spec, make_current, save_edit
from judgeeye.codebook.versions import describe_origin
from judgeeye.display import escape_markdown
from judgeeye.store import read_scope, session_scope
from judgeeye_app.ui.access import require_page
from judgeeye_app.ui.common import project_picker
from judgeeye_app.ui.diff import show_codebook_diff

actor = require_page("codebooks")  # every page checks the session itself (see pages/access.py)

st.title("Codebooks")
project = project_picker()
if project is None:
    st.stop()

with read_scope() as session:
    versions = list_versions(session, project.id)
    specs = {v.version: to_spec(v, project) for v in versions}
    pair = default_pair(session, project.id)
if not versions:
    st.info("This project has no codebook yet.")
    st.stop()

by_id = {v.id: v.version for v in versions}
rows = {v.version: v for v in versions}
current = next((v.version for v in versions if v.id == project.current_codebook_id), versions[-1].version)


def origin_label(version: int) -> str:
    return describe_origin(rows[version].origin)


def version_label(version: int) -> str:
    """A version's label in the pickers (stable: a label that changed with the current version
    would reset a picker's choice when someone else saves)."""
    return f"v{version} · {origin_label(version)}"


history = pd.DataFrame(
    [
        {"Version": f"v{v.version}", "Current": "current" if v.version == current else "",
         "Derived from": f"v{by_id[v.parent_id]}" if v.parent_id in by_id else "— (first version)",
         "Origin": origin_label(v.version), "Author": v.author or "—",
         "Created": v.created_at.strftime("%Y-%m-%d %H:%M"), "Note": v.note or ""}
        for v in versions
    ]
)


def show_parts(spec: CodebookSpec) -> None:
    """A codebook's sections in the order the rater reads them (placeholders filled in)."""
    st.markdown("**Instructions**")
    st.text(spec.instructions)
    st.markdown("**Rubric**")
    if spec.rubric_intro:
        st.text(spec.rubric_intro)
    st.dataframe(pd.DataFrame([{"Level": r.level, "Description": r.text} for r in spec.rubric]),
                 hide_index=True, width="stretch")
    if spec.rubric_notes:
        st.text(spec.rubric_notes)
    if spec.instructions_after:
        st.markdown("**Instructions after the rating scale**")
        st.text(spec.instructions_after)
    st.markdown("**Output format**")
    st.text(spec.rendered_output_format())


view_tab, edit_tab, diff_tab, history_tab = st.tabs(["View", "Edit", "Diff", "History"])

with view_tab:
    # keyed by the newest version: a new version (a save here or elsewhere) opens on the current one
    version = st.selectbox("Version", list(specs), index=list(specs).index(current),
                           key=f"cb_view_version_{list(specs)[-1]}_{current}", format_func=version_label)
    spec = specs[version]
    st.caption(f"Scale {spec.scale_min}–{spec.scale_max} · {len(spec.rubric)} rubric levels")
    show_parts(spec)
    c1, c2 = st.columns(2)
    c1.download_button("Download JSON", spec.model_dump_json(indent=2), file_name=f"codebook-v{version}.json",
                       mime="application/json")
    c2.download_button("Download Markdown", to_markdown(spec), file_name=f"codebook-v{version}.md",
                       mime="text/markdown")
    with st.expander("As the rater sees it"):
        st.text(render_codebook(spec))


def editor() -> None:
    """Any version on the left (read-only), the one being edited on the right, a live diff."""
    names = list(specs)
    left_default, right_default = pair or (names[0], names[-1])
    if "ed_right_next" in st.session_state:  # after a save: open the new version
        st.session_state["ed_right"] = st.session_state.pop("ed_right_next")
    # the choices live in session state only (a widget given both a default and a state value warns)
    for key, default in (("ed_left", left_default), ("ed_right", right_default)):
        if st.session_state.get(key) not in names:  # first visit, or another project
            st.session_state[key] = default
    c1, c2 = st.columns(2)
    left = c1.selectbox("Left: compare with", names, key="ed_left", format_func=version_label)
    right = c2.selectbox("Right: edit", names, key="ed_right", format_func=version_label)
    seen_key = f"ed_seen_{project.id}_{right}"
    st.session_state.setdefault(seen_key, current)  # the current version when editing began
    base, other = specs[right], specs[left]
    c1, c2 = st.columns(2)
    with c1:
        st.markdown(f"**Version {left}** ({escape_markdown(origin_label(left))})")
        st.caption("Instructions")
        st.text(other.instructions)
        if other.rubric_intro:
            st.caption("Rating scale: lead-in")
            st.text(other.rubric_intro)
        for lv in other.rubric:
            st.caption(f"Level {lv.level}")
            st.text(lv.text)
        for title, text in (("Rating scale: notes", other.rubric_notes),
                            ("Instructions after the rating scale", other.instructions_after)):
            if text:
                st.caption(title)
                st.text(text)
    with c2:
        st.markdown(f"**Version {right}** ({escape_markdown(origin_label(right))}), editable")
        prefix = f"ed_{project.id}_{right}"
        instructions = st.text_area("Instructions", base.instructions, height=260, key=f"{prefix}_instr")
        intro = st.text_area("Rating scale: lead-in (optional)", base.rubric_intro, height=68,
                             key=f"{prefix}_intro")
        levels = {lv.level: st.text_area(f"Level {lv.level}", lv.text, height=90, key=f"{prefix}_lvl_{lv.level}")
                  for lv in base.rubric}
        notes = st.text_area("Rating scale: notes (optional)", base.rubric_notes, height=68, key=f"{prefix}_notes")
        after = st.text_area("Instructions after the rating scale (optional)", base.instructions_after, height=90,
                             key=f"{prefix}_after")
    try:
        edited = edited_spec(base, instructions, levels, rubric_intro=intro, rubric_notes=notes,
                             instructions_after=after)
    except EditError as exc:
        st.error(str(exc))
        return
    st.markdown(f"##### Changes from version {left} to the edited version {right}")
    show_codebook_diff(diff_codebooks(other, edited, a_label=f"version {left}", b_label="edited"))

    st.divider()
    seen = st.session_state[seen_key]
    note = st.text_input("Note for this version", key="ed_note", placeholder="What changed and why")
    st.caption(f"Saved as {escape_markdown(actor.name)}")
    if st.button("Save as a new version", type="primary", key="ed_save"):
        try:
            with session_scope() as session:
                row = save_edit(session, project.id, edited, actor=actor, edited_from=right, seen_current=seen,
                                note=note)
                new_version = row.version
        except StaleVersionError as exc:
            st.session_state["ed_stale"] = {"seen": seen, "current": exc.current_version, "right": right}
        except EditError as exc:
            st.error(str(exc))
        else:
            st.session_state.pop("ed_stale", None)
            st.session_state.pop(seen_key, None)
            st.session_state["ed_right_next"] = new_version
            st.session_state["ed_saved"] = new_version
            st.rerun()
    if st.session_state.get("ed_saved"):
        st.success(f"Saved as version {st.session_state.pop('ed_saved')}, now the current one.")
    stale = st.session_state.get("ed_stale")
    if stale and stale["right"] == right:
        now = stale["current"]
        st.error(f"Not saved: someone saved version {now} while you were editing (you started when version "
                 f"{stale['seen']} was current). Nothing was overwritten. Review what changed, then save again.")
        if now is not None and now in specs:
            st.markdown(f"##### What changed meanwhile: version {stale['seen']} → version {now}")
            show_codebook_diff(diff_codebooks(specs[stale["seen"]], specs[now]))
            st.markdown(f"##### Your edit against version {now}")
            show_codebook_diff(diff_codebooks(specs[now], edited))
        if st.button(f"Keep my edit and save it over version {now}", key="ed_rebase"):
            st.session_state[seen_key] = now
            st.session_state.pop("ed_stale", None)
            st.rerun()


with edit_tab:
    editor()

with diff_tab:
    names = list(specs)
    c1, c2 = st.columns(2)
    a = c1.selectbox("From version", names, index=0, key="cb_diff_a", format_func=version_label)
    b = c2.selectbox("To version", names, index=len(names) - 1, key=f"cb_diff_b_{names[-1]}",
                     format_func=version_label)
    diff = diff_codebooks(specs[a], specs[b])
    if not diff.changed_sections:
        st.success(f"Versions {a} and {b} are identical.")
    else:
        show_codebook_diff(diff)

with history_tab:
    st.dataframe(history, hide_index=True, width="stretch")
    c1, c2 = st.columns([2, 1])
    # the choice starts on the version current now, and again whenever that changes (a save or a
    # refinement made another one current): a widget's own state would keep the one it first saw
    if st.session_state.get("cb_make_current_for") != (project.id, current) or \
            st.session_state.get("cb_make_current") not in specs:
        st.session_state["cb_make_current"] = current
        st.session_state["cb_make_current_for"] = (project.id, current)
    chosen = c1.selectbox("Make a version current", list(specs), key="cb_make_current", format_func=version_label)
    if c2.button("Make current", key="cb_make_current_go", disabled=chosen == current):
        with session_scope() as session:
            make_current(session, project.id, chosen, actor=actor)
        st.rerun()
