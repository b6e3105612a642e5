"""The Agreement page tells the truth about the runs it shows (AppTest, real store): a run just
started is shown at once, runs without ratings are explained instead of charted as zeros, the
before/after view opens only on runs that can be compared, and no table shows "None", "nan" or a
raw column name."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from apptest_widgets import box
from apptest_login import SESSION_KEY, login_as
from judgeeye.codebook import load_builtin
from judgeeye.codebook.versions import create_version
from judgeeye.engines import EngineConfig
from judgeeye.evaluate import RaterSpec, create_rater_run
from judgeeye.evaluate.report import ReportChoices, build_report
from judgeeye.store import Candidate, Codebook, Item, Prediction, Project, SamplingRun, session_scope
from judgeeye.review import open_round
from review_data import SYSTEM, make_project, make_users

REPO = Path(__file__).resolve().parents[1]
GOLD = {"test": [1, 2, 3, 4, 5, 3], "validation": [2, 4, 1, 5]}
SPEC = RaterSpec(engine=EngineConfig(kind="openai", model="scripted", base_url="http://127.0.0.1:9/v1"))


def agreement_project(name: str = "agreement states") -> int:
    """A 1–5 project with gold items on the test and validation splits and one codebook."""
    with session_scope() as s:
        project = Project(name=name, task="rating", dimension="complexity", scale_min=1, scale_max=5,
                          text_fields=["story"])
        s.add(project)
        s.flush()
        create_version(s, project.id, load_builtin("hanna_complexity"))
        for split, golds in GOLD.items():
            for i, gold in enumerate(golds):
                s.add(Item(project_id=project.id, external_id=f"{split[0]}{i}", split=split, gold=float(gold),
                           rating_std=0.0, fields={"story": f"A story, {split} {i}."},
                           ratings={"r1": gold, "r2": gold, "r3": gold}))
        return project.id


def rated_run(project_id: int, name: str, *, split: str = "test", ratings: str = "good",
              status: str = "completed") -> int:
    """A rater run as its worker leaves it. ``ratings``: "good" (gold ± 1), "unparsed" (no answer
    could be read) or "one" (a single rated item)."""
    with session_scope() as s:
        run = create_rater_run(s, project_id, SPEC, split=split, name=name)
        items = s.scalars(select(Item).where(Item.project_id == project_id, Item.split == split)
                          .order_by(Item.id)).all()
        for i, item in enumerate(items[:1] if ratings == "one" else items):
            rating = None if ratings == "unparsed" else min(5.0, item.gold + i % 2)
            s.add(Prediction(rater_run_id=run.id, item_id=item.id, reasoning="Because.",
                             answer=f"<rating>{int(rating)}</rating>" if rating else "I would say it is fine.",
                             rating=rating, parse_ok=rating is not None))
        run.status = status
        return run.id


def page(project_id: int, tab: str | None = None) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.session_state[SESSION_KEY] = login_as("lead")
    at.query_params["project"] = str(project_id)
    at.switch_page("judgeeye_app/views/agreement.py")
    at.run()
    if tab:
        open_tab(at, tab)
    assert not at.exception, at.exception
    return at


def open_tab(at: AppTest, tab: str) -> AppTest:
    at.session_state["ag_tab"] = tab
    at.run()
    assert not at.exception, at.exception
    return at


def values(data: object) -> np.ndarray:
    """A plotly trace's numbers, as listed or base64-packed ({"dtype", "bdata", "shape"})."""
    if isinstance(data, dict):
        flat = np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"])
        return flat.astype(float)
    return np.array([v for v in np.ravel(np.array(data, dtype=object)) if isinstance(v, (int, float))], dtype=float)


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def shown_text(at: AppTest) -> list[str]:
    """Every table cell and column name, and every message, of the page as it stands."""
    out = []
    for df in at.dataframe:
        out += [str(c) for c in df.value.columns] + [str(v) for v in df.value.to_numpy().ravel()]
    for kind in ("info", "caption", "markdown", "success", "error", "warning"):
        out += [el.value for el in getattr(at, kind)]
    return out


def no_internals(at: AppTest) -> None:
    for text in shown_text(at):
        assert text not in ("None", "nan", "NaN", "NaT"), text
        assert not any(raw in text for raw in ("pace_per_hour", "none_fits", "last_active", "icc3 ", "tau A",
                                               "n_items", "fleiss_kappa")), text


def test_an_all_unparsed_run_is_explained_not_charted_as_zeros(store_url: str) -> None:
    project_id = agreement_project()
    good = rated_run(project_id, "good rater")
    unparsed = rated_run(project_id, "silent rater", ratings="unparsed")
    single = rated_run(project_id, "one item", ratings="one", status="incomplete")
    at = page(project_id)  # the Rater runs tab
    table = at.dataframe[0].value
    why = dict(zip(table["run"], table["why no numbers"]))
    assert why[unparsed] == "all 6 answers unparsed: no rating to compare" and why[good] == ""
    assert why[single] == "one rated item: τ and ICC(3,1) need two"
    assert table.set_index("run").loc[unparsed, "τ [95% CI]"] == "—"
    assert any(f"run {unparsed} (all 6 answers unparsed" in c.value for c in at.caption)  # left out of the chart
    assert [trace["x"] for trace in plotly_specs(at)[0]["data"]][0] == [f"run {good}", f"run {single}"]
    no_internals(at)

    box(open_tab(at, "One run"), "Rater run").set_value(unparsed).run()
    assert any(i.value.startswith("All 6 answers of this run were unparsed: no rating could be read")
               for i in at.info), [i.value for i in at.info]
    assert not plotly_specs(at), "no heatmap of zeros, no empty mean-rating chart"
    labels = [e.label.replace("\\", "") for e in at.expander]  # as typed, without markdown escapes
    assert labels == [f"Unparsed answer to item t{i}: “I would say it is fine.”" for i in range(3)]
    by_gold = next(df.value for df in at.dataframe if "mean rating" in df.value.columns)
    assert set(by_gold["mean rating"]) == {"—"} and set(by_gold["sd"]) == {"—"}
    no_internals(at)

    box(at, "Rater run").set_value(single).run()  # one rated item: charts, and its row
    assert len(plotly_specs(at)) == 2 and not at.info
    no_internals(at)

    with session_scope() as s:  # the HTML report says the same
        report = build_report(s, project_id, ReportChoices(run_id=unparsed))
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", "", report, flags=re.S))
    assert "All 6 answers of this run were unparsed" in text and "all 6 answers unparsed" in text
    assert not re.search(r"\b(None|nan|NaN)\b", text)
    assert f"A = Run {good} · good rater" not in text  # no comparable pair: the report says why instead
    assert "No two rater runs can be compared" in text


def test_before_after_opens_only_on_runs_that_can_be_compared(store_url: str) -> None:
    project_id = agreement_project()
    first = rated_run(project_id, "test split")
    rated_run(project_id, "validation split", split="validation")
    silent = rated_run(project_id, "silent", ratings="unparsed")
    at = page(project_id, "Before / after")
    reasons = [i.value for i in at.info]
    assert not at.error and [b.key for b in at.selectbox] == ["project_picker"], [e.value for e in at.error]
    assert any(r.startswith("No two rater runs can be compared") and f"All 6 answers of run {silent} were unparsed"
               in r and f"runs {first}" not in r for r in reasons), reasons

    second = rated_run(project_id, "test split again")
    at = page(project_id, "Before / after")
    assert not at.error, [e.value for e in at.error]
    a = box(at, "A (before: original codebook, base model)")
    b = box(at, "B (after: refined codebook, fine-tuned model)")
    assert (a.value, b.value) == (first, second)
    assert list(a.options) == [a.format_func(first), a.format_func(second)]  # runs with a partner only
    assert list(b.options) == [b.format_func(second)]  # not the validation run, nor the silent one
    comparison = next(df.value for df in at.dataframe if "p (one-sided)" in df.value.columns)
    assert list(comparison.columns[:4]) == ["metric", "A", "B", "B − A"] and "significance" in comparison.columns
    assert all(len(v.split(".")[-1]) == 3 for v in comparison["A"])  # three decimals, not 0.6443 beside 0.621
    no_internals(at)


def test_sampling_charts_explain_an_empty_run_and_keep_a_rate_axis(store_url: str) -> None:
    project_id, run_id = make_project(5)
    with session_scope() as s:
        codebook_id = s.scalar(select(SamplingRun.codebook_id).where(SamplingRun.id == run_id))
        s.add(SamplingRun(project_id=project_id, codebook_id=codebook_id, k=4, status="created"))
    at = page(project_id, "Sampling")  # opens on the newest run: it has no candidates yet
    assert any(i.value == f"Sampling run {run_id + 1} has no candidates yet." for i in at.info), \
        [i.value for i in at.info]
    (utilization,) = plotly_specs(at)
    assert [t["name"] for t in utilization["data"]] == [box(at, "Sampling run").format_func(run_id)]
    box(at, "Sampling run").set_value(run_id).run()
    acceptance = plotly_specs(at)[0]
    assert acceptance["layout"]["yaxis"]["range"] == [0, 1] and acceptance["layout"]["xaxis"]["type"] == "category"


@pytest.mark.parametrize("tab", ["Rater runs", "One run"])
def test_a_started_rater_run_is_shown_at_once(store_url: str, monkeypatch: pytest.MonkeyPatch, tab: str) -> None:
    """Start rating: in the same rerun, the progress panel at the top shows the new run (its job
    queued for a worker here), the run table lists it, and One run opens on it."""
    monkeypatch.setenv("JUDGEEYE_JOB_RUNNER", "workers")  # the job waits for `judgeeye jobs worker`
    project_id = agreement_project()
    old = rated_run(project_id, "earlier run")
    at = page(project_id, "One run" if tab == "One run" else None)  # the run box drawn before, or never
    if tab == "One run":
        assert box(at, "Rater run").value == old
    open_tab(at, "New rater run")
    at.radio(key="ag_new_engine").set_value("openai").run()
    at.text_input(key="ag_new_openai_base_url").input("http://127.0.0.1:9/v1").run()
    at.text_input(key="ag_new_openai_model").input("scripted").run()
    at.button(key="ag_new_start").click().run()
    assert not at.exception, at.exception
    new = old + 1
    assert any(s.value.startswith(f"Rater run {new} started") for s in at.success), [e.value for e in at.error]
    panel = [p.proto.text for p in at.get("progress")]
    assert any(t.startswith(f"Run {new} · ") and ": queued · " in t for t in panel), panel
    open_tab(at, tab)
    if tab == "One run":
        assert box(at, "Rater run").value == new
        assert box(at, "Rater run").format_func(new).endswith("· queued")
        assert [i.value for i in at.info] == [f"Rater run {new} has no predictions yet."]
    else:
        runs = at.dataframe[0].value.set_index("run")
        assert runs.loc[new, "status"] == "queued" and runs.loc[new, "why no numbers"] == "no predictions yet"


def test_annotators_tab_says_nobody_reviewed_instead_of_a_chart_of_zeros(store_url: str) -> None:
    make_users(("ann", "annotator"), ("bob", "annotator"))
    project_id, run_id = make_project(3)
    with session_scope() as s:
        open_round(s, SYSTEM, run_id, ["ann", "bob"])
    at = page(project_id, "Annotators")
    assert [i.value for i in at.info] == ["Nobody has reviewed yet: 2 people are assigned to review rounds."]
    assert not plotly_specs(at)
    no_internals(at)


def test_every_tab_on_empty_single_and_unparsed_data_shows_no_internals(store_url: str) -> None:
    project_id = agreement_project()
    for name, ratings, status in (("silent", "unparsed", "completed"), ("one item", "one", "incomplete"),
                                  ("good", "good", "completed")):
        rated_run(project_id, name, ratings=ratings, status=status)
    with session_scope() as s:
        create_rater_run(s, project_id, SPEC, name="not started")
        run = SamplingRun(project_id=project_id, codebook_id=s.scalar(
            select(Codebook.id).where(Codebook.project_id == project_id)), k=1, status="completed")
        s.add(run)
        s.flush()
        item = s.scalar(select(Item).where(Item.project_id == project_id).order_by(Item.id))
        s.add(Candidate(run_id=run.id, item_id=item.id, sample_index=0, target="gold", target_label=item.gold,
                        reasoning="Plain.", answer="<rating>1</rating>", predicted=1.0, parse_ok=True,
                        accepted=item.gold == 1.0))  # a sampling run of a single candidate
    at = page(project_id)
    for tab in ("Rater runs", "Before / after", "One run", "Inter-rater reliability", "Sampling", "Annotators",
                "New rater run"):
        open_tab(at, tab)
        assert not at.error, (tab, [e.value for e in at.error])
        no_internals(at)
        for spec in plotly_specs(at):  # no chart drawn from nothing: no empty axes, no heatmap of zeros
            drawn = [values(trace.get("z", trace.get("y", []))) for trace in spec["data"]]
            assert any(np.nansum(np.abs(v)) > 0 for v in drawn if v.size), (tab, spec["layout"].get("title"))
