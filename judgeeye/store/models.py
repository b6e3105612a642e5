"""SQLAlchemy 2 models: the whole JudgeEye data model (DESIGN.md "Data model").

Schema changes go through Alembic migrations in ``judgeeye/store/migrations``; a test checks
that these models and the migrations agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Project(Base):
    """A rating task on one dimension, e.g. HANNA story complexity on a 1-5 scale."""

    __tablename__ = "project"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    task: Mapped[str] = mapped_column(String(200))
    dimension: Mapped[str] = mapped_column(String(100))
    generation_type: Mapped[str] = mapped_column(String(100), default="text")
    scale_min: Mapped[int] = mapped_column(Integer)
    scale_max: Mapped[int] = mapped_column(Integer)
    text_fields: Mapped[list[Any]] = mapped_column(default=list)
    source: Mapped[dict[str, Any]] = mapped_column(default=dict)
    gold_rule: Mapped[dict[str, Any]] = mapped_column(default=dict)
    current_codebook_id: Mapped[int | None] = mapped_column(
        ForeignKey("codebook.id", use_alter=True, ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    items: Mapped[list[Item]] = relationship(back_populates="project", cascade="all, delete-orphan")


class Item(Base):
    """One thing to rate, with every annotator's rating and the derived gold label."""

    __tablename__ = "item"
    __table_args__ = (
        UniqueConstraint("project_id", "external_id"),
        Index("ix_item_project_split", "project_id", "split"),
        Index("ix_item_project_gold_status", "project_id", "gold_status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(200))
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ratings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    gold: Mapped[float | None] = mapped_column(Float, nullable=True)
    rating_std: Mapped[float | None] = mapped_column(Float, nullable=True)
    # "gold" (usable), "dropped_disagreement" (std above the threshold), "no_rating"
    gold_status: Mapped[str] = mapped_column(String(40), default="gold")
    split: Mapped[str | None] = mapped_column(String(20), nullable=True)

    project: Mapped[Project] = relationship(back_populates="items")


class Codebook(Base):
    """One immutable version of a project's annotation codebook."""

    __tablename__ = "codebook"
    __table_args__ = (UniqueConstraint("project_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("codebook.id"), nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    instructions: Mapped[str] = mapped_column(Text)
    rubric: Mapped[list[Any]] = mapped_column(default=list)
    output_format: Mapped[str] = mapped_column(Text)
    #: rubric text that is no level: a lead-in after the "Rating scale:" header, notes after the levels
    rubric_intro: Mapped[str] = mapped_column(Text, default="", server_default="")
    rubric_notes: Mapped[str] = mapped_column(Text, default="", server_default="")
    #: instructions written after the rubric (kept there, not moved before it)
    instructions_after: Mapped[str] = mapped_column(Text, default="", server_default="")
    origin: Mapped[str] = mapped_column(String(60), default="original")
    author: Mapped[str | None] = mapped_column(String(200), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Annotator(Base):
    """A person using JudgeEye; role decides what they may do."""

    __tablename__ = "annotator"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20), default="annotator")
    password_hash: Mapped[str | None] = mapped_column(String(300), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    """Long work run by a worker subprocess; the store is the single source of its state."""

    __tablename__ = "job"
    __table_args__ = (Index("ix_job_status", "status"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), nullable=True
    )
    # queued, running, succeeded, failed, cancelled
    status: Mapped[str] = mapped_column(String(20), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    log_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @property
    def wall_seconds(self) -> float | None:
        """Start to end of a job that has both (what finished runs' speed is measured by)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return max((self.finished_at - self.started_at).total_seconds(), 0.0)


class SamplingRun(Base):
    """k traces per item from one engine under one codebook version."""

    __tablename__ = "sampling_run"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    codebook_id: Mapped[int] = mapped_column(ForeignKey("codebook.id"))
    engine: Mapped[dict[str, Any]] = mapped_column(default=dict)
    k: Mapped[int] = mapped_column(Integer, default=16)
    temperature: Mapped[float] = mapped_column(Float, default=1.0)
    top_p: Mapped[float] = mapped_column(Float, default=1.0)
    max_tokens: Mapped[int] = mapped_column(Integer, default=1024)
    splits: Mapped[list[Any]] = mapped_column(default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="created")
    job_id: Mapped[int | None] = mapped_column(ForeignKey("job.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Candidate(Base):
    """One sampled trace; written the moment it is generated, never rewritten."""

    __tablename__ = "candidate"
    __table_args__ = (
        UniqueConstraint("run_id", "item_id", "target", "sample_index"),
        Index("ix_candidate_run_accepted", "run_id", "accepted"),
        Index("ix_candidate_item", "item_id"),
        # a run's newest candidate in O(log n): the agreement page's cache fingerprint
        Index("ix_candidate_run_id_id", "run_id", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("sampling_run.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    # "gold" or "annotator:<name>" (per-annotator traces, paper section 5)
    target: Mapped[str] = mapped_column(String(120), default="gold")
    target_label: Mapped[float | None] = mapped_column(Float, nullable=True)
    sample_index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20), default="sampled")  # sampled | post_hoc
    reasoning: Mapped[str] = mapped_column(Text, default="")
    answer: Mapped[str] = mapped_column(Text, default="")
    predicted: Mapped[float | None] = mapped_column(Float, nullable=True)
    parse_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    score_dist: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # which acceptance mode gave ``predicted``: "written" (the trace wrote it, parsed) or
    # "forced_cue" (read after the answer cue appended to a trace that wrote none); None: no rating
    acceptance_mode: Mapped[str | None] = mapped_column(String(20), nullable=True)
    accepted: Mapped[bool] = mapped_column(Boolean, default=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    finish_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Selection(Base):
    """An annotator's current choice for an item (select-and-validate)."""

    __tablename__ = "selection"
    __table_args__ = (UniqueConstraint("item_id", "annotator_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotator.id", ondelete="CASCADE"))
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidate.id"), nullable=True)
    edited_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    # pending, draft, submitted, skipped
    state: Mapped[str] = mapped_column(String(20), default="pending")
    codebook_id: Mapped[int | None] = mapped_column(ForeignKey("codebook.id"), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # chosen (candidate_id), none_fits, edited (edited_text from candidate_id); None while pending
    verdict: Mapped[str | None] = mapped_column(String(20), nullable=True)
    # word ops turning the source trace into edited_text (judgeeye.codebook.diff.word_ops)
    edit_diff: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # the review round that last handed the item out; a plain integer, not a foreign key, so
    # the selection table never has to be rebuilt (SQLite) under its event log
    round_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class SelectionEvent(Base):
    """Append-only log of every change to a selection."""

    __tablename__ = "selection_event"
    __table_args__ = (Index("ix_selection_event_selection", "selection_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    selection_id: Mapped[int] = mapped_column(ForeignKey("selection.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotator.id"))
    action: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Critique(Base):
    """A critique sentence extracted from a trace, with its embedding and cluster."""

    __tablename__ = "critique"
    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int | None] = mapped_column(
        ForeignKey("candidate.id", ondelete="CASCADE"), nullable=True
    )
    codebook_id: Mapped[int | None] = mapped_column(ForeignKey("codebook.id"), nullable=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("job.id"), nullable=True)
    level: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    cluster: Mapped[int | None] = mapped_column(Integer, nullable=True)
    representative: Mapped[bool] = mapped_column(Boolean, default=False)
    x: Mapped[float | None] = mapped_column(Float, nullable=True)
    y: Mapped[float | None] = mapped_column(Float, nullable=True)


class CritiqueMap(Base):
    """How a refinement's critiques were embedded and laid out on the critique map.

    The coordinates themselves live on the critique rows (``x``, ``y``); this row says they are
    complete and what made them, so the map is read from the store and never computed in a page."""

    __tablename__ = "critique_map"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), unique=True)
    embedder: Mapped[str] = mapped_column(String(300))
    dimensions: Mapped[int] = mapped_column(Integer)
    #: "tsne", "umap" or "pca"
    method: Mapped[str] = mapped_column(String(20))
    #: PCA components the layout started from (None: the embeddings themselves)
    pca_components: Mapped[int | None] = mapped_column(Integer, nullable=True)
    points: Mapped[int] = mapped_column(Integer)
    #: seconds per stage: embed, cluster, project
    seconds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrainingRun(Base):
    """A LoRA fine-tuning run (SFT, labels-only or TRACT) and where its adapter lives."""

    __tablename__ = "training_run"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="created")
    adapter_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    best_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    best_metric: Mapped[float | None] = mapped_column(Float, nullable=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("job.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrainingMetric(Base):
    """One logged value (loss, learning rate, validation tau) at one step."""

    __tablename__ = "training_metric"
    __table_args__ = (
        UniqueConstraint("run_id", "step", "name"),
        Index("ix_training_metric_run", "run_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("training_run.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(60))
    value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RaterRun(Base):
    """One rater (engine + model + codebook + read-out) over one split."""

    __tablename__ = "rater_run"
    __table_args__ = (Index("ix_rater_run_project", "project_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    codebook_id: Mapped[int] = mapped_column(ForeignKey("codebook.id"))
    name: Mapped[str] = mapped_column(String(200))
    rater: Mapped[dict[str, Any]] = mapped_column(default=dict)
    split: Mapped[str] = mapped_column(String(20), default="test")
    status: Mapped[str] = mapped_column(String(20), default="created")
    job_id: Mapped[int | None] = mapped_column(ForeignKey("job.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Prediction(Base):
    """A rater's rating of one item, with its reasoning."""

    __tablename__ = "prediction"
    __table_args__ = (
        UniqueConstraint("rater_run_id", "item_id"),
        Index("ix_prediction_item", "item_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    rater_run_id: Mapped[int] = mapped_column(ForeignKey("rater_run.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    reasoning: Mapped[str] = mapped_column(Text, default="")
    answer: Mapped[str] = mapped_column(Text, default="")
    rating: Mapped[float | None] = mapped_column(Float, nullable=True)
    score_dist: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    parse_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    #: prompt tokens of the request (what an API rater is billed for besides the completion);
    #: None for predictions written before this was recorded
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReviewRound(Base):
    """A lead's review round over one sampling run: which annotators, how much overlap."""

    __tablename__ = "review_round"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    run_id: Mapped[int] = mapped_column(ForeignKey("sampling_run.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | closed
    overlap: Mapped[int] = mapped_column(Integer, default=1)
    high_overlap: Mapped[int] = mapped_column(Integer, default=2)
    high_overlap_share: Mapped[float] = mapped_column(Float, default=0.0)
    include_unaccepted: Mapped[bool] = mapped_column(Boolean, default=False)
    max_shown: Mapped[int] = mapped_column(Integer, default=9)
    lease_minutes: Mapped[int] = mapped_column(Integer, default=30)
    annotator_ids: Mapped[list[Any]] = mapped_column(default=list)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("annotator.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReviewTask(Base):
    """One item of a round and how many submitted reviews it needs to be done."""

    __tablename__ = "review_task"
    __table_args__ = (UniqueConstraint("round_id", "item_id"), Index("ix_review_task_item", "item_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("review_round.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    required: Mapped[int] = mapped_column(Integer, default=1)
    position: Mapped[int] = mapped_column(Integer, default=0)


class ReviewAssignment(Base):
    """An item handed to one annotator in a round; the lease keeps others off it until it expires."""

    __tablename__ = "review_assignment"
    __table_args__ = (
        UniqueConstraint("round_id", "item_id", "annotator_id"),
        Index("ix_review_assignment_round_annotator", "round_id", "annotator_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("review_round.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotator.id", ondelete="CASCADE"))
    lease_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Adjudication(Base):
    """A lead's settlement of an item the reviewers disagreed on; the newest one wins."""

    __tablename__ = "adjudication"
    __table_args__ = (Index("ix_adjudication_item", "item_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    round_id: Mapped[int | None] = mapped_column(
        ForeignKey("review_round.id", ondelete="SET NULL"), nullable=True
    )
    lead_id: Mapped[int] = mapped_column(ForeignKey("annotator.id"))
    verdict: Mapped[str] = mapped_column(String(20))  # chosen | edited | none_fits
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidate.id"), nullable=True)
    edited_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    codebook_id: Mapped[int | None] = mapped_column(ForeignKey("codebook.id"), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StatsCache(Base):
    """Aggregates that are slow at scale (a rater run's bootstrap intervals, a sampling run's
    acceptance statistics), stored under a key and valid while their fingerprint still holds."""

    __tablename__ = "stats_cache"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[dict[str, Any]] = mapped_column(default=dict)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Experiment(Base):
    """The paper's protocol on one project as one resumable run: a grid of stages (sampling,
    refinement, training, rater runs) and the report comparing the raters it produced."""

    __tablename__ = "experiment"
    __table_args__ = (Index("ix_experiment_project", "project_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    preset: Mapped[str] = mapped_column(String(40))
    #: the resolved settings (judgeeye.experiments.settings.ExperimentSettings)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: every input another machine needs to rerun it: dataset version, split, codebooks, engines, seeds
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # created, running, completed, failed, cancelled
    status: Mapped[str] = mapped_column(String(20), default="created")
    job_id: Mapped[int | None] = mapped_column(ForeignKey("job.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ExperimentStage(Base):
    """One cell of an experiment's grid and the run that does it (``run_id`` points into the
    table its ``kind`` names: sampling_run, training_run, rater_run, or codebook for a
    refinement). Created with the experiment; the run id is written in the same transaction
    that creates the run, so a killed experiment never loses or doubles one."""

    __tablename__ = "experiment_stage"
    __table_args__ = (
        UniqueConstraint("experiment_id", "key"),
        Index("ix_experiment_stage_run", "kind", "run_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(80))
    position: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(20))  # sample | refine | train | rate
    #: sha256 of the settings that decide the run's output (``payload``); equal keys reuse a run
    cache_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reused: Mapped[bool] = mapped_column(Boolean, default=False)
    # pending, running, done, failed, skipped
    status: Mapped[str] = mapped_column(String(20), default="pending")
    #: wall time this stage's run cost (for a reused run: what it cost when it was made)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: tokens the run processed (prompts and completions; trained tokens for a training run)
    tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: tokens it generated (completions)
    generated_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: experiment jobs that worked this stage, oldest first
    jobs: Mapped[list[Any]] = mapped_column(default=list)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
