"""`judgeeye train`: fine-tune a rater (SFT, labels only, TRACT); `train list/show/export`.

Under ``accelerate launch --num_processes N -m judgeeye.cli train ...`` every process runs this
command: the main process creates the run and its job and broadcasts their ids; all train, the
main process alone writes to the store, rates validation and test items.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import select

from judgeeye.auth.roles import Actor
from judgeeye.cli.common import echo_table, run_here_or_background, user_errors
from judgeeye.settings_cli import settings_options
from judgeeye.store import TrainingRun, session_scope
from judgeeye.training.config import CLI_FLAGS, CLI_OPTIONS, PRESETS, TrainingConfig

train_app = typer.Typer(help="Fine-tune raters with LoRA: SFT on traces, labels only, TRACT.",
                        invoke_without_command=True)


def _world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


#: the config fields `judgeeye train` takes, under their option names (training.config.CLI_OPTIONS)
TRAIN_OPTIONS: dict[str, str | None] = {
    **{path: option for option, path in CLI_OPTIONS.items()},
    **{name: f"{on}/{off}" for name, (on, off) in CLI_FLAGS.items()},
}


@train_app.callback()
@settings_options(TrainingConfig, TRAIN_OPTIONS, dest="values", presets=PRESETS)
def train(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", "-p", help="Project name or id.")] = None,
    values: dict[str, Any] | None = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan (rows, optimizer steps, warm-up, validations) as JSON and start nothing; "
                          "exit status 2 when the plan is refused.")] = False,
    resume: Annotated[int | None, typer.Option(help="Continue this training run from its last checkpoint.")] = None,
    background: Annotated[bool, typer.Option(help="Run as a background job and return at once.")] = False,
) -> None:
    """Fine-tune a rater on the project's reasoning dataset; then evaluate it on the test split.
    Unset options take the preset's values (paper, the default, or tract)."""
    if ctx.invoked_subcommand:
        return
    from judgeeye.projects import find_project
    from judgeeye.training.launch import launch_training, resume_training
    from judgeeye.training.plan import PlanRefused, plan_training

    world = _world()
    if world > 1 and background:
        raise typer.BadParameter("--background cannot be combined with accelerate launch")
    main = True
    if world > 1:
        from accelerate import PartialState

        main = PartialState().is_main_process
    ids: list[int | None] = [None, None]
    with user_errors(PlanRefused):
        if main:
            if resume is not None:
                try:
                    ids = [resume, resume_training(resume, actor=Actor.system(), start=False)]
                except (LookupError, RuntimeError) as exc:
                    raise typer.BadParameter(str(exc)) from None
            else:
                if not project:
                    raise typer.BadParameter("--project is required (or --resume RUN)")
                given = dict(values or {})
                try:
                    config = TrainingConfig.from_preset(given.pop("preset", "paper"), **given)
                except ValueError as exc:
                    raise typer.BadParameter(str(exc)) from None
                with session_scope() as session:
                    project_id = find_project(session, project).id
                    if dry_run:
                        plan = plan_training(session, project_id, config)
                if dry_run:
                    typer.echo(json.dumps(plan.to_dict(), indent=2, ensure_ascii=False))
                    if plan.refused and not config.force:
                        typer.echo("error: the training plan is refused: " + "; ".join(plan.problems()), err=True)
                        raise typer.Exit(2)
                    return
                try:
                    ids = list(launch_training(project_id, config, actor=Actor.system(), start=False))
                except LookupError as exc:
                    raise typer.BadParameter(str(exc)) from None
    if world > 1:
        from accelerate.utils import broadcast_object_list

        ids = broadcast_object_list(ids)
    first, second = ids
    assert first is not None and second is not None  # set above, or received from the main process
    run_id, job_id = int(first), int(second)
    if not main:  # the other processes of an accelerate launch: train, write nothing
        from judgeeye.training.runner import execute_training

        execute_training(run_id)
        return
    run_here_or_background(job_id, f"training run {run_id}", background=background,
                           report=lambda: _print_run(run_id), follow=f"   ·   judgeeye train show {run_id}")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


@train_app.command("list")
def train_list(project: Annotated[str | None, typer.Option("--project", "-p", help="Only this project.")] = None) -> None:
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
    from judgeeye.training.launch import metrics_of, run_dir, run_plans, tau_text, test_results

    with session_scope() as session:
        run = session.get(TrainingRun, run_id)
        if run is None:
            typer.echo(f"error: no training run {run_id}", err=True)
            raise typer.Exit(2)
        cfg = TrainingConfig.model_validate(run.config)
        metrics = metrics_of(session, run_id)
        test = test_results(session, run_id)
        status, adapter, best, best_step = run.status, run.adapter_path, run.best_metric, run.best_step
    typer.echo(f"training run {run_id}: {status}; mode {cfg.mode}, preset {cfg.preset}, base {cfg.base_model}, "
               f"LoRA r={cfg.lora_r} α={cfg.lora_alpha}, lr {cfg.learning_rate:g} ({cfg.lr_scheduler}), "
               f"batch {cfg.effective_batch}")
    for plan in run_plans(run_id):
        rows = f"{plan.rows} {'sequences' if cfg.packing else 'rows'}"
        typer.echo(f"  plan ({plan.stage}): {rows}, {plan.optimizer_steps} optimizer steps at most "
                   f"({plan.steps_per_epoch} per epoch), warm-up {plan.warmup_steps}, {plan.evaluations} validations "
                   f"every {plan.eval_steps} steps, patience {plan.patience} steps")
    typer.echo(f"  adapter: {adapter or '—'}   (folder {run_dir(run_id)})")
    val: dict[str, dict[int | None, float]] = {name: dict(points) for name, points in metrics.items()}
    shown = tau_text(best, val.get("val_n", {}).get(best_step), val.get("val_parse_failures", {}).get(best_step))
    typer.echo(f"  best validation τ {shown} at step {best_step if best_step is not None else '—'}")
    for name in ("loss", "ce", "raft_mse", "lr", "val_tau", "stage1/loss", "stage1/raft_mse", "stage1/val_tau"):
        if name in metrics:
            step, value = metrics[name][-1]
            typer.echo(f"  {name}: {len(metrics[name])} points, last {value:.4g} at step {step}")
    if test:
        typer.echo(f"  test ({int(test.get('test_items', test.get('test_n', 0)))} items), adapter vs base:")
        typer.echo(f"    {'Kendall τ':10} {tau_text(test.get('test_tau'), test.get('test_n'), test.get('test_parse_failures'))}"
                   f" vs {tau_text(test.get('base_tau'), test.get('base_n'), test.get('base_parse_failures'))}"
                   f"   p = {_fmt(test.get('p_tau'), 4)}")
        for m, label in (("icc3", "ICC(3,1)"), ("mse", "MSE")):
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
