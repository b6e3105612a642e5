"""Refine: improve the codebook from traces (paper section 3.2), look at the critique map, and
measure codebook versions against each other with M LLM raters on the test split."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from judgeeye.codebook import list_versions
from judgeeye.codebook.versions import describe_origin
from judgeeye.display import escape_markdown
from judgeeye.evaluate.raters import RaterSpec
from judgeeye.refine.critiques import cluster_summary, critique_jobs, map_points, source_trace, stored_map
from judgeeye.refine.embed import BUILTIN as EMBEDDERS
from judgeeye.refine.runner import launch_refinement, refinement_jobs, resume_refinement, version_of_job
from judgeeye.refine.settings import RefineSettings
from judgeeye.refine.traces import sampling_runs
from judgeeye.settings_fields import SettingField, setting_field
from judgeeye.store import Job, read_scope, session_scope
from judgeeye_app.ui.access import require_page
from judgeeye_app.ui.actions import attempt
from judgeeye_app.ui.common import project_picker
from judgeeye_app.ui.engine_picker import engine_picker
from judgeeye_app.ui.job_panel import TrackedJob, job_panel
from judgeeye_app.ui.keys import provide_api_key
from judgeeye_app.ui.live_select import live_selectbox, set_live_value
from judgeeye_app.ui.settings_form import field_widget, fill, help_text, problem, settings_form

actor = require_page("refine")  # every page checks the session itself (see pages/access.py)
st.title("Refine the codebook")
st.caption("Instructions from N traces per rating level; a rubric from critiques extracted from traces, "
           "clustered per level, the ones nearest each centroid standing for their cluster (Zhang et al., 3.2).")
project = project_picker()
if project is None:
    st.stop()
with read_scope() as session:
    versions = list_versions(session, project.id)
if not versions:
    st.info("This project has no codebook yet.")
    st.stop()
version_numbers = [v.version for v in versions]
origin = {v.version: describe_origin(v.origin) for v in versions}
current = next((v.version for v in versions if v.id == project.current_codebook_id), version_numbers[-1])

TABS = ["Refine", "Critique map", "Compare versions"]
tabs = st.tabs(TABS, key="rf_tab", on_change="rerun")


FORM = "rf_"  # the Refine form's widgets are keyed FORM + the setting's name
#: the refinement settings the form asks for (the advanced ones under "More settings")
SETTINGS = ["n_inst", "n_rubric", "clusters", "attempts", "max_tokens", "critique_max_tokens", "trace_chars",
            "embedder", "make_current", "k_max", "per_cluster", "projection", "splits", "temperature", "top_p",
            "prefill", "seed", "author"]
FLASH = "rf_flash"


def _field(name: str) -> SettingField:
    return setting_field(RefineSettings, name)


def refine_form() -> None:
    c1, c2 = st.columns(2)
    base = c1.selectbox(_field("codebook_version").title, version_numbers, index=version_numbers.index(current),
                        key="rf_base", format_func=lambda v: f"v{v} · {origin[v]}",
                        help=help_text(_field("codebook_version")))
    fill(RefineSettings, ["mode", "note"], FORM)
    mode = field_widget(_field("mode"), FORM, where=c2)
    engine = engine_picker(FORM, adapter=False)
    values = settings_form(RefineSettings, SETTINGS, prefix=FORM)
    with read_scope() as session:
        runs = {r.run_id: r.label for r in sampling_runs(session, project.id)}
    c1, c2 = st.columns([3, 2])
    picked = c1.multiselect(_field("runs").title, list(runs), format_func=runs.get, key=FORM + "runs",
                            placeholder=_field("runs").none, help=help_text(_field("runs")))
    note = field_widget(_field("note"), FORM, where=c2)
    if engine is None:
        return
    try:
        settings = RefineSettings(mode=mode, engine=engine, codebook_version=base, runs=sorted(picked) or None,
                                  note=note, **values)
    except ValueError as exc:
        st.error(problem(exc, RefineSettings))
        return
    st.button("Start refinement", type="primary", key=FORM + "start", on_click=start_refinement,
              args=(project.id, settings))
    if shown := st.session_state.pop(FLASH, None):
        (st.success if shown[0] == "success" else st.error)(shown[1])


def start_refinement(project_id: int, settings: RefineSettings) -> None:
    """A button's callback: it runs before the page reads the store, so the list of refinements
    shows (and opens) the new job in the same rerun."""
    job_id, error = attempt(launch_refinement, project_id, settings, actor=actor)
    if job_id is None:
        st.session_state[FLASH] = ("error", str(error))
        return
    set_live_value("rf_job_pick", job_id)
    st.session_state[FLASH] = ("success", f"Refinement started (job {job_id}); follow it below.")


def resume(job_id: int) -> None:
    """Resume a refinement (a new job that reuses what the stopped one extracted) and show it."""
    set_live_value("rf_job_pick", resume_refinement(job_id, actor=actor))


def written(job_id: int) -> None:
    """What the refinement wrote, once it has (on every poll of the job panel)."""
    with read_scope() as session:
        row = version_of_job(session, project.id, job_id)
        version = None if row is None else (row.version, describe_origin(row.origin))
    if version:
        st.success(f"Wrote codebook version {version[0]} ({version[1]}). Review and edit it on the Codebooks page.")
        st.page_link(str(Path(__file__).with_name("codebooks.py")), label="Open the editor", icon=":material/edit:")


def refine_view() -> None:
    refine_form()
    with read_scope() as session:
        jobs = [(j.id, j.status) for j in refinement_jobs(session, project.id)]
    if not jobs:
        return
    st.subheader("Refinements")
    status = dict(jobs)
    job_id = live_selectbox("Refinement job", list(status), format_func=lambda j: f"job {j} · {status[j]}",
                            key="rf_job_pick")
    stopped = status[job_id] in ("failed", "cancelled")
    job_panel([TrackedJob(key=f"rf_{job_id}", name=f"refinement job {job_id}", title="Refinement",
                          find=lambda session: session.get(Job, job_id),
                          resume=(lambda: resume(job_id)) if stopped else None,
                          resume_help="Reuses the critiques already extracted.", body=lambda: written(job_id))],
              key="rf_panel", actor=actor)


def show_trace(critique_id: int) -> None:
    with read_scope() as session:
        src = source_trace(session, critique_id)
    with st.container(border=True):
        st.markdown(f"**Critique** (level {src.level})")
        st.text(src.critique)
        gold = "—" if src.gold is None else f"{src.gold:g}"
        st.markdown(f"**Item** {escape_markdown(src.external_id or '—')} · gold {gold} · "
                    f"candidate {src.candidate_id or '—'}")
        if src.reasoning:
            st.caption("Trace (reasoning)")
            st.text(src.reasoning)
        if src.answer:
            st.caption("Trace (answer)")
            st.text(src.answer)
        with st.expander("Item fields"):
            for name, value in src.fields.items():
                st.caption(str(name))
                st.text("" if value is None else str(value))


@st.cache_data(max_entries=4, show_spinner=False)
def _map_data(job_id: int, made: str) -> tuple[list[object], list[tuple[int, str]], list[object]]:
    """The stored map of one refinement: its points, its representatives and the cluster table
    (cached per job and map row: both are written once, in one transaction, by the job). The
    figure is drawn from them on every run: the chart's identity is its spec, and a selection
    survives a rerun only if the spec comes out the same."""
    with read_scope() as session:
        points = [p for p in map_points(session, job_id) if p.x is not None]
    reps = [(p.critique_id, f"level {p.level} · cluster {p.cluster} · {p.text[:90]}") for p in points
            if p.representative]
    return points, reps, cluster_summary(points)


def map_view() -> None:
    with read_scope() as session:
        jobs = critique_jobs(session, project.id)
    if not jobs:
        st.info("No critiques yet: run a rubric (or both) refinement on the **Refine** tab.")
        return
    counts = dict(jobs)
    job_id = st.selectbox("Refinement", list(counts), key="cm_job",
                          format_func=lambda j: f"job {j} · {counts[j]} critiques")
    with read_scope() as session:
        made = stored_map(session, job_id)
        if made is not None:
            version = f"{made.id}:{made.created_at.isoformat()}"
            method = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}.get(made.method, made.method)
            start = f" of {made.pca_components} PCA components" if made.pca_components else ""
            about = f"{made.points} critiques · {method}{start} · embeddings: {EMBEDDERS.get(made.embedder, made.embedder)}"
    if made is None:
        st.info("These critiques are not on the map yet: the refinement places them once it has clustered them "
                "(it is still running, or stopped before).")
        return
    from judgeeye.refine.charts import critique_map

    points, reps, rows = _map_data(job_id, version)
    st.caption(about)
    left, right = st.columns([3, 2])
    with left:
        event = st.plotly_chart(critique_map(points), key="cm_map", on_select="rerun", selection_mode="points",
                                width="stretch")
        st.caption("Colour: rating level · marker shape: cluster within the level · large outlined markers: "
                   "representatives (nearest their cluster's centroid). Select a point to open its trace.")
    with right:
        for level in sorted({r.level for r in rows}):
            mine = [r for r in rows if r.level == level]
            with st.expander(f"Level {level}: {sum(r.size for r in mine)} critiques, {len(mine)} clusters",
                             expanded=True):
                st.dataframe(pd.DataFrame([{"cluster": r.cluster, "size": r.size,
                                            "representative": " | ".join(r.representatives)} for r in mine]),
                             hide_index=True, width="stretch")
    selected = None
    points_sel = (getattr(event, "selection", None) or {}).get("points", []) if event else []
    if points_sel:
        data = points_sel[0].get("customdata")
        selected = int(data[0]) if data else None
    labels = dict(reps)
    chosen = st.selectbox("Open the trace of a representative critique", list(labels), index=None, key="cm_pick",
                          placeholder="or select any point on the map", format_func=labels.get)
    target = selected if selected is not None else chosen
    if target is not None:
        show_trace(target)


def _fmt(value: object) -> object:
    return round(value, 4) if isinstance(value, float) else value


def compare_view() -> None:
    from judgeeye.evaluate import parse_rater
    from judgeeye.refine.compare import (
        ComparisonPlan,
        compare_versions,
        incomplete_runs,
        launch_incomplete,
        plan_comparison,
    )

    st.caption("The same M raters prompted with version A and with version B rate the held-out test split: "
               "per-rater τ, ICC(3,1) and MSE against gold, inter-rater ICC(3,1) among the M raters, and the "
               "paired one-sided tests across raters (paper Tables 2 and 3).")
    refined = [v.version for v in versions if v.parent_id is not None]
    b_default = refined[-1] if refined else version_numbers[-1]
    parent = next((x.version for x in versions for v in versions
                   if v.version == b_default and x.id == v.parent_id), version_numbers[0])
    c1, c2 = st.columns(2)
    a = c1.selectbox("Version A (baseline)", version_numbers, index=version_numbers.index(parent), key="cv_a",
                     format_func=lambda v: f"v{v} · {origin[v]}")
    b = c2.selectbox("Version B (refined)", version_numbers, index=version_numbers.index(b_default), key="cv_b",
                     format_func=lambda v: f"v{v} · {origin[v]}")
    text = st.text_area("Raters, one per line: ENGINE[,key=value...] as for `judgeeye evaluate` "
                        "(embedded · hf:MODEL · openai:MODEL@URL,api_key_env=VAR)", "embedded", key="cv_raters")
    rating = settings_form(RaterSpec, ["limit", "max_tokens", "temperature"], prefix="cv_", columns=3)
    specs = []
    for line in [x.strip() for x in text.splitlines() if x.strip()]:
        try:
            specs.append(parse_rater(line, **rating)[0])  # a rater's own keys override these
        except ValueError as exc:
            st.error(str(exc))
            return
    for spec in specs:  # a key kept in Streamlit secrets reaches the rating workers by their environment
        key_env = getattr(spec.engine, "api_key_env", None)  # openai engines only
        if key_env and provide_api_key(key_env) is None:
            st.warning(f"No environment variable or Streamlit secret named `{key_env}` is set.")
    if st.button("Rate and compare", type="primary", key="cv_go", disabled=not specs or a == b):
        try:
            with session_scope() as session:
                plan = plan_comparison(session, project.id, a, b, specs, actor=actor)
                pending = incomplete_runs(session, plan)
        except (LookupError, ValueError) as exc:
            st.error(str(exc))
            return
        if pending:
            launch_incomplete(pending, actor=actor)
        st.session_state["cv_plan"] = plan.__dict__.copy()
    if a == b:
        st.info("Choose two different versions.")
    saved = st.session_state.get("cv_plan")
    if not saved:
        return
    plan = ComparisonPlan(**saved)
    with session_scope() as session:
        pending = incomplete_runs(session, plan)
    if pending:
        done = len(plan.run_ids) - len(pending)
        st.caption(f"{done} of {len(plan.run_ids)} rater runs complete; the comparison shows when all are. Each "
                   "run is also on the Agreement page.")
        job_panel([rating_run(run_id) for run_id in pending], key="cv_panel", actor=actor)
        return
    try:
        with session_scope() as session:
            result = compare_versions(session, plan)
    except ValueError as exc:
        st.error(str(exc))
        return
    st.markdown(f"**v{plan.version_a} (A) against v{plan.version_b} (B)** on {result.group.n_items} test items, "
                f"{len(plan.raters)} rater(s)")
    st.dataframe(pd.DataFrame([{k: _fmt(v) for k, v in r.items()} for r in result.per_rater()]),
                 hide_index=True, width="stretch")
    st.dataframe(pd.DataFrame([{k: _fmt(v) for k, v in r.items()} for r in result.tests()]),
                 hide_index=True, width="stretch")
    for note in result.group.notes:
        st.caption(note)


def rating_run(run_id: int) -> TrackedJob:
    """A rater run of the comparison, as the job panel follows it (a stopped one can be resumed)."""
    from judgeeye.evaluate.launch import latest_job, resume_rater_run

    return TrackedJob(key=f"cv_{run_id}", name=f"rater run {run_id}", title=f"Rater run {run_id}",
                      find=lambda session: latest_job(session, run_id),
                      resume=lambda: resume_rater_run(run_id, actor=actor),
                      resume_help="Rates only the items the run lacks.")


for tab, view in zip(tabs, [refine_view, map_view, compare_view]):
    if tab.open is not False:
        with tab:
            view()
