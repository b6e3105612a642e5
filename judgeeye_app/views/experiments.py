"""Experiments (leads): the paper's protocol on a project as one resumable run: the grid, the plan
before launch, the same CLI command, live progress, and the report (which rater to use?)."""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from judgeeye.codebook import list_versions
from judgeeye.display import escape_markdown
from judgeeye.experiments import PRESET_HELP, PRESETS, ExperimentSettings, cli_command
from judgeeye.experiments.grid import raters as grid_raters
from judgeeye.experiments.launch import latest_job, launch_experiment, list_experiments, resume_experiment, stage_rows
from judgeeye.experiments.plan import plan_experiment
from judgeeye.experiments.report import (
    STATUS_WORDS, build_report, comparison_table, duration, group_tables, inputs_table, rater_table, render_html,
    stage_table,
)
from judgeeye.jobs import reconcile, request_cancel
from judgeeye.store import Experiment, session_scope
from judgeeye_app.ui.access import require_page
from judgeeye_app.ui.common import project_picker, store_busy_notice
from judgeeye_app.ui.keys import api_key_field

actor = require_page("experiments")  # every page checks the session itself

st.title("Experiments")
st.caption("Which rater should we use? One run does the paper's protocol on this project: infer traces by "
           "rejection sampling, fine-tune the base model on them (and on the labels alone, the paper's Table 4), "
           "optionally TRACT, refine the codebook for black-box raters, then rate the same test items with every "
           "rater under one protocol and compare each with the base (Zhang et al.; Chiang et al.). Runs that were "
           "already made with the same settings are reused.")
project = project_picker()
if project is None:
    st.stop()

new_tab, list_tab = st.tabs(["New experiment", "Experiments"])
ACTIONS = {"new": "new run", "reuse": "reuse", "resume": "resume", "done": "done"}
READOUTS = {"argmax": "most probable rating after the trace", "expected": "expected rating after the trace",
            "parsed": "the rating it writes"}


def _number(where, label: str, value: int | None, key: str, minimum: int = 0, help: str | None = None) -> int:  # type: ignore[no-untyped-def]
    """A whole-number field starting at the preset's value; 0 means "none" for limits."""
    return int(where.number_input(label, minimum, 10_000_000, int(value or 0), key=key, help=help))


def _changes(preset: dict, values: dict) -> dict:
    """The fields the form changed against the preset (a preset without the field means none)."""
    return {k: v for k, v in values.items() if v != preset.get(k)}


def settings_form() -> ExperimentSettings | None:
    preset = st.radio("Preset", list(PRESETS), key="x_preset", horizontal=True,
                      format_func=lambda p: {"quick": "Quick (embedded model, minutes)", "paper": "Paper protocol"}[p])
    st.caption(PRESET_HELP[preset])
    defaults = ExperimentSettings.from_preset(preset)
    c1, c2 = st.columns(2)
    base = c1.text_input("Base model (rated as is and fine-tuned)", defaults.base_model, key=f"x_base_{preset}",
                         help="embedded (SmolLM2-135M), a Hugging Face model id or a model folder.").strip()
    tract = c2.toggle("Also train TRACT (CoT-RAFT, two stages)", "tract" in defaults.modes, key=f"x_tract_{preset}")
    labels_only = c2.toggle("Labels-only ablation (the paper's Table 4)", "labels_only" in defaults.modes,
                            key=f"x_labels_{preset}")
    sampler = st.text_input("Sampler: the engine that infers the traces (empty: the base model)", "",
                            key="x_sampler", placeholder="openai:MODEL@http://127.0.0.1:8000/v1",
                            help="The paper infers traces with a strong reasoning model and fine-tunes a smaller "
                                 "one: name an OpenAI-compatible server here, or hf:MODEL.").strip()
    lines = st.text_area("Black-box raters (optional): one OpenAI-compatible server per line, as openai:MODEL@URL",
                         key="x_blackbox", help="Each rates with the original codebook and with the refined one.")
    blackbox = [line.strip() for line in lines.splitlines() if line.strip()]
    key_name = None
    refined = None
    if blackbox or sampler.startswith("openai:"):
        c1, c2 = st.columns(2)
        key_text = c1.text_input("API key variable (optional)", "", key="x_key_env",
                                 help="The NAME of an environment variable or Streamlit secret with the key.")
        usable, key_name = api_key_field(key_text)
        if not usable:
            return None
        if blackbox:
            with session_scope() as session:
                versions = [v.version for v in list_versions(session, project.id)]
            refined = c2.selectbox("Refined codebook", [None, *versions], key="x_refined",
                                   format_func=lambda v: "refine the original in the experiment" if v is None
                                   else f"v{v}")
    with st.expander("Stage settings"):
        st.caption("Sampling (train split)")
        c1, c2, c3 = st.columns(3)
        d = defaults.sampling
        sampling = {"k": _number(c1, "k (candidates per item)", d.get("k"), f"x_k_{preset}", 1),
                    "max_tokens": _number(c2, "Tokens per trace (0: the library's default)", d.get("max_tokens"),
                                          f"x_smax_{preset}"),
                    "limit": _number(c3, "Train items (0: all)", d.get("limit"), f"x_slimit_{preset}")}
        st.caption("Rating protocol (test split, every rater)")
        c1, c2, c3 = st.columns(3)
        p = defaults.protocol
        limit = c1.number_input("Test items (0: all)", 0, 10_000_000, int(p.limit or 0), key=f"x_plimit_{preset}")
        max_tokens = c2.number_input("Tokens per rating", 1, 32_768, int(p.max_tokens), key=f"x_pmax_{preset}")
        readout = c3.selectbox("Local raters read out", list(READOUTS), index=list(READOUTS).index(p.readout),
                               format_func=READOUTS.get, key=f"x_readout_{preset}")
        steps = None
        if "max_steps" in defaults.training:
            steps = st.number_input("Training steps per fine-tuned rater", 1, 1_000_000,
                                    int(defaults.training["max_steps"]), key=f"x_steps_{preset}")
    modes = ["sft", *(["labels_only"] if labels_only else []), *(["tract"] if tract else [])]
    overrides: dict = {"base_model": base or "embedded", "sampler": sampler, "modes": modes, "blackbox": blackbox,
                       "api_key_env": key_name, "refined_codebook": refined,
                       "sampling": _changes(defaults.sampling, {"k": sampling["k"], "limit": sampling["limit"] or None,
                                                                "max_tokens": sampling["max_tokens"] or None}),
                       "protocol": _changes(defaults.protocol.model_dump(),
                                            {"limit": int(limit) or None, "max_tokens": int(max_tokens),
                                             "readout": readout})}
    if steps is not None:
        overrides["training"] = {"max_steps": int(steps)}
    try:
        return ExperimentSettings.from_preset(preset, **overrides)
    except ValueError as exc:
        st.error(str(exc))
        return None


def new_experiment() -> None:
    settings = settings_form()
    if settings is None:
        return
    st.subheader("Grid")
    st.dataframe(pd.DataFrame([{
        "rater": r.title,
        "model": {"base": "the base model", "train": "the base model + its LoRA adapter"}.get(
            r.source.split(":")[0], "black-box server"),
        "codebook": r.codebook, "read-out": READOUTS[r.readout]} for r in grid_raters(settings)]),
        hide_index=True, width="stretch")
    with session_scope() as session:
        try:
            plan = plan_experiment(session, project.id, settings)
        except (LookupError, ValueError) as exc:
            st.error(str(exc))
            return
    st.subheader("Plan")
    st.dataframe(pd.DataFrame([{
        "stage": s.title, "does": ACTIONS[s.action] + (f" (run {s.run_id})" if s.run_id is not None else ""),
        "items": s.items if s.items is not None else "—",
        "tokens generated (at most)": f"{s.tokens:,}" if s.tokens is not None else "—",
        "time": "about " + duration(s.seconds) if s.seconds is not None else "—",
        "estimated from": s.basis if s.runs_work else ""} for s in plan.stages]), hide_index=True, width="stretch")
    st.info(plan.summary())
    st.caption("The same experiment from a terminal (add `--background` to return at once):")
    st.code(cli_command(str(project.id), settings), language="bash")
    if st.button("Start the experiment", type="primary", key="x_start"):
        with store_busy_notice():
            experiment_id, job_id = launch_experiment(project.id, settings, actor=actor)
            st.session_state["x_experiment"] = experiment_id
            st.success(f"Experiment {experiment_id} started. Follow it on the **Experiments** tab.")


@st.fragment(run_every=2)
def live(experiment_id: int) -> None:
    """Polled every 2 s: progress, stages, stop/resume; the page reruns when the experiment ends."""
    with session_scope() as session:
        reconcile(session)
        experiment = session.get(Experiment, experiment_id)
        job = latest_job(session, experiment_id)
        rows = [(r.key, r.status, r.run_id, r.reused, r.seconds) for r in stage_rows(session, experiment_id)]
        status, error = experiment.status, (job.error if job is not None else None)
        progress, text = (job.progress, job.progress_text) if job is not None else (0.0, None)
        job_id, job_status = (job.id, job.status) if job is not None else (None, None)
    seen = st.session_state.setdefault("x_seen", {})
    if seen.get(experiment_id) not in (None, status):
        seen[experiment_id] = status
        st.rerun()  # the report and the list show the new state at once
    seen[experiment_id] = status
    st.progress(progress, text=f"{STATUS_WORDS.get(status, status).capitalize()}"
                               + (f" · {escape_markdown(text)}" if text and status == "running" else ""))
    done = sum(1 for _, s, *_ in rows if s == "done")
    st.caption(f"{done} of {len(rows)} stages done, {sum(1 for r in rows if r[3])} reused")
    if job_status in ("queued", "running"):
        if st.button("Stop (resumable)", key=f"x_stop_{experiment_id}"):
            with store_busy_notice():
                request_cancel(job_id, actor=actor)
                st.toast("Stop requested: the current step finishes, then the experiment stops.")
    elif status != "completed":
        if status == "failed" and error:
            reason = re.sub(r"^[A-Za-z]+(Error|Exception): ", "", error)  # the log has the details
            st.error(f"The experiment stopped: {escape_markdown(reason)}. Resume continues where it stopped.")
        if st.button("Resume", key=f"x_resume_{experiment_id}"):
            with store_busy_notice():
                resume_experiment(experiment_id, actor=actor)
                st.rerun(scope="fragment")


def report_view(experiment_id: int) -> None:
    with session_scope() as session:
        report = build_report(session, experiment_id)
    st.subheader("Verdicts")
    for comparison in report.comparisons:
        st.markdown(f"- {escape_markdown(comparison.verdict)}")
    if not report.comparisons:
        st.caption("No comparisons in this grid.")
    st.subheader("Raters on the test split")
    st.dataframe(rater_table(report), hide_index=True, width="stretch")
    st.subheader("Paired tests against the baseline")
    st.caption("One-sided tests that B is better than A on the same items: paired bootstrap (1,000 resamples) for "
               "τ and ICC(3,1), paired t-test on squared errors for MSE. * p < .05, ** p < .01, *** p < .001.")
    st.dataframe(comparison_table(report), hide_index=True, width="stretch")
    groups = group_tables(report)
    if groups is not None:
        st.caption("Black-box raters: original → refined codebook (the paper's Tables 2–3)")
        st.dataframe(groups[0], hide_index=True, width="stretch")
        st.dataframe(groups[1], hide_index=True, width="stretch")
    for note in report.notes:
        st.caption(escape_markdown(note))
    with st.expander("Stages and what they cost"):
        st.dataframe(stage_table(report), hide_index=True, width="stretch")
    with st.expander("Inputs (what reruns it exactly)"):
        st.dataframe(inputs_table(report), hide_index=True, width="stretch")
        st.code(report.command, language="bash")
    st.download_button("Download the HTML report", data=lambda: render_html(report),
                       file_name=f"experiment-{experiment_id}-report.html", mime="text/html",
                       key=f"x_download_{experiment_id}", on_click="ignore", icon=":material/download:")


def experiments_view() -> None:
    with session_scope() as session:
        reconcile(session)
        items = [(e.id, e.name, e.preset, e.status, e.created_at, stage_rows(session, e.id))
                 for e in list_experiments(session, project.id)]
    if not items:
        st.info("No experiments yet: plan and start one on the **New experiment** tab.")
        return
    st.dataframe(pd.DataFrame([{
        "experiment": i, "name": name, "preset": preset, "status": STATUS_WORDS.get(status, status),
        "stages done": f"{sum(r.status == 'done' for r in rows)} of {len(rows)}",
        "reused": sum(bool(r.reused) for r in rows), "created": f"{created:%Y-%m-%d %H:%M}"}
        for i, name, preset, status, created, rows in items]), hide_index=True, width="stretch")
    ids = [i for i, *_ in items]
    names = {i: f"Experiment {i} · {name}" for i, name, *_ in items}
    wanted = st.session_state.get("x_experiment")
    experiment_id = st.selectbox("Experiment", ids, index=ids.index(wanted) if wanted in ids else 0,
                                 format_func=names.get, key="x_pick")
    live(experiment_id)
    report_view(experiment_id)


with new_tab:
    new_experiment()
with list_tab:
    experiments_view()
