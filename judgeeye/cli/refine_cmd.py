"""`judgeeye refine`: refine a codebook from traces; `refine show JOB`; `refine compare`."""

from __future__ import annotations

import math
from typing import Annotated, Any, Optional

import typer

from judgeeye.cli.common import echo_table, start_in_background, user_errors
from judgeeye.evaluate.raters import RaterSpec
from judgeeye.refine.settings import RefineSettings
from judgeeye.settings_cli import ENGINE_FIELDS, ENGINE_SPEC_HELP, engine_config, engine_options, settings_options
from judgeeye.store import Job, session_scope

refine_app = typer.Typer(
    help="Refine a codebook from inferred traces (instructions, rubric or both) and measure the result.",
    invoke_without_command=True,
)


def _f(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


#: the refinement settings `judgeeye refine` takes, under their option names (None: --field-name)
REFINE_OPTIONS: dict[str, str | None] = {
    "mode": None, "codebook_version": "--codebook", "n_inst": None, "n_rubric": None, "clusters": None, "k_max": None,
    "per_cluster": None, "embedder": None, "projection": None, "splits": "--split", "runs": "--run",
    "temperature": None, "top_p": None, "max_tokens": None, "critique_max_tokens": None, "attempts": None,
    "prefill": None, "trace_chars": None, "seed": None, "make_current": None, "author": None, "note": None,
}
#: the engine options of the refining model (it takes no adapter)
REFINE_ENGINE = {name: option for name, option in ENGINE_FIELDS.items() if name != "adapter"}


@refine_app.callback()
@settings_options(RefineSettings, REFINE_OPTIONS, dest="values")
@engine_options("engine", fields=REFINE_ENGINE)
def refine(
    ctx: typer.Context,
    project: Annotated[Optional[str], typer.Option("--project", "-p", help="Project name or id.")] = None,
    engine: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    resume: Annotated[Optional[int], typer.Option(help="Resume this failed or cancelled refinement job.")] = None,
    background: Annotated[bool, typer.Option(help="Run as a background job and return at once.")] = False,
) -> None:
    """Refine the codebook: `judgeeye refine --project P --mode both`."""
    if ctx.invoked_subcommand:
        return
    from judgeeye.auth import Actor
    from judgeeye.jobs import run_job
    from judgeeye.projects import find_project
    from judgeeye.refine.runner import launch_refinement, resume_refinement, version_of_job

    with user_errors():
        if resume is not None:
            try:
                job_id = resume_refinement(resume, actor=Actor.system(), start=False)
            except (LookupError, RuntimeError) as exc:
                raise typer.BadParameter(str(exc)) from None
        else:
            if not project:
                raise typer.BadParameter("--project is required (or --resume JOB)")
            try:
                settings = RefineSettings(engine=engine_config(engine or {}), **(values or {}))
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from None
            with session_scope() as session:
                project_id = find_project(session, project).id
            try:
                job_id = launch_refinement(project_id, settings, actor=Actor.system(), start=False)
            except (LookupError, ValueError) as exc:
                raise typer.BadParameter(str(exc)) from None
    with session_scope() as session:
        job = session.get(Job, job_id)
        log_path, project_id = job.log_path, job.project_id
    if background:
        typer.echo(f"refinement job {job_id} {start_in_background(job_id)}; log {log_path}")
        typer.echo(f"follow it with: judgeeye jobs show {job_id}")
        return
    typer.echo(f"refinement job {job_id}")
    status = run_job(job_id)
    with session_scope() as session:
        job = session.get(Job, job_id)
        row = version_of_job(session, project_id, job_id)
        error = job.error
        version = None if row is None else (row.version, row.origin, row.parent_id)
    if status != "succeeded" or version is None:
        typer.echo(f"error: refinement {status}: {error or 'see the log ' + str(log_path)}", err=True)
        typer.echo(f"resume it with: judgeeye refine --resume {job_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"wrote codebook version {version[0]} ({version[1]}); "
               f"see it with: judgeeye codebook show --project {project_id} --version {version[0]}")
    _show(job_id)


def _show(job_id: int) -> None:
    from judgeeye.refine.runner import version_of_job

    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.kind != "refine":
            raise typer.BadParameter(f"no refinement job {job_id}")
        row = version_of_job(session, job.project_id, job_id)
        record = ((row.inputs or {}).get("refinement") if row is not None else None) or {}
    typer.echo(f"job {job_id}: {job.status}" + (f", wrote version {row.version}" if row is not None else ""))
    clusters = ((record.get("rubric") or {}).get("clusters") or {}).get("levels") or {}
    rows = []
    for level, info in clusters.items():
        for c in sorted(info["clusters"], key=lambda c: -c["size"]):
            rows.append({"level": level, "k": info["k"], "chosen by": info["chosen_by"],
                         "silhouette": _f(info.get("silhouette")), "cluster": c["cluster"], "size": c["size"],
                         "representative": " | ".join(c["representatives"])[:100]})
    if rows:
        echo_table(rows)


@refine_app.command("show")
def show(job_id: Annotated[int, typer.Argument(help="Refinement job id.")]) -> None:
    """A refinement's clusters, representatives and the version it wrote."""
    with user_errors():
        _show(job_id)


@refine_app.command("compare")
@settings_options(RaterSpec, {"limit": None, "max_tokens": None}, dest="rating")
def compare(
    project: Annotated[str, typer.Option("--project", "-p", help="Project name or id.")],
    a: Annotated[int, typer.Option("--a", help="Codebook version A (e.g. the original).")],
    b: Annotated[int, typer.Option("--b", help="Codebook version B (e.g. the refined one).")],
    rater: Annotated[list[str], typer.Option(
        help="A rater ENGINE[,key=value...] as for judgeeye evaluate (repeat: M raters).")],
    split: Annotated[str, typer.Option(help="Split to rate (the held-out test split by default).")] = "test",
    rating: dict[str, Any] | None = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for inter-rater ICC.")] = 1000,
    background: Annotated[bool, typer.Option(help="Start the missing rater runs as jobs and return.")] = False,
) -> None:
    """Codebook A vs B as prompts for M raters: per-rater τ/ICC/MSE, inter-rater ICC, paired tests."""
    from judgeeye.auth import Actor
    from judgeeye.evaluate import parse_rater
    from judgeeye.projects import find_project
    from judgeeye.refine.compare import (
        compare_versions,
        incomplete_runs,
        launch_incomplete,
        plan_comparison,
        rate_inline,
    )

    with user_errors():
        specs = []
        for text in rater:
            try:
                spec, _version, _name = parse_rater(text, **(rating or {}))
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from None
            specs.append(spec)
        with session_scope() as session:
            project_id = find_project(session, project).id
            try:
                plan = plan_comparison(session, project_id, a, b, specs, actor=Actor.system(), split=split)
            except (LookupError, ValueError) as exc:
                raise typer.BadParameter(str(exc)) from None
            pending = incomplete_runs(session, plan)
    if pending and background:
        jobs = launch_incomplete(pending, actor=Actor.system())
        typer.echo(f"rating runs {pending} in background jobs {jobs}; run this command again when they finish")
        return
    if pending:
        statuses = rate_inline(pending, log=typer.echo)
        failed = [r for r, s in statuses.items() if s != "completed"]
        if failed:
            typer.echo(f"error: rater run(s) {failed} did not complete; resume with judgeeye evaluate --resume RUN",
                       err=True)
            raise typer.Exit(1)
    with session_scope() as session:
        result = compare_versions(session, plan, n_boot=n_boot)
    typer.echo(f"codebook v{a} (A) against v{b} (B) on the {split} split, {result.group.n_items} items, "
               f"{len(specs)} rater(s)")
    echo_table([{k: _f(v) for k, v in row.items()} for row in result.per_rater()])
    typer.echo("\none-sided tests in favour of B (τ, ICC higher; MSE lower): paired t-test across raters; "
               "inter-rater ICC: paired bootstrap")
    echo_table([{k: _f(v, 4 if k == "p" else 3) for k, v in row.items()} for row in result.tests()])
    for line in result.group.notes:
        typer.echo(f"note: {line}")


@refine_app.command("feedback")
@engine_options("reviser", fields={"api_key_env": None},
                spec_help="The model that writes the revision: " + ENGINE_SPEC_HELP)
def feedback(
    project: Annotated[str, typer.Option("--project", "-p", help="Project name or id.")],
    version: Annotated[int, typer.Option("--version", "-v", help="The codebook version to revise.")],
    rater: Annotated[str, typer.Option(help="The rater ENGINE[,key=value...] that rates the validation split.")] = "embedded",
    reviser: dict[str, Any] | None = None,
    max_cases: Annotated[int, typer.Option(help="Disagreements shown to the reviser (largest errors first).")] = 20,
    attempts: Annotated[int, typer.Option(help="Answers tried before the revision is reported as failed.")] = 3,
    max_tokens: Annotated[int, typer.Option(help="Tokens for the revised codebook.")] = 2048,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """One revision from validation disagreements, kept only if validation τ improves (test split untouched)."""
    from judgeeye.auth import Actor
    from judgeeye.evaluate import parse_rater
    from judgeeye.projects import find_project
    from judgeeye.refine.feedback import feedback_round
    from judgeeye.refine.llm import RefinementError

    with user_errors():
        try:
            spec, _version, _name = parse_rater(rater)
            reviser_config = engine_config(reviser or {})
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        with session_scope() as session:
            project_id = find_project(session, project).id
        try:
            result = feedback_round(project_id, version, spec, reviser_config, actor=Actor.system(), max_cases=max_cases,
                                    attempts=attempts,
                                    max_tokens=max_tokens, seed=seed, log=typer.echo)
        except (RefinementError, RuntimeError, ValueError, LookupError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    verdict = "kept" if result.accepted else "not kept (validation τ did not improve)"
    typer.echo(f"v{result.candidate_version} from v{result.base_version} ({result.cases} disagreements): "
               f"validation τ {_f(result.tau_base)} → {_f(result.tau_candidate)}; {verdict}")
