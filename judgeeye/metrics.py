"""Agreement metrics between LLM raters and human gold labels.

The paper ("Through the Judge's Eyes") judges a rater by how well its ratings
track the human gold standard: Kendall's tau-b (rank agreement that copes with
the many ties of a 1..5 scale), ICC(3,1) (two-way mixed, consistency, single
rater; Koo & Li 2016: agreement up to a constant offset) and MSE (absolute
calibration). Improvements are tested with a paired t-test on squared errors
and one-sided paired bootstrap tests for tau and ICC3; the consistency of M
sampled LLM raters is ICC3 among them.

Conventions, so that no number is silently wrong:

* Plain metric functions (``kendall_tau``, ``icc3_pair`` ...) require complete
  data and raise ``ValueError`` on missing values. ``agreement_report`` and the
  tests drop items with a missing prediction and *report how many* they dropped.
* Degenerate input (constant ratings, fewer than two items) yields NaN, never an
  exception or a stream of RuntimeWarnings. One rule for ICC(3,1), in ``icc3_1`` and
  in every bootstrap: it is undefined when every rater's ratings are constant over the
  items (nothing varies, so there is nothing to agree on). Kendall's tau is undefined
  when either side is constant. Bootstrap resamples where a metric is undefined are
  left out of its interval and *counted* (``*_degenerate`` / ``n_degenerate``).
* Infinite values are errors (they are not ratings); None / NaN of any float type
  are missing values.
* Bootstraps are percentile bootstraps over items, seeded, and vectorised with
  numpy (Kendall's tau via a weighted pair-sign matrix, ICC via weighted
  moments), so 1,000 resamples of 2,000 items take well under a second.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import ArrayLike


def _stats() -> Any:
    """scipy.stats, imported on first use: it costs every CLI call and sampling job ~0.5 s."""
    from scipy import stats

    return stats

__all__ = [
    "AgreementReport",
    "InterRaterICC",
    "TestResult",
    "agreement_report",
    "bootstrap_icc3_improvement",
    "bootstrap_improvement",
    "confusion_matrix",
    "drop_missing",
    "exact_agreement",
    "fleiss_kappa",
    "fleiss_kappa_from_labels",
    "icc3_1",
    "icc3_pair",
    "inter_rater_icc3",
    "kendall_tau",
    "mse",
    "paired_t_test_across_raters",
    "paired_t_test_squared_errors",
    "pearson",
    "round_to_levels",
    "spearman",
]

Seed = int | np.random.Generator | None
CI = tuple[float, float]
_NAN_CI: CI = (math.nan, math.nan)

# Unique (gold, pred) pairs above which the bootstrap of Kendall's tau falls back
# from the vectorised pair-sign matrix (u*u float32) to one scipy call per resample.
_TAU_MATRIX_MAX_UNIQUE = 4000
# Budget of index entries (n_items * resamples) handled per bootstrap chunk.
_CHUNK_ENTRIES = 2_000_000


# --------------------------------------------------------------------------- #
# Input handling
# --------------------------------------------------------------------------- #


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy/scipy degenerate-data warnings; callers get NaN instead."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _is_missing_scalar(v: Any) -> bool:
    if v is None:
        return True
    if type(v).__name__ in {"NAType", "NaTType"}:  # pandas.NA / NaT
        return True
    # np.float32 / np.float16 are not Python floats, but their NaN is just as missing
    return isinstance(v, (float, np.floating)) and math.isnan(v)


def _check_finite(arr: np.ndarray, name: str) -> np.ndarray:
    """``arr`` unchanged; an infinite value is an error, never a rating (it would rank as the
    highest one and give e.g. tau 0.667 where there is no answer)."""
    bad = np.argwhere(np.isinf(arr))
    if bad.size:
        where = ", ".join(map(str, bad[0])) if arr.ndim > 1 else str(bad[0][0])
        raise ValueError(
            f"{name} holds {bad.shape[0]} infinite value(s), the first at position {where}; "
            "ratings must be finite numbers (None or NaN mark a missing one)"
        )
    return arr


def _as_float(x: ArrayLike, name: str) -> np.ndarray:
    """1-D float array where None / NaN / pandas.NA become NaN (= missing); inf is an error."""
    try:
        arr = np.asarray(x, dtype=float)
    except TypeError:  # e.g. object arrays holding pandas.NA
        arr = np.array(
            [math.nan if _is_missing_scalar(v) else float(v) for v in np.asarray(x, dtype=object).ravel()],
            dtype=float,
        )
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return _check_finite(arr, name)


def _pair(gold: ArrayLike, pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    g, p = _as_float(gold, "gold"), _as_float(pred, "pred")
    if g.shape != p.shape:
        raise ValueError(f"gold and pred differ in length: {g.size} vs {p.size}")
    return g, p


def _complete_pair(gold: ArrayLike, pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Paired arrays without missing values; raise rather than drop silently."""
    g, p = _pair(gold, pred)
    if np.isnan(g).any() or np.isnan(p).any():
        raise ValueError(
            "gold/pred contain missing values (None/NaN); use drop_missing() or "
            "agreement_report(), which drop and count them"
        )
    return g, p


def drop_missing(gold: ArrayLike, pred: ArrayLike) -> tuple[np.ndarray, np.ndarray, int]:
    """Drop items whose prediction is missing and return how many were dropped.

    Gold labels are the reference, so a missing gold label is an error, not
    something to drop quietly.
    """
    g, p = _pair(gold, pred)
    if np.isnan(g).any():
        raise ValueError(f"gold contains {int(np.isnan(g).sum())} missing label(s); gold must be complete")
    keep = ~np.isnan(p)
    return g[keep], p[keep], int((~keep).sum())


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


# --------------------------------------------------------------------------- #
# Point metrics
# --------------------------------------------------------------------------- #


def kendall_tau(gold: ArrayLike, pred: ArrayLike) -> float:
    """Kendall's tau-b: rank agreement that corrects for the ties of ordinal scales."""
    g, p = _complete_pair(gold, pred)
    if g.size < 2:
        return math.nan
    with _quiet():
        return float(_stats().kendalltau(g, p).statistic)


def spearman(gold: ArrayLike, pred: ArrayLike) -> float:
    """Spearman's rho (Pearson on average ranks)."""
    g, p = _complete_pair(gold, pred)
    if g.size < 2:
        return math.nan
    with _quiet():
        return float(_stats().spearmanr(g, p).statistic)


def pearson(gold: ArrayLike, pred: ArrayLike) -> float:
    """Pearson's r: linear agreement, sensitive to the spacing of scores."""
    g, p = _complete_pair(gold, pred)
    if g.size < 2:
        return math.nan
    with _quiet():
        return float(_stats().pearsonr(g, p).statistic)


def mse(gold: ArrayLike, pred: ArrayLike) -> float:
    """Mean squared error: penalises miscalibration that tau and ICC3 ignore."""
    g, p = _complete_pair(gold, pred)
    if g.size == 0:
        return math.nan
    return float(np.mean((p - g) ** 2))


def round_to_levels(pred: ArrayLike, levels: Sequence[float]) -> np.ndarray:
    """Map each prediction to the nearest scale level (ties go to the higher level).

    Expected-score raters emit e.g. 3.4 on a 1..5 scale; categorical views
    (confusion matrix, exact agreement) need a level. Missing values stay NaN.
    """
    p = _as_float(pred, "pred")
    lv = np.asarray(sorted(set(float(v) for v in levels)), dtype=float)
    if lv.size == 0:
        raise ValueError("levels must not be empty")
    out = np.full(p.shape, math.nan)
    ok = ~np.isnan(p)
    dist = np.abs(p[ok, None] - lv[None, :])
    # argmin over reversed levels picks the higher level on exact ties (2.5 -> 3).
    out[ok] = lv[::-1][np.argmin(dist[:, ::-1], axis=1)]
    return out


def exact_agreement(gold: ArrayLike, pred: ArrayLike, levels: Sequence[float] | None = None) -> float:
    """Share of items where the rating equals the gold label.

    With ``levels`` the predictions are first rounded to the nearest level, which
    is what makes this meaningful for expected-score (non-integer) raters.
    """
    g, p = _complete_pair(gold, pred)
    if g.size == 0:
        return math.nan
    if levels is not None:
        p = round_to_levels(p, levels)
    return float(np.mean(g == p))


def confusion_matrix(gold: ArrayLike, pred: ArrayLike, levels: Sequence[int]) -> np.ndarray:
    """Counts with rows = gold level and columns = predicted level, in ``levels`` order.

    Predictions are rounded to the nearest level (ties to the higher one, see
    ``round_to_levels``), so expected-score raters fit the same table. Gold labels
    must be levels; missing values raise (drop them with ``drop_missing`` first).
    """
    g, p = _complete_pair(gold, pred)
    lv = [float(v) for v in levels]
    if len(set(lv)) != len(lv):
        raise ValueError("levels must be unique")
    pos = {v: i for i, v in enumerate(lv)}
    bad = sorted({float(v) for v in g} - set(lv))
    if bad:
        raise ValueError(f"gold labels {bad} are not among levels {list(levels)}")
    pr = round_to_levels(p, lv)
    gi = np.fromiter((pos[v] for v in g), dtype=np.intp, count=g.size)
    pi = np.fromiter((pos[v] for v in pr), dtype=np.intp, count=pr.size)
    k = len(lv)
    return np.bincount(gi * k + pi, minlength=k * k).reshape(k, k)


# --------------------------------------------------------------------------- #
# ICC(3,1)
# --------------------------------------------------------------------------- #


def icc3_1(ratings: ArrayLike) -> float:
    """ICC(3,1): two-way mixed, consistency, single rater (Koo & Li 2016).

    ``ratings`` is n_items x k_raters. From the two-way ANOVA mean squares,
    (MSR - MSE) / (MSR + (k-1) MSE): raters may differ by a constant offset
    without being penalised, unlike absolute-agreement ICC2. NaN when every
    rater is constant (the one degenerate rule, see ``_all_raters_constant``);
    one constant rater among two gives 0 (MSR = MSE).
    pingouin calls this "ICC3" / "ICC(C,1)".
    """
    x = _check_finite(np.asarray(ratings, dtype=float), "ratings")
    if x.ndim != 2:
        raise ValueError(f"ratings must be n_items x k_raters, got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError("ratings contain missing values; use inter_rater_icc3(), which drops and counts them")
    n, k = x.shape
    if n < 2 or k < 2 or _all_raters_constant(x):
        return math.nan
    # ICC3 ignores column offsets: subtracting the first row makes a constant column exactly
    # zero, and centring then keeps the sums accurate
    x = x - x[0]
    x = x - x.mean(axis=0)
    row = x.mean(axis=1)
    ss_rows = k * float(np.sum(row**2))
    ss_err = float(np.sum((x - row[:, None]) ** 2))  # columns already centred
    msr = ss_rows / (n - 1)
    mse_ = ss_err / ((n - 1) * (k - 1))
    with _quiet():
        return float(np.float64(msr - mse_) / np.float64(msr + (k - 1) * mse_))


def _all_raters_constant(x: np.ndarray) -> bool:
    """The degenerate case of ICC(3,1): every column (rater) has one value over all items."""
    return bool(np.all(x.max(axis=0) == x.min(axis=0)))


def icc3_pair(gold: ArrayLike, pred: ArrayLike) -> float:
    """ICC(3,1) between one rater and the gold standard (the 2-column case)."""
    g, p = _complete_pair(gold, pred)
    return icc3_1(np.column_stack([g, p]))


# --------------------------------------------------------------------------- #
# Fleiss' kappa
# --------------------------------------------------------------------------- #


def fleiss_kappa(counts: ArrayLike) -> float:
    """Fleiss' kappa for an n_items x n_categories table of rater counts.

    Chance-corrected agreement of a fixed number of raters on nominal labels;
    every row must sum to that number of raters.
    """
    t = np.asarray(counts, dtype=float)
    if t.ndim != 2:
        raise ValueError(f"counts must be n_items x n_categories, got shape {t.shape}")
    if (t < 0).any():
        raise ValueError("counts must be non-negative")
    if t.shape[0] == 0:
        return math.nan
    per_item = t.sum(axis=1)
    m = per_item[0]
    if not np.allclose(per_item, m):
        raise ValueError(
            f"every item must have the same number of raters; row sums range from {per_item.min():g} to {per_item.max():g}"
        )
    if m < 2:
        return math.nan
    n_items = t.shape[0]
    p_cat = t.sum(axis=0) / (n_items * m)
    p_item = (np.sum(t * t, axis=1) - m) / (m * (m - 1))
    p_bar = float(p_item.mean())
    p_e = float(np.sum(p_cat**2))
    with _quiet():
        return float(np.float64(p_bar - p_e) / np.float64(1.0 - p_e))


def fleiss_kappa_from_labels(labels: Sequence[Sequence[Hashable]]) -> float:
    """Fleiss' kappa from per-item label lists (one label per rater).

    Builds the count table over the union of labels. None/NaN are not labels;
    after ignoring them all items must have the same number of raters.
    """
    rows = [[v for v in row if not _is_missing_scalar(v)] for row in labels]
    if not rows:
        return math.nan
    sizes = sorted({len(r) for r in rows})
    if len(sizes) > 1:
        bad = next(i for i, r in enumerate(rows) if len(r) != len(rows[0]))
        raise ValueError(
            "fleiss_kappa needs the same number of raters for every item; found "
            f"{sizes} ratings per item (item 0 has {len(rows[0])}, item {bad} has {len(rows[bad])})"
        )
    cats: list[Hashable] = list(dict.fromkeys(v for r in rows for v in r))
    try:
        cats = sorted(cats)  # type: ignore[type-var]  # Hashable is not orderable; TypeError below
    except TypeError:
        pass  # mixed, unorderable labels: keep first-seen order
    pos = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(rows), len(cats)))
    for i, r in enumerate(rows):
        for v in r:
            table[i, pos[v]] += 1
    return fleiss_kappa(table)


# --------------------------------------------------------------------------- #
# Vectorised bootstrap machinery
# --------------------------------------------------------------------------- #


def _index_chunks(rng: np.random.Generator, n: int, n_boot: int) -> Iterator[np.ndarray]:
    """Resampled item indices, (chunk x n) at a time; chunking depends only on n."""
    chunk = max(1, min(n_boot, _CHUNK_ENTRIES // max(n, 1)))
    done = 0
    while done < n_boot:
        c = min(chunk, n_boot - done)
        yield rng.integers(0, n, size=(c, n))
        done += c


def _counts(idx: np.ndarray, n_cat: int) -> np.ndarray:
    """Per-row occurrence counts: (c x n) indices -> (c x n_cat) int64."""
    c = idx.shape[0]
    flat = (idx + (np.arange(c) * n_cat)[:, None]).ravel()
    return np.bincount(flat, minlength=c * n_cat).reshape(c, n_cat)


def _boot_tau(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Kendall tau-b of (x[r], y[r]) for every row r of ``idx``, exactly.

    A resample is a weight vector w over items; C - D = w' S w / 2 with
    S_ij = sign(x_i - x_j) sign(y_i - y_j) (S_ii = 0 covers duplicated items),
    and the tie terms are sums over tie groups of T(T-1)/2 with T the group
    weight. Identical (x, y) pairs are merged first, so integer scales give a
    tiny S. All intermediate values are integers, exact in float32 matmuls.
    """
    n = x.size
    c = idx.shape[0]
    pairs, inv = np.unique(np.column_stack([x, y]), axis=0, return_inverse=True)
    inv = inv.ravel()
    u = pairs.shape[0]
    if u > _TAU_MATRIX_MAX_UNIQUE:
        out = np.empty(c)
        kendalltau = _stats().kendalltau
        with _quiet():
            for r in range(c):
                out[r] = kendalltau(x[idx[r]], y[idx[r]]).statistic
        return out
    ux, uy = pairs[:, 0], pairs[:, 1]
    s = (np.sign(ux[:, None] - ux[None, :]) * np.sign(uy[:, None] - uy[None, :])).astype(np.float32)
    cidx = inv[idx]
    w = _counts(cidx, u)
    ws = (w.astype(np.float32) @ s).astype(np.float64)
    num = 0.5 * np.einsum("ij,ij->i", ws, w.astype(np.float64))
    gx = np.unique(ux, return_inverse=True)[1].ravel()
    gy = np.unique(uy, return_inverse=True)[1].ravel()
    tx = _counts(gx[cidx], int(gx.max()) + 1).astype(np.float64)
    ty = _counts(gy[cidx], int(gy.max()) + 1).astype(np.float64)
    n0 = n * (n - 1) / 2.0
    n1 = 0.5 * (np.sum(tx * tx, axis=1) - n)
    n2 = 0.5 * (np.sum(ty * ty, axis=1) - n)
    with _quiet():
        return num / np.sqrt((n0 - n1) * (n0 - n2))


def _boot_all_raters_constant(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per resample (row of item weights ``w``): is every column of ``x`` constant over the
    items drawn? Exact comparisons, the same rule as ``icc3_1``."""
    drawn = w > 0
    constant = np.ones(w.shape[0], dtype=bool)
    for col in x.T:
        hi = np.where(drawn, col, -np.inf).max(axis=1)
        lo = np.where(drawn, col, np.inf).min(axis=1)
        constant &= hi == lo
    return constant


def _boot_icc3(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ICC(3,1) of the n x k matrix ``x`` under each row of item weights ``w``.

    Weighted ANOVA sums from weighted first and second moments: one matmul per
    moment instead of one ANOVA per resample. NaN where every rater is constant
    in the resample (where the sums are rounding noise: 1.0, 0.6 or -1.0 before).
    """
    n, k = x.shape
    xc = x - x.mean(axis=0)  # shift invariance; keeps the moment sums well conditioned
    wf = w.astype(np.float64)
    big_n = float(n)
    col_mean = (wf @ xc) / big_n  # (c x k)
    grand = col_mean.mean(axis=1)  # (c,)
    row = xc.mean(axis=1)
    ss_total = (wf @ (xc**2)).sum(axis=1) - big_n * k * grand**2
    ss_rows = k * ((wf @ (row**2)) - big_n * grand**2)
    ss_cols = big_n * np.sum((col_mean - grand[:, None]) ** 2, axis=1)
    # sums of squares are >= 0; a difference of moments can come out a rounding error below
    ss_err = np.maximum(ss_total - ss_rows - ss_cols, 0.0)
    ss_rows = np.maximum(ss_rows, 0.0)
    msr = ss_rows / (n - 1)
    mse_ = ss_err / ((n - 1) * (k - 1))
    with _quiet():
        icc = (msr - mse_) / (msr + (k - 1) * mse_)
    # exact check only where the within-rater spread is ~0 (elsewhere some rater varies)
    within = ss_total - ss_cols
    maybe = np.flatnonzero(within <= 1e-9 * big_n * k * (1.0 + float(np.max(xc**2))))
    icc[maybe[_boot_all_raters_constant(x, w[maybe])]] = math.nan
    return icc


def _undefined(values: np.ndarray) -> int:
    """How many bootstrap resamples gave no value (the metric is undefined there)."""
    return int(np.count_nonzero(~np.isfinite(values)))


def _percentile_ci(values: np.ndarray, level: float = 0.95) -> CI:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return _NAN_CI
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(v, [a, 1.0 - a])
    return (float(lo), float(hi))


# --------------------------------------------------------------------------- #
# Agreement report
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class AgreementReport:
    """Everything the paper reports for one rater against gold, with 95% bootstrap CIs.

    ``n`` counts items rated by both; ``n_missing`` counts items the rater left
    unrated, which were excluded from every number here. ``tau_degenerate`` and
    ``icc3_degenerate`` count the resamples (of ``n_boot``) where tau or ICC3 is
    undefined (constant ratings); they are left out of that interval.
    """

    n: int
    n_missing: int
    tau: float
    spearman: float
    pearson: float
    icc3: float
    mse: float
    exact: float
    tau_ci: CI
    icc3_ci: CI
    mse_ci: CI
    n_boot: int = 0
    tau_degenerate: int = 0
    icc3_degenerate: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement_report(
    gold: ArrayLike,
    pred: ArrayLike,
    *,
    n_boot: int = 1000,
    seed: Seed = 0,
    levels: Sequence[float] | None = None,
    confidence: float = 0.95,
) -> AgreementReport:
    """Tau, Spearman, Pearson, ICC3, MSE and exact agreement of ``pred`` vs ``gold``.

    Missing predictions are dropped and counted in ``n_missing``. CIs are
    percentile bootstraps over items (``n_boot`` resamples, seeded; ``n_boot=0``
    skips them); ``levels`` rounds predictions before exact agreement.
    """
    g, p, n_missing = drop_missing(gold, pred)
    n = int(g.size)
    report = AgreementReport(
        n=n,
        n_missing=n_missing,
        tau=kendall_tau(g, p),
        spearman=spearman(g, p),
        pearson=pearson(g, p),
        icc3=icc3_pair(g, p),
        mse=mse(g, p),
        exact=exact_agreement(g, p, levels=levels),
        tau_ci=_NAN_CI,
        icc3_ci=_NAN_CI,
        mse_ci=_NAN_CI,
        n_boot=int(n_boot),
    )
    if n_boot > 0 and n >= 2:
        rng = _rng(seed)
        xy = np.column_stack([g, p])
        sq = (p - g) ** 2
        taus, iccs, mses = [], [], []
        for idx in _index_chunks(rng, n, n_boot):
            w = _counts(idx, n)
            taus.append(_boot_tau(g, p, idx))
            iccs.append(_boot_icc3(xy, w))
            mses.append(w @ sq / n)
        tau_all, icc_all = np.concatenate(taus), np.concatenate(iccs)
        report = replace(
            report,
            tau_ci=_percentile_ci(tau_all, confidence),
            icc3_ci=_percentile_ci(icc_all, confidence),
            mse_ci=_percentile_ci(np.concatenate(mses), confidence),
            tau_degenerate=_undefined(tau_all),
            icc3_degenerate=_undefined(icc_all),
        )
    return report


# --------------------------------------------------------------------------- #
# Significance tests
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class TestResult:
    """Outcome of a significance test, with what was excluded and why it matters.

    ``statistic`` is the test statistic (t for t-tests, the observed difference
    for bootstraps); ``estimate`` is the effect in metric units; ``p_value`` is
    for ``alternative``; ``ci`` is a 95% interval for ``estimate``. Bootstraps set
    ``n_degenerate``: resamples where the metric was undefined for A or B, left out
    of ``ci`` and counted as "no improvement" in ``p_value``.
    """

    __test__ = False  # not a pytest test class

    name: str
    statistic: float
    estimate: float
    p_value: float
    ci: CI
    n: int
    n_excluded: int
    alternative: str
    p_value_two_sided: float | None = None
    n_boot: int | None = None
    n_degenerate: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _three(gold: ArrayLike, pred_a: ArrayLike, pred_b: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Gold and both predictions on items both raters rated, plus the excluded count."""
    g = _as_float(gold, "gold")
    a = _as_float(pred_a, "pred_a")
    b = _as_float(pred_b, "pred_b")
    if not (g.size == a.size == b.size):
        raise ValueError(f"gold, pred_a and pred_b differ in length: {g.size}, {a.size}, {b.size}")
    if np.isnan(g).any():
        raise ValueError(f"gold contains {int(np.isnan(g).sum())} missing label(s); gold must be complete")
    keep = ~(np.isnan(a) | np.isnan(b))
    return g[keep], a[keep], b[keep], int((~keep).sum())


def _t_ci(diff: np.ndarray, level: float = 0.95) -> CI:
    n = diff.size
    if n < 2:
        return _NAN_CI
    with _quiet():
        half = _stats().t.ppf(0.5 + level / 2.0, n - 1) * np.std(diff, ddof=1) / math.sqrt(n)
    m = float(np.mean(diff))
    return (m - float(half), m + float(half))


def paired_t_test_squared_errors(gold: ArrayLike, pred_a: ArrayLike, pred_b: ArrayLike) -> TestResult:
    """Paired t-test on per-item squared errors (A minus B), as in the paper.

    ``p_value`` is one-sided for "B has lower MSE than A"; the two-sided p is
    kept too. ``estimate`` = MSE(A) - MSE(B) (> 0 means B is better). Items
    missing in either rater are excluded from both and counted.
    """
    g, a, b, n_excl = _three(gold, pred_a, pred_b)
    sa, sb = (a - g) ** 2, (b - g) ** 2
    diff = sa - sb
    n = int(g.size)
    if n < 2:
        t = p1 = p2 = math.nan
    else:
        with _quiet():
            both = _stats().ttest_rel(sa, sb)
            t, p2 = float(both.statistic), float(both.pvalue)
            p1 = float(_stats().ttest_rel(sa, sb, alternative="greater").pvalue)
    return TestResult(
        name="paired t-test on squared errors",
        statistic=t,
        estimate=float(np.mean(diff)) if n else math.nan,
        p_value=p1,
        ci=_t_ci(diff),
        n=n,
        n_excluded=n_excl,
        alternative="MSE(B) < MSE(A)",
        p_value_two_sided=p2,
    )


def _one_sided_boot_p(diffs: np.ndarray) -> float:
    # Share of resamples with no improvement; undefined (NaN) resamples count as
    # no improvement, which can only make the test more conservative.
    return float(np.mean(~(diffs > 0))) if diffs.size else math.nan


def bootstrap_improvement(
    gold: ArrayLike,
    pred_a: ArrayLike,
    pred_b: ArrayLike,
    metric: Literal["tau", "icc3"] = "tau",
    n_boot: int = 1000,
    seed: Seed = 0,
    confidence: float = 0.95,
) -> TestResult:
    """One-sided paired bootstrap: is ``metric`` higher for B than for A?

    Items are resampled with replacement (the same items for A and B, which is
    what makes it paired) and diff = metric(B) - metric(A) computed each time.
    p = share of resamples with diff <= 0 (NaN resamples count as <= 0).
    ``statistic``/``estimate`` are the observed diff on all items, ``ci`` its
    percentile interval. Items missing in either rater are excluded and counted.
    """
    if metric not in ("tau", "icc3"):
        raise ValueError(f"metric must be 'tau' or 'icc3', got {metric!r}")
    g, a, b, n_excl = _three(gold, pred_a, pred_b)
    n = int(g.size)
    if n >= 2:
        fn = kendall_tau if metric == "tau" else icc3_pair
        observed = fn(g, b) - fn(g, a)
    else:
        observed = math.nan
    diffs = np.empty(0)
    if n >= 2 and n_boot > 0:
        rng = _rng(seed)
        parts = []
        xa, xb = np.column_stack([g, a]), np.column_stack([g, b])
        for idx in _index_chunks(rng, n, n_boot):
            if metric == "tau":
                parts.append(_boot_tau(g, b, idx) - _boot_tau(g, a, idx))
            else:
                w = _counts(idx, n)
                parts.append(_boot_icc3(xb, w) - _boot_icc3(xa, w))
        diffs = np.concatenate(parts)
    return TestResult(
        name=f"paired bootstrap, {metric} improvement",
        statistic=observed,
        estimate=observed,
        p_value=_one_sided_boot_p(diffs),
        ci=_percentile_ci(diffs, confidence),
        n=n,
        n_excluded=n_excl,
        alternative=f"{metric}(B) > {metric}(A)",
        n_boot=int(n_boot),
        n_degenerate=_undefined(diffs),
    )


def paired_t_test_across_raters(
    metric_a: Sequence[float],
    metric_b: Sequence[float],
    alternative: Literal["greater", "less", "two-sided"] = "greater",
) -> TestResult:
    """Paired t-test over M raters' metrics before (A) and after (B), e.g. a refined codebook.

    ``alternative`` is about B relative to A: "greater" for tau/ICC3 (higher is
    better), "less" for MSE. ``estimate`` = mean(B - A); ``ci`` is its two-sided
    95% t interval. Raters with a NaN metric in either condition are excluded
    and counted.
    """
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"alternative must be 'greater', 'less' or 'two-sided', got {alternative!r}")
    a, b = _as_float(metric_a, "metric_a"), _as_float(metric_b, "metric_b")
    if a.size != b.size:
        raise ValueError(f"metric_a and metric_b differ in length: {a.size} vs {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    n = int(a.size)
    diff = b - a
    if n < 2:
        t = p = p2 = math.nan
    else:
        with _quiet():
            res = _stats().ttest_rel(b, a, alternative=alternative)
            t, p = float(res.statistic), float(res.pvalue)
            p2 = float(_stats().ttest_rel(b, a).pvalue)
    return TestResult(
        name="paired t-test across raters",
        statistic=t,
        estimate=float(np.mean(diff)) if n else math.nan,
        p_value=p,
        ci=_t_ci(diff),
        n=n,
        n_excluded=int((~keep).sum()),
        alternative={"greater": "B > A", "less": "B < A", "two-sided": "B != A"}[alternative],
        p_value_two_sided=p2,
    )


# --------------------------------------------------------------------------- #
# Inter-rater consistency among M LLM raters
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class InterRaterICC:
    """ICC(3,1) among M raters, with the items dropped for missing ratings."""

    icc3: float
    n: int
    n_excluded: int
    n_raters: int

    def __float__(self) -> float:
        return float(self.icc3)


def _matrix(m: ArrayLike, name: str) -> np.ndarray:
    try:
        x = np.asarray(m, dtype=float)
    except TypeError:  # None or pd.NA among the cells: m is a sequence of rows
        rows = cast(Iterable[Iterable[Any]], m)
        x = np.array([[math.nan if _is_missing_scalar(v) else float(v) for v in row] for row in rows], dtype=float)
    if x.ndim != 2:
        raise ValueError(f"{name} must be n_items x M raters, got shape {x.shape}")
    return _check_finite(x, name)


def inter_rater_icc3(matrix: ArrayLike) -> InterRaterICC:
    """ICC(3,1) among M raters (n_items x M); items with any missing rating are excluded and counted."""
    x = _matrix(matrix, "matrix")
    keep = ~np.isnan(x).any(axis=1)
    return InterRaterICC(
        icc3=icc3_1(x[keep]),
        n=int(keep.sum()),
        n_excluded=int((~keep).sum()),
        n_raters=int(x.shape[1]),
    )


def bootstrap_icc3_improvement(
    matrix_a: ArrayLike,
    matrix_b: ArrayLike,
    n_boot: int = 1000,
    seed: Seed = 0,
    confidence: float = 0.95,
) -> TestResult:
    """One-sided paired bootstrap that ICC3 among the M raters is higher with B than with A.

    Both matrices rate the same items (row i = item i). Items are resampled
    together; p = share of resamples with ICC3(B) - ICC3(A) <= 0. Items with a
    missing rating in either matrix are excluded from both and counted.
    """
    xa, xb = _matrix(matrix_a, "matrix_a"), _matrix(matrix_b, "matrix_b")
    if xa.shape[0] != xb.shape[0]:
        raise ValueError(f"matrix_a and matrix_b must rate the same items: {xa.shape[0]} vs {xb.shape[0]} rows")
    keep = ~(np.isnan(xa).any(axis=1) | np.isnan(xb).any(axis=1))
    xa, xb = xa[keep], xb[keep]
    n = int(keep.sum())
    observed = icc3_1(xb) - icc3_1(xa) if n >= 2 else math.nan
    diffs = np.empty(0)
    if n >= 2 and n_boot > 0 and min(xa.shape[1], xb.shape[1]) >= 2:
        rng = _rng(seed)
        parts = []
        for idx in _index_chunks(rng, n, n_boot):
            w = _counts(idx, n)
            parts.append(_boot_icc3(xb, w) - _boot_icc3(xa, w))
        diffs = np.concatenate(parts)
    return TestResult(
        name="paired bootstrap, inter-rater ICC3 improvement",
        statistic=observed,
        estimate=observed,
        p_value=_one_sided_boot_p(diffs),
        ci=_percentile_ci(diffs, confidence),
        n=n,
        n_excluded=int((~keep).sum()),
        alternative="ICC3 among raters (B) > (A)",
        n_boot=int(n_boot),
        n_degenerate=_undefined(diffs),
    )
