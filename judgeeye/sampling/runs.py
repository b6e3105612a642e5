"""Sampling runs: what to sample (project, codebook version, engine, k, splits) and for which items."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from judgeeye.codebook import current_version, get_version
from judgeeye.engines import AnyEngineConfig, EngineConfig
from judgeeye.store import Item, Project, SamplingRun


class SamplingSettings(BaseModel):
    """How a run samples; stored on the run so a resume continues exactly as it started."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(16, ge=1, le=1024)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(1024, ge=1)
    splits: list[str] = Field(default_factory=lambda: ["train"])
    limit: int | None = Field(None, ge=1)
    #: adaptive mode: sample in rounds of `round_size` and stop an item at `target_accepted`
    round_size: int | None = Field(None, ge=1)
    target_accepted: int = Field(1, ge=1)
    #: "gold": verify against the gold label; "annotators": also each annotator's own rating
    targets: Literal["gold", "annotators"] = "gold"
    #: "rejection" (the paper's method) or "post_hoc" (explain the known label, then verify)
    mode: Literal["rejection", "post_hoc"] = "rejection"
    #: read the rating-token distribution after each trace (local engines only)
    readout: bool = True
    seed: int = 0
    #: post hoc mode: the engine that must reach the gold rating from the stripped explanation
    verifier: AnyEngineConfig | None = None

    @property
    def adaptive(self) -> bool:
        return self.round_size is not None

    @model_validator(mode="after")
    def _check(self) -> SamplingSettings:
        if self.adaptive and self.target_accepted > self.k:
            raise ValueError(f"target_accepted ({self.target_accepted}) cannot exceed k ({self.k})")
        bad = set(self.splits) - {"train", "validation", "test"}
        if bad:
            raise ValueError(f"unknown split(s) {sorted(bad)}; use train, validation, test")
        if not self.splits:
            raise ValueError("choose at least one split")
        return self


def create_run(
    session: Session,
    project_id: int,
    engine: EngineConfig,
    settings: SamplingSettings,
    codebook_version: int | None = None,
) -> SamplingRun:
    """A new run on the given (default: current) codebook version."""
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"no project {project_id}")
    codebook = get_version(session, project_id, codebook_version) if codebook_version else current_version(session, project_id)
    if codebook is None:
        raise LookupError(f"project {project.name!r} has no codebook; import one first")
    run = SamplingRun(
        project_id=project_id, codebook_id=codebook.id, engine=engine.model_dump(mode="json"),
        k=settings.k, temperature=settings.temperature, top_p=settings.top_p,
        max_tokens=settings.max_tokens, splits=list(settings.splits),
        settings=settings.model_dump(mode="json"), status="created",
    )
    session.add(run)
    session.flush()
    return run


def run_settings(run: SamplingRun) -> SamplingSettings:
    return SamplingSettings.model_validate(run.settings)


def candidate_kind(settings: SamplingSettings) -> str:
    """Rejection-sampled candidates and post hoc explanations are stored apart."""
    return "post_hoc" if settings.mode == "post_hoc" else "sampled"


def run_items(session: Session, run: SamplingRun) -> list[Item]:
    """The run's items, in a stable order: gold items of its splits (plus items dropped for
    disagreement when sampling per annotator: their individual labels still have traces)."""
    settings = run_settings(run)
    statuses = ["gold", "dropped_disagreement"] if settings.targets == "annotators" else ["gold"]
    stmt = (
        select(Item)
        .where(Item.project_id == run.project_id, Item.gold_status.in_(statuses))
        .where((Item.split.in_(run.splits)) | (Item.split.is_(None) & (Item.gold_status != "gold")))
        .order_by(Item.id)
    )
    if settings.limit:
        stmt = stmt.limit(settings.limit)
    return list(session.scalars(stmt).all())


def targets_of(item: Item, settings: SamplingSettings) -> dict[str, float]:
    """The labels a candidate for this item may be accepted against: 'gold' and, per annotator,
    'annotator:<name>'. A non-integer gold (median of an even number of raters) can never be
    matched by an integer rating and is left out."""
    out: dict[str, float] = {}
    if item.gold is not None and float(item.gold).is_integer():
        out["gold"] = float(item.gold)
    if settings.targets == "annotators":
        for name, value in item.ratings.items():
            out[f"annotator:{name}"] = float(value)
    return out
