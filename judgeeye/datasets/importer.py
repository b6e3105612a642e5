"""Writing a parsed dataset into the store as one Project with its Items.

Everything happens in the caller's session and transaction: either the project and all its
items are committed together or nothing is. Items go in with bulk ``INSERT`` statements so that
tens of thousands import in seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from judgeeye.datasets.errors import DatasetError
from judgeeye.datasets.gold import (
    STATUS_TEXT,
    GoldOutcome,
    GoldRule,
    GoldStats,
    apply_gold,
    compute_gold,
)
from judgeeye.datasets.model import ParsedDataset
from judgeeye.datasets.splits import SplitRule, assign_splits, split_counts
from judgeeye.datasets.values import fmt_number
from judgeeye.store.models import Item, Project

#: Rows per INSERT statement (bounded memory per statement, still few round trips).
BATCH_SIZE = 5000
MAX_PROJECT_NAME = 200
MAX_PREVIEW_RATERS = 8
#: How the preview shows a value that is not there (a rating not given, no gold label).
MISSING = "—"


@dataclass
class ImportReport:
    """What an import wrote: the project id, item counts, gold statistics and split sizes.

    ``group_by`` says what the splits kept together (None: items were split one by one) and
    ``n_groups`` how many such groups the gold items form.
    """

    project_id: int
    project_name: str
    n_items: int
    gold: GoldStats
    splits: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    group_by: str | None = None
    n_groups: int = 0

    @property
    def n_gold(self) -> int:
        return self.gold.n_gold

    @property
    def n_dropped(self) -> int:
        return self.gold.n_dropped

    @property
    def n_no_rating(self) -> int:
        return self.gold.n_no_rating

    def to_dict(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "project_name": self.project_name,
            "n_items": self.n_items,
            "gold": self.gold.to_dict(),
            "splits": dict(self.splits),
            "group_by": self.group_by,
            "n_groups": self.n_groups,
            "seconds": round(self.seconds, 3),
        }


def _check_name(session: Session, name: str) -> str:
    clean = (name or "").strip()
    if not clean:
        raise DatasetError("the project name is empty", field="project")
    if len(clean) > MAX_PROJECT_NAME:
        raise DatasetError(
            f"the project name is longer than {MAX_PROJECT_NAME} characters", field="project"
        )
    if session.scalar(select(Project.id).where(Project.name == clean)) is not None:
        raise DatasetError(f"a project named '{clean}' already exists", field="project")
    return clean


def _check_items(dataset: ParsedDataset) -> None:
    if not dataset.items:
        raise DatasetError("the dataset has no items", file=dataset.source_file)
    seen: set[str] = set()
    for item in dataset.items:
        if item.external_id in seen:
            raise DatasetError(
                f"duplicate id '{item.external_id}'", file=dataset.source_file, field="external_id"
            )
        seen.add(item.external_id)


def import_dataset(
    session: Session,
    dataset: ParsedDataset,
    *,
    project_name: str,
    gold_rule: GoldRule | None = None,
    split_rule: SplitRule | None = None,
) -> ImportReport:
    """Create a project from ``dataset`` with gold labels and splits, in ``session``.

    The caller commits (e.g. ``with session_scope() as s: import_dataset(s, ...)``); on any
    error the caller's rollback leaves the database as it was. An existing project name is a
    :class:`DatasetError` on field 'project'.
    """
    started = time.perf_counter()
    gold_rule = gold_rule or GoldRule()
    split_rule = split_rule or SplitRule()
    name = _check_name(session, project_name)
    _check_items(dataset)

    outcome = apply_gold(dataset, gold_rule)
    pairs = zip(dataset.items, outcome.results)
    gold = [(it, r.gold) for it, r in pairs if r.status == "gold"]
    gold_ids = [it.external_id for it, _ in gold]
    gold_labels = [label for _, label in gold]
    groups = None
    if dataset.group_by is not None:  # an item without a group is a group of its own
        groups = [it.external_id if it.group is None else it.group for it, _ in gold]
    splits = assign_splits(gold_ids, gold_labels, split_rule, groups)  # type: ignore[arg-type]

    project = Project(
        name=name,
        task=dataset.task,
        dimension=dataset.dimension,
        generation_type=dataset.generation_type,
        scale_min=int(dataset.scale_min),
        scale_max=int(dataset.scale_max),
        text_fields=list(dataset.text_fields),
        source={
            "file": dataset.source_file,
            "loader": dataset.loader,
            "format": dataset.format,
            "label_kind": dataset.label_kind,
            "group_by": dataset.group_by,
            "meta": _jsonable(dataset.meta),
        },
        gold_rule={**gold_rule.model_dump(), "split": split_rule.model_dump()},
    )
    session.add(project)
    session.flush()

    rows = _item_rows(project.id, dataset, outcome, splits)
    # render_nulls: keep None values in the parameters so every row has the same keys and the
    # ORM sends one executemany per batch (otherwise it splits at every change of None-pattern).
    stmt = insert(Item).execution_options(render_nulls=True)
    for start in range(0, len(rows), BATCH_SIZE):
        session.execute(stmt, rows[start : start + BATCH_SIZE])
    session.flush()

    return ImportReport(
        project_id=project.id,
        project_name=name,
        n_items=len(rows),
        gold=outcome.stats,
        splits=split_counts(splits.values()),
        seconds=time.perf_counter() - started,
        group_by=dataset.group_by,
        n_groups=len(set(groups)) if groups is not None else len(gold_ids),
    )


def _item_rows(
    project_id: int, dataset: ParsedDataset, outcome: GoldOutcome, splits: dict[str, str]
) -> list[dict[str, Any]]:
    return [
        {
            "project_id": project_id,
            "external_id": item.external_id,
            "fields": item.fields,
            "ratings": item.ratings,
            "gold": res.gold,
            "rating_std": res.std,
            "gold_status": res.status,
            "split": splits.get(item.external_id),
        }
        for item, res in zip(dataset.items, outcome.results)
    ]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def preview(
    dataset: ParsedDataset,
    gold_rule: GoldRule | None = None,
    *,
    n: int = 20,
    max_chars: int = 120,
) -> pd.DataFrame:
    """The first ``n`` items as the import page shows them: id, texts (shortened), every rater's
    rating, and the gold label, raters' std and status the import would give them. Every cell
    is text a person reads ("—" where a rating or label is absent, statuses in words)."""
    rule = gold_rule or GoldRule()
    shown = dataset.items[:n]
    raters = list(dict.fromkeys(r for item in shown for r in item.ratings))
    if len(raters) > MAX_PREVIEW_RATERS:  # e.g. HANNA worker ids: one column would not fit
        raters = []
    records = []
    for item in shown:
        res = compute_gold(item.ratings, rule)
        rec: dict[str, str] = {"id": item.external_id}
        for f in dataset.text_fields:
            text = item.fields.get(f, "")
            rec[f] = text if len(text) <= max_chars else text[: max_chars - 1] + "…"
        for r in raters:
            rec[r] = _number(item.ratings.get(r))
        if not raters:
            rec["ratings"] = ", ".join(f"{k}: {fmt_number(v)}" for k, v in item.ratings.items())
        rec["gold"] = _number(res.gold)
        rec["raters' std"] = MISSING if res.std is None else f"{res.std:.2f}"
        rec["status"] = STATUS_TEXT[res.status]
        records.append(rec)
    columns = ["id", *dataset.text_fields, *(raters or ["ratings"]), "gold", "raters' std", "status"]
    return pd.DataFrame.from_records(records, columns=columns)


def _number(value: float | None) -> str:
    return MISSING if value is None else fmt_number(value)
