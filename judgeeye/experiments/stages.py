"""Where an experiment's stages meet the library, and nowhere else.

For each kind of stage this module builds the library's own settings objects from the
experiment's settings (``SamplingSettings``, ``TrainingConfig``, ``RefineSettings``,
``RaterSpec``), turns them into a payload (the JSON that decides the stage's output) and a cache
key over it, finds a run that already did exactly that, creates a new run, claims a run for the
experiment's job, executes it in this process through the library's resumable runner, and reads
back what it cost. A change of a library interface is handled here alone.

A run made outside any experiment (on the Sample, Train or Agreement page, or with the CLI) is
reused when its stored settings, read back through the same models, give the same payload.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import QueryableAttribute, Session

from judgeeye.codebook import get_version
from judgeeye.engines import EngineConfig
from judgeeye.evaluate.raters import RaterSpec, create_rater_run
from judgeeye.experiments.grid import StageDef, readout_of
from judgeeye.experiments.settings import ExperimentSettings
from judgeeye.jobs import ACTIVE, JobCancelled, JobContext, current_job
from judgeeye.refine.settings import RefineSettings
from judgeeye.sampling.runs import SamplingSettings, check_engine, create_run
from judgeeye.store import (
    Candidate,
    Codebook,
    ExperimentStage,
    Job,
    Prediction,
    RaterRun,
    SamplingRun,
    TrainingMetric,
    TrainingRun,
)
from judgeeye.training.config import TrainingConfig
from judgeeye.training.launch import create_training_run

#: stage kind -> the table its run ids point into (refinements: codebook rows)
RUN_MODELS: dict[str, type] = {"sample": SamplingRun, "train": TrainingRun, "rate": RaterRun, "refine": Codebook}
#: fields of RefineSettings that say who asked, not what is made
REFINE_PERSONAL = {"author", "note", "make_current"}


class StageNotReady(LookupError):
    """A stage whose input (an earlier stage's run) is not there yet."""


# ------------------------------------------------------------------------------- engines


def local_engine(model: str) -> EngineConfig:
    """A transformers engine for "embedded", a Hugging Face id or a model folder."""
    spec = model.strip()
    return EngineConfig.parse(spec if spec in ("", "embedded") or ":" in spec.split("/", 1)[0] else f"hf:{spec}")


def sampler_engine(settings: ExperimentSettings) -> EngineConfig:
    return settings.sampler if settings.sampler is not None else local_engine(settings.base_model)


def blackbox_engine(settings: ExperimentSettings, index: int) -> EngineConfig:
    """The ``index``-th (from 1) black-box rater's engine."""
    return settings.blackbox[index - 1]


def refine_engine(settings: ExperimentSettings) -> EngineConfig:
    return settings.refine_engine if settings.refine_engine is not None else blackbox_engine(settings, 1)


# ------------------------------------------------------------------------------- settings


def _build(model: type[BaseModel], what: str, values: dict[str, Any]) -> Any:
    """The library's settings object, or a ValueError naming the experiment's section."""
    try:
        return model(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or what}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{what} settings: {problems}") from None


#: fields the experiment itself sets in each section, and where the user says them instead
SET_BY_THE_EXPERIMENT: dict[str, dict[str, str]] = {
    "sampling": {"splits": "traces are always inferred on the train split"},
    "training": {"mode": "modes", "base_model": "base_model", "source": "the experiment's sampling run",
                 "sampling_run": "the experiment's sampling run", "codebook_version": "codebook_version",
                 "evaluate_test": "the experiment's rating protocol", "protocol": "protocol"},
    "refine": {"engine": "refine_engine", "codebook_version": "codebook_version",
               "runs": "the experiment's sampling run"},
}


def _own(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """A section's values, refused where they name a field the experiment sets itself."""
    taken = {k: v for k, v in SET_BY_THE_EXPERIMENT[section].items() if k in values}
    if taken:
        raise ValueError("; ".join(f"{section}.{k} is set by the experiment (use {v})" if v in
                                   ExperimentSettings.model_fields else f"{section}.{k} is set by the experiment: {v}"
                                   for k, v in taken.items()))
    return values


def sampling_settings(settings: ExperimentSettings) -> SamplingSettings:
    return _build(SamplingSettings, "sampling", {**_own("sampling", settings.sampling), "splits": ["train"]})


def training_config(settings: ExperimentSettings, mode: str, sampling_run: int | None,
                    codebook_version: int) -> TrainingConfig:
    """The fine-tuning of one mode on the experiment's sampling run, under the original codebook;
    validation rates under the experiment's protocol with the read-out its rater is rated with
    (the checkpoint is chosen the way it is judged); the experiment rates the adapter itself on
    the test split (no test evaluation here)."""
    p = settings.protocol
    protocol = {"temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens,
                "readout": readout_of(settings, mode)}
    return _build(TrainingConfig, "training", {
        **_own("training", settings.training), "mode": mode, "base_model": settings.base_model, "source": "candidates",
        "sampling_run": sampling_run, "codebook_version": codebook_version, "evaluate_test": False,
        "protocol": protocol})


def refine_settings(settings: ExperimentSettings, codebook_version: int, sampling_run: int | None) -> RefineSettings:
    """The refinement of the original codebook from the experiment's traces (None: not sampled yet)."""
    return _build(RefineSettings, "refine", {
        **_own("refine", settings.refine), "engine": refine_engine(settings), "codebook_version": codebook_version,
        "runs": None if sampling_run is None else [sampling_run], "author": "experiment"})


def rater_spec(settings: ExperimentSettings, engine: EngineConfig, readout: str) -> RaterSpec:
    p = settings.protocol
    spec = _build(RaterSpec, "protocol", {"engine": engine, "readout": readout, "temperature": p.temperature,
                                          "top_p": p.top_p, "max_tokens": p.max_tokens, "seed": p.seed,
                                          "limit": p.limit})
    spec.check()
    return spec


def check(settings: ExperimentSettings) -> None:
    """Build every stage's settings once (with placeholder run ids), so bad settings are refused
    before anything is created; raises ValueError naming the section and field."""
    try:
        check_engine(sampling_settings(settings), sampler_engine(settings))
    except ValueError as exc:
        raise ValueError(f"sampling settings: {exc} (sampling.acceptance)") from None
    for mode in settings.modes:
        training_config(settings, mode, 1, 1)
    if settings.refines():
        refine_settings(settings, 1, 1)
    rater_spec(settings, local_engine(settings.base_model), settings.protocol.readout)
    for index in range(1, len(settings.blackbox) + 1):
        rater_spec(settings, blackbox_engine(settings, index), "parsed")


# ------------------------------------------------------------------------------- payloads


@dataclass
class Inputs:
    """What stage payloads depend on besides the settings: the project, the codebook versions
    and the runs of the stages done so far."""

    project_id: int
    settings: ExperimentSettings
    original_version: int
    refined_version: int | None = None
    runs: dict[str, int] = field(default_factory=dict)


def codebook_id(session: Session, project_id: int, version: int) -> int:
    return get_version(session, project_id, version).id


@dataclass
class Built:
    """One stage made concrete: its payload (what decides its output) and how to create its run."""

    kind: str
    project_id: int
    payload: dict[str, Any]
    create: Callable[[Session], int] | None  # None for refinements: they make their version when done

    @property
    def cache_key(self) -> str:
        return cache_key(self.kind, self.project_id, self.payload)


def cache_key(kind: str, project_id: int, payload: dict[str, Any]) -> str:
    text = json.dumps({"kind": kind, "project": project_id, **payload}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def adapter_of(session: Session, training_run_id: int) -> str:
    run = session.get(TrainingRun, training_run_id)
    if run is None or not run.adapter_path:
        raise StageNotReady(f"training run {training_run_id} has no adapter yet")
    return run.adapter_path


def build(session: Session, stage: StageDef, inputs: Inputs) -> Built:
    """The stage's payload and creator; :class:`StageNotReady` while a stage it needs has no run."""
    s, pid = inputs.settings, inputs.project_id
    missing = [need for need in stage.needs if need not in inputs.runs]
    if missing:
        raise StageNotReady(f"{stage.key} needs {', '.join(missing)} first")
    original = inputs.original_version
    if stage.kind == "sample":
        engine, sampling = sampler_engine(s), sampling_settings(s)
        payload = {"codebook_id": codebook_id(session, pid, original), "engine": _json(engine),
                   "settings": _json(sampling)}
        return Built("sample", pid, payload,
                     lambda db: create_run(db, pid, engine, sampling, codebook_version=original).id)
    if stage.kind == "train":
        config = training_config(s, str(stage.mode), inputs.runs["sample"], original)
        return Built("train", pid, {"config": _json(config)}, lambda db: create_training_run(db, pid, config).id)
    if stage.kind == "refine":
        refine = _refine_json(refine_settings(s, original, inputs.runs["sample"]))
        return Built("refine", pid, {"base_version": original, "settings": refine}, None)
    rater = stage.rater
    assert rater is not None
    if rater.source == "base":
        engine = local_engine(s.base_model)
    elif rater.source.startswith("train:"):
        engine = local_engine(s.base_model).model_copy(update={"adapter": adapter_of(session, inputs.runs[rater.source])})
    else:
        engine = blackbox_engine(s, int(rater.source.split(":", 1)[1]))
    if rater.codebook == "refined":
        version = s.refined_codebook if s.refined_codebook is not None else inputs.refined_version
        if version is None:
            raise StageNotReady(f"{stage.key} needs the refined codebook first")
    else:
        version = original
    spec = rater_spec(s, engine, rater.readout)
    split = s.protocol.split
    payload = {"codebook_id": codebook_id(session, pid, version), "split": split, "rater": _json(spec)}
    return Built("rate", pid, payload, lambda db: create_rater_run(
        db, pid, spec, split=split, codebook_version=version, name=f"{rater.title} · experiment").id)


def _json(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


def _refine_json(settings: RefineSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json", exclude=REFINE_PERSONAL)


def require_traces(session: Session, sampling_run: int) -> None:
    """Fine-tuning needs accepted traces; say so plainly when the sampling run has none."""
    accepted = session.scalar(select(func.count()).select_from(Candidate).where(
        Candidate.run_id == sampling_run, Candidate.accepted.is_(True)))
    if not accepted:
        total = session.scalar(select(func.count()).select_from(Candidate).where(Candidate.run_id == sampling_run))
        raise RuntimeError(f"sampling run {sampling_run} accepted no trace ({total} candidates), so there is nothing "
                           "to fine-tune on; start a new experiment with more candidates or items "
                           "(sampling.k, sampling.limit) or a stronger sampler")


# ------------------------------------------------------------------------------- reuse


def find_reusable(session: Session, built: Built) -> int | None:
    """A finished run (or refined version) of the project whose stored settings give the same
    payload; the newest such one."""
    for run_id, payload in _finished(session, built):
        if payload == built.payload:
            return run_id
    return None


def _finished(session: Session, built: Built) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(run id, its payload) of the project's finished runs of this kind, newest first; runs
    whose stored settings no longer validate are skipped."""
    pid, p = built.project_id, built.payload
    if built.kind == "sample":
        samples = (select(SamplingRun).where(SamplingRun.project_id == pid, SamplingRun.status == "completed",
                                             SamplingRun.codebook_id == p["codebook_id"]).order_by(SamplingRun.id.desc()))
        for run in session.scalars(samples):
            yield run.id, _safe(lambda: {
                "codebook_id": run.codebook_id, "engine": _json(EngineConfig.model_validate(run.engine)),
                "settings": _json(SamplingSettings.model_validate(run.settings))})
    elif built.kind == "train":
        trainings = (select(TrainingRun).where(TrainingRun.project_id == pid, TrainingRun.status == "completed",
                                               TrainingRun.adapter_path.is_not(None)).order_by(TrainingRun.id.desc()))
        for training in session.scalars(trainings):
            if training.adapter_path and Path(training.adapter_path).is_dir():
                yield training.id, _safe(lambda: {"config": _json(TrainingConfig.model_validate(training.config))})
    elif built.kind == "rate":
        ratings = (select(RaterRun).where(RaterRun.project_id == pid, RaterRun.status == "completed",
                                          RaterRun.codebook_id == p["codebook_id"], RaterRun.split == p["split"])
                   .order_by(RaterRun.id.desc()))
        for rating in session.scalars(ratings):
            yield rating.id, _safe(lambda: {"codebook_id": rating.codebook_id, "split": rating.split,
                                            "rater": _json(RaterSpec.model_validate(rating.rater))})
    else:
        refined = (select(Codebook).where(Codebook.project_id == pid, Codebook.origin.like("refined%"))
                   .order_by(Codebook.id.desc()))
        for row in session.scalars(refined):
            record = (row.inputs or {}).get("refinement") or {}
            if "settings" in record and "engine" in record:
                yield row.id, _safe(lambda: {
                    "base_version": record.get("base_version"),
                    "settings": _refine_json(RefineSettings.model_validate({**record["settings"], "engine": record["engine"]}))})


def _safe(make: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return make()
    except (ValidationError, ValueError, TypeError, KeyError):
        return None


def refined_version_of(session: Session, project_id: int, jobs: list[int]) -> Codebook | None:
    """The version a refinement worked by any of these experiment jobs wrote (None until one did:
    a refinement writes its version last, in one transaction)."""
    from judgeeye.refine.runner import version_of_job

    for job_id in jobs:
        row = version_of_job(session, project_id, job_id)
        if row is not None:
            return row
    return None


# ------------------------------------------------------------------------------- claiming


def claim(session: Session, kind: str, run_id: int, job_id: int) -> None:
    """Point the run at the experiment's job, so pages show it worked by the experiment and refuse
    to start a second worker on it; refused while another live job works it."""
    if kind == "refine":
        return
    run = session.get(RUN_MODELS[kind], run_id)
    if run is None:
        raise LookupError(f"the {kind} run {run_id} of this experiment is gone")
    other = current_job(session, run)
    if other is not None and other.id != job_id and other.status in ACTIVE:
        raise RuntimeError(f"{_what(kind)} {run_id} is being worked by job {other.id}; "
                           "resume the experiment once that job has ended")
    run.job_id = job_id


def _what(kind: str) -> str:
    return {"sample": "sampling run", "train": "training run", "rate": "rater run", "refine": "codebook"}[kind]


# ------------------------------------------------------------------------------- executing


def execute(kind: str, run_id: int, ctx: JobContext) -> None:
    """Work a run to its end in this process (the library's resumable runners); raises
    :class:`JobCancelled` when stopped and RuntimeError when it could not finish."""
    if kind == "sample":
        from judgeeye.sampling.runner import execute_run

        status = execute_run(run_id, ctx=ctx)
    elif kind == "train":
        from judgeeye.training.runner import execute_training

        status = execute_training(run_id, ctx=ctx)
    elif kind == "rate":
        from judgeeye.evaluate.runner import execute_rater_run

        status = execute_rater_run(run_id, ctx=ctx)
    else:
        raise ValueError(f"refinements are executed by execute_refine, not {kind!r}")
    if status == "cancelled":
        raise JobCancelled()
    if status != "completed":
        raise RuntimeError(f"{_what(kind)} {run_id} ended {status}; resume the experiment to retry what is missing")


def execute_refine(project_id: int, built: Built, ctx: JobContext, earlier_jobs: list[int]) -> int:
    """Refine the original codebook in this process; returns the new version's row id. Critiques
    an interrupted attempt stored (under an earlier experiment job) are adopted, not redone."""
    from judgeeye.refine.runner import refine

    settings = RefineSettings.model_validate({**built.payload["settings"], "author": "experiment"})
    row = refine(project_id, settings, job_id=ctx.job_id, base_version=int(built.payload["base_version"]),
                 resume_from=[j for j in earlier_jobs if j != ctx.job_id], progress=ctx.progress,
                 check_cancel=ctx.check_cancel, log=ctx.log)
    return int(row.id)


# ------------------------------------------------------------------------------- costs


def tokens(session: Session, kind: str, run_id: int) -> tuple[int | None, int | None]:
    """(tokens processed, tokens generated) by a run: prompts and completions of its candidates
    or predictions; for training, the tokens trained on (TRL's count) and nothing generated."""
    if kind == "sample":
        return _summed(session, Candidate.prompt_tokens, Candidate.completion_tokens, Candidate.run_id == run_id)
    if kind == "rate":
        return _summed(session, Prediction.prompt_tokens, Prediction.completion_tokens,
                       Prediction.rater_run_id == run_id)
    if kind == "train":
        total = 0
        for name in ("num_tokens", "stage1/num_tokens"):
            last = session.scalar(select(TrainingMetric.value).where(TrainingMetric.run_id == run_id,
                                                                     TrainingMetric.name == name)
                                  .order_by(TrainingMetric.step.desc()).limit(1))
            total += int(last or 0)
        return (total or None), None
    return None, None


def _summed(session: Session, prompt: QueryableAttribute[Any], completion: QueryableAttribute[Any],
            where: ColumnElement[bool]) -> tuple[int, int]:
    """(prompt + completion tokens, completion tokens) summed over the rows ``where`` selects."""
    p, c = session.execute(select(func.coalesce(func.sum(prompt), 0), func.coalesce(func.sum(completion), 0))
                           .where(where)).one()
    return int(p) + int(c), int(c)


def known_cost(session: Session, kind: str, run_id: int) -> float | None:
    """Wall seconds a run cost when it was made: from the experiment stage that made it, else from
    its own job (a run made on a page or with the CLI); None when neither says."""
    seconds = session.scalar(select(ExperimentStage.seconds).where(
        ExperimentStage.kind == kind, ExperimentStage.run_id == run_id, ExperimentStage.reused.is_(False),
        ExperimentStage.status == "done").order_by(ExperimentStage.id).limit(1))
    if seconds is not None:
        return float(seconds)
    if kind == "refine":
        return None
    run = session.get(RUN_MODELS[kind], run_id)
    job = session.get(Job, run.job_id) if run is not None and run.job_id else None
    if job is not None and job.kind == kind.replace("rate", "evaluate"):
        return job.wall_seconds
    return None


def engine_label(kind: str, payload: dict[str, Any] | None) -> str | None:
    """The engine a stage's payload runs on, in words (the throughput it is measured by)."""
    if not payload:
        return None
    try:
        if kind == "sample":
            return EngineConfig.model_validate(payload["engine"]).label()
        if kind == "rate":
            return EngineConfig.model_validate(payload["rater"]["engine"]).label()
        if kind == "train":
            return local_engine(payload["config"]["base_model"]).label()
        if kind == "refine":
            return EngineConfig.model_validate(payload["settings"]["engine"]).label()
    except (KeyError, TypeError, ValidationError, ValueError):
        return None
    return None


__all__ = [
    "RUN_MODELS",
    "Built",
    "Inputs",
    "StageNotReady",
    "adapter_of",
    "blackbox_engine",
    "build",
    "cache_key",
    "check",
    "claim",
    "codebook_id",
    "engine_label",
    "execute",
    "execute_refine",
    "find_reusable",
    "known_cost",
    "local_engine",
    "rater_spec",
    "refine_engine",
    "refined_version_of",
    "require_traces",
    "sampler_engine",
    "sampling_settings",
    "tokens",
    "training_config",
]
