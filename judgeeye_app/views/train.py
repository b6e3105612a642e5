"""Train: fine-tune an open rater on the traces (SFT, labels only, TRACT), watch it live, compare it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from judgeeye.codebook import list_versions
from judgeeye.display import escape_markdown
from judgeeye.jobs import reconcile
from judgeeye.settings_fields import SettingField, nest, setting_field
from judgeeye.store import TrainingRun, session_scope
from judgeeye.training import TrainingConfig, cli_command
from judgeeye.training.launch import (
    latest_job, launch_training, metrics_of, resume_point, resume_training, run_rows, tau_text, trace_sources,
)
from judgeeye.training.plan import TrainingPlan, plan_training
from judgeeye_app.ui.access import require_page
from judgeeye_app.ui.actions import attempt
from judgeeye_app.ui.common import project_picker
from judgeeye_app.ui.job_panel import TrackedJob, job_panel
from judgeeye_app.ui.live_select import live_selectbox, set_live_value
from judgeeye_app.ui.settings_form import MORE, field_widget, fill, help_text, problem, settings_form

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
FORM = "t_"  # the form's widgets are keyed FORM + the config field's path
#: the form's sections and the config fields each shows (the advanced ones under "More settings")
DATA = ["max_length", "packing", "train_limit", "think_tags"]
MODEL = ["lora_r", "lora_alpha", "lora_dropout", "target_modules", "device", "dtype", "gradient_checkpointing"]
OPTIMISER = ["learning_rate", "lr_scheduler", "weight_decay", "epochs", "warmup_ratio", "warmup_steps", "max_steps",
             "batch_size", "grad_accum", "seed"]
VALIDATION = ["evaluations", "eval_steps", "patience_evaluations", "patience", "val_limit", "val_batch_size"]
PROTOCOL = ["protocol.temperature", "protocol.top_p", "protocol.max_tokens", "protocol.readout"]
TRACT = ["lambda_raft", "self_trace_max_tokens", "self_trace_temperature"]
TEST = ["evaluate_test", "test_limit", "n_boot"]
RECIPE = ["mode", *DATA, *MODEL, *OPTIMISER, *VALIDATION, *PROTOCOL, *TRACT, *TEST]  # what a recipe fills
FLASH = "t_flash"


def _field(path: str) -> SettingField:
    return setting_field(TrainingConfig, path)


def _apply_recipe() -> None:
    """The recipe changed: it fills the form."""
    fill(TrainingConfig, RECIPE, FORM, TrainingConfig.from_preset(st.session_state[FORM + "preset"]), force=True)


def start_training(project_id: int, config: TrainingConfig) -> None:
    """A button's callback: it runs before the page reads the store, so the Runs tab lists and
    opens the new run in the same rerun."""
    ids, error = attempt(launch_training, project_id, config, actor=actor)  # a refused plan: the data changed
    if ids is None:
        st.session_state[FLASH] = ("error", str(error))
        return
    run_id, job_id = ids
    set_live_value("t_run_pick", run_id)
    st.session_state[FLASH] = ("success", f"Training run {run_id} started (job {job_id}). Follow it on the "
                                          "**Runs** tab.")


def new_run_form() -> None:
    with session_scope() as session:
        versions = [v.version for v in list_versions(session, project.id)]
        sources = trace_sources(session, project.id)
    if not versions:
        st.info("This project has no codebook yet.")
        return
    fill(TrainingConfig, ["preset"], FORM)
    preset = field_widget(_field("preset"), FORM, on_change=_apply_recipe)
    recipe = TrainingConfig.from_preset(preset)
    values: dict[str, Any] = {}
    st.subheader("Data")
    c1, c2, c3 = st.columns(3)
    fill(TrainingConfig, ["source"], FORM, recipe)
    source = field_widget(_field("source"), FORM, where=c1)
    run_choice = None
    if source == "candidates":
        if not sources:
            st.info("No sampling run has accepted traces yet: sample some on the **Sample** page.")
            return
        labels = {r: f"Run {r} · {n} accepted" for r, n in sources}
        run_choice = c2.selectbox(_field("sampling_run").title, list(labels), format_func=labels.get,
                                  key=FORM + "sampling_run", help=help_text(_field("sampling_run")))
    version = c3.selectbox(_field("codebook_version").title, [None, *versions], key=FORM + "codebook_version",
                           help=help_text(_field("codebook_version")),
                           format_func=lambda v: _field("codebook_version").none if v is None else f"v{v}")
    values |= settings_form(TrainingConfig, DATA, prefix=FORM, values=recipe, only="plain")
    st.subheader("Model")
    c1, c2 = st.columns(2)
    base_kind = c1.radio(_field("base_model").title, ["Embedded (SmolLM2-135M)", "Hugging Face model or directory"],
                         key=FORM + "base_kind", help=help_text(_field("base_model")))
    base = "embedded"
    if base_kind.startswith("Hugging"):
        base = c2.text_input("Model id, local directory or .gguf file", key=FORM + "base_model").strip()
        if not base:
            st.info("Enter a model id or directory.")
            return
    values |= settings_form(TrainingConfig, ["mode"], prefix=FORM, values=recipe, columns=2)
    values |= settings_form(TrainingConfig, MODEL, prefix=FORM, values=recipe, only="plain")
    st.subheader("Optimiser (AdamW) and plan")
    values |= settings_form(TrainingConfig, OPTIMISER, prefix=FORM, values=recipe, only="plain")
    st.subheader("Validation and early stopping")
    values |= settings_form(TrainingConfig, VALIDATION, prefix=FORM, values=recipe, columns=5, only="plain")
    st.caption("Validation and test are rated the same way:")
    values |= settings_form(TrainingConfig, PROTOCOL, prefix=FORM, values=recipe, only="plain")
    tract = values["mode"] == "tract"
    if tract:
        values |= settings_form(TrainingConfig, TRACT, prefix=FORM, values=recipe, columns=2, only="plain")
    values |= settings_form(TrainingConfig, TEST, prefix=FORM, values=recipe, columns=2, only="plain")
    with st.expander(MORE):
        values |= settings_form(TrainingConfig, [*DATA, *MODEL, *OPTIMISER, *VALIDATION, *(TRACT if tract else []),
                                                 *TEST], prefix=FORM, values=recipe, only="advanced")
    try:
        config = TrainingConfig.from_preset(
            preset, **nest(values), source=source, sampling_run=run_choice, codebook_version=version,
            base_model=base, force=bool(st.session_state.get(FORM + "force")))
    except ValueError as exc:
        st.error(problem(exc, TrainingConfig))
        return
    with session_scope() as session:
        plan = plan_training(session, project.id, config)
    show_plan(plan, config)
    if plan.refused and not config.force:
        return
    st.caption("The same run from a terminal (add `--background` to return at once; `--dry-run` prints the plan):")
    st.code(cli_command(project.name, config), language="bash")
    st.button("Start training", type="primary", key=FORM + "start", on_click=start_training,
              args=(project.id, config))
    if shown := st.session_state.pop(FLASH, None):
        (st.success if shown[0] == "success" else st.error)(shown[1])


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
        fill(TrainingConfig, ["force"], FORM)
        field_widget(_field("force"), FORM)


def curve(metrics: dict[str, list[tuple[int, float]]], names: dict[str, str], title: str) -> None:
    rows = [{"step": s, "value": v, "series": label} for name, label in names.items() for s, v in metrics.get(name, [])]
    if not rows:
        st.caption(f"{title}: no points yet")
        return
    fig = px.line(pd.DataFrame(rows), x="step", y="value", color="series", markers=True, title=title)
    st.plotly_chart(fig, width="stretch")


def details(run_id: int) -> None:
    """The run's best τ, loss, steps and curves (redrawn on every poll of the job panel)."""
    with session_scope() as session:
        run = session.get(TrainingRun, run_id)
        metrics = metrics_of(session, run_id)
        best, best_step = run.best_metric, run.best_step
        mode = TrainingConfig.model_validate(run.config).mode
    at_best = {name: dict(points).get(best_step) for name, points in metrics.items()
               if name in ("val_n", "val_parse_failures")}
    c = st.columns(3)
    c[0].metric("Best validation τ", "—" if best is None else f"{best:.3f}",
                help=f"at step {best_step}: {tau_text(best, at_best.get('val_n'), at_best.get('val_parse_failures'))}"
                if best_step is not None else None)
    c[1].metric("Last loss", f"{metrics['loss'][-1][1]:.4f}" if metrics.get("loss") else "—")
    c[2].metric("Steps", metrics["loss"][-1][0] if metrics.get("loss") else 0)
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


def tracked(run_id: int, status: str) -> TrackedJob:
    """The run as the job panel follows it: Stop while it trains, Resume from its last checkpoint."""
    point = resume_point(run_id) if status != "completed" else None
    return TrackedJob(
        key=f"t_{run_id}", name=f"training run {run_id}", title=f"Run {run_id}", status=status,
        find=lambda session: latest_job(session, run_id),
        resume=(lambda: resume_training(run_id, actor=actor)) if point else None,
        resume_label="Resume from the last checkpoint", resume_help=f"Continues from {point}." if point else None,
        no_resume=("Nothing to resume: this run stopped before its first checkpoint. Start a new run."
                   if status != "completed" and point is None else None),
        cancel_label="Stop (saves a checkpoint)",
        cancelled="Stop requested: the current step finishes, then a checkpoint is saved.",
        body=lambda: details(run_id))


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
    labels = {r["run"]: f"Run {r['run']} · {r['mode']} · {escape_markdown(str(r['base']))} · {r['status']}" for r in rows}
    run_id = live_selectbox("Run", list(labels), format_func=labels.get, key="t_run_pick")
    row = next(r for r in rows if r["run"] == run_id)
    job_panel([tracked(run_id, row["status"])], key="t_panel", actor=actor)
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
