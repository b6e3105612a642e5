"""Shared CLI plumbing: turning library errors into one clear line and exit code 2, saying
which store a command reads."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from judgeeye.codebook import CodebookError
from judgeeye.datasets import DatasetError, DatasetValidationError
from judgeeye.projects import ProjectNotFound
from judgeeye.store import store_location

USER_ERRORS = (DatasetError, DatasetValidationError, ProjectNotFound, CodebookError, FileNotFoundError)


@contextmanager
def user_errors(*also: type[Exception]) -> Iterator[None]:
    """Bad input ends the command with its message on stderr and exit status 2, no traceback:
    the library's input errors, and ``also`` the errors a command's own call refuses with
    (``user_errors(LookupError)`` for "no experiment 7")."""
    caught: tuple[type[Exception], ...] = (*USER_ERRORS, *also)
    try:
        yield
    except caught as exc:
        typer.echo(f"error: {exc}", err=True)
        if isinstance(exc, ProjectNotFound):  # the wrong store is the likeliest reason
            echo_store(err=True)
        raise typer.Exit(2) from None


def echo_store(*, err: bool = False) -> None:
    """One line naming the store this command reads and writes."""
    typer.echo(f"store: {store_location()}", err=err)


def echo_table(rows: list[dict], columns: list[str] | None = None) -> None:
    """A plain aligned text table (no extra dependency; pipes and logs stay readable)."""
    if not rows:
        typer.echo("(none)")
        return
    columns = columns or list(rows[0])
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    typer.echo("  ".join("-" * w for w in widths))
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    sys.stdout.flush()


def start_in_background(job_id: int) -> str:
    """Start a job's worker (or leave it queued for `judgeeye jobs worker`); says which."""
    from judgeeye.jobs import start_job

    pid = start_job(job_id)
    return f"started in the background (pid {pid})" if pid else "queued for a `judgeeye jobs worker`"


def run_here_or_background(job_id: int, what: str, *, background: bool, report: Callable[[], None],
                           follow: str = "") -> None:
    """Run a job's worker in this process, then print ``report`` (exit status 1 unless the job
    succeeded); or start it in the background and say how to follow it."""
    from judgeeye.jobs import run_job
    from judgeeye.store import Job, session_scope

    with session_scope() as session:
        log_path = session.get_one(Job, job_id).log_path
    if background:
        typer.echo(f"{what}: job {job_id} {start_in_background(job_id)}; log {log_path}")
        typer.echo(f"follow it with: judgeeye jobs show {job_id}{follow}")
        return
    typer.echo(f"{what} (job {job_id}); log {log_path}")
    status = run_job(job_id)
    report()
    if status != "succeeded":
        raise typer.Exit(1)
