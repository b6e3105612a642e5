"""The Sample page in AppTest: launch a real run from the form, watch it, browse candidates."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from judgeeye.store import Job, SamplingRun, session_scope
from apptest_login import app_as

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _page() -> AppTest:
    return app_as("lead", page="judgeeye_app/views/sample.py")


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
    at.selectbox(key="s_run_pick").set_value(run.id).run()
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
