"""Trainer callbacks: metrics to the store, validation τ with early stopping, stop on cancel.

* :class:`StoreMetrics` writes every logged value (loss, learning rate, gradient norm, TRACT's
  CE and RAFT parts) to ``TrainingMetric`` the moment the Trainer logs it, so the page draws
  curves live. Rows are unique per (run, step, name); a step replayed after a resume overwrites
  its row.
* :class:`Validation` rates the validation split with the model being trained every
  ``eval_steps`` (generation, then the written rating or the score read-out), computes Kendall τ
  against gold, logs it, saves the adapter whenever τ improves (the best checkpoint), and stops
  training when τ has not improved for ``patience`` steps (paper section 4.3: 100).
* :class:`JobControl` reports progress to the job and, when the job is cancelled, asks the
  Trainer to save a checkpoint and stop at the end of the current step.

Under ``accelerate launch`` only the main process rates and writes; its decisions (stop, cancel)
are broadcast so every process stops at the same step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from judgeeye.codebook import CodebookSpec, render_prompt, render_prompt_text
from judgeeye.ratings import answer_cue, argmax_score, expected_score, parse_rating, split_reasoning

log = logging.getLogger(__name__)

#: Trainer log keys stored as metrics, and their stored names
LOGGED = {"loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm", "ce": "ce", "raft_mse": "raft_mse",
          "mean_token_accuracy": "token_accuracy", "num_tokens": "num_tokens"}


def is_main_process() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def broadcast_flag(flag: bool) -> bool:
    """The main process's value of ``flag`` on every process (itself when not distributed)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def write_metrics(run_id: int, step: int, values: dict[str, float]) -> None:
    """Upsert metric rows (unique per run, step, name); non-finite values are skipped. Retried
    while the database is busy (an upsert is idempotent: a retry never duplicates a row)."""
    from judgeeye.store import write_with_retry

    rows = [{"run_id": run_id, "step": int(step), "name": k, "value": float(v)}
            for k, v in values.items() if v is not None and math.isfinite(float(v))]
    if rows:
        write_with_retry(lambda s: _upsert_metrics(s, run_id, rows), what=f"metrics of step {step}")


def _upsert_metrics(s: Any, run_id: int, rows: list[dict[str, Any]]) -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    from judgeeye.store import TrainingMetric

    dialect = s.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        module = sqlite if dialect == "sqlite" else postgresql
        stmt = module.insert(TrainingMetric)
        stmt = stmt.on_conflict_do_update(index_elements=["run_id", "step", "name"],
                                          set_={"value": stmt.excluded.value})
        s.execute(stmt, rows)
    else:  # other databases: replace by hand
        for row in rows:
            old = s.query(TrainingMetric).filter_by(run_id=run_id, step=row["step"], name=row["name"]).first()
            if old is None:
                s.add(TrainingMetric(**row))
            else:
                old.value = row["value"]


class StoreMetrics(TrainerCallback):
    """Every Trainer log line to ``TrainingMetric`` (names prefixed per TRACT stage)."""

    def __init__(self, run_id: int, prefix: str = "") -> None:
        self.run_id, self.prefix = run_id, prefix

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if not logs or not is_main_process():
            return
        values = {self.prefix + name: logs[key] for key, name in LOGGED.items() if key in logs}
        write_metrics(self.run_id, state.global_step, values)


# ============================================================================ validation


@dataclass
class ValItem:
    item_id: int
    fields: dict[str, Any]
    gold: float


@dataclass
class ValResult:
    tau: float | None
    mse: float | None
    n: int
    rated: int
    parsed: int
    predictions: list[float | None] = field(default_factory=list)


class ValidationRater:
    """Rates items with a model in memory (the one being trained) through the transformers engine."""

    def __init__(self, spec: CodebookSpec, items: Sequence[ValItem], *, readout: str, max_tokens: int,
                 batch_size: int = 8, seed: int = 0) -> None:
        self.spec, self.items = spec, list(items)
        self.readout, self.max_tokens, self.batch_size, self.seed = readout, max_tokens, batch_size, seed
        self.levels = list(range(spec.scale_min, spec.scale_max + 1))
        self.cue = answer_cue(spec.output_format)

    def rate(self, model: Any, tokenizer: Any, should_stop: Callable[[], bool] | None = None) -> ValResult | None:
        """Greedy generation in batches of different prompts, then the read-out; None when
        ``should_stop`` interrupted it."""
        from judgeeye.engines import EngineConfig, SamplingParams
        from judgeeye.engines.transformers_engine import TransformersEngine
        from judgeeye.metrics import kendall_tau, mse

        was_training = model.training
        model.eval()
        engine = TransformersEngine.from_model(
            model, tokenizer, EngineConfig(batch_size=self.batch_size, extra={"use_cache": True}), fast_decode=False)
        params = SamplingParams(temperature=0.0, max_tokens=max(1, self.max_tokens), seed=self.seed)
        preds: list[float | None] = []
        parsed = 0
        try:
            for start in range(0, len(self.items), self.batch_size):
                if should_stop is not None and should_stop():
                    return None
                chunk = self.items[start:start + self.batch_size]
                messages = [render_prompt(self.spec, it.fields) for it in chunk]
                if self.max_tokens == 0:  # no trace: the rating right after the prompt and the cue
                    dists = engine.score_readout(messages, [""] * len(chunk), self.levels, self.cue)
                    preds += [self._from_dist(d) for d in dists]
                    continue
                results = engine.generate_tokens([engine.encode_messages(m) for m in messages], params)
                values: list[float | None] = [None] * len(chunk)
                need: list[tuple[int, str]] = []
                for i, (it, result) in enumerate(zip(chunk, results)):
                    ids = result.ids[:-1] if result.finish_reason == "stop" and result.ids else result.ids
                    reasoning, answer = split_reasoning(tokenizer.decode(ids, skip_special_tokens=True))
                    parse = parse_rating(answer, self.spec.scale_min, self.spec.scale_max,
                                         prompt=render_prompt_text(self.spec, it.fields))
                    parsed += int(parse.ok)
                    if self.readout == "parsed" and parse.ok:
                        values[i] = float(parse.value)
                    else:
                        need.append((i, _trace(reasoning, answer, parse.start if parse.ok else None)))
                if need:
                    dists = engine.score_readout([messages[i] for i, _ in need], [t for _, t in need],
                                                 self.levels, self.cue)
                    for (i, _), dist in zip(need, dists):
                        values[i] = self._from_dist(dist)
                preds += values
        finally:
            engine.model = None  # the engine must not release a model it does not own
            if was_training:
                model.train()
        gold = [it.gold for it in self.items]
        pairs = [(g, p) for g, p in zip(gold, preds) if p is not None]
        tau = m = None
        if len(pairs) >= 2:
            g, p = zip(*pairs)
            t = kendall_tau(list(g), list(p))
            tau = None if t is None or not math.isfinite(t) else float(t)
            m = float(mse(list(g), list(p)))
        return ValResult(tau=tau, mse=m, n=len(self.items), rated=len(pairs), parsed=parsed, predictions=preds)

    def _from_dist(self, dist: dict[str, float]) -> float:
        if self.readout == "expected":
            return float(expected_score(dist))
        return float(argmax_score(dist))


def _trace(reasoning: str, answer: str, cut: int | None) -> str:
    """The completion up to (not including) its final rating statement (as the evaluator reads it)."""
    answer = answer[:cut] if cut is not None else answer
    if reasoning:
        return f"<think>\n{reasoning}\n</think>\n\n{answer}"
    return answer


@dataclass
class BestState:
    """Best validation τ so far and its step (persisted by the runner for resumes)."""

    tau: float | None = None
    step: int | None = None


class Validation(TrainerCallback):
    """Validation τ every ``eval_steps``; best adapter to ``best_dir``; early stopping."""

    def __init__(self, run_id: int, rater: ValidationRater, tokenizer: Any, *, eval_steps: int, patience: int,
                 best_dir: Path, best: BestState, on_best: Callable[[BestState], None], prefix: str = "",
                 should_stop: Callable[[], bool] | None = None, log_fn: Callable[[str], None] | None = None) -> None:
        self.run_id, self.rater, self.tokenizer = run_id, rater, tokenizer
        self.eval_steps, self.patience, self.best_dir = eval_steps, patience, Path(best_dir)
        self.best, self.on_best, self.prefix = best, on_best, prefix
        self.should_stop, self.log = should_stop, log_fn or log.info
        self.last_eval_step: int | None = None
        self.early_stopped = False

    def on_step_end(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        step = state.global_step
        if step % self.eval_steps != 0 and step < state.max_steps:
            return
        self.run_validation(step, model)
        stop = False
        if is_main_process():
            since = step - (self.best.step if self.best.step is not None else 0)
            stop = since >= self.patience
            if stop:
                self.log(f"early stopping at step {step}: validation τ has not improved for {since} steps "
                         f"(best {self.best.tau if self.best.tau is not None else 'none'} at step {self.best.step})")
        if broadcast_flag(stop):
            self.early_stopped = True
            control.should_training_stop = True

    def run_validation(self, step: int, model: Any) -> ValResult | None:
        self.last_eval_step = step
        if not is_main_process():
            return None
        result = self.rater.rate(model, self.tokenizer, self.should_stop)
        if result is None:
            return None
        values = {f"{self.prefix}val_rated": result.rated / max(result.n, 1),
                  f"{self.prefix}val_parsed": result.parsed / max(result.n, 1)}
        if result.tau is not None:
            values[f"{self.prefix}val_tau"] = result.tau
        if result.mse is not None:
            values[f"{self.prefix}val_mse"] = result.mse
        write_metrics(self.run_id, step, values)
        shown = f"{result.tau:.3f}" if result.tau is not None else "undefined (constant or too few ratings)"
        self.log(f"step {step}: validation τ {shown} on {result.rated}/{result.n} items "
                 f"({result.parsed} wrote a parsable rating)")
        if result.tau is not None and (self.best.tau is None or result.tau > self.best.tau):
            self.best = BestState(result.tau, step)
            self._save_best(model)
            self.on_best(self.best)
        return result


    def _save_best(self, model: Any) -> None:
        """Write the adapter beside the best folder, then swap it in: a job killed while saving
        leaves the previous best adapter whole."""
        import os
        import shutil

        tmp, old = (self.best_dir.with_name(self.best_dir.name + suffix) for suffix in (".tmp", ".old"))
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        self.tokenizer.save_pretrained(str(tmp))
        shutil.rmtree(old, ignore_errors=True)
        if self.best_dir.exists():
            os.replace(self.best_dir, old)
        os.replace(tmp, self.best_dir)
        shutil.rmtree(old, ignore_errors=True)


class JobControl(TrainerCallback):
    """Progress to the job; a cancel request saves a checkpoint and stops after this step."""

    def __init__(self, cancelled: Callable[[], bool], progress: Callable[[int, int], None]) -> None:
        self.cancelled, self.progress = cancelled, progress
        self.stopped_by_cancel = False

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if is_main_process():
            self.progress(state.global_step, state.max_steps)
        if broadcast_flag(self.cancelled()):
            self.stopped_by_cancel = True
            control.should_save = True
            control.should_training_stop = True


__all__ = ["BestState", "JobControl", "StoreMetrics", "ValItem", "ValResult", "Validation", "ValidationRater",
           "broadcast_flag", "is_main_process", "write_metrics"]
