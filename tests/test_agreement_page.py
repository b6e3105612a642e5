"""The Agreement page in AppTest: on the benchmark's synthetic data (small, and full size), and
on real rater runs of the embedded model; plus the one-file HTML report."""

from __future__ import annotations

import csv
import html
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from judgeeye.auth import Actor
from judgeeye.evaluate import dashboard
from judgeeye.evaluate.report import ReportChoices, build_report
from synthetic_project import fill_synthetic
from apptest_widgets import box
from apptest_login import SESSION_KEY, login_as
from judgeeye.store import session_scope

REPO = Path(__file__).resolve().parents[1]


def _page(timeout: float = 120) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=timeout)
    at.session_state[SESSION_KEY] = login_as("lead")  # the page is for leads
    at.switch_page("judgeeye_app/views/agreement.py")  # straight there: Home is not what is measured here
    return at.run()


def _tab(at: AppTest, label: str) -> AppTest:
    """Open a tab (the page's tabs are lazy: only the open one runs)."""
    at.session_state["ag_tab"] = label
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def _p(text: str) -> float:
    """A p-value as the page prints it ("< 0.001" or "0.012")."""
    return 0.0 if text.startswith("<") else float(text)


def _check_synthetic_page(at: AppTest, n_runs: int, significant: bool = False) -> None:
    assert not at.exception, at.exception
    runs = at.dataframe[0].value  # the first tab: the run table
    assert len(runs) == n_runs and list(runs.columns[-3:]) == ["τ [95% CI]", "ICC(3,1) [95% CI]", "MSE [95% CI]"]
    assert all("[" in v for v in runs["τ [95% CI]"])
    frames = [df.value for df in _tab(at, "Before / after").dataframe]
    comparison = next(f for f in frames if "p (one-sided)" in f.columns and "test" in f.columns)
    assert list(comparison["metric"]) == ["Kendall τ", "ICC(3,1)", "MSE"]
    if significant:  # 4,000 items: the less noisy rater under v2 wins on every metric
        assert all(comparison["significance"] != "") and all(comparison["p (one-sided)"].map(_p) < 0.05)
    per_rater = next(f for f in frames if "Kendall τ A" in f.columns)
    assert len(per_rater) == 4
    assert any("Inter-rater ICC(3,1): v1" in m.value for m in at.markdown)
    reliability = _tab(at, "Inter-rater reliability").dataframe[0].value
    assert list(reliability["codebook"]) == ["v1", "v2"] and all(reliability["raters"] == 4)
    assert box(_tab(at, "Sampling"), "Sampling run").value is not None
    _tab(at, "Annotators")
    try:  # from judgeeye.review when it is there, else "no reviews yet"
        import judgeeye.review.stats  # noqa: F401

        assert any("annotator" in df.value.columns for df in at.dataframe)
    except ImportError:
        assert any("No reviews yet" in i.value for i in at.info)
    _tab(at, "Rater runs")


def test_page_on_synthetic_data(store_url: str) -> None:
    with session_scope() as s:
        data = fill_synthetic(s, n_items=800, k=4, seed=1)
    at = _page()
    _check_synthetic_page(at, n_runs=8)
    # the newest run is in focus; pick another and see its worst disagreements with reasoning
    first = data.rater_run_ids[1][0]
    box(_tab(at, "One run"), "Rater run").set_value(first).run()
    assert not at.exception
    assert len(at.expander) >= 10 and all(e.label.startswith("“") and "off by" in e.label for e in at.expander)
    # the id beside the text, not as its title
    assert any(c.value.replace("\\", "").startswith("Item (id syn-") for c in at.caption)
    by_gold = next(df.value for df in at.dataframe if "mean rating" in df.value.columns)
    assert list(by_gold["gold"]) == sorted(by_gold["gold"]) and by_gold["items"].sum() > 0
    assert at.session_state["ag_choices"]["run_id"] == first  # kept for the report on any tab
    _tab(at, "New rater run")
    assert at.code[0].value.startswith("judgeeye evaluate --project synthetic --rater embedded --split test")
    report = build_report_for(data.project_id, first, (data.rater_run_ids[1][0], data.rater_run_ids[2][0]))
    assert report.startswith("<!doctype html>") and "Agreement report: synthetic" in report
    assert report.count('class="plotly-graph-div"') >= 7 and "paired t-test on squared errors" in report


def build_report_for(project_id: int, run_id: int, pair: tuple[int, int]) -> str:
    with session_scope() as s:
        return build_report(s, project_id, ReportChoices(run_id=run_id, compare=pair, versions=(1, 2)))


@pytest.mark.slow
def test_page_on_the_full_benchmark_store(store_url: str) -> None:
    """20,000 items, 320,000 candidates, 8 rater runs over 4,000 test items (bench/agreement_page.py)."""
    with session_scope() as s:
        data = fill_synthetic(s)
    assert (data.n_items, data.n_candidates) == (20_000, 320_000)
    at = _page(timeout=300)
    _check_synthetic_page(at, n_runs=8, significant=True)
    at = _page()  # a second session: everything comes from the stats cache
    _check_synthetic_page(at, n_runs=8, significant=True)


NASTY = "**bold** <b>html</b> [link](http://example.com) $x$ {braces}"


@pytest.mark.slow
def test_page_with_real_runs_of_the_embedded_model(store_url: str, tmp_path: Path) -> None:
    from judgeeye.codebook import load_builtin
    from judgeeye.datasets import ColumnMapping, SplitRule, read_table
    from judgeeye.engines import EngineConfig, make_engine
    from judgeeye.evaluate import RaterSpec, create_rater_run
    from judgeeye.evaluate.runner import execute_rater_run
    from judgeeye.projects import import_with_codebook

    path = tmp_path / "items.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "r1", "r2", "r3"])
        for i, text in enumerate([NASTY, "A cat sat.", "Rain fell.", "The ship sank.", "Snow on roofs."]):
            w.writerow([f"s{i}", text, 1 + i % 5, 1 + i % 5, 1 + i % 5])
    mapping = ColumnMapping(id_column="id", text_columns={"story": "text"}, rating_columns={"r1": "r1", "r2": "r2", "r3": "r3"},
                            scale_min=1, scale_max=5, dimension="complexity", generation_type="story")
    with session_scope() as s:
        project_id = import_with_codebook(s, read_table(path, mapping), actor=Actor.system(), project_name="real runs",
                                          codebook=load_builtin("hanna_complexity"),
                                          split_rule=SplitRule(ratios=(0.0, 0.0, 1.0))).project_id
    config = EngineConfig(kind="transformers", model="embedded", batch_size=5)
    engine = make_engine(config)
    run_ids = []
    try:
        for readout in ("parsed", "expected"):
            with session_scope() as s:
                run_ids.append(create_rater_run(s, project_id, RaterSpec(engine=config, readout=readout, max_tokens=12)).id)
            assert execute_rater_run(run_ids[-1], engine=engine) == "completed"
    finally:
        engine.close()
    at = _page(timeout=300)
    assert not at.exception, at.exception
    runs = at.dataframe[0].value
    assert list(runs["run"]) == run_ids and list(runs["readout"]) == ["parsed", "expected"]
    with session_scope() as s:
        comparable = all(r.measurable for r in dashboard.list_runs(s, project_id))
    _tab(at, "Before / after")
    if comparable:
        pair = (box(at, "A (before: original codebook, base model)").value,
                box(at, "B (after: refined codebook, fine-tuned model)").value)
        assert pair == tuple(run_ids)
    else:  # 12 tokens seldom leave the parsed run two ratings: the page says why it compares nothing
        assert any(i.value.startswith("No two rater runs can be compared") for i in at.info)
    box(_tab(at, "One run"), "Rater run").set_value(run_ids[1]).run()  # the read-out run rated every item
    assert not at.exception
    texts = [t.value for t in at.text]
    assert any(NASTY in t for t in texts), "item text is shown verbatim (st.text), never as markdown"
    assert not any("<b>html</b>" in m.value for m in at.markdown)
    with session_scope() as s:
        report = build_report(s, project_id, ReportChoices(run_id=run_ids[1], compare=tuple(run_ids)))
    assert html.escape(NASTY, quote=False) in report and NASTY not in report
