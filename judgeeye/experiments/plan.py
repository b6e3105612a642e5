"""What launching (or resuming) an experiment will do, before it starts: per stage, whether a run
is reused, resumed or made, how many items, and the tokens and time it should take.

Time comes from measured throughput: the tokens (prompt and generated) per second that finished
runs on the same engine processed in this store (experiment stages, and sampling and rater runs
worked by their own jobs); training from the trained tokens per second of earlier training on
the same base model. Where nothing was measured yet the plan says so and uses a rough guess.
Token counts are upper bounds (every candidate and rating using its whole budget).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from judgeeye.codebook import get_version, render_prompt_text, to_spec
from judgeeye.display import duration
from judgeeye.engines import EngineConfig
from judgeeye.experiments import stages as st
from judgeeye.experiments.grid import StageDef
from judgeeye.experiments.grid import stages as grid_stages
from judgeeye.experiments.launch import resolve, stage_rows
from judgeeye.experiments.settings import ExperimentSettings
from judgeeye.refine.settings import RefineSettings
from judgeeye.store import (
    Candidate,
    Codebook,
    ExperimentStage,
    Item,
    Job,
    Prediction,
    Project,
    RaterRun,
    SamplingRun,
    TrainingMetric,
    TrainingRun,
)
from judgeeye.training.plan import plan_stage

#: rough guesses where nothing was measured yet: tokens processed (prompt and generated) per
#: second by an engine, and tokens trained per second
GUESS_PROCESS = {"transformers": 100.0, "openai": 500.0}
GUESS_TRAIN = 40.0
#: characters per token, for prompt lengths without loading a tokenizer
CHARS_PER_TOKEN = 4.0
#: newest runs a throughput is measured over
MEASURE_RUNS = 20


@dataclass
class Rate:
    """Tokens per second, and what it rests on."""

    per_second: float
    runs: int

    @property
    def measured(self) -> bool:
        return self.runs > 0

    def words(self, what: str) -> str:
        if self.measured:
            return f"measured {self.per_second:.1f} {what}/s over {self.runs} earlier run{'s' if self.runs != 1 else ''}"
        return f"not measured here yet; a rough guess of {self.per_second:.0f} {what}/s"


@dataclass
class StagePlan:
    key: str
    title: str
    kind: str
    #: "reuse" (a finished run with the same settings), "resume" (this experiment's unfinished
    #: run), "new", or "done" (resuming: finished already)
    action: str
    run_id: int | None
    items: int | None
    tokens: int | None
    seconds: float | None
    basis: str = ""
    #: why the training plan would refuse this stage's run, from the items it should get
    problems: tuple[str, ...] = ()

    @property
    def runs_work(self) -> bool:
        return self.action in ("new", "resume")


@dataclass
class Plan:
    stages: list[StagePlan] = field(default_factory=list)

    @property
    def to_run(self) -> list[StagePlan]:
        return [s for s in self.stages if s.runs_work]

    @property
    def reused(self) -> list[StagePlan]:
        return [s for s in self.stages if s.action == "reuse"]

    @property
    def tokens(self) -> int:
        return sum(s.tokens or 0 for s in self.to_run)

    def warnings(self) -> list[str]:
        """What would stop a stage (a training plan refused on the items it should get)."""
        return [f"{s.title}: the training plan would be refused: {'; '.join(s.problems)} (set training.force to "
                "train anyway, or change the training settings)" for s in self.stages if s.problems]

    @property
    def seconds(self) -> float:
        return sum(s.seconds or 0.0 for s in self.to_run)

    def summary(self) -> str:
        """One sentence: how many runs are made, reused, and what they should cost."""
        kinds: dict[str, int] = {}
        for s in self.to_run:
            kinds[s.kind] = kinds.get(s.kind, 0) + 1
        words = {"sample": "sampling", "train": "training", "refine": "refinement", "rate": "rater"}
        made = ", ".join(f"{n} {words[k]}" for k, n in kinds.items()) or "nothing"
        text = (f"{len(self.to_run)} of {len(self.stages)} stages to run in one experiment job ({made}); "
                f"{len(self.reused)} reused")
        if self.to_run:
            text += f"; about {self.tokens:,} tokens generated at most, about {duration(self.seconds)}"
        return text + "."


# ------------------------------------------------------------------------------ measuring


def processing_rate(session: Session, engine: EngineConfig) -> Rate:
    """Tokens (prompt and generated) per wall second of the newest finished runs on this engine:
    on a CPU the long prompts of rating tasks cost as much as the tokens generated."""
    label = engine.label()
    tokens = seconds = 0.0
    runs = 0
    for row in session.scalars(select(ExperimentStage).where(
            ExperimentStage.kind.in_(("sample", "rate")), ExperimentStage.status == "done",
            ExperimentStage.reused.is_(False), ExperimentStage.seconds > 0, ExperimentStage.tokens > 0)
            .order_by(ExperimentStage.id.desc()).limit(200)):
        if runs < MEASURE_RUNS and row.tokens and row.seconds and st.engine_label(row.kind, row.payload) == label:
            tokens, seconds, runs = tokens + row.tokens, seconds + row.seconds, runs + 1
    for model, job_kind, table, owner in ((SamplingRun, "sample", Candidate, Candidate.run_id),
                                          (RaterRun, "evaluate", Prediction, Prediction.rater_run_id)):
        if runs >= MEASURE_RUNS:
            break
        processed = select(func.sum(func.coalesce(table.prompt_tokens, 0) + table.completion_tokens)).where(
            owner == model.id)
        rows = session.execute(
            select(model, Job, processed.scalar_subquery()).join(Job, Job.id == model.job_id)
            .where(Job.kind == job_kind, Job.status == "succeeded", Job.started_at.is_not(None),
                   Job.finished_at.is_not(None)).order_by(model.id.desc()).limit(50)).all()
        for run, job, done in rows:
            config = run.engine if model is SamplingRun else (run.rater or {}).get("engine", {})
            try:
                same = EngineConfig.model_validate(config).label() == label
            except ValueError:
                same = False
            wall = job.wall_seconds or 0.0
            if same and done and wall > 0 and runs < MEASURE_RUNS:
                tokens, seconds, runs = tokens + done, seconds + wall, runs + 1
    if runs and seconds > 0:
        return Rate(tokens / seconds, runs)
    return Rate(GUESS_PROCESS.get(engine.kind, 100.0), 0)


def training_rate(session: Session, base_model: str) -> Rate:
    """Trained tokens per wall second of earlier training runs on this base model."""
    label = st.local_engine(base_model).label()
    tokens = seconds = 0.0
    runs = 0
    for row in session.scalars(select(ExperimentStage).where(
            ExperimentStage.kind == "train", ExperimentStage.status == "done", ExperimentStage.reused.is_(False),
            ExperimentStage.seconds > 0, ExperimentStage.tokens > 0).order_by(ExperimentStage.id.desc()).limit(50)):
        if runs < MEASURE_RUNS and row.tokens and row.seconds and st.engine_label("train", row.payload) == label:
            tokens, seconds, runs = tokens + row.tokens, seconds + row.seconds, runs + 1
    if runs < MEASURE_RUNS:
        rows = session.execute(
            select(TrainingRun, Job).join(Job, Job.id == TrainingRun.job_id)
            .where(Job.kind == "train", Job.status == "succeeded", Job.started_at.is_not(None),
                   Job.finished_at.is_not(None)).order_by(TrainingRun.id.desc()).limit(50)).all()
        for run, job in rows:
            if st.engine_label("train", {"config": run.config}) != label or runs >= MEASURE_RUNS:
                continue
            trained = session.scalar(select(TrainingMetric.value).where(
                TrainingMetric.run_id == run.id, TrainingMetric.name == "num_tokens")
                .order_by(TrainingMetric.step.desc()).limit(1))
            wall = job.wall_seconds or 0.0
            if trained and wall > 0:
                tokens, seconds, runs = tokens + trained, seconds + wall, runs + 1
    if runs and seconds > 0:
        return Rate(tokens / seconds, runs)
    return Rate(GUESS_TRAIN, 0)


# ------------------------------------------------------------------------------ planning


@dataclass
class _Data:
    """Item counts and prompt lengths the estimates need, read once."""

    train_items: int
    val_items: int
    test_items: int
    prompt_tokens: float  # mean prompt tokens of a train item under the original codebook


def _data(session: Session, project_id: int, settings: ExperimentSettings) -> _Data:
    counts = dict(session.execute(select(Item.split, func.count()).where(
        Item.project_id == project_id, Item.gold_status == "gold", Item.gold.is_not(None))
        .group_by(Item.split)).all())
    project = session.get_one(Project, project_id)
    spec = to_spec(get_version(session, project_id, settings.original_version), project)
    sample = session.scalars(select(Item.fields).where(Item.project_id == project_id, Item.split == "train",
                                                       Item.gold_status == "gold").order_by(Item.id).limit(50)).all()
    mean_chars = (sum(len(render_prompt_text(spec, f or {})) for f in sample) / len(sample)) if sample else 0.0
    return _Data(int(counts.get("train", 0)), int(counts.get("validation", 0)), int(counts.get("test", 0)),
                 mean_chars / CHARS_PER_TOKEN)


def _limited(n: int, limit: int | None) -> int:
    return min(n, limit) if limit else n


@dataclass
class _Estimate:
    items: int | None
    tokens: int | None
    seconds: float | None
    basis: str
    problems: tuple[str, ...] = ()


def _estimate(session: Session, stage: StageDef, settings: ExperimentSettings, data: _Data,
              inputs: st.Inputs) -> _Estimate:
    """(items, tokens generated at most, seconds, basis) of one stage; seconds from the tokens it
    processes at most (prompts and generated) at the engine's measured rate."""
    if stage.kind == "sample":
        sampling = st.sampling_settings(settings)
        items = _limited(data.train_items, sampling.limit)
        generated = items * sampling.k * sampling.max_tokens
        rate = processing_rate(session, st.sampler_engine(settings))
        seconds = (generated + items * sampling.k * data.prompt_tokens) / rate.per_second
        return _Estimate(items, generated, seconds, rate.words("tokens"))
    if stage.kind == "train":
        sampling = st.sampling_settings(settings)
        config = st.training_config(settings, str(stage.mode), None, inputs.original_version)
        rows = _limited(_limited(data.train_items, sampling.limit), config.train_limit)  # one trace per item at most
        val_items = _limited(data.val_items, config.val_limit)
        planned = plan_stage(config, rows, val_items)  # the training plan, as the run will make it
        steps, evaluations = planned.optimizer_steps, planned.evaluations
        trained = steps * min(planned.effective_batch, max(rows, 1)) * (data.prompt_tokens + sampling.max_tokens)
        generated = evaluations * val_items * config.protocol.max_tokens
        processed = generated + evaluations * val_items * data.prompt_tokens
        if config.mode == "tract":  # stage 2: one self-generated trace per training item, then train again
            generated += rows * config.self_trace_max_tokens
            processed += rows * (config.self_trace_max_tokens + data.prompt_tokens)
            trained *= 2
        train = training_rate(session, settings.base_model)
        rate = processing_rate(session, st.local_engine(settings.base_model))
        seconds = trained / train.per_second + processed / rate.per_second
        problems = () if config.force else tuple(planned.problems())
        return _Estimate(rows, generated, seconds, f"{steps} optimiser steps, {evaluations} validations; "
                         + train.words("trained tokens"), problems)
    if stage.kind == "refine":
        refine: RefineSettings = st.refine_settings(settings, inputs.original_version, None)
        project = session.get_one(Project, inputs.project_id)
        n_levels = project.scale_max - project.scale_min + 1
        calls = generated = 0
        if refine.mode in ("instruction", "both"):
            calls, generated = calls + 1, generated + refine.max_tokens
        if refine.mode in ("rubric", "both"):
            critiques = n_levels * refine.n_rubric
            calls += critiques + 1
            generated += critiques * refine.critique_max_tokens + refine.max_tokens
        rate = processing_rate(session, refine.engine)
        seconds = (generated + calls * data.prompt_tokens) / rate.per_second
        return _Estimate(calls, generated, seconds, rate.words("tokens"))
    items = _limited(data.test_items, settings.protocol.limit)
    generated = items * settings.protocol.max_tokens
    engine = (st.blackbox_engine(settings, int(stage.rater.source.split(":")[1]))
              if stage.rater and stage.rater.source.startswith("blackbox:") else st.local_engine(settings.base_model))
    rate = processing_rate(session, engine)
    return _Estimate(items, generated, (generated + items * data.prompt_tokens) / rate.per_second, rate.words("tokens"))


def plan_experiment(session: Session, project_id: int, settings: ExperimentSettings, *,
                    experiment_id: int | None = None) -> Plan:
    """What launching ``settings`` on the project (or resuming ``experiment_id``) will do."""
    settings = resolve(session, project_id, settings)
    inputs = st.Inputs(project_id=project_id, settings=settings, original_version=settings.original_version)
    rows = {r.key: r for r in stage_rows(session, experiment_id)} if experiment_id else {}
    data = _data(session, project_id, settings)
    plan = Plan()
    for stage in grid_stages(settings):
        row = rows.get(stage.key)
        estimate = _estimate(session, stage, settings, data, inputs)
        if row is not None and row.status == "done":
            action, run_id = "done", row.run_id
        elif row is not None and row.run_id is not None:
            action, run_id = "resume", row.run_id
        else:
            action, run_id = "new", None
            try:
                built = st.build(session, stage, inputs)
                reused = st.find_reusable(session, built)
                if reused is not None:
                    action, run_id = "reuse", reused
            except st.StageNotReady:
                pass  # it needs a run that is not made yet: nothing with its settings can exist
        if run_id is not None and action in ("done", "reuse"):
            inputs.runs[stage.key] = run_id
            if stage.kind == "refine":
                inputs.refined_version = session.get_one(Codebook, run_id).version
        works = action in ("new", "resume")
        plan.stages.append(StagePlan(stage.key, stage.title, stage.kind, action, run_id, estimate.items,
                                     estimate.tokens if works else None, estimate.seconds if works else None,
                                     estimate.basis, estimate.problems if works else ()))
    return plan


__all__ = ["Plan", "Rate", "StagePlan", "plan_experiment", "processing_rate", "training_rate"]
