"""`judgeeye evaluate`: rate a split with one or more raters, print agreement and significance."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from judgeeye.auth.roles import Actor
from judgeeye.cli.common import echo_table, start_in_background, user_errors
from judgeeye.evaluate.raters import RaterSpec
from judgeeye.settings_cli import engine_options, settings_options
from judgeeye.store import Job, session_scope


def _f(value: float, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _ci(value: float, lo: float, hi: float) -> str:
    return f"{_f(value)} [{_f(lo)}, {_f(hi)}]"


def print_table(run_ids: list[int]) -> None:
    """τ, ICC(3,1), MSE with 95% bootstrap intervals, parse failures and n, one row per run."""
    from judgeeye.evaluate import summaries
    from judgeeye.evaluate.dashboard import list_runs
    from judgeeye.store import RaterRun

    with session_scope() as session:
        projects = {r.project_id for r in session.query(RaterRun).filter(RaterRun.id.in_(run_ids))}
        info = {r.id: r for pid in projects for r in list_runs(session, pid)}
        unknown = [r for r in run_ids if r not in info]
        if unknown:
            raise LookupError(f"no rater run(s) {unknown}; list them with: judgeeye evaluate --list")
        sums = summaries(session, run_ids)
    from judgeeye.evaluate.report import UNDEFINED, undefined_resamples
    from judgeeye.evaluate.summary import N_BOOT

    rows = []
    for run_id in run_ids:
        s, r = sums[run_id], info[run_id]
        rows.append({"run": run_id, "rater": r.key, "codebook": f"v{r.codebook_version}", "split": r.split,
                     "status": r.status, "n": s.n, "parse fail": s.parse_failures,
                     "tau [95% CI]": _ci(s.tau, s.tau_lo, s.tau_hi),
                     "ICC(3,1) [95% CI]": _ci(s.icc3, s.icc3_lo, s.icc3_hi),
                     "MSE [95% CI]": _ci(s.mse, s.mse_lo, s.mse_hi),
                     UNDEFINED: undefined_resamples(s.tau_degenerate, s.icc3_degenerate, N_BOOT)})
    if not any(row[UNDEFINED] for row in rows):
        for row in rows:
            del row[UNDEFINED]
    echo_table(rows)


def print_inter_rater(run_ids: list[int]) -> None:
    from judgeeye.evaluate import ItemMismatchError, inter_rater

    with session_scope() as session:
        try:
            icc = inter_rater(session, run_ids)
        except ItemMismatchError as exc:
            typer.echo(f"inter-rater ICC(3,1): not computed: {exc}")
            return
    typer.echo(f"inter-rater ICC(3,1) among runs {', '.join(map(str, run_ids))}: {_f(icc.icc3)} "
               f"({icc.n} items, {icc.n_excluded} excluded for a missing rating)")


def print_compare(run_a: int, run_b: int, n_boot: int) -> None:
    """The paper's tests for B against A."""
    from judgeeye.evaluate import compare_runs

    with session_scope() as session:
        comp = compare_runs(session, run_a, run_b, n_boot=n_boot)
    typer.echo(f"\nrun {run_b} (B) against run {run_a} (A) on {comp.n_items} items "
               "(one-sided, in favour of B; * p<.05 ** p<.01 *** p<.001):")
    echo_table([{"metric": r["metric"], "A": _f(r["A"]), "B": _f(r["B"]), "B-A": _f(r["B - A"]),
                 "test": r["test"], "p": _f(r["p"], 4), "sig": r["mark"],
                 "95% CI of the gain": f"[{_f(r['ci_lo'])}, {_f(r['ci_hi'])}]", "n": r["n"], "excluded": r["excluded"],
                 "undefined resamples": f"{r['degenerate']} of {n_boot}" if r["degenerate"] else ""}
                for r in comp.rows()])
    typer.echo("(for MSE the gain is MSE(A) - MSE(B): positive means B errs less)")


def list_rater_runs(project: str | None) -> None:
    from judgeeye.evaluate import summaries
    from judgeeye.evaluate.dashboard import list_runs
    from judgeeye.projects import find_project
    from judgeeye.store import Project

    with session_scope() as session:
        if project:
            pids = [find_project(session, project).id]
        else:
            pids = [p.id for p in session.query(Project).order_by(Project.id)]
        runs = [r for pid in pids for r in list_runs(session, pid)]
        sums = summaries(session, [r.id for r in runs])
    echo_table([{"run": r.id, "name": r.name, "codebook": f"v{r.codebook_version}", "split": r.split,
                 "status": r.status, "predictions": sums[r.id].n_predictions, "tau": _f(sums[r.id].tau),
                 "ICC(3,1)": _f(sums[r.id].icc3), "MSE": _f(sums[r.id].mse)} for r in runs])


#: engine options under the names a rater's keys use
RATER_ENGINE_KEYS = {"max_concurrency": "concurrency"}
#: the rater settings `judgeeye evaluate` takes as options (a rater's keys override them)
RATER_OPTIONS: dict[str, str | None] = {"readout": None, "limit": None, "max_tokens": None, "temperature": None,
                                        "top_p": None, "seed": None}


@settings_options(RaterSpec, RATER_OPTIONS, dest="settings")
@engine_options("engine", spec=None)
def evaluate(
    project: Annotated[str | None, typer.Option("--project", "-p", help="Project name or id.")] = None,
    rater: Annotated[list[str] | None, typer.Option(
        help="A rater: ENGINE[,key=value...]; ENGINE is embedded, hf:MODEL or openai:MODEL@URL; keys: codebook, "
             "readout, name, adapter, temperature, top_p, max_tokens, batch_size, concurrency, api_key_env, "
             "seed. Repeat for several raters.")] = None,
    split: Annotated[str, typer.Option(help="Split to rate: train, validation or test.")] = "test",
    codebook: Annotated[int | None, typer.Option(help="Codebook version (default: current).")] = None,
    settings: dict[str, Any] | None = None,
    engine: dict[str, Any] | None = None,
    run: Annotated[list[int] | None, typer.Option("--run", help="Include an existing rater run in the table (repeat).")] = None,
    compare: Annotated[tuple[int, int] | None, typer.Option(
        help="RUN_A RUN_B: is B better than A? Paired t-test on squared errors, one-sided bootstraps for tau and ICC.")] = None,
    resume: Annotated[int | None, typer.Option(help="Resume this rater run: rate only the items it lacks.")] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for --compare.")] = 1000,
    background: Annotated[bool, typer.Option(help="Start the runs as background jobs and return at once.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List rater runs (of --project, or all) and exit.")] = False,
) -> None:
    """Rate a split with LLM raters and print τ, ICC(3,1), MSE (95% CIs), parse failures and n."""
    from judgeeye.evaluate import parse_rater
    from judgeeye.evaluate.launch import launch_rater_run, resume_rater_run
    from judgeeye.jobs import run_job
    from judgeeye.projects import find_project

    if list_:
        with user_errors():
            list_rater_runs(project)
        return
    # the options are the raters' defaults (a rater's keys override them; parse_rater's names)
    rater_defaults = {**(settings or {}), **{RATER_ENGINE_KEYS.get(k, k): v for k, v in (engine or {}).items()}}
    run_ids: list[int] = list(run or [])
    job_ids: list[int] = []
    with user_errors():
        if resume is not None:
            try:
                job_ids.append(resume_rater_run(resume, actor=Actor.system(), start=False))
            except (LookupError, RuntimeError) as exc:
                raise typer.BadParameter(str(exc)) from None
            run_ids.append(resume)
        if rater:
            if not project:
                raise typer.BadParameter("--project is required with --rater")
            with session_scope() as session:
                project_id = find_project(session, project).id
            specs = []
            for text in rater:
                try:
                    specs.append(parse_rater(text, codebook=codebook, **rater_defaults))
                except ValueError as exc:
                    raise typer.BadParameter(str(exc)) from None
            for spec, version, name in specs:
                try:
                    run_id, job_id = launch_rater_run(project_id, spec, split=split, codebook_version=version,
                                                      name=name, actor=Actor.system(), start=False)
                except (LookupError, ValueError) as exc:
                    raise typer.BadParameter(str(exc)) from None
                run_ids.append(run_id)
                job_ids.append(job_id)
    if not run_ids and not compare:
        raise typer.BadParameter("give --rater (new runs), --run/--compare (existing runs), --resume or --list")
    failed = False
    for run_id, job_id in zip(run_ids[len(run_ids) - len(job_ids):], job_ids):
        with session_scope() as session:
            log_path = session.get_one(Job, job_id).log_path
        if background:
            typer.echo(f"rater run {run_id}: job {job_id} {start_in_background(job_id)}; log {log_path}")
        else:
            typer.echo(f"rater run {run_id} (job {job_id})")
            failed |= run_job(job_id) != "succeeded"
    if background:
        typer.echo("follow them with: judgeeye jobs list; the table: judgeeye evaluate --list")
        return
    shown = list(dict.fromkeys(run_ids + (list(compare) if compare else [])))
    with user_errors(LookupError, ValueError):  # ItemMismatchError among them
        print_table(shown)
        if len(shown) >= 2:
            print_inter_rater(shown)
        if compare:
            print_compare(compare[0], compare[1], n_boot)
    if failed:
        raise typer.Exit(1)
