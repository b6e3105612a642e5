"""The Sample page in chromium: the run selector follows the run's status by itself. The live
status is a fragment polled every 2 s; when the run's status changes (its job ends), the whole
page reruns so the selector no longer says "queued" or "running". Jobs stay queued here
(JUDGEEYE_JOB_RUNNER=workers) and the test moves the run on in the store, as a worker would."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from browser import browser_page, log_in, settled, streamlit_app
from judgeeye.auth import Actor
from judgeeye.engines import EngineConfig
from judgeeye.jobs import RUNNER_ENV
from judgeeye.sampling import SamplingSettings
from judgeeye.sampling.launch import launch_run
from judgeeye.store import Job, SamplingRun, session_scope
from judgeeye.store.models import utcnow
from review_data import PASSWORD, make_project, make_users

pytestmark = pytest.mark.slow


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[str]:
    with streamlit_app(tmp_path, env={RUNNER_ENV: "workers"}) as url:
        yield url


def test_run_selector_follows_the_job_without_a_click(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    make_users(("lea", "lead"))
    project_id, _ = make_project(n_items=2, k=1)
    run_id, job_id = launch_run(project_id, EngineConfig(), SamplingSettings(k=1, seed=1), actor=Actor.system(),
                                start=False)
    with browser_page(tmp_path, "sample") as page:
        page.goto(server)
        page.get_by_text("Log in to review").wait_for(timeout=120_000)  # a first run on busy cores is slow
        log_in(page, "lea", PASSWORD)
        expect(page.get_by_text("Logged in as lea")).to_be_visible()
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Sample", exact=True).click()
        page.get_by_role("tab", name="Runs", exact=True).click()
        settled(page)
        picker = page.get_by_role("combobox", name="Run")
        expect(picker).to_have_value(re.compile(rf"Run {run_id} .*(queued|created)$"))
        with session_scope() as s:  # the worker takes the job (and beats, else it counts as dead) ...
            job = s.get(Job, job_id)
            job.status, job.started_at, job.heartbeat_at = "running", utcnow(), utcnow() + timedelta(hours=1)
            s.get(SamplingRun, run_id).status = "running"
        expect(picker).to_have_value(re.compile(rf"Run {run_id} .*running$"), timeout=20_000)
        with session_scope() as s:  # ... and finishes it
            s.get(Job, job_id).status = "succeeded"
            s.get(SamplingRun, run_id).status = "completed"
        expect(picker).to_have_value(re.compile(rf"Run {run_id} .*completed$"), timeout=20_000)
        expect(page.get_by_text(re.compile(rf"job {job_id}: succeeded"))).to_be_visible()
