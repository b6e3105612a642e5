"""Planning training from the data: the numbers, the recipes, refusals, `judgeeye train --dry-run`.

No model is loaded here: plans come from row counts in the store, so these tests are fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from judgeeye.cli import app
from judgeeye.store import Candidate, Item, TrainingRun, session_scope
from judgeeye.training import TrainingConfig
from judgeeye.training.plan import PlanRefused, TrainingPlan, plan_stage
from training_data import TRACES, make_tiny_project

runner = CliRunner()

#: HANNA complexity in the paper's setting: 548 training and 78 validation items
HANNA_TRAIN, HANNA_VAL = 548, 78


def test_the_old_fixed_schedule_never_leaves_warmup_and_validates_once() -> None:
    """The settings the plan replaces: 3 epochs of batch 128, warm-up 100, validation every 25."""
    old = plan_stage(TrainingConfig(epochs=3, warmup_steps=100, eval_steps=25, patience=100), HANNA_TRAIN,
                     HANNA_VAL, world=1)
    assert (old.steps_per_epoch, old.optimizer_steps, old.warmup_steps, old.evaluations) == (5, 15, 100, 1)
    problems = old.problems()
    assert len(problems) == 2 and "warm-up (100 steps) is longer than the run (15 steps)" in problems[0]
    assert "1 validation (15 steps with a validation every 25)" in problems[1]


def test_the_default_plan_scales_the_papers_values_to_the_data() -> None:
    plan = plan_stage(TrainingConfig(), HANNA_TRAIN, HANNA_VAL, world=1)
    # ⌈⌈548/8⌉/16⌉ = 5 steps per epoch, 10 epochs at most, warm-up 10%, ~10 validations, patience 3 of them
    assert (plan.effective_batch, plan.steps_per_epoch, plan.optimizer_steps) == (128, 5, 50)
    assert (plan.warmup_steps, plan.eval_steps, plan.evaluations, plan.patience) == (5, 5, 10, 15)
    assert plan.problems() == [] and plan.warnings() == []
    two_gpus = plan_stage(TrainingConfig(), HANNA_TRAIN, HANNA_VAL, world=2)  # accelerate launch on 2 devices
    assert (two_gpus.effective_batch, two_gpus.steps_per_epoch) == (256, 3)
    odd = plan_stage(TrainingConfig(max_steps=23), HANNA_TRAIN, HANNA_VAL, world=1)
    assert (odd.eval_steps, odd.evaluations, odd.warmup_steps) == (2, 12, 3)  # 11 + the last step


def test_the_tract_preset_is_the_papers_recipe() -> None:
    """Chiang et al., Appendix A: LoRA r 8 on all linear layers, lr 1e-5, cosine, 2 epochs, effective
    batch 8, warm-up ratio 1.0; inference T 1.0, top-p 0.9, 1,024 tokens; CoT-RAIL read-out."""
    cfg = TrainingConfig.from_preset("tract")
    assert (cfg.mode, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules) == ("tract", 8, 16, 0.0, "all-linear")
    assert (cfg.learning_rate, cfg.lr_scheduler, cfg.epochs, cfg.effective_batch, cfg.warmup_ratio) == (
        1e-5, "cosine", 2.0, 8, 1.0)
    assert (cfg.protocol.temperature, cfg.protocol.top_p, cfg.protocol.max_tokens, cfg.readout) == (
        1.0, 0.9, 1024, "expected")
    assert cfg.lambda_raft == 1.0
    plan = plan_stage(cfg, HANNA_TRAIN, HANNA_VAL, world=1)
    assert (plan.steps_per_epoch, plan.optimizer_steps, plan.warmup_steps, plan.evaluations) == (69, 138, 138, 11)
    assert plan.problems() == []  # as long as the run, not longer: allowed, but said
    assert any("warm-up covers the whole run" in w for w in plan.warnings())
    overridden = TrainingConfig.from_preset("tract", learning_rate=2e-5, protocol={"max_tokens": 64})
    assert overridden.learning_rate == 2e-5 and overridden.protocol.top_p == 0.9 and overridden.protocol.max_tokens == 64
    paper = TrainingConfig.from_preset("paper")
    assert (paper.lora_r, paper.lora_alpha, paper.learning_rate, paper.weight_decay, paper.effective_batch) == (
        16, 32, 5e-5, 0.01, 128)
    assert (paper.protocol.temperature, paper.protocol.top_p) == (1.0, 0.95)


def test_a_refused_plan_says_why_unless_forced() -> None:
    short = TrainingPlan("sft", "paper", [plan_stage(TrainingConfig(max_steps=2), 40, 5, world=1)])
    with pytest.raises(PlanRefused, match="2 validations .* at least 3.*--force"):
        short.check(force=False)
    short.check(force=True)
    no_val = TrainingPlan("sft", "paper", [plan_stage(TrainingConfig(), 40, 0, world=1)])
    assert "the validation split has no gold items" in no_val.problems()[0]


def test_configs_stored_before_the_one_protocol_still_load() -> None:
    old = {"mode": "sft", "warmup_steps": 100, "eval_steps": 25, "patience": 100, "epochs": 3.0,
           "val_max_tokens": 512, "val_readout": "auto", "test_max_tokens": 1024, "test_readout": "parsed",
           "test_temperature": 1.0, "test_top_p": 0.95}
    cfg = TrainingConfig.model_validate(old)
    assert cfg.protocol.max_tokens == 1024 and cfg.readout == "parsed" and cfg.warmup_steps == 100


# ------------------------------------------------------------------------------ the CLI and the store


@pytest.fixture
def tiny_project(store_url: str, tmp_path: Path) -> int:
    return make_tiny_project(tmp_path)


def _dry_run(*args: str) -> tuple[int, dict, str]:
    result = runner.invoke(app, ["train", "--dry-run", *args])
    body = result.stdout[result.stdout.index("{"):] if "{" in result.stdout else "{}"
    return result.exit_code, json.loads(body), result.output


def test_dry_run_prints_the_plan_and_starts_nothing(tiny_project: int) -> None:
    code, plan, output = _dry_run("--project", "tiny")
    assert code == 0, output
    assert (plan["rows"], plan["optimizer_steps"], plan["warmup_steps"], plan["evaluations"]) == (8, 10, 1, 10)
    assert plan["validation_items"] == 3 and not plan["refused"]
    code, plan, output = _dry_run("--project", "tiny", "--mode", "tract", "--batch-size", "2", "--grad-accum", "1")
    assert code == 0, output
    assert [s["stage"] for s in plan["stages"]] == ["stage1", "stage2"] and plan["stages"][1]["rows"] == 8
    code, plan, output = _dry_run("--project", "tiny", "--max-steps", "2")
    assert code == 2 and plan["refused"] and "error: the training plan is refused" in output
    assert _dry_run("--project", "tiny", "--max-steps", "2", "--force")[0] == 0
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(TrainingRun)) == 0


def test_a_refused_plan_starts_no_run(tiny_project: int) -> None:
    result = runner.invoke(app, ["train", "--project", "tiny", "--max-steps", "2", "--no-test-eval"])
    assert result.exit_code == 2 and "the training plan is refused" in result.output and "Traceback" not in result.output
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(TrainingRun)) == 0


def test_dry_run_on_the_sample_project(store_url: str) -> None:
    """Before sampling, the sample project has nothing to train on and says so; with a trace per
    training item the default plan validates at least 3 times and warms up for less than its steps."""
    from judgeeye.engines import EngineConfig
    from judgeeye.projects import ensure_sample_project
    from judgeeye.sampling import SamplingSettings
    from judgeeye.sampling.runs import create_run

    project_id = ensure_sample_project()
    code, plan, output = _dry_run("--project", str(project_id))
    assert code == 2 and plan["rows"] == 0 and "no traces" in output
    with session_scope() as s:
        items = s.scalars(select(Item).where(Item.project_id == project_id, Item.split == "train",
                                             Item.gold_status == "gold")).all()
        run = create_run(s, project_id, EngineConfig(), SamplingSettings(k=1))
        for item in items:
            g = int(item.gold)
            s.add(Candidate(run_id=run.id, item_id=item.id, target="gold", target_label=item.gold, sample_index=0,
                            reasoning="", answer=f"{TRACES[g]}\n\n<rating>{g}</rating>", predicted=item.gold,
                            parse_ok=True, accepted=True, completion_tokens=12, finish_reason="stop"))
        run.status = "completed"
        n_train = len(items)
    code, plan, output = _dry_run("--project", str(project_id))
    assert code == 0, output
    assert plan["rows"] == n_train and plan["evaluations"] >= 3 and plan["warmup_steps"] < plan["optimizer_steps"]
