"""Creating, starting, resuming and listing experiments: what the Experiments page and the CLI share.

An experiment is created with its whole grid (one stage row each, in running order) and the
record of its inputs (dataset version, split seed, codebook versions, engines, seeds), then worked
by one job of kind ``experiment`` (:mod:`judgeeye.experiments.runner`). Resuming queues a new job
that continues from the store: stages that are done stay done, a stage's recorded run is resumed.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from judgeeye.auth.roles import Actor, require
from judgeeye.codebook import current_version, get_version
from judgeeye.experiments import stages as st
from judgeeye.experiments.grid import stages as grid_stages
from judgeeye.experiments.settings import ExperimentSettings
from judgeeye.jobs import current_job, queue_run_job, requeue_run, start_job
from judgeeye.store import (
    Codebook,
    Experiment,
    ExperimentStage,
    Item,
    Job,
    Project,
    data_dir,
    session_scope,
)

JOB_KIND = "experiment"


def experiments_dir(experiment_id: int) -> Path:
    return data_dir() / "experiments" / f"experiment-{experiment_id}"


def report_path(experiment_id: int) -> Path:
    """Where the experiment's HTML report is written when it completes."""
    return experiments_dir(experiment_id) / "report.html"


def resolve(session: Session, project_id: int, settings: ExperimentSettings) -> ExperimentSettings:
    """The settings with what "default" means today written in (the original codebook version),
    checked against the project (versions exist) and the library (every stage's settings build)."""
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"no project {project_id}")
    if settings.codebook_version is None:
        codebook = current_version(session, project_id)
        if codebook is None:
            raise LookupError(f"project {project.name!r} has no codebook; import one first")
        settings = settings.model_copy(update={"codebook_version": codebook.version})
    get_version(session, project_id, settings.original_version)
    if settings.refined_codebook is not None:
        get_version(session, project_id, settings.refined_codebook)
        if settings.refined_codebook == settings.codebook_version:
            raise ValueError(f"the refined codebook (v{settings.refined_codebook}) is the original itself")
    st.check(settings)
    return settings


def codebook_record(row: Codebook) -> dict[str, Any]:
    text = json.dumps([row.instructions, row.rubric, row.output_format], sort_keys=True)
    return {"version": row.version, "id": row.id, "origin": row.origin,
            "sha256": hashlib.sha256(text.encode()).hexdigest()}


def dataset_record(session: Session, project: Project) -> dict[str, Any]:
    """The data an experiment ran on: a version hash over every item's id, gold label, status and
    split, the counts, where it was imported from and the gold and split rules (with the seed)."""
    rows = session.execute(select(Item.external_id, Item.gold, Item.gold_status, Item.split)
                           .where(Item.project_id == project.id).order_by(Item.external_id)).all()
    digest = hashlib.sha256(json.dumps([list(r) for r in rows], default=str).encode()).hexdigest()
    splits = dict(session.execute(select(Item.split, func.count()).where(
        Item.project_id == project.id, Item.gold_status == "gold").group_by(Item.split)).all())
    source = dict(project.source or {})
    return {"version": digest[:16], "items": len(rows), "gold_items": sum(splits.values()),
            "splits": {str(k): int(v) for k, v in splits.items() if k}, "file": Path(str(source.get("file") or "")).name,
            "loader": source.get("loader"), "gold_rule": project.gold_rule or {}}


def _versions() -> dict[str, str]:
    out = {}
    for name in ("judgeeye", "torch", "transformers", "peft", "trl", "openai"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def record_inputs(session: Session, project_id: int, settings: ExperimentSettings) -> dict[str, Any]:
    """Everything another machine needs to rerun the experiment exactly."""
    project = session.get_one(Project, project_id)
    dataset = dataset_record(session, project)
    codebooks = {"original": codebook_record(get_version(session, project_id, settings.original_version))}
    if settings.refined_codebook is not None:
        codebooks["refined"] = codebook_record(get_version(session, project_id, settings.refined_codebook))
    sampling = st.sampling_settings(settings)
    engines: dict[str, Any] = {"sampler": st.sampler_engine(settings).model_dump(mode="json"),
                               "base": st.local_engine(settings.base_model).model_dump(mode="json"),
                               "blackbox": [st.blackbox_engine(settings, i).model_dump(mode="json")
                                            for i in range(1, len(settings.blackbox) + 1)]}
    if settings.refines():
        engines["refine"] = st.refine_engine(settings).model_dump(mode="json")
    seeds = {"split": (project.gold_rule or {}).get("split", {}).get("seed"), "sampling": sampling.seed,
             "training": {m: st.training_config(settings, m, None, settings.original_version).seed
                          for m in settings.modes},
             "rating": settings.protocol.seed}
    if settings.refines():
        seeds["refine"] = st.refine_settings(settings, settings.original_version, None).seed
    return {"project": {"id": project.id, "name": project.name, "task": project.task, "dimension": project.dimension,
                        "scale": [project.scale_min, project.scale_max]},
            "dataset": dataset, "split_seed": seeds["split"], "codebooks": codebooks, "engines": engines,
            "seeds": seeds, "protocol": settings.protocol.model_dump(mode="json"), "software": _versions()}


def create_experiment(session: Session, project_id: int, settings: ExperimentSettings, *,
                      name: str | None = None) -> Experiment:
    """A new experiment with its grid of pending stages and the record of its inputs."""
    settings = resolve(session, project_id, settings)
    when = datetime.now(UTC)
    experiment = Experiment(project_id=project_id, preset=settings.preset, settings=settings.model_dump(mode="json"),
                            inputs=record_inputs(session, project_id, settings), status="created",
                            name=(name or f"{settings.preset} · {when:%Y-%m-%d %H:%M}")[:200])
    session.add(experiment)
    session.flush()
    for position, stage in enumerate(grid_stages(settings)):
        session.add(ExperimentStage(experiment_id=experiment.id, key=stage.key, kind=stage.kind, position=position,
                                    status="pending", jobs=[]))
    session.flush()
    return experiment


def launch_experiment(project_id: int, settings: ExperimentSettings, *, actor: Actor, name: str | None = None,
                      start: bool = True) -> tuple[int, int]:
    """Create an experiment and its job, and start the worker; returns (experiment id, job id).
    ``actor`` must hold ``experiment`` (the CLI passes ``Actor.system()``)."""
    require(actor, "experiment")
    with session_scope() as session:
        experiment = create_experiment(session, project_id, settings, name=name)
        experiment_id = experiment.id
        job_id = queue_run_job(session, JOB_KIND, experiment, f"experiment {experiment_id} is already running as")
    if start:
        start_job(job_id)
    return experiment_id, job_id


def resume_experiment(experiment_id: int, *, actor: Actor, start: bool = True) -> int:
    """A new job that does what the experiment is still missing; returns its id."""
    require(actor, "experiment")

    def resumable(experiment: Experiment) -> None:
        if experiment.status == "completed":
            raise RuntimeError(f"experiment {experiment_id} is complete; start a new one to run it again")

    return requeue_run(Experiment, experiment_id, JOB_KIND, "experiment",
                       f"experiment {experiment_id} is already running as", start=start, check=resumable)


def latest_job(session: Session, experiment_id: int) -> Job | None:
    return current_job(session, session.get(Experiment, experiment_id))


def experiment_settings(experiment: Experiment) -> ExperimentSettings:
    return ExperimentSettings.model_validate(experiment.settings)


def stage_rows(session: Session, experiment_id: int) -> list[ExperimentStage]:
    return list(session.scalars(select(ExperimentStage).where(ExperimentStage.experiment_id == experiment_id)
                                .order_by(ExperimentStage.position)).all())


def list_experiments(session: Session, project_id: int | None = None) -> list[Experiment]:
    stmt = select(Experiment).order_by(Experiment.id.desc())
    if project_id is not None:
        stmt = stmt.where(Experiment.project_id == project_id)
    return list(session.scalars(stmt).all())


__all__ = ["JOB_KIND", "create_experiment", "experiment_settings", "experiments_dir", "latest_job",
           "launch_experiment", "list_experiments", "record_inputs", "report_path", "resolve", "resume_experiment",
           "stage_rows"]
