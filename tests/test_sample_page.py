"""The Sample page in AppTest: launch a real run from the form, watch it, browse candidates; the
form's defaults come from the library's presets; a new run shows at once; charts say why they
are empty. The run's status refreshing by itself is in test_sample_browser.py (a fragment)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from apptest_login import app_as
from judgeeye.auth import Actor
from judgeeye.display import escape_markdown
from judgeeye.engines import EngineConfig
from judgeeye.jobs import RUNNER_ENV
from judgeeye.sampling import SamplingSettings, preset_settings
from judgeeye.sampling.launch import launch_run
from judgeeye.store import Candidate, Job, SamplingRun, session_scope
from review_data import make_project

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
FIELDS = SamplingSettings.model_fields


def _page() -> AppTest:
    return app_as("lead", page="judgeeye_app/views/sample.py")


def _runs(at: AppTest):  # type: ignore[no-untyped-def]
    """The run selector (its key follows the runs' statuses)."""
    return next(box for box in at.selectbox if box.label == "Run")


def test_launch_watch_and_browse_a_run(store_url: str) -> None:
    at = _page()
    assert not at.exception
    at.number_input(key="s_k").set_value(2).run()
    at.number_input(key="s_limit").set_value(2).run()
    at.number_input(key="s_max_tokens").set_value(24).run()
    command = at.code[0].value
    assert command.startswith("judgeeye sample --project") and "--k 2" in command and "--limit 2" in command
    at.button(key="s_start").click().run()
    assert at.success and not at.exception
    with session_scope() as s:
        run = s.scalars(select(SamplingRun)).one()
        job = s.scalars(select(Job)).one()
    assert run.k == 2 and job.kind == "sample"

    at = _page()  # a fresh session (a page reload) reattaches to the running job
    _runs(at).set_value(run.id).run()
    assert at.get("progress"), "the live status of the run is shown"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with session_scope() as s:
            if s.get(Job, job.id).status not in ("queued", "running"):
                break
        time.sleep(0.5)
    with session_scope() as s:
        assert s.get(Job, job.id).status == "succeeded", s.get(Job, job.id).error
    at = _page()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Candidates"] == "4" and metrics["Items"] == "2"
    assert any("Sample 0" in m.value for m in at.markdown)
    assert "completed" in _runs(at).format_func(run.id)


def test_form_defaults_and_help_come_from_the_library(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded model starts from the demo preset, 'Paper' gives the model's own defaults
    (max tokens 1,024, not the page's old 512), and the acceptance mode is a visible setting."""
    monkeypatch.setenv(RUNNER_ENV, "workers")  # a started job stays queued: no model here
    make_project(n_items=2, k=1)
    at = _page()
    demo = preset_settings("embedded demo")
    assert at.radio(key="s_preset").value == "embedded demo"
    assert at.number_input(key="s_k").value == demo.k and at.number_input(key="s_max_tokens").value == demo.max_tokens
    assert at.number_input(key="s_limit").value == demo.limit
    assert at.selectbox(key="s_acceptance").value == "forced_cue"
    # the preset fills the multiselect too, with no warning
    assert at.multiselect(key="s_splits").value == demo.splits == ["train"] and not at.warning
    assert at.selectbox(key="s_acceptance").help == escape_markdown(FIELDS["acceptance"].description)
    assert at.number_input(key="s_max_tokens").help == escape_markdown(FIELDS["max_tokens"].description)
    at.radio(key="s_preset").set_value("paper").run()
    paper = SamplingSettings()
    assert at.number_input(key="s_k").value == paper.k == FIELDS["k"].default
    assert at.number_input(key="s_max_tokens").value == paper.max_tokens == FIELDS["max_tokens"].default
    assert at.number_input(key="s_limit").value is None and at.selectbox(key="s_acceptance").value == "written"
    at.multiselect(key="s_splits").set_value(["train", "validation"]).run()
    at.number_input(key="s_k").set_value(3).run()  # another widget's rerun keeps the choice
    assert at.multiselect(key="s_splits").value == ["train", "validation"] and not at.warning
    at.radio(key="s_preset").set_value("embedded demo").run()  # a preset sets it again
    assert at.multiselect(key="s_splits").value == ["train"]
    at.radio(key="s_preset").set_value("paper").run()
    assert "--preset paper" in at.code[0].value and "--max-tokens" not in at.code[0].value
    at.button(key="s_start").click().run()
    with session_scope() as s:
        run = s.scalars(select(SamplingRun).order_by(SamplingRun.id.desc())).first()
    assert run.max_tokens == 1024 and run.settings["acceptance"] == "written" and run.settings["seed"] is not None
    # a server engine starts from the paper's protocol, and keeps it while its inputs are incomplete
    at.radio(key="s_preset").set_value("embedded demo").run()
    at.radio(key="s_engine").set_value("openai").run()
    at.text_input(key="s_openai_base_url").set_value("http://127.0.0.1:9/v1").run()
    assert at.radio(key="s_preset").value == "paper" and at.selectbox(key="s_acceptance").value == "written"
    assert not at.warning and not at.exception


def test_a_started_run_shows_at_once_in_the_runs_tab(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNNER_ENV, "workers")
    project_id, _ = make_project(n_items=2, k=1)
    old_id, _ = launch_run(project_id, EngineConfig(), SamplingSettings(k=1), actor=Actor.system(), start=False)
    at = _page()
    _runs(at).set_value(old_id).run()  # the user was looking at an earlier run
    at.button(key="s_start").click().run()
    assert not at.exception
    with session_scope() as s:
        new_id = s.scalars(select(SamplingRun.id).order_by(SamplingRun.id.desc())).first()
    assert new_id != old_id
    picker = _runs(at)
    assert picker.value == new_id, "the Runs tab still shows the previous run"
    assert picker.format_func(new_id).endswith("queued")
    assert any(f"Run {new_id} started" in s.value and "Runs" in s.value for s in at.success)


def test_charts_use_a_share_axis_and_say_why_they_are_empty(store_url: str) -> None:
    project_id, run_id = make_project(n_items=3, k=2)  # every item accepted at samples 0 and 1
    with session_scope() as s:
        none_id = SamplingRun(project_id=project_id, codebook_id=s.get(SamplingRun, run_id).codebook_id, k=2,
                              status="completed", settings={"k": 2, "acceptance": "written", "seed": 3})
        s.add(none_id)
        s.flush()
        for c in s.scalars(select(Candidate).where(Candidate.run_id == run_id)).all():
            s.add(Candidate(run_id=none_id.id, item_id=c.item_id, sample_index=c.sample_index, target="gold",
                            answer="The story is", parse_ok=False, accepted=False, completion_tokens=8,
                            finish_reason="length"))
        none_id = none_id.id
    at = _page()
    _runs(at).set_value(run_id).run()
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) == 2
    for spec in charts:
        assert spec["layout"]["yaxis"]["range"] == [0, 1] and spec["layout"]["yaxis"]["tickformat"] == ".0%"
    _runs(at).set_value(none_id).run()
    assert not at.get("plotly_chart")
    why = " ".join(i.value for i in at.info)
    assert "None of the 6 candidates was accepted" in why and "6 wrote none (6 ran out of tokens)" in why
    assert not at.exception
