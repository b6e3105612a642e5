"""`judgeeye train`: fine-tune a rater (SFT, labels only, TRACT); `train list/show/export`.

Under ``accelerate launch --num_processes N -m judgeeye.cli train ...`` every process runs this
command: the main process creates the run and its job and broadcasts their ids; all train, the
main process alone writes to the store, rates validation and test items.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from sqlalchemy import select

from judgeeye.auth.roles import Actor
from judgeeye.cli.common import echo_table, run_here_or_background, user_errors
from judgeeye.store import TrainingRun, session_scope

train_app = typer.Typer(help="Fine-tune raters with LoRA: SFT on traces, labels only, TRACT.",
                        invoke_without_command=True)


def _world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@train_app.callback()
def train(
    ctx: typer.Context,
    project: Annotated[Optional[str], typer.Option("--project", "-p", help="Project name or id.")] = None,
    base: Annotated[str, typer.Option("--base", help="embedded, a Hugging Face id, a model directory or a .gguf file.")] = "embedded",
    mode: Annotated[str, typer.Option(help="sft (trace + rating), labels-only (rating only), tract (CoT-RAFT, two stages).")] = "sft",
    source: Annotated[str, typer.Option(help="Traces: auto, review (the review export), candidates (first accepted per item).")] = "auto",
    sampling_run: Annotated[Optional[int], typer.Option(help="Candidates of this sampling run (default: the latest).")] = None,
    codebook: Annotated[Optional[int], typer.Option(help="Codebook version for the prompts (default: the traces').")] = None,
    train_limit: Annotated[Optional[int], typer.Option(help="Only the first N training rows.")] = None,
    max_length: Annotated[int, typer.Option(help="Prompt + completion tokens; longer rows are left out.")] = 4096,
    packing: Annotated[bool, typer.Option("--packing/--no-packing", help="Pack rows into max_length sequences.")] = False,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.")] = 32,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = 0.05,
    target_modules: Annotated[str, typer.Option(help="all-linear, or names such as q_proj,v_proj.")] = "all-linear",
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = 5e-5,
    warmup_steps: Annotated[int, typer.Option(help="Linear warm-up steps.")] = 100,
    weight_decay: Annotated[float, typer.Option()] = 0.01,
    epochs: Annotated[float, typer.Option(help="Epochs (unless --max-steps).")] = 3.0,
    max_steps: Annotated[Optional[int], typer.Option(help="Optimiser steps (overrides --epochs).")] = None,
    batch_size: Annotated[int, typer.Option(help="Rows per device and step.")] = 8,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 16,
    seed: Annotated[int, typer.Option()] = 42,
    eval_steps: Annotated[int, typer.Option(help="Validation τ every N steps.")] = 25,
    patience: Annotated[int, typer.Option(help="Early stopping: steps without a better validation τ.")] = 100,
    val_limit: Annotated[Optional[int], typer.Option(help="Only the first N validation items.")] = None,
    val_max_tokens: Annotated[int, typer.Option(help="Tokens generated per validation item (0: read the rating at once).")] = 512,
    val_readout: Annotated[str, typer.Option(help="auto, parsed, argmax, expected.")] = "auto",
    lambda_: Annotated[float, typer.Option("--lambda", help="TRACT: weight of the squared-error term.")] = 1.0,
    self_trace_max_tokens: Annotated[int, typer.Option(help="TRACT stage 2: tokens per self-generated trace.")] = 1024,
    test_eval: Annotated[bool, typer.Option("--test-eval/--no-test-eval", help="Evaluate adapter and base on the test split.")] = True,
    test_limit: Annotated[Optional[int], typer.Option(help="Only the first N test items.")] = None,
    test_max_tokens: Annotated[int, typer.Option(help="Tokens per test rating.")] = 1024,
    test_readout: Annotated[str, typer.Option(help="auto, parsed, argmax, expected.")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16.")] = "auto",
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing")] = False,
    resume: Annotated[Optional[int], typer.Option(help="Continue this training run from its last checkpoint.")] = None,
    background: Annotated[bool, typer.Option(help="Run as a background job and return at once.")] = False,
) -> None:
    """Fine-tune a rater on the project's reasoning dataset; then evaluate it on the test split."""
    if ctx.invoked_subcommand:
        return
    from judgeeye.projects import find_project
    from judgeeye.training import TrainingConfig
    from judgeeye.training.launch import launch_training, resume_training

    world = _world()
    if world > 1 and background:
        raise typer.BadParameter("--background cannot be combined with accelerate launch")
    main = True
    if world > 1:
        from accelerate import PartialState

        main = PartialState().is_main_process
    ids: list[int | None] = [None, None]
    with user_errors():
        if main:
            if resume is not None:
                try:
                    ids = [resume, resume_training(resume, actor=Actor.system(), start=False)]
                except (LookupError, RuntimeError) as exc:
                    raise typer.BadParameter(str(exc)) from None
            else:
                if not project:
                    raise typer.BadParameter("--project is required (or --resume RUN)")
                try:
                    config = TrainingConfig(
                        base_model=base, mode=mode.replace("-", "_"), source=source, sampling_run=sampling_run,
                        codebook_version=codebook, train_limit=train_limit, max_length=max_length, packing=packing,
                        lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=target_modules,
                        learning_rate=lr, warmup_steps=warmup_steps, weight_decay=weight_decay, epochs=epochs,
                        max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, seed=seed,
                        eval_steps=eval_steps, patience=patience, val_limit=val_limit, val_max_tokens=val_max_tokens,
                        val_readout=val_readout, lambda_raft=lambda_, self_trace_max_tokens=self_trace_max_tokens,
                        evaluate_test=test_eval, test_limit=test_limit, test_max_tokens=test_max_tokens,
                        test_readout=test_readout, device=device, dtype=dtype,
                        gradient_checkpointing=gradient_checkpointing)
                except ValueError as exc:
                    raise typer.BadParameter(str(exc)) from None
                with session_scope() as session:
                    project_id = find_project(session, project).id
                try:
                    ids = list(launch_training(project_id, config, actor=Actor.system(), start=False))
                except LookupError as exc:
                    raise typer.BadParameter(str(exc)) from None
    if world > 1:
        from accelerate.utils import broadcast_object_list

        ids = broadcast_object_list(ids)
    run_id, job_id = int(ids[0]), int(ids[1])
    if not main:  # the other processes of an accelerate launch: train, write nothing
        from judgeeye.training.runner import execute_training

        execute_training(run_id)
        return
    status = run_here_or_background(job_id, f"training run {run_id}", background=background,
                                    follow=f"   ·   judgeeye train show {run_id}")
    if status is None:
        return
    _print_run(run_id)
    if status != "succeeded":
        raise typer.Exit(1)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


@train_app.command("list")
def train_list(project: Annotated[Optional[str], typer.Option("--project", "-p", help="Only this project.")] = None) -> None:
    """Training runs with their best validation τ and test metrics."""
    from judgeeye.projects import find_project
    from judgeeye.training import TrainingConfig
    from judgeeye.training.launch import test_results

    with user_errors(), session_scope() as session:
        stmt = select(TrainingRun).order_by(TrainingRun.id)
        if project:
            stmt = stmt.where(TrainingRun.project_id == find_project(session, project).id)
        rows = []
        for run in session.scalars(stmt).all():
            cfg = TrainingConfig.model_validate(run.config)
            test = test_results(session, run.id)
            rows.append({"run": run.id, "project": run.project_id, "mode": cfg.mode, "base": cfg.base_model,
                         "status": run.status, "best val τ": _fmt(run.best_metric), "best step": run.best_step,
                         "test τ": _fmt(test.get("test_tau")), "base τ": _fmt(test.get("base_tau")),
                         "test ICC": _fmt(test.get("test_icc3")), "test MSE": _fmt(test.get("test_mse")),
                         "p(τ)": _fmt(test.get("p_tau"))})
    echo_table(rows)


def _print_run(run_id: int) -> None:
    from judgeeye.training import TrainingConfig
    from judgeeye.training.launch import metrics_of, run_dir, test_results

    with session_scope() as session:
        run = session.get(TrainingRun, run_id)
        if run is None:
            typer.echo(f"error: no training run {run_id}", err=True)
            raise typer.Exit(2)
        cfg = TrainingConfig.model_validate(run.config)
        metrics = metrics_of(session, run_id)
        test = test_results(session, run_id)
        status, adapter, best, best_step = run.status, run.adapter_path, run.best_metric, run.best_step
    typer.echo(f"training run {run_id}: {status}; mode {cfg.mode}, base {cfg.base_model}, "
               f"LoRA r={cfg.lora_r} α={cfg.lora_alpha}, lr {cfg.learning_rate:g}, batch {cfg.effective_batch}")
    typer.echo(f"  adapter: {adapter or '—'}   (folder {run_dir(run_id)})")
    typer.echo(f"  best validation τ {_fmt(best)} at step {best_step if best_step is not None else '—'}")
    for name in ("loss", "lr", "val_tau", "stage1/loss", "stage1/val_tau"):
        if name in metrics:
            step, value = metrics[name][-1]
            typer.echo(f"  {name}: {len(metrics[name])} points, last {value:.4g} at step {step}")
    if test:
        typer.echo(f"  test ({int(test.get('test_n', 0))} items), adapter vs base:")
        for m, label in (("tau", "Kendall τ"), ("icc3", "ICC(3,1)"), ("mse", "MSE")):
            typer.echo(f"    {label:10} {_fmt(test.get(f'test_{m}'))} vs {_fmt(test.get(f'base_{m}'))}"
                       f"   p = {_fmt(test.get(f'p_{m}'), 4)}")


@train_app.command("show")
def train_show(run_id: Annotated[int, typer.Argument(help="Training run id.")]) -> None:
    """A run's settings, curves so far, best validation τ and test comparison with the base model."""
    _print_run(run_id)


@train_app.command("export")
def train_export(
    run_id: Annotated[int, typer.Argument(help="Training run id.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")],
    merge: Annotated[bool, typer.Option(help="Merge the adapter into the base model (a plain model folder).")] = False,
    dtype: Annotated[str, typer.Option(help="Merged weights: auto (float32), bfloat16, float16.")] = "auto",
) -> None:
    """Copy a run's adapter, or merge it into its base model, to a folder."""
    from judgeeye.training.export import install_adapter, merge_and_export, read_metadata

    with session_scope() as session:
        run = session.get(TrainingRun, run_id)
        adapter = run.adapter_path if run is not None else None
    if not adapter or not Path(adapter).is_dir():
        typer.echo(f"error: training run {run_id} has no adapter yet", err=True)
        raise typer.Exit(2)
    with user_errors():
        if merge:
            merge_and_export(adapter, out, dtype=dtype)
            typer.echo(f"merged model written to {out} (use it as --engine hf:{out})")
        else:
            install_adapter(adapter, out, **read_metadata(adapter))
            base = read_metadata(out).get("base_model", "embedded")
            typer.echo(f"adapter written to {out} (use it as --engine {base if base == 'embedded' else 'hf:' + base} "
                       f"--adapter {out})")
