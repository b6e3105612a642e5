"""Each rater run's agreement with gold: τ, ICC(3,1), MSE with bootstrap intervals, cached.

The run table lists every run of a project on each page view, and 1,000 bootstrap resamples per
run cost real time at scale; so a run's summary is stored in the stats cache with the count and
highest id of the predictions it was computed from (predictions are append-only: a new one changes
the fingerprint, and the next read recomputes). Fingerprints of many runs are one grouped query.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from judgeeye.evaluate import cache
from judgeeye.metrics import agreement_report
from judgeeye.store import Item, Prediction

#: bump when what a summary holds changes: older cache entries are recomputed
SUMMARY_VERSION = 2
N_BOOT = 1000
SEED = 0


@dataclass(frozen=True)
class RunSummary:
    """What the run table shows for one rater run (NaN where undefined).

    ``n`` counts items with a rating (they enter every metric); ``n_missing`` counts predictions
    without one (parse failures under the parsed read-out), which the metrics exclude.
    ``tau_degenerate`` / ``icc3_degenerate``: bootstrap resamples (of ``N_BOOT``) where τ / ICC
    is undefined (constant ratings), left out of that interval.
    """

    run_id: int
    n: int
    n_predictions: int
    parse_failures: int
    n_missing: int
    tau: float
    tau_lo: float
    tau_hi: float
    icc3: float
    icc3_lo: float
    icc3_hi: float
    mse: float
    mse_lo: float
    mse_hi: float
    spearman: float
    pearson: float
    exact: float
    tau_degenerate: int
    icc3_degenerate: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prediction_fingerprints(session: Session, run_ids: list[int]) -> dict[int, tuple[int, int, int]]:
    """(count, max id, parse failures) of each run's predictions, in one grouped query."""
    if not run_ids:
        return {}
    rows = session.execute(
        select(Prediction.rater_run_id, func.count(), func.coalesce(func.max(Prediction.id), 0),
               func.coalesce(func.sum(case((Prediction.parse_ok, 0), else_=1)), 0))
        .where(Prediction.rater_run_id.in_(run_ids))
        .group_by(Prediction.rater_run_id)
    ).all()
    out = {int(run_id): (0, 0, 0) for run_id in run_ids}
    out.update({int(r): (int(n), int(m), int(f)) for r, n, m, f in rows})
    return out


def gold_and_ratings(session: Session, run_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item ids, gold, rating) of a run's predictions, by item id; a failed rating is NaN."""
    rows = session.execute(
        select(Prediction.item_id, Item.gold, Prediction.rating)
        .join(Item, Item.id == Prediction.item_id)
        .where(Prediction.rater_run_id == run_id)
        .order_by(Prediction.item_id)
    ).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    gold = np.fromiter((np.nan if r[1] is None else r[1] for r in rows), dtype=float, count=len(rows))
    pred = np.fromiter((np.nan if r[2] is None else r[2] for r in rows), dtype=float, count=len(rows))
    return ids, gold, pred


def compute_summary(session: Session, run_id: int, *, n_boot: int = N_BOOT, seed: int = SEED) -> RunSummary:
    """Agreement of the run's predictions with gold, straight from the store (no cache)."""
    n_pred, _, failures = prediction_fingerprints(session, [run_id])[run_id]
    _, gold, pred = gold_and_ratings(session, run_id)
    keep = ~np.isnan(gold)
    report = agreement_report(gold[keep], pred[keep], n_boot=n_boot, seed=seed)
    return RunSummary(
        run_id=run_id, n=report.n, n_predictions=n_pred, parse_failures=failures,
        n_missing=report.n_missing, tau=report.tau, tau_lo=report.tau_ci[0], tau_hi=report.tau_ci[1],
        icc3=report.icc3, icc3_lo=report.icc3_ci[0], icc3_hi=report.icc3_ci[1], mse=report.mse,
        mse_lo=report.mse_ci[0], mse_hi=report.mse_ci[1], spearman=report.spearman,
        pearson=report.pearson, exact=report.exact, tau_degenerate=report.tau_degenerate,
        icc3_degenerate=report.icc3_degenerate,
    )


def _decode(payload: dict[str, Any]) -> RunSummary:
    values = {}
    for f in fields(RunSummary):
        raw = payload[f.name]
        values[f.name] = int(raw) if f.type == "int" else cache.nan(raw)
    return RunSummary(**values)


def summaries(session: Session, run_ids: list[int]) -> dict[int, RunSummary]:
    """Summaries of many runs: cached ones as stored, others computed and cached (the caller's
    transaction writes them)."""
    fps = prediction_fingerprints(session, run_ids)
    out: dict[int, RunSummary] = {}
    for run_id in run_ids:
        n, max_id, _ = fps[int(run_id)]
        out[int(run_id)] = cache.cached(
            session, f"rater_run:{int(run_id)}:summary",
            {"version": SUMMARY_VERSION, "count": n, "max_id": max_id, "n_boot": N_BOOT},
            lambda run_id=run_id: compute_summary(session, int(run_id)), RunSummary.to_dict, _decode)
    return out


def summary(session: Session, run_id: int) -> RunSummary:
    return summaries(session, [run_id])[int(run_id)]
