"""Working an experiment: its stages one after another, in this job's own process.

For each stage that is not done, in order: if the stage has no run yet, a finished run with the
same settings is reused (its stage is done at once, nothing is sampled, trained or rated), else a
new run is created *and its id written to the stage in the same transaction*; then the run is
claimed for this job and worked to its end by the library's resumable runner, and the stage is
marked done with what it cost. A job killed at any moment therefore leaves either no run or a run
the stage knows; resuming continues that run (the runners resume without loss or duplicates)
and never creates a second one. A refinement writes its version last, in one transaction; a
resumed one adopts the critiques stored before.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from judgeeye.experiments import stages as st
from judgeeye.experiments.grid import StageDef, stage_by_key
from judgeeye.experiments.launch import (
    codebook_record,
    experiment_settings,
    report_path,
    stage_rows,
)
from judgeeye.jobs import JobCancelled, JobContext, take_run
from judgeeye.store import (
    Codebook,
    Experiment,
    ExperimentStage,
    session_scope,
    write_with_retry,
)

#: how often a stage's wall time is written while it runs (a kill loses at most this much)
CLOCK_SECONDS = 5.0


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class StageContext(JobContext):
    """The experiment job's context as one stage sees it: the stage's progress fills its share of
    the experiment's bar, prefixed with the stage's name. Cancelling the experiment cancels the
    stage (they share one event, which the job's heartbeat sets)."""

    index: int = 0
    n_stages: int = 1
    title: str = ""

    @classmethod
    def of(cls, parent: JobContext, **values: Any) -> StageContext:
        return cls(job_id=parent.job_id, params=parent.params, project_id=parent.project_id, _cancel=parent._cancel,
                   **values)

    def progress(self, fraction: float, text: str | None = None, *, force: bool = False) -> None:
        overall = (self.index + max(0.0, min(1.0, float(fraction)))) / max(self.n_stages, 1)
        super().progress(overall, f"{self.title}: {text}" if text else self.title, force=force)


class StageClock:
    """A stage's wall time, written to its row every few seconds by a thread (a kill loses at
    most that much), and continued from what earlier attempts recorded."""

    def __init__(self, row_id: int, seconds_before: float, log: Any = None) -> None:
        self.row_id, self.before, self.log = row_id, seconds_before, log
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stage-clock-{row_id}", daemon=True)

    def elapsed(self) -> float:
        return self.before + time.monotonic() - self.started

    def _run(self) -> None:
        while not self._stop.wait(CLOCK_SECONDS):
            try:
                with session_scope() as s:
                    s.get_one(ExperimentStage, self.row_id).seconds = self.elapsed()
            except Exception as exc:  # a busy store: the next tick writes it
                if self.log:
                    self.log(f"stage clock not written ({exc.__class__.__name__}); retrying")

    def __enter__(self) -> StageClock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=CLOCK_SECONDS + 1)


def run_experiment_job(ctx: JobContext) -> None:
    """Job handler for kind 'experiment': params {"run_id": experiment id}."""
    with session_scope() as s:
        experiment_id = take_run(s, Experiment, ctx, f"experiment {ctx.params['run_id']} is already running as")
    if execute_experiment(experiment_id, ctx) == "cancelled":
        raise JobCancelled()


def _set(experiment_id: int, **values: Any) -> None:
    def write(s: Session) -> None:
        experiment = s.get_one(Experiment, experiment_id)
        for key, value in values.items():
            setattr(experiment, key, value)

    write_with_retry(write, what=f"experiment {experiment_id}")


def execute_experiment(experiment_id: int, ctx: JobContext) -> str:
    """Work every stage not yet done; returns "completed" or "cancelled" (errors are raised, the
    experiment and the failing stage then say "failed")."""
    with session_scope() as s:
        experiment = s.get(Experiment, experiment_id)
        if experiment is None:
            raise LookupError(f"no experiment {experiment_id}")
        settings = experiment_settings(experiment)
        experiment.status, experiment.finished_at = "running", None
        inputs = st.Inputs(project_id=experiment.project_id, settings=settings,
                           original_version=settings.original_version)
        rows = [(r.id, r.key, r.status, r.run_id) for r in stage_rows(s, experiment_id)]
        for _, key, status, run_id in rows:
            if status == "done" and run_id is not None:
                inputs.runs[key] = run_id
                if key == "refine":
                    inputs.refined_version = s.get_one(Codebook, run_id).version
    defs = stage_by_key(settings)
    ctx.log(f"experiment {experiment_id}: {len(rows)} stages, {sum(1 for r in rows if r[2] == 'done')} done")
    try:
        for index, (row_id, key, status, _) in enumerate(rows):
            if status == "done":
                continue
            ctx.check_cancel()
            _work(defs[key], row_id, index, len(rows), inputs, ctx)
    except JobCancelled:
        _set(experiment_id, status="cancelled", finished_at=_now())
        ctx.log(f"experiment {experiment_id} stopped; resume it to continue where it stopped")
        return "cancelled"
    except Exception:
        _set(experiment_id, status="failed", finished_at=_now())
        raise
    _finish(experiment_id, inputs)
    ctx.progress(1.0, "done", force=True)
    ctx.log(f"experiment {experiment_id} completed; report {report_path(experiment_id)}")
    return "completed"


def _finish(experiment_id: int, inputs: st.Inputs) -> None:
    """Record the refined codebook among the inputs, write the HTML report, mark completed."""
    from judgeeye.experiments.report import build_report, render_html

    with session_scope() as s:
        experiment = s.get_one(Experiment, experiment_id)
        if inputs.refined_version is not None and "refined" not in experiment.inputs.get("codebooks", {}):
            from judgeeye.codebook import get_version

            record = dict(experiment.inputs)
            record["codebooks"] = {**record.get("codebooks", {}),
                                   "refined": codebook_record(get_version(s, experiment.project_id, inputs.refined_version))}
            experiment.inputs = record
        experiment.status, experiment.finished_at = "completed", _now()
    with session_scope() as s:
        html = render_html(build_report(s, experiment_id))
    path = report_path(experiment_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)


def _work(stage: StageDef, row_id: int, index: int, n_stages: int, inputs: st.Inputs, ctx: JobContext) -> None:
    """One stage: reuse, or create-and-record, then work its run to the end and mark it done."""
    try:
        prepared = _prepare(stage, row_id, inputs, ctx)
    except Exception as exc:
        _stage_status(row_id, "failed", None, note=str(exc))
        raise
    if prepared is None:
        return
    built, run_id, seconds_before, earlier_jobs = prepared
    sctx = StageContext.of(ctx, index=index, n_stages=n_stages, title=stage.title)
    sctx.progress(0.0, "starting", force=True)
    ctx.log(f"{stage.title}: {'resuming' if earlier_jobs else 'starting'} "
            + (f"{stage.kind} run {run_id}" if run_id is not None else "refinement"))
    with StageClock(row_id, seconds_before, ctx.log) as clock:
        try:
            if stage.kind == "refine":
                run_id = st.execute_refine(inputs.project_id, built, sctx, earlier_jobs + [ctx.job_id])
            else:
                assert run_id is not None  # _prepare created or took up the stage's run
                st.execute(stage.kind, run_id, sctx)
        except JobCancelled:
            _stage_status(row_id, "pending", clock.elapsed())
            raise
        except Exception as exc:
            _stage_status(row_id, "failed", clock.elapsed(), note=str(exc))
            raise
    with session_scope() as s:
        _done(s, s.get_one(ExperimentStage, row_id), run_id, reused=False, seconds=clock.elapsed())
        _remember(s, stage, run_id, inputs)


def _prepare(stage: StageDef, row_id: int, inputs: st.Inputs,
             ctx: JobContext) -> tuple[st.Built, int | None, float, list[int]] | None:
    """Reuse a finished run (None: the stage is done), or create the stage's run and record it in
    the same transaction, or take up the run recorded before; then claim it for this job."""
    with session_scope() as s:
        row = s.get_one(ExperimentStage, row_id)
        built = st.build(s, stage, inputs)
        row.cache_key, row.payload = built.cache_key, built.payload
        earlier_jobs = [int(j) for j in row.jobs or []]
        if stage.kind == "refine":
            made = st.refined_version_of(s, inputs.project_id, earlier_jobs)
            if made is not None:  # written by an earlier attempt that was killed before saying so
                row.run_id = made.id
        if row.run_id is None:
            reused = st.find_reusable(s, built)
            if reused is not None:
                _done(s, row, reused, reused=True, seconds=st.known_cost(s, stage.kind, reused))
                _remember(s, stage, reused, inputs)
                ctx.log(f"{stage.title}: reusing {stage.kind} run {reused} (same settings)")
                return None
            if stage.kind == "train":
                st.require_traces(s, inputs.runs["sample"])
            if built.create is not None:
                row.run_id = built.create(s)  # created and recorded in one transaction
        elif stage.kind == "refine":
            _done(s, row, row.run_id, reused=False, seconds=row.seconds)
            _remember(s, stage, row.run_id, inputs)
            return None
        if row.run_id is not None:
            st.claim(s, stage.kind, row.run_id, ctx.job_id)
        row.status, row.note = "running", None
        row.jobs = [*earlier_jobs, ctx.job_id]
        row.started_at = row.started_at or _now()
        return built, row.run_id, float(row.seconds or 0.0), earlier_jobs


def _done(s: Session, row: ExperimentStage, run_id: int, *, reused: bool, seconds: float | None) -> None:
    row.run_id, row.reused, row.status, row.seconds = run_id, reused, "done", seconds
    row.tokens, row.generated_tokens = st.tokens(s, row.kind, run_id)
    row.finished_at = _now()


def _remember(s: Session, stage: StageDef, run_id: int, inputs: st.Inputs) -> None:
    inputs.runs[stage.key] = run_id
    if stage.kind == "refine":
        inputs.refined_version = s.get_one(Codebook, run_id).version


def _stage_status(row_id: int, status: str, seconds: float | None, note: str | None = None) -> None:
    def write(s: Session) -> None:
        row = s.get_one(ExperimentStage, row_id)
        row.status, row.note = status, note
        if seconds is not None:
            row.seconds = seconds

    write_with_retry(write, what="stage status")


__all__ = ["StageClock", "StageContext", "execute_experiment", "run_experiment_job"]
