"""Assignments (leads): open review rounds, follow the team's progress and agreement, settle
disagreements, export the reasoning dataset.

Every action runs as a widget callback, before the page reads the store, so each tab shows the
state the action left (a round just opened is in the Rounds table of the same rerun)."""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import streamlit as st
from sqlalchemy import select

from judgeeye.display import escape_markdown, snippet
from judgeeye.review import (
    FORMATS,
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
from judgeeye.review.stats import progress_view
from judgeeye.store import Annotator, Candidate, Item, read_scope, session_scope
from judgeeye_app.ui.access import require_permission
from judgeeye_app.ui.actions import attempt
from judgeeye_app.ui.common import project_picker
from judgeeye_app.ui.live_select import live_selectbox, live_value

actor = require_permission("manage_rounds")
st.title("Assignments")
st.caption("Review rounds: annotators pick the sampled trace that matches their own reasoning "
           "(select-and-validate, Zhang et al. section 5).")
project = project_picker()
if project is None:
    st.stop()

FORMAT_NAMES = {"jsonl": "JSONL", "parquet": "Parquet", "hf": "Hugging Face dataset", "csv": "CSV"}
FLASH = "as_flash"  # tab -> (kind, text) of the last action there, shown once
T = TypeVar("T")


def text_block(text: str) -> str:
    return "  \n".join(escape_markdown(line) for line in (text or "").splitlines()) or "_(empty)_"


def say(tab: str, kind: str, text: str) -> None:
    st.session_state.setdefault(FLASH, {})[tab] = (kind, text)


def flash(tab: str) -> None:
    if shown := st.session_state.get(FLASH, {}).pop(tab, None):
        getattr(st, shown[0])(shown[1])


# ---------------------------------------------------------------- actions (button callbacks)
def in_store(action: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T | None, str | None]:
    """``action(session, actor, ...)`` in one transaction, from a callback (see ui/actions.py)."""
    def run() -> T:
        with session_scope() as session:
            return action(session, actor, *args, **kwargs)
    return attempt(run)


def open_round_now() -> None:
    state = st.session_state
    chosen, high = state["as_people"], int(state["as_high"])

    def open_and_count(session, actor, *args, **kwargs):  # type: ignore[no-untyped-def]
        return round_progress(session, open_round(session, actor, *args, **kwargs).id)

    summary, error = in_store(open_and_count, live_value("as_run"), chosen, overlap=int(state["as_overlap"]),
                              high_overlap=high, high_overlap_share=float(state["as_share"]) if len(chosen) >= high else 0.0,
                              include_unaccepted=bool(state["as_unaccepted"]), max_shown=int(state["as_max_shown"]),
                              lease_minutes=int(state["as_lease"]), name=state["as_name"])
    if summary is None:
        say("open", "error", str(error))
        return
    people = len(summary.annotators)
    say("open", "success", f"Opened round #{summary.round_id} “{summary.name}”: {summary.items} items, "
                           f"{summary.reviews_required} reviews from {people} {'person' if people == 1 else 'people'}. "
                           "It is on the Rounds tab.")


def set_status(round_id: int, status: str) -> None:
    if error := in_store(set_round_status, round_id, status)[1]:
        say("rounds", "error", error)


def settle(item_id: int, round_id: int | None, options: list[tuple[str, str, int | None, str | None]]) -> None:
    suffix = f"{item_id}_{round_id}"
    label, verdict, candidate_id, edited = options[st.session_state[f"as_settle_{suffix}"]]
    _, error = in_store(adjudicate, item_id, verdict=verdict, candidate_id=candidate_id, edited_text=edited,
                        round_id=round_id, note=st.session_state.get(f"as_note_{suffix}"))
    if error:
        say("disagree", "error", error)
    else:
        say("disagree", "success", f"Settled as {label}.")


def export_now(project_id: int) -> None:
    summary, error = in_store(export_reasoning, project_id, default_export_dir(project_id),
                              st.session_state["as_formats"])
    if summary is None:
        say("export", "error", str(error))
        st.session_state.pop("as_export_result", None)
    else:
        st.session_state["as_export_result"] = (project_id, summary)


def folder_zip(folder: str) -> bytes:
    """A folder (the Hugging Face dataset) as one zip, for the download button."""
    buffer = io.BytesIO()
    root = Path(folder)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                archive.write(path, Path(root.name) / path.relative_to(root))
    return buffer.getvalue()


rounds_tab, open_tab, team_tab, disagree_tab, export_tab = st.tabs(
    ["Rounds", "Open a round", "Team", "Disagreements", "Export"])

with rounds_tab:
    flash("rounds")
    with read_scope() as session:
        progress = [(r.id, r.run_id, round_progress(session, r.id)) for r in list_rounds(session, project.id)]
    if not progress:
        st.info("No review round yet: open one on the **Open a round** tab.")
    else:
        st.dataframe(pd.DataFrame([
            {"Round": rid, "Name": p.name, "Sampling run": run_id, "Status": p.status, "Items": p.items,
             "Done": p.done, "Reviews": f"{p.reviews_submitted} / {p.reviews_required}", "Skipped": p.skipped,
             "Progress": p.share_done, "Annotators": ", ".join(p.annotators)}
            for rid, run_id, p in progress
        ]), hide_index=True, width="stretch",
            column_config={"Progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent")})
        by_id = {rid: p for rid, _, p in progress}
        cols = st.columns([2, 1], vertical_alignment="bottom")
        pick = live_selectbox("Round", list(by_id), key="as_status_round", where=cols[0],
                              format_func=lambda rid: f"#{rid} {by_id[rid].name} ({by_id[rid].status})")
        now_open = by_id[pick].status == "open"
        cols[1].button("Close round" if now_open else "Reopen round", key="as_status_go", on_click=set_status,
                       args=(pick, "closed" if now_open else "open"))

with open_tab:
    flash("open")
    with read_scope() as session:  # never waits on a sampling job's writes
        runs = reviewable_runs(session, project.id)
        people = [(u.name, u.role) for u in session.scalars(
            select(Annotator).where(Annotator.active.is_(True)).order_by(Annotator.name)).all()]
    if not runs:
        st.info("This project has no sampling run yet: sample traces on the **Sample** page first.")
    else:
        labels = {r.run_id: r.label for r in runs}
        with st.form("as_open"):
            live_selectbox("Sampling run", list(labels), key="as_run", format_func=labels.get)
            st.multiselect("Annotators", [n for n, _ in people], key="as_people",
                           default=[n for n, role in people if role == "annotator"])
            cols = st.columns(3)
            cols[0].number_input("Reviewers per item", 1, 20, 1, key="as_overlap")
            cols[1].slider("Share reviewed by more people (for agreement)", 0.0, 1.0, 0.2, 0.05, key="as_share",
                           format="percent")
            cols[2].number_input("Reviewers on that share", 2, 20, 2, key="as_high")
            cols = st.columns(3)
            cols[0].number_input("Traces shown per item", 1, 9, 4, key="as_max_shown")
            cols[1].number_input("Lease (minutes)", 1, 24 * 60, 30, key="as_lease",
                                 help="An item stays with an annotator this long after they last touched it.")
            st.checkbox("Also items without an accepted trace (all their traces are shown)", key="as_unaccepted")
            st.text_input("Name", key="as_name", placeholder=f"run {runs[0].run_id} review")
            st.form_submit_button("Open round", type="primary", on_click=open_round_now)

with team_tab:
    with read_scope() as session:
        table = annotator_progress(session, project.id)
        agreement = choice_agreement(session, project.id)
    if table.empty:
        st.info("Nobody has reviewed in this project yet.")
    else:
        st.dataframe(progress_view(table), hide_index=True, width="stretch")
    cols = st.columns(3)
    pa, kappa = agreement["percent_agreement"], agreement["fleiss_kappa"]
    cols[0].metric("Items with ≥ 2 reviews", agreement["n_items"])
    cols[1].metric("Percent agreement", "–" if math.isnan(pa) else f"{pa:.0%}")
    cols[2].metric("Fleiss' κ", "–" if math.isnan(kappa) else f"{kappa:.2f}",
                   help=f"On {agreement['fleiss_items']} items with {agreement['raters_per_item']} reviewers each")
    st.caption(agreement["note"])

with disagree_tab:
    flash("disagree")
    with read_scope() as session:
        open_items = disagreements(session, project.id)
        texts = {i.id: i for i in session.scalars(select(Item).where(Item.id.in_([d.item_id for d in open_items]))).all()}
        traces = {c.id: c for c in session.scalars(select(Candidate).where(
            Candidate.id.in_([c.candidate_id for d in open_items for c in d.choices if c.candidate_id]))).all()}
        round_names = {r.id: r.name for r in list_rounds(session, project.id)}
    if not open_items:
        st.success("No open disagreements.")
    for d in open_items[:50]:
        item = texts[d.item_id]
        where = round_names.get(d.round_id, "outside a round") if d.round_id is not None else "outside a round"
        with st.expander(f"“{escape_markdown(snippet(' '.join(map(str, (item.fields or {}).values()))))}” · "
                         f"{escape_markdown(where)} · {len(d.choices)} reviews"):
            for name, value in (item.fields or {}).items():
                st.markdown(f"**{escape_markdown(name)}**  \n{text_block(str(value))}")
            gold = f"human rating {item.gold:g}" if item.gold is not None else "no gold label"
            st.caption(f"{gold.capitalize()} · item id {escape_markdown(d.external_id)}")
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
            options.append(("none fits", "none_fits", None, None))
            suffix = f"{d.item_id}_{d.round_id}"
            st.radio("Settle as", range(len(options)), format_func=lambda i, o=options: o[i][0].capitalize(),
                     key=f"as_settle_{suffix}")
            st.text_input("Note", key=f"as_note_{suffix}")
            st.button("Settle", key=f"as_settle_go_{suffix}", type="primary", on_click=settle,
                      args=(d.item_id, d.round_id, options))

with export_tab:
    flash("export")
    st.markdown("The reasoning dataset **D_reason**: one row per gold item with its fields, gold label, "
                "codebook version, trace and provenance (human-selected, human-edited, adjudicated, "
                "first-accepted, post-hoc). Items nobody reviewed get their first accepted trace.")
    formats = st.multiselect("Formats", list(FORMATS), default=["jsonl", "parquet", "hf"], key="as_formats",
                             format_func=FORMAT_NAMES.get)
    st.button("Export", key="as_export", type="primary", disabled=not formats, on_click=export_now,
              args=(project.id,))
    done = st.session_state.get("as_export_result")
    if done and done[0] == project.id:
        summary = done[1]
        left = [f"{n:,} items without a trace" for n in (summary.no_trace,) if n]
        left += [f"{n:,} items whose reviewers found no trace that fits" for n in (summary.rejected,) if n]
        st.success(f"Exported {summary.rows:,} rows" + (f"; left out: {', '.join(left)}." if left else "."))
        st.dataframe(pd.DataFrame([{"trace from": k, "rows": v} for k, v in summary.provenance.items()]),
                     hide_index=True)
        with st.container(horizontal=True):
            for fmt, path in summary.files.items():
                if fmt == "hf":
                    st.download_button(f"{FORMAT_NAMES[fmt]} (zip)", data=lambda path=path: folder_zip(path),
                                       file_name=f"{Path(path).name}.zip", mime="application/zip",
                                       key=f"as_download_{fmt}", on_click="ignore", icon=":material/download:")
                else:
                    st.download_button(FORMAT_NAMES[fmt], data=Path(path).read_bytes, file_name=Path(path).name,
                                       key=f"as_download_{fmt}", on_click="ignore", icon=":material/download:")
