"""Sample: infer thinking traces by rejection sampling, watch runs live, browse candidates."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st
from sqlalchemy import select

from judgeeye.codebook import list_versions
from judgeeye.display import escape_markdown
from judgeeye.engines import EMBEDDED_MODEL, EngineConfig
from judgeeye.jobs import log_tail, reconcile, request_cancel
from judgeeye.sampling import SamplingSettings, run_stats
from judgeeye.sampling.launch import cli_command, item_candidates, item_summaries, latest_job, launch_run, resume_run
from judgeeye.store import SamplingRun, session_scope
from judgeeye_app.ui.common import project_picker, store_busy_notice
from judgeeye_app.ui.access import require_page
from judgeeye_app.ui.keys import api_key_field

actor = require_page("sample")  # every page checks the session itself (see pages/access.py)

st.title("Sample traces")
st.caption("For each item, a reasoning model writes k candidate traces ending in a rating; the ones whose "
           "rating equals the human label are accepted (Zhang et al., section 3.1).")
project = project_picker()
if project is None:
    st.stop()

new_tab, runs_tab = st.tabs(["New run", "Runs"])


def new_run_form() -> None:
    with session_scope() as session:
        versions = [v.version for v in list_versions(session, project.id)]
    if not versions:
        st.info("This project has no codebook yet.")
        return
    c1, c2 = st.columns(2)
    version = c1.selectbox("Codebook version", versions, index=len(versions) - 1, key="s_codebook")
    kind = c2.radio("Engine", ["Embedded model (SmolLM2-135M, CPU)", "Hugging Face model", "OpenAI-compatible server"],
                    key="s_engine")
    if kind.startswith("Embedded"):
        batch = st.number_input("Batch size", 1, 512, 16, key="s_batch")
        engine = EngineConfig(kind="transformers", model=EMBEDDED_MODEL, batch_size=int(batch))
    elif kind == "Hugging Face model":
        c1, c2, c3 = st.columns(3)
        model = c1.text_input("Model id or local directory", key="s_hf_model")
        adapter = c2.text_input("LoRA adapter directory (optional)", key="s_hf_adapter")
        batch = c3.number_input("Batch size", 1, 512, 32, key="s_hf_batch")
        if not model.strip():
            st.info("Enter a model id or directory.")
            return
        engine = EngineConfig(kind="transformers", model=model.strip(), adapter=adapter.strip() or None,
                              batch_size=int(batch))
    else:
        c1, c2, c3, c4 = st.columns(4)
        url = c1.text_input("Base URL", "http://127.0.0.1:8000/v1", key="s_oa_url")
        model = c2.text_input("Model", key="s_oa_model")
        key_env = c3.text_input("API key variable", "", key="s_oa_key_env",
                                help="The NAME of an environment variable holding the key; the key itself is never stored.")
        conc = c4.number_input("Concurrent requests", 1, 256, 16, key="s_oa_conc")
        usable, key_name = api_key_field(key_env)
        if not usable:
            return
        if not model.strip():
            st.info("Enter the served model's name.")
            return
        engine = EngineConfig(kind="openai", model=model.strip(), base_url=url.strip(),
                              api_key_env=key_name, max_concurrency=int(conc))
    c1, c2, c3, c4 = st.columns(4)
    k = c1.number_input("k (candidates per item)", 1, 256, 16, key="s_k")
    temperature = c2.number_input("Temperature", 0.0, 2.0, 1.0, 0.1, key="s_temp")
    top_p = c3.number_input("Top-p", 0.05, 1.0, 1.0, 0.05, key="s_top_p")
    max_tokens = c4.number_input("Max tokens", 16, 32768, 512, 16, key="s_max_tokens")
    c1, c2, c3 = st.columns(3)
    splits = c1.multiselect("Splits", ["train", "validation", "test"], ["train"], key="s_splits")
    limit = c2.number_input("Only the first N items (0 = all)", 0, 10_000_000, 0, key="s_limit")
    targets = c3.radio("Verify against", ["gold", "annotators"], key="s_targets", horizontal=True,
                       help="'annotators' also keeps traces matching each annotator's own rating (paper section 5).")
    c1, c2, c3 = st.columns(3)
    adaptive = c1.toggle("Adaptive rounds", key="s_adaptive",
                         help="Sample in rounds and stop an item once it has enough accepted traces.")
    round_size = c2.number_input("Round size", 1, 64, 4, key="s_round", disabled=not adaptive)
    target = c3.number_input("Stop at accepted", 1, 64, 1, key="s_target", disabled=not adaptive)
    try:
        settings = SamplingSettings(
            k=int(k), temperature=float(temperature), top_p=float(top_p), max_tokens=int(max_tokens),
            splits=splits, limit=int(limit) or None, targets=targets,
            round_size=int(round_size) if adaptive else None, target_accepted=int(target),
        )
    except ValueError as exc:
        st.error(str(exc))
        return
    st.code(cli_command(project.name, engine, settings, version), language="bash")
    run_estimate(engine, settings, version)
    if st.button("Start sampling", type="primary", key="s_start"):
        with store_busy_notice():
            run_id, job_id = launch_run(project.id, engine, settings, version, actor=actor)
            st.session_state["s_run"] = run_id
            st.success(f"Run {run_id} started (job {job_id}). Follow it on the **Runs** tab.")


# ---- estimate before launch (judgeeye.sampling.estimate) ---------------------------------------
@st.cache_data(ttl=30, show_spinner=False)
def _estimate(project_id: int, engine_json: str, settings_json: str, version: int | None) -> tuple[str, bool]:
    import json

    from judgeeye.sampling.estimate import estimate_run

    with session_scope() as session:
        est = estimate_run(session, project_id, EngineConfig.model_validate(json.loads(engine_json)),
                           SamplingSettings.model_validate_json(settings_json), version)
    return est.text(), est.seconds is not None


def run_estimate(engine: EngineConfig, settings: SamplingSettings, version: int | None) -> None:
    """"About N tokens, about M min on this machine", from this engine's measured speed here;
    where none is measured yet, a button measures it (in a separate process)."""
    from judgeeye.sampling.estimate import calibrate_in_subprocess

    text, timed = _estimate(project.id, engine.model_dump_json(), settings.model_dump_json(), version)
    st.caption(f"Estimate: {text}.")
    if not timed and st.button("Measure this machine's speed (about a minute)", key="s_measure"):
        with st.spinner("Measuring one prompt and a few tokens with this engine…"):
            problem = calibrate_in_subprocess(str(project.id), engine, settings, version)
        if problem:
            st.warning(f"Could not measure the speed: {problem}")
        else:
            _estimate.clear()
            st.rerun()
# ---- end of the estimate block ---------------------------------------------------------------


@st.fragment(run_every=2)
def live_status(run_id: int) -> None:
    """Polled every 2 s: the run's job, progress, cancel/resume."""
    with session_scope() as session:
        reconcile(session)
        run = session.get(SamplingRun, run_id)
        job = latest_job(session, run_id)
        stats = run_stats(session, run_id)
        tail = log_tail(job, 4000) if job else ""
    status = job.status if job else run.status
    st.progress(job.progress if job else 0.0, text=f"Job {job.id if job else '—'}: {status} · "
                f"{(job.progress_text if job else '') or ''}")
    m = st.columns(5)
    m[0].metric("Items", stats.n_items)
    m[1].metric("Candidates", stats.n_candidates)
    m[2].metric("Accepted", stats.n_accepted, help=f"{stats.acceptance_rate:.1%} of candidates")
    m[3].metric("Items with a trace", stats.items_with_accepted)
    m[4].metric("Parse failures", stats.parse_failures, help=f"{stats.readout_ratings} rated by the score read-out")
    c1, c2 = st.columns(2)
    if job is not None and job.status in ("queued", "running"):
        if c1.button("Cancel", key=f"s_cancel_{run_id}"):
            with store_busy_notice():
                request_cancel(job.id, actor=actor)
    elif run.status != "completed":
        if c1.button("Resume", key=f"s_resume_{run_id}", help="Sample only what is missing."):
            with store_busy_notice():
                resume_run(run_id, actor=actor)
    if job is not None and job.status == "failed":
        st.error(f"Job {job.id} failed: {job.error or 'see the log'}")
    with st.expander("Log"):
        st.code(tail[-4000:] or "(empty)", language=None)


def run_view() -> None:
    with session_scope() as session:
        reconcile(session)  # a run whose worker died is listed as failed, not running
        runs = session.scalars(select(SamplingRun).where(SamplingRun.project_id == project.id)
                               .order_by(SamplingRun.id.desc())).all()
    if not runs:
        st.info("No sampling runs yet: start one on the **New run** tab.")
        return
    ids = [r.id for r in runs]
    labels = {r.id: f"Run {r.id} · {EngineConfig.model_validate(r.engine).label()} · k={r.k} · {r.status}" for r in runs}
    wanted = st.session_state.get("s_run")
    run_id = st.selectbox("Run", ids, index=ids.index(wanted) if wanted in ids else 0,
                          format_func=labels.get, key="s_run_pick")
    live_status(run_id)
    with session_scope() as session:
        stats = run_stats(session, run_id)
        summaries = item_summaries(session, run_id)
    if stats.n_candidates == 0:
        return
    c1, c2 = st.columns(2)
    levels = pd.DataFrame([{"gold label": f"{lv.level:g}", "acceptance rate": lv.rate, "items": lv.items,
                            "items with a trace": lv.items_with_accepted} for lv in stats.per_level])
    c1.plotly_chart(px.bar(levels, x="gold label", y="acceptance rate", hover_data=["items", "items with a trace"],
                           title="Acceptance by gold level"), width="stretch")
    curve = pd.DataFrame({"samples per item (j)": range(1, len(stats.utilization) + 1),
                          "items with an accepted trace": stats.utilization})
    c2.plotly_chart(px.line(curve, x="samples per item (j)", y="items with an accepted trace", markers=True,
                            title="Data utilization vs k", range_y=[0, 1]), width="stretch")
    if stats.adaptive:
        st.caption(f"Adaptive: {stats.completion_tokens:,} completion tokens against ~{stats.fixed_k_tokens:,.0f} "
                   f"for fixed k={stats.k} (saved ~{stats.tokens_saved:,.0f}).")
    for name, (n, matched) in stats.per_annotator.items():
        st.caption(f"Annotator {escape_markdown(name)}: {matched}/{n} items have a trace matching their rating.")

    st.subheader("Candidates")
    by_id = {s.item_id: s for s in summaries}
    item_id = st.selectbox(
        "Item", list(by_id), key="s_item",
        format_func=lambda i: f"{by_id[i].external_id} · gold {by_id[i].gold if by_id[i].gold is not None else '—'} · "
                              f"{by_id[i].accepted}/{by_id[i].candidates} accepted")
    with session_scope() as session:
        candidates = item_candidates(session, run_id, item_id)
    for c in candidates:
        mark = "✅ accepted" if c.accepted else "✖ rejected"
        rating = f"{c.predicted:g}" if c.predicted is not None else "none"
        source = "parsed" if c.parse_ok else ("score read-out" if c.predicted is not None else "parse failure")
        with st.container(border=True):
            st.markdown(f"**Sample {c.sample_index}** · {mark} · rating **{rating}** ({source}) · "
                        f"{c.completion_tokens} tokens · {c.finish_reason}")
            if c.reasoning:
                st.caption("Reasoning")
                st.text(c.reasoning)
            st.caption("Answer")
            st.text(c.answer)
            if c.score_dist:
                st.caption("Rating-token probabilities: " + ", ".join(f"{k}: {v:.2f}" for k, v in c.score_dist.items()))


with new_tab:
    new_run_form()
with runs_tab:
    run_view()
