"""Rater evaluation on a real store: metrics against SciPy/pingouin, comparisons, the cache, the
CLI, and (slow) real rater runs with the embedded model, killed with SIGKILL and resumed."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats
from sqlalchemy import delete, func, select
from typer.testing import CliRunner

from judgeeye.auth import Actor
from judgeeye.cli import app
from judgeeye.engines import EngineConfig
from judgeeye.evaluate import (
    ItemMismatchError,
    RaterSpec,
    align_runs,
    compare_groups,
    compare_runs,
    create_rater_run,
    inter_rater,
    parse_rater,
    summaries,
)
from synthetic_project import fill_synthetic
from judgeeye.jobs import reconcile
from judgeeye.engines.readout import cot_rail_score
from judgeeye.ratings import parse_rating
from judgeeye.store import Item, Job, Prediction, RaterRun, StatsCache, session_scope

runner = CliRunner()


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture
def synthetic(store_url: str):  # type: ignore[no-untyped-def]
    """600 items, 2 candidates each, 4 raters under 2 codebook versions on the test split."""
    with session_scope() as s:
        return fill_synthetic(s, n_items=600, k=2, reviews=False, seed=3)


def _pingouin_icc3(mat: np.ndarray) -> float:
    n, k = mat.shape
    df = pd.DataFrame({"item": np.repeat(np.arange(n), k), "rater": np.tile(np.arange(k), n), "score": mat.ravel()})
    res = pg.intraclass_corr(data=df, targets="item", raters="rater", ratings="score").set_index("Type")
    return float(res.loc["ICC3" if "ICC3" in res.index else "ICC(C,1)", "ICC"])


def _ratings(run_id: int) -> dict[int, float | None]:
    with session_scope() as s:
        return dict(s.execute(select(Prediction.item_id, Prediction.rating).where(Prediction.rater_run_id == run_id)).all())


def _gold() -> dict[int, float]:
    with session_scope() as s:
        return dict(s.execute(select(Item.id, Item.gold)).all())


# ------------------------------------------------------------------ metrics vs references
def test_summary_matches_scipy_and_pingouin(synthetic) -> None:  # type: ignore[no-untyped-def]
    run_id = synthetic.rater_run_ids[1][0]
    gold, preds = _gold(), _ratings(run_id)
    rated = sorted(i for i, v in preds.items() if v is not None)
    g = np.array([gold[i] for i in rated])
    p = np.array([preds[i] for i in rated])
    with session_scope() as s:
        summary = summaries(s, [run_id])[run_id]
    assert summary.n == len(rated) and summary.n_predictions == len(preds)
    assert summary.parse_failures == summary.n_missing == sum(v is None for v in preds.values()) > 0
    assert summary.tau == pytest.approx(stats.kendalltau(g, p).statistic, abs=1e-12)
    assert summary.icc3 == pytest.approx(_pingouin_icc3(np.column_stack([g, p])), abs=1e-9)
    assert summary.mse == pytest.approx(float(np.mean((g - p) ** 2)), abs=1e-12)
    assert summary.spearman == pytest.approx(stats.spearmanr(g, p).statistic, abs=1e-12)
    assert summary.tau_lo < summary.tau < summary.tau_hi and summary.mse_lo < summary.mse < summary.mse_hi


def test_compare_and_inter_rater_match_references(synthetic) -> None:  # type: ignore[no-untyped-def]
    a, b = synthetic.rater_run_ids[1][0], synthetic.rater_run_ids[2][0]
    gold, pa, pb = _gold(), _ratings(a), _ratings(b)
    both = sorted(i for i in pa if pa[i] is not None and pb[i] is not None)
    g = np.array([gold[i] for i in both])
    xa, xb = np.array([pa[i] for i in both]), np.array([pb[i] for i in both])
    with session_scope() as s:
        comp = compare_runs(s, a, b, n_boot=300)
    ref = stats.ttest_rel((xa - g) ** 2, (xb - g) ** 2, alternative="greater")
    assert comp.mse_test.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert comp.mse_test.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert comp.mse_test.n == len(both) and comp.mse_test.n_excluded == len(pa) - len(both)
    assert comp.tau_test.estimate == pytest.approx(
        stats.kendalltau(g, xb).statistic - stats.kendalltau(g, xa).statistic, abs=1e-12)
    assert comp.icc3_test.estimate == pytest.approx(
        _pingouin_icc3(np.column_stack([g, xb])) - _pingouin_icc3(np.column_stack([g, xa])), abs=1e-9)
    # the synthetic v2 raters are less noisy: B is significantly better on all three
    assert {r["metric"]: bool(r["mark"]) for r in comp.rows()} == {"tau": True, "icc3": True, "mse": True}

    runs = synthetic.rater_run_ids[1]
    cols = [_ratings(r) for r in runs]
    complete = sorted(i for i in cols[0] if all(c[i] is not None for c in cols))
    mat = np.array([[c[i] for c in cols] for i in complete])
    with session_scope() as s:
        icc = inter_rater(s, runs)
        group = compare_groups(s, runs, synthetic.rater_run_ids[2], n_boot=200)
    assert icc.n == len(complete) and icc.n_raters == 4
    assert icc.icc3 == pytest.approx(_pingouin_icc3(mat), abs=1e-9)
    assert group.icc_a.icc3 == pytest.approx(icc.icc3, abs=1e-12)
    tau_a = [r["tau A"] for r in group.per_rater]
    tau_b = [r["tau B"] for r in group.per_rater]
    assert group.metric_tests["tau"].p_value == pytest.approx(
        stats.ttest_rel(tau_b, tau_a, alternative="greater").pvalue, rel=1e-9)


# ------------------------------------------------------------------------ bad input
def test_comparing_runs_on_different_items_names_the_missing_ones(synthetic) -> None:  # type: ignore[no-untyped-def]
    a, b = synthetic.rater_run_ids[1][0], synthetic.rater_run_ids[1][1]
    with session_scope() as s:
        victims = s.execute(select(Prediction.id, Item.external_id).join(Item, Item.id == Prediction.item_id)
                            .where(Prediction.rater_run_id == b).order_by(Prediction.item_id).limit(3)).all()
        s.execute(delete(Prediction).where(Prediction.id.in_([v[0] for v in victims])))
    names = [v[1] for v in victims]
    with session_scope() as s, pytest.raises(ItemMismatchError) as err:
        compare_runs(s, a, b)
    message = str(err.value)
    assert f"run {b} has no prediction for 3 of the" in message and all(n in message for n in names)
    assert str(a) not in err.value.missing and err.value.missing[b] == names
    result = runner.invoke(app, ["evaluate", "--compare", str(a), str(b)])
    assert result.exit_code == 2 and all(n in result.output for n in names)


def test_rater_specs_and_runs_refuse_bad_input(synthetic) -> None:  # type: ignore[no-untyped-def]
    spec, version, name = parse_rater("embedded,readout=expected,codebook=2,name=rail,max_tokens=64")
    assert (spec.readout, version, name, spec.max_tokens, spec.engine.model) == ("expected", 2, "rail", 64, "embedded")
    spec, version, _ = parse_rater("openai:m@http://127.0.0.1:1/v1", readout="parsed", codebook=1, limit=5)
    assert spec.engine.kind == "openai" and version == 1 and spec.limit == 5
    for bad, needle in [("embedded,colour=red", "unknown option"), ("embedded,readout", "not key=value"),
                        ("openai:m@http://x/v1,readout=argmax", "token probabilities"),
                        ("embedded,readout=median", "readout"), ("tgi:m", "unknown engine"),
                        ("vllm:m,readout=argmax", "token probabilities"),
                        ("embedded,max_tokens=many", "whole number")]:
        with pytest.raises(ValueError, match=needle):
            parse_rater(bad)
    with session_scope() as s:
        before = s.scalar(select(func.count()).select_from(RaterRun))
        with pytest.raises(ValueError, match="unknown split"):
            create_rater_run(s, synthetic.project_id, RaterSpec(), split="holdout")
        with pytest.raises(LookupError, match="no codebook version 9|has no codebook version 9"):
            create_rater_run(s, synthetic.project_id, RaterSpec(), codebook_version=9)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(RaterRun)) == before
    result = runner.invoke(app, ["evaluate", "--project", str(synthetic.project_id), "--rater", "embedded,nope=1"])
    assert result.exit_code == 2 and "unknown option" in result.output
    result = runner.invoke(app, ["evaluate", "--run", "999"])
    assert result.exit_code == 2 and "no rater run(s) [999]" in result.output


def test_summaries_are_cached_until_a_prediction_arrives(synthetic) -> None:  # type: ignore[no-untyped-def]
    run_id = synthetic.rater_run_ids[2][1]
    with session_scope() as s:
        first = summaries(s, [run_id])[run_id]
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(StatsCache).where(StatsCache.key.like(f"rater_run:{run_id}:%"))) == 1
        assert summaries(s, [run_id])[run_id] == first  # read back from the cache, NaN-safe
        unrated = s.scalar(select(Item.id).where(Item.split == "train").limit(1))
        s.add(Prediction(rater_run_id=run_id, item_id=unrated, rating=1.0, parse_ok=True))
    with session_scope() as s:
        second = summaries(s, [run_id])[run_id]
    assert second.n_predictions == first.n_predictions + 1 and second.n == first.n + 1


def test_a_rater_that_cannot_start_leaves_its_run_failed(synthetic) -> None:  # type: ignore[no-untyped-def]
    from judgeeye.engines import EngineError
    from judgeeye.evaluate.runner import execute_rater_run

    with session_scope() as s:
        run_id = create_rater_run(s, synthetic.project_id, RaterSpec(engine=EngineConfig(model="/no/such/model"))).id
    with pytest.raises(EngineError, match="/no/such/model"):
        execute_rater_run(run_id)
    with session_scope() as s:
        assert s.get(RaterRun, run_id).status == "failed"
        assert s.scalar(select(func.count()).select_from(Prediction).where(Prediction.rater_run_id == run_id)) == 0


def test_cli_table_and_compare_on_existing_runs(synthetic) -> None:  # type: ignore[no-untyped-def]
    a, b = synthetic.rater_run_ids[1][2], synthetic.rater_run_ids[2][2]
    result = runner.invoke(app, ["evaluate", "--run", str(a), "--compare", str(a), str(b), "--n-boot", "200"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "tau [95% CI]" in out and "ICC(3,1) [95% CI]" in out and "MSE [95% CI]" in out and "parse fail" in out
    assert "paired t-test on squared errors" in out and "paired bootstrap, tau improvement" in out
    assert "inter-rater ICC(3,1) among runs" in out and "***" in out
    listing = runner.invoke(app, ["evaluate", "--list", "--project", str(synthetic.project_id)])
    assert listing.exit_code == 0 and len([l for l in listing.output.splitlines() if "completed" in l]) == 8


# ------------------------------------------------------------------ real runs (embedded)
SHORT = ["A cat sat.", "Two dogs ran far.", "Rain fell all day.", "The ship sank.", "A door creaked open.",
         "Stars over hills.", "He lost the key.", "Bread and salt.", "The clock stopped.", "Snow on roofs."]


@pytest.fixture
def short_test_project(store_url: str, tmp_path: Path) -> int:
    """Ten one-line stories, all in the test split, three annotators who agree closely."""
    from judgeeye.codebook import load_builtin
    from judgeeye.datasets import ColumnMapping, SplitRule, read_table
    from judgeeye.projects import import_with_codebook

    lines = ["id,text,r1,r2,r3"] + [f"s{i},{t},{1 + i % 5},{1 + i % 5},{1 + (i + 1) % 5 if i % 3 == 0 else 1 + i % 5}"
                                    for i, t in enumerate(SHORT)]
    path = tmp_path / "short.csv"
    path.write_text("\n".join(lines) + "\n")
    mapping = ColumnMapping(id_column="id", text_columns={"story": "text"}, rating_columns={"r1": "r1", "r2": "r2", "r3": "r3"},
                            scale_min=1, scale_max=5, dimension="complexity", generation_type="story")
    with session_scope() as s:
        return import_with_codebook(s, read_table(path, mapping), actor=Actor.system(), project_name="short test",
                                    codebook=load_builtin("hanna_complexity"),
                                    split_rule=SplitRule(ratios=(0.0, 0.0, 1.0))).project_id


def _predictions(run_id: int) -> list[Prediction]:
    with session_scope() as s:
        return list(s.scalars(select(Prediction).where(Prediction.rater_run_id == run_id).order_by(Prediction.id)).all())


def _wait(predicate, timeout: float = 600.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_evaluate_cli_with_the_embedded_model(short_test_project: int) -> None:
    """`judgeeye evaluate` rates test items with two raters (parsed and RAIL expected score),
    prints the table, and `--compare` prints the tests."""
    result = runner.invoke(app, ["evaluate", "--project", "short test", "--rater", "embedded",
                                 "--rater", "embedded,readout=expected,name=rail", "--limit", "3",
                                 "--max-tokens", "16", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    with session_scope() as s:
        runs = s.scalars(select(RaterRun).order_by(RaterRun.id)).all()
        gold = dict(s.execute(select(Item.id, Item.gold)).all())
    assert [r.status for r in runs] == ["completed", "completed"] and runs[1].name == "rail"
    for run in runs:
        rows = _predictions(run.id)
        assert len(rows) == 3 and len({r.item_id for r in rows}) == 3
        for r in rows:
            assert r.completion_tokens > 0 and r.item_id in gold
            parse = parse_rating(r.answer, 1, 5)
            assert r.parse_ok == parse.ok
            if run.rater["readout"] == "parsed":
                assert r.rating == (float(parse.value) if parse.ok else None) and r.score_dist is None
            else:
                # raw level probabilities (TRACT's CoT-RAIL): the rest of the mass is on other tokens
                assert r.score_dist and 0 < sum(r.score_dist.values()) <= 1 + 1e-6
                assert r.rating == pytest.approx(cot_rail_score(r.score_dist))
    table = [line for line in result.output.splitlines() if line.split(" ", 1)[0] in (str(runs[0].id), str(runs[1].id))]
    assert "tau [95% CI]" in result.output and len(table) == 2 and "expected" in table[1] and "parsed" in table[0]
    compare = runner.invoke(app, ["evaluate", "--compare", str(runs[0].id), str(runs[1].id), "--n-boot", "100"])
    assert compare.exit_code == 0, compare.output
    assert "paired t-test on squared errors" in compare.output and "icc3" in compare.output


@pytest.mark.slow
def test_kill_9_and_resume_give_one_prediction_per_item(short_test_project: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from judgeeye.evaluate.launch import launch_rater_run

    monkeypatch.setenv("JUDGEEYE_JOB_STALE_SECONDS", "2")
    spec = RaterSpec(engine=EngineConfig(kind="transformers", model="embedded", batch_size=1), max_tokens=24)
    run_id, job_id = launch_rater_run(short_test_project, spec, actor=Actor.system())
    _wait(lambda: len(_predictions(run_id)) >= 2)
    with session_scope() as s:
        pid = s.get(Job, job_id).pid
    os.kill(pid, signal.SIGKILL)
    time.sleep(3)
    before = {p.item_id: (p.id, p.answer) for p in _predictions(run_id)}
    with session_scope() as s:
        n_items = s.scalar(select(func.count()).select_from(Item).where(Item.split == "test", Item.gold_status == "gold"))
    assert 2 <= len(before) < n_items, "the kill must land mid-run"
    with session_scope() as s:
        assert reconcile(s) == 1
    result = runner.invoke(app, ["evaluate", "--resume", str(run_id)])
    assert result.exit_code == 0, result.output
    after = _predictions(run_id)
    assert len(after) == n_items and set(Counter(p.item_id for p in after).values()) == {1}
    survivors = {p.item_id: (p.id, p.answer) for p in after}
    assert all(survivors[i] == v for i, v in before.items())
    with session_scope() as s:
        assert s.get(RaterRun, run_id).status == "completed"
    with session_scope() as s:
        aligned = align_runs(s, [run_id])
    assert len(aligned.item_ids) == n_items and not np.isnan(aligned.gold).any()


@pytest.mark.slow
def test_every_chart_exports_as_png_and_html(synthetic) -> None:  # type: ignore[no-untyped-def]
    from judgeeye.evaluate import charts, dashboard

    with session_scope() as s:
        table = dashboard.run_table(s, synthetic.project_id)
        detail = dashboard.run_detail(s, synthetic.rater_run_ids[1][0])
        sampling = dashboard.sampling_overview(s, synthetic.project_id)
    figures = [charts.runs_chart(table), charts.confusion_chart(detail.confusion, detail.levels),
               charts.by_gold_chart(detail.by_gold, detail.levels), charts.acceptance_chart(sampling[0].stats),
               charts.utilization_chart([(r.label, r.stats) for r in sampling])]
    assert detail.confusion.sum() == table.loc[table["run"] == synthetic.rater_run_ids[1][0], "n"].item()
    for fig in figures:
        page = charts.figure_html(fig)
        assert page.startswith("<!doctype html>") and "plotly" in page.lower()
    png = charts.figure_png(figures[1], width=400, scale=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
