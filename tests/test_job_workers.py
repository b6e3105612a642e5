"""Jobs served by `judgeeye jobs worker` processes (JUDGEEYE_JOB_RUNNER=workers): launching
leaves a job queued; two workers racing over three rater runs (real subprocesses, a real loopback
model server) run each job exactly once, and every prediction is written once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from chat_server import chat_server
from judgeeye.auth import Actor
from judgeeye.engines import EngineConfig
from judgeeye.evaluate import RaterSpec
from judgeeye.evaluate.launch import launch_rater_run
from judgeeye.jobs import RUNNER_ENV, claim_job, serve_jobs
from judgeeye.store import Item, Job, Prediction, session_scope
from refine_data import make_project, scripted_reply


def test_two_workers_run_each_queued_job_once(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project_id = make_project(tmp_path, per_level=1, test_per_level=2)
    monkeypatch.setenv(RUNNER_ENV, "workers")
    with chat_server(scripted_reply) as (url, prompts):
        job_ids = []
        for model in ("rater-a", "rater-b", "rater-a"):
            spec = RaterSpec(engine=EngineConfig(kind="openai", model=model, base_url=url, max_retries=0),
                             max_tokens=16)
            _, job_id = launch_rater_run(project_id, spec, actor=Actor.system())  # start=True: queued only
            job_ids.append(job_id)
        with session_scope() as s:
            assert [(j.status, j.pid) for j in s.scalars(select(Job).order_by(Job.id))] == [("queued", None)] * 3

        worker = [sys.executable, "-m", "judgeeye.cli", "jobs", "worker", "--once", "--poll", "0.2"]
        procs = [subprocess.Popen(worker, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ}) for _ in range(2)]
        outs = [p.communicate(timeout=180)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs), outs

    started = [line for out in outs for line in out.splitlines() if " started (pid " in line]
    assert sorted(int(line.split()[1]) for line in started) == sorted(job_ids), outs  # each job once
    with session_scope() as s:
        jobs = s.scalars(select(Job).order_by(Job.id)).all()
        assert [j.status for j in jobs] == ["succeeded"] * 3, [j.error for j in jobs]
        n_test = s.scalar(select(func.count()).select_from(Item).where(Item.project_id == project_id,
                                                                      Item.split == "test"))
        per_run = s.execute(select(Prediction.rater_run_id, func.count()).group_by(Prediction.rater_run_id)).all()
    assert n_test == 10 and sorted(n for _, n in per_run) == [n_test] * 3
    assert len(prompts) == 3 * n_test  # nothing rated twice
    for job in jobs:
        log = Path(job.log_path).read_text()
        assert log.count(f"job {job.id} (evaluate) started in process") == 1, log


def test_claims_are_exclusive_and_filtered_by_kind(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from judgeeye.jobs import create_job

    with session_scope() as s:
        a = create_job(s, "evaluate", {}).id
        b = create_job(s, "train", {}).id
    assert claim_job(["train"]) == b
    assert claim_job(["train"]) is None
    assert claim_job() == a and claim_job() is None
    with session_scope() as s:
        assert {j.status for j in s.scalars(select(Job))} == {"running"}
    with pytest.raises(ValueError, match="unknown job kind"):
        serve_jobs(kinds=["nope"], once=True)
