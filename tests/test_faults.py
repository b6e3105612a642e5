"""Faults and recovery (issue 8): jobs killed with SIGKILL at a random moment, a database locked
or unreachable while jobs write, an OpenAI-compatible server that keeps failing; each followed
by a resume that loses and duplicates nothing, and by an app (started afresh) that tells the truth.

Sampling runs talk to a scriptable server on loopback (tests/fault_server.py), so they cost no
model time; the training run uses the embedded model with a handful of tiny steps.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from apptest_login import SESSION_KEY, app_as, login_as
from fault_server import FaultServer
from judgeeye.auth import Actor
from judgeeye.cli import app
from judgeeye.engines import EngineConfig
from judgeeye.sampling import SamplingSettings
from judgeeye.sampling.launch import launch_run, resume_run
from judgeeye.store import Candidate, Job, SamplingRun, TrainingMetric, TrainingRun, dispose_engines, read_scope
from waiting import wait_for

runner = CliRunner()
DATA = Path(__file__).parent / "data"
REPO_ROOT = str(Path(__file__).resolve().parents[1])
SEED = 8  # the seeded "random moment" of each kill
FAST = {"backoff_base": 0.01, "backoff_max": 0.05}
K = 3
N_ITEMS = 5  # tests/data/generic_ratings.csv: six items, one dropped (its raters disagree)


# ------------------------------------------------------------------------------ helpers


@pytest.fixture
def fault():
    server = FaultServer()
    yield server
    server.stop()


@pytest.fixture
def project(store_url: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Six short items rated by three annotators (five with a gold label), all in the train split."""
    from judgeeye.codebook import load_builtin
    from judgeeye.datasets import ColumnMapping, SplitRule, read_table
    from judgeeye.projects import import_with_codebook
    from judgeeye.store import session_scope

    monkeypatch.setenv("JUDGEEYE_JOB_STALE_SECONDS", "2")
    mapping = ColumnMapping(id_column="id", text_columns={"story": "text"},
                            rating_columns={"r1": "r1", "r2": "r2", "r3": "r3"}, scale_min=1, scale_max=5,
                            dimension="complexity", generation_type="story")
    with session_scope() as s:
        report = import_with_codebook(s, read_table(DATA / "generic_ratings.csv", mapping), actor=Actor.system(),
                                      project_name="faults", codebook=load_builtin("hanna_complexity"),
                                      split_rule=SplitRule(ratios=(1.0, 0.0, 0.0)))
        return report.project_id


def _engine(server: FaultServer, **extra: Any) -> EngineConfig:
    return EngineConfig(kind="openai", model="fault-model", base_url=server.base_url, max_concurrency=1,
                        max_retries=2, timeout=10, extra={**FAST, **extra})


def _candidates(run_id: int) -> list[Candidate]:
    with read_scope() as s:
        return list(s.scalars(select(Candidate).where(Candidate.run_id == run_id).order_by(Candidate.id)).all())


def _job(job_id: int) -> Job:
    with read_scope() as s:
        return s.get(Job, job_id)


def _latest_job(kind: str) -> Job:
    with read_scope() as s:
        return s.scalars(select(Job).where(Job.kind == kind).order_by(Job.id.desc())).first()




def _done(job_id: int) -> Job:
    return wait_for(lambda: (j := _job(job_id)).status not in ("queued", "running") and j)


def _log(job_id: int) -> str:
    path = _job(job_id).log_path
    return Path(path).read_text(errors="replace") if path and Path(path).exists() else ""


def _kill_at_a_random_moment(job_id: int, rng: random.Random, spread: float) -> float:
    """SIGKILL the job's worker after a seeded random delay; returns the delay."""
    delay = rng.uniform(0.0, spread)
    time.sleep(delay)
    pid = _job(job_id).pid
    assert pid and _job(job_id).status == "running", "the job ended before the kill"
    os.kill(pid, signal.SIGKILL)
    try:  # the worker is this process's child (start_job): reap it
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    return delay


def _exactly_k_per_item(run_id: int, n_items: int = N_ITEMS) -> list[Candidate]:
    rows = _candidates(run_id)
    keys = Counter((c.item_id, c.target, c.sample_index) for c in rows)
    assert set(keys.values()) == {1}, "a candidate was written twice"
    assert Counter(c.item_id for c in rows) == Counter({i: K for i in {c.item_id for c in rows}})
    assert len(rows) == n_items * K
    return rows


# ------------------------------------------------------------------------------ kill -9, sampling


def test_sampling_job_killed_then_the_restarted_app_shows_it_and_resumes_it(project: int, fault: FaultServer) -> None:
    fault.default = {"kind": "ok", "delay": 0.3}  # one request (k samples of an item) takes 0.3 s
    run_id, job_id = launch_run(project, _engine(fault), SamplingSettings(k=K, max_tokens=32, readout=False),
                                actor=Actor.system())
    wait_for(lambda: len(_candidates(run_id)) >= K)
    _kill_at_a_random_moment(job_id, random.Random(SEED), 0.6)
    before = {(c.item_id, c.sample_index): (c.id, c.answer) for c in _candidates(run_id)}
    assert K <= len(before) < N_ITEMS * K
    time.sleep(2.2)  # the heartbeat goes stale (JUDGEEYE_JOB_STALE_SECONDS=2)

    at = app_as("lead", page="judgeeye_app/views/sample.py")  # the app, started afresh, finds the dead worker
    assert not at.exception
    assert any(f"Job {job_id} failed" in e.value and "killed" in e.value for e in at.error)
    assert any(f"Job {job_id}: failed" in p.proto.text for p in at.get("progress"))
    assert any("failed" in o for o in at.selectbox(key="s_run_pick").options)  # the run too, not "running"
    assert not [b for b in at.button if b.key == f"s_cancel_{run_id}"]
    at.button(key=f"s_resume_{run_id}").click().run()  # resume from the page
    assert not at.exception
    resumed = _latest_job("sample")
    assert resumed.id != job_id
    assert _done(resumed.id).status == "succeeded", _log(resumed.id)

    after = _exactly_k_per_item(run_id)
    survivors = {(c.item_id, c.sample_index): (c.id, c.answer) for c in after}
    assert all(survivors[key] == value for key, value in before.items()), "a written candidate changed"
    with read_scope() as s:
        assert s.get(SamplingRun, run_id).status == "completed"
        assert s.get(Job, job_id).status == "failed"


# ------------------------------------------------------------------------------ kill -9, training


@pytest.mark.slow
def test_training_job_killed_then_resumed_keeps_a_gapless_curve(
        store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training_data import make_tiny_project

    from judgeeye.training.launch import metrics_of

    monkeypatch.setenv("JUDGEEYE_JOB_STALE_SECONDS", "2")
    make_tiny_project(tmp_path)
    steps, every = 4, 2  # a checkpoint (and a validation) every 2 steps
    result = runner.invoke(app, [
        "train", "--project", "tiny", "--max-steps", str(steps), "--eval-steps", str(every), "--batch-size", "2",
        "--grad-accum", "1", "--max-length", "192", "--warmup-steps", "0", "--lr", "1e-3", "--val-limit", "2",
        "--max-tokens", "2", "--readout", "expected", "--no-test-eval", "--force", "--background"])
    assert result.exit_code == 0, result.output
    with read_scope() as s:
        run = s.scalars(select(TrainingRun)).one()
    job_id = run.job_id

    def metrics() -> dict[str, list[tuple[int, float]]]:
        with read_scope() as s:
            return metrics_of(s, run.id)

    # logged a step after the first checkpoint: the kill lands where a resume must replay steps
    wait_for(lambda: [s for s, _ in metrics().get("loss", [])][-1:] >= [every + 1], timeout=300)
    _kill_at_a_random_moment(job_id, random.Random(SEED), 1.0)
    logged = [s for s, _ in metrics()["loss"]]
    assert logged == list(range(1, len(logged) + 1)) and every < len(logged) <= steps
    time.sleep(2.2)

    at = app_as("lead", page="judgeeye_app/views/train.py")  # the app, started afresh
    assert not at.exception
    assert any(f"Job {job_id} failed" in e.value and "killed" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == f"t_stop_{run.id}"]
    with read_scope() as s:
        assert s.get(TrainingRun, run.id).status == "failed"
    at.button(key=f"t_resume_{run.id}").click().run()
    assert not at.exception
    resumed = _latest_job("train")
    assert resumed.id != job_id
    assert _done(resumed.id).status == "succeeded", _log(resumed.id)

    final = metrics()
    assert [s for s, _ in final["loss"]] == list(range(1, steps + 1)), "a gap or a duplicate in the loss curve"
    assert [s for s, _ in final["lr"]] == list(range(1, steps + 1))
    assert [s for s, _ in final["val_tau"]] == list(range(every, steps + 1, every))
    with read_scope() as s:
        assert s.get(TrainingRun, run.id).status == "completed"
        rows = s.scalar(select(func.count()).select_from(TrainingMetric).where(TrainingMetric.run_id == run.id))
        distinct = s.execute(select(TrainingMetric.step, TrainingMetric.name)
                             .where(TrainingMetric.run_id == run.id).distinct()).all()
    assert rows == len(distinct)
    # it went on from the checkpoint the killed job left, and replayed the steps logged after it
    resumed_from = re.search(r"main: resuming from \S*checkpoint-(\d+)", _log(resumed.id))
    assert resumed_from and every <= int(resumed_from.group(1)) < len(logged) + 1


# ------------------------------------------------------------------------------ a locked database


def _sqlite_path(url: str) -> str:
    return make_url(url).database


def _hold_write_lock(url: str):  # type: ignore[no-untyped-def]
    """Another connection takes SQLite's write lock (as a long write by another process would)."""
    conn = sqlite3.connect(_sqlite_path(url), isolation_level=None, timeout=10)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


@pytest.fixture
def sqlite_only(store_url: str) -> str:
    if not store_url.startswith("sqlite"):
        pytest.skip("SQLite locking (the PostgreSQL variant terminates connections instead)")
    return store_url


def test_a_briefly_locked_database_is_waited_out_and_nothing_is_lost(
        sqlite_only: str, project: int, fault: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGEEYE_DB_BUSY_TIMEOUT_MS", "200")
    monkeypatch.setenv("JUDGEEYE_DB_RETRIES", "6")  # 0.2 + 0.4 + ... s: outlasts the 3 s lock
    monkeypatch.setenv("JUDGEEYE_DB_RETRY_SECONDS", "0.2")
    fault.default = {"kind": "ok", "delay": 0.15}
    run_id, job_id = launch_run(project, _engine(fault), SamplingSettings(k=K, max_tokens=32, readout=False),
                                actor=Actor.system())
    wait_for(lambda: len(_candidates(run_id)) >= K)
    lock = _hold_write_lock(sqlite_only)
    try:
        time.sleep(3.0)
        written_while_locked = _candidates(run_id)  # readers are not blocked (WAL)
    finally:
        lock.rollback()
        lock.close()
    assert len(written_while_locked) < N_ITEMS * K
    assert _done(job_id).status == "succeeded", _log(job_id)
    _exactly_k_per_item(run_id)
    assert "database busy, retrying in" in _log(job_id)


def test_a_database_locked_past_the_retries_fails_the_job_clearly_then_resume_completes(
        sqlite_only: str, project: int, fault: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGEEYE_DB_BUSY_TIMEOUT_MS", "200")
    monkeypatch.setenv("JUDGEEYE_DB_RETRIES", "2")
    monkeypatch.setenv("JUDGEEYE_DB_RETRY_SECONDS", "0.1")
    fault.default = {"kind": "ok", "delay": 0.15}
    run_id, job_id = launch_run(project, _engine(fault), SamplingSettings(k=K, max_tokens=32, readout=False),
                                actor=Actor.system())
    wait_for(lambda: len(_candidates(run_id)) >= K)
    lock = _hold_write_lock(sqlite_only)
    try:  # hold it until the job has given up (its final status write waits longer, then succeeds)
        wait_for(lambda: "StoreBusyError" in _log(job_id), timeout=60, every=0.05)
    finally:
        lock.rollback()
        lock.close()
    job = _done(job_id)
    assert job.status == "failed"
    assert "database stayed busy" in job.error and "database is locked" in job.error
    assert "resume" in job.error and "Nothing already written is lost" in job.error
    assert _log(job_id).count("database busy, retrying in") >= 2
    before = {(c.item_id, c.sample_index): c.id for c in _candidates(run_id)}
    assert len(before) < N_ITEMS * K
    with read_scope() as s:
        assert s.get(SamplingRun, run_id).status == "failed"

    monkeypatch.setenv("JUDGEEYE_DB_BUSY_TIMEOUT_MS", "30000")
    result = runner.invoke(app, ["sample", "--resume", str(run_id)])
    assert result.exit_code == 0, result.output
    after = _exactly_k_per_item(run_id)
    assert all({(c.item_id, c.sample_index): c.id for c in after}[key] == cid for key, cid in before.items())


def _start_a_job_from_a_button(repo: str) -> None:
    """A page action as the pages write them: the store write inside ``store_busy_notice``."""
    import sys

    import streamlit as st

    sys.path.insert(0, repo)
    from judgeeye.jobs import create_job
    from judgeeye.store import session_scope
    from judgeeye_app.ui.common import store_busy_notice

    if st.button("Start", key="start"):
        with store_busy_notice():
            with session_scope() as s:
                job = create_job(s, "sample", {"run_id": 1})
            st.success(f"job {job.id} created")


def test_the_app_on_a_locked_database_says_so_and_saves_nothing(
        sqlite_only: str, project: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("JUDGEEYE_DB_BUSY_TIMEOUT_MS", "200")
    monkeypatch.setenv("JUDGEEYE_DB_RETRIES", "1")
    monkeypatch.setenv("JUDGEEYE_DB_RETRY_SECONDS", "0.05")
    dispose_engines()  # the app's connections wait 0.2 s for a lock, not 30 s
    app_as("lead")  # the store prepared once (app.py's first start), then a fresh session:
    at = AppTest.from_file(str(Path(REPO_ROOT) / "app.py"), default_timeout=30)
    at.session_state[SESSION_KEY] = login_as("lead")
    action = AppTest.from_function(_start_a_job_from_a_button, args=(REPO_ROOT,), default_timeout=30)
    action.run()
    lock = _hold_write_lock(sqlite_only)
    try:
        at.run()
        action.button(key="start").click().run()
    finally:
        lock.rollback()
        lock.close()
    # pages read without the write lock (read_scope): the app stays usable while a writer holds it
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    # an action that must write says so clearly instead of a traceback
    assert not action.exception, action.exception
    assert any("The database is busy; nothing was saved" in e.value and "database is locked" in e.value
               for e in action.error)
    assert not action.success
    with read_scope() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0
    at.run()  # the lock is gone: the app works again, and so does the action
    action.button(key="start").click().run()
    assert not at.exception and not at.error and not action.error and action.success
    with read_scope() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1


@pytest.mark.skipif(not os.environ.get("JUDGEEYE_TEST_PG"), reason="needs JUDGEEYE_TEST_PG (a PostgreSQL server)")
def test_postgres_connections_terminated_mid_run_lose_nothing(
        store_url: str, project: int, fault: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import create_engine

    monkeypatch.setenv("JUDGEEYE_DB_RETRY_SECONDS", "0.2")
    fault.default = {"kind": "ok", "delay": 0.15}
    run_id, job_id = launch_run(project, _engine(fault), SamplingSettings(k=K, max_tokens=32, readout=False),
                                actor=Actor.system())
    wait_for(lambda: len(_candidates(run_id)) >= K)
    admin = create_engine(os.environ["JUDGEEYE_TEST_PG"], isolation_level="AUTOCOMMIT")
    terminated = 0
    try:
        with admin.connect() as conn:
            for _ in range(6):  # cut every connection to the run's database, several times mid-run
                terminated += len(conn.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": make_url(store_url).database}).all())
                time.sleep(0.25)
    finally:
        admin.dispose()
    assert terminated > 0
    job = _done(job_id)
    if job.status != "succeeded":  # the worker lost its store past the retries: a resume completes
        assert "database" in (job.error or "") or "killed" in (job.error or ""), job.error
        result = runner.invoke(app, ["sample", "--resume", str(run_id)])
        assert result.exit_code == 0, result.output
    _exactly_k_per_item(run_id)


# ------------------------------------------------------------------------------ a failing server


def test_a_server_that_keeps_failing_ends_the_run_clearly_and_resume_completes_it(
        project: int, fault: FaultServer) -> None:
    from judgeeye.jobs import run_job

    fault.default = {"kind": "status", "code": 500, "message": "model overloaded"}
    run_id, job_id = launch_run(project, _engine(fault), SamplingSettings(k=K, max_tokens=32, readout=False),
                                actor=Actor.system(), start=False)
    assert run_job(job_id) == "failed"
    job = _job(job_id)
    assert f"127.0.0.1:{fault.port}" in job.error and "HTTP 500" in job.error and "model overloaded" in job.error
    assert "resume" in job.error and "gave up after 3 tries" in job.error
    assert len(fault.requests) == N_ITEMS * 3 * 3  # 5 items, 3 passes, 1 try + 2 retries each
    assert _candidates(run_id) == []
    with read_scope() as s:
        assert s.get(SamplingRun, run_id).status == "incomplete"

    fault.script.extend([{"kind": "status", "code": 429}, {"kind": "malformed"}, {"kind": "truncated"},
                         {"kind": "hang", "seconds": 1}])  # a recovering server still stumbles: retried
    fault.default = {"kind": "ok"}
    resumed = resume_run(run_id, actor=Actor.system(), start=False)
    assert run_job(resumed) == "succeeded", _job(resumed).error
    _exactly_k_per_item(run_id)
    with read_scope() as s:
        assert s.get(SamplingRun, run_id).status == "completed"
