"""Assignments (leads): open review rounds, follow the team's progress and agreement, settle
disagreements, export the reasoning dataset."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st
from sqlalchemy import select

from judgeeye.auth import AccessDenied
from judgeeye.display import escape_markdown
from judgeeye.review import (
    FORMATS,
    ReviewError,
    adjudicate,
    annotator_progress,
    choice_agreement,
    default_export_dir,
    disagreements,
    export_reasoning,
    list_rounds,
    open_round,
    reviewable_runs,
    round_progress,
    set_round_status,
)
from judgeeye.store import Annotator, Candidate, Item, read_scope, session_scope
from judgeeye_app.ui.access import require_permission
from judgeeye_app.ui.common import project_picker

actor = require_permission("manage_rounds")
st.title("Assignments")
st.caption("Review rounds: annotators pick the sampled trace that matches their own reasoning "
           "(select-and-validate, Zhang et al. section 5).")
project = project_picker()
if project is None:
    st.stop()


def text_block(text: str) -> str:
    return "  \n".join(escape_markdown(line) for line in (text or "").splitlines()) or "_(empty)_"


rounds_tab, open_tab, team_tab, disagree_tab, export_tab = st.tabs(
    ["Rounds", "Open a round", "Team", "Disagreements", "Export"])

with rounds_tab:
    with read_scope() as session:
        progress = [(r.id, r.run_id, round_progress(session, r.id)) for r in list_rounds(session, project.id)]
    if not progress:
        st.info("No review round yet: open one in the next tab.")
    else:
        st.dataframe(pd.DataFrame([
            {"Round": rid, "Name": p.name, "Run": run_id, "Status": p.status, "Items": p.items, "Done": p.done,
             "Reviews": f"{p.reviews_submitted} / {p.reviews_required}", "Skipped": p.skipped,
             "Progress": p.share_done, "Annotators": ", ".join(p.annotators)}
            for rid, run_id, p in progress
        ]), hide_index=True, width="stretch",
            column_config={"Progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent")})
        cols = st.columns([2, 1])
        pick = cols[0].selectbox("Round", [rid for rid, _, _ in progress], key="as_status_round",
                                 format_func=lambda rid: next(f"#{rid} {p.name} ({p.status})" for r, _, p in progress if r == rid))
        status = next(p.status for r, _, p in progress if r == pick)
        if cols[1].button("Close round" if status == "open" else "Reopen round", key="as_status_go"):
            with session_scope() as session:
                set_round_status(session, actor, pick, "closed" if status == "open" else "open")
            st.rerun()

with open_tab:
    with read_scope() as session:
        runs = reviewable_runs(session, project.id)
        people = [(u.name, u.role) for u in session.scalars(
            select(Annotator).where(Annotator.active.is_(True)).order_by(Annotator.name)).all()]
    if not runs:
        st.info("This project has no sampling run yet: sample traces on the **Sample** page first.")
    else:
        with st.form("as_open"):
            run_id = st.selectbox("Sampling run", [r.run_id for r in runs], key="as_run",
                                  format_func=lambda rid: next(r.label for r in runs if r.run_id == rid))
            chosen = st.multiselect("Annotators", [n for n, _ in people], key="as_people",
                                    default=[n for n, role in people if role == "annotator"])
            cols = st.columns(3)
            overlap = cols[0].number_input("Reviewers per item", 1, 20, 1, key="as_overlap")
            share = cols[1].slider("Share reviewed by more people (for agreement)", 0.0, 1.0, 0.2, 0.05,
                                   key="as_share")
            high = cols[2].number_input("Reviewers on that share", 2, 20, 2, key="as_high")
            cols = st.columns(3)
            unaccepted = cols[0].checkbox("Also items without an accepted trace (all traces shown)", key="as_unaccepted")
            max_shown = cols[1].number_input("Traces shown per item", 1, 9, 4, key="as_max_shown")
            lease = cols[2].number_input("Lease (minutes)", 1, 24 * 60, 30, key="as_lease",
                                         help="An item stays with an annotator this long after they last touched it.")
            name = st.text_input("Name", key="as_name", placeholder=f"run {runs[0].run_id} review")
            go = st.form_submit_button("Open round", type="primary")
        if go:
            try:
                with session_scope() as session:
                    rnd = open_round(session, actor, run_id, chosen, overlap=int(overlap), high_overlap=int(high),
                                     high_overlap_share=float(share) if len(chosen) >= high else 0.0,
                                     include_unaccepted=unaccepted, max_shown=int(max_shown),
                                     lease_minutes=int(lease), name=name)
                    summary = round_progress(session, rnd.id)
                st.success(f"Opened round #{summary.round_id}: {summary.items} items, "
                           f"{summary.reviews_required} reviews from {len(summary.annotators)} people.")
            except (ReviewError, AccessDenied) as exc:
                st.error(str(exc))

with team_tab:
    with session_scope() as session:
        table = annotator_progress(session, project.id)
        agreement = choice_agreement(session, project.id)
    if table.empty:
        st.info("Nobody has reviewed in this project yet.")
    else:
        st.dataframe(table, hide_index=True, width="stretch", column_config={
            "pace_per_hour": st.column_config.NumberColumn("pace (items/h)", format="%.0f"),
            "none_fits": st.column_config.NumberColumn("none fits")})
    cols = st.columns(3)
    pa, kappa = agreement["percent_agreement"], agreement["fleiss_kappa"]
    cols[0].metric("Items with ≥ 2 reviews", agreement["n_items"])
    cols[1].metric("Percent agreement", "–" if math.isnan(pa) else f"{pa:.0%}")
    cols[2].metric("Fleiss' κ", "–" if math.isnan(kappa) else f"{kappa:.2f}",
                   help=f"On {agreement['fleiss_items']} items with {agreement['raters_per_item']} reviewers each")
    st.caption(agreement["note"])

with disagree_tab:
    with read_scope() as session:
        open_items = disagreements(session, project.id)
        texts = {i.id: i for i in session.scalars(select(Item).where(Item.id.in_([d.item_id for d in open_items]))).all()}
        traces = {c.id: c for c in session.scalars(select(Candidate).where(
            Candidate.id.in_([c.candidate_id for d in open_items for c in d.choices if c.candidate_id]))).all()}
    if not open_items:
        st.success("No open disagreements.")
    for d in open_items[:50]:
        with st.expander(f"Item {d.external_id} · round {d.round_id} · {len(d.choices)} reviews"):
            item = texts[d.item_id]
            for name, value in (item.fields or {}).items():
                st.markdown(f"**{escape_markdown(name)}**  \n{text_block(str(value))}")
            st.caption(f"Human rating {item.gold:g}" if item.gold is not None else "No gold label")
            options: list[tuple[str, str, int | None, str | None]] = []
            for c in d.choices:
                who = escape_markdown(c.annotator)
                if c.verdict == "none_fits":
                    st.markdown(f"- {who}: none fits")
                else:
                    label = f"trace {c.position}" + (" (edited)" if c.verdict == "edited" else "")
                    st.markdown(f"- {who}: {label}")
                    options.append((f"{c.annotator}'s {label}", c.verdict, c.candidate_id, c.edited_text))
            for cid in dict.fromkeys(c.candidate_id for c in d.choices if c.candidate_id):
                with st.container(border=True):
                    st.markdown(text_block(traces[cid].reasoning))
                    st.info(text_block(traces[cid].answer))
            options.append(("None fits", "none_fits", None, None))
            pick = st.radio("Settle as", range(len(options)), format_func=lambda i: options[i][0],
                            key=f"as_settle_{d.item_id}_{d.round_id}")
            note = st.text_input("Note", key=f"as_note_{d.item_id}_{d.round_id}")
            if st.button("Settle", key=f"as_settle_go_{d.item_id}_{d.round_id}", type="primary"):
                _, verdict, cid, edited = options[pick]
                try:
                    with session_scope() as session:
                        adjudicate(session, actor, d.item_id, verdict=verdict, candidate_id=cid, edited_text=edited,
                                   round_id=d.round_id, note=note)
                    st.rerun()
                except (ReviewError, AccessDenied) as exc:
                    st.error(str(exc))

with export_tab:
    st.markdown("The reasoning dataset **D_reason**: one row per gold item with its fields, gold label, "
                "codebook version, trace and provenance (human-selected, human-edited, adjudicated, "
                "first-accepted, post-hoc). Items nobody reviewed get their first accepted trace.")
    formats = st.multiselect("Formats", list(FORMATS), default=["jsonl", "parquet", "hf"], key="as_formats")
    if st.button("Export", key="as_export", type="primary", disabled=not formats):
        target = default_export_dir(project.id)
        try:
            with session_scope() as session:
                summary = export_reasoning(session, actor, project.id, target, formats)
        except (ReviewError, AccessDenied) as exc:
            st.error(str(exc))
        else:
            st.success(f"{summary.rows} rows written to {target}")
            st.json(summary.provenance)
            if "jsonl" in summary.files:
                with open(summary.files["jsonl"], "rb") as fh:
                    st.download_button("Download JSONL", fh.read(), file_name="d_reason.jsonl",
                                       mime="application/jsonl", key="as_download")
