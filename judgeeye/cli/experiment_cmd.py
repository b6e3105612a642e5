"""`judgeeye experiment`: the paper's protocol on a project as one resumable run, and its report.

    judgeeye experiment run --preset quick --project 1          # plan, then run here
    judgeeye experiment run --preset paper --project 1 --blackbox openai:MODEL@URL --background
    judgeeye experiment list / show ID / resume ID / report ID -o report.html
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from judgeeye.auth.roles import Actor
from judgeeye.cli.common import echo_table, run_here_or_background, user_errors
from judgeeye.experiments.settings import CLI_OPTIONS, PRESETS, ExperimentSettings
from judgeeye.settings_cli import engine_options, settings_options
from judgeeye.store import session_scope

if TYPE_CHECKING:
    from judgeeye.experiments.plan import Plan  # imported when a command runs (the CLI starts fast)

experiment_app = typer.Typer(help="Experiments: sample, train, refine and rate as one resumable run, with one report.",
                             no_args_is_help=True)
_ENGINE_TEXT = (" An engine as ENGINE[,field=value...]: embedded, hf:MODEL, vllm:MODEL or openai:MODEL@URL, then "
                "any of the kind's settings (e.g. openai:M@URL,max_concurrency=4).")


def _engine_help(name: str) -> str:
    return str(ExperimentSettings.model_fields[name].description) + _ENGINE_TEXT


def _settings(values: dict[str, Any], engines: dict[str, Any], sampler: str | None, blackbox: list[str] | None,
              refine_engine: str | None, sets: list[str] | None) -> ExperimentSettings:
    """The settings the options give: the preset's, the ``--set`` assignments, then the options."""
    from judgeeye.experiments.settings import apply_assignments, engine_from_text

    values = dict(values)
    preset = values.pop("preset", None)
    overrides = apply_assignments({}, sets or [])
    protocol = values.pop("protocol", None)
    if protocol:
        overrides["protocol"] = {**overrides.get("protocol", {}), **protocol}
    overrides.update(values)
    given = {"sampler": sampler, "refine_engine": refine_engine}
    overrides.update({k: engine_from_text(v, **engines) for k, v in given.items() if v})
    if blackbox:
        overrides["blackbox"] = [engine_from_text(v, **engines) for v in blackbox]
    return ExperimentSettings.from_preset(preset, **overrides)


def _print_plan(plan: Plan) -> None:
    from judgeeye.display import duration

    action = {"new": "new run", "reuse": "reuse", "resume": "resume", "done": "done"}
    echo_table([{"stage": s.title, "does": action[s.action] + (f" {s.run_id}" if s.run_id is not None else ""),
                 "items": "—" if s.items is None else s.items,
                 "tokens (at most)": "—" if s.tokens is None else f"{s.tokens:,}",
                 "time": "—" if s.seconds is None else "about " + duration(s.seconds),
                 "estimated from": s.basis if s.runs_work else ""} for s in plan.stages])
    typer.echo(plan.summary())
    for warning in plan.warnings():
        typer.echo(f"warning: {warning}")


@experiment_app.command("run")
@settings_options(ExperimentSettings, CLI_OPTIONS, dest="values", presets=PRESETS)
@engine_options("engines", spec=None, fields={"api_key_env": None})
def experiment_run(
    project: Annotated[str, typer.Option("--project", "-p", help="Project name or id.")],
    values: dict[str, Any] | None = None,
    sampler: Annotated[str | None, typer.Option(help=_engine_help("sampler"), show_default="the base model")] = None,
    blackbox: Annotated[list[str] | None, typer.Option(help=_engine_help("blackbox") + " Repeat for several.",
                                                       show_default="none")] = None,
    refine_engine: Annotated[str | None, typer.Option(help=_engine_help("refine_engine"),
                                                      show_default="the first black-box rater")] = None,
    engines: dict[str, Any] | None = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Any setting, section.field=value, e.g. sampling.k=8, training.max_steps=20, protocol.limit=50, "
                      "refine.n_rubric=20; repeat.")] = None,
    name: Annotated[str | None, typer.Option(help="A name for the experiment.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the grid and the plan; start nothing.")] = False,
    background: Annotated[bool, typer.Option(help="Run as a background job and return at once.")] = False,
) -> None:
    """Plan and run an experiment, then print its report.

    The paper's protocol: sample, fine-tune (traces, labels only, TRACT), refine, rate the test split, compare with the base.

    Runs made before with the same settings are reused. Unset options take the preset's values."""
    from judgeeye.experiments.launch import launch_experiment
    from judgeeye.experiments.plan import plan_experiment
    from judgeeye.projects import find_project

    with user_errors():
        try:
            settings = _settings(values or {}, engines or {}, sampler, blackbox, refine_engine, set_)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        with session_scope() as session:
            project_id = find_project(session, project).id
            try:
                plan = plan_experiment(session, project_id, settings)
            except (LookupError, ValueError) as exc:
                raise typer.BadParameter(str(exc)) from None
        typer.echo(f"experiment on project {project_id}, preset {settings.preset}:")
        _print_plan(plan)
        if dry_run:
            typer.echo("nothing started (--dry-run)")
            return
        experiment_id, job_id = launch_experiment(project_id, settings, actor=Actor.system(), name=name, start=False)
    _work(job_id, experiment_id, background)


def _work(job_id: int, experiment_id: int, background: bool) -> None:
    """Run the experiment's job here (then print its report) or leave it to a background worker."""
    run_here_or_background(job_id, f"experiment {experiment_id}", background=background,
                           report=lambda: _print_report(experiment_id),
                           follow=f"   ·   judgeeye experiment show {experiment_id}")


@experiment_app.command("resume")
def experiment_resume(
    experiment_id: Annotated[int, typer.Argument(help="Experiment id.")],
    background: Annotated[bool, typer.Option(help="Run as a background job and return at once.")] = False,
) -> None:
    """Continue an experiment that was stopped, failed or killed: only what is missing is done."""
    from judgeeye.experiments.launch import experiment_settings, resume_experiment
    from judgeeye.experiments.plan import plan_experiment
    from judgeeye.jobs import reconcile
    from judgeeye.store import Experiment

    with session_scope() as session:
        reconcile(session)  # a killed worker's job is failed, not running
        experiment = session.get(Experiment, experiment_id)
        if experiment is None:
            typer.echo(f"error: no experiment {experiment_id}", err=True)
            raise typer.Exit(2)
        plan = plan_experiment(session, experiment.project_id, experiment_settings(experiment),
                               experiment_id=experiment_id)
    _print_plan(plan)
    with user_errors(LookupError, RuntimeError):
        job_id = resume_experiment(experiment_id, actor=Actor.system(), start=False)
    _work(job_id, experiment_id, background)


@experiment_app.command("list")
def experiment_list(project: Annotated[str | None, typer.Option("--project", "-p", help="Only this project.")] = None) -> None:
    """Experiments, newest first."""
    from judgeeye.experiments.launch import list_experiments, stage_rows
    from judgeeye.jobs import reconcile
    from judgeeye.projects import find_project

    with user_errors(), session_scope() as session:
        reconcile(session)
        project_id = find_project(session, project).id if project else None
        rows = []
        for e in list_experiments(session, project_id):
            stages = stage_rows(session, e.id)
            rows.append({"experiment": e.id, "project": e.project_id, "name": e.name, "preset": e.preset,
                         "status": e.status, "stages done": f"{sum(s.status == 'done' for s in stages)}/{len(stages)}",
                         "reused": sum(s.reused for s in stages), "created": f"{e.created_at:%Y-%m-%d %H:%M}"})
    echo_table(rows)


def _print_report(experiment_id: int) -> None:
    from judgeeye.experiments.report import (
        build_report,
        rater_table,
        stage_table,
        text_lines,
    )
    from judgeeye.jobs import reconcile

    with session_scope() as session:
        reconcile(session)
        report = build_report(session, experiment_id)
    typer.echo(f"\nexperiment {report.experiment_id} ({report.name}) on {report.project}: {report.status}")
    echo_table(stage_table(report).to_dict("records"))
    typer.echo("")
    echo_table(rater_table(report).to_dict("records"))
    for line in text_lines(report):
        typer.echo(f"  · {line}")
    for note in report.notes:
        typer.echo(f"  ({note})")


@experiment_app.command("show")
def experiment_show(experiment_id: Annotated[int, typer.Argument(help="Experiment id.")]) -> None:
    """An experiment's stages, raters with τ/ICC(3,1)/MSE and their CIs, verdicts and costs."""
    with user_errors(LookupError):
        _print_report(experiment_id)


@experiment_app.command("report")
def experiment_report(
    experiment_id: Annotated[int, typer.Argument(help="Experiment id.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("experiment-report.html"),
) -> None:
    """Write the experiment's report as one self-contained HTML file."""
    from judgeeye.experiments.report import build_report, render_html

    with session_scope() as session, user_errors(LookupError):
        html = render_html(build_report(session, experiment_id))
    out.write_text(html, encoding="utf-8")
    typer.echo(f"wrote {out}")
