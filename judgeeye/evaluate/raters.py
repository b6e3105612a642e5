"""Raters and rater runs: what rates (engine + codebook + read-out) and which items it rates.

A rater is an engine (model, optional LoRA adapter) prompted with one codebook version, and a
read-out that turns its completion into a rating: the rating it wrote (``parsed``), or TRACT's
CoT-RAIL score read-out after its trace, either the most probable level (``argmax``) or the
expected score Σ p(y)·y (``expected``). The spec is stored on the run, so a resumed run rates
exactly as it started.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from judgeeye.codebook import current_version, get_version
from judgeeye.engines import AnyEngineConfig, EngineConfig
from judgeeye.store import Codebook, Item, Project, RaterRun

Readout = Literal["parsed", "argmax", "expected"]
READOUTS: tuple[str, ...] = ("parsed", "argmax", "expected")
READOUT_LABELS: dict[str, str] = {"parsed": "parsed (the rating it wrote)", "argmax": "argmax (most probable level)",
                                  "expected": "expected (CoT-RAIL)"}
SPLITS: tuple[str, ...] = ("train", "validation", "test")


class RaterSpec(BaseModel):
    """Everything that defines a rater and how it samples; stored as ``RaterRun.rater``."""

    model_config = ConfigDict(extra="forbid")

    engine: AnyEngineConfig = Field(default_factory=EngineConfig, title="Engine",
                                    description="The model that rates, and how it runs.")
    readout: Readout = Field("parsed", title="Read-out", json_schema_extra={"labels": READOUT_LABELS},
                             description="parsed: the rating the model wrote; argmax or expected: TRACT's score "
                                         "read-out after the trace (local models only).")
    temperature: float = Field(1.0, ge=0, title="Temperature", json_schema_extra={"step": 0.1},
                               description="Sampling temperature (the paper rates with 1.0, section 4.3).")
    top_p: float = Field(0.95, gt=0, le=1, title="Top-p", json_schema_extra={"step": 0.05},
                         description="Nucleus sampling (the paper rates with 0.95, section 4.3).")
    max_tokens: int = Field(1024, ge=1, title="Max tokens", description="Tokens per rating.")
    seed: int | None = Field(None, title="Seed", json_schema_extra={"none": "none", "advanced": True},
                             description="Seed of the ratings, for engines that take one.")
    limit: int | None = Field(None, ge=1, title="Only the first N items", json_schema_extra={"none": "all"},
                              description="Rate only the first N items of the split (in item order).")

    def check(self) -> None:
        """Score read-outs need token probabilities, which only local engines have."""
        if self.readout != "parsed" and self.engine.kind != "transformers":
            raise ValueError(
                f"read-out {self.readout!r} needs token probabilities, which the {self.engine.kind} "
                "engine cannot give; use readout 'parsed' or a transformers engine")

    def label(self) -> str:
        return f"{self.engine.label()} · {self.readout}"


def parse_rater(text: str, **defaults: object) -> tuple[RaterSpec, int | None, str | None]:
    """Read a CLI rater: ``ENGINE[,key=value...]`` → (spec, codebook version, name).

    ENGINE is an engine spec (``embedded``, ``hf:MODEL``, ``openai:MODEL@URL``); keys are
    ``codebook``, ``readout``, ``name``, ``adapter``, ``temperature``, ``top_p``, ``max_tokens``,
    ``batch_size``, ``concurrency``, ``api_key_env``, ``seed``. ``defaults`` are the command's
    own options, which the keys override.
    """
    head, *pairs = [part.strip() for part in text.split(",")]
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"rater {text!r}: {pair!r} is not key=value")
        options[key.strip().replace("-", "_")] = value.strip()
    known = {"codebook", "readout", "name", "adapter", "temperature", "top_p", "max_tokens",
             "batch_size", "concurrency", "api_key_env", "seed"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"rater {text!r}: unknown option(s) {unknown}; known: {sorted(known)}")
    merged = {k: v for k, v in defaults.items() if v is not None}
    merged.update(options)
    try:
        engine = EngineConfig.parse(
            head, adapter=merged.get("adapter"), api_key_env=merged.get("api_key_env"),
            batch_size=_int(merged.get("batch_size"), "batch_size"),
            max_concurrency=_int(merged.get("concurrency"), "concurrency"))
        spec = RaterSpec(engine=engine, **{key: convert(merged[key], key) for key, convert in _SPEC_KEYS.items()
                                           if merged.get(key) not in (None, "")})
    except ValueError as exc:
        raise ValueError(f"rater {text!r}: {exc}") from None
    spec.check()
    try:
        codebook = _int(merged.get("codebook"), "codebook")
    except ValueError as exc:
        raise ValueError(f"rater {text!r}: {exc}") from None
    name = merged.get("name")
    return spec, codebook, (str(name) if name else None)


def _str(value: object, key: str) -> str:
    return str(value)


def _int(value: object, key: str = "value") -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{key}={value!r} is not a whole number") from None


def _float(value: object, key: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{key}={value!r} is not a number") from None


#: the spec's fields a rater's keys (or the command's options) may set, and how each is read;
#: the ones not given keep RaterSpec's defaults
_SPEC_KEYS: dict[str, Callable[[object, str], object]] = {"readout": _str, "temperature": _float, "top_p": _float, "max_tokens": _int, "seed": _int,
              "limit": _int}


def create_rater_run(
    session: Session,
    project_id: int,
    spec: RaterSpec,
    *,
    split: str = "test",
    codebook_version: int | None = None,
    name: str | None = None,
) -> RaterRun:
    """A new rater run on the given (default: current) codebook version; nothing is rated yet."""
    spec.check()
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"no project {project_id}")
    codebook = (get_version(session, project_id, codebook_version) if codebook_version
                else current_version(session, project_id))
    if codebook is None:
        raise LookupError(f"project {project.name!r} has no codebook; import one first")
    run = RaterRun(
        project_id=project_id, codebook_id=codebook.id, split=split, status="created",
        name=name or f"{spec.label()} · codebook v{codebook.version}",
        rater=spec.model_dump(mode="json"),
    )
    session.add(run)
    session.flush()
    if not run_item_ids(session, run):
        raise ValueError(f"project {project.name!r} has no gold items in the {split!r} split")
    return run


def rater_spec(run: RaterRun) -> RaterSpec:
    return RaterSpec.model_validate(run.rater)


def codebook_version_of(session: Session, run: RaterRun) -> int:
    return int(session.scalar(select(Codebook.version).where(Codebook.id == run.codebook_id)))


def run_items_stmt(run: RaterRun):  # type: ignore[no-untyped-def]
    """The run's items: gold items of its split, in id order, the first ``limit`` of them."""
    stmt = (select(Item).where(Item.project_id == run.project_id, Item.split == run.split,
                               Item.gold_status == "gold", Item.gold.is_not(None))
            .order_by(Item.id))
    limit = (run.rater or {}).get("limit")
    return stmt.limit(int(limit)) if limit else stmt


def run_item_ids(session: Session, run: RaterRun) -> list[int]:
    return list(session.scalars(run_items_stmt(run).with_only_columns(Item.id)).all())
