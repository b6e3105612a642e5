"""`judgeeye sample`, `judgeeye runs [show RUN]`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer
from sqlalchemy import select

from judgeeye.auth.roles import Actor
from judgeeye.cli.common import echo_table, run_here_or_background, user_errors
from judgeeye.store import SamplingRun, session_scope

if TYPE_CHECKING:  # pragma: no cover
    from judgeeye.engines import EngineConfig
    from judgeeye.sampling import SamplingSettings

runs_app = typer.Typer(help="Sampling runs and their statistics.", invoke_without_command=True)


def _parse_adaptive(text: str | None) -> tuple[int | None, int]:
    if not text:
        return None, 1
    try:
        r, m = (int(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--adaptive takes ROUND,ACCEPTED, e.g. 4,1; got {text!r}") from None
    return r, m


def sample(
    project: Annotated[Optional[str], typer.Option("--project", "-p", help="Project name or id.")] = None,
    codebook: Annotated[Optional[int], typer.Option(help="Codebook version (default: current).")] = None,
    engine: Annotated[str, typer.Option(help="embedded · hf:MODEL (HF id, directory or .gguf) · openai:MODEL@BASE_URL")] = "embedded",
    api_key_env: Annotated[Optional[str], typer.Option(help="openai: NAME of the environment variable with the API key.")] = None,
    adapter: Annotated[Optional[str], typer.Option(help="transformers: a PEFT adapter directory.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="transformers: sequences per batch.")] = None,
    concurrency: Annotated[Optional[int], typer.Option(help="openai: requests in flight.")] = None,
    k: Annotated[int, typer.Option(help="Candidates per item.")] = 16,
    temperature: Annotated[float, typer.Option()] = 1.0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    max_tokens: Annotated[int, typer.Option(help="Tokens per candidate.")] = 512,
    split: Annotated[Optional[list[str]], typer.Option(help="Split(s) to sample (repeat); default train.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N items.")] = None,
    adaptive: Annotated[Optional[str], typer.Option(help="ROUND,ACCEPTED: sample in rounds, stop an item at ACCEPTED accepted candidates.")] = None,
    targets: Annotated[str, typer.Option(help="gold, or annotators (also each annotator's own rating).")] = "gold",
    no_readout: Annotated[bool, typer.Option(help="Skip the score-token read-out after each trace.")] = False,
    post_hoc: Annotated[bool, typer.Option(help="Post hoc explanations: explain the gold label, strip it, keep what a verifier re-derives.")] = False,
    verifier: Annotated[Optional[str], typer.Option(help="Post hoc: the verifying engine (default: the same engine).")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    resume: Annotated[Optional[int], typer.Option(help="Resume this run: sample only what is missing.")] = None,
    background: Annotated[bool, typer.Option(help="Run as a background job and return at once.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Estimate tokens and time on this machine and stop; no run is created.")] = False,
) -> None:
    """Rejection sampling: k candidate traces per item, accepted when the rating equals the label."""
    from judgeeye.engines import EngineConfig
    from judgeeye.projects import find_project
    from judgeeye.sampling import SamplingSettings
    from judgeeye.sampling.launch import launch_run, resume_run

    with user_errors():
        if resume is not None:
            try:
                job_id, run_id = resume_run(resume, actor=Actor.system(), start=False), resume
            except (LookupError, RuntimeError) as exc:
                raise typer.BadParameter(str(exc)) from None
        else:
            if not project:
                raise typer.BadParameter("--project is required (or --resume RUN)")
            try:
                config = EngineConfig.parse(engine, api_key_env=api_key_env, adapter=adapter,
                                            batch_size=batch_size, max_concurrency=concurrency)
                round_size, target = _parse_adaptive(adaptive)
                settings = SamplingSettings(
                    k=k, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                    splits=split or ["train"], limit=limit, round_size=round_size,
                    target_accepted=target, targets=targets, readout=not no_readout, seed=seed,
                    mode="post_hoc" if post_hoc else "rejection",
                    verifier=EngineConfig.parse(verifier) if verifier else None,
                )
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from None
            with session_scope() as session:
                project_id = find_project(session, project).id
            if dry_run:
                _print_estimate(project_id, config, settings, codebook)
                return
            try:
                run_id, job_id = launch_run(project_id, config, settings, codebook, actor=Actor.system(), start=False)
            except LookupError as exc:
                raise typer.BadParameter(str(exc)) from None
    status = run_here_or_background(job_id, f"run {run_id}", background=background)
    if status is None:
        return
    _print_run(run_id)
    if status != "succeeded":
        raise typer.Exit(1)


def _print_estimate(project_id: int, config: EngineConfig, settings: SamplingSettings,
                    codebook: int | None) -> None:
    """--dry-run: the estimate of judgeeye.sampling.estimate (calibrating first if need be)."""
    from judgeeye.sampling.estimate import estimate_or_calibrate

    try:
        est = estimate_or_calibrate(project_id, config, settings, codebook)
    except LookupError as exc:
        raise typer.BadParameter(str(exc)) from None
    except RuntimeError as exc:  # the engine could not be built or measured (EngineError too)
        typer.echo(f"error: could not measure {config.label()} on this machine: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{est.items} items, about {est.candidates:.0f} candidates "
               f"(at most {est.max_candidates}), engine {config.label()}")
    typer.echo(est.text())
    if est.throughput is not None:
        t = est.throughput
        prefill = f", prefill {t.prefill_tok_s:.0f} prompt tokens/s" if t.prefill_tok_s else ""
        typer.echo(f"  speed {t.describe()}: decode {t.decode_tok_s:.1f} tokens/s{prefill}, "
                   f"start-up {t.startup_s:.0f} s")
    typer.echo("nothing was started (--dry-run)")


@runs_app.callback()
def runs_list(
    ctx: typer.Context,
    project: Annotated[Optional[str], typer.Option("--project", "-p", help="Only this project.")] = None,
) -> None:
    """List sampling runs."""
    if ctx.invoked_subcommand:
        return
    from judgeeye.engines import EngineConfig
    from judgeeye.projects import find_project
    from judgeeye.sampling import run_stats

    with user_errors(), session_scope() as session:
        stmt = select(SamplingRun).order_by(SamplingRun.id)
        if project:
            stmt = stmt.where(SamplingRun.project_id == find_project(session, project).id)
        rows = []
        for run in session.scalars(stmt).all():
            st = run_stats(session, run.id)
            rows.append({
                "run": run.id, "project": run.project_id, "engine": EngineConfig.model_validate(run.engine).label(),
                "k": run.k, "status": run.status, "items": st.n_items, "candidates": st.n_candidates,
                "accepted": st.n_accepted, "items ok": st.items_with_accepted,
                "parse fail": st.parse_failures, "created": run.created_at.strftime("%Y-%m-%d %H:%M"),
            })
    echo_table(rows)


def _print_run(run_id: int) -> None:
    from judgeeye.sampling import run_stats

    with session_scope() as session:
        run = session.get(SamplingRun, run_id)
        if run is None:
            raise typer.BadParameter(f"no sampling run {run_id}")
        st = run_stats(session, run_id)
    typer.echo(f"run {run_id}: {st.status}; k={st.k}{' (adaptive)' if st.adaptive else ''}")
    typer.echo(f"  items {st.n_items}, candidates {st.n_candidates}, accepted {st.n_accepted} "
               f"({st.acceptance_rate:.1%}), items with an accepted trace {st.items_with_accepted}")
    typer.echo(f"  parse failures {st.parse_failures} (rated by the score read-out instead: {st.readout_ratings})")
    typer.echo(f"  tokens: prompt {st.prompt_tokens}, completion {st.completion_tokens} "
               f"({st.tokens_per_candidate:.0f} per candidate); finish reasons {st.finish_reasons}")
    if st.adaptive:
        typer.echo(f"  adaptive: {st.completion_tokens} completion tokens against ~{st.fixed_k_tokens:.0f} "
                   f"for fixed k={st.k} (saved ~{st.tokens_saved:.0f})")
    echo_table([{"gold": f"{lv.level:g}", "items": lv.items, "items ok": lv.items_with_accepted,
                 "candidates": lv.candidates, "accepted": lv.accepted, "rate": f"{lv.rate:.1%}"}
                for lv in st.per_level])
    typer.echo("  utilization (share of items with an accepted trace within the first j samples):")
    typer.echo("  " + "  ".join(f"j={j}: {u:.0%}" for j, u in enumerate(st.utilization, 1)))
    for name, (n, m) in st.per_annotator.items():
        typer.echo(f"  annotator {name}: {m}/{n} items have a trace matching their rating")


@runs_app.command("show")
def runs_show(run_id: Annotated[int, typer.Argument(help="Run id.")]) -> None:
    """A run's statistics: acceptance per gold level, parse failures, tokens, utilization vs k."""
    with user_errors():
        _print_run(run_id)
