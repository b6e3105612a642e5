"""Planning a training run from its data: optimiser steps, warm-up, validations, patience.

Fixed step counts do not fit every dataset: the paper's batch of 128 gives HANNA complexity's
548 training items about 4 optimiser steps per epoch, so a warm-up of 100 steps and a validation
every 25 steps would leave the learning rate in warm-up for the whole run, validate once, and
make early stopping and "best checkpoint" meaningless. So the run is planned from its rows:

* steps per epoch ``S = ⌈⌈⌈R / W⌉ / b⌉ / g⌉`` for R rows (sequences after packing), W devices,
  b rows per device and step, g accumulation steps (the Trainer's own count);
* optimiser steps ``T = max_steps`` or ``⌈epochs · S⌉``, a cap: early stopping usually ends sooner;
* warm-up ``warmup_steps`` or ``⌈warmup_ratio · T⌉``;
* a validation every ``E = eval_steps`` or ``max(1, ⌊T / evaluations⌋)`` steps, and at the last
  step, so ``⌊T / E⌋`` (+1 when E does not divide T) validations; none without validation items;
* patience ``patience`` or ``patience_evaluations · E`` steps without a better validation τ.

A plan is refused (:class:`PlanRefused`) when it has no rows, a warm-up longer than its steps, or
fewer than :data:`MIN_EVALUATIONS` validations, unless ``config.force``. TRACT has two stages:
stage 1 trains on D_reason, stage 2 on one self-generated trace per gold training item.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from judgeeye.store import Item
from judgeeye.training.config import TrainingConfig

#: fewer validations than this cannot select a checkpoint or stop early
MIN_EVALUATIONS = 3


class PlanRefused(ValueError):
    """The plan cannot train meaningfully (says why and how to go on)."""


@dataclass(frozen=True)
class StagePlan:
    """The numbers of one training stage."""

    stage: str
    rows: int
    world_size: int
    effective_batch: int
    steps_per_epoch: int
    epochs: float
    optimizer_steps: int
    warmup_steps: int
    eval_steps: int
    evaluations: int
    patience: int
    validation_items: int

    def problems(self) -> list[str]:
        where = "" if self.stage == "main" else f"{self.stage}: "
        out = []
        if self.rows == 0:
            out.append(f"{where}no training rows")
            return out
        if self.warmup_steps > self.optimizer_steps:
            out.append(f"{where}the warm-up ({self.warmup_steps} steps) is longer than the run "
                       f"({self.optimizer_steps} steps): the learning rate never reaches its value")
        if self.evaluations < MIN_EVALUATIONS:
            why = ("the validation split has no gold items" if self.validation_items == 0 else
                   f"{self.optimizer_steps} steps with a validation every {self.eval_steps}")
            out.append(f"{where}{self.evaluations} validation{'s' if self.evaluations != 1 else ''} ({why}); "
                       f"choosing a checkpoint and stopping early need at least {MIN_EVALUATIONS}")
        return out

    def warnings(self) -> list[str]:
        where = "" if self.stage == "main" else f"{self.stage}: "
        out = []
        if self.rows and self.warmup_steps == self.optimizer_steps:
            out.append(f"{where}the warm-up covers the whole run: the learning rate rises to the end and "
                       "never decays")
        if 0 < self.rows < self.effective_batch:
            out.append(f"{where}{self.rows} rows are fewer than one batch ({self.effective_batch}): "
                       "every step sees all of them")
        return out


@dataclass
class TrainingPlan:
    """The stages of a run (one, or TRACT's two) and what the plan says about them."""

    mode: str
    preset: str
    stages: list[StagePlan]
    #: why rows are missing (e.g. no traces yet), from loading the data
    notes: list[str] = field(default_factory=list)
    packing: bool = False

    @property
    def first(self) -> StagePlan:
        return self.stages[0]

    def problems(self) -> list[str]:
        """Why the plan is refused: the notes (e.g. no traces yet), then each stage's problems (an
        empty stage's "no training rows" only when no note says why)."""
        stages = [s for s in self.stages if s.rows or not self.notes]
        return [*self.notes, *(p for s in stages for p in s.problems())]

    def warnings(self) -> list[str]:
        out = [w for s in self.stages for w in s.warnings()]
        if self.packing:
            out.append("packing: rows are packed into fewer, longer sequences; the steps are recomputed at launch")
        return out

    @property
    def refused(self) -> bool:
        return bool(self.problems())

    def check(self, force: bool) -> None:
        """Raise :class:`PlanRefused` naming every problem, unless ``force``."""
        problems = self.problems()
        if problems and not force:
            raise PlanRefused("the training plan is refused: " + "; ".join(problems)
                              + ". Change the settings (batch size, epochs, validation interval) or add data; "
                                "to train anyway, use --force (the Train page: 'Train anyway')")

    def to_dict(self) -> dict[str, Any]:
        """The first stage's numbers at the top level (``rows``, ``optimizer_steps``,
        ``warmup_steps``, ``evaluations``, ...), every stage under ``stages``."""
        top = asdict(self.first)
        top.pop("stage")
        return {"mode": self.mode, "preset": self.preset, **top,
                "stages": [asdict(s) for s in self.stages],
                "refused": self.refused, "problems": self.problems(), "warnings": self.warnings()}


def world_size() -> int:
    """Processes training together (``accelerate launch`` sets WORLD_SIZE)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def plan_stage(config: TrainingConfig, rows: int, validation_items: int, *, stage: str = "main",
               world: int | None = None) -> StagePlan:
    """One stage's plan for ``rows`` training rows (see the module docstring)."""
    world = world or world_size()
    if rows <= 0:
        return StagePlan(stage, 0, world, config.effective_batch * world, 0, config.epochs, 0, 0, 0, 0, 0,
                         validation_items)
    batches = math.ceil(math.ceil(rows / world) / config.batch_size)
    per_epoch = max(1, math.ceil(batches / config.grad_accum))
    steps = config.max_steps or math.ceil(config.epochs * per_epoch)
    warmup = config.warmup_steps if config.warmup_steps is not None else math.ceil(config.warmup_ratio * steps)
    every = config.eval_steps or max(1, steps // config.evaluations)
    evaluations = (steps // every + int(steps % every > 0)) if validation_items > 0 else 0
    patience = config.patience or config.patience_evaluations * every
    return StagePlan(stage, rows, world, config.effective_batch * world, per_epoch, config.epochs, steps, warmup,
                     every, evaluations, patience, validation_items)


def count_items(session: Session, project_id: int, split: str, limit: int | None) -> int:
    """Gold items of a split (the first ``limit`` of them), as the runner takes them."""
    n = session.scalar(select(func.count()).select_from(Item).where(
        Item.project_id == project_id, Item.split == split, Item.gold_status == "gold", Item.gold.is_not(None)))
    return min(int(n or 0), limit) if limit else int(n or 0)


def plan_training(session: Session, project_id: int, config: TrainingConfig, *,
                  world: int | None = None) -> TrainingPlan:
    """The plan of a run before launch, from the project's rows as the runner loads them.

    Rows are counted before tokenization: rows longer than ``max_length`` are left out at launch,
    and the runner plans again from the rows it keeps (and refuses there too).
    """
    from judgeeye.training.data import TrainingDataError, load_reason_rows

    notes: list[str] = []
    try:
        rows, _ = load_reason_rows(session, project_id, source=config.source, sampling_run=config.sampling_run)
        n_rows = min(len(rows), config.train_limit) if config.train_limit else len(rows)
    except TrainingDataError as exc:
        n_rows, notes = 0, [str(exc)]
    n_val = count_items(session, project_id, "validation", config.val_limit)
    stages = [plan_stage(config, n_rows, n_val, stage="stage1" if config.mode == "tract" else "main", world=world)]
    if config.mode == "tract":
        n_train = count_items(session, project_id, "train", config.train_limit)
        stages.append(plan_stage(config, n_train, n_val, stage="stage2", world=world))
    return TrainingPlan(config.mode, config.preset, stages, notes, config.packing)


__all__ = ["MIN_EVALUATIONS", "PlanRefused", "StagePlan", "TrainingPlan", "count_items", "plan_stage",
           "plan_training", "world_size"]
