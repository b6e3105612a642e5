"""`judgeeye sample`, `judgeeye runs [show RUN]`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from sqlalchemy import select

from judgeeye.auth.roles import Actor
from judgeeye.cli.common import echo_table, run_here_or_background, user_errors
from judgeeye.sampling.runs import PRESET_HELP, PRESETS, SamplingSettings, default_preset, preset_settings
from judgeeye.settings_cli import default_text, engine_config, engine_options, settings_options
from judgeeye.settings_fields import setting_field
from judgeeye.store import SamplingRun, session_scope

if TYPE_CHECKING:  # pragma: no cover
    from judgeeye.engines import EngineConfig

runs_app = typer.Typer(help="Sampling runs and their statistics.", invoke_without_command=True)


def _parse_adaptive(text: str | None) -> tuple[int | None, int | None]:
    if not text:
        return None, None
    try:
        r, m = (int(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--adaptive takes ROUND,ACCEPTED, e.g. 4,1; got {text!r}") from None
    return r, m


def _preset_name(text: str | None) -> str | None:
    if text is None:
        return None
    name = text.strip().lower().replace("-", " ").replace("_", " ")
    if name not in PRESETS:
        raise typer.BadParameter(f"unknown preset {text!r}; choose from {', '.join(p.replace(' ', '-') for p in PRESETS)}")
    return name


#: the sampling settings `judgeeye sample` takes as options; round_size and target_accepted are
#: --adaptive ROUND,ACCEPTED, mode is --post-hoc, and --limit also takes 0 (all: the demo has a limit)
SAMPLE_OPTIONS: dict[str, str | None] = {
    "k": None, "temperature": None, "top_p": None, "max_tokens": None, "splits": "--split", "order": None,
    "acceptance": None, "targets": None, "readout": None, "seed": None,
}
_FIELD = {name: setting_field(SamplingSettings, name) for name in ("limit", "round_size", "target_accepted", "mode")}
_PRESETS = {name.replace(" ", "-"): values for name, values in PRESETS.items()}


@settings_options(SamplingSettings, SAMPLE_OPTIONS, dest="values", presets=_PRESETS)
@engine_options("engine")
def sample(
    project: Annotated[str | None, typer.Option("--project", "-p", help="Project name or id.")] = None,
    codebook: Annotated[int | None, typer.Option(help="Codebook version (default: current).")] = None,
    engine: dict[str, Any] | None = None,
    preset: Annotated[str | None, typer.Option(help=(
        "Starting point for the settings below. " + " ".join(f"{n.replace(' ', '-')}: {h}" for n, h in PRESET_HELP.items())
        + " Default: embedded-demo with the embedded engine, else paper. Options given here override it."))] = None,
    values: dict[str, Any] | None = None,
    limit: Annotated[int | None, typer.Option(
        min=0, help=_FIELD["limit"].help + " 0: all.", show_default=default_text(_FIELD["limit"], _PRESETS))] = None,
    adaptive: Annotated[str | None, typer.Option(
        metavar="ROUND,ACCEPTED", help=f"{_FIELD['round_size'].help} {_FIELD['target_accepted'].help}",
        show_default=default_text(_FIELD["round_size"]))] = None,
    post_hoc: Annotated[bool, typer.Option(help=_FIELD["mode"].help)] = False,
    verifier: Annotated[str | None, typer.Option(
        help=f"{SamplingSettings.model_fields['verifier'].description} An engine as --engine takes it.")] = None,
    resume: Annotated[int | None, typer.Option(help="Resume this run: sample only what is missing.")] = None,
    background: Annotated[bool, typer.Option(help="Run as a background job and return at once.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Estimate tokens and time on this machine and stop; no run is created.")] = False,
) -> None:
    """Rejection sampling: k candidate traces per item, accepted when the rating equals the label."""
    from judgeeye.engines import EngineConfig
    from judgeeye.projects import find_project
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
                config = engine_config(engine or {})
                round_size, target = _parse_adaptive(adaptive)
                settings = preset_settings(
                    _preset_name(preset) or default_preset(config), **(values or {}),
                    round_size=round_size, target_accepted=target, mode="post_hoc" if post_hoc else None,
                    verifier=EngineConfig.parse(verifier) if verifier else None,
                )
                if limit is not None:
                    settings = SamplingSettings.model_validate({**settings.model_dump(), "limit": limit or None})
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from None
            with session_scope() as session:
                project_id = find_project(session, project).id
            if dry_run:
                _print_estimate(project_id, config, settings, codebook)
                return
            try:
                run_id, job_id = launch_run(project_id, config, settings, codebook, actor=Actor.system(), start=False)
            except (LookupError, ValueError) as exc:
                raise typer.BadParameter(str(exc)) from None
    run_here_or_background(job_id, f"run {run_id}", background=background, report=lambda: _print_run(run_id))


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
    project: Annotated[str | None, typer.Option("--project", "-p", help="Only this project.")] = None,
) -> None:
    """List sampling runs."""
    if ctx.invoked_subcommand:
        return
    from judgeeye.engines import EngineConfig
    from judgeeye.projects import find_project
    from judgeeye.sampling import ACCEPTANCE_LABELS, run_stats

    with user_errors(), session_scope() as session:
        stmt = select(SamplingRun).order_by(SamplingRun.id)
        if project:
            stmt = stmt.where(SamplingRun.project_id == find_project(session, project).id)
        rows = []
        for run in session.scalars(stmt).all():
            st = run_stats(session, run.id)
            rows.append({
                "run": run.id, "project": run.project_id, "engine": EngineConfig.model_validate(run.engine).label(),
                "k": run.k, "acceptance": ACCEPTANCE_LABELS[st.acceptance], "seed": st.seed, "status": run.status,
                "items": st.n_items, "candidates": st.n_candidates,
                "accepted": st.n_accepted, "items ok": st.items_with_accepted,
                "parse fail": st.parse_failures, "created": run.created_at.strftime("%Y-%m-%d %H:%M"),
            })
    echo_table(rows)


def _print_run(run_id: int) -> None:
    from judgeeye.engines import EngineConfig
    from judgeeye.sampling import ACCEPTANCE_LABELS, run_settings, run_stats

    with session_scope() as session:
        run = session.get(SamplingRun, run_id)
        if run is None:
            raise typer.BadParameter(f"no sampling run {run_id}")
        st = run_stats(session, run_id)
        settings = run_settings(run)
        engine = EngineConfig.model_validate(run.engine).label()
    typer.echo(f"run {run_id}: {st.status}; {engine}; k={st.k}{' (adaptive)' if st.adaptive else ''}, "
               f"temperature {settings.temperature:g}, top-p {settings.top_p:g}, max tokens {settings.max_tokens}, "
               f"seed {settings.seed}, acceptance {ACCEPTANCE_LABELS[st.acceptance]}")
    typer.echo(f"  items {st.n_items}, candidates {st.n_candidates}, accepted {st.n_accepted} "
               f"({st.acceptance_rate:.1%}), items with an accepted trace {st.items_with_accepted}")
    typer.echo(f"  ratings written by the traces: {st.by_mode['written'].rated}; no written rating "
               f"(token limit, none or ambiguous): {st.parse_failures}"
               + (f", of which rated after the forced cue: {st.readout_ratings}" if st.acceptance == "forced_cue" else ""))
    typer.echo(f"  tokens: prompt {st.prompt_tokens}, completion {st.completion_tokens} "
               f"({st.tokens_per_candidate:.0f} per candidate); finish reasons {st.finish_reasons}")
    if st.adaptive:
        typer.echo(f"  adaptive: {st.completion_tokens} completion tokens against ~{st.fixed_k_tokens:.0f} "
                   f"for fixed k={st.k} (saved ~{st.tokens_saved:.0f})")
    modes = list(st.by_mode.values())
    rows = []
    for i, lv in enumerate(st.per_level):
        row = {"gold": f"{lv.level:g}", "items": lv.items, "candidates": lv.candidates}
        for m in modes:
            name = ACCEPTANCE_LABELS[m.mode]
            row[f"accepted ({name})"] = m.per_level[i].accepted
            row[f"rate ({name})"] = f"{m.per_level[i].rate:.1%}"
        rows.append(row)
    echo_table(rows)
    typer.echo("  utilization (share of items with an accepted trace within the first j samples):")
    for m in modes:
        typer.echo(f"  {ACCEPTANCE_LABELS[m.mode]:>10}: " + "  ".join(f"j={j}: {u:.0%}" for j, u in enumerate(m.utilization, 1)))
    if len(modes) > 1:
        typer.echo("  {:>10}: ".format("either") + "  ".join(f"j={j}: {u:.0%}" for j, u in enumerate(st.utilization, 1)))
    for name, (n, matched) in st.per_annotator.items():
        typer.echo(f"  annotator {name}: {matched}/{n} items have a trace matching their rating")


@runs_app.command("show")
def runs_show(run_id: Annotated[int, typer.Argument(help="Run id.")]) -> None:
    """A run's statistics: acceptance per gold level, parse failures, tokens, utilization vs k."""
    with user_errors():
        _print_run(run_id)
