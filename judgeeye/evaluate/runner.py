"""Executing a rater run: one prediction per item, written as it arrives, resumable.

Every prediction is written in its own short transaction the moment its request finishes, unique
per (run, item). Resuming rates only the items without a prediction, so a run killed at any
moment (kill -9 included) finishes with exactly one prediction per item, none lost or doubled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from judgeeye.codebook import CodebookSpec, render_prompt, render_prompt_text, to_spec
from judgeeye.engines import Completion, Engine, GenerationRequest, SamplingParams, make_engine
from judgeeye.engines.base import Messages
from judgeeye.engines.readout import cot_rail_score
from judgeeye.engines.transformers_engine import render_chat
from judgeeye.evaluate.raters import RaterSpec, rater_spec, run_items_stmt
from judgeeye.jobs import JobCancelled, JobContext, take_run
from judgeeye.ratings import answer_cue, argmax_score, parse_rating
from judgeeye.store import Codebook, Prediction, Project, RaterRun, StoreBusyError, session_scope, write_with_retry

#: passes in a row that write nothing before a run gives up (failed requests are retried)
MAX_PASSES = 3


@dataclass
class Pending:
    """One item still to rate."""

    item_id: int
    messages: list[dict[str, str]]
    prompt_text: str


@dataclass
class Progress:
    n_items: int
    done: int = 0
    parse_failures: int = 0
    errors: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def fraction(self) -> float:
        return self.done / max(self.n_items, 1)

    def text(self) -> str:
        rate = self.tokens / max(time.monotonic() - self.started, 1e-9)
        return (f"{self.done}/{self.n_items} items rated · {self.parse_failures} parse failures"
                f" · {rate:.1f} tok/s" + (f" · {self.errors} errors (retried)" if self.errors else ""))


def _load(run_id: int) -> tuple[RaterRun, RaterSpec, CodebookSpec, list[Pending], int]:
    """The run, its rater and the items that have no prediction yet (plus how many do)."""
    with session_scope() as s:
        run = s.get(RaterRun, run_id)
        if run is None:
            raise LookupError(f"no rater run {run_id}")
        spec = rater_spec(run)
        codebook = to_spec(s.get(Codebook, run.codebook_id), s.get(Project, run.project_id))
        done = set(s.scalars(select(Prediction.item_id).where(Prediction.rater_run_id == run_id)).all())
        pending = [
            Pending(item.id, render_prompt(codebook, item.fields), render_prompt_text(codebook, item.fields))
            for item in s.scalars(run_items_stmt(run)).all() if item.id not in done
        ]
        run.status = "running"
    return run, spec, codebook, pending, len(done)


def readout_trace(prompt_text: str, completion: Completion, cut: int | None) -> str:
    """What the score read-out appends to the prompt before the answer cue: the completion as the
    model wrote it, up to (not including) its final rating statement (``answer[:cut]``).

    Reasoning goes back between ``<think>`` tags. When the chat template itself opened ``<think>``
    at the end of the prompt (DeepSeek-R1 distills), only the closing tag is written: the prompt
    already holds the opening one, and the read-out must see the text the model saw, once. (A
    completion cut off while thinking there has no tags at all: all of it is reasoning.) This is
    the layout the training examples have (:meth:`judgeeye.training.data.ChatLayout.completion_head`).
    """
    answer = completion.answer[:cut] if cut is not None else completion.answer
    if prompt_text.rstrip().endswith("<think>"):
        reasoning = completion.reasoning
        if not reasoning and "</think>" not in (completion.text or ""):
            reasoning, answer = answer, ""
        return f"{reasoning}\n</think>\n\n{answer}"
    if completion.reasoning:
        return f"<think>\n{completion.reasoning}\n</think>\n\n{answer}"
    return answer


@dataclass
class Rated:
    """One completion's rating under a read-out; ``rating`` is None for an unparsed answer
    under the ``parsed`` read-out (counted as a parse failure, left out of the metrics)."""

    rating: float | None
    parse_ok: bool
    dist: dict[str, float] | None = None


def rate_completions(engine: Engine, codebook: CodebookSpec, readout: str,
                     prompts: Sequence[tuple[Messages, str]], completions: Sequence[Completion]) -> list[Rated]:
    """Ratings of ``completions`` (one per ``(messages, prompt text)``) under ``readout``:
    ``parsed`` (the rating written at the end of the answer), or the score read-out after the
    trace (``argmax``: the most probable level; ``expected``: TRACT's CoT-RAIL Σ p(y)·y over the
    raw level probabilities). Rater runs and training validation both rate through here, so a
    checkpoint is chosen the way the test split judges it."""
    parses = [parse_rating(c.answer, codebook.scale_min, codebook.scale_max, prompt=text)
              for (_, text), c in zip(prompts, completions, strict=True)]
    if readout == "parsed":
        return [Rated(float(p.value) if p.ok else None, p.ok) for p in parses]
    tokenizer = getattr(engine, "tokenizer", None)
    traces = []
    for (messages, _), c, p in zip(prompts, completions, parses):
        rendered = render_chat(tokenizer, messages) if tokenizer is not None else ""
        traces.append(readout_trace(rendered, c, p.start if p.ok else None))
    levels = list(range(codebook.scale_min, codebook.scale_max + 1))
    dists = engine.score_readout([m for m, _ in prompts], traces, levels, answer_cue(codebook.output_format))
    return [Rated(float(argmax_score(d)) if readout == "argmax" else cot_rail_score(d), p.ok, d)
            for d, p in zip(dists, parses)]


def insert_ignoring_duplicates(session: Session, rows: list[dict]) -> None:
    """Insert predictions; one that already exists (a second writer raced us) is left as it was."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        stmt = sqlite.insert(Prediction).on_conflict_do_nothing(index_elements=["rater_run_id", "item_id"])
    elif dialect == "postgresql":
        stmt = postgresql.insert(Prediction).on_conflict_do_nothing(index_elements=["rater_run_id", "item_id"])
    else:  # other databases: the unique constraint still refuses a duplicate (the write fails)
        from sqlalchemy import insert

        stmt = insert(Prediction)
    session.execute(stmt, rows)


class PredictionWriter:
    """Turns one completion into a rating by the rater's read-out and writes it at once."""

    def __init__(self, run_id: int, spec: RaterSpec, codebook: CodebookSpec, engine: Engine,
                 log: Callable[[str], None] | None = None) -> None:
        self.run_id, self.spec, self.codebook, self.engine, self.log = run_id, spec, codebook, engine, log

    def row(self, pending: Pending, completion: Completion) -> dict:
        rated = rate_completions(self.engine, self.codebook, self.spec.readout,
                                 [(pending.messages, pending.prompt_text)], [completion])[0]
        return dict(rater_run_id=self.run_id, item_id=pending.item_id, reasoning=completion.reasoning,
                    answer=completion.answer, rating=rated.rating, score_dist=rated.dist, parse_ok=rated.parse_ok,
                    completion_tokens=completion.completion_tokens)

    def write(self, pending: Pending, completion: Completion, progress: Progress) -> bool:
        if completion.finish_reason == "error":
            progress.errors += 1
            return False
        row = self.row(pending, completion)
        write_with_retry(lambda s: insert_ignoring_duplicates(s, [row]), log_fn=self.log,
                         what=f"prediction of item {pending.item_id}")
        progress.done += 1
        progress.parse_failures += int(not row["parse_ok"])
        progress.tokens += row["completion_tokens"]
        return True


def _chunk_size(engine: Engine) -> int:
    """Requests per generate() call: a few engine batches, small enough to cancel promptly."""
    return 4 * engine.config.concurrency()


def execute_rater_run(run_id: int, *, engine: Engine | None = None, ctx: JobContext | None = None) -> str:
    """Rate every item of the run that has no prediction yet; returns the run's final status
    (completed, incomplete, cancelled; failed when an error ends it, which is then raised)."""
    run, spec, codebook, pending, already = _load(run_id)
    own_engine = engine is None
    progress = Progress(n_items=already + len(pending), done=already)
    log = ctx.log if ctx else (lambda msg: None)
    log(f"rater run {run_id}: {progress.n_items} items ({already} already rated), rater {spec.label()}")
    status = "failed"
    try:
        engine = engine or make_engine(spec.engine)
        params = SamplingParams(temperature=spec.temperature, top_p=spec.top_p, max_tokens=spec.max_tokens,
                                seed=spec.seed)
        writer = PredictionWriter(run_id, spec, codebook, engine, log=ctx.log if ctx else None)
        stalled = 0
        while pending and stalled < MAX_PASSES:
            failed: list[Pending] = []
            size = _chunk_size(engine)
            for start in range(0, len(pending), size):
                failed += _generate(engine, pending[start:start + size], params, writer, progress, ctx)
            stalled = stalled + 1 if len(failed) == len(pending) else 0
            pending = failed
        if pending:
            log(f"rater run {run_id}: {len(pending)} items still failing after {MAX_PASSES} passes")
        status = "incomplete" if pending else "completed"
    except JobCancelled:
        status = "cancelled"
    finally:
        try:
            write_with_retry(lambda s: setattr(s.get(RaterRun, run_id), "status", status),
                             log_fn=ctx.log if ctx else None, what=f"status of rater run {run_id}")
        except StoreBusyError:
            if status != "failed":  # else the error that failed the run is the one to report
                raise
        if own_engine and engine is not None:
            engine.close()
        if ctx and status != "failed":
            ctx.progress(progress.fraction, progress.text(), force=True)
    if status == "completed":
        from judgeeye.evaluate.summary import summaries

        with session_scope() as s:  # the run table's intervals, computed once here
            summaries(s, [run_id])
    log(f"rater run {run_id} {status}: {progress.text()}")
    return status


def _generate(engine: Engine, chunk: list[Pending], params: SamplingParams, writer: PredictionWriter,
              progress: Progress, ctx: JobContext | None) -> list[Pending]:
    """One generate() call; each prediction is written as its request finishes. Returns failures."""
    if ctx:
        ctx.check_cancel()
    failed: list[Pending] = []

    def on_result(i: int, completions: list[Completion]) -> None:
        if not completions or not writer.write(chunk[i], completions[0], progress):
            failed.append(chunk[i])
        if ctx:
            ctx.progress(progress.fraction, progress.text())
            ctx.check_cancel()

    requests = [GenerationRequest(messages=p.messages, n=1) for p in chunk]
    engine.generate(requests, params, on_result=on_result)
    return failed


def run_evaluate_job(ctx: JobContext) -> None:
    """Job handler for kind 'evaluate': params {"run_id": N}."""
    with session_scope() as s:
        run_id = take_run(s, RaterRun, ctx, f"rater run {ctx.params['run_id']} is already being rated by")
    status = execute_rater_run(run_id, ctx=ctx)
    if status == "cancelled":
        raise JobCancelled()
    if status == "incomplete":
        raise RuntimeError("some items kept failing; resume the run to retry them")
