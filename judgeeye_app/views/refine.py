"""Refine: improve the codebook from traces (paper section 3.2), look at the critique map, and
measure codebook versions against each other with M LLM raters on the test split."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from judgeeye.codebook import list_versions
from judgeeye.codebook.versions import describe_origin
from judgeeye.display import escape_markdown
from judgeeye.engines import EMBEDDED_MODEL, EngineConfig
from judgeeye.jobs import log_tail, reconcile, request_cancel
from judgeeye.refine.critiques import cluster_summary, critique_jobs, map_points, source_trace, stored_map
from judgeeye.refine.embed import BUILTIN as EMBEDDERS
from judgeeye.refine.embed import DEFAULT_EMBEDDER
from judgeeye.refine.runner import launch_refinement, refinement_jobs, resume_refinement, version_of_job
from judgeeye.refine.settings import MODES, RefineSettings
from judgeeye.refine.traces import sampling_runs
from judgeeye.store import Job, read_scope, session_scope
from judgeeye_app.ui.access import require_page
from judgeeye_app.ui.keys import api_key_field, provide_api_key
from judgeeye_app.ui.common import project_picker

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


def engine_picker(prefix: str) -> EngineConfig | None:
    kind = st.radio("Engine", ["Embedded model (SmolLM2-135M, CPU)", "Hugging Face model", "OpenAI-compatible server"],
                    key=f"{prefix}_engine", horizontal=True)
    if kind.startswith("Embedded"):
        return EngineConfig(kind="transformers", model=EMBEDDED_MODEL)
    if kind == "Hugging Face model":
        model = st.text_input("Model id or local directory", key=f"{prefix}_hf_model")
        return EngineConfig(kind="transformers", model=model.strip()) if model.strip() else None
    c1, c2, c3 = st.columns(3)
    url = c1.text_input("Base URL", "http://127.0.0.1:8000/v1", key=f"{prefix}_oa_url")
    model = c2.text_input("Model", key=f"{prefix}_oa_model")
    key_env = c3.text_input("API key variable", "", key=f"{prefix}_oa_key",
                            help="The NAME of an environment variable holding the key; the key is never stored.")
    usable, key_name = api_key_field(key_env)
    if not model.strip() or not usable:
        return None
    return EngineConfig(kind="openai", model=model.strip(), base_url=url.strip(), api_key_env=key_name)


def refine_form() -> None:
    c1, c2 = st.columns(2)
    base = c1.selectbox("Codebook version to refine", version_numbers, index=version_numbers.index(current),
                        key="rf_base", format_func=lambda v: f"v{v} · {origin[v]}")
    mode = c2.radio("Refine", MODES, index=2, key="rf_mode", horizontal=True,
                    format_func={"instruction": "instructions", "rubric": "rubric", "both": "both"}.get)
    engine = engine_picker("rf")
    if engine is None:
        st.info("Choose the model that refines.")
        return
    c1, c2, c3, c4 = st.columns(4)
    n_inst = c1.number_input("Traces per level (instructions)", 1, 1000, 10, key="rf_n_inst")
    n_rubric = c2.number_input("Traces per level (rubric)", 1, 5000, 50, key="rf_n_rubric")
    clusters = c3.number_input("Clusters per level (0 = by silhouette)", 0, 50, 0, key="rf_clusters")
    attempts = c4.number_input("Attempts per step", 1, 10, 3, key="rf_attempts")
    c1, c2, c3, c4 = st.columns(4)
    max_tokens = c1.number_input("Max tokens (codebook)", 16, 32768, 2048, 16, key="rf_max_tokens")
    crit_tokens = c2.number_input("Max tokens (critiques)", 8, 8192, 512, 8, key="rf_crit_tokens")
    trace_chars = c3.number_input("Cut traces at N characters (0 = whole)", 0, 1_000_000, 0, key="rf_trace_chars")
    make_current = c4.toggle("Make the result current", key="rf_make_current")
    with read_scope() as session:
        runs = {r.run_id: r.label for r in sampling_runs(session, project.id)}
    c1, c2 = st.columns([3, 2])
    picked = c1.multiselect("Traces from the sampling runs", list(runs), format_func=runs.get, key="rf_runs",
                            placeholder="every sampling run of the project",
                            help="Leave empty to read the settled traces of every run. The runs are recorded "
                                 "with the refined version.")
    embedder = c2.selectbox("Critique embeddings", list(EMBEDDERS), index=list(EMBEDDERS).index(DEFAULT_EMBEDDER),
                            format_func=EMBEDDERS.get, key="rf_embedder")
    note = st.text_input("Note for the new version", key="rf_note")
    try:
        settings = RefineSettings(mode=mode, engine=engine, codebook_version=base, n_inst=int(n_inst),
                                  n_rubric=int(n_rubric), clusters=int(clusters) or None, attempts=int(attempts),
                                  max_tokens=int(max_tokens), critique_max_tokens=int(crit_tokens),
                                  trace_chars=int(trace_chars) or None, make_current=make_current,
                                  runs=sorted(picked) or None, embedder=embedder, note=note.strip() or None)
    except ValueError as exc:
        st.error(str(exc))
        return
    if st.button("Start refinement", type="primary", key="rf_start"):
        try:
            job_id = launch_refinement(project.id, settings, actor=actor)
        except (LookupError, PermissionError, ValueError) as exc:
            st.error(str(exc))
            return
        st.session_state["rf_job"] = job_id
        st.success(f"Refinement started (job {job_id}); follow it below.")


@st.fragment(run_every=2)
def job_status(job_id: int) -> None:
    with session_scope() as session:
        reconcile(session)
        job = session.get(Job, job_id)
        row = version_of_job(session, project.id, job_id)
        tail = log_tail(job, 6000)
        written = None if row is None else (row.version, describe_origin(row.origin))
    st.progress(job.progress, text=f"Job {job.id}: {job.status} · {job.progress_text or ''}")
    if job.status in ("queued", "running"):
        if st.button("Cancel", key=f"rf_cancel_{job_id}"):
            request_cancel(job_id, actor=actor)
    elif job.status in ("failed", "cancelled"):
        if job.error:
            st.error(f"Job {job.id} {job.status}: {job.error}")
        if st.button("Resume", key=f"rf_resume_{job_id}", help="Reuses the critiques already extracted."):
            st.session_state["rf_job"] = resume_refinement(job_id, actor=actor)
            st.rerun()
    if written:
        st.success(f"Wrote codebook version {written[0]} ({written[1]}). Review and edit it on the Codebooks page.")
        st.page_link(str(Path(__file__).with_name("codebooks.py")), label="Open the editor", icon=":material/edit:")
    with st.expander("Log"):
        st.code(tail[-6000:] or "(empty)", language=None)


def refine_view() -> None:
    refine_form()
    with read_scope() as session:
        jobs = [(j.id, j.status) for j in refinement_jobs(session, project.id)]
    if not jobs:
        return
    st.subheader("Refinements")
    ids = [j for j, _ in jobs]
    status = dict(jobs)
    wanted = st.session_state.get("rf_job")
    job_id = st.selectbox("Refinement job", ids, index=ids.index(wanted) if wanted in ids else 0, key="rf_job_pick",
                          format_func=lambda j: f"job {j} · {status[j]}")
    job_status(job_id)


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
    c1, c2, c3 = st.columns(3)
    limit = c1.number_input("Only the first N test items (0 = all)", 0, 10_000_000, 0, key="cv_limit")
    max_tokens = c2.number_input("Max tokens per rating", 16, 32768, 512, 16, key="cv_max_tokens")
    temperature = c3.number_input("Temperature", 0.0, 2.0, 1.0, 0.1, key="cv_temperature")
    specs = []
    for line in [x.strip() for x in text.splitlines() if x.strip()]:
        try:
            specs.append(parse_rater(line, limit=int(limit) or None, max_tokens=int(max_tokens),
                                     temperature=float(temperature))[0])
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
        waiting(plan)
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


@st.fragment(run_every=3)
def waiting(plan) -> None:  # type: ignore[no-untyped-def]
    from judgeeye.evaluate.launch import latest_job
    from judgeeye.refine.compare import incomplete_runs

    with session_scope() as session:
        reconcile(session)
        pending = incomplete_runs(session, plan)
        jobs = {r: latest_job(session, r) for r in pending}
        stopped = {r: (j.status, j.error) for r, j in jobs.items() if j is not None and j.status in ("failed", "cancelled")}
    if not pending:
        st.rerun(scope="app")
    done = len(plan.run_ids) - len(pending)
    st.progress(done / len(plan.run_ids), text=f"{done}/{len(plan.run_ids)} rater runs complete; rating runs "
                f"{', '.join(map(str, pending))} (see the Agreement page for each run)")
    for run_id, (status, error) in stopped.items():
        st.error(f"Rater run {run_id} {status}: {error or 'see its log'}. Resume it on the Agreement page "
                 "(or `judgeeye evaluate --resume RUN`), then compare again.")


for tab, view in zip(tabs, [refine_view, map_view, compare_view]):
    if tab.open is not False:
        with tab:
            view()
