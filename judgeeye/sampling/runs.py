"""Sampling runs: what to sample (project, codebook version, engine, k, splits) and for which items."""

from __future__ import annotations

import secrets
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from judgeeye.codebook import current_version, get_version
from judgeeye.engines import EMBEDDED_MODEL, AnyEngineConfig, EngineConfig
from judgeeye.store import Item, Project, SamplingRun


AcceptanceMode = Literal["written", "forced_cue"]
#: how each acceptance mode is called in front of users
ACCEPTANCE_LABELS: dict[str, str] = {"written": "written", "forced_cue": "forced cue"}


class SamplingSettings(BaseModel):
    """How a run samples; stored on the run so a resume continues exactly as it started.

    The defaults are the paper's protocol (k=16, T=1.0, ratings the traces write themselves);
    :data:`PRESETS` names them and the embedded model's demo. The CLI options and the Sample
    page's form read their defaults and help from these fields.
    """

    model_config = ConfigDict(extra="forbid")

    k: int = Field(16, ge=1, le=1024, title="k (candidates per item)", description="Candidate traces per item.")
    temperature: float = Field(1.0, ge=0, title="Temperature", json_schema_extra={"step": 0.1},
                               description="Sampling temperature (0 = greedy).")
    top_p: float = Field(1.0, gt=0, le=1, title="Top-p", json_schema_extra={"step": 0.05},
                         description="Nucleus sampling: keep the most probable tokens up to this probability mass "
                                     "(1 = off).")
    max_tokens: int = Field(1024, ge=1, title="Max tokens", json_schema_extra={"step": 16},
                            description="Token budget per candidate trace.")
    splits: list[str] = Field(default_factory=lambda: ["train"], title="Splits",
                              json_schema_extra={"options": ["train", "validation", "test"]},
                              description="Splits whose items are sampled.")
    limit: int | None = Field(None, ge=1, title="Only the first N items", json_schema_extra={"none": "all"},
                              description="Only the first N items (in the item order).")
    order: Literal["import", "shortest"] = Field(
        "import", title="Item order", json_schema_extra={"labels": {"import": "as imported",
                                                                   "shortest": "shortest first"}},
        description="Item order: import (as the data file lists them), or shortest (the items with the shortest "
                    "texts first: short prompts, for small models on a CPU).")
    round_size: int | None = Field(None, ge=1, title="Adaptive: round size", json_schema_extra={"none": "fixed k"},
                                   description="Adaptive: sample in rounds of this many candidates and stop an item "
                                               "once it has enough accepted traces (unset: all k at once).")
    target_accepted: int = Field(1, ge=1, title="Adaptive: stop at accepted",
                                 description="Adaptive: stop an item once it has this many accepted traces.")
    targets: Literal["gold", "annotators"] = Field(
        "gold", title="Verify against",
        description="gold, or annotators: also keep traces matching each annotator's own rating (section 5).")
    mode: Literal["rejection", "post_hoc"] = Field(
        "rejection", title="Method", json_schema_extra={"labels": {"rejection": "rejection sampling",
                                                                  "post_hoc": "post hoc explanations"}},
        description="rejection (the paper's method: keep the traces whose rating equals the label) or post_hoc "
                    "(explain the known label, strip it, keep what a verifier re-derives).")
    acceptance: AcceptanceMode = Field(
        "written", title="Acceptance mode", json_schema_extra={"labels": ACCEPTANCE_LABELS},
        description=("written: a trace counts only with the rating it wrote itself (the paper's protocol). "
                     "forced cue: a trace that ran out of tokens or wrote no rating gets the answer cue "
                     "appended and is rated by the most probable rating token after it (budget forcing; "
                     "local engines only). Each candidate records which mode gave its rating."))
    readout: bool = Field(True, title="Rating-token read-out", json_schema_extra={"advanced": True},
                          description="Record the rating-token probabilities after each trace (local engines only; "
                                      "forced cue needs them).")
    seed: int | None = Field(None, ge=0, title="Seed", json_schema_extra={"none": "random", "advanced": True},
                             description="Random seed: the same seed and settings give the same candidates; without "
                                         "one, a seed is drawn when the run is created and recorded on it.")
    verifier: AnyEngineConfig | None = Field(None, title="Verifier",
                                             description="Post hoc: the engine that must reach the gold rating from "
                                                         "the stripped explanation (unset: the sampling engine).")

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
        if self.acceptance == "forced_cue" and not self.readout:
            raise ValueError("forced cue reads the rating after the answer cue: it needs the read-out on")
        if self.acceptance == "forced_cue" and self.mode == "post_hoc":
            raise ValueError("post hoc explanations are verified by a rating the verifier writes: use written")
        return self


#: Named starting points for a run; explicit settings override them. "paper" is the protocol of
#: Zhang et al. (k=16, T=1.0, written ratings) for real reasoning models. "embedded demo" is sized
#: for the embedded 135M model on a laptop CPU: a few items, short traces, budget forcing. It
#: shows the pipeline end to end within minutes; its traces are not research data.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "embedded demo": {"k": 4, "max_tokens": 96, "limit": 8, "order": "shortest", "acceptance": "forced_cue"},
}
PRESET_HELP: dict[str, str] = {
    "paper": "The paper's protocol (k=16, temperature 1.0, the rating the trace writes): for real reasoning models.",
    "embedded demo": ("A demo sized for the embedded 135M model on a CPU: the 8 shortest items, k=4, 96 tokens, "
                      "forced cue. It finishes in minutes and yields traces to review; they are not research data."),
}


def preset_settings(name: str, **overrides: Any) -> SamplingSettings:
    """The settings of a named preset, with explicit values (not None) on top."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return SamplingSettings(**{**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})


def default_preset(engine: EngineConfig) -> str:
    """The embedded model gets the demo; any other engine the paper's protocol."""
    return "embedded demo" if engine.kind == "transformers" and engine.model == EMBEDDED_MODEL else "paper"


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
    if settings.acceptance == "forced_cue" and engine.kind != "transformers":
        raise ValueError("forced cue reads token probabilities after the answer cue, which an OpenAI-compatible "
                         "server does not give: use the written acceptance mode with this engine")
    if settings.seed is None:  # recorded, so the run can be repeated
        settings = settings.model_copy(update={"seed": secrets.randbelow(2**31)})
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


def _text_length(item: Item) -> int:
    return sum(len(str(v)) for v in (item.fields or {}).values())


def run_items(session: Session, run: SamplingRun) -> list[Item]:
    """The run's items, in a stable order (import order, or shortest texts first): gold items of
    its splits (plus items dropped for disagreement when sampling per annotator: their individual
    labels still have traces)."""
    settings = run_settings(run)
    statuses = ["gold", "dropped_disagreement"] if settings.targets == "annotators" else ["gold"]
    stmt = (
        select(Item)
        .where(Item.project_id == run.project_id, Item.gold_status.in_(statuses))
        .where((Item.split.in_(run.splits)) | (Item.split.is_(None) & (Item.gold_status != "gold")))
        .order_by(Item.id)
    )
    if settings.order == "shortest":
        items = sorted(session.scalars(stmt).all(), key=lambda i: (_text_length(i), i.id))
        return items[: settings.limit] if settings.limit else items
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
