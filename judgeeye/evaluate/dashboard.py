"""Everything the agreement page shows, as fast aggregate queries and cached results.

Each function takes an open session and returns plain data (DataFrames, dataclasses); the page
and the HTML report only render. Per-run details are a few grouped queries over one run's
predictions; what needs a scan of 320,000 candidates or 1,000 bootstrap resamples goes through
:mod:`judgeeye.evaluate.cache`, keyed by a cheap fingerprint of the rows it came from.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from judgeeye.display import snippet
from judgeeye.engines import EngineConfig
from judgeeye.evaluate import cache
from judgeeye.evaluate.compare import (
    Comparison,
    GroupComparison,
    ItemMismatchError,
    align_runs,
    compare_groups,
    compare_runs,
)
from judgeeye.evaluate.summary import prediction_fingerprints, summaries
from judgeeye.jobs import ACTIVE, run_status
from judgeeye.metrics import InterRaterICC, TestResult, confusion_matrix, inter_rater_icc3, round_to_levels
from judgeeye.sampling import RunStats, run_stats
from judgeeye.sampling.runs import ACCEPTANCE_LABELS
from judgeeye.store import Candidate, Codebook, Item, Job, Prediction, Project, RaterRun, SamplingRun

N_BOOT = 1000
UNPARSED_SHOWN = 3  # answers without a rating shown when a run has no rating at all
RUN_COLUMNS = ["run", "name", "rater", "readout", "codebook", "split", "status", "predictions",
               "parse failures", "n", "tau", "tau_lo", "tau_hi", "icc3", "icc3_lo", "icc3_hi",
               "mse", "mse_lo", "mse_hi", "tau_degenerate", "icc3_degenerate", "created"]


# ----------------------------------------------------------------------------- rater runs
@dataclass
class RunInfo:
    """A rater run as the page lists it."""

    id: int
    name: str
    rater: str
    readout: str
    codebook_version: int
    split: str
    limit: int | None
    status: str
    predictions: int = 0  # predictions written so far
    rated: int = 0  # ... of which carry a rating (the others could not be parsed)

    @property
    def key(self) -> str:
        """Who rates, whatever the codebook: pairs the same rater across codebook versions."""
        return f"{self.rater} · {self.readout}"

    @property
    def items_key(self) -> tuple[str, int | None]:
        return (self.split, self.limit)

    @property
    def measurable(self) -> bool:
        """Finished, with the two ratings τ and ICC(3,1) need at the least: fit to compare."""
        return self.status == "completed" and self.rated >= 2

    def title(self) -> str:
        """The run by number and name (charts, headings)."""
        return f"Run {self.id} · {self.name}"

    def label(self) -> str:
        """The run with what it is doing now (selectors)."""
        return f"{self.title()} · {self.status}"


def comparable(a: RunInfo, b: RunInfo) -> bool:
    """Two different runs that rated the same items (same split and limit, both complete) and
    have ratings to compare."""
    return a.id != b.id and a.items_key == b.items_key and a.measurable and b.measurable


def why_not_measurable(run: RunInfo) -> str:
    """Why a run cannot enter a comparison, in words ("" when it can)."""
    if run.status in ACTIVE:
        return f"run {run.id} is still {run.status}"
    if run.predictions == 0:
        return f"run {run.id} has no predictions"
    if run.rated == 0:
        return f"all {run.predictions:,} answers of run {run.id} were unparsed"
    if run.status != "completed":
        return f"run {run.id} is {run.status} ({run.predictions:,} prediction{'' if run.predictions == 1 else 's'})"
    if run.rated < 2:
        return f"run {run.id} has a single parsed rating"
    return ""


def list_runs(session: Session, project_id: int) -> list[RunInfo]:
    """The project's rater runs, newest last, with their prediction counts (two queries)."""
    rows = session.execute(
        select(RaterRun, Codebook.version, Job.status)
        .join(Codebook, Codebook.id == RaterRun.codebook_id)
        .outerjoin(Job, Job.id == RaterRun.job_id)
        .where(RaterRun.project_id == project_id)
        .order_by(RaterRun.id)
    ).all()
    counts = {run_id: (int(n), int(rated)) for run_id, n, rated in session.execute(
        select(Prediction.rater_run_id, func.count(), func.count(Prediction.rating))
        .join(RaterRun, RaterRun.id == Prediction.rater_run_id)
        .where(RaterRun.project_id == project_id)
        .group_by(Prediction.rater_run_id)
    ).all()}
    out = []
    for run, version, job_status in rows:
        rater = run.rater or {}
        try:
            label = EngineConfig.model_validate(rater.get("engine", {})).label()
        except ValueError:
            label = "?"
        n, rated = counts.get(run.id, (0, 0))
        out.append(RunInfo(id=run.id, name=run.name, rater=label, readout=str(rater.get("readout", "parsed")),
                           codebook_version=int(version), split=run.split, limit=rater.get("limit"),
                           status=run_status(run.status, job_status), predictions=n, rated=rated))
    return out


def run_table(session: Session, project_id: int, runs: list[RunInfo] | None = None) -> pd.DataFrame:
    """One row per rater run: τ, ICC(3,1), MSE with 95% bootstrap intervals, parse failures, n
    (``runs``: the project's :func:`list_runs`, when the caller has them already)."""
    runs = list_runs(session, project_id) if runs is None else runs
    sums = summaries(session, [r.id for r in runs])
    created = dict(session.execute(select(RaterRun.id, RaterRun.created_at)
                                   .where(RaterRun.project_id == project_id)).all())
    rows = []
    for r in runs:
        s = sums[r.id]
        rows.append({"run": r.id, "name": r.name, "rater": r.rater, "readout": r.readout,
                     "codebook": r.codebook_version, "split": r.split, "status": r.status,
                     "predictions": s.n_predictions, "parse failures": s.parse_failures, "n": s.n,
                     "tau": s.tau, "tau_lo": s.tau_lo, "tau_hi": s.tau_hi, "icc3": s.icc3,
                     "icc3_lo": s.icc3_lo, "icc3_hi": s.icc3_hi, "mse": s.mse, "mse_lo": s.mse_lo,
                     "mse_hi": s.mse_hi, "tau_degenerate": s.tau_degenerate,
                     "icc3_degenerate": s.icc3_degenerate, "created": created.get(r.id)})
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


# ------------------------------------------------------------------------------ one run
@dataclass
class RunDetail:
    """One run against gold: the confusion table, mean rating per gold level, worst items."""

    run_id: int
    levels: list[int]
    confusion: np.ndarray  # rows = gold level, columns = predicted level (rounded)
    by_gold: pd.DataFrame  # gold, items, rated, parse failures, mean, sd
    worst: pd.DataFrame  # item (its id), gold, rating, error, reasoning, answer, text, title (its opening words)
    gold_rounded: int = 0  # gold labels between levels (median of an even number of raters)
    n_predictions: int = 0
    n_rated: int = 0  # predictions with a rating and a gold label: what the charts count
    unparsed: pd.DataFrame = field(default_factory=pd.DataFrame)  # item, answer: a few without a rating

    @property
    def note(self) -> str:
        """Why the run has nothing to chart ("" when it has)."""
        if self.n_predictions == 0:
            return f"Rater run {self.run_id} has no predictions yet."
        if self.n_rated == 0:
            n = self.n_predictions
            answers = "the only answer" if n == 1 else f"all {n:,} answers"
            return (f"{answers.capitalize()} of this run {'was' if n == 1 else 'were'} unparsed: no rating could be "
                    "read from the end of the answer (a <rating>N</rating> tag or “Rating: N”), so there is "
                    "nothing to compare with the gold labels. More max tokens, or the argmax / expected "
                    "read-out of a local model, may give ratings.")
        return ""


def run_detail(session: Session, run_id: int, *, worst: int = 10) -> RunDetail:
    """Grouped queries over one run's predictions (a few milliseconds for thousands of items)."""
    run = session.get(RaterRun, run_id)
    if run is None:
        raise LookupError(f"no rater run {run_id}")
    project = session.get(Project, run.project_id)
    levels = list(range(project.scale_min, project.scale_max + 1))
    mine = Prediction.rater_run_id == run_id
    pairs = session.execute(
        select(Item.gold, Prediction.rating, func.count())
        .join(Item, Item.id == Prediction.item_id)
        .where(mine, Prediction.rating.is_not(None), Item.gold.is_not(None))
        .group_by(Item.gold, Prediction.rating)
    ).all()
    gold = np.array([p[0] for p in pairs], dtype=float)
    pred = np.array([p[1] for p in pairs], dtype=float)
    counts = np.array([p[2] for p in pairs], dtype=np.int64)
    gold_levels = round_to_levels(gold, levels) if len(gold) else gold
    off_level = int(counts[gold_levels != gold].sum()) if len(gold) else 0
    conf = (confusion_matrix(np.repeat(gold_levels, counts), np.repeat(pred, counts), levels)
            if len(gold) else np.zeros((len(levels), len(levels)), dtype=np.int64))
    by_gold = session.execute(
        select(Item.gold, func.count(), func.count(Prediction.rating), func.avg(Prediction.rating),
               func.avg(Prediction.rating * Prediction.rating))
        .join(Item, Item.id == Prediction.item_id)
        .where(mine, Item.gold.is_not(None))
        .group_by(Item.gold).order_by(Item.gold)
    ).all()
    rows = []
    for g, n, rated, mean, mean_sq in by_gold:
        var = (float(mean_sq) - float(mean) ** 2) * rated / (rated - 1) if rated and rated > 1 else math.nan
        rows.append({"gold": float(g), "items": int(n), "rated": int(rated), "parse failures": int(n - rated),
                     "mean rating": float(mean) if mean is not None else math.nan,
                     "sd": math.sqrt(max(var, 0.0)) if var == var else math.nan})
    error = func.abs(Prediction.rating - Item.gold)
    bad = session.execute(
        select(Item.external_id, Item.gold, Prediction.rating, error, Prediction.reasoning, Prediction.answer,
               Item.fields)
        .join(Item, Item.id == Prediction.item_id)
        .where(mine, Prediction.rating.is_not(None), Item.gold.is_not(None))
        .order_by(error.desc(), Item.id).limit(worst)
    ).all()
    worst_df = pd.DataFrame(
        [{"item": e, "gold": float(g), "rating": float(r), "error": float(d), "reasoning": reasoning or "",
          "answer": answer or "", "text": "\n\n".join(f"{k}: {v}" for k, v in (fields or {}).items()),
          "title": snippet(" ".join(str(v) for v in (fields or {}).values()))}
         for e, g, r, d, reasoning, answer, fields in bad],
        columns=["item", "gold", "rating", "error", "reasoning", "answer", "text", "title"])
    n_predictions = session.scalar(select(func.count()).select_from(Prediction).where(mine)) or 0
    unparsed = pd.DataFrame(session.execute(
        select(Item.external_id, Prediction.answer)
        .join(Item, Item.id == Prediction.item_id)
        .where(mine, Prediction.rating.is_(None))
        .order_by(Item.id).limit(UNPARSED_SHOWN)
    ).all(), columns=["item", "answer"])
    return RunDetail(run_id=run_id, levels=levels, confusion=conf,
                     by_gold=pd.DataFrame(rows, columns=["gold", "items", "rated", "parse failures", "mean rating", "sd"]),
                     worst=worst_df, gold_rounded=off_level, n_predictions=int(n_predictions),
                     n_rated=int(counts.sum()) if len(counts) else 0, unparsed=unparsed)


# --------------------------------------------------------------------------- comparisons
def _test(d: dict[str, Any]) -> TestResult:
    d = dict(d)
    d["ci"] = (cache.nan(d["ci"][0]), cache.nan(d["ci"][1]))
    for k in ("statistic", "estimate", "p_value"):
        d[k] = cache.nan(d[k])
    if d.get("p_value_two_sided") is not None:
        d["p_value_two_sided"] = float(d["p_value_two_sided"])
    return TestResult(**d)


def _floats(d: dict[str, Any]) -> dict[str, float]:
    return {k: cache.nan(v) for k, v in d.items()}


def _run_fingerprint(session: Session, run_ids: list[int]) -> dict[str, Any]:
    fps = prediction_fingerprints(session, run_ids)
    # version 2: tests count their undefined (degenerate) resamples
    return {"runs": [[r, *fps[r][:2]] for r in run_ids], "n_boot": N_BOOT, "version": 2}


def comparison(session: Session, run_a: int, run_b: int) -> Comparison:
    """:func:`compare_runs`, cached (raises :class:`ItemMismatchError` when items differ)."""
    def encode(c: Comparison) -> dict[str, Any]:
        return {"run_a": c.run_a, "run_b": c.run_b, "n_items": c.n_items, "metrics_a": c.metrics_a,
                "metrics_b": c.metrics_b, "mse_test": c.mse_test.to_dict(), "tau_test": c.tau_test.to_dict(),
                "icc3_test": c.icc3_test.to_dict()}

    def decode(d: dict[str, Any]) -> Comparison:
        return Comparison(run_a=d["run_a"], run_b=d["run_b"], n_items=d["n_items"], metrics_a=_floats(d["metrics_a"]),
                          metrics_b=_floats(d["metrics_b"]), mse_test=_test(d["mse_test"]),
                          tau_test=_test(d["tau_test"]), icc3_test=_test(d["icc3_test"]))

    return cache.cached(session, f"compare:{int(run_a)}:{int(run_b)}", _run_fingerprint(session, [int(run_a), int(run_b)]),
                        lambda: compare_runs(session, run_a, run_b, n_boot=N_BOOT), encode, decode)


def _icc(d: dict[str, Any] | None) -> InterRaterICC | None:
    if d is None:
        return None
    return InterRaterICC(icc3=cache.nan(d["icc3"]), n=int(d["n"]), n_excluded=int(d["n_excluded"]),
                         n_raters=int(d["n_raters"]))


def group_comparison(session: Session, runs_a: list[int], runs_b: list[int]) -> GroupComparison:
    """:func:`compare_groups`, cached."""
    def encode(g: GroupComparison) -> dict[str, Any]:
        return {"runs_a": g.runs_a, "runs_b": g.runs_b, "n_items": g.n_items, "per_rater": g.per_rater,
                "metric_tests": {k: t.to_dict() for k, t in g.metric_tests.items()},
                "icc_a": asdict(g.icc_a) if g.icc_a else None, "icc_b": asdict(g.icc_b) if g.icc_b else None,
                "icc_test": g.icc_test.to_dict() if g.icc_test else None, "notes": g.notes}

    def decode(d: dict[str, Any]) -> GroupComparison:
        per_rater = [{k: (cache.nan(v) if k not in ("run A", "run B") else int(v)) for k, v in row.items()}
                     for row in d["per_rater"]]
        return GroupComparison(runs_a=d["runs_a"], runs_b=d["runs_b"], n_items=d["n_items"], per_rater=per_rater,
                               metric_tests={k: _test(t) for k, t in d["metric_tests"].items()},
                               icc_a=_icc(d["icc_a"]), icc_b=_icc(d["icc_b"]),
                               icc_test=_test(d["icc_test"]) if d["icc_test"] else None, notes=list(d["notes"]))

    ids = [int(r) for r in runs_a] + [int(r) for r in runs_b]
    key = "groups:" + ",".join(map(str, runs_a)) + ":" + ",".join(map(str, runs_b))
    return cache.cached(session, key, _run_fingerprint(session, ids),
                        lambda: compare_groups(session, runs_a, runs_b, n_boot=N_BOOT), encode, decode)


def version_pairs(runs: list[RunInfo], version_a: int, version_b: int) -> tuple[list[int], list[int], list[str]]:
    """The same raters (engine + read-out) under two codebook versions, over the same items:
    (runs under A, runs under B, rater names), paired by position; the newest run of each rater."""
    def pick(version: int) -> dict[tuple[str, tuple[str, int | None]], RunInfo]:
        out: dict[tuple[str, tuple[str, int | None]], RunInfo] = {}
        for r in runs:
            if r.codebook_version == version and r.measurable:
                out[(r.key, r.items_key)] = r
        return out

    a, b = pick(version_a), pick(version_b)
    common = [k for k in a if k in b]
    return [a[k].id for k in common], [b[k].id for k in common], [k[0] for k in common]


@dataclass
class Reliability:
    """Inter-rater ICC(3,1) among the completed runs of one codebook version (paper Table 3)."""

    codebook_version: int
    run_ids: list[int]
    raters: list[str]
    icc: InterRaterICC | None
    note: str = ""


def reliability_by_version(session: Session, runs: list[RunInfo]) -> list[Reliability]:
    """For each codebook version, ICC among its completed runs with ratings over the same items
    (the largest such group), cached by the runs' prediction fingerprints. A completed run
    without ratings to compare (all answers unparsed) is left out and named in the note."""
    groups: dict[tuple[int, tuple[str, int | None]], list[RunInfo]] = defaultdict(list)
    left_out: dict[int, list[str]] = defaultdict(list)
    for r in runs:
        if r.measurable:
            groups[(r.codebook_version, r.items_key)].append(r)
        elif r.status == "completed":
            left_out[r.codebook_version].append(why_not_measurable(r))
    best: dict[int, list[RunInfo]] = {}
    for (version, _), members in sorted(groups.items(), key=lambda kv: kv[0][0]):
        if len(members) > len(best.get(version, [])):
            best[version] = members
    out = []
    for version in sorted(set(best) | set(left_out)):
        members = best.get(version, [])
        ids = [r.id for r in members]
        raters = [r.key for r in members]
        notes = [f"left out: {why}" for why in left_out.get(version, [])]
        if len(ids) < 2:
            notes.insert(0, "needs at least two completed runs with ratings on the same items")
            out.append(Reliability(version, ids, raters, None, "; ".join(notes)))
            continue
        try:
            icc = cache.cached(session, "icc:" + ",".join(map(str, ids)), _run_fingerprint(session, ids),
                               lambda ids=ids: inter_rater_icc3(align_runs(session, ids).ratings), asdict, _icc)
            out.append(Reliability(version, ids, raters, icc, "; ".join(notes)))
        except ItemMismatchError as exc:
            out.append(Reliability(version, ids, raters, None, "; ".join([str(exc), *notes])))
    return out


# ----------------------------------------------------------------------------- sampling
def _stats_payload(stats: RunStats) -> dict[str, Any]:
    return stats.to_payload()


def _stats_decode(d: dict[str, Any]) -> RunStats:
    return RunStats.from_payload(d)


@dataclass
class SamplingRow:
    run_id: int
    label: str
    stats: RunStats


def sampling_overview(session: Session, project_id: int) -> list[SamplingRow]:
    """Acceptance per gold level and utilization vs k of the project's sampling runs
    (:func:`judgeeye.sampling.run_stats`), cached while the run's candidates stay the same."""
    runs = session.execute(select(SamplingRun.id, SamplingRun.engine, SamplingRun.k, SamplingRun.status)
                           .where(SamplingRun.project_id == project_id).order_by(SamplingRun.id)).all()
    if not runs:
        return []
    out = []
    for run_id, engine, k, status in runs:
        # candidates are append-only and go when their run goes: the newest id (one index probe)
        # and the run's status say whether the cached statistics still hold
        max_id = session.scalar(select(func.max(Candidate.id)).where(Candidate.run_id == run_id)) or 0
        # ":stats2": statistics per acceptance mode (older cached payloads lack them)
        stats = cache.cached(session, f"sampling_run:{run_id}:stats2", {"max_id": int(max_id), "status": status},
                             lambda run_id=run_id: run_stats(session, run_id), _stats_payload, _stats_decode)
        try:
            label = EngineConfig.model_validate(engine).label()
        except ValueError:
            label = "?"
        mode = ACCEPTANCE_LABELS.get(stats.acceptance, stats.acceptance)
        out.append(SamplingRow(run_id, f"Sampling run {run_id} · {label} · k={k} · {mode} · {status}", stats))
    return out


# ---------------------------------------------------------------------------- annotators
@dataclass
class AnnotatorView:
    """Review progress and agreement on chosen traces, when the review module provides them."""

    progress: pd.DataFrame | None = None
    agreement: dict[str, Any] | None = None
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def annotator_view(session: Session, project_id: int) -> AnnotatorView:
    """``judgeeye.review.stats`` (imported only here, so the page works without it)."""
    try:
        from judgeeye.review import stats as review_stats
    except ImportError:
        return AnnotatorView(message="no reviews yet (the review module is not installed)")
    progress = review_stats.annotator_progress(session, project_id)
    agreement = review_stats.choice_agreement(session, project_id)
    has_progress = progress is not None and len(progress) > 0
    has_agreement = bool(agreement) and int(agreement.get("n_reviews", 0) or 0) > 0
    if not has_progress and not has_agreement:
        return AnnotatorView(message="no reviews yet")
    return AnnotatorView(progress=progress if has_progress else None, agreement=agreement if has_agreement else None)
