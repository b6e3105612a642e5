"""Roles are enforced by the library actions themselves, not by hidden buttons: every mutating
entry point a page calls is called here as the wrong role (AccessDenied, the store and the data
folder exactly as before) and as the right one (it works)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, select

from judgeeye.auth import AccessDenied, Actor
from judgeeye.auth.roles import JOB_PERMISSIONS, PAGE_PERMISSIONS, PERMISSIONS, job_permission
from judgeeye.codebook import create_version, current_spec
from judgeeye.datasets import ColumnMapping, read_table
from judgeeye.engines import EngineConfig
from judgeeye.evaluate import RaterSpec
from judgeeye.jobs import create_job, request_cancel
from judgeeye.store import Job, RaterRun, SamplingRun, TrainingRun, session_scope
from judgeeye.store.db import get_engine
from tests.review_data import make_users
from tests.training_data import make_tiny_project

DATASET = Path(__file__).parent / "data" / "generic_ratings.csv"


def snapshot(data_dir: Path) -> tuple[dict[str, list[tuple[Any, ...]]], set[str]]:
    """Every row of every table, and every file under the data folder but the database's own."""
    engine = get_engine()
    meta = MetaData()
    meta.reflect(bind=engine)
    with engine.connect() as conn:
        rows = {name: sorted(map(tuple, conn.execute(select(table)).all()), key=repr)
                for name, table in meta.tables.items()}
    files = {str(p.relative_to(data_dir)) for p in data_dir.rglob("*")
             if p.is_file() and not p.name.startswith("test.db")}
    return rows, files


def assert_denied(data_dir: Path, action: Callable[[], object]) -> None:
    before = snapshot(data_dir)
    with pytest.raises(AccessDenied):
        action()
    after = snapshot(data_dir)
    assert after[0] == before[0], "a refused action changed the store"
    assert after[1] == before[1], "a refused action wrote files"


@pytest.fixture
def world(store_url: str, data_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """The tiny project (a codebook, a completed sampling run with accepted traces, train /
    validation / test items), a second codebook version, and one user per role."""
    project_id = make_tiny_project(tmp_path)
    with session_scope() as s:
        spec = current_spec(s, project_id)
        create_version(s, project_id, spec.model_copy(update={"instructions": spec.instructions + " Be strict."}),
                       origin="edited", author="lead", make_current=False)
        sampling_run = s.scalar(select(SamplingRun.id).where(SamplingRun.project_id == project_id))
    users = make_users(("ann", "annotator"), ("auth", "author"), ("lea", "lead"), ("adm", "admin"))
    return {"project": project_id, "sampling_run": sampling_run, **users}


def _count(model: type, **where: Any) -> int:
    with session_scope() as s:
        stmt = select(model)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        return len(s.scalars(stmt).all())


def test_permissions_are_consistent() -> None:
    for permission in PAGE_PERMISSIONS.values():
        assert permission in PERMISSIONS
    for kind, permission in JOB_PERMISSIONS.items():
        assert permission in PERMISSIONS, kind
    from judgeeye.jobs import HANDLERS

    assert set(HANDLERS) <= set(JOB_PERMISSIONS), "a job kind without a permission is the admin's alone"
    assert job_permission("some future kind") == "manage_users"
    # the pages that start work are closed to the roles the actions refuse
    assert PAGE_PERMISSIONS["train"] == "train" and PAGE_PERMISSIONS["sample"] == "sample"
    assert PAGE_PERMISSIONS["data"] == "manage_data"


def test_data_import(world: dict[str, Any], data_dir: Path) -> None:
    from judgeeye.projects import import_with_codebook

    dataset = read_table(DATASET, ColumnMapping(id_column="id", text_columns=["text"],
                                                rating_columns={"r1": "r1", "r2": "r2", "r3": "r3"},
                                                scale_min=1, scale_max=5))

    def do(actor: Actor) -> int:
        with session_scope() as s:
            return import_with_codebook(s, dataset, actor=actor, project_name="imported").project_id

    for role in ("ann", "auth"):
        assert_denied(data_dir, lambda: do(world[role]))
    assert do(world["lea"]) > world["project"]


def test_sampling_start_resume_cancel(world: dict[str, Any], data_dir: Path) -> None:
    from judgeeye.sampling import SamplingSettings
    from judgeeye.sampling.launch import launch_run, resume_run

    settings = SamplingSettings(k=1, splits=["train"], limit=1)
    for role in ("ann", "auth"):
        actor = world[role]
        assert_denied(data_dir, lambda: launch_run(world["project"], EngineConfig(), settings, actor=actor,
                                                   start=False))
        assert_denied(data_dir, lambda: resume_run(world["sampling_run"], actor=actor, start=False))
    runs = _count(SamplingRun)
    run_id, job_id = launch_run(world["project"], EngineConfig(), settings, actor=world["lea"], start=False)
    assert _count(SamplingRun) == runs + 1
    for role in ("ann", "auth"):
        assert_denied(data_dir, lambda: request_cancel(job_id, actor=world[role]))
    request_cancel(job_id, actor=world["lea"])
    with session_scope() as s:
        assert s.get(Job, job_id).status == "cancelled"
    assert resume_run(run_id, actor=world["adm"], start=False) > job_id


def test_rater_run_start_resume_cancel(world: dict[str, Any], data_dir: Path) -> None:
    from judgeeye.evaluate.launch import launch_rater_run, resume_rater_run

    spec = RaterSpec(limit=1, max_tokens=8)
    for role in ("ann", "auth"):
        assert_denied(data_dir, lambda: launch_rater_run(world["project"], spec, actor=world[role], start=False))
    run_id, job_id = launch_rater_run(world["project"], spec, actor=world["lea"], start=False)
    assert _count(RaterRun, project_id=world["project"]) == 1
    for role in ("ann", "auth"):
        assert_denied(data_dir, lambda: request_cancel(job_id, actor=world[role]))
    request_cancel(job_id, actor=world["lea"])
    for role in ("ann", "auth"):
        assert_denied(data_dir, lambda: resume_rater_run(run_id, actor=world[role], start=False))
    assert resume_rater_run(run_id, actor=world["lea"], start=False) > job_id


def test_training_start_stop_resume(world: dict[str, Any], data_dir: Path) -> None:
    from judgeeye.training import TrainingConfig
    from judgeeye.training.launch import NothingToResume, launch_training, resume_training

    config = TrainingConfig(max_steps=1, force=True)  # one step, one validation: a plan refused unless forced
    for role in ("ann", "auth"):
        assert_denied(data_dir, lambda: launch_training(world["project"], config, actor=world[role], start=False))
    run_id, job_id = launch_training(world["project"], config, actor=world["lea"], start=False)
    assert _count(TrainingRun) == 1
    for role in ("ann", "auth"):
        assert_denied(data_dir, lambda: request_cancel(job_id, actor=world[role]))  # the Stop button
    request_cancel(job_id, actor=world["lea"])
    for role in ("ann", "auth"):
        assert_denied(data_dir, lambda: resume_training(run_id, actor=world[role], start=False))
    with pytest.raises(NothingToResume):  # allowed, but the run never reached a checkpoint
        resume_training(run_id, actor=world["adm"], start=False)


def test_refinement_jobs_and_comparison(world: dict[str, Any], data_dir: Path) -> None:
    """Authors refine and compare codebooks; annotators may do neither, nor cancel a refinement."""
    from judgeeye.refine.compare import launch_incomplete, plan_comparison

    with session_scope() as s:
        job_id = create_job(s, "refine", {"settings": {}, "base_version": 1, "resume_from": []},
                            project_id=world["project"]).id
    assert_denied(data_dir, lambda: request_cancel(job_id, actor=world["ann"]))
    request_cancel(job_id, actor=world["auth"])

    raters = [RaterSpec(limit=1, max_tokens=8)]

    def plan(actor: Actor) -> list[int]:
        with session_scope() as s:
            return plan_comparison(s, world["project"], 1, 2, raters, actor=actor).run_ids

    assert_denied(data_dir, lambda: plan(world["ann"]))
    run_ids = plan(world["auth"])
    assert len(run_ids) == 2
    assert_denied(data_dir, lambda: launch_incomplete(run_ids, actor=world["ann"]))


def test_codebook_and_export_actions(world: dict[str, Any], data_dir: Path, tmp_path: Path) -> None:
    from judgeeye.codebook.editor import make_current
    from judgeeye.review import export_reasoning

    def current(actor: Actor) -> None:
        with session_scope() as s:
            make_current(s, world["project"], 2, actor=actor)

    assert_denied(data_dir, lambda: current(world["ann"]))
    current(world["auth"])

    out = data_dir / "exports" / "x"

    def export(actor: Actor) -> None:
        with session_scope() as s:
            export_reasoning(s, actor, world["project"], out, ["jsonl"])

    for role in ("ann", "auth"):
        assert_denied(data_dir, lambda: export(world[role]))
    assert not out.exists()
    export(world["lea"])
    assert (out / "d_reason.jsonl").is_file()


def test_logged_out_is_refused(world: dict[str, Any], data_dir: Path) -> None:
    from judgeeye.sampling import SamplingSettings
    from judgeeye.sampling.launch import launch_run

    assert_denied(data_dir, lambda: launch_run(world["project"], EngineConfig(), SamplingSettings(k=1),
                                               actor=None, start=False))  # type: ignore[arg-type]
