"""Bootstrap resamples where τ or ICC(3,1) is undefined (constant ratings) are counted and shown
where the intervals are: the run table (page, HTML report) and `judgeeye evaluate`."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from judgeeye.cli import app
from judgeeye.evaluate import dashboard
from judgeeye.evaluate.report import UNDEFINED, comparison_view, num, run_table_view, undefined_note
from judgeeye.metrics import bootstrap_icc3_improvement
from judgeeye.store import session_scope
from synthetic_project import fill_synthetic


def test_undefined_resamples_are_shown_with_the_intervals(store_url: str) -> None:
    """A few test items: many resamples draw one item only, where neither τ nor ICC exists."""
    with session_scope() as s:
        project = fill_synthetic(s, n_items=20, k=1, reviews=False, seed=1)
    run_a, run_b = project.rater_run_ids[1][0], project.rater_run_ids[2][0]
    with session_scope() as s:
        table = dashboard.run_table(s, project.project_id)
        comparison = dashboard.comparison(s, run_a, run_b)
    assert (table["icc3_degenerate"] > 0).all() and (table["tau_degenerate"] >= table["icc3_degenerate"]).all()
    row = table.iloc[0]
    shown = run_table_view(table)[UNDEFINED].iloc[0]
    assert shown == (f"τ {int(row['tau_degenerate']):,}, ICC(3,1) {int(row['icc3_degenerate']):,} "
                     "of 1,000 (constant ratings)")
    rows = comparison.rows()
    assert rows[1]["metric"] == "icc3" and rows[1]["degenerate"] > 0 and rows[2]["degenerate"] == 0
    assert comparison_view(rows)[UNDEFINED].tolist()[1:] == [f"{rows[1]['degenerate']:,} of 1,000", ""]

    result = CliRunner().invoke(app, ["evaluate", "--run", str(run_a), "--compare", str(run_a), str(run_b),
                                      "--n-boot", "200"])
    assert result.exit_code == 0, result.output
    assert UNDEFINED in result.output and "(constant ratings)" in result.output
    assert "undefined resamples" in result.output and " of 200" in result.output


def test_inter_rater_test_notes_its_undefined_resamples() -> None:
    """The codebook-version comparison's ICC line (page and HTML report) says how many resamples
    the bootstrap left out."""
    ma = np.array([[1, 1], [2, 2], [3, 3.0]])
    test = bootstrap_icc3_improvement(ma, ma + np.array([[0, 1], [0, 0], [0, 0]]), n_boot=300, seed=0)
    assert test.n_degenerate and undefined_note(test) == (
        f"; {test.n_degenerate:,} of 300 resamples left out: constant ratings, where the metric is undefined")
    assert undefined_note(bootstrap_icc3_improvement(ma, ma, n_boot=0)) == ""


def test_numbers_show_no_negative_zero_and_no_infinity() -> None:
    """A constant rater's ICC interval read "0.000 [-0.000, 0.000]" in the quick preset's report."""
    assert num(-1e-17) == num(0.0) == num(-0.0) == "0.000"
    assert num(-0.0004) == "0.000" and num(-0.0006) == "-0.001" and num(-1234.5, 1) == "-1,234.5"
    assert num(None) == num(float("nan")) == num(float("inf")) == "—"
