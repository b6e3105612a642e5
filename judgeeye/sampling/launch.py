"""Starting, resuming and browsing sampling runs: what the Sample page and the CLI share."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from judgeeye.auth.roles import Actor, require
from judgeeye.engines import EngineConfig
from judgeeye.jobs import current_job, queue_run_job, requeue_run, start_job
from judgeeye.sampling.runs import SamplingSettings, create_run, preset_settings
from judgeeye.store import Candidate, Item, Job, SamplingRun, session_scope


def launch_run(
    project_id: int,
    engine: EngineConfig,
    settings: SamplingSettings,
    codebook_version: int | None = None,
    *,
    actor: Actor,
    start: bool = True,
) -> tuple[int, int]:
    """Create a run and its job, and start the worker subprocess; returns (run id, job id).
    ``actor`` must hold ``sample`` (the CLI passes ``Actor.system()``)."""
    require(actor, "sample")
    with session_scope() as session:
        run = create_run(session, project_id, engine, settings, codebook_version)
        run_id, job_id = run.id, queue_run_job(session, "sample", run, f"run {run.id} is already being sampled by")
    if start:
        start_job(job_id)
    return run_id, job_id


def resume_run(run_id: int, *, actor: Actor, start: bool = True) -> int:
    """A new job that samples only what the run is still missing; returns its id."""
    require(actor, "sample")
    return requeue_run(SamplingRun, run_id, "sample", "sampling run", f"run {run_id} is already being sampled by",
                       start=start)


def latest_job(session: Session, run_id: int) -> Job | None:
    return current_job(session, session.get(SamplingRun, run_id))


def cli_command(project: str, engine: EngineConfig, settings: SamplingSettings, codebook_version: int | None,
                preset: str = "paper") -> str:
    """The `judgeeye sample` command that starts the same run (shown on the Sample page): the
    preset, then every setting that differs from it."""
    base = preset_settings(preset)
    args = ["judgeeye", "sample", "--project", project, "--engine", engine.spec(), "--preset", preset.replace(" ", "-")]
    if codebook_version:
        args += ["--codebook", str(codebook_version)]
    for name, flag in (("k", "--k"), ("temperature", "--temperature"), ("top_p", "--top-p"),
                       ("max_tokens", "--max-tokens"), ("targets", "--targets"), ("order", "--order"),
                       ("seed", "--seed")):
        value = getattr(settings, name)
        if value != getattr(base, name) and value is not None:
            args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if settings.acceptance != base.acceptance:
        args += ["--acceptance", settings.acceptance.replace("_", "-")]
    if settings.splits != base.splits:
        for split in settings.splits:
            args += ["--split", split]
    if settings.limit != base.limit:
        args += ["--limit", str(settings.limit or 0)]
    if settings.adaptive:
        args += ["--adaptive", f"{settings.round_size},{settings.target_accepted}"]
    if not settings.readout:
        args.append("--no-readout")
    if settings.mode == "post_hoc":
        args.append("--post-hoc")
    if settings.verifier is not None:
        args += ["--verifier", settings.verifier.spec()]
    return shlex.join(args + engine.cli_options())


@dataclass
class ItemSummary:
    item_id: int
    external_id: str
    gold: float | None
    candidates: int
    accepted: int


def item_summaries(session: Session, run_id: int, limit: int = 5000) -> list[ItemSummary]:
    """Per item of a run: how many candidates and how many accepted (for browsing)."""
    rows = session.execute(
        select(Item.id, Item.external_id, Item.gold, func.count(Candidate.id),
               func.coalesce(func.sum(case((Candidate.accepted, 1), else_=0)), 0))
        .join(Candidate, Candidate.item_id == Item.id)
        .where(Candidate.run_id == run_id)
        .group_by(Item.id, Item.external_id, Item.gold)
        .order_by(Item.id)
        .limit(limit)
    ).all()
    return [ItemSummary(i, e, g, int(c), int(a)) for i, e, g, c, a in rows]


def item_candidates(session: Session, run_id: int, item_id: int) -> list[Candidate]:
    """An item's candidates, accepted first, then in sample order."""
    return list(session.scalars(
        select(Candidate)
        .where(Candidate.run_id == run_id, Candidate.item_id == item_id)
        .order_by(Candidate.accepted.desc(), Candidate.sample_index)
    ).all())
