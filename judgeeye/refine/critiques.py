"""Critiques: short sentences extracted from each trace (Appendix D prompt), stored as rows.

Every trace's critiques are written in one short transaction as soon as its answer arrives, tagged
with the refinement job; a resumed refinement skips traces that already have critiques, so a
worker killed at any moment loses nothing and doubles nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from judgeeye.codebook import CodebookSpec
from judgeeye.engines import Completion, Engine, GenerationRequest, SamplingParams
from judgeeye.refine.prompts import critique_prompt
from judgeeye.refine.traces import TraceRow
from judgeeye.store import Candidate, Critique, CritiqueMap, Item, session_scope

_BULLET = re.compile(r"^\s*(?:[-*•+·–—]+|\(?\d{1,3}[.):]|\(?[a-zA-Z][.)])\s+")
_TAG = re.compile(r"</?(?:analysis|instruction|critiques?|codebook|answer|think)>", re.I)
_RATING = re.compile(r"<rating>.*?</rating>", re.I | re.S)
#: a line shorter than this many words is no critique (a header, a stray word)
MIN_WORDS = 3


def parse_critiques(text: str, max_per_trace: int = 30) -> list[str]:
    """One critique per line: bullets, numbering, tags and headers removed, duplicates dropped."""
    out: list[str] = []
    seen: set[str] = set()
    for raw in _RATING.sub(" ", text).replace("\r", "\n").split("\n"):
        line = _TAG.sub(" ", _BULLET.sub("", raw)).strip().strip("\"'“”").strip()
        words = line.split()
        if len(words) < MIN_WORDS or line.endswith(":"):
            continue
        key = " ".join(words).lower()
        if key in seen:
            continue
        seen.add(key)
        out.append(" ".join(words))
        if len(out) >= max_per_trace:
            break
    return out


def adopt_critiques(session: Session, from_jobs: Sequence[int], job_id: int) -> int:
    """Move an interrupted refinement's critiques to the job that resumes it; returns how many."""
    if not from_jobs:
        return 0
    result = session.execute(update(Critique).where(Critique.job_id.in_(list(from_jobs))).values(job_id=job_id))
    return int(result.rowcount or 0)


def done_candidates(session: Session, job_id: int) -> set[int]:
    return {c for c in session.scalars(select(Critique.candidate_id).where(Critique.job_id == job_id)).all()
            if c is not None}


def store_critiques(job_id: int, codebook_id: int | None, trace: TraceRow, texts: Sequence[str]) -> list[int]:
    """Write one trace's critiques in one transaction (none if another writer already did)."""
    with session_scope() as session:
        if trace.candidate_id is not None and session.scalar(
                select(Critique.id).where(Critique.job_id == job_id, Critique.candidate_id == trace.candidate_id)
                .limit(1)) is not None:
            return []
        rows = [Critique(candidate_id=trace.candidate_id, codebook_id=codebook_id, job_id=job_id,
                         level=trace.level, text=text) for text in texts]
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


@dataclass
class ExtractionStats:
    traces: int = 0
    done_before: int = 0
    extracted: int = 0
    critiques: int = 0
    empty: list[int] = field(default_factory=list)  # item ids whose traces gave no critique
    errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"traces": self.traces, "done_before": self.done_before, "extracted": self.extracted,
                "critiques": self.critiques, "no_critique_items": self.empty, "engine_errors": self.errors}


def _answer(c: Completion) -> str:
    return c.answer if c.reasoning else c.text


def extract_critiques(
    engine: Engine,
    spec: CodebookSpec,
    traces: Sequence[TraceRow],
    *,
    job_id: int,
    codebook_id: int | None,
    params: SamplingParams,
    attempts: int = 2,
    max_chars: int | None = None,
    max_per_trace: int = 30,
    chunk: int = 16,
    progress: Callable[[int, int], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> ExtractionStats:
    """Extract and store critiques of every trace not yet done; a trace whose answer holds no
    critique (or whose request failed) is asked again, up to ``attempts`` times."""
    with session_scope() as session:
        done = done_candidates(session, job_id)
    stats = ExtractionStats(traces=len(traces))
    pending = [t for t in traces if t.candidate_id is None or t.candidate_id not in done]
    stats.done_before = len(traces) - len(pending)
    for attempt in range(max(1, attempts)):
        if not pending:
            break
        failed: list[TraceRow] = []
        seed = None if params.seed is None else params.seed + attempt
        attempt_params = SamplingParams(params.temperature, params.top_p, params.max_tokens, seed)
        for start in range(0, len(pending), chunk):
            if check_cancel:
                check_cancel()
            batch = pending[start:start + chunk]
            requests = [GenerationRequest([{"role": "user", "content": critique_prompt(spec, t.text, max_chars)}])
                        for t in batch]

            def on_result(i: int, completions: list[Completion], batch: list[TraceRow] = batch) -> None:
                trace, completion = batch[i], completions[0]
                if completion.finish_reason == "error":
                    stats.errors += 1
                    failed.append(trace)
                    return
                texts = parse_critiques(_answer(completion), max_per_trace)
                if not texts:
                    failed.append(trace)
                    return
                ids = store_critiques(job_id, codebook_id, trace, texts)
                stats.extracted += 1
                stats.critiques += len(ids)
                if progress:
                    progress(stats.done_before + stats.extracted, stats.traces)

            engine.generate(requests, attempt_params, on_result=on_result)
        if failed and log:
            log(f"critique extraction: {len(failed)} trace(s) gave no critique on attempt {attempt + 1}")
        pending = failed
    stats.empty = sorted({t.item_id for t in pending})
    return stats


@dataclass
class MapPoint:
    """One critique on the map, with the trace and item it came from."""

    critique_id: int
    level: int
    text: str
    cluster: int | None
    representative: bool
    x: float | None
    y: float | None
    candidate_id: int | None
    item_id: int | None
    external_id: str | None


def map_points(session: Session, job_id: int) -> list[MapPoint]:
    """Every critique of a refinement with its stored place on the map (columns only: the
    embeddings are not read)."""
    rows = session.execute(
        select(Critique.id, Critique.level, Critique.text, Critique.cluster, Critique.representative, Critique.x,
               Critique.y, Critique.candidate_id, Candidate.item_id, Item.external_id)
        .outerjoin(Candidate, Candidate.id == Critique.candidate_id)
        .outerjoin(Item, Item.id == Candidate.item_id)
        .where(Critique.job_id == job_id).order_by(Critique.level, Critique.id)).all()
    return [MapPoint(cid, level, text, cluster, bool(rep), x, y, cand, item_id, external_id)
            for cid, level, text, cluster, rep, x, y, cand, item_id, external_id in rows]


def stored_map(session: Session, job_id: int) -> CritiqueMap | None:
    """How the refinement's map was made; None until its coordinates are all stored."""
    return session.scalars(select(CritiqueMap).where(CritiqueMap.job_id == job_id)).first()


def critique_jobs(session: Session, project_id: int) -> list[tuple[int, int]]:
    """(job id, number of critiques) of the project's refinements that extracted critiques."""
    from sqlalchemy import func

    from judgeeye.store import Job

    return [(int(j), int(n)) for j, n in session.execute(
        select(Critique.job_id, func.count()).join(Job, Job.id == Critique.job_id)
        .where(Job.project_id == project_id).group_by(Critique.job_id).order_by(Critique.job_id.desc())).all()]


@dataclass
class ClusterRow:
    level: int
    cluster: int | None
    size: int
    representatives: list[str]


def cluster_summary(points: Sequence[MapPoint]) -> list[ClusterRow]:
    """Per level, each cluster's size and representative critiques (largest clusters first)."""
    groups: dict[tuple[int, int | None], list[MapPoint]] = {}
    for p in points:
        groups.setdefault((p.level, p.cluster), []).append(p)
    rows = [ClusterRow(level, cluster, len(ps), [p.text for p in ps if p.representative])
            for (level, cluster), ps in groups.items()]
    return sorted(rows, key=lambda r: (r.level, -r.size, r.cluster if r.cluster is not None else -1))


@dataclass
class SourceTrace:
    """The trace a critique came from, and its item."""

    critique: str
    level: int
    candidate_id: int | None
    item_id: int | None
    external_id: str | None
    fields: dict[str, Any]
    gold: float | None
    reasoning: str
    answer: str


def source_trace(session: Session, critique_id: int) -> SourceTrace:
    critique = session.get(Critique, critique_id)
    if critique is None:
        raise LookupError(f"no critique {critique_id}")
    cand = session.get(Candidate, critique.candidate_id) if critique.candidate_id is not None else None
    item = session.get(Item, cand.item_id) if cand is not None else None
    return SourceTrace(critique.text, critique.level, critique.candidate_id, item.id if item else None,
                       item.external_id if item else None, dict(item.fields or {}) if item else {},
                       item.gold if item else None, cand.reasoning if cand else "", cand.answer if cand else "")
