"""Statistics of a sampling run, computed from the stored candidates with aggregate queries."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from judgeeye.sampling.runs import candidate_kind, run_settings
from judgeeye.store import Candidate, Item, SamplingRun


@dataclass
class LevelStats:
    """Acceptance for the items of one gold level."""

    level: float
    items: int
    items_with_accepted: int
    candidates: int
    accepted: int

    @property
    def rate(self) -> float:
        return self.accepted / self.candidates if self.candidates else 0.0


@dataclass
class ModeStats:
    """What one acceptance mode contributed to a run: the candidates it rated, the ones it
    accepted, per gold level (rates over all the level's candidates, so the modes' rates add
    up to the run's) and its own utilization curve."""

    mode: str
    rated: int = 0
    accepted: int = 0
    items_with_accepted: int = 0
    per_level: list[LevelStats] = field(default_factory=list)
    utilization: list[float] = field(default_factory=list)


@dataclass
class RunStats:
    run_id: int
    status: str
    k: int
    adaptive: bool
    #: the run's acceptance mode ("written" or "forced_cue")
    acceptance: str = "written"
    seed: int | None = None
    n_items: int = 0
    n_candidates: int = 0
    n_accepted: int = 0
    parse_failures: int = 0
    #: candidates rated after the answer cue (forced cue), not by a rating they wrote
    readout_ratings: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    items_with_accepted: int = 0
    finish_reasons: dict[str, int] = field(default_factory=dict)
    per_level: list[LevelStats] = field(default_factory=list)
    #: utilization[j-1] = share of items with an accepted trace (any mode) within their first j samples
    utilization: list[float] = field(default_factory=list)
    #: acceptance mode -> what it contributed; "written" is always there (the paper's protocol)
    by_mode: dict[str, ModeStats] = field(default_factory=dict)
    #: annotator -> (items they rated in the run, items with a candidate matching their rating)
    per_annotator: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def acceptance_rate(self) -> float:
        return self.n_accepted / self.n_candidates if self.n_candidates else 0.0

    @property
    def tokens_per_candidate(self) -> float:
        return self.completion_tokens / self.n_candidates if self.n_candidates else 0.0

    @property
    def fixed_k_tokens(self) -> float:
        """Completion tokens a fixed-k run over the same items would have spent (estimated from
        this run's mean tokens per candidate)."""
        return self.n_items * self.k * self.tokens_per_candidate

    @property
    def tokens_saved(self) -> float:
        return max(self.fixed_k_tokens - self.completion_tokens, 0.0) if self.adaptive else 0.0

    def to_payload(self) -> dict[str, Any]:
        """Plain JSON (for caches); :meth:`from_payload` reads it back."""
        return asdict(self)

    @classmethod
    def from_payload(cls, d: dict[str, Any]) -> RunStats:
        d = dict(d)
        d["per_level"] = [LevelStats(**lv) for lv in d.get("per_level", [])]
        d["per_annotator"] = {k: (int(v[0]), int(v[1])) for k, v in d.get("per_annotator", {}).items()}
        d["utilization"] = [float(u) for u in d.get("utilization", [])]
        d["by_mode"] = {name: ModeStats(**{**m, "per_level": [LevelStats(**lv) for lv in m.get("per_level", [])]})
                        for name, m in d.get("by_mode", {}).items()}
        return cls(**d)


def _curve(session: Session, mine: Any, k: int, n_items: int) -> list[float]:
    """Share of items with an accepted candidate (among ``mine``) within their first j samples."""
    first = (
        select(func.min(Candidate.sample_index).label("first"))
        .where(mine, Candidate.accepted.is_(True))
        .group_by(Candidate.item_id)
        .subquery()
    )
    firsts = dict(session.execute(select(first.c.first, func.count()).group_by(first.c.first)).all())
    covered, curve = 0, []
    for j in range(1, k + 1):
        covered += firsts.get(j - 1, 0)
        curve.append(covered / n_items if n_items else 0.0)
    return curve


def _level_rows(session: Session, mine: Any, *by: Any) -> list[Any]:
    """Per gold level (and ``by``): items, items with an accepted candidate, candidates, accepted."""
    return list(session.execute(
        select(
            Item.gold, *by,
            func.count(func.distinct(Item.id)),
            func.count(func.distinct(case((Candidate.accepted, Item.id)))),
            func.count(Candidate.id),
            func.coalesce(func.sum(case((Candidate.accepted, 1), else_=0)), 0),
        )
        .join(Item, Item.id == Candidate.item_id)
        .where(mine, Item.gold.is_not(None))
        .group_by(Item.gold, *by)
        .order_by(Item.gold)
    ).all())


def run_stats(session: Session, run_id: int) -> RunStats:
    run = session.get(SamplingRun, run_id)
    if run is None:
        raise LookupError(f"no sampling run {run_id}")
    settings = run_settings(run)
    stats = RunStats(run_id=run_id, status=run.status, k=run.k, adaptive=settings.adaptive,
                     acceptance=settings.acceptance, seed=settings.seed)
    mine = (Candidate.run_id == run_id) & (Candidate.kind == candidate_kind(settings))
    totals = session.execute(
        select(
            func.count(Candidate.id),
            func.coalesce(func.sum(case((Candidate.accepted, 1), else_=0)), 0),
            func.coalesce(func.sum(case((Candidate.parse_ok, 0), else_=1)), 0),
            func.coalesce(func.sum(case((Candidate.acceptance_mode == "forced_cue", 1), else_=0)), 0),
            func.coalesce(func.sum(Candidate.prompt_tokens), 0),
            func.coalesce(func.sum(Candidate.completion_tokens), 0),
            func.count(func.distinct(Candidate.item_id)),
            func.count(func.distinct(case((Candidate.accepted, Candidate.item_id)))),
        ).where(mine)
    ).one()
    (stats.n_candidates, stats.n_accepted, stats.parse_failures, stats.readout_ratings,
     stats.prompt_tokens, stats.completion_tokens, stats.n_items, stats.items_with_accepted) = map(int, totals)
    stats.finish_reasons = {
        reason or "unknown": n
        for reason, n in session.execute(
            select(Candidate.finish_reason, func.count()).where(mine).group_by(Candidate.finish_reason)
        ).all()
    }
    stats.per_level = [LevelStats(float(g), *map(int, rest)) for g, *rest in _level_rows(session, mine)]
    stats.utilization = _curve(session, mine, run.k, stats.n_items)
    # per acceptance mode: what it rated and accepted; rates over all the level's candidates
    rated = dict(session.execute(
        select(Candidate.acceptance_mode, func.count()).where(mine, Candidate.acceptance_mode.is_not(None))
        .group_by(Candidate.acceptance_mode)
    ).all())
    by_level: dict[str, dict[float, tuple[int, int]]] = defaultdict(dict)
    for g, mode, _, items_ok, _, accepted in _level_rows(session, mine, Candidate.acceptance_mode):
        if mode is not None:
            by_level[mode][float(g)] = (int(items_ok), int(accepted))
    for mode in ["written", *sorted(set(rated) - {"written"})]:
        levels = []
        for lv in stats.per_level:
            items_ok, accepted = by_level[mode].get(lv.level, (0, 0))
            levels.append(LevelStats(lv.level, lv.items, items_ok, lv.candidates, accepted))
        stats.by_mode[mode] = ModeStats(
            mode=mode, rated=int(rated.get(mode, 0)), accepted=sum(lv.accepted for lv in levels),
            items_with_accepted=sum(lv.items_with_accepted for lv in levels), per_level=levels,
            utilization=_curve(session, mine & (Candidate.acceptance_mode == mode), run.k, stats.n_items),
        )
    if settings.targets == "annotators":
        stats.per_annotator = _per_annotator(session, run_id, candidate_kind(settings))
    return stats


def _per_annotator(session: Session, run_id: int, kind: str) -> dict[str, tuple[int, int]]:
    """For each annotator: items of the run they rated, and how many have a candidate whose
    rating equals theirs (the paper's per-annotator traces, section 5)."""
    predicted: dict[int, set[float]] = defaultdict(set)
    for item_id, value in session.execute(
        select(Candidate.item_id, Candidate.predicted).where(
            Candidate.run_id == run_id, Candidate.kind == kind, Candidate.predicted.is_not(None))
    ).all():
        predicted[item_id].add(float(value))
    item_ids = select(Candidate.item_id).where(Candidate.run_id == run_id).distinct()
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item_id, ratings in session.execute(select(Item.id, Item.ratings).where(Item.id.in_(item_ids))).all():
        for name, value in ratings.items():
            out[name][0] += 1
            out[name][1] += int(float(value) in predicted.get(item_id, ()))
    return {name: (n, m) for name, (n, m) in sorted(out.items())}


def default_trace(session: Session, item_id: int, run_id: int | None = None) -> Candidate | None:
    """The item's default trace, as in the paper: its first accepted candidate (lowest sample
    index of the earliest run, or of the given run)."""
    stmt = select(Candidate).where(Candidate.item_id == item_id, Candidate.accepted.is_(True))
    if run_id is not None:
        stmt = stmt.where(Candidate.run_id == run_id)
    return session.scalars(stmt.order_by(Candidate.run_id, Candidate.sample_index).limit(1)).first()
