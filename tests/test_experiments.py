"""Experiments (issue 17): the grid, the plan, the job, reuse, kill -9 and resume, the report.

* fast: presets, the grid, ``--set`` and the CLI command read back exactly, verdicts worded by
  the tests' p-values, the plan before launch;
* a black-box experiment through a real scripted server on loopback (sampling, refinement, two
  black-box raters under both codebooks) with the embedded model as the base rater: its report's
  numbers equal the Agreement page's data for the same runs, and a rerun with unchanged settings
  reuses every run (no prompt reaches the server, no run or job is made);
* the "quick" preset on the sample project in CI size with the real embedded model (sampling,
  SFT on traces, labels only, refinement, five rater runs), its job killed with SIGKILL at a
  seeded random moment, resumed: nothing lost, nothing doubled.
"""

from __future__ import annotations

import math
import os
import random
import re
import shlex
import signal
import time
from collections import Counter
from html import escape as html_escape
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from chat_server import chat_server
from judgeeye.auth import Actor
from judgeeye.cli import app
from judgeeye.evaluate import dashboard
from judgeeye.evaluate.compare import Comparison, compare_runs
from judgeeye.evaluate.summary import compute_summary
from judgeeye.experiments import ExperimentSettings, cli_command
from judgeeye.experiments.grid import comparisons, raters, stages
from judgeeye.experiments.launch import launch_experiment, stage_rows
from judgeeye.experiments.plan import plan_experiment
from judgeeye.experiments.report import build_report, rater_table, render_html, verdict
from judgeeye.experiments.settings import (
    apply_assignments,
    engine_from_text,
    engine_text,
)
from judgeeye.experiments.stages import sampling_settings, training_config
from judgeeye.jobs import run_job
from judgeeye.metrics import bootstrap_improvement, paired_t_test_squared_errors
from judgeeye.store import (
    Candidate,
    Codebook,
    Critique,
    Experiment,
    ExperimentStage,
    Job,
    Prediction,
    RaterRun,
    SamplingRun,
    TrainingRun,
    read_scope,
    session_scope,
)
from refine_data import REFINED_MARKER, make_project, scripted_reply
from training_data import make_tiny_project
from waiting import wait_for

runner = CliRunner()
SYSTEM = Actor.system()


# ------------------------------------------------------------------------------ fast: settings and grid


def test_presets_grid_and_comparisons() -> None:
    quick = ExperimentSettings.from_preset("quick")
    assert quick.preset == "quick" and quick.modes == ["sft", "labels_only"] and quick.protocol.limit
    assert quick.sampling["k"] >= 1 and quick.training["max_steps"] >= 1
    paper = ExperimentSettings.from_preset()  # the default preset
    assert paper.preset == "paper" and sampling_settings(paper).k == 16  # the paper's, from the library
    assert paper.protocol.temperature == 1.0 and paper.protocol.top_p == 0.95 and paper.protocol.readout == "parsed"
    # validation rates the way the test split is rated, with the read-out each rater is rated with
    tract = training_config(quick.model_copy(update={"modes": ["tract"]}), "tract", 1, 1)
    assert tract.protocol.max_tokens == quick.protocol.max_tokens and tract.protocol.readout == "expected"
    assert training_config(quick, "sft", 1, 1).protocol.readout == quick.protocol.readout == "argmax"
    s = ExperimentSettings.from_preset("quick", modes=["sft", "labels_only", "tract"], sampling={"k": 2},
                                       blackbox=["openai:m1@http://127.0.0.1:1/v1", "openai:m2@http://127.0.0.1:1/v1"])
    assert s.sampling["k"] == 2 and s.sampling["max_tokens"] == quick.sampling["max_tokens"]  # merged key by key
    assert [x.key for x in stages(s)] == [
        "sample", "train:sft", "train:labels_only", "train:tract", "refine", "rate:base", "rate:sft",
        "rate:labels_only", "rate:tract", "rate:bb1:original", "rate:bb1:refined", "rate:bb2:original",
        "rate:bb2:refined"]
    by_key = {x.key: x for x in stages(s)}
    assert by_key["rate:sft"].needs == ("train:sft",) and by_key["rate:bb2:refined"].needs == ("refine",)
    assert {r.key: r.readout for r in raters(s)}["tract"] == "expected"  # TRACT's own CoT-RAIL read-out
    assert {r.key: r.readout for r in raters(s)}["bb1:original"] == "parsed"  # servers give no probabilities
    pairs = [(c.baseline, c.candidate) for c in comparisons(s)]
    assert ("base", "sft") in pairs and ("base", "bb2:refined") in pairs and ("bb1:original", "bb1:refined") in pairs
    given = s.model_copy(update={"refined_codebook": 3})
    assert "refine" not in [x.key for x in stages(given)]  # a given refined version: nothing to refine
    with pytest.raises(ValueError, match="openai:MODEL@URL"):
        ExperimentSettings(blackbox=["hf:some/model"])
    with pytest.raises(ValueError, match="NAME of an environment variable") as refused:
        ExperimentSettings(blackbox=["openai:m@http://127.0.0.1:1/v1,api_key_env=sk-abc123def456ghi789jkl"])
    assert "sk-abc" not in str(refused.value)  # a key typed where its name belongs is not echoed


def test_engines_as_text_read_back_exactly() -> None:
    engine = engine_from_text('openai:m@http://127.0.0.1:9/v1,max_concurrency=2,api_key_env=MY_KEY,'
                              'extra_body={"top_k": 20, "stop": ["a,b"]}')
    assert engine.max_concurrency == 2 and engine.api_key_env == "MY_KEY"
    assert engine.extra_body == {"top_k": 20, "stop": ["a,b"]}
    assert engine_from_text(engine_text(engine)) == engine
    assert engine_text(engine_from_text("embedded")) == "embedded"
    local = engine_from_text("hf:org/model,batch_size=4", api_key_env="K")  # a kind without the field ignores it
    assert local.batch_size == 4 and local.kind == "transformers"
    assert engine_from_text("openai:m@http://h/v1", api_key_env="K").api_key_env == "K"
    with pytest.raises(ValueError, match="not field=value"):
        engine_from_text("openai:m@http://h/v1,oops")
    with pytest.raises(ValueError, match="colour"):
        engine_from_text("openai:m@http://h/v1,colour=red")


def test_set_assignments_and_their_errors() -> None:
    out = apply_assignments({}, ["sampling.k=8", "protocol.limit=20", "training.learning_rate=1e-4",
                                 "modes=sft,tract", "base_model=hf:Qwen/Qwen2.5-0.5B-Instruct", "refine.mode=rubric"])
    assert out == {"sampling": {"k": 8}, "protocol": {"limit": 20}, "training": {"learning_rate": 1e-4},
                   "modes": ["sft", "tract"], "base_model": "hf:Qwen/Qwen2.5-0.5B-Instruct",
                   "refine": {"mode": "rubric"}}
    for bad, message in (("sampling=3", "one field of sampling"), ("colour=red", "unknown setting"),
                         ("k8", "KEY=VALUE"), ("seed.x=1", "has no fields"), ("a.b.c=1", "section.field")):
        with pytest.raises(ValueError, match=message):
            apply_assignments({}, [bad])


def test_bad_stage_settings_are_refused_by_section_and_field(store_url: str, tmp_path: Path) -> None:
    project_id = make_tiny_project(tmp_path)
    result = runner.invoke(app, ["experiment", "run", "--project", str(project_id), "--preset", "quick",
                                 "--set", "sampling.k=0", "--dry-run"])
    assert result.exit_code == 2 and "sampling settings: k:" in result.output, result.output
    result = runner.invoke(app, ["experiment", "run", "--project", str(project_id), "--preset", "quick",
                                 "--set", "training.colour=1", "--dry-run"])
    assert result.exit_code == 2 and "training settings: colour" in result.output, result.output
    result = runner.invoke(app, ["experiment", "run", "--project", str(project_id), "--preset", "quick",
                                 "--set", "training.mode=tract", "--dry-run"])
    assert result.exit_code == 2 and "training.mode is set by the experiment (use modes)" in result.output
    result = runner.invoke(app, ["experiment", "run", "--project", str(project_id), "--preset", "quick",
                                 "--sampler", "openai:m@http://127.0.0.1:9/v1", "--dry-run"])
    assert result.exit_code == 2 and "sampling settings: forced cue" in result.output, result.output
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Experiment)) == 0


def test_the_cli_command_starts_exactly_these_settings(store_url: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The page shows cli_command(settings); run through the CLI it stores the same settings."""
    monkeypatch.setenv("JUDGEEYE_JOB_RUNNER", "workers")  # the job stays queued: nothing runs here
    project_id = make_tiny_project(tmp_path)
    cases = [
        ExperimentSettings.from_preset("quick"),
        ExperimentSettings.from_preset("quick", modes=["sft", "labels_only", "tract"], sampling={"k": 3, "limit": None},
                                       protocol={"readout": "expected", "max_tokens": 16, "limit": None},
                                       training={"learning_rate": 0.001, "val_limit": 1}),
        ExperimentSettings.from_preset(
            "paper", base_model="hf:org/small", refine={"n_rubric": 5, "mode": "rubric"}, modes=["sft"],
            blackbox=["openai:m@http://127.0.0.1:9/v1,api_key_env=MY_KEY,max_concurrency=2",
                      'openai:n@http://127.0.0.1:9/v1,extra_body={"top_k": 20}'],
            sampler="openai:big@http://127.0.0.1:9/v1,timeout=30", refine_engine="openai:r@http://127.0.0.1:9/v1",
            protocol={"top_p": 0.9, "seed": 3}),
        ExperimentSettings.from_preset("paper", modes=[]),
    ]
    for settings in cases:
        command = cli_command(str(project_id), settings)
        args = shlex.split(command)
        assert args[:3] == ["judgeeye", "experiment", "run"]
        result = runner.invoke(app, [*args[1:], "--background"])
        assert result.exit_code == 0, (command, result.output)
        with read_scope() as s:
            stored = s.scalars(select(Experiment).order_by(Experiment.id.desc())).first().settings
        expected = settings.model_copy(update={"codebook_version": 1}).model_dump(mode="json")
        assert stored == expected, command


def test_the_page_shows_the_grid_the_plan_and_the_same_command(store_url: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from apptest_login import app_as

    monkeypatch.setenv("JUDGEEYE_JOB_RUNNER", "workers")  # Start queues the job; nothing runs here
    project_id = make_tiny_project(tmp_path)
    at = app_as("lead", page="judgeeye_app/views/experiments.py")
    assert not at.exception, at.exception
    at.selectbox(key="x_preset").set_value("quick").run()
    assert at.number_input(key="x_protocol.limit").value == 5  # the preset filled the form
    at.multiselect(key="x_modes").set_value(["sft", "labels_only", "tract"]).run()
    at.number_input(key="x_sampling.k").set_value(2).run()
    assert not at.exception, at.exception
    settings = ExperimentSettings.from_preset("quick", modes=["sft", "labels_only", "tract"], sampling={"k": 2})
    command = cli_command(str(project_id), settings)
    assert command in [c.value for c in at.code] and "--mode tract --set sampling.k=2" in command
    assert any("8 of 8 stages to run in one experiment job (1 sampling, 3 training, 4 rater); 0 reused" in i.value
               for i in at.info), [i.value for i in at.info]
    grid = at.dataframe[0].value
    assert list(grid["rater"]) == ["Base model (embedded)", "SFT on traces", "SFT on labels only", "TRACT"]

    # a black-box rater from the shared engine picker (OpenAI-compatible servers only)
    at.number_input(key="x_n_blackbox").set_value(1).run()
    assert not at.exception and not at.code  # no command while the server is not given
    at.text_input(key="x_bb1_openai_base_url").set_value("http://127.0.0.1:9/v1").run()
    at.text_input(key="x_bb1_openai_model").set_value("judge").run()
    at.number_input(key="x_bb1_openai_max_concurrency").set_value(3).run()
    assert not at.exception, at.exception
    with_server = settings.model_copy(update={"blackbox": [engine_from_text(
        "openai:judge@http://127.0.0.1:9/v1,max_concurrency=3")]})
    assert cli_command(str(project_id), with_server) in [c.value for c in at.code]
    at.number_input(key="x_n_blackbox").set_value(0).run()

    at.button(key="x_start").click().run()
    assert not at.exception, at.exception
    with read_scope() as s:
        stored = s.scalars(select(Experiment)).one()
        assert stored.settings == settings.model_copy(update={"codebook_version": 1}).model_dump(mode="json")
        assert [r.key for r in stage_rows(s, stored.id)] == [x.key for x in stages(settings)]
    assert any(f"Experiment {stored.id} started" in m.value for m in at.success)
    at.switch_page("judgeeye_app/views/experiments.py").run()  # the Experiments tab: the panel follows the job
    assert not at.exception, at.exception
    assert any(f"Experiment {stored.id}" in p.text and "queued" in p.text for p in at.get("progress")), \
        [p.proto for p in at.get("progress")]
    assert at.button(key=f"x_{stored.id}_cancel").label == "Stop (resumable)"


# ------------------------------------------------------------------------------ fast: verdicts


def _comparison(gold: np.ndarray, a: np.ndarray, b: np.ndarray) -> Comparison:
    from judgeeye.evaluate.compare import _pair_metrics

    return Comparison(run_a=1, run_b=2, n_items=len(gold), metrics_a=_pair_metrics(gold, a),
                      metrics_b=_pair_metrics(gold, b), mse_test=paired_t_test_squared_errors(gold, a, b),
                      tau_test=bootstrap_improvement(gold, a, b, metric="tau", n_boot=500, seed=0),
                      icc3_test=bootstrap_improvement(gold, a, b, metric="icc3", n_boot=500, seed=0))


def test_verdicts_are_worded_by_the_significance() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(1, 6, 60).astype(float)
    noisy = np.clip(gold + rng.integers(-2, 3, 60), 1, 5).astype(float)
    better = _comparison(gold, noisy, gold.copy())
    text = verdict("Base model", "SFT on traces", better)
    assert text.startswith("SFT on traces beats Base model on τ (p ") and "ICC(3,1) (p " in text and "MSE (p " in text
    assert text.endswith("[n = 60].") and "no significant" not in text
    same = _comparison(gold, noisy, noisy.copy())
    text = verdict("Base model", "Labels only", same)
    assert text.startswith("Labels only: no significant improvement over Base model (τ +0.000, p = 1.000")
    mixed = _comparison(gold, noisy, np.where(np.arange(60) < 30, gold, noisy))
    text = verdict("A", "B", mixed)
    assert "B beats A on" in text or "no significant improvement" in text
    constant = _comparison(gold, np.full(60, 3.0), np.full(60, 3.0))
    assert "undefined (constant ratings or too few items)" in verdict("A", "B", constant)
    for c in (better, same):  # the words follow the p-values the tests computed
        p = c.tau_test.p_value
        assert (p < 0.05) == ("beats" in verdict("A", "B", c) and "τ (p" in verdict("A", "B", c))


# ------------------------------------------------------------------------------ a real black-box experiment


def _server(url: str, model: str) -> str:
    return f"openai:{model}@{url}"


def _equal(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _counts() -> dict[str, int]:
    with read_scope() as s:
        return {name: s.scalar(select(func.count()).select_from(model)) for name, model in (
            ("sampling runs", SamplingRun), ("training runs", TrainingRun), ("rater runs", RaterRun),
            ("candidates", Candidate), ("predictions", Prediction), ("codebooks", Codebook),
            ("critiques", Critique))} | {"jobs": _jobs_of_other_kinds()}


def _jobs_of_other_kinds() -> int:
    with read_scope() as s:
        return s.scalar(select(func.count()).select_from(Job).where(Job.kind != "experiment"))


def assert_report_matches_the_agreement_page(experiment_id: int) -> None:
    """Every number of the report equals what the Agreement page's data gives for the same runs,
    and what the library computes afresh from the predictions (no cache)."""
    with session_scope() as s:
        report = build_report(s, experiment_id)
        table = dashboard.run_table(s, report.project_id).set_index("run")
        done = [r for r in report.raters if r.summary is not None]
        assert done and len(done) == len(report.raters)
        for rater in done:
            row, summary = table.loc[rater.run_id], rater.summary
            fresh = compute_summary(s, rater.run_id)
            for field in ("tau", "tau_lo", "tau_hi", "icc3", "icc3_lo", "icc3_hi", "mse", "mse_lo", "mse_hi"):
                assert _equal(getattr(summary, field), float(row[field])), (rater.key, field)
                assert _equal(getattr(summary, field), getattr(fresh, field)), (rater.key, field)
            assert summary.n == row["n"] == fresh.n and summary.parse_failures == row["parse failures"]
        for c in report.comparisons:
            assert c.comparison is not None, c.verdict
            page = dashboard.comparison(s, c.baseline.run_id, c.candidate.run_id)
            fresh = compare_runs(s, c.baseline.run_id, c.candidate.run_id, n_boot=dashboard.N_BOOT)
            for mine, theirs in ((c.comparison, page), (c.comparison, fresh)):
                assert mine.n_items == theirs.n_items
                for m in ("tau", "icc3", "mse"):
                    assert _equal(mine.metrics_a[m], theirs.metrics_a[m]) and _equal(mine.metrics_b[m], theirs.metrics_b[m])
                for t in ("tau_test", "icc3_test", "mse_test"):
                    assert _equal(getattr(mine, t).p_value, getattr(theirs, t).p_value), t
        html = render_html(report)
        shown = rater_table(report)
    for c in report.comparisons:
        assert html_escape(c.verdict) in html
    for text in shown["τ [95% CI]"]:
        assert html_escape(text) in html


@pytest.mark.slow
def test_blackbox_experiment_report_equals_agreement_data_and_a_rerun_reuses_everything(
        store_url: str, tmp_path: Path) -> None:
    project_id = make_project(tmp_path, per_level=2, test_per_level=2)
    with chat_server(scripted_reply) as (url, prompts):
        settings = ExperimentSettings.from_preset(
            "quick", modes=[], sampler=_server(url, "sampler"),
            blackbox=[_server(url, "rater-a"), _server(url, "rater-b")], refine_engine=_server(url, "refiner"),
            sampling={"k": 1, "limit": None, "max_tokens": 32, "acceptance": "written"},
            refine={"mode": "instruction", "n_inst": 1},
            protocol={"limit": None, "max_tokens": 4})
        with session_scope() as s:
            plan = plan_experiment(s, project_id, settings)
        assert [p.action for p in plan.stages] == ["new"] * 7 and plan.tokens > 0 and plan.seconds > 0
        assert "7 of 7 stages to run" in plan.summary()
        experiment_id, job_id = launch_experiment(project_id, settings, actor=SYSTEM, start=False)
        assert run_job(job_id) == "succeeded"
        sent = len(prompts)
        with read_scope() as s:
            rows = {r.key: r for r in stage_rows(s, experiment_id)}
            refined = s.get(Codebook, rows["refine"].run_id)
            experiment = s.get(Experiment, experiment_id)
            assert experiment.status == "completed"
            assert all(r.status == "done" and not r.reused and r.seconds is not None for r in rows.values())
            assert refined.origin == "refined_instructions" and REFINED_MARKER in refined.instructions
            assert experiment.inputs["codebooks"]["refined"]["version"] == refined.version == 2
            assert experiment.inputs["codebooks"]["original"]["version"] == 1
            assert experiment.inputs["dataset"]["version"] and experiment.inputs["split_seed"] is not None
            assert rows["rate:bb1:original"].generated_tokens > 0 and rows["rate:bb1:original"].tokens > 0
        assert_report_matches_the_agreement_page(experiment_id)
        with session_scope() as s:
            report = build_report(s, experiment_id)
        verdicts = {(c.baseline.key, c.candidate.key): c.verdict for c in report.comparisons}
        # the scripted servers rate right with the refined codebook; rater-b errs on two levels under
        # the original (4 of 10 items), rater-a on one (2 items): significant for b only (t-test on MSE)
        assert "beats rater-b · original codebook on" in verdicts[("bb2:original", "bb2:refined")]
        assert "MSE (p = 0.0" in verdicts[("bb2:original", "bb2:refined")]
        assert "no significant improvement on" in verdicts[("bb1:original", "bb1:refined")] \
            or ": no significant improvement over" in verdicts[("bb1:original", "bb1:refined")]
        assert report.group is not None and len(report.group.per_rater) == 2
        assert Path(os.environ["JUDGEEYE_DATA_DIR"], "experiments", f"experiment-{experiment_id}", "report.html").is_file()

        # the same settings again: the plan reuses every run, and the job samples, refines and rates nothing
        with session_scope() as s:
            plan = plan_experiment(s, project_id, settings)
        assert [p.action for p in plan.stages] == ["reuse"] * 7 and not plan.to_run
        before = _counts()
        again, job2 = launch_experiment(project_id, settings, actor=SYSTEM, start=False)
        assert run_job(job2) == "succeeded"
        assert _counts() == before and len(prompts) == sent  # nothing reached the server
        with read_scope() as s:
            first = {r.key: r.run_id for r in stage_rows(s, experiment_id)}
            second = stage_rows(s, again)
            assert all(r.reused and r.status == "done" for r in second)
            assert {r.key: r.run_id for r in second} == first
            cost = {r.key: r.seconds for r in stage_rows(s, experiment_id)}
            assert all(r.seconds == cost[r.key] for r in second)  # a reused run reports what it cost
        assert_report_matches_the_agreement_page(again)
    result = runner.invoke(app, ["experiment", "show", str(again)])
    assert result.exit_code == 0 and "reused" in result.output and "beats" in result.output, result.output
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["experiment", "report", str(again), "-o", str(out)])
    assert result.exit_code == 0 and out.read_text().startswith("<!doctype html>")


# ------------------------------------------------------------------------------ the quick preset, killed


def sample_project_reply(prompt: str, body: dict) -> tuple[str, str]:
    """A black-box rater and refiner for the sample project (HANNA stories)."""
    if "extract a concrete and concise step-by-step instruction" in prompt:
        return scripted_reply(prompt, body)
    return f"Looking at the plot and the characters. <rating>{1 + len(prompt) % 5}</rating>", "stop"


#: the quick preset in CI size: a handful of items, tiny budgets (the embedded model's readout
#: after its trace rates every candidate, so some are accepted even from 8-token traces)
CI_SIZE = ["--set", "sampling.k=8", "--set", "sampling.max_tokens=8", "--set", "sampling.limit=3",
           "--set", "training.max_steps=1", "--set", "training.batch_size=1", "--set", "training.eval_steps=1",
           "--set", "training.val_limit=1",
           "--set", "protocol.limit=3", "--set", "protocol.max_tokens=4"]
SEED = 17  # the seeded "random moment" of the kill


def _work_done(experiment_id: int) -> int:
    """Units the experiment has written: candidates, predictions, training metrics, stage ends."""
    with read_scope() as s:
        n = s.scalar(select(func.count()).select_from(Candidate)) + s.scalar(select(func.count()).select_from(Prediction))
        n += s.scalar(select(func.count()).select_from(ExperimentStage).where(
            ExperimentStage.experiment_id == experiment_id, ExperimentStage.status == "done"))
        from judgeeye.store import TrainingMetric

        return n + s.scalar(select(func.count()).select_from(TrainingMetric))


def assert_nothing_lost_or_doubled(experiment_id: int) -> None:
    with read_scope() as s:
        experiment = s.get(Experiment, experiment_id)
        settings = ExperimentSettings.model_validate(experiment.settings)
        rows = {r.key: r for r in stage_rows(s, experiment_id)}
        assert experiment.status == "completed" and all(r.status == "done" for r in rows.values())
        # one run per stage, and no run that no stage knows (a run created twice would be one)
        for kind, model in (("sample", SamplingRun), ("train", TrainingRun), ("rate", RaterRun)):
            ids = sorted(r.run_id for r in rows.values() if r.kind == kind)
            assert ids == sorted(s.scalars(select(model.id)).all()), kind
        assert [v.origin for v in s.scalars(select(Codebook).order_by(Codebook.id))] == ["original", "refined_instructions"]
        sample = rows["sample"].run_id
        per = Counter((c.item_id, c.sample_index) for c in s.scalars(select(Candidate).where(Candidate.run_id == sample)))
        assert set(per.values()) == {1}
        k, limit = settings.sampling["k"], settings.sampling["limit"]
        assert Counter(i for i, _ in per) == Counter({i: k for i, _ in per}) and len({i for i, _ in per}) == limit
        for row in rows.values():
            if row.kind == "rate":
                items = s.scalars(select(Prediction.item_id).where(Prediction.rater_run_id == row.run_id)).all()
                assert len(items) == len(set(items)) == settings.protocol.limit, row.key
        for row in rows.values():
            if row.kind == "train":
                run = s.get(TrainingRun, row.run_id)
                assert run.status == "completed" and Path(run.adapter_path, "adapter_config.json").is_file()


@pytest.mark.slow
def test_quick_preset_on_the_sample_project_killed_at_random_resumed_and_rerun(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from judgeeye.projects import ensure_sample_project

    monkeypatch.setenv("JUDGEEYE_JOB_STALE_SECONDS", "2")
    project_id = ensure_sample_project()
    with chat_server(sample_project_reply) as (url, _prompts):
        args = ["experiment", "run", "--project", str(project_id), "--preset", "quick",
                "--blackbox", _server(url, "bb"), *CI_SIZE]
        dry = runner.invoke(app, [*args, "--dry-run"])
        assert dry.exit_code == 0 and "9 of 9 stages to run" in dry.output and "nothing started" in dry.output
        started = runner.invoke(app, [*args, "--background"])
        assert started.exit_code == 0, started.output
        experiment_id = int(re.search(r"experiment (\d+): job (\d+)", started.output).group(1))
        with read_scope() as s:
            job_id = s.get(Experiment, experiment_id).job_id
        target = random.Random(SEED).randint(1, 30)  # the moment: after this many units of work
        wait_for(lambda: _work_done(experiment_id) >= target, f"{target} units of work", timeout=3600, every=0.1)
        with read_scope() as s:
            job = s.get(Job, job_id)
        assert job.status == "running", (job.status, job.error)
        os.kill(job.pid, signal.SIGKILL)
        try:
            os.waitpid(job.pid, 0)
        except ChildProcessError:
            pass
        time.sleep(2.5)  # the heartbeat goes stale
        listed = runner.invoke(app, ["experiment", "list"])
        assert re.search(rf"{experiment_id}\s.*failed", listed.output), listed.output
        resumed = runner.invoke(app, ["experiment", "resume", str(experiment_id)])
        assert resumed.exit_code == 0, resumed.output
        assert_nothing_lost_or_doubled(experiment_id)
        assert_report_matches_the_agreement_page(experiment_id)

        before = _counts()
        rerun = runner.invoke(app, args)
        assert rerun.exit_code == 0, rerun.output
        assert "0 of 9 stages to run" in rerun.output and _counts() == before
    with read_scope() as s:
        latest = s.scalars(select(Experiment).order_by(Experiment.id.desc())).first()
        assert latest.id != experiment_id and all(r.reused for r in stage_rows(s, latest.id))


def test_plan_times_read_in_hours_once_they_are_long() -> None:
    """The plan's summary said "about 6357 min" for the paper preset on the sample project, while
    its stage rows said "about 43 h 56 min": both now read the same way."""
    from judgeeye.display import duration

    assert duration(381_420) == "105 h 57 min" and duration(185) == "3 min 05 s"
    assert duration(45) == "45 s" and duration(None) == "unknown"
