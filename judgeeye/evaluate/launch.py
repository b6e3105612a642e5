"""Starting and resuming rater runs as background jobs: what the page and the CLI share."""

from __future__ import annotations

import shlex

from sqlalchemy import select
from sqlalchemy.orm import Session

from judgeeye.auth.roles import Actor, require
from judgeeye.evaluate.raters import RaterSpec, create_rater_run
from judgeeye.jobs import ACTIVE, current_job, queue_run_job, requeue_run, start_job
from judgeeye.store import Job, RaterRun, session_scope

JOB_KIND = "evaluate"


def launch_rater_run(
    project_id: int,
    spec: RaterSpec,
    *,
    split: str = "test",
    codebook_version: int | None = None,
    name: str | None = None,
    actor: Actor,
    start: bool = True,
) -> tuple[int, int]:
    """Create a rater run and its job, and start the worker; returns (run id, job id).
    ``actor`` must hold ``evaluate`` (the CLI passes ``Actor.system()``)."""
    require(actor, "evaluate")
    with session_scope() as session:
        run = create_rater_run(session, project_id, spec, split=split, codebook_version=codebook_version, name=name)
        run_id, job_id = run.id, queue_run_job(session, JOB_KIND, run, f"rater run {run.id} is already being rated by")
    if start:
        start_job(job_id)
    return run_id, job_id


def latest_job(session: Session, run_id: int) -> Job | None:
    return current_job(session, session.get(RaterRun, run_id))


def resume_rater_run(run_id: int, *, actor: Actor, start: bool = True) -> int:
    """A new job that rates only the items still without a prediction; returns its id."""
    require(actor, "evaluate")
    return requeue_rater_run(run_id, start=start)


def requeue_rater_run(run_id: int, *, start: bool = True) -> int:
    """The job that (re)rates a run; callers have checked the actor's rights."""
    return requeue_run(RaterRun, run_id, JOB_KIND, "rater run", f"rater run {run_id} is already being rated by",
                       start=start)


def active_runs(session: Session, project_id: int) -> list[int]:
    """Rater runs of the project whose job is queued or running."""
    return list(session.scalars(
        select(RaterRun.id).join(Job, Job.id == RaterRun.job_id)
        .where(RaterRun.project_id == project_id, Job.status.in_(ACTIVE)).order_by(RaterRun.id)).all())


def cli_command(project: str, spec: RaterSpec, split: str, codebook_version: int | None) -> str:
    """The `judgeeye evaluate` command that starts the same run (shown on the page)."""
    args = ["judgeeye", "evaluate", "--project", project, "--rater", spec.engine.spec(), "--split", split,
            "--readout", spec.readout, "--temperature", f"{spec.temperature:g}", "--top-p", f"{spec.top_p:g}",
            "--max-tokens", str(spec.max_tokens)]
    if codebook_version:
        args += ["--codebook", str(codebook_version)]
    if spec.limit:
        args += ["--limit", str(spec.limit)]
    if spec.seed is not None:
        args += ["--seed", str(spec.seed)]
    engine, default = spec.engine, type(spec.engine)(model=spec.engine.model)
    for name, option in (("batch_size", "--batch-size"), ("max_concurrency", "--concurrency")):
        if name in type(engine).model_fields and getattr(engine, name) != getattr(default, name):
            args += [option, str(getattr(engine, name))]
    return shlex.join(args + engine.cli_options())
