"""Comparing rater runs, as the paper does, on exactly the same items.

* :func:`align_runs` loads several runs' ratings side by side; runs that did not rate the same
  items are refused with :class:`ItemMismatchError`, which names the missing items per run.
* :func:`compare_runs`: is B better than A (a refined codebook, a fine-tuned rater)? Paired t-test
  on squared errors, one-sided paired bootstraps for τ and ICC(3,1) (paper section 4.1).
* :func:`inter_rater`: ICC(3,1) among M raters (Table 3); :func:`compare_groups`: the same M raters
  before and after (paired t-tests across raters per metric, bootstrap test of inter-rater ICC).

All numbers come from :mod:`judgeeye.metrics`; this module only gathers the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from judgeeye.metrics import (
    InterRaterICC,
    TestResult,
    bootstrap_icc3_improvement,
    bootstrap_improvement,
    icc3_pair,
    inter_rater_icc3,
    kendall_tau,
    mse,
    paired_t_test_across_raters,
    paired_t_test_squared_errors,
)
from judgeeye.store import Item, Prediction, RaterRun

#: how many missing items an error message names per run before it only counts them
NAMED_ITEMS = 20


class ItemMismatchError(ValueError):
    """Rater runs that did not rate the same items cannot be compared; names what is missing."""

    def __init__(self, missing: dict[int, list[str]], n_union: int) -> None:
        self.missing = missing
        parts = []
        for run_id, names in missing.items():
            shown = ", ".join(names[:NAMED_ITEMS]) + (f" and {len(names) - NAMED_ITEMS} more" if len(names) > NAMED_ITEMS else "")
            parts.append(f"run {run_id} has no prediction for {len(names)} of the {n_union} items: {shown}")
        super().__init__("rater runs must rate the same items to be compared; " + "; ".join(parts)
                         + " (resume the incomplete run, or compare runs over the same split and limit)")


@dataclass
class Aligned:
    """Ratings of M runs on the same n items: ``ratings[i, j]`` is run j's rating of item i
    (NaN where its rating could not be read)."""

    run_ids: list[int]
    item_ids: np.ndarray
    external_ids: list[str]
    gold: np.ndarray
    ratings: np.ndarray

    def column(self, run_id: int) -> np.ndarray:
        return self.ratings[:, self.run_ids.index(run_id)]


def align_runs(session: Session, run_ids: list[int]) -> Aligned:
    """The runs' ratings on their common items; any item some run lacks is an error."""
    run_ids = list(dict.fromkeys(int(r) for r in run_ids))
    if not run_ids:
        raise ValueError("choose at least one rater run")
    runs = {r.id: r for r in session.scalars(select(RaterRun).where(RaterRun.id.in_(run_ids))).all()}
    unknown = [r for r in run_ids if r not in runs]
    if unknown:
        raise LookupError(f"no rater run(s) {unknown}")
    projects = {runs[r].project_id for r in run_ids}
    if len(projects) > 1:
        raise ValueError(f"rater runs {run_ids} belong to different projects {sorted(projects)}; "
                         "compare runs of one project")
    rows = session.execute(
        select(Prediction.rater_run_id, Prediction.item_id, Prediction.rating)
        .where(Prediction.rater_run_id.in_(run_ids))
    ).all()
    per_run: dict[int, dict[int, float]] = {r: {} for r in run_ids}
    for run_id, item_id, rating in rows:
        per_run[run_id][item_id] = math.nan if rating is None else float(rating)
    empty = [r for r in run_ids if not per_run[r]]
    if empty:
        raise ValueError(f"rater run(s) {empty} have no predictions yet")
    union = sorted(set().union(*(set(v) for v in per_run.values())))
    rated = select(Prediction.item_id).where(Prediction.rater_run_id.in_(run_ids))
    items = {i: (e, g) for i, e, g in session.execute(
        select(Item.id, Item.external_id, Item.gold).where(Item.id.in_(rated))).all()}
    missing = {r: [str(items[i][0]) for i in union if i not in per_run[r]] for r in run_ids}
    missing = {r: names for r, names in missing.items() if names}
    if missing:
        raise ItemMismatchError(missing, len(union))
    ratings = np.array([[per_run[r][i] for r in run_ids] for i in union], dtype=float).reshape(len(union), len(run_ids))
    gold = np.array([np.nan if items[i][1] is None else items[i][1] for i in union], dtype=float)
    return Aligned(run_ids=run_ids, item_ids=np.asarray(union, dtype=np.int64),
                   external_ids=[str(items[i][0]) for i in union], gold=gold, ratings=ratings)


def significance_mark(p: float) -> str:
    """The paper's marks: * p < .05, ** p < .01, *** p < .001."""
    if p is None or not math.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def _pair_metrics(gold: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    keep = ~np.isnan(pred)
    g, p = gold[keep], pred[keep]
    return {"tau": kendall_tau(g, p), "icc3": icc3_pair(g, p), "mse": mse(g, p), "n": int(keep.sum())}


@dataclass
class Comparison:
    """Run B against run A on the same items (B is the candidate improvement)."""

    run_a: int
    run_b: int
    n_items: int
    metrics_a: dict[str, float]
    metrics_b: dict[str, float]
    mse_test: TestResult
    tau_test: TestResult
    icc3_test: TestResult

    def rows(self) -> list[dict[str, object]]:
        """One row per metric: A, B, B − A, test, p, mark (the paper's table layout)."""
        out = []
        for metric, test in (("tau", self.tau_test), ("icc3", self.icc3_test), ("mse", self.mse_test)):
            a, b = self.metrics_a[metric], self.metrics_b[metric]
            out.append({"metric": metric, "A": a, "B": b, "B - A": b - a, "test": test.name,
                        "p": test.p_value, "ci_lo": test.ci[0], "ci_hi": test.ci[1], "n": test.n,
                        "excluded": test.n_excluded, "degenerate": test.n_degenerate or 0,
                        "mark": significance_mark(test.p_value)})
        return out


def compare_runs(session: Session, run_a: int, run_b: int, *, n_boot: int = 1000, seed: int = 0) -> Comparison:
    """Is run B better than run A? One-sided tests in the direction of B's superiority."""
    if int(run_a) == int(run_b):
        raise ValueError(f"compare two different runs (got {run_a} twice)")
    aligned = align_runs(session, [run_a, run_b])
    gold, a, b = aligned.gold, aligned.column(int(run_a)), aligned.column(int(run_b))
    return Comparison(
        run_a=int(run_a), run_b=int(run_b), n_items=len(aligned.item_ids),
        metrics_a=_pair_metrics(gold, a), metrics_b=_pair_metrics(gold, b),
        mse_test=paired_t_test_squared_errors(gold, a, b),
        tau_test=bootstrap_improvement(gold, a, b, metric="tau", n_boot=n_boot, seed=seed),
        icc3_test=bootstrap_improvement(gold, a, b, metric="icc3", n_boot=n_boot, seed=seed),
    )


def inter_rater(session: Session, run_ids: list[int]) -> InterRaterICC:
    """ICC(3,1) among the runs as M raters (paper Table 3); items some run failed to rate are
    excluded and counted."""
    if len(set(run_ids)) < 2:
        raise ValueError("inter-rater reliability needs at least two rater runs")
    return inter_rater_icc3(align_runs(session, run_ids).ratings)


@dataclass
class GroupComparison:
    """The same M raters with setting A (e.g. the original codebook) and B (the refined one)."""

    runs_a: list[int]
    runs_b: list[int]
    n_items: int
    per_rater: list[dict[str, object]]
    metric_tests: dict[str, TestResult]
    icc_a: InterRaterICC | None
    icc_b: InterRaterICC | None
    icc_test: TestResult | None = None
    notes: list[str] = field(default_factory=list)


def compare_groups(session: Session, runs_a: list[int], runs_b: list[int], *, n_boot: int = 1000,
                   seed: int = 0) -> GroupComparison:
    """Rater i of A is paired with rater i of B. Per metric, a one-sided paired t-test across the
    raters (the paper's codebook analysis); with two or more raters, inter-rater ICC(3,1) of each
    group and a one-sided paired bootstrap that B's is higher."""
    if len(runs_a) != len(runs_b) or not runs_a:
        raise ValueError(f"pair each run of A with one of B: got {len(runs_a)} and {len(runs_b)} runs")
    if set(runs_a) & set(runs_b):
        raise ValueError(f"runs {sorted(set(runs_a) & set(runs_b))} are in both groups")
    aligned = align_runs(session, list(runs_a) + list(runs_b))
    gold = aligned.gold
    per_rater = []
    for a, b in zip(runs_a, runs_b):
        ma, mb = _pair_metrics(gold, aligned.column(a)), _pair_metrics(gold, aligned.column(b))
        per_rater.append({"run A": a, "run B": b, **{f"{k} A": ma[k] for k in ("tau", "icc3", "mse", "n")},
                          **{f"{k} B": mb[k] for k in ("tau", "icc3", "mse", "n")}})  # n: items rated
    tests = {
        metric: paired_t_test_across_raters([r[f"{metric} A"] for r in per_rater],
                                            [r[f"{metric} B"] for r in per_rater], alternative=alt)
        for metric, alt in (("tau", "greater"), ("icc3", "greater"), ("mse", "less"))
    }
    out = GroupComparison(runs_a=list(runs_a), runs_b=list(runs_b), n_items=len(gold), per_rater=per_rater,
                          metric_tests=tests, icc_a=None, icc_b=None)
    if len(runs_a) >= 2:
        ma = np.column_stack([aligned.column(r) for r in runs_a])
        mb = np.column_stack([aligned.column(r) for r in runs_b])
        out.icc_a, out.icc_b = inter_rater_icc3(ma), inter_rater_icc3(mb)
        out.icc_test = bootstrap_icc3_improvement(ma, mb, n_boot=n_boot, seed=seed)
    else:
        out.notes.append("inter-rater reliability needs at least two raters per group")
    if len(runs_a) < 2:
        out.notes.append("a t-test across raters needs at least two raters per group")
    return out
