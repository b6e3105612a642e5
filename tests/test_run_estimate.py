"""Estimating a sampling run before it starts (judgeeye.sampling.estimate), the throughput each
run records, the calibration of `judgeeye sample --dry-run`, and the OpenMP settings of job
workers. Real store, a real tiny model on the CPU; no hub."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from judgeeye.auth import Actor
from judgeeye.datasets import ColumnMapping, SplitRule, import_dataset, read_table
from judgeeye.engines import EngineConfig
from judgeeye.projects import ensure_sample_project
from judgeeye.sampling import SamplingSettings
from judgeeye.sampling.estimate import (
    budget_share,
    estimate_or_calibrate,
    estimate_run,
    expected_candidates,
    recorded_throughput,
)
from judgeeye.store import SamplingRun, session_scope


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from tiny_model import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


# ----------------------------------------------------------------------------- no model


def test_worker_environment_lets_idle_openmp_threads_sleep() -> None:
    from judgeeye.jobs import worker_environment

    assert worker_environment({"PATH": "/bin"})["OMP_WAIT_POLICY"] == "PASSIVE"
    # whoever set a wait policy of their own keeps it
    assert worker_environment({"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"
    assert "OMP_WAIT_POLICY" not in worker_environment({"GOMP_SPINCOUNT": "1000"})


def test_adaptive_candidates_follow_the_geometric_rounds() -> None:
    """One accepted candidate wanted, rounds of r: the item is still sampling before round j+1
    with probability (1-p)^(r*j), so E[rounds] is a geometric sum and E[candidates] = r * that."""
    k, r, p = 16, 4, 0.1
    candidates, rounds = expected_candidates(SamplingSettings(k=k, round_size=r), p)
    expected_rounds = sum((1 - p) ** (r * j) for j in range(k // r))
    assert rounds == pytest.approx(expected_rounds)
    assert candidates == pytest.approx(r * expected_rounds)
    assert expected_candidates(SamplingSettings(k=k, round_size=r), None) == (16.0, 4.0)
    assert expected_candidates(SamplingSettings(k=k, round_size=r), 1.0) == (4.0, 1.0)
    assert expected_candidates(SamplingSettings(k=k), 0.3) == (16.0, 1.0)


def test_budget_share_from_earlier_lengths() -> None:
    lengths = [(10, "stop"), (48, "length"), (30, "stop")]
    # within the old budget: what they used; a cut candidate is taken to use the whole new budget
    assert budget_share(lengths, 40) == pytest.approx((10 + 40 + 30) / 3 / 40)
    assert budget_share(lengths, 96) == pytest.approx((10 + 96 + 30) / 3 / 96)
    assert budget_share([], 96) == 1.0


def test_estimate_without_measurements_counts_tokens_only(store_url: str) -> None:
    project = ensure_sample_project()
    settings = SamplingSettings(k=4, max_tokens=48, limit=5)
    with session_scope() as session:
        est = estimate_run(session, project, EngineConfig(), settings)
    assert (est.items, est.candidates, est.max_candidates) == (5, 20, 20)
    assert est.tokens == est.max_tokens == 5 * 4 * 48
    assert est.prompt_tokens > 5 * 200  # from the prompts' characters: long HANNA prompts
    assert est.seconds is None
    assert est.text() == "about 960 tokens; time unknown until this engine has run here once"


def test_no_codebook_means_no_calibration(store_url: str, tmp_path: Path) -> None:
    """A project without a codebook has no prompt to measure: the estimate stays untimed and no
    model is loaded (this crashed on the missing codebook)."""
    path = tmp_path / "items.csv"
    path.write_text("id,text,r1\n" + "".join(f"i{i},Story {i}.,{i % 5 + 1}\n" for i in range(3)))
    mapping = ColumnMapping(id_column="id", text_columns={"story": "text"}, rating_columns={"r1": "r1"},
                            scale_min=1, scale_max=5, dimension="complexity", generation_type="story")
    with session_scope() as session:
        project = import_dataset(session, read_table(path, mapping), project_name="no codebook",
                                 split_rule=SplitRule(ratios=(1.0, 0.0, 0.0))).project_id
    est = estimate_or_calibrate(project, EngineConfig(model=str(tmp_path / "no-model")),
                                SamplingSettings(k=2, max_tokens=8))
    assert est.items == 3 and est.seconds is None


# ------------------------------------------------------------------------- a real engine


@pytest.mark.slow
def test_a_run_records_its_throughput_and_the_next_estimate_uses_it(store_url: str,
                                                                     tiny_dir: Path) -> None:
    from judgeeye.sampling.launch import launch_run
    from judgeeye.sampling.runner import execute_run

    project = ensure_sample_project()
    config = EngineConfig(model=str(tiny_dir), batch_size=8)
    settings = SamplingSettings(k=3, max_tokens=12, limit=4)
    run_id, _ = launch_run(project, config, settings, actor=Actor.system(), start=False)
    started = time.monotonic()
    assert execute_run(run_id) == "completed"
    took = time.monotonic() - started
    with session_scope() as session:
        found = recorded_throughput(session, config)
        assert found is not None and found.source == "runs" and found.runs == 1
        assert found.prefill_tok_s > 0 and found.decode_tok_s > 0 and found.startup_s >= 0
        assert recorded_throughput(session, EngineConfig(model=str(tiny_dir), batch_size=4)) is None
        est = estimate_run(session, project, config, settings)
    # the estimate is the recorded start-up plus every candidate's token budget at the recorded
    # decode rate (plus prefill and overhead). Its loop part is not timed against this run (whose
    # `took` includes the model load), only bounded by it, so that a unit slip still fails.
    assert est.seconds is not None and est.throughput.runs == 1
    loop = est.seconds - found.startup_s
    assert loop >= est.candidates * 12 / found.decode_tok_s > 0
    assert 0 < loop < took * 3
    assert 0 < est.tokens <= est.max_tokens == 4 * 3 * 12
    assert "on this machine" in est.text()


@pytest.mark.slow
def test_dry_run_calibrates_once_and_creates_no_run(store_url: str, tiny_dir: Path) -> None:
    from judgeeye.cli import app

    project = ensure_sample_project()
    args = ["sample", "--project", str(project), "--engine", f"hf:{tiny_dir}", "--k", "2",
            "--limit", "3", "--max-tokens", "8", "--batch-size", "4", "--dry-run"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "about 48 tokens" in first.output and "on this machine" in first.output
    assert "measured by a short calibration on this machine" in first.output
    assert "nothing was started (--dry-run)" in first.output
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(SamplingRun)) == 0
        found = recorded_throughput(session, EngineConfig(model=str(tiny_dir), batch_size=4))
    assert found is not None and found.source == "calibration"
    assert math.isfinite(found.decode_tok_s) and found.decode_tok_s > 0
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "short calibration" in again.output
    with session_scope() as session:  # the recorded calibration, not a second one
        assert recorded_throughput(session, EngineConfig(model=str(tiny_dir), batch_size=4)) == found


@pytest.mark.slow
def test_sample_page_shows_the_estimate_and_measures_the_machine(store_url: str) -> None:
    """Before Start: tokens at once; the time after "Measure" (a calibration of the embedded
    model in a separate process, recorded in the store)."""
    from apptest_login import app_as

    at = app_as("lead", page="judgeeye_app/views/sample.py", timeout=600)
    for key, value in (("s_k", 2), ("s_limit", 2), ("s_max_tokens", 16)):
        at.number_input(key=key).set_value(value).run()
    captions = [c.value for c in at.caption if c.value.startswith("Estimate:")]
    assert captions == ["Estimate: about 64 tokens; time unknown until this engine has run here "
                        "once."]
    at.button(key="s_measure").click().run()
    assert not at.exception and not at.warning
    captions = [c.value for c in at.caption if c.value.startswith("Estimate:")]
    assert len(captions) == 1 and captions[0].endswith(" on this machine."), captions
    assert not [b for b in at.button if b.key == "s_measure"]
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(SamplingRun)) == 0
        assert recorded_throughput(session, EngineConfig()).source == "calibration"
