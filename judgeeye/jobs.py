"""Background jobs: long work runs in a `judgeeye jobs run ID` subprocess, never in the UI.

The store is the single source of a job's truth: the worker writes its status, progress and a
heartbeat there and its log to a file; the app and the CLI only read. A job survives page
reloads and app restarts; a worker that dies (kill -9, OOM) is found by its stale heartbeat and
shown as failed with its log, and the work it wrote stays (runs resume from the store).
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from judgeeye.auth.roles import Actor, job_permission, require
from judgeeye.store import Job, data_dir, session_scope, write_with_retry
from judgeeye.store.retry import retry_settings

if TYPE_CHECKING:
    from judgeeye.store import Experiment, RaterRun, SamplingRun, TrainingRun

    #: a stored run a job works (each has ``job_id`` and ``status``)
    RunRow = TypeVar("RunRow", SamplingRun, RaterRun, TrainingRun, Experiment)

HEARTBEAT_SECONDS = 3.0
#: a running job whose heartbeat is older than this and whose process is gone has failed
STALE_AFTER_SECONDS = float(os.environ.get("JUDGEEYE_JOB_STALE_SECONDS", "30"))
PRINT_PROGRESS_SECONDS = 5.0
ACTIVE = ("queued", "running")

#: job kind -> "module:function" taking a JobContext; imported only in the worker
HANDLERS: dict[str, str] = {
    "sample": "judgeeye.sampling.runner:run_sampling_job",
    "refine": "judgeeye.refine.runner:run_refine_job",
    "evaluate": "judgeeye.evaluate.runner:run_evaluate_job",
    "train": "judgeeye.training.runner:run_training_job",
    "experiment": "judgeeye.experiments.runner:run_experiment_job",
}


class JobCancelled(Exception):
    """Raised inside a handler at a safe point after a cancel request."""


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything here is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def logs_dir() -> Path:
    path = data_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def create_job(session: Session, kind: str, params: dict[str, Any], project_id: int | None = None) -> Job:
    if kind not in HANDLERS:
        raise ValueError(f"unknown job kind {kind!r}; known: {', '.join(HANDLERS)}")
    job = Job(kind=kind, params=params, project_id=project_id, status="queued")
    session.add(job)
    session.flush()
    job.log_path = str(logs_dir() / f"job-{job.id}.log")
    return job


def current_job(session: Session, run: Any) -> Job | None:
    """The job working (or last to work) a sampling, rater or training run: every run points at
    its newest job (``run.job_id``, set when the job is queued)."""
    return session.get(Job, run.job_id) if run is not None and run.job_id is not None else None


def queue_run_job(session: Session, kind: str, run: Any, busy: str) -> int:
    """Queue the job that (re)works ``run`` (params ``{"run_id": run.id}``) and point the run at
    it; returns its id. Refused while the run's current job is still queued or running: ``busy``
    starts that message, e.g. "run 3 is already being sampled by" (" job 7" follows)."""
    active = current_job(session, run)
    if active is not None and active.status in ACTIVE:
        raise RuntimeError(f"{busy} job {active.id}")
    job = create_job(session, kind, {"run_id": run.id}, project_id=run.project_id)
    run.job_id = job.id
    return job.id


def requeue_run(model: type[RunRow], run_id: int, kind: str, noun: str, busy: str, *, start: bool = True,
                check: Callable[[Any], None] | None = None) -> int:
    """The new job that resumes a stored run (it does only what the run still misses); returns
    its id. ``noun`` names the run in "no {noun} N"; ``check`` raises for a run that cannot be
    resumed; ``busy`` as in :func:`queue_run_job`."""
    with session_scope() as session:
        run = session.get(model, run_id)
        if run is None:
            raise LookupError(f"no {noun} {run_id}")
        if check is not None:
            check(run)
        job_id = queue_run_job(session, kind, run, busy)
    if start:
        start_job(job_id)
    return job_id


def other_running_job(session: Session, ctx: JobContext) -> Job | None:
    """Another running job of the same kind on the same run (``params["run_id"]``), if any: a
    run must be worked by one job at a time, or its rows would be written twice."""
    run_id = int(ctx.params["run_id"])
    kind = session.get_one(Job, ctx.job_id).kind
    others = session.scalars(select(Job).where(Job.kind == kind, Job.status == "running",
                                               Job.id != ctx.job_id)).all()
    return next((j for j in others if int(j.params.get("run_id", -1)) == run_id), None)


def take_run(session: Session, model: type[RunRow], ctx: JobContext, busy: str) -> int:
    """A job handler's first step: point the run it works (``params["run_id"]``) at this job,
    refusing while another job is running it (``busy`` starts that message, as in
    :func:`queue_run_job`). Returns the run id."""
    run_id = int(ctx.params["run_id"])
    run = session.get(model, run_id)
    if run is None:
        raise LookupError(f"no {model.__tablename__.replace('_', ' ')} {run_id}")
    run.job_id = ctx.job_id
    other = other_running_job(session, ctx)
    if other is not None:
        raise RuntimeError(f"{busy} job {other.id}")
    return run_id


#: "local" (default): whoever creates a job starts its worker process on its own host;
#: "workers": jobs stay queued for `judgeeye jobs worker` processes (other hosts, GPU machines)
RUNNER_ENV = "JUDGEEYE_JOB_RUNNER"


def external_workers() -> bool:
    return os.environ.get(RUNNER_ENV, "local").strip().lower() == "workers"


#: OpenMP settings for a job's torch work, used where the environment sets none of
#: :data:`OPENMP_WAIT_VARIABLES`: threads that finish their share of an operation sleep until
#: the next one instead of spinning. On a machine shared with other processes (the app's server,
#: a browser, other jobs) spinning threads hold cores the lagging thread needs: a decode step of
#: the embedded model on 2 busy cores took 2.8-5.8 s with spinning and 0.5-0.7 s without
#: (bench/README.md, "Threads in job workers").
WORKER_OPENMP = {"OMP_WAIT_POLICY": "PASSIVE"}
OPENMP_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def worker_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a job runs its torch work in: ``env`` (default: this process's) with
    :data:`WORKER_OPENMP` where it sets no OpenMP wait policy of its own."""
    out = dict(os.environ if env is None else env)
    if not any(name in out for name in OPENMP_WAIT_VARIABLES):
        out.update(WORKER_OPENMP)
    return out


def use_worker_environment() -> None:
    """Before a job's handler runs (in a worker process, or in ``judgeeye sample`` itself) or a
    measurement of its speed: OpenMP reads its settings when torch is first imported, which they
    do. Nothing changes once torch is imported."""
    if "torch" not in sys.modules:
        os.environ.update(worker_environment())


def _spawn_worker(job_id: int, log_path: Path, *extra: str) -> subprocess.Popen:
    log = open(log_path, "ab", buffering=0)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "judgeeye.cli", "jobs", "run", str(job_id), *extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        log.close()


def _log_path(job: Job) -> Path:
    return Path(job.log_path or logs_dir() / f"job-{job.id}.log")


def start_job(job_id: int) -> int | None:
    """Start the worker as a detached subprocess (it outlives the app); returns its pid, or None
    when ``JUDGEEYE_JOB_RUNNER=workers`` leaves the job queued for a `judgeeye jobs worker`."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise LookupError(f"no job {job_id}")
        log_path = _log_path(job)
    if external_workers():
        return None
    proc = _spawn_worker(job_id, log_path)
    # reap it when it ends, or it stays a defunct process of a long-lived starter (the app's
    # server) until that exits; once the starter is gone, init reaps it
    threading.Thread(target=proc.wait, name=f"reap-job-{job_id}", daemon=True).start()
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is not None and job.status == "queued":
            job.pid = proc.pid
    return proc.pid


def claim_job(kinds: Sequence[str] | None = None) -> int | None:
    """Take the oldest queued job (of ``kinds``) for this worker, or None. Atomic across workers:
    the row is locked (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: BEGIN IMMEDIATE) and marked
    running before the transaction ends, so no two workers take the same job."""
    with session_scope() as session:
        stmt = select(Job).where(Job.status == "queued").order_by(Job.id).limit(1)
        if kinds:
            stmt = stmt.where(Job.kind.in_(list(kinds)))
        job = session.scalars(stmt.with_for_update(skip_locked=True)).first()
        if job is None:
            return None
        job.status, job.pid, job.started_at, job.heartbeat_at = "running", None, _now(), _now()
        return job.id


def serve_jobs(*, kinds: Sequence[str] | None = None, concurrency: int = 1, poll_seconds: float = 2.0,
               once: bool = False, echo: Callable[[str], None] = print) -> None:
    """`judgeeye jobs worker`: claim queued jobs and run each in its own `jobs run` process (a
    crash or OOM takes down the job, not the worker). SIGTERM/SIGINT stop the claiming and are
    passed on to the running jobs, which stop at their next safe point (resumable)."""
    if kinds:
        unknown = sorted(set(kinds) - set(HANDLERS))
        if unknown:
            raise ValueError(f"unknown job kind(s) {', '.join(unknown)}; kinds: {', '.join(HANDLERS)}")
    running: dict[int, subprocess.Popen] = {}
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()
        for proc in running.values():
            proc.terminate()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    echo(f"worker {os.getpid()}: serving {', '.join(kinds) if kinds else 'all'} jobs, {concurrency} at a time")
    try:
        while True:
            for job_id, proc in list(running.items()):
                if proc.poll() is not None:
                    echo(f"job {job_id} ended (exit {proc.returncode})")
                    del running[job_id]
            claimed = None
            while not stopping.is_set() and len(running) < concurrency:
                claimed = claim_job(kinds)
                if claimed is None:
                    break
                with session_scope() as session:
                    log_path = _log_path(session.get_one(Job, claimed))
                running[claimed] = _spawn_worker(claimed, log_path, "--claimed")
                echo(f"job {claimed} started (pid {running[claimed].pid}); log {log_path}")
            if not running and (stopping.is_set() or (once and claimed is None)):
                return
            time.sleep(poll_seconds if claimed is None else 0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def request_cancel(job_id: int, *, actor: Actor) -> None:
    """Ask the worker to stop at its next safe point; it keeps everything written so far.
    ``actor`` must hold the permission that starts jobs of this kind (see ``job_permission``)."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise LookupError(f"no job {job_id}")
        require(actor, job_permission(job.kind))
        if job.status in ACTIVE:
            job.cancel_requested = True
            if job.status == "queued":
                job.status, job.finished_at = "cancelled", _now()


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (finished child not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def reconcile(session: Session) -> int:
    """Mark running jobs whose worker is gone as failed (their written work stays); returns how many."""
    stale = float(os.environ.get("JUDGEEYE_JOB_STALE_SECONDS", STALE_AFTER_SECONDS))
    cutoff = _now() - timedelta(seconds=stale)
    changed = 0
    for job in session.scalars(select(Job).where(Job.status == "running")).all():
        beat = _aware(job.heartbeat_at) or _aware(job.started_at)
        # with external workers the pid belongs to another host: the heartbeat alone decides
        if (beat is None or beat < cutoff) and (external_workers() or not _pid_alive(job.pid)):
            job.status = "failed"
            job.error = (job.error or "") + ("worker stopped without finishing (killed or crashed); see the log. "
                                             "Resume to continue.")
            job.finished_at = _now()
            _interrupt_runs(session, job.id)
            changed += 1
    return changed


def run_status(run_status: str, job_status: str | None) -> str:
    """What a run (sampling, rating, training) is doing now, from its own status and its latest
    job's. The job knows better while it is queued or running (a new run, or a stopped one being
    resumed), and when it failed or was cancelled before the run could record it (a job
    cancelled while still queued); otherwise the run's own status holds."""
    if job_status in ACTIVE:
        return job_status
    if run_status in ("created", "running") and job_status in ("failed", "cancelled"):
        return job_status
    return run_status


def _interrupt_runs(session: Session, job_id: int) -> None:
    """The run a dead job was working shows as failed too (its rows stay; resuming continues)."""
    from judgeeye.store import Experiment, RaterRun, SamplingRun, TrainingRun

    _fail_runs(session, SamplingRun, job_id)
    _fail_runs(session, RaterRun, job_id)
    _fail_runs(session, TrainingRun, job_id)
    _fail_runs(session, Experiment, job_id)


def _fail_runs(session: Session, model: type[RunRow], job_id: int) -> None:
    """One run table's part of :func:`_interrupt_runs` (one call per table keeps the rows typed)."""
    for run in session.scalars(select(model).where(model.job_id == job_id,
                                                   model.status.in_(("running", "evaluating")))).all():
        run.status = "failed"


def log_tail(job: Job, max_bytes: int = 20_000) -> str:
    if not job.log_path or not Path(job.log_path).exists():
        return ""
    with open(job.log_path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - max_bytes))
        return fh.read().decode("utf-8", "replace")


@dataclass
class JobContext:
    """What a handler sees: its parameters, progress reporting, cancellation."""

    job_id: int
    params: dict[str, Any]
    project_id: int | None
    _cancel: threading.Event = field(default_factory=threading.Event)
    _last_progress: float = 0.0
    _last_print: float = 0.0

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancel(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled()

    def progress(self, fraction: float, text: str | None = None, *, force: bool = False) -> None:
        """Record progress (at most twice a second unless forced)."""
        now = time.monotonic()
        if not force and now - self._last_progress < 0.5:
            return
        self._last_progress = now

        def write(session: Session) -> None:
            job = session.get(Job, self.job_id)
            if job is not None:
                job.progress = max(0.0, min(1.0, float(fraction)))
                job.progress_text = text
                job.heartbeat_at = _now()

        write_with_retry(write, log_fn=self.log, what="job progress")
        if text and (force or now - self._last_print >= PRINT_PROGRESS_SECONDS):
            self._last_print = now
            self.log(f"{fraction:.0%} {text}")

    def log(self, message: str) -> None:
        print(f"{datetime.now().strftime('%H:%M:%S')} {message}", flush=True)


def _heartbeat(ctx: JobContext, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            with session_scope() as session:
                job = session.get(Job, ctx.job_id)
                if job is None:
                    return
                job.heartbeat_at = _now()
                if job.cancel_requested:
                    ctx._cancel.set()
        except Exception as exc:  # a locked or briefly unavailable store: try again next beat
            ctx.log(f"heartbeat failed ({exc.__class__.__name__}); retrying")


def resolve_handler(kind: str) -> Callable[[JobContext], None]:
    module, _, name = HANDLERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def run_job(job_id: int, *, claimed: bool = False) -> str:
    """The worker: run one job to its end in this process; returns the final status.
    ``claimed``: a `jobs worker` has taken the job already (running, no pid yet)."""
    with session_scope() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            raise LookupError(f"no job {job_id}")
        if claimed and job.status == "running" and job.pid is None:
            job.pid, job.heartbeat_at = os.getpid(), _now()  # a cancel asked meanwhile still holds
        elif job.status != "queued":
            # a cancelled-before-start or finished job is never run again: resuming makes a new job
            raise RuntimeError(f"job {job_id} is {job.status}; only a queued job can run")
        else:
            job.status, job.pid, job.started_at, job.heartbeat_at = "running", os.getpid(), _now(), _now()
            job.cancel_requested, job.error, job.finished_at = False, None, None
        ctx = JobContext(job_id=job.id, params=dict(job.params), project_id=job.project_id)
        kind = job.kind
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(ctx, stop), daemon=True)
    beat.start()
    previous = signal.signal(signal.SIGTERM, lambda *_: ctx._cancel.set())
    status, error = "succeeded", None
    use_worker_environment()
    ctx.log(f"job {job_id} ({kind}) started in process {os.getpid()}")
    try:
        resolve_handler(kind)(ctx)
        if ctx.cancelled:
            status = "cancelled"
    except JobCancelled:
        status = "cancelled"
    except Exception as exc:  # the job fails; its log has the traceback
        traceback.print_exc()
        status, error = "failed", f"{exc.__class__.__name__}: {exc}"
    finally:
        stop.set()
        beat.join(timeout=HEARTBEAT_SECONDS + 1)
        signal.signal(signal.SIGTERM, previous)

    def finish(session: Session) -> None:
        job = session.get_one(Job, job_id)
        job.status, job.error, job.finished_at = status, error, _now()
        if status == "succeeded":
            job.progress = 1.0
        if status == "failed":  # a run whose own status write failed (a locked store) shows it too
            _interrupt_runs(session, job_id)

    # patient: if this write fails too, the stale heartbeat marks the job failed (reconcile)
    write_with_retry(finish, log_fn=ctx.log, what=f"status of job {job_id}", retries=2 * retry_settings()[0])
    ctx.log(f"job {job_id} {status}" + (f": {error}" if error else ""))
    return status
