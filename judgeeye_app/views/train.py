"""Train: fine-tune an open rater on the traces (SFT, labels only, TRACT), watch it live, compare it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from judgeeye.codebook import list_versions
from judgeeye.display import escape_markdown
from judgeeye.jobs import log_tail, reconcile, request_cancel
from judgeeye.store import TrainingRun, session_scope
from judgeeye.training import TrainingConfig, cli_command
from judgeeye.training.config import PRESET_LABELS, PRESETS, field_help, field_value
from judgeeye.training.launch import (
    NothingToResume, error_message, latest_job, launch_training, metrics_of, readable_log, resume_point,
    resume_training, run_rows, tau_text, trace_sources,
)
from judgeeye.training.plan import PlanRefused, TrainingPlan, plan_training
from judgeeye_app.ui.access import require_page
from judgeeye_app.ui.common import project_picker, store_busy_notice

actor = require_page("train")  # every page checks the session itself (see pages/access.py)

st.title("Train a rater")
st.caption("LoRA fine-tuning on the reasoning dataset: each item's prompt is the codebook with the item, the "
           "target its trace and the gold rating (paper section 3.2); 'labels only' drops the trace (Table 4); "
           "TRACT adds the squared error of the expected score and retrains on self-generated traces "
           "(Chiang et al.). The run is planned from its rows; validation Kendall τ, rated the way the test "
           "split is, picks the checkpoint and stops early; the best adapter is then compared with the base "
           "model on the test split.")
project = project_picker()
if project is None:
    st.stop()

new_tab, runs_tab = st.tabs(["New run", "Runs"])
MODES = {"SFT on traces": "sft", "Labels only (ablation)": "labels_only", "TRACT (CoT-RAFT, two stages)": "tract"}
SCHEDULERS = ["linear", "cosine", "constant_with_warmup"]
READOUTS = {"auto": "auto (expected for TRACT, else parsed)", "parsed": "parsed (the rating it wrote)",
            "argmax": "argmax (most probable level)", "expected": "expected (CoT-RAIL)"}

#: form widgets that follow the recipe: key -> (config field, 0 means "not set")
RECIPE_FIELDS: dict[str, tuple[str, bool]] = {
    "t_lora_r": ("lora_r", False), "t_lora_alpha": ("lora_alpha", False), "t_lora_dropout": ("lora_dropout", False),
    "t_targets": ("target_modules", False), "t_lr": ("learning_rate", False), "t_scheduler": ("lr_scheduler", False),
    "t_warmup_ratio": ("warmup_ratio", False), "t_warmup": ("warmup_steps", True), "t_wd": ("weight_decay", False),
    "t_epochs": ("epochs", False), "t_max_steps": ("max_steps", True), "t_batch": ("batch_size", False),
    "t_accum": ("grad_accum", False), "t_max_length": ("max_length", False), "t_packing": ("packing", False),
    "t_evaluations": ("evaluations", False), "t_eval_steps": ("eval_steps", True),
    "t_patience_evals": ("patience_evaluations", False), "t_patience": ("patience", True),
    "t_val_limit": ("val_limit", True), "t_temperature": ("protocol.temperature", False),
    "t_top_p": ("protocol.top_p", False), "t_tokens": ("protocol.max_tokens", False),
    "t_readout": ("protocol.readout", False), "t_lambda": ("lambda_raft", False),
    "t_self_tokens": ("self_trace_max_tokens", False), "t_test_eval": ("evaluate_test", False),
    "t_test_limit": ("test_limit", True),
}


def _apply_recipe(force: bool = False) -> None:
    """Fill the form from the chosen recipe (on first view, and whenever the recipe changes)."""
    preset = st.session_state.get("t_preset", "paper")
    config = TrainingConfig.from_preset(preset)
    for key, (path, optional) in RECIPE_FIELDS.items():
        if force or key not in st.session_state:
            value = field_value(config, path)
            st.session_state[key] = (value or 0) if optional else value
    if force or "t_mode" not in st.session_state:
        st.session_state["t_mode"] = next(label for label, m in MODES.items() if m == config.mode)


def _form_values() -> dict[str, Any]:
    """The recipe fields as the form holds them (0 in an optional field: left to the plan)."""
    values: dict[str, Any] = {}
    protocol: dict[str, Any] = {}
    for key, (path, optional) in RECIPE_FIELDS.items():
        value = st.session_state[key]
        if optional:
            value = int(value) or None
        if path.startswith("protocol."):
            protocol[path.split(".", 1)[1]] = value
        else:
            values[path] = value
    return {**values, "protocol": protocol}


def new_run_form() -> None:
    with session_scope() as session:
        versions = [v.version for v in list_versions(session, project.id)]
        sources = trace_sources(session, project.id)
    if not versions:
        st.info("This project has no codebook yet.")
        return
    st.selectbox("Recipe", list(PRESETS), format_func=PRESET_LABELS.get, key="t_preset",
                 on_change=_apply_recipe, kwargs={"force": True}, help=field_help("preset"))
    _apply_recipe()
    st.subheader("Data")
    c1, c2, c3 = st.columns(3)
    source = c1.radio("Traces", ["auto", "review", "candidates"], key="t_source", horizontal=True,
                      help="review: the reviewed reasoning dataset (unreviewed items: their first accepted trace); "
                           "candidates: the first accepted trace per item of one sampling run; auto: review when "
                           "available.")
    run_choice = None
    if source == "candidates":
        if not sources:
            st.info("No sampling run has accepted traces yet: sample some on the **Sample** page.")
            return
        labels = {r: f"Run {r} · {n} accepted" for r, n in sources}
        run_choice = c2.selectbox("Sampling run", list(labels), format_func=labels.get, key="t_sampling_run")
    version = c3.selectbox("Codebook version (prompts)", [None, *versions], key="t_codebook",
                           format_func=lambda v: "the traces' version" if v is None else f"v{v}")
    st.subheader("Model")
    c1, c2 = st.columns(2)
    base_kind = c1.radio("Base model", ["Embedded (SmolLM2-135M)", "Hugging Face model or directory"], key="t_base_kind")
    base = "embedded"
    if base_kind.startswith("Hugging"):
        base = c2.text_input("Model id, local directory or .gguf file", key="t_base").strip()
        if not base:
            st.info("Enter a model id or directory.")
            return
    mode = MODES[st.radio("Objective", list(MODES), key="t_mode", horizontal=True, help=field_help("mode"))]
    c1, c2, c3, c4 = st.columns(4)
    c1.number_input("LoRA r", 1, 512, key="t_lora_r")
    c2.number_input("LoRA α", 1, 1024, key="t_lora_alpha")
    c3.number_input("LoRA dropout", 0.0, 0.9, step=0.01, key="t_lora_dropout")
    c4.text_input("Target modules", key="t_targets", help=field_help("target_modules"))
    st.subheader("Optimiser (AdamW) and plan")
    c1, c2, c3, c4 = st.columns(4)
    c1.number_input("Learning rate", 1e-7, 1e-2, format="%.1e", key="t_lr")
    schedulers = SCHEDULERS + [s for s in [st.session_state["t_scheduler"]] if s not in SCHEDULERS]
    c2.selectbox("Schedule", schedulers, key="t_scheduler", help=field_help("lr_scheduler"))
    c3.number_input("Weight decay", 0.0, 1.0, step=0.01, key="t_wd")
    c4.number_input("Epochs (most)", 0.1, 100.0, step=0.5, key="t_epochs", help=field_help("epochs"))
    c1, c2, c3, c4 = st.columns(4)
    c1.number_input("Warm-up ratio", 0.0, 1.0, step=0.05, key="t_warmup_ratio", help=field_help("warmup_ratio"))
    c2.number_input("Warm-up steps (0: by ratio)", 0, 100_000, key="t_warmup", help=field_help("warmup_steps"))
    c3.number_input("Max steps (0: by epochs)", 0, 10_000_000, key="t_max_steps", help=field_help("max_steps"))
    c4.number_input("Max length (tokens)", 16, 262_144, step=64, key="t_max_length", help=field_help("max_length"))
    c1, c2, c3 = st.columns(3)
    c1.number_input("Batch size per device", 1, 1024, key="t_batch", help=field_help("batch_size"))
    c2.number_input("Gradient accumulation", 1, 1024, key="t_accum", help=field_help("grad_accum"))
    c3.toggle("Sequence packing", key="t_packing", help=field_help("packing"))
    st.subheader("Validation and early stopping")
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.number_input("Validations over the run", 1, 1000, key="t_evaluations", help=field_help("evaluations"))
    c2.number_input("Validate every N steps (0: from the plan)", 0, 100_000, key="t_eval_steps",
                    help=field_help("eval_steps"))
    c3.number_input("Patience (validations)", 1, 1000, key="t_patience_evals", help=field_help("patience_evaluations"))
    c4.number_input("Patience in steps (0: by validations)", 0, 1_000_000, key="t_patience", help=field_help("patience"))
    c5.number_input("Validation items (0: all)", 0, 1_000_000, key="t_val_limit")
    st.caption("Validation and test are rated the same way:")
    c1, c2, c3, c4 = st.columns(4)
    c1.number_input("Temperature", 0.0, 2.0, step=0.1, key="t_temperature", help=field_help("protocol.temperature"))
    c2.number_input("Top-p", 0.01, 1.0, step=0.05, key="t_top_p", help=field_help("protocol.top_p"))
    c3.number_input("Tokens per rating", 1, 32_768, key="t_tokens", help=field_help("protocol.max_tokens"))
    c4.selectbox("Read-out", list(READOUTS), format_func=READOUTS.get, key="t_readout",
                 help=field_help("protocol.readout"))
    if mode == "tract":
        c1, c2 = st.columns(2)
        c1.number_input("λ (weight of the squared error)", 0.0, 100.0, step=0.1, key="t_lambda")
        c2.number_input("Stage 2: tokens per self-generated trace", 1, 32_768, key="t_self_tokens")
    c1, c2 = st.columns(2)
    c1.toggle("Evaluate on the test split", key="t_test_eval")
    c2.number_input("Test items (0: all)", 0, 1_000_000, key="t_test_limit")
    try:
        config = TrainingConfig.from_preset(
            st.session_state["t_preset"], **_form_values(), mode=mode, source=source, sampling_run=run_choice,
            codebook_version=version, base_model=base, force=bool(st.session_state.get("t_force")))
    except ValueError as exc:
        st.error(str(exc))
        return
    with session_scope() as session:
        plan = plan_training(session, project.id, config)
    show_plan(plan, config)
    if plan.refused and not config.force:
        return
    st.caption("The same run from a terminal (add `--background` to return at once; `--dry-run` prints the plan):")
    st.code(cli_command(project.name, config), language="bash")
    if st.button("Start training", type="primary", key="t_start"):
        with store_busy_notice():
            try:
                run_id, job_id = launch_training(project.id, config, actor=actor)
            except PlanRefused as exc:  # the data changed since the plan above was drawn
                st.error(str(exc))
                return
            st.session_state["t_run"] = run_id
            st.success(f"Training run {run_id} started (job {job_id}). Follow it on the **Runs** tab.")


def show_plan(plan: TrainingPlan, config: TrainingConfig) -> None:
    """The plan before Start: rows, steps, warm-up, validations; what is wrong with it."""
    st.subheader("Plan")
    for stage in plan.stages:
        if len(plan.stages) > 1:
            st.caption("Stage 1: the traces" if stage.stage == "stage1" else
                       "Stage 2: one self-generated trace per gold training item")
        c = st.columns(4)
        c[0].metric("Training rows", stage.rows)
        c[1].metric("Optimizer steps (most)", stage.optimizer_steps)
        c[2].metric("Warm-up steps", stage.warmup_steps)
        c[3].metric("Validations", stage.evaluations)
        if stage.rows:
            st.caption(f"{stage.steps_per_epoch} steps per epoch at a batch of {stage.effective_batch} rows, "
                       f"{stage.epochs:g} epochs at most; a validation on {stage.validation_items} items every "
                       f"{stage.eval_steps} steps; early stopping after {stage.patience} steps without a better τ.")
    for warning in plan.warnings():
        st.warning(warning)
    if plan.refused:
        st.error("This plan cannot train meaningfully: " + "; ".join(plan.problems()) + ".")
        st.checkbox("Train anyway", key="t_force", help=field_help("force"))


def curve(metrics: dict[str, list[tuple[int, float]]], names: dict[str, str], title: str) -> None:
    rows = [{"step": s, "value": v, "series": label} for name, label in names.items() for s, v in metrics.get(name, [])]
    if not rows:
        st.caption(f"{title}: no points yet")
        return
    fig = px.line(pd.DataFrame(rows), x="step", y="value", color="series", markers=True, title=title)
    st.plotly_chart(fig, width="stretch")


@st.fragment(run_every=2)
def live(run_id: int) -> None:
    """Polled every 2 s: job status and progress, stop/resume, live curves, the log of a failed run."""
    with session_scope() as session:
        reconcile(session)
        run = session.get(TrainingRun, run_id)
        job = latest_job(session, run_id)
        metrics = metrics_of(session, run_id)
        tail = readable_log(log_tail(job, 6000)) if job else ""
        status, best, best_step = run.status, run.best_metric, run.best_step
        mode = TrainingConfig.model_validate(run.config).mode
    state = job.status if job else status
    st.progress(job.progress if job else 0.0,
                text=f"Job {job.id if job else '—'}: {state} · run {status} · {(job.progress_text if job else '') or ''}")
    at_best = {name: dict(points).get(best_step) for name, points in metrics.items()
               if name in ("val_n", "val_parse_failures")}
    c = st.columns(3)
    c[0].metric("Best validation τ", "—" if best is None else f"{best:.3f}",
                help=f"at step {best_step}: {tau_text(best, at_best.get('val_n'), at_best.get('val_parse_failures'))}"
                if best_step is not None else None)
    c[1].metric("Last loss", f"{metrics['loss'][-1][1]:.4f}" if metrics.get("loss") else "—")
    c[2].metric("Steps", metrics["loss"][-1][0] if metrics.get("loss") else 0)
    if job is not None and job.status in ("queued", "running"):
        if st.button("Stop (saves a checkpoint)", key=f"t_stop_{run_id}"):
            with store_busy_notice():
                request_cancel(job.id, actor=actor)
                st.toast("Stop requested: the current step finishes, then a checkpoint is saved.")
    elif status != "completed":
        point = resume_point(run_id)
        if point is None:
            st.caption("Nothing to resume: this run stopped before its first checkpoint. Start a new run.")
        elif st.button("Resume from the last checkpoint", key=f"t_resume_{run_id}", help=f"Continues from {point}."):
            with store_busy_notice():
                try:
                    resume_training(run_id, actor=actor)
                except (NothingToResume, RuntimeError) as exc:
                    st.error(str(exc))
    if job is not None and job.status == "failed":
        st.error(f"Job {job.id} failed: {error_message(job.error) if job.error else 'see the log'}")
    c1, c2, c3 = st.columns(3)
    with c1:
        curve(metrics, {"loss": "loss", "stage1/loss": "stage 1 loss"}, "Training loss")
        if mode == "tract":
            curve(metrics, {"ce": "CE", "raft_mse": "RAFT (squared error)", "stage1/ce": "stage 1 CE",
                            "stage1/raft_mse": "stage 1 RAFT"}, "CoT-RAFT terms")
    with c2:
        curve(metrics, {"lr": "learning rate", "stage1/lr": "stage 1"}, "Learning rate")
    with c3:
        curve(metrics, {"val_tau": "validation τ", "stage1/val_tau": "stage 1"}, "Validation Kendall τ")
        curve(metrics, {"val_parse_failures": "parse failures", "val_n": "n (rated)",
                        "stage1/val_parse_failures": "stage 1 parse failures"}, "Validation n and parse failures")
    with st.expander("Log", expanded=job is not None and job.status == "failed"):
        st.code(tail[-6000:] or "(empty)", language=None)


def _shown(value: Any, digits: int = 3) -> str:
    """A table cell: "—" for nothing, counts as whole numbers, metrics with ``digits`` decimals."""
    if value is None or value != value:
        return "—"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{int(value)}" if digits == 0 or isinstance(value, int) else f"{value:.{digits}f}"
    return str(value)


def runs_view() -> None:
    with session_scope() as session:
        reconcile(session)  # a run whose worker died is listed as failed, not running
        rows = run_rows(session, project.id)
    if not rows:
        st.info("No training runs yet: start one on the **New run** tab.")
        return
    counts = ("val n", "val parse failures", "best step", "test n", "test parse failures", "base n",
              "base parse failures")
    table = [{k: _shown(v, 0 if k in counts else 3) for k, v in r.items()} for r in rows]
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")
    ids = [r["run"] for r in rows]
    labels = {r["run"]: f"Run {r['run']} · {r['mode']} · {escape_markdown(str(r['base']))} · {r['status']}" for r in rows}
    wanted = st.session_state.get("t_run")
    run_id = st.selectbox("Run", ids, index=ids.index(wanted) if wanted in ids else 0, format_func=labels.get,
                          key="t_run_pick")
    live(run_id)
    row = next(r for r in rows if r["run"] == run_id)
    if row["test τ"] is not None or row["test MSE"] is not None:
        st.subheader("Test split: adapter against the base model")
        table = pd.DataFrame([
            {"metric": label, "adapter": _shown(row[f"test {key}"]), "adapter n": _shown(row["test n"], 0),
             "adapter parse failures": _shown(row["test parse failures"], 0), "base": _shown(row[f"base {key}"]),
             "base n": _shown(row["base n"], 0), "base parse failures": _shown(row["base parse failures"], 0),
             "p (one-sided)": _shown(row[f"p({key})"])}
            for label, key in (("Kendall τ", "τ"), ("ICC(3,1)", "ICC"), ("MSE", "MSE"))])
        st.dataframe(table, hide_index=True)
        st.caption("n: items whose rating enters the metric; parse failures: answers without a parsable rating, "
                   "left out under the parsed read-out. One-sided paired bootstrap for τ and ICC(3,1), paired "
                   "t-test on squared errors (paper section 4.1).")


with new_tab:
    new_run_form()
with runs_tab:
    runs_view()
