"""Train: fine-tune an open rater on the traces (SFT, labels only, TRACT), watch it live, compare it."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from judgeeye.codebook import list_versions
from judgeeye.display import escape_markdown
from judgeeye.jobs import log_tail, reconcile, request_cancel
from judgeeye.store import TrainingRun, session_scope
from judgeeye.training import TrainingConfig, cli_command
from judgeeye.training.launch import latest_job, launch_training, metrics_of, resume_training, run_rows, trace_sources
from judgeeye_app.ui.common import project_picker, store_busy_notice
from judgeeye_app.ui.access import require_page

actor = require_page("train")  # every page checks the session itself (see pages/access.py)

st.title("Train a rater")
st.caption("LoRA fine-tuning on the reasoning dataset: each item's prompt is the codebook with the item, the "
           "target its trace and the gold rating (paper section 3.2); 'labels only' drops the trace (Table 4); "
           "TRACT adds the squared error of the expected score and retrains on self-generated traces "
           "(Chiang et al.). Validation Kendall τ drives early stopping; the best adapter is then compared with "
           "the base model on the test split.")
project = project_picker()
if project is None:
    st.stop()

new_tab, runs_tab = st.tabs(["New run", "Runs"])
MODES = {"SFT on traces": "sft", "Labels only (ablation)": "labels_only", "TRACT (CoT-RAFT, two stages)": "tract"}


def new_run_form() -> None:
    with session_scope() as session:
        versions = [v.version for v in list_versions(session, project.id)]
        sources = trace_sources(session, project.id)
    if not versions:
        st.info("This project has no codebook yet.")
        return
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
    mode = MODES[st.radio("Objective", list(MODES), key="t_mode", horizontal=True)]
    c1, c2, c3, c4 = st.columns(4)
    lora_r = c1.number_input("LoRA r", 1, 512, 16, key="t_lora_r")
    lora_alpha = c2.number_input("LoRA α", 1, 1024, 32, key="t_lora_alpha")
    lora_dropout = c3.number_input("LoRA dropout", 0.0, 0.9, 0.05, 0.01, key="t_lora_dropout")
    targets = c4.text_input("Target modules", "all-linear", key="t_targets")
    st.subheader("Optimiser (AdamW)")
    c1, c2, c3, c4 = st.columns(4)
    lr = c1.number_input("Learning rate", 1e-7, 1e-2, 5e-5, format="%.1e", key="t_lr")
    warmup = c2.number_input("Warm-up steps", 0, 100_000, 100, key="t_warmup")
    weight_decay = c3.number_input("Weight decay", 0.0, 1.0, 0.01, 0.01, key="t_wd")
    epochs = c4.number_input("Epochs", 0.1, 100.0, 3.0, 0.5, key="t_epochs")
    c1, c2, c3, c4 = st.columns(4)
    max_steps = c1.number_input("Max steps (0: by epochs)", 0, 10_000_000, 0, key="t_max_steps")
    batch = c2.number_input("Batch size per device", 1, 1024, 8, key="t_batch")
    accum = c3.number_input("Gradient accumulation", 1, 1024, 16, key="t_accum")
    max_length = c4.number_input("Max length (tokens)", 16, 262_144, 4096, 64, key="t_max_length",
                                 help="Rows longer than this are reported and left out, never cut.")
    packing = st.toggle("Sequence packing", key="t_packing")
    st.subheader("Validation and early stopping")
    c1, c2, c3, c4 = st.columns(4)
    eval_steps = c1.number_input("Validate every N steps", 1, 100_000, 25, key="t_eval_steps")
    patience = c2.number_input("Patience (steps)", 1, 1_000_000, 100, key="t_patience")
    val_limit = c3.number_input("Validation items (0: all)", 0, 1_000_000, 0, key="t_val_limit")
    val_tokens = c4.number_input("Validation tokens per item", 0, 32_768, 512, key="t_val_tokens")
    lam, self_tokens = 1.0, 1024
    if mode == "tract":
        c1, c2 = st.columns(2)
        lam = c1.number_input("λ (weight of the squared error)", 0.0, 100.0, 1.0, 0.1, key="t_lambda")
        self_tokens = c2.number_input("Stage 2: tokens per self-generated trace", 1, 32_768, 1024, key="t_self_tokens")
    c1, c2, c3 = st.columns(3)
    test_eval = c1.toggle("Evaluate on the test split", True, key="t_test_eval")
    test_limit = c2.number_input("Test items (0: all)", 0, 1_000_000, 0, key="t_test_limit")
    test_tokens = c3.number_input("Test tokens per item", 1, 32_768, 1024, key="t_test_tokens")
    try:
        config = TrainingConfig(
            mode=mode, source=source, sampling_run=run_choice, codebook_version=version, base_model=base,
            lora_r=int(lora_r), lora_alpha=int(lora_alpha), lora_dropout=float(lora_dropout), target_modules=targets,
            learning_rate=float(lr), warmup_steps=int(warmup), weight_decay=float(weight_decay), epochs=float(epochs),
            max_steps=int(max_steps) or None, batch_size=int(batch), grad_accum=int(accum), max_length=int(max_length),
            packing=bool(packing), eval_steps=int(eval_steps), patience=int(patience), val_limit=int(val_limit) or None,
            val_max_tokens=int(val_tokens), lambda_raft=float(lam), self_trace_max_tokens=int(self_tokens),
            evaluate_test=bool(test_eval), test_limit=int(test_limit) or None, test_max_tokens=int(test_tokens))
    except ValueError as exc:
        st.error(str(exc))
        return
    st.caption(f"Effective batch {config.effective_batch} (the paper: 128). The same run from a terminal "
               "(add `--background` to return at once):")
    st.code(cli_command(project.name, config), language="bash")
    if st.button("Start training", type="primary", key="t_start"):
        with store_busy_notice():
            run_id, job_id = launch_training(project.id, config, actor=actor)
            st.session_state["t_run"] = run_id
            st.success(f"Training run {run_id} started (job {job_id}). Follow it on the **Runs** tab.")


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
        tail = log_tail(job, 6000) if job else ""
        status, best, best_step = run.status, run.best_metric, run.best_step
    state = job.status if job else status
    st.progress(job.progress if job else 0.0,
                text=f"Job {job.id if job else '—'}: {state} · run {status} · {(job.progress_text if job else '') or ''}")
    c = st.columns(3)
    c[0].metric("Best validation τ", "—" if best is None else f"{best:.3f}", help=f"at step {best_step}")
    c[1].metric("Last loss", f"{metrics['loss'][-1][1]:.4f}" if metrics.get("loss") else "—")
    c[2].metric("Steps", metrics["loss"][-1][0] if metrics.get("loss") else 0)
    if job is not None and job.status in ("queued", "running"):
        if st.button("Stop (saves a checkpoint)", key=f"t_stop_{run_id}"):
            with store_busy_notice():
                request_cancel(job.id, actor=actor)
                st.toast("Stop requested: the current step finishes, then a checkpoint is saved.")
    elif status != "completed":
        if st.button("Resume from the last checkpoint", key=f"t_resume_{run_id}"):
            with store_busy_notice():
                resume_training(run_id, actor=actor)
    if job is not None and job.status == "failed":
        st.error(f"Job {job.id} failed: {job.error or 'see the log'}")
    c1, c2, c3 = st.columns(3)
    with c1:
        curve(metrics, {"loss": "loss", "stage1/loss": "stage 1 loss"}, "Training loss")
    with c2:
        curve(metrics, {"lr": "learning rate", "stage1/lr": "stage 1"}, "Learning rate")
    with c3:
        curve(metrics, {"val_tau": "validation τ", "stage1/val_tau": "stage 1"}, "Validation Kendall τ")
    with st.expander("Log", expanded=job is not None and job.status == "failed"):
        st.code(tail[-6000:] or "(empty)", language=None)


def runs_view() -> None:
    with session_scope() as session:
        reconcile(session)  # a run whose worker died is listed as failed, not running
        rows = run_rows(session, project.id)
    if not rows:
        st.info("No training runs yet: start one on the **New run** tab.")
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(format="%.3f") for k in
                                ("best val τ", "test τ", "base τ", "p(τ)", "test ICC", "base ICC", "p(ICC)",
                                 "test MSE", "base MSE", "p(MSE)")})
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
            {"metric": label, "adapter": row[f"test {key}"], "base": row[f"base {key}"], "p (one-sided)": row[f"p({key})"]}
            for label, key in (("Kendall τ", "τ"), ("ICC(3,1)", "ICC"), ("MSE", "MSE"))])
        st.dataframe(table, hide_index=True)
        st.caption("One-sided paired bootstrap for τ and ICC(3,1), paired t-test on squared errors (paper section 4.1).")


with new_tab:
    new_run_form()
with runs_tab:
    runs_view()
