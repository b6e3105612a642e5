"""The Train page in AppTest: the form and its command, launching a real training job, a reload
reattaching to it, Stop, and a failed run showing its log."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from judgeeye.auth import Actor
from judgeeye.store import Annotator, Job, TrainingRun, session_scope
from training_data import make_tiny_project

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SESSION_KEY = "judgeeye_user"  # judgeeye_app/ui/access.py: who is logged in


def _lead() -> dict:
    with session_scope() as s:
        user = s.scalar(select(Annotator).where(Annotator.name == "test-lead"))
        if user is None:
            user = Annotator(name="test-lead", role="lead", active=True)
            s.add(user)
            s.flush()
        return {"id": user.id, "name": user.name, "role": user.role}


def _page() -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.session_state[SESSION_KEY] = _lead()
    at.switch_page("judgeeye_app/views/train.py")
    return at.run()


def _job(job_id: int) -> Job:
    with session_scope() as s:
        return s.get(Job, job_id)


def _wait(predicate, timeout: float = 600.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError("timed out")


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_the_form_shows_the_plan_and_refuses_a_meaningless_one(store_url: str, tmp_path: Path) -> None:
    make_tiny_project(tmp_path)
    at = _page()
    assert not at.exception, at.exception
    shown = _metrics(at)  # 8 traced rows, batch 128: one step per epoch, 10 epochs at most
    assert (shown["Training rows"], shown["Optimizer steps (most)"], shown["Warm-up steps"], shown["Validations"]) == (
        "8", "10", "1", "10")
    assert at.button(key="t_start") and not at.error
    at.number_input(key="t_max_steps").set_value(2).run()
    assert any("cannot train meaningfully" in e.value and "at least 3" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "t_start"]  # no Start for a refused plan ...
    at.checkbox(key="t_force").check().run()
    assert at.button(key="t_start")  # ... unless the user asks for it
    at.selectbox(key="t_preset").set_value("tract").run()  # TRACT's recipe fills the form
    assert at.number_input(key="t_learning_rate").value == 1e-5 and at.number_input(key="t_lora_r").value == 8
    assert at.selectbox(key="t_mode").value == "tract" and at.number_input(key="t_max_steps").value is None
    assert at.number_input(key="t_protocol.top_p").value == 0.9
    assert at.selectbox(key="t_lr_scheduler").value == "cosine"
    assert any("warm-up covers the whole run" in w.value for w in at.warning)
    assert at.code[0].value.startswith("judgeeye train --project tiny --preset tract")


def test_launch_reattach_and_stop(store_url: str, tmp_path: Path) -> None:
    make_tiny_project(tmp_path)
    at = _page()
    assert not at.exception, at.exception
    at.selectbox(key="t_mode").set_value("tract").run()
    assert at.number_input(key="t_lambda_raft").value == 1.0  # TRACT's own settings appear
    at.number_input(key="t_max_steps").set_value(40).run()
    at.number_input(key="t_batch_size").set_value(2).run()
    at.number_input(key="t_grad_accum").set_value(1).run()
    at.number_input(key="t_max_length").set_value(192).run()
    at.number_input(key="t_protocol.max_tokens").set_value(4).run()
    at.checkbox(key="t_evaluate_test").uncheck().run()
    assert _metrics(at)["Optimizer steps (most)"] == "40" and _metrics(at)["Validations"] == "10"
    command = at.code[0].value
    assert command.startswith("judgeeye train --project tiny --mode tract") and "--max-steps 40" in command
    assert "--batch-size 2" in command and "--no-test-eval" in command and "--max-tokens 4" in command
    at.button(key="t_start").click().run()
    assert at.success and not at.exception
    with session_scope() as s:
        run = s.scalars(select(TrainingRun)).one()
    assert run.config["mode"] == "tract" and run.config["max_steps"] == 40

    at = _page()  # a reload: the running job is found again
    assert not at.exception, at.exception
    assert at.get("progress")[0].proto.text.startswith(f"Run {run.id} · job {run.job_id}: ")
    assert at.button(key=f"t_{run.id}_cancel").label == "Stop (saves a checkpoint)"
    _wait(lambda: _has_loss(run.id))  # a step is done: the stop saves a checkpoint after the next one
    at.button(key=f"t_{run.id}_cancel").click().run()
    assert any(c.value.startswith("Stop requested") for c in at.caption)
    _wait(lambda: _job(run.job_id).status not in ("queued", "running"))
    assert _job(run.job_id).status == "cancelled"
    at = _page()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["run"]) == [str(run.id)] and list(table["job"]) == ["cancelled"]
    assert at.button(key=f"t_{run.id}_resume")  # a stopped run with a checkpoint can be resumed


def _has_loss(run_id: int) -> bool:
    from judgeeye.training.launch import metrics_of

    with session_scope() as s:
        return "stage1/loss" in metrics_of(s, run_id)


def test_a_failed_run_shows_its_error_and_log(store_url: str) -> None:
    from judgeeye.projects import ensure_sample_project
    from judgeeye.training import TrainingConfig
    from judgeeye.training.launch import launch_training

    project_id = ensure_sample_project()  # no traces sampled: the job must fail, saying so
    run_id, job_id = launch_training(project_id, TrainingConfig(max_steps=1, force=True), actor=Actor.system())
    _wait(lambda: _job(job_id).status not in ("queued", "running"))
    assert _job(job_id).status == "failed"
    at = _page()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any(f"Job {job_id} failed: project" in e and "no traces" in e for e in errors), errors
    log = "\n".join(c.value for c in at.code)
    assert "no traces" in log and "Traceback" not in log and "TrainingDataError" not in log
    assert not [b for b in at.button if b.key == f"t_{run_id}_resume"]  # nothing was saved to resume from
    assert any("Nothing to resume" in c.value for c in at.caption)
    with session_scope() as s:
        assert s.get(TrainingRun, run_id).status == "failed"
