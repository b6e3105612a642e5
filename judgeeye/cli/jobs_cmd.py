"""`judgeeye jobs ...`: list, follow and cancel background jobs; run one; serve as a worker."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import select

from judgeeye.auth.roles import Actor
from judgeeye.cli.common import echo_table, user_errors
from judgeeye.store import Job, session_scope

jobs_app = typer.Typer(help="Background jobs: list, follow, cancel, run one, serve as a worker.", no_args_is_help=True)


@jobs_app.command("list")
def jobs_list(all_: Annotated[bool, typer.Option("--all", help="Include finished jobs.")] = False) -> None:
    """Jobs, newest first (running and queued only unless --all)."""
    from judgeeye.jobs import reconcile

    with session_scope() as session:
        reconcile(session)
        stmt = select(Job).order_by(Job.id.desc())
        if not all_:
            stmt = stmt.where(Job.status.in_(("queued", "running")))
        rows = [{"job": j.id, "kind": j.kind, "status": j.status, "progress": f"{j.progress:.0%}",
                 "detail": (j.progress_text or j.error or "")[:80], "params": j.params}
                for j in session.scalars(stmt.limit(50)).all()]
    echo_table(rows)


@jobs_app.command("show")
def jobs_show(job_id: int, log_lines: Annotated[int, typer.Option(help="Lines of log to print.")] = 20) -> None:
    """A job's status, progress and the end of its log."""
    from judgeeye.jobs import log_tail, reconcile

    with session_scope() as session:
        reconcile(session)
        job = session.get(Job, job_id)
        if job is None:
            typer.echo(f"error: no job {job_id}", err=True)
            raise typer.Exit(2)
        typer.echo(f"job {job.id} ({job.kind}) {job.status} {job.progress:.0%}  {job.progress_text or ''}")
        if job.error:
            typer.echo(f"error: {job.error}")
        tail = log_tail(job).splitlines()[-log_lines:]
    typer.echo("\n".join(tail))


@jobs_app.command("cancel")
def jobs_cancel(job_id: int) -> None:
    """Ask a job to stop; what it wrote so far is kept (resume continues from there)."""
    from judgeeye.jobs import request_cancel

    with user_errors(LookupError):
        request_cancel(job_id, actor=Actor.system())
    typer.echo(f"cancel requested for job {job_id}")


@jobs_app.command("run")
def jobs_run(
    job_id: int,
    claimed: Annotated[bool, typer.Option(help="The job was claimed by `jobs worker` (internal).")] = False,
) -> None:
    """Run a job's worker in this process (the app or `jobs worker` starts this as a subprocess)."""
    from judgeeye.jobs import run_job

    status = run_job(job_id, claimed=claimed)
    raise typer.Exit(0 if status in ("succeeded", "cancelled") else 1)


@jobs_app.command("worker")
def jobs_worker(
    kind: Annotated[list[str] | None,
                    typer.Option(help="Only jobs of this kind (repeat): sample, evaluate, refine, train.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs run at once by this worker.")] = 1,
    poll: Annotated[float, typer.Option(help="Seconds between looks for queued jobs.")] = 2.0,
    once: Annotated[bool, typer.Option(help="Exit when no queued job is left instead of waiting for more.")] = False,
) -> None:
    """Take queued jobs from the store and run them (on this host, e.g. a GPU machine), for apps
    started with JUDGEEYE_JOB_RUNNER=workers. Several workers may serve one store; each job runs once.
    SIGTERM/Ctrl-C: stop taking jobs, ask the running ones to stop at a safe point, then exit."""
    from judgeeye.jobs import serve_jobs

    serve_jobs(kinds=kind, concurrency=concurrency, poll_seconds=poll, once=once, echo=typer.echo)
