"""Starting, resuming and browsing training runs: what the Train page and the CLI share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from judgeeye.auth.roles import Actor, require
from judgeeye.codebook import current_version, get_version
from judgeeye.jobs import current_job, queue_run_job, requeue_run, start_job
from judgeeye.store import Candidate, Job, Project, SamplingRun, TrainingMetric, TrainingRun, data_dir, session_scope
from judgeeye.training.config import MODE_LABELS, TrainingConfig
from judgeeye.training.plan import StagePlan, plan_training


def runs_root() -> Path:
    return data_dir() / "training"


def run_dir(run_id: int) -> Path:
    return runs_root() / f"run-{run_id}"


def create_training_run(session: Session, project_id: int, config: TrainingConfig) -> TrainingRun:
    """A new run (nothing trained yet); checks the project and codebook exist."""
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"no project {project_id}")
    if config.codebook_version is not None:
        get_version(session, project_id, config.codebook_version)
    elif current_version(session, project_id) is None:
        raise LookupError(f"project {project.name!r} has no codebook; import one first")
    run = TrainingRun(project_id=project_id, config=config.model_dump(mode="json"), status="created")
    session.add(run)
    session.flush()
    return run


def launch_training(project_id: int, config: TrainingConfig, *, actor: Actor,
                    start: bool = True) -> tuple[int, int]:
    """Create a run and its job and start the worker subprocess; returns (run id, job id).
    ``actor`` must hold ``train`` (the CLI passes ``Actor.system()``). A plan that cannot train
    meaningfully is refused (:class:`judgeeye.training.plan.PlanRefused`) unless ``config.force``;
    nothing is created then."""
    require(actor, "train")
    with session_scope() as session:
        if session.get(Project, project_id) is not None:
            plan_training(session, project_id, config).check(config.force)
        run = create_training_run(session, project_id, config)
        run_id, job_id = run.id, queue_run_job(session, "train", run, f"training run {run.id} is already running as")
    if start:
        start_job(job_id)
    return run_id, job_id


def latest_job(session: Session, run_id: int) -> Job | None:
    return current_job(session, session.get(TrainingRun, run_id))


class NothingToResume(RuntimeError):
    """The run stopped before anything was saved to continue from."""


def resume_point(run_id: int) -> str | None:
    """Where a resumed job would continue, in words, or None when nothing was saved: the test
    evaluation of a trained adapter, a finished TRACT stage or its self-generated traces, or
    the newest complete checkpoint of a stage."""
    import json

    from judgeeye.training.trainer import latest_checkpoint

    folder = run_dir(run_id)
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError):
        state = {}
    stages = state.get("stages", {})
    if state.get("adapter_from"):
        return "the trained adapter (test evaluation)"
    for stage, label in (("stage2", "stage 2"), ("main", ""), ("stage1", "stage 1")):
        checkpoint = latest_checkpoint(folder / stage)
        if checkpoint and not stages.get(stage, {}).get("done"):
            step = checkpoint.rsplit("-", 1)[1]
            return f"the checkpoint at step {step}" + (f" of {label}" if label else "")
    if stages.get("stage1", {}).get("done"):
        return "the end of stage 1 (its self-generated traces and stage 2)"
    return None


def resume_training(run_id: int, *, actor: Actor, start: bool = True) -> int:
    """A new job that continues a stopped, failed or killed run from its last checkpoint.
    Raises :class:`NothingToResume` when the run saved nothing to continue from."""
    require(actor, "train")

    def resumable(run: TrainingRun) -> None:
        if run.status == "completed":
            raise RuntimeError(f"training run {run_id} is complete; start a new run instead")
        if resume_point(run_id) is None:
            raise NothingToResume(f"training run {run_id} stopped before its first checkpoint: there is nothing "
                                  "to resume; start a new run")

    return requeue_run(TrainingRun, run_id, "train", "training run", f"training run {run_id} is already running as",
                       start=start, check=resumable)


def run_plans(run_id: int) -> list[StagePlan]:
    """The plans a run's stages started with (kept in its ``state.json``), in stage order."""
    import json

    try:
        stages = json.loads((run_dir(run_id) / "state.json").read_text()).get("stages", {})
    except (OSError, ValueError):
        return []
    return [StagePlan(**info["plan"]) for info in stages.values() if isinstance(info.get("plan"), dict)]


def tau_text(tau: float | None, n: float | None, parse_failures: float | None) -> str:
    """τ with the n it was computed on and the parse failures left out of it: ``0.412 (n 28, 2
    parse failures)``."""
    shown = "—" if tau is None or tau != tau else f"{tau:.3f}"
    if n is None:
        return shown
    failures = int(parse_failures or 0)
    return f"{shown} (n {int(n)}, {failures} parse failure{'' if failures == 1 else 's'})"


def metrics_of(session: Session, run_id: int) -> dict[str, list[tuple[int, float]]]:
    """Every metric of a run: name -> [(step, value)] in step order."""
    out: dict[str, list[tuple[int, float]]] = {}
    for step, name, value in session.execute(
            select(TrainingMetric.step, TrainingMetric.name, TrainingMetric.value)
            .where(TrainingMetric.run_id == run_id).order_by(TrainingMetric.step)).all():
        out.setdefault(name, []).append((int(step), float(value)))
    return out


def test_results(session: Session, run_id: int) -> dict[str, float]:
    """The run's test comparison (test_*, base_*, p_*), latest value of each."""
    rows = session.execute(select(TrainingMetric.name, TrainingMetric.value, TrainingMetric.step)
                           .where(TrainingMetric.run_id == run_id,
                                  TrainingMetric.name.like("test\\_%", escape="\\")
                                  | TrainingMetric.name.like("base\\_%", escape="\\")
                                  | TrainingMetric.name.like("p\\_%", escape="\\"))
                           .order_by(TrainingMetric.step)).all()
    return {name: float(value) for name, value, _ in rows}


def run_rows(session: Session, project_id: int) -> list[dict[str, Any]]:
    """One row per training run of a project: settings, status, best validation τ, test metrics."""
    rows = []
    for run in session.scalars(select(TrainingRun).where(TrainingRun.project_id == project_id)
                               .order_by(TrainingRun.id.desc())).all():
        cfg = TrainingConfig.model_validate(run.config)
        test = test_results(session, run.id)
        job = latest_job(session, run.id)
        at_best = dict(session.execute(select(TrainingMetric.name, TrainingMetric.value).where(
            TrainingMetric.run_id == run.id, TrainingMetric.step == run.best_step,
            TrainingMetric.name.in_(("val_n", "val_parse_failures")))).all()) if run.best_step is not None else {}
        rows.append({
            "run": run.id, "mode": cfg.mode, "preset": cfg.preset, "base": cfg.base_model, "status": run.status,
            "job": job.status if job else None, "best val τ": run.best_metric, "val n": at_best.get("val_n"),
            "val parse failures": at_best.get("val_parse_failures"), "best step": run.best_step,
            "test τ": test.get("test_tau"), "test n": test.get("test_n"),
            "test parse failures": test.get("test_parse_failures"), "base τ": test.get("base_tau"),
            "base n": test.get("base_n"), "base parse failures": test.get("base_parse_failures"),
            "p(τ)": test.get("p_tau"),
            "test ICC": test.get("test_icc3"), "base ICC": test.get("base_icc3"), "p(ICC)": test.get("p_icc3"),
            "test MSE": test.get("test_mse"), "base MSE": test.get("base_mse"), "p(MSE)": test.get("p_mse"),
            "created": run.created_at.strftime("%Y-%m-%d %H:%M"),
        })
    return rows


@dataclass(frozen=True)
class TrainedRater:
    """A completed training run's adapter: a rater that a rater run loads on its base model."""

    run_id: int
    base_model: str  #: "embedded", or the Hugging Face id or directory the run trained
    adapter: str  #: the adapter's directory
    label: str  #: how a picker names it


def trained_raters(session: Session, project_id: int) -> list[TrainedRater]:
    """The project's completed training runs that installed an adapter, newest first: what the
    Agreement page offers to rate with (a user never has to type the adapter's directory)."""
    out = []
    for run in session.scalars(select(TrainingRun).where(
            TrainingRun.project_id == project_id, TrainingRun.status == "completed",
            TrainingRun.adapter_path.is_not(None)).order_by(TrainingRun.id.desc())).all():
        cfg = TrainingConfig.model_validate(run.config)
        best = "—" if run.best_metric is None else f"{run.best_metric:.3f}"
        base = "embedded model" if cfg.base_model == "embedded" else cfg.base_model
        out.append(TrainedRater(run.id, cfg.base_model, str(run.adapter_path),
                                f"Training run {run.id} · {MODE_LABELS.get(cfg.mode, cfg.mode)} on the {base} · "
                                f"best validation τ {best}"))
    return out


def trace_sources(session: Session, project_id: int) -> list[tuple[int, int]]:
    """Sampling runs of a project with accepted traces: [(run id, accepted candidates)], newest first."""
    return [(int(r), int(n)) for r, n in session.execute(
        select(SamplingRun.id, func.count(Candidate.id))
        .join(Candidate, Candidate.run_id == SamplingRun.id)
        .where(SamplingRun.project_id == project_id, Candidate.accepted.is_(True))
        .group_by(SamplingRun.id).order_by(SamplingRun.id.desc())).all()]


__all__ = ["NothingToResume", "TrainedRater", "create_training_run", "latest_job", "launch_training", "metrics_of",
           "resume_point", "resume_training", "run_dir", "run_plans", "run_rows", "runs_root", "tau_text",
           "test_results", "trace_sources", "trained_raters"]
