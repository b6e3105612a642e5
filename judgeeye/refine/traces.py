"""The traces refinement reads: the reasoning dataset D_reason, and N traces per rating level.

A :class:`TraceRow` is one item with its settled trace. Rows come from the review export
(``judgeeye.review.export.reason_rows``: human-selected, edited or adjudicated traces, else the
first accepted one), the same source training reads. Only the train split is read by default: the test
split is held out for measuring codebooks, and refinement never reads it.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session


#: refinement never reads these splits (they measure the refined codebook)
HELD_OUT = ("test",)


class TraceSourceError(ValueError):
    """No usable traces, or a split that refinement must not read."""


@dataclass(frozen=True)
class TraceRow:
    """One item of D_reason: its fields, gold level and the trace that reached that level."""

    item_id: int
    fields: dict[str, Any]
    level: int
    text: str
    candidate_id: int | None = None
    external_id: str = ""
    provenance: str = ""


@dataclass
class TraceSet:
    """The rows refinement may use, and where they came from (recorded with the new version)."""

    rows: list[TraceRow]
    source: str
    splits: list[str]
    skipped: dict[str, int] = field(default_factory=dict)

    def levels(self) -> list[int]:
        return sorted({r.level for r in self.rows})

    def describe(self) -> dict[str, Any]:
        counts: dict[int, int] = defaultdict(int)
        for r in self.rows:
            counts[r.level] += 1
        return {"source": self.source, "splits": self.splits, "rows": len(self.rows),
                "per_level": {str(k): v for k, v in sorted(counts.items())}, "skipped": dict(self.skipped)}


def trace_text(trace: str | None, answer: str | None) -> str:
    """The analysis a rater wrote: its reasoning, then its answer (either may be empty)."""
    return "\n\n".join(p for p in ((trace or "").strip(), (answer or "").strip()) if p)


def _level(gold: float | None) -> int | None:
    """A gold label as a rating level; a non-integer median (e.g. 2.5) is no level."""
    if gold is None:
        return None
    value = float(gold)
    return int(value) if value.is_integer() else None


def check_splits(splits: Sequence[str]) -> list[str]:
    splits = list(dict.fromkeys(s.strip() for s in splits if s.strip()))
    if not splits:
        raise TraceSourceError("choose at least one split to read traces from (e.g. train)")
    bad = [s for s in splits if s in HELD_OUT]
    if bad:
        raise TraceSourceError(
            f"refinement must not read the {', '.join(bad)} split: it is held out to measure the "
            "refined codebook; use train (and validation) traces")
    return splits


def rows_from_dicts(records: Iterable[dict[str, Any]], source: str, splits: list[str]) -> TraceSet:
    """TraceRows from export-style dicts (item_id, fields, gold, trace, answer, candidate_id)."""
    rows: list[TraceRow] = []
    skipped: dict[str, int] = defaultdict(int)
    for rec in records:
        level = _level(rec.get("gold"))
        text = trace_text(rec.get("trace"), rec.get("answer"))
        if level is None:
            skipped["non-integer gold"] += 1
            continue
        if not text:
            skipped["empty trace"] += 1
            continue
        rows.append(TraceRow(item_id=int(rec["item_id"]), fields=dict(rec.get("fields") or {}), level=level,
                             text=text, candidate_id=rec.get("candidate_id"),
                             external_id=str(rec.get("external_id") or rec["item_id"]),
                             provenance=str(rec.get("provenance") or "")))
    return TraceSet(rows, source, splits, dict(skipped))


def load_trace_set(session: Session, project_id: int, splits: Sequence[str] = ("train",)) -> TraceSet:
    """D_reason of a project for refinement: the review export, which gives reviewed traces and,
    for items nobody reviewed, the first accepted candidate."""
    from judgeeye.review.export import reason_rows

    chosen = check_splits(splits)
    records, _summary = reason_rows(session, project_id, splits=chosen)
    return rows_from_dicts(records, "reasoning dataset (review export)", chosen)


def select_per_level(rows: Sequence[TraceRow], n: int, *, seed: int = 0, purpose: str = "",
                     levels: Sequence[int] | None = None) -> dict[int, list[TraceRow]]:
    """Up to ``n`` rows per rating level, drawn at random (seeded, so a resume draws the same)."""
    if n < 1:
        raise ValueError(f"traces per level must be at least 1, got {n}")
    by_level: dict[int, list[TraceRow]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r.level, r.item_id)):
        by_level[row.level].append(row)
    wanted = sorted(by_level) if levels is None else [lv for lv in levels if lv in by_level]
    out: dict[int, list[TraceRow]] = {}
    for level in wanted:
        pool = by_level[level]
        rng = random.Random(f"{seed}:{purpose}:{level}")
        out[level] = pool if len(pool) <= n else sorted(rng.sample(pool, n), key=lambda r: r.item_id)
    return out
