"""judgeeye.metrics against SciPy / pingouin / statsmodels / sklearn references."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from judgeeye import metrics as m

SEEDS = [0, 1, 2, 3, 4]
TOL = 1e-9


def _data(seed: int, n: int = 200, kind: str = "float") -> tuple[np.ndarray, np.ndarray]:
    """Integer 1..5 gold (plenty of ties) and a correlated prediction."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(1, 6, n).astype(float)
    noisy = gold + rng.normal(0, 1.0, n)
    if kind == "int":
        return gold, np.clip(np.round(noisy), 1, 5)
    return gold, noisy


def _pingouin_icc3(mat: np.ndarray) -> float:
    n, k = mat.shape
    df = pd.DataFrame(
        {
            "item": np.repeat(np.arange(n), k),
            "rater": np.tile(np.arange(k), n),
            "score": mat.ravel(),
        }
    )
    res = pg.intraclass_corr(data=df, targets="item", raters="rater", ratings="score").set_index("Type")
    # pingouin < 0.7 calls ICC(3,1) "ICC3"; 0.7 renamed it "ICC(C,1)" (consistency, single rater).
    row = "ICC3" if "ICC3" in res.index else "ICC(C,1)"
    return float(res.loc[row, "ICC"])


# --------------------------------------------------------------------------- #
# Point metrics vs references
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["float", "int"])
def test_correlations_and_mse_match_scipy(seed: int, kind: str) -> None:
    g, p = _data(seed, kind=kind)
    assert m.kendall_tau(g, p) == pytest.approx(stats.kendalltau(g, p).statistic, abs=TOL)
    assert m.spearman(g, p) == pytest.approx(stats.spearmanr(g, p).statistic, abs=TOL)
    assert m.pearson(g, p) == pytest.approx(stats.pearsonr(g, p).statistic, abs=TOL)
    assert m.mse(g, p) == pytest.approx(np.mean((g - p) ** 2), abs=TOL)
    assert m.exact_agreement(g, p) == pytest.approx(np.mean(g == p), abs=TOL)


def test_tau_is_tau_b_with_ties() -> None:
    g = [1, 1, 2, 2, 3, 3, 3]
    p = [1, 2, 2, 2, 3, 3, 1]
    assert m.kendall_tau(g, p) == pytest.approx(stats.kendalltau(g, p, variant="b").statistic, abs=TOL)
    assert m.kendall_tau(g, p) != pytest.approx(stats.kendalltau(g, p, variant="c").statistic, abs=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["float", "int"])
def test_icc3_pair_matches_pingouin(seed: int, kind: str) -> None:
    g, p = _data(seed, n=120, kind=kind)
    p = p + 0.7  # a constant offset must not matter for consistency ICC
    expected = _pingouin_icc3(np.column_stack([g, p]))
    assert m.icc3_pair(g, p) == pytest.approx(expected, abs=TOL)
    assert m.icc3_1(np.column_stack([g, p])) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_icc3_four_raters_matches_pingouin(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 6, 80).astype(float)
    mat = np.column_stack([np.clip(np.round(truth + rng.normal(b, 1.0, 80)), 1, 5) for b in (0, 0.3, -0.4, 0.1)])
    expected = _pingouin_icc3(mat)
    assert m.icc3_1(mat) == pytest.approx(expected, abs=TOL)
    res = m.inter_rater_icc3(mat)
    assert res.icc3 == pytest.approx(expected, abs=TOL)
    assert float(res) == res.icc3
    assert (res.n, res.n_excluded, res.n_raters) == (80, 0, 4)


def test_inter_rater_icc3_excludes_and_counts_missing_rows() -> None:
    rng = np.random.default_rng(7)
    mat = rng.integers(1, 6, (50, 4)).astype(float)
    mat[:, 1] = mat[:, 0] + rng.normal(0, 0.5, 50)
    with_missing = mat.astype(object)
    with_missing[3, 2] = None
    with_missing[10, 0] = np.nan
    res = m.inter_rater_icc3(with_missing)
    assert (res.n, res.n_excluded) == (48, 2)
    keep = np.ones(50, bool)
    keep[[3, 10]] = False
    assert res.icc3 == pytest.approx(_pingouin_icc3(mat[keep]), abs=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_fleiss_kappa_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items, n_raters, n_cat = 60, 5, 4
    base = rng.integers(0, n_cat, n_items)
    labels = np.where(rng.random((n_items, n_raters)) < 0.6, base[:, None], rng.integers(0, n_cat, (n_items, n_raters)))
    table = np.stack([np.bincount(r, minlength=n_cat) for r in labels])
    expected = sm_fleiss_kappa(table, method="fleiss")
    assert m.fleiss_kappa(table) == pytest.approx(expected, abs=TOL)
    names = np.array(["bad", "fair", "good", "great"])
    assert m.fleiss_kappa_from_labels(names[labels].tolist()) == pytest.approx(expected, abs=TOL)


def test_fleiss_kappa_rejects_unequal_rater_counts() -> None:
    with pytest.raises(ValueError, match="same number of raters"):
        m.fleiss_kappa_from_labels([["a", "b", "a"], ["a", "b"]])
    with pytest.raises(ValueError, match="same number of raters"):
        m.fleiss_kappa(np.array([[2, 1], [1, 1]]))


@pytest.mark.parametrize("seed", SEEDS)
def test_confusion_matrix_matches_sklearn(seed: int) -> None:
    g, p = _data(seed)
    levels = [1, 2, 3, 4, 5]
    rounded = np.clip(np.floor(p + 0.5), 1, 5)  # nearest level, halves up
    expected = sk_confusion_matrix(g.astype(int), rounded.astype(int), labels=levels)
    got = m.confusion_matrix(g, p, levels)
    np.testing.assert_array_equal(got, expected)
    assert got.sum() == len(g)
    np.testing.assert_array_equal(m.round_to_levels([2.5, 0.2, 9.0, 3.49], levels), [3, 1, 5, 3])
    assert m.exact_agreement(g, p, levels=levels) == pytest.approx(np.trace(expected) / len(g), abs=TOL)


def test_confusion_matrix_rejects_gold_outside_levels() -> None:
    with pytest.raises(ValueError, match="not among levels"):
        m.confusion_matrix([1, 2, 7], [1, 2, 3], [1, 2, 3])


# --------------------------------------------------------------------------- #
# Vectorised bootstrap internals are exact
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kind", ["float", "int"])
@pytest.mark.parametrize("matrix_path", [True, False])
def test_vectorised_bootstrap_tau_equals_scipy_per_resample(
    kind: str, matrix_path: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not matrix_path:
        monkeypatch.setattr(m, "_TAU_MATRIX_MAX_UNIQUE", 0)
    g, p = _data(11, n=300, kind=kind)
    idx = np.random.default_rng(3).integers(0, len(g), (20, len(g)))
    expected = [stats.kendalltau(g[r], p[r]).statistic for r in idx]
    np.testing.assert_allclose(m._boot_tau(g, p, idx), expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("k", [2, 4])
def test_vectorised_bootstrap_icc3_equals_direct(k: int) -> None:
    rng = np.random.default_rng(5)
    truth = rng.integers(1, 6, 150).astype(float)
    mat = np.column_stack([truth + rng.normal(j * 0.2, 1.0, 150) for j in range(k)])
    idx = rng.integers(0, 150, (20, 150))
    expected = [m.icc3_1(mat[r]) for r in idx]
    np.testing.assert_allclose(m._boot_icc3(mat, m._counts(idx, 150)), expected, rtol=0, atol=TOL)


# --------------------------------------------------------------------------- #
# Missing predictions and degenerate input
# --------------------------------------------------------------------------- #


def test_agreement_report_counts_and_excludes_missing() -> None:
    g, p = _data(2, n=100)
    pred: list[float | None] = list(p)
    pred[0] = None
    pred[5] = math.nan
    pred[99] = None
    rep = m.agreement_report(g, pred, n_boot=200, seed=1)
    assert (rep.n, rep.n_missing) == (97, 3)
    keep = np.ones(100, bool)
    keep[[0, 5, 99]] = False
    ref = m.agreement_report(g[keep], p[keep], n_boot=200, seed=1)
    assert ref.n_missing == 0
    assert rep == m.AgreementReport(**{**ref.to_dict(), "n_missing": 3})
    assert rep.tau == pytest.approx(stats.kendalltau(g[keep], p[keep]).statistic, abs=TOL)
    assert rep.mse == pytest.approx(np.mean((g[keep] - p[keep]) ** 2), abs=TOL)
    assert rep.icc3 == pytest.approx(_pingouin_icc3(np.column_stack([g[keep], p[keep]])), abs=TOL)
    for lo_hi, point in ((rep.tau_ci, rep.tau), (rep.icc3_ci, rep.icc3), (rep.mse_ci, rep.mse)):
        assert lo_hi[0] < point < lo_hi[1]


def test_pandas_na_counts_as_missing() -> None:
    g = pd.Series([1, 2, 3, 4, 5, 3])
    p = pd.Series([1, 2, pd.NA, 4, 5, 2], dtype="Int64")
    rep = m.agreement_report(g, p, n_boot=50)
    assert (rep.n, rep.n_missing) == (5, 1)


def test_plain_metrics_refuse_missing_values() -> None:
    for fn in (m.kendall_tau, m.spearman, m.pearson, m.mse, m.icc3_pair, m.exact_agreement):
        with pytest.raises(ValueError, match="missing"):
            fn([1, 2, 3], [1, None, 3])
    with pytest.raises(ValueError, match="gold"):
        m.agreement_report([1, None, 3], [1, 2, 3])


def test_constant_input_gives_nan_without_warnings() -> None:
    g = np.array([1, 2, 3, 4, 5, 3, 2, 4.0])
    const = np.full(8, 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rep = m.agreement_report(g, const, n_boot=100)
        for v in (rep.tau, rep.spearman, rep.pearson):
            assert math.isnan(v)
        # One constant rater: MSR == MSE, so ICC(3,1) is exactly 0 (as in pingouin), not undefined.
        assert rep.icc3 == pytest.approx(0.0, abs=TOL)
        assert rep.mse == pytest.approx(np.mean((g - 3) ** 2))
        assert all(math.isnan(x) for x in rep.tau_ci)
        assert math.isnan(m.icc3_1(np.column_stack([const, const])))
        assert math.isnan(m.fleiss_kappa(np.array([[3, 0], [3, 0]])))
        res = m.bootstrap_improvement(const, g, g + 1, metric="tau", n_boot=50)
        assert math.isnan(res.estimate)
        assert res.p_value == 1.0  # undefined resamples never count as an improvement
        assert math.isnan(m.paired_t_test_squared_errors(g, g, g).p_value)
        assert math.isnan(m.kendall_tau([1], [2]))


# --------------------------------------------------------------------------- #
# Significance tests
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("seed", SEEDS)
def test_paired_t_test_on_squared_errors_matches_scipy(seed: int) -> None:
    g, a = _data(seed, n=150)
    b = g + np.random.default_rng(seed + 100).normal(0, 0.8, 150)
    res = m.paired_t_test_squared_errors(g, a, b)
    sa, sb = (a - g) ** 2, (b - g) ** 2
    assert res.statistic == pytest.approx(stats.ttest_rel(sa, sb).statistic, abs=TOL)
    assert res.p_value_two_sided == pytest.approx(stats.ttest_rel(sa, sb).pvalue, abs=TOL)
    assert res.p_value == pytest.approx(stats.ttest_rel(sa, sb, alternative="greater").pvalue, abs=TOL)
    assert res.estimate == pytest.approx(np.mean(sa) - np.mean(sb), abs=TOL)
    ci = stats.ttest_rel(sa, sb).confidence_interval(0.95)
    assert res.ci == pytest.approx((ci.low, ci.high), abs=TOL)
    assert (res.n, res.n_excluded) == (150, 0)


def test_paired_t_test_excludes_and_counts_missing() -> None:
    g, a = _data(1, n=60)
    b = a * 0.9 + 0.3
    a_missing = a.copy()
    a_missing[[1, 2]] = np.nan
    b_missing = b.astype(object)
    b_missing[2] = None
    b_missing[7] = None
    res = m.paired_t_test_squared_errors(g, a_missing, b_missing)
    keep = np.ones(60, bool)
    keep[[1, 2, 7]] = False
    assert (res.n, res.n_excluded) == (57, 3)
    sa, sb = (a[keep] - g[keep]) ** 2, (b[keep] - g[keep]) ** 2
    assert res.statistic == pytest.approx(stats.ttest_rel(sa, sb).statistic, abs=TOL)
    boot = m.bootstrap_improvement(g, a_missing, b_missing, metric="tau", n_boot=50)
    assert (boot.n, boot.n_excluded) == (57, 3)


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_paired_t_test_across_raters_matches_scipy(alternative: str) -> None:
    rng = np.random.default_rng(9)
    before = rng.normal(0.5, 0.05, 6)
    after = before + rng.normal(0.03, 0.02, 6)
    res = m.paired_t_test_across_raters(before, after, alternative=alternative)  # type: ignore[arg-type]
    ref = stats.ttest_rel(after, before, alternative=alternative)
    assert res.statistic == pytest.approx(ref.statistic, abs=TOL)
    assert res.p_value == pytest.approx(ref.pvalue, abs=TOL)
    assert res.estimate == pytest.approx(np.mean(after - before), abs=TOL)
    with_nan = m.paired_t_test_across_raters(list(before) + [math.nan], list(after) + [0.9], alternative=alternative)  # type: ignore[arg-type]
    assert (with_nan.n, with_nan.n_excluded) == (6, 1)
    assert with_nan.p_value == pytest.approx(ref.pvalue, abs=TOL)


def _rater_pair(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gold, a noisy rater A, and a clearly better rater B."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(1, 6, n).astype(float)
    a = np.clip(np.round(gold + rng.normal(0, 1.6, n)), 1, 5)
    b = np.clip(np.round(gold + rng.normal(0, 0.6, n)), 1, 5)
    return gold, a, b


@pytest.mark.parametrize("metric", ["tau", "icc3"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bootstrap_improvement_detects_better_and_worse(metric: str, seed: int) -> None:
    g, a, b = _rater_pair(seed)
    better = m.bootstrap_improvement(g, a, b, metric=metric, n_boot=500, seed=seed)  # type: ignore[arg-type]
    assert better.estimate > 0.1
    assert better.p_value < 0.01
    assert better.ci[0] > 0
    worse = m.bootstrap_improvement(g, b, a, metric=metric, n_boot=500, seed=seed)  # type: ignore[arg-type]
    assert worse.estimate < -0.1
    assert worse.p_value > 0.99
    assert worse.ci[1] < 0
    same = m.bootstrap_improvement(g, a, a, metric=metric, n_boot=200, seed=seed)  # type: ignore[arg-type]
    assert same.estimate == 0 and same.p_value == 1.0  # no improvement is not an improvement


def test_bootstrap_improvement_observed_difference_and_validation() -> None:
    g, a, b = _rater_pair(4)
    res = m.bootstrap_improvement(g, a, b, metric="tau", n_boot=100)
    assert res.statistic == pytest.approx(stats.kendalltau(g, b).statistic - stats.kendalltau(g, a).statistic, abs=TOL)
    res = m.bootstrap_improvement(g, a, b, metric="icc3", n_boot=100)
    assert res.estimate == pytest.approx(m.icc3_pair(g, b) - m.icc3_pair(g, a), abs=TOL)
    with pytest.raises(ValueError, match="metric"):
        m.bootstrap_improvement(g, a, b, metric="mse")  # type: ignore[arg-type]


def _rater_matrices(seed: int, n: int = 150, m_raters: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """M raters under codebook A (inconsistent) and B (consistent) on the same items."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 6, n).astype(float)
    ma = np.column_stack([np.clip(np.round(truth + rng.normal(0, 1.5, n)), 1, 5) for _ in range(m_raters)])
    mb = np.column_stack([np.clip(np.round(truth + rng.normal(0, 0.5, n)), 1, 5) for _ in range(m_raters)])
    return ma, mb


@pytest.mark.parametrize("seed", [0, 1])
def test_bootstrap_icc3_improvement_among_raters(seed: int) -> None:
    ma, mb = _rater_matrices(seed)
    better = m.bootstrap_icc3_improvement(ma, mb, n_boot=500, seed=seed)
    assert better.estimate == pytest.approx(m.icc3_1(mb) - m.icc3_1(ma), abs=TOL)
    assert better.p_value < 0.01
    worse = m.bootstrap_icc3_improvement(mb, ma, n_boot=500, seed=seed)
    assert worse.p_value > 0.99
    ma_missing = ma.copy()
    ma_missing[0, 1] = np.nan
    res = m.bootstrap_icc3_improvement(ma_missing, mb, n_boot=100, seed=seed)
    assert (res.n, res.n_excluded) == (149, 1)


# --------------------------------------------------------------------------- #
# Reproducibility
# --------------------------------------------------------------------------- #


def test_results_reproducible_for_seed() -> None:
    g, a, b = _rater_pair(8, n=120)
    r1 = m.agreement_report(g, a, n_boot=300, seed=42)
    r2 = m.agreement_report(g, a, n_boot=300, seed=42)
    r3 = m.agreement_report(g, a, n_boot=300, seed=43)
    assert r1 == r2
    assert r1.tau_ci != r3.tau_ci
    assert (r1.tau, r1.icc3, r1.mse) == (r3.tau, r3.icc3, r3.mse)
    t1 = m.bootstrap_improvement(g, a, b, metric="tau", n_boot=300, seed=5)
    t2 = m.bootstrap_improvement(g, a, b, metric="tau", n_boot=300, seed=5)
    assert t1 == t2
    gen = m.bootstrap_improvement(g, a, b, metric="tau", n_boot=300, seed=np.random.default_rng(5))
    assert gen == t1
    ma, mb = _rater_matrices(3)
    assert m.bootstrap_icc3_improvement(ma, mb, n_boot=200, seed=1) == m.bootstrap_icc3_improvement(
        ma, mb, n_boot=200, seed=1
    )


# --------------------------------------------------------------------------- #
# One degenerate rule, counted; infinite and float32 NaN input
# --------------------------------------------------------------------------- #


def test_bootstrap_icc3_uses_the_same_degenerate_rule_as_icc3_1() -> None:
    """Three items, every resample drawn: the resamples constant in both columns (one item drawn
    three times) gave 1.0, 0.6 or -1.0 from rounding noise where icc3_1 says NaN."""
    x = np.array([[1.0, 2.0], [2.0, 3.0], [0.1, 0.3]])
    idx = np.array(list(np.ndindex(3, 3, 3)))  # all 27 resamples of 3 items
    boot = m._boot_icc3(x, m._counts(idx, 3))
    direct = np.array([m.icc3_1(x[r]) for r in idx])
    assert np.array_equal(np.isnan(boot), np.isnan(direct))
    assert int(np.isnan(direct).sum()) == 3  # the three "same item 3 times" resamples
    np.testing.assert_allclose(boot[~np.isnan(boot)], direct[~np.isnan(direct)], rtol=0, atol=TOL)
    # icc3_1 itself: constant raters are NaN whatever their value (0.1 is not exact in binary)
    assert math.isnan(m.icc3_1(np.full((3, 2), 0.1)))
    assert math.isnan(m.icc3_1([[0.1, 0.7]] * 3))
    assert m.icc3_1([[0.1, 1.0], [0.1, 2.0], [0.1, 3.0]]) == 0.0  # one constant rater: 0, defined


def test_degenerate_resamples_are_counted_and_left_out_of_the_ci() -> None:
    g, p = [1, 2, 3, 1, 2], [1, 2, 3, 2, 2]
    rep = m.agreement_report(g, p, n_boot=2000, seed=0)
    idx = np.concatenate(list(m._index_chunks(np.random.default_rng(0), 5, 2000)))
    gold, pred = np.array(g, float), np.array(p, float)
    both_constant = [len(set(gold[r])) == 1 and len(set(pred[r])) == 1 for r in idx]
    either_constant = [len(set(gold[r])) == 1 or len(set(pred[r])) == 1 for r in idx]
    assert rep.icc3_degenerate == sum(both_constant) > 0
    assert rep.tau_degenerate == sum(either_constant) > rep.icc3_degenerate
    assert -1.0 <= rep.icc3_ci[0] <= rep.icc3_ci[1] <= 1.0
    assert rep.to_dict()["icc3_degenerate"] == rep.icc3_degenerate
    assert m.agreement_report(g, p, n_boot=0).icc3_degenerate == 0
    # B = gold itself: ICC(gold, gold) is undefined wherever the resampled gold is constant
    test = m.bootstrap_improvement(g, p, g, metric="icc3", n_boot=2000, seed=0)
    assert test.n_degenerate == sum(len(set(gold[r])) == 1 for r in idx)
    ma = np.array([[1, 1], [2, 2], [3, 3.0]])
    among = m.bootstrap_icc3_improvement(ma, ma + 1, n_boot=500, seed=0)
    assert among.n_degenerate == among.n_boot - int(np.isfinite([
        m.icc3_1(ma[r]) for r in np.concatenate(list(m._index_chunks(np.random.default_rng(0), 3, 500)))
    ]).sum())


@pytest.mark.parametrize("bad", [math.inf, -math.inf, np.float32("inf")])
def test_infinite_values_are_errors_not_ratings(bad: float) -> None:
    gold, pred = [1, 2, 3, 4], [1, 2, 3, bad]
    for fn in (m.kendall_tau, m.spearman, m.mse, m.icc3_pair):
        with pytest.raises(ValueError, match="infinite value.*position 3"):
            fn(gold, pred)
    with pytest.raises(ValueError, match="pred holds 1 infinite"):
        m.agreement_report(gold, pred, n_boot=10)
    with pytest.raises(ValueError, match="gold holds 1 infinite"):
        m.agreement_report(pred, gold, n_boot=10)
    with pytest.raises(ValueError, match="infinite"):
        m.bootstrap_improvement(gold, gold, pred, n_boot=10)
    with pytest.raises(ValueError, match="matrix holds 1 infinite value.*position 3, 1"):
        m.inter_rater_icc3(np.column_stack([gold, pred]))
    with pytest.raises(ValueError, match="infinite"):
        m.icc3_1(np.column_stack([gold, pred]))


@pytest.mark.parametrize("nan", [np.float32("nan"), np.float16("nan"), np.float64("nan"), math.nan])
def test_fleiss_kappa_from_labels_treats_every_float_nan_as_missing(nan: float) -> None:
    labels = [[1, 2, 2, nan], [1, 1, 1, nan], [3, 3, 2, nan]]
    assert m.fleiss_kappa_from_labels(labels) == pytest.approx(
        m.fleiss_kappa_from_labels([r[:3] for r in labels]), abs=TOL)
    # a NaN in one item only: that item has fewer raters, which Fleiss' kappa refuses
    with pytest.raises(ValueError, match="same number of raters"):
        m.fleiss_kappa_from_labels([[1, 2, nan], [1, 1, 1]])
