"""Fine-tuning raters: data layout, the CoT-RAFT loss against a hand computation, and real
training runs (SFT, TRACT) with the embedded model through the CLI, stop and reattach.

Everything is kept tiny so the file stays well under three minutes on a slow 2-core CPU: a
project of short items with a short codebook (prompts of ~150 tokens instead of the sample
project's 600–2500), short traces, a few optimiser steps, and few validation/test items.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from judgeeye.auth import Actor
from judgeeye.cli import app
from judgeeye.store import Job, RaterRun, TrainingRun, session_scope
from judgeeye.training.data import ReasonRow, build_examples
from training_data import SPEC, TRACES, make_tiny_project
from waiting import wait_for

pytestmark = pytest.mark.slow
runner = CliRunner()

def _tokenizer():  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    from judgeeye.training.trainer import base_location

    return AutoTokenizer.from_pretrained(base_location("embedded"))


# ------------------------------------------------------------------------------ data layout


def test_examples_lay_out_prompt_trace_and_rating_and_leave_out_long_rows() -> None:
    from judgeeye.engines.transformers_engine import encode_text, render_chat
    from judgeeye.codebook import render_prompt

    tok = _tokenizer()
    rows = [ReasonRow(1, "a", {"text": "A cat."}, 4.0, "train", "Short and plain."),
            ReasonRow(2, "b", {"text": "A cat. " * 200}, 2.0, "train", "Long."),
            ReasonRow(3, "c", {"text": "A dog."}, 2.5, "train", "Median of two."),
            ReasonRow(4, "d", {"text": "A dog."}, 3.0, "train", "  ")]
    report = build_examples(rows, tok, SPEC, mode="sft", max_length=300)
    assert [e.item_id for e in report.examples] == [1]
    assert {(e.item_id, e.reason) for e in report.excluded} == {
        (2, "too_long"), (3, "gold_not_a_level"), (4, "empty_trace")}
    assert report.too_long[0].length > 300
    ex = report.examples[0]
    prompt = encode_text(tok, render_chat(tok, render_prompt(SPEC, {"text": "A cat."})))
    assert ex.input_ids[:ex.prompt_len] == prompt and ex.prompt_len == len(prompt)
    assert ex.labels[:ex.prompt_len] == [-100] * ex.prompt_len and ex.labels[ex.prompt_len:] == ex.input_ids[ex.prompt_len:]
    assert tok.decode(ex.input_ids[ex.prompt_len:]) == "Short and plain.\n\n<rating>4</rating><|im_end|>\n"
    assert tok.decode(ex.input_ids[ex.prompt_len:ex.rating_pos]).endswith("<rating>")
    assert tok.decode([ex.input_ids[ex.rating_pos]]) == "4"
    labels_only = build_examples(rows[:1], tok, SPEC, mode="labels_only", max_length=300).examples[0]
    assert tok.decode(labels_only.input_ids[labels_only.prompt_len:]) == "<rating>4</rating><|im_end|>\n"


def test_reason_rows_from_the_review_export_and_from_candidates_agree(tiny_project: int) -> None:
    from judgeeye.training.data import TrainingDataError, load_reason_rows

    with session_scope() as s:
        by_candidates, used = load_reason_rows(s, tiny_project, source="candidates")
        assert used == "candidates"
        auto, used_auto = load_reason_rows(s, tiny_project, source="auto")
        with pytest.raises(TrainingDataError, match="no traces for the test split"):
            load_reason_rows(s, tiny_project, source="candidates", splits=["test"])
    assert len(by_candidates) == 8 and {r.split for r in by_candidates} == {"train"}
    for row in by_candidates:  # the answer without its final rating is the trace
        assert row.trace and "<rating>" not in row.trace and row.gold == int(row.gold)
        assert row.provenance["provenance"] == "first-accepted" and row.codebook_version == 1
    assert used_auto == "review"  # unreviewed items: the export falls back to the first accepted trace
    assert [(r.item_id, r.trace, r.gold) for r in auto] == [(r.item_id, r.trace, r.gold) for r in by_candidates]
    assert all(r.fields == {"story": r.fields["story"]} for r in auto)


# ------------------------------------------------------------------------------ CoT-RAFT loss


def _batch(tok, *, packed: bool = False):  # type: ignore[no-untyped-def]
    """Two examples through the dataset and collator the trainer uses: the rating mask rides along."""
    from trl import pack_dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from judgeeye.training.data import to_dataset
    from judgeeye.training.tract import RatingCollator

    rows = [ReasonRow(1, "a", {"text": "A cat."}, 4.0, "train", "Short and plain."),
            ReasonRow(2, "b", {"text": "A long story about dogs and rain."}, 2.0, "train", "It rambles, then stops.")]
    examples = build_examples(rows, tok, SPEC, mode="sft", max_length=512).examples
    dataset = to_dataset(examples, rating_mask=True)
    if packed:
        dataset = pack_dataset(dataset, 512, "bfd")
    collator = RatingCollator(DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=packed))
    return examples, collator([dataset[i] for i in range(len(dataset))])


def _hand_loss(logits, examples, level_ids, lam):  # type: ignore[no-untyped-def]
    """CE over completion tokens + λ·mean((Σ p(y)·y − y*)²), one token at a time, with p the raw
    probability of each level's token (the softmax over the whole vocabulary, not renormalised)."""
    import torch

    nll, count, sq = 0.0, 0, []
    for b, e in enumerate(examples):
        for t in range(e.prompt_len, len(e.input_ids)):
            logp = torch.log_softmax(logits[b, t - 1].double(), dim=-1)
            nll -= float(logp[e.input_ids[t]])
            count += 1
        p = torch.softmax(logits[b, e.rating_pos - 1].double(), dim=-1)[level_ids]
        expected = float(sum(p[i] * (i + 1) for i in range(5)))
        sq.append((expected - e.gold) ** 2)
    return nll / count + lam * sum(sq) / len(sq), sq


@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_cot_raft_loss_matches_a_hand_computation(lam: float) -> None:
    import torch
    from trl.trainer.utils import add_fused_lm_head

    from judgeeye.training.tract import HiddenCapture, RatingTokens, cot_raft_loss, fused_cot_raft_loss, rating_targets
    from training_data import tiny_llama

    tok = _tokenizer()
    rating = RatingTokens.from_tokenizer(tok, [1, 2, 3, 4, 5], "<rating>")
    examples, inputs = _batch(tok)
    rows, cols, gold = rating_targets(inputs["rating_mask"], inputs["labels"], rating)
    assert rows.tolist() == [0, 1] and cols.tolist() == [e.rating_pos for e in examples]
    assert gold.tolist() == [4.0, 2.0]
    assert [int(inputs["input_ids"][b, c]) for b, c in zip(rows, cols)] == [rating.level_ids[3], rating.level_ids[1]]
    _, packed = _batch(tok, packed=True)  # padding-free: one row, the positions shift with the tokens
    prows, pcols, pgold = rating_targets(packed["rating_mask"], packed["labels"], rating)
    assert prows.tolist() == [0, 0] and sorted(pgold.tolist()) == [2.0, 4.0]

    model = tiny_llama(len(tok))
    with torch.no_grad():
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    expected, sq = _hand_loss(logits, examples, list(rating.level_ids), lam)
    assert min(sq) > 0.05, "the test needs a non-trivial regression term"
    renormalised = []  # what a read-out renormalised over the levels would give instead
    for b, e in enumerate(examples):
        p = torch.softmax(logits[b, e.rating_pos - 1, list(rating.level_ids)].double(), dim=-1)
        renormalised.append((float(p @ torch.arange(1, 6, dtype=torch.double)) - e.gold) ** 2)
    assert abs(sum(renormalised) - sum(sq)) > 0.1, "raw and renormalised probabilities must differ here"

    loss, parts = cot_raft_loss(logits, inputs["labels"], inputs["rating_mask"], rating, lam)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert parts["raft"] == pytest.approx(sum(sq) / 2, rel=1e-5)

    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    capture = HiddenCapture(model)
    with torch.no_grad():
        fused, _, fparts = fused_cot_raft_loss(model, dict(inputs), capture, rating, lam)
    assert float(fused) == pytest.approx(expected, rel=1e-4)
    assert fparts["raft"] == pytest.approx(sum(sq) / 2, rel=1e-4)


def test_a_tract_batch_without_a_rating_position_is_an_error() -> None:
    import torch

    from judgeeye.training.tract import MissingRatingError, RatingTokens, cot_raft_loss

    tok = _tokenizer()
    rating = RatingTokens.from_tokenizer(tok, [1, 2, 3, 4, 5], "<rating>")
    _, inputs = _batch(tok)
    logits = torch.zeros((*inputs["input_ids"].shape, len(tok)))
    with pytest.raises(MissingRatingError, match="no rating position"):
        cot_raft_loss(logits, inputs["labels"], torch.zeros_like(inputs["rating_mask"]), rating)
    shifted = torch.roll(inputs["rating_mask"], 1, dims=1)  # out of step with the tokens
    with pytest.raises(MissingRatingError, match="not rating levels"):
        cot_raft_loss(logits, inputs["labels"], shifted, rating)


# ------------------------------------------------------------------------------ training runs


@pytest.fixture
def tiny_project(store_url: str, tmp_path: Path) -> int:
    return make_tiny_project(tmp_path)


#: a few steps on tiny batches; the expected-score read-out rates every item (an undertrained
#: model rarely writes a parsable rating in a handful of tokens)
FAST = ["--max-steps", "2", "--eval-steps", "2", "--batch-size", "2", "--grad-accum", "1", "--max-length", "192",
        "--warmup-steps", "0", "--lr", "1e-3", "--max-tokens", "4", "--readout", "expected", "--test-limit", "3",
        "--force"]  # 2 steps validate once: a plan refused unless forced


def _metrics(run_id: int) -> dict[str, list[tuple[int, float]]]:
    from judgeeye.training.launch import metrics_of

    with session_scope() as s:
        return metrics_of(s, run_id)


def test_train_sft_writes_adapter_metrics_and_test_comparison(tiny_project: int) -> None:
    result = runner.invoke(app, ["train", "--project", "tiny", *FAST])
    assert result.exit_code == 0, result.output
    with session_scope() as s:
        run = s.scalars(select(TrainingRun)).one()
        raters = s.scalars(select(RaterRun).order_by(RaterRun.id)).all()
    assert run.status == "completed" and run.best_step in (1, 2) and run.best_metric is not None
    adapter = Path(run.adapter_path)
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    meta = json.loads((adapter / "judgeeye.json").read_text())
    assert meta["mode"] == "sft" and meta["base_model"] == "embedded" and meta["n_train_rows"] == 8
    assert meta["data_version"] and meta["best_step"] == run.best_step and "test_tau" in meta["test"]
    metrics = _metrics(run.id)
    assert [s for s, _ in metrics["loss"]] == [1, 2] and all(v > 0 for _, v in metrics["loss"])
    assert [s for s, _ in metrics["lr"]] == [1, 2] and metrics["lr"][0][1] == pytest.approx(1e-3)
    assert [s for s, _ in metrics["val_tau"]] == [2] and run.best_metric == metrics["val_tau"][0][1]
    assert -1 <= run.best_metric <= 1 and run.best_step == 2
    assert metrics["val_n"] == [(2, 3.0)] and metrics["val_parse_failures"][0][0] == 2  # n beside every τ
    test = {name: values[-1][1] for name, values in metrics.items() if name.startswith(("test_", "base_", "p_"))}
    assert test["test_items"] == 3 and test["test_n"] == 3 and test["base_n"] == 3
    assert 0 <= test["test_parse_failures"] <= 3 and 0 <= test["base_parse_failures"] <= 3
    for name in ("test_tau", "base_tau", "test_icc3", "base_icc3", "test_mse", "base_mse", "p_tau", "p_icc3", "p_mse"):
        assert math.isfinite(test[name]), name
    assert 0 <= test["p_tau"] <= 1 and 0 <= test["p_mse"] <= 1 and test["test_mse"] >= 0
    # the adapter and the base model each rated the same 3 test items, through judgeeye.evaluate
    assert len(raters) == 2 and raters[1].rater["engine"]["adapter"] == str(adapter)
    assert raters[0].rater["engine"]["adapter"] is None and all(r.status == "completed" for r in raters)
    assert "test (3 items), adapter vs base" in result.output and "(n 3, " in result.output
    assert "plan (main): 8 rows, 2 optimizer steps" in result.output

    import torch

    from judgeeye.engines import EngineConfig, make_engine

    merged = adapter.parent / "merged"
    exported = runner.invoke(app, ["train", "export", str(run.id), "-o", str(merged), "--merge"])
    assert exported.exit_code == 0, exported.output
    with make_engine(EngineConfig(adapter=str(adapter), batch_size=2)) as engine:  # usable as a rater at once
        ids = torch.tensor([engine.tokenizer("A cat sat on the mat.")["input_ids"]])
        with torch.no_grad():
            with_adapter = engine.model(ids).logits
    with make_engine(EngineConfig(model=str(merged), batch_size=2)) as engine:  # a plain model folder
        with torch.no_grad():
            assert torch.allclose(engine.model(ids).logits, with_adapter, atol=1e-4)
    listing = runner.invoke(app, ["train", "list"])
    assert listing.exit_code == 0 and "completed" in listing.output


def test_train_tract_two_stages_with_cot_raft(tiny_project: int) -> None:
    result = runner.invoke(app, ["train", "--project", "tiny", "--mode", "tract", "--train-limit", "4",
                                 "--self-trace-max-tokens", "8", "--val-limit", "2", *FAST])
    assert result.exit_code == 0, result.output
    with session_scope() as s:
        run = s.scalars(select(TrainingRun)).one()
    assert run.status == "completed" and run.best_step == 2
    metrics = _metrics(run.id)
    for name in ("stage1/loss", "stage1/ce", "stage1/raft_mse", "stage1/val_tau", "loss", "ce", "raft_mse", "val_tau"):
        assert name in metrics, name
    # CoT-RAFT: the logged loss is CE + λ·squared error (λ = 1; no accumulation)
    for (step, loss), (_, ce), (_, raft) in zip(metrics["loss"], metrics["ce"], metrics["raft_mse"]):
        assert loss == pytest.approx(ce + raft, rel=1e-3)
    folder = Path(run.adapter_path).parent
    traces = [json.loads(line) for line in (folder / "self_traces.jsonl").read_text().splitlines()]
    assert len(traces) == 4 and len({t["item_id"] for t in traces}) == 4
    state = json.loads((folder / "state.json").read_text())
    assert state["stages"]["stage1"]["done"] and state["stages"]["stage2"]["done"]
    assert state["adapter_from"] == state["stages"]["stage2"]["adapter"]
    meta = json.loads((Path(run.adapter_path) / "judgeeye.json").read_text())
    assert meta["mode"] == "tract" and meta["config"]["lambda_raft"] == 1.0
    assert "test_tau" in meta["test"] and "base_mse" in metrics and "p_mse" in metrics




def test_tract_on_a_sentencepiece_tokenizer_logs_a_nonzero_raft_term(tiny_project: int, tmp_path: Path) -> None:
    """Llama-2/Mistral-style tokenizers tokenize the answer cue differently on its own than after a
    trace, so a search of the labels for the cue's tokens finds no rating and CoT-RAFT silently
    becomes SFT. The rating position recorded with the data does not depend on that."""
    from transformers import AutoTokenizer

    from training_data import save_sentencepiece_model

    base = save_sentencepiece_model(tmp_path / "sp-llama")
    tok = AutoTokenizer.from_pretrained(base)
    cue_alone = tok("<rating>", add_special_tokens=False)["input_ids"]
    ex = build_examples([ReasonRow(1, "a", {"story": "A cat sat."}, 1.0, "train", TRACES[1])], tok, SPEC,
                        max_length=2048).examples[0]
    completion = ex.labels[ex.prompt_len:]
    assert not any(completion[i:i + len(cue_alone)] == cue_alone for i in range(len(completion))), \
        "this tokenizer must tokenize the cue in context differently (the case under test)"
    assert tok.convert_ids_to_tokens(ex.input_ids[ex.rating_pos - 1:ex.rating_pos + 1]) == ["<rating>", "1"]

    result = runner.invoke(app, ["train", "--project", "tiny", "--base", base, "--mode", "tract",
                                 "--train-limit", "4", "--self-trace-max-tokens", "8", "--val-limit", "2", *FAST])
    assert result.exit_code == 0, result.output
    with session_scope() as s:
        run = s.scalars(select(TrainingRun)).one()
    metrics = _metrics(run.id)
    for stage in ("stage1/", ""):
        raft = [v for _, v in metrics[f"{stage}raft_mse"]]
        assert len(raft) == 2 and all(v > 0.01 for v in raft), (stage, raft)
        for (_, loss), (_, ce), (_, r) in zip(metrics[f"{stage}loss"], metrics[f"{stage}ce"], metrics[f"{stage}raft_mse"]):
            assert loss == pytest.approx(ce + r, rel=1e-3)


def test_resume_needs_a_checkpoint(tiny_project: int) -> None:
    from judgeeye.training import TrainingConfig
    from judgeeye.training.launch import NothingToResume, launch_training, resume_point, resume_training

    run_id, _ = launch_training(tiny_project, TrainingConfig(max_steps=1, force=True), actor=Actor.system(),
                                start=False)
    assert resume_point(run_id) is None
    with pytest.raises(NothingToResume, match="stopped before its first checkpoint: there is nothing to resume"):
        resume_training(run_id, actor=Actor.system(), start=False)
    result = runner.invoke(app, ["train", "--resume", str(run_id)])
    assert result.exit_code == 2 and "nothing to resume" in result.output and "Traceback" not in result.output


def test_stop_saves_a_checkpoint_and_a_resumed_job_continues_from_it(tiny_project: int) -> None:
    from judgeeye.jobs import JobContext, request_cancel
    from judgeeye.training.launch import resume_training, run_dir
    from judgeeye.training.runner import execute_training
    from judgeeye.training.trainer import latest_checkpoint

    result = runner.invoke(app, ["train", "--project", "tiny", "--max-steps", "40", "--eval-steps", "100",
                                 "--batch-size", "2", "--grad-accum", "1", "--max-length", "192",
                                 "--no-test-eval", "--force", "--background"])
    assert result.exit_code == 0, result.output
    with session_scope() as s:
        run = s.scalars(select(TrainingRun)).one()
        job_id = run.job_id
    wait_for(lambda: "loss" in _metrics(run.id), timeout=600)  # the worker is training
    listing = runner.invoke(app, ["jobs", "list"])  # another process sees the running job
    assert listing.exit_code == 0 and f"{job_id}" in listing.output and "running" in listing.output
    request_cancel(job_id, actor=Actor.system())
    wait_for(lambda: _job(job_id).status not in ("queued", "running"), timeout=600)
    job = _job(job_id)
    assert job.status == "cancelled", (job.status, job.error)
    with session_scope() as s:
        assert s.get(TrainingRun, run.id).status == "cancelled"
    checkpoint = latest_checkpoint(run_dir(run.id) / "main")
    assert checkpoint is not None
    stopped_at = int(checkpoint.rsplit("-", 1)[1])
    assert stopped_at == _metrics(run.id)["loss"][-1][0] < 40
    assert (Path(checkpoint) / "adapter_model.safetensors").is_file() and (Path(checkpoint) / "optimizer.pt").is_file()

    # a new job resumes from that checkpoint (here stopped again right after its first step)
    class StopAfterAStep(JobContext):
        """As if Stop was pressed as soon as the resumed job reports its first step."""

        seen: list[str] = []

        def progress(self, fraction: float, text: str | None = None, *, force: bool = False) -> None:
            self.seen.append(text or "")
            super().progress(fraction, text, force=force)

        @property
        def cancelled(self) -> bool:
            return any(f"step {stopped_at + 1}/" in t for t in self.seen)

    job2 = resume_training(run.id, actor=Actor.system(), start=False)
    ctx = StopAfterAStep(job_id=job2, params={"run_id": run.id}, project_id=tiny_project)
    assert execute_training(run.id, ctx=ctx) == "cancelled"
    assert latest_checkpoint(run_dir(run.id) / "main").endswith(f"checkpoint-{stopped_at + 1}")
    steps = [s for s, _ in _metrics(run.id)["loss"]]
    assert steps == list(range(1, stopped_at + 2))


def _job(job_id: int) -> Job:
    with session_scope() as s:
        return s.get(Job, job_id)
