"""Executing a training run as a job: resumable, stoppable, evaluated on the test split.

A run goes through stages, each recorded in ``<data dir>/training/run-<id>/state.json`` so a
restarted job continues where the last one stopped:

* ``sft`` / ``labels_only``: one stage, ``main``.
* ``tract``: ``stage1`` (CoT-RAFT on D_reason), then one self-generated trace per training item
  from the stage-1 model (the score it wrote is discarded and the gold label kept; written to
  ``self_traces.jsonl`` as they come), then ``stage2`` (CoT-RAFT on those traces, **from the base
  model**, TRACT Algorithm 1). Stage 2 covers every gold training item, also those without a
  trace in D_reason (TRACT's D_self is built from D_train).

Each stage is planned from the rows it keeps (:mod:`judgeeye.training.plan`: optimiser steps,
warm-up, validation interval, patience), and refused when the plan cannot train meaningfully
unless forced; the plan is kept in ``state.json``, so a resumed stage keeps its schedule. Within a
stage, the Trainer saves a checkpoint at every validation and when the job is stopped; a resumed
stage continues from the newest checkpoint (optimizer, scheduler and RNG included).
The best validation checkpoint becomes the run's adapter (``run-<id>/adapter``). Then the
adapter and the base model rate the test split through :mod:`judgeeye.evaluate` (one rater run
each; the base run is reused by later runs with the same rater settings), and their comparison
(τ, ICC(3,1), MSE; one-sided bootstrap for τ and ICC, paired t-test on MSE) is stored as metric
rows ``test_*``, ``base_*`` and ``p_*``, with each side's n and parse failures. Validation and
test are rated under one protocol (``TrainingConfig.protocol``).
"""

from __future__ import annotations

import gc
import json
import os
from functools import partial
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from judgeeye.codebook import CodebookSpec, current_version, get_version, to_spec
from judgeeye.jobs import JobCancelled, JobContext, take_run
from judgeeye.store import (
    Codebook, Item, Project, RaterRun, TrainingMetric, TrainingRun, session_scope, write_with_retry,
)
from judgeeye.training.callbacks import (
    BestState,
    JobControl,
    StoreMetrics,
    Validation,
    ValidationRater,
    ValItem,
    is_main_process,
    write_metrics,
)
from judgeeye.training.config import TrainingConfig
from judgeeye.training.launch import run_dir
from judgeeye.training.data import (
    ReasonRow,
    TrainingDataError,
    build_examples,
    data_version,
    load_reason_rows,
    rows_to_json,
)
from judgeeye.training.plan import StagePlan, TrainingPlan, plan_stage

TEST_METRICS = ("tau", "icc3", "mse")


# ================================================================================ runs


# ================================================================================ state


class RunState:
    """What a run has done so far, in ``state.json`` (written atomically)."""

    def __init__(self, run_id: int) -> None:
        self.path = run_dir(run_id) / "state.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def stage(self, name: str) -> dict[str, Any]:
        return self.data.setdefault("stages", {}).setdefault(name, {})

    def save(self) -> None:
        if not is_main_process():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        os.replace(tmp, self.path)


# ================================================================================ job


def run_training_job(ctx: JobContext) -> None:
    """Job handler for kind 'train': params {"run_id": N}."""
    with session_scope() as s:
        run_id = take_run(s, TrainingRun, ctx, f"training run {ctx.params['run_id']} is already running as")
    try:
        status = execute_training(run_id, ctx=ctx)
    except Exception:
        _set_status(run_id, "failed")
        raise
    if status == "cancelled":
        raise JobCancelled()


def _set_status(run_id: int, status: str, **values: Any) -> None:
    if not is_main_process():
        return

    def write(s: Session) -> None:
        run = s.get(TrainingRun, run_id)
        run.status = status
        for key, value in values.items():
            setattr(run, key, value)

    write_with_retry(write, what=f"status of training run {run_id}")


# ================================================================================ training


class _Run:
    """Everything one execution of a run needs, loaded once."""

    def __init__(self, run_id: int, ctx: JobContext | None) -> None:
        self.run_id, self.ctx = run_id, ctx
        self.dir = run_dir(run_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state = RunState(run_id)
        with session_scope() as s:
            run = s.get(TrainingRun, run_id)
            if run is None:
                raise LookupError(f"no training run {run_id}")
            self.config = TrainingConfig.model_validate(run.config)
            self.project_id = run.project_id
            project = s.get(Project, run.project_id)
            self.rows, self.source = load_reason_rows(
                s, run.project_id, source=self.config.source, sampling_run=self.config.sampling_run)
            self.rows = self.rows[: self.config.train_limit] if self.config.train_limit else self.rows
            codebook = self._codebook(s, project)
            self.codebook_id, self.codebook_version = codebook.id, codebook.version
            self.spec: CodebookSpec = to_spec(codebook, project)
            self.val_items = self._items(s, "validation", self.config.val_limit)
            self.train_items = self._items(s, "train", None)
            self.n_test = len(self._items(s, "test", self.config.test_limit))
        self.data_version = data_version(self.rows, self.codebook_version, self.config.mode)

    def _codebook(self, s: Session, project: Project) -> Codebook:
        if self.config.codebook_version is not None:
            return get_version(s, project.id, self.config.codebook_version)
        versions = Counter(r.codebook_version for r in self.rows if r.codebook_version is not None)
        if versions:
            return get_version(s, project.id, versions.most_common(1)[0][0])
        return current_version(s, project.id)

    def _items(self, s: Session, split: str, limit: int | None) -> list[Item]:
        stmt = (select(Item).where(Item.project_id == self.project_id, Item.split == split,
                                   Item.gold_status == "gold", Item.gold.is_not(None)).order_by(Item.id))
        if limit:
            stmt = stmt.limit(limit)
        return list(s.scalars(stmt).all())

    def log(self, message: str) -> None:
        if self.ctx is not None:
            self.ctx.log(message)

    def cancelled(self) -> bool:
        return bool(self.ctx is not None and self.ctx.cancelled)

    def progress(self, fraction: float, text: str) -> None:
        if self.ctx is not None and is_main_process():
            self.ctx.progress(fraction, text)


def execute_training(run_id: int, *, ctx: JobContext | None = None) -> str:
    """Train, pick the best checkpoint, evaluate on test; returns "completed" or "cancelled"."""
    r = _Run(run_id, ctx)
    cfg = r.config
    _set_status(run_id, "running")
    r.log(f"training run {run_id}: mode {cfg.mode}, base {cfg.base_model}, {len(r.rows)} training rows from "
          f"{r.source}, codebook v{r.codebook_version}, {len(r.val_items)} validation items, data {r.data_version}")
    stages = ["stage1", "stage2"] if cfg.mode == "tract" else ["main"]
    final_dir: Path | None = None
    for index, stage in enumerate(stages):
        info = r.state.stage(stage)
        if info.get("done"):
            final_dir = Path(info["adapter"])
            continue
        rows = r.rows if stage != "stage2" else _self_trace_rows(r, Path(r.state.stage("stage1")["adapter"]))
        if rows is None:
            return _stopped(r)
        outcome = _train_stage(r, stage, index, len(stages), rows)
        if outcome is None:
            return _stopped(r)
        final_dir = outcome
    adapter = r.dir / "adapter"
    if final_dir is not None and (r.state.data.get("adapter_from") != str(final_dir) or not adapter.is_dir()):
        from judgeeye.training.export import install_adapter

        best = r.state.stage(stages[-1])
        if is_main_process():
            install_adapter(final_dir, adapter, base_model=cfg.base_model, mode=cfg.mode, config=cfg.model_dump(mode="json"),
                            data_version=r.data_version, data_source=r.source, n_train_rows=len(r.rows),
                            codebook_version=r.codebook_version, project_id=r.project_id, training_run=run_id,
                            best_val_tau=best.get("best_tau"), best_step=best.get("best_step"))
        r.state.data["adapter_from"] = str(final_dir)
        r.state.save()
    _set_status(run_id, "evaluating" if cfg.evaluate_test else "running", adapter_path=str(adapter))
    if cfg.evaluate_test and is_main_process():
        if _evaluate_test(r, adapter) is None:
            return _stopped(r)
    _set_status(run_id, "completed")
    r.progress(1.0, "done")
    r.log(f"training run {run_id} completed; adapter {adapter}")
    return "completed"


def _stopped(r: _Run) -> str:
    _set_status(r.run_id, "cancelled")
    r.log(f"training run {r.run_id} stopped; resume it to continue from the last checkpoint")
    return "cancelled"


def _collect() -> None:
    """Give freed models back (call after dropping the last reference)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def _train_stage(r: _Run, stage: str, index: int, n_stages: int, rows: list[ReasonRow]) -> Path | None:
    """Train one stage to its end (early stopping or the step budget); returns the folder of the
    adapter to keep (the best validation checkpoint), None when stopped by a cancel."""
    from judgeeye.training.trainer import build_trainer, latest_checkpoint, load_base, prepare_dataset

    cfg = r.config
    info = r.state.stage(stage)
    prefix = "" if stage in ("main", "stage2") else f"{stage}/"
    out = r.dir / stage
    model, tokenizer, device = load_base(cfg)
    report = build_examples(rows, tokenizer, r.spec, mode=cfg.mode, max_length=cfg.max_length,
                            think_tags=cfg.think_tags)
    if is_main_process():
        (r.dir / f"excluded-{stage}.json").write_text(json.dumps([asdict(e) for e in report.excluded], indent=2))
        if stage != "stage2":
            (r.dir / "train_rows.json").write_text(json.dumps(rows_to_json(rows)))
    r.log(f"{stage}: {report.summary()}")
    for ex in report.too_long[:20]:
        r.log(f"  left out (too long for max_length {cfg.max_length}): item {ex.external_id} ({ex.length} tokens)")
    if not report.examples:
        raise TrainingDataError(
            f"training run {r.run_id} {stage}: no usable training rows ({report.summary()}); "
            f"raise max_length (now {cfg.max_length}) or check the traces")
    rating = None
    if cfg.mode == "tract":
        from judgeeye.ratings import answer_cue
        from judgeeye.training.tract import RatingTokens

        rating = RatingTokens.from_tokenizer(tokenizer, list(range(r.spec.scale_min, r.spec.scale_max + 1)),
                                             answer_cue(r.spec.output_format))
    dataset = prepare_dataset(cfg, report.examples)
    if "plan" in info:  # a resumed stage keeps the schedule it started with
        plan = StagePlan(**info["plan"])
    else:
        plan = plan_stage(cfg, len(dataset), len(r.val_items), stage=stage)
        if latest_checkpoint(out) is None:  # (a stage begun before plans were kept is not refused now)
            TrainingPlan(cfg.mode, cfg.preset, [plan], packing=False).check(cfg.force)
        info["plan"] = asdict(plan)
        r.state.save()
    r.log(f"{stage}: plan: {plan.rows} {'packed sequences' if cfg.packing else 'rows'}, {plan.steps_per_epoch} "
          f"steps per epoch, {plan.optimizer_steps} optimizer steps at most, warm-up {plan.warmup_steps}, "
          f"validation every {plan.eval_steps} steps ({plan.evaluations} validations), patience {plan.patience} steps")
    best = BestState(info.get("best_tau"), info.get("best_step"))

    def on_best(b: BestState) -> None:
        info.update(best_tau=b.tau, best_step=b.step)
        r.state.save()
        if stage in ("main", "stage2"):
            _set_status(r.run_id, "running", best_step=b.step, best_metric=b.tau)

    rater = validation_rater(cfg, r.spec, [ValItem(i.id, dict(i.fields or {}), float(i.gold)) for i in r.val_items])
    validation = Validation(r.run_id, rater, tokenizer, eval_steps=plan.eval_steps, patience=plan.patience,
                            best_dir=out / "best", best=best, on_best=on_best, prefix=prefix,
                            should_stop=r.cancelled, log_fn=r.log)

    def progress(step: int, max_steps: int) -> None:
        frac = (index + step / max(max_steps, 1)) / n_stages * (0.85 if cfg.evaluate_test else 1.0)
        shown = f"{validation.best.tau:.3f} (step {validation.best.step})" if validation.best.tau is not None else "—"
        r.progress(frac, f"{stage}: step {step}/{max_steps} · best validation τ {shown}")

    control = JobControl(r.cancelled, progress)
    callbacks = [StoreMetrics(r.run_id, prefix), validation, control] if r.val_items else [StoreMetrics(r.run_id, prefix), control]
    if not r.val_items:
        r.log("no validation items: no early stopping; the last step's adapter is kept")
    if r.cancelled():  # stopped while loading: nothing trained in this job, nothing to save
        return None
    trainer = build_trainer(cfg, model, tokenizer, dataset, out, device, callbacks, plan, rating=rating)
    resume = latest_checkpoint(out)
    if resume:
        r.log(f"{stage}: resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    if control.stopped_by_cancel:
        del trainer, model
        _collect()
        return None
    if r.val_items and validation.last_eval_step != trainer.state.global_step and not r.cancelled():
        validation.run_validation(trainer.state.global_step, trainer.model)
    if r.cancelled():  # stopped during the last validation: keep a full checkpoint to resume from
        trainer._save_checkpoint(trainer.model, trial=None)
        del trainer, model
        _collect()
        return None
    if validation.best.step is not None and (out / "best" / "adapter_config.json").is_file():
        keep = out / "best"
    else:
        keep = out / "final"
        if is_main_process():
            trainer.model.save_pretrained(str(keep))
            tokenizer.save_pretrained(str(keep))
    info.update(done=True, adapter=str(keep), steps=trainer.state.global_step, examples=len(report.examples),
                excluded=len(report.excluded), early_stopped=validation.early_stopped)
    r.state.save()
    del trainer, model
    _collect()
    return keep


# ================================================================================ TRACT stage 2


def _self_trace_rows(r: _Run, stage1_adapter: Path) -> list[ReasonRow] | None:
    """D_self: one trace per gold training item sampled from the stage-1 model, paired with the
    gold label (the rating it wrote is discarded). Resumable: traces already written are kept.
    None when stopped by a cancel."""
    from judgeeye.engines import GenerationRequest, SamplingParams, TransformersConfig, make_engine
    from judgeeye.codebook import render_prompt, render_prompt_text
    from judgeeye.ratings import parse_rating, trace_text

    cfg = r.config
    path = r.dir / "self_traces.jsonl"
    items = r.train_items[: cfg.train_limit] if cfg.train_limit else r.train_items
    done: dict[int, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[int(rec["item_id"])] = rec
    todo = [i for i in items if i.id not in done]
    if todo and is_main_process():
        r.log(f"stage 2 data: sampling {len(todo)} traces from the stage-1 model ({len(done)} already written)")
        engine = make_engine(TransformersConfig(model=cfg.base_model, adapter=str(stage1_adapter), device=cfg.device,
                                                batch_size=cfg.val_batch_size, keep_loaded=False))
        params = SamplingParams(temperature=cfg.self_trace_temperature, max_tokens=cfg.self_trace_max_tokens,
                                top_p=1.0, seed=cfg.seed)
        try:
            with path.open("a") as fh:
                for start in range(0, len(todo), cfg.val_batch_size):
                    if r.cancelled():
                        return None
                    chunk = todo[start:start + cfg.val_batch_size]
                    outs = engine.generate([GenerationRequest(render_prompt(r.spec, i.fields)) for i in chunk], params)
                    for item, (c,) in zip(chunk, outs):
                        if c.finish_reason == "error":
                            continue
                        # with the prompt: a rating the model copies from the item is not its own
                        parse = parse_rating(c.answer, r.spec.scale_min, r.spec.scale_max,
                                             prompt=render_prompt_text(r.spec, item.fields))
                        rec = {"item_id": item.id, "trace": trace_text(c.reasoning, c.answer, parse),
                               "finish_reason": c.finish_reason, "written_rating": parse.value}
                        fh.write(json.dumps(rec) + "\n")
                        fh.flush()
                        done[item.id] = rec
                    r.progress(0.5 * len(done) / max(len(items), 1) * 0.85, f"stage 2 data: {len(done)}/{len(items)} traces")
        finally:
            engine.close()
            del engine
            _collect()
    if not is_main_process():
        from accelerate import PartialState

        PartialState().wait_for_everyone()
        done = {int(json.loads(x)["item_id"]): json.loads(x) for x in path.read_text().splitlines() if x.strip()}
    elif _distributed():
        from accelerate import PartialState

        PartialState().wait_for_everyone()
    return [ReasonRow(item_id=i.id, external_id=i.external_id, fields=dict(i.fields or {}), gold=float(i.gold),
                      split=i.split, trace=done[i.id]["trace"], codebook_version=r.codebook_version,
                      provenance={"source": "self", "stage1_adapter": str(stage1_adapter)})
            for i in items if i.id in done]


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


# ================================================================================ one rating protocol


def validation_rater(cfg: TrainingConfig, spec: CodebookSpec, items: list[ValItem]) -> ValidationRater:
    """The validation split's rater: the run's rating protocol, as :func:`split_rater_spec` rates."""
    p = cfg.protocol
    return ValidationRater(spec, items, readout=cfg.readout, temperature=p.temperature, top_p=p.top_p,
                           max_tokens=p.max_tokens, batch_size=cfg.val_batch_size, seed=cfg.seed)


def split_rater_spec(cfg: TrainingConfig, adapter_dir: str | None):  # type: ignore[no-untyped-def]
    """The test split's rater (the base model, or it with ``adapter_dir``): the run's rating
    protocol, as :func:`validation_rater` rates."""
    from judgeeye.engines import TransformersConfig
    from judgeeye.evaluate.raters import RaterSpec

    p = cfg.protocol
    engine = TransformersConfig(model=cfg.base_model, adapter=adapter_dir, device=cfg.device,
                                batch_size=cfg.val_batch_size, keep_loaded=False)
    return RaterSpec(engine=engine, readout=cfg.readout, temperature=p.temperature, top_p=p.top_p,
                     max_tokens=p.max_tokens, seed=cfg.seed, limit=cfg.test_limit)


# ================================================================================ test evaluation


def _evaluate_test(r: _Run, adapter: Path) -> dict[str, float] | None:
    """Adapter against the base model on the test split (judgeeye.evaluate); None when cancelled."""
    from judgeeye.evaluate.compare import compare_runs
    from judgeeye.evaluate.raters import create_rater_run
    from judgeeye.evaluate.runner import execute_rater_run
    from judgeeye.evaluate.summary import summaries

    cfg = r.config
    if r.n_test == 0:
        r.log("no gold items in the test split: test evaluation skipped")
        return {}
    readout, spec = cfg.readout, partial(split_rater_spec, cfg)
    ev = r.state.data.setdefault("evaluation", {})
    with session_scope() as s:
        if "base_run" not in ev:
            wanted = spec(None).model_dump(mode="json")
            reuse = s.scalars(select(RaterRun).where(
                RaterRun.project_id == r.project_id, RaterRun.split == "test", RaterRun.codebook_id == r.codebook_id,
                RaterRun.status == "completed").order_by(RaterRun.id.desc())).all()
            match = next((x for x in reuse if x.rater == wanted), None)
            ev["base_run"] = match.id if match else create_rater_run(
                s, r.project_id, spec(None), split="test", codebook_version=r.codebook_version,
                name=f"base {cfg.base_model} · {readout}").id
        if "adapter_run" not in ev:
            ev["adapter_run"] = create_rater_run(
                s, r.project_id, spec(str(adapter)), split="test", codebook_version=r.codebook_version,
                name=f"training run {r.run_id} · {cfg.mode} · {readout}").id
    r.state.save()
    for key in ("base_run", "adapter_run"):
        with session_scope() as s:
            status = s.get(RaterRun, ev[key]).status
        if status == "completed":
            continue
        r.log(f"test evaluation: rater run {ev[key]} ({key.replace('_run', '')})")
        status = execute_rater_run(ev[key], ctx=r.ctx)
        if status == "cancelled":
            return None
        if status != "completed":
            raise RuntimeError(f"rater run {ev[key]} ended {status}; resume the training run to retry")
    with session_scope() as s:
        cmp = compare_runs(s, ev["base_run"], ev["adapter_run"], n_boot=cfg.n_boot, seed=cfg.seed)
        sums = summaries(s, [ev["base_run"], ev["adapter_run"]])
        step = s.scalar(select(TrainingMetric.step).where(TrainingMetric.run_id == r.run_id)
                        .order_by(TrainingMetric.step.desc()).limit(1)) or 0
    # n: items whose rating enters the metrics; parse failures: answers without a parsable rating
    # (left out under the parsed read-out), reported with every τ rather than dropped silently
    values: dict[str, float] = {"test_items": float(cmp.n_items),
                                "test_n": float(cmp.metrics_b["n"]), "base_n": float(cmp.metrics_a["n"]),
                                "test_parse_failures": float(sums[ev["adapter_run"]].parse_failures),
                                "base_parse_failures": float(sums[ev["base_run"]].parse_failures)}
    for m in TEST_METRICS:
        values[f"test_{m}"] = cmp.metrics_b[m]
        values[f"base_{m}"] = cmp.metrics_a[m]
    values.update(p_tau=cmp.tau_test.p_value, p_icc3=cmp.icc3_test.p_value, p_mse=cmp.mse_test.p_value)
    write_metrics(r.run_id, step, values)
    results = {"base_run": ev["base_run"], "adapter_run": ev["adapter_run"], "comparison": cmp.rows(), **values}
    (r.dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    from judgeeye.training.export import write_metadata

    write_metadata(adapter, test=values, test_rater_runs={"base": ev["base_run"], "adapter": ev["adapter_run"]})
    ev["done"] = True
    r.state.save()
    r.log("test: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
    return values


__all__ = ["execute_training", "run_training_job", "split_rater_spec", "validation_rater"]
