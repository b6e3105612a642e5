"""Trainer callbacks: metrics to the store, validation τ with early stopping, stop on cancel.

* :class:`StoreMetrics` writes every logged value (loss, learning rate, gradient norm, TRACT's
  CE and RAFT parts) to ``TrainingMetric`` the moment the Trainer logs it, so the page draws
  curves live. Rows are unique per (run, step, name); a step replayed after a resume overwrites
  its row.
* :class:`Validation` rates the validation split with the model being trained every
  ``eval_steps`` under the run's rating protocol (the test's: sampling settings and read-out),
  computes Kendall τ against gold, logs it with n and the parse failures, saves the adapter
  whenever τ improves (the best checkpoint), and stops training when τ has not improved for
  ``patience`` steps (the paper's rule, section 4.3; the steps come from the plan).
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
from judgeeye.ratings import split_reasoning

log = logging.getLogger(__name__)

#: Trainer log keys stored as metrics, and their stored names
LOGGED = {"loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm", "ce": "ce", "raft_mse": "raft_mse",
          "mean_token_accuracy": "token_accuracy"}


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
    """Validation τ and MSE over the items with a rating (``n``); ``parse_failures`` counts the
    answers without a parsable rating (left out under the parsed read-out, like the test)."""

    tau: float | None
    mse: float | None
    items: int
    n: int
    parse_failures: int
    predictions: list[float | None] = field(default_factory=list)


class ValidationRater:
    """Rates the validation items with the model in memory (the one being trained) under the run's
    rating protocol, the one the test split is rated with (:class:`judgeeye.training.config.
    RatingProtocol`): the same sampling settings and the same read-out
    (:func:`judgeeye.evaluate.runner.rate_completions`). Every validation draws from the same seed
    (the training RNG is restored afterwards), so checkpoints are compared on equal terms."""

    def __init__(self, spec: CodebookSpec, items: Sequence[ValItem], *, readout: str, temperature: float,
                 top_p: float, max_tokens: int, batch_size: int = 8, seed: int = 0) -> None:
        self.spec, self.items = spec, list(items)
        self.readout, self.batch_size, self.seed = readout, batch_size, seed
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens

    def rate(self, model: Any, tokenizer: Any, should_stop: Callable[[], bool] | None = None) -> ValResult | None:
        """Generation in batches of different prompts, then the read-out; None when
        ``should_stop`` interrupted it."""
        import torch

        from judgeeye.engines import Completion, SamplingParams, TransformersConfig
        from judgeeye.engines.transformers_engine import TransformersEngine
        from judgeeye.evaluate.runner import rate_completions
        from judgeeye.metrics import kendall_tau, mse

        was_training = model.training
        model.eval()
        engine = TransformersEngine.from_model(
            model, tokenizer, TransformersConfig(batch_size=self.batch_size, generate_kwargs={"use_cache": True}),
            fast_decode=False)
        params = SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                                seed=self.seed)
        preds: list[float | None] = []
        failures = 0
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.seed)
                for start in range(0, len(self.items), self.batch_size):
                    if should_stop is not None and should_stop():
                        return None
                    chunk = self.items[start:start + self.batch_size]
                    messages = [render_prompt(self.spec, it.fields) for it in chunk]
                    encoded = [engine.encode_messages(m) for m in messages]
                    completions = []
                    for ids, result in zip(encoded, engine.generate_tokens(encoded, params)):
                        out = result.ids[:-1] if result.finish_reason == "stop" and result.ids else result.ids
                        text = tokenizer.decode(out, skip_special_tokens=True)
                        reasoning, answer = split_reasoning(text)
                        completions.append(Completion(text, reasoning, answer, prompt_tokens=len(ids),
                                                      completion_tokens=len(result.ids),
                                                      finish_reason=result.finish_reason))
                    prompts = [(m, render_prompt_text(self.spec, it.fields)) for m, it in zip(messages, chunk)]
                    for rated in rate_completions(engine, self.spec, self.readout, prompts, completions):
                        failures += int(not rated.parse_ok)
                        preds.append(rated.rating)
        finally:
            engine.model = None  # the engine must not release a model it does not own
            if was_training:
                model.train()
        pairs = [(it.gold, p) for it, p in zip(self.items, preds) if p is not None]
        tau = m = None
        if len(pairs) >= 2:
            g, p = zip(*pairs)
            t = kendall_tau(list(g), list(p))
            tau = None if t is None or not math.isfinite(t) else float(t)
            m = float(mse(list(g), list(p)))
        return ValResult(tau=tau, mse=m, items=len(self.items), n=len(pairs), parse_failures=failures,
                         predictions=preds)


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
        values = {f"{self.prefix}val_n": result.n, f"{self.prefix}val_parse_failures": result.parse_failures}
        if result.tau is not None:
            values[f"{self.prefix}val_tau"] = result.tau
        if result.mse is not None:
            values[f"{self.prefix}val_mse"] = result.mse
        write_metrics(self.run_id, step, values)
        shown = f"{result.tau:.3f}" if result.tau is not None else "undefined (constant or too few ratings)"
        self.log(f"step {step}: validation τ {shown} on n = {result.n} of {result.items} items "
                 f"({result.parse_failures} parse failure{'s' if result.parse_failures != 1 else ''})")
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
