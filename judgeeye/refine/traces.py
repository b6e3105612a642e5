"""The traces refinement reads: the reasoning dataset D_reason, and N traces per rating level.

A :class:`TraceRow` is one item with its settled trace. Rows come from the review export
(``judgeeye.review.export.reason_rows``: human-selected, edited or adjudicated traces, else the
first accepted one), the same source training reads. Only the train split is read by default: the test
split is held out for measuring codebooks, and refinement never reads it. The traces come from every
sampling run of the project, or from the runs the user chose (recorded with the refined version).
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
    run_id: int | None = None


@dataclass
class TraceSet:
    """The rows refinement may use, and where they came from (recorded with the new version)."""

    rows: list[TraceRow]
    source: str
    splits: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    #: the sampling runs asked for (None: every run of the project)
    runs: list[int] | None = None

    def levels(self) -> list[int]:
        return sorted({r.level for r in self.rows})

    def describe(self) -> dict[str, Any]:
        counts: dict[int, int] = defaultdict(int)
        for r in self.rows:
            counts[r.level] += 1
        per_run: dict[int, int] = defaultdict(int)
        for r in self.rows:
            if r.run_id is not None:
                per_run[r.run_id] += 1
        return {"source": self.source, "splits": self.splits, "runs": self.runs, "rows": len(self.rows),
                "per_level": {str(k): v for k, v in sorted(counts.items())},
                "per_run": {str(k): v for k, v in sorted(per_run.items())}, "skipped": dict(self.skipped)}


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


def rows_from_dicts(records: Iterable[dict[str, Any]], source: str, splits: list[str],
                    runs: list[int] | None = None) -> TraceSet:
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
                             provenance=str(rec.get("provenance") or ""), run_id=rec.get("run_id")))
    return TraceSet(rows, source, splits, dict(skipped), runs)


def check_runs(session: Session, project_id: int, runs: Sequence[int] | None) -> list[int] | None:
    """The chosen sampling runs, each one of the project's (None: every run)."""
    if runs is None:
        return None
    from sqlalchemy import select

    from judgeeye.store import SamplingRun

    chosen = sorted(set(int(r) for r in runs))
    if not chosen:
        raise TraceSourceError("choose at least one sampling run to read traces from (or all runs)")
    own = set(session.scalars(select(SamplingRun.id).where(SamplingRun.project_id == project_id)).all())
    bad = [r for r in chosen if r not in own]
    if bad:
        raise TraceSourceError(f"project {project_id} has no sampling run {', '.join(map(str, bad))}; "
                               f"its runs: {', '.join(map(str, sorted(own))) or 'none yet'}")
    return chosen


def load_trace_set(session: Session, project_id: int, splits: Sequence[str] = ("train",),
                   runs: Sequence[int] | None = None) -> TraceSet:
    """D_reason of a project for refinement: the review export, which gives reviewed traces and,
    for items nobody reviewed, the first accepted candidate; from every sampling run, or from
    ``runs`` only."""
    from judgeeye.review.export import reason_rows

    chosen = check_splits(splits)
    picked = check_runs(session, project_id, runs)
    records, _summary = reason_rows(session, project_id, splits=chosen, runs=picked)
    where = "every sampling run" if picked is None else f"sampling run(s) {', '.join(map(str, picked))}"
    return rows_from_dicts(records, f"reasoning dataset (review export) from {where}", chosen, picked)


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


@dataclass(frozen=True)
class RunChoice:
    """A sampling run a refinement can read traces from, as a user picks it."""

    run_id: int
    label: str


def sampling_runs(session: Session, project_id: int) -> list[RunChoice]:
    """The project's sampling runs, newest first, each with its model, k and accepted traces."""
    from sqlalchemy import func, select

    from judgeeye.store import Candidate, SamplingRun

    accepted = dict(session.execute(
        select(Candidate.run_id, func.count()).join(SamplingRun, SamplingRun.id == Candidate.run_id)
        .where(SamplingRun.project_id == project_id, Candidate.accepted.is_(True))
        .group_by(Candidate.run_id)).all())
    out = []
    for run in session.scalars(select(SamplingRun).where(SamplingRun.project_id == project_id)
                               .order_by(SamplingRun.id.desc())).all():
        model = str((run.engine or {}).get("model") or (run.engine or {}).get("kind") or "model")
        out.append(RunChoice(run.id, f"run {run.id} · {model} · k={run.k} · {accepted.get(run.id, 0)} accepted "
                                     f"· {run.status}"))
    return out
