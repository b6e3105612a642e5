"""Executing a sampling run: rejection sampling (fixed k or adaptive rounds), resumable.

Every candidate is written in its own short transaction the moment its request finishes, with
a unique (run, item, target, sample index), insert-or-ignore and retried while the database is
busy (:func:`judgeeye.store.write_with_retry`). Resuming recomputes what is missing from the
store, so a run killed at any moment finishes with exactly k candidates per item (fixed mode),
none lost and none duplicated. Requests that keep failing (a server down or answering errors)
end the run "incomplete" with the engine's last error; resuming retries only those samples.

Acceptance (``SamplingSettings.acceptance``): a candidate's rating is the one its trace wrote
(parsed from the end of the answer: mode "written", the paper's protocol); in "forced_cue" mode a
trace that wrote none (it hit the token budget, or ended without a valid, unambiguous rating)
gets the answer cue appended and is rated by the argmax of the rating-token distribution right
after the cue (the score read-out; the distribution is stored with the candidate). Each
candidate records the mode that gave its rating; without one it is never accepted.

Seeds: each request's seed is derived from the run's seed, the item's external id and its first
sample index (:func:`sample_seed`), so it does not depend on batching or on what a resume left
to do. The openai engine sends it per request; the transformers engine draws one random stream
per ``generate`` call, seeded from the seeds of the call's requests: a run repeated from scratch
with the same seed gives the same candidates, a resumed one may differ where it resumed.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import select

from judgeeye.codebook import CodebookSpec, render_prompt, render_prompt_text, to_spec
from judgeeye.engines import Completion, Engine, EngineConfig, GenerationRequest, SamplingParams, make_engine
from judgeeye.engines.transformers_engine import render_chat
from judgeeye.evaluate.runner import readout_trace
from judgeeye.jobs import JobCancelled, JobContext, take_run
from judgeeye.ratings import answer_cue, argmax_score, parse_rating
from judgeeye.sampling.estimate import record_throughput
from judgeeye.sampling.posthoc import explain_messages, verify
from judgeeye.sampling.runs import SamplingSettings, candidate_kind, run_items, run_settings, targets_of
from judgeeye.store import (
    Candidate,
    Codebook,
    Project,
    SamplingRun,
    StoreBusyError,
    insert_or_ignore,
    session_scope,
    write_with_retry,
)
from judgeeye.store.retry import retry_settings

#: passes in a row that write nothing before a run gives up (failed requests are retried)
MAX_PASSES = 3
#: a candidate's unique key (models.Candidate)
UNIQUE = ("run_id", "item_id", "target", "sample_index")
#: run id -> the engine's last error of a run that ended "incomplete" (for the job's message)
_last_errors: dict[int, str | None] = {}


@dataclass
class ItemState:
    """What the store holds for one item of the run."""

    item_id: int
    external_id: str
    fields: dict[str, str]
    messages: list[dict[str, str]]
    prompt_text: str
    targets: dict[str, float]
    done: set[int] = field(default_factory=set)
    matches: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def satisfied(self, m: int) -> bool:
        return bool(self.targets) and all(self.matches[t] >= m for t in self.targets)


@dataclass
class Progress:
    n_items: int
    written: int = 0
    accepted: int = 0
    errors: int = 0
    tokens: int = 0
    last_error: str | None = None
    finished: set[int] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)

    @property
    def fraction(self) -> float:
        return len(self.finished) / max(self.n_items, 1)

    def text(self) -> str:
        rate = self.tokens / max(time.monotonic() - self.started, 1e-9)
        return (f"{len(self.finished)}/{self.n_items} items · {self.written} candidates · {self.accepted} accepted"
                f" · {rate:.1f} tok/s" + (f" · {self.errors} errors (retried)" if self.errors else ""))


def next_slots(state: ItemState, settings: SamplingSettings) -> list[int]:
    """The sample indices this item still needs in this pass."""
    missing = [i for i in range(settings.k) if i not in state.done]
    if not settings.adaptive:
        return missing
    if state.satisfied(settings.target_accepted) or not missing:
        return []
    return missing[: settings.round_size]


def _load(run_id: int) -> tuple[SamplingRun, CodebookSpec, SamplingSettings, list[ItemState]]:
    with session_scope() as s:
        run = s.get(SamplingRun, run_id)
        if run is None:
            raise LookupError(f"no sampling run {run_id}")
        project = s.get(Project, run.project_id)
        spec = to_spec(s.get_one(Codebook, run.codebook_id), project)
        settings = run_settings(run)
        post_hoc = settings.mode == "post_hoc"
        states = {}
        for item in run_items(s, run):
            targets = targets_of(item, settings)
            if post_hoc:  # explanations are written for the gold label only
                targets = {t: v for t, v in targets.items() if t == "gold"}
                if not targets:
                    continue
            messages = (explain_messages(spec, item.fields, int(targets["gold"])) if post_hoc
                        else render_prompt(spec, item.fields))
            states[item.id] = ItemState(
                item_id=item.id, external_id=item.external_id, fields=item.fields, messages=messages,
                prompt_text=render_prompt_text(spec, item.fields), targets=targets,
            )
        rows = s.execute(
            select(Candidate.item_id, Candidate.sample_index, Candidate.predicted)
            .where(Candidate.run_id == run_id, Candidate.kind == candidate_kind(settings))
        ).all()
        for item_id, index, predicted in rows:
            state = states.get(item_id)
            if state is None:
                continue
            state.done.add(index)
            for target, label in state.targets.items():
                if predicted is not None and predicted == label:
                    state.matches[target] += 1
        run.status = "running"
    return run, spec, settings, list(states.values())


def sample_seed(run_seed: int, external_id: str, sample_index: int) -> int:
    """The seed of one sample: fixed by the run's seed, the item and the sample index (under
    2**31, which every server accepts)."""
    digest = hashlib.sha256(f"{run_seed}\x00{external_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 2048) + sample_index


def _call_seed(seeds: Sequence[int | None]) -> int:
    """One seed for a ``generate`` call, from its requests' seeds (engines with one random stream)."""
    return int.from_bytes(hashlib.sha256(repr(list(seeds)).encode()).digest()[:8], "big") % 2**63


def _contiguous(slots: Sequence[int]) -> list[list[int]]:
    """Sample indices in runs of consecutive ones (one request each: seed + j is sample j's seed)."""
    runs: list[list[int]] = []
    for slot in sorted(slots):
        if runs and slot == runs[-1][-1] + 1:
            runs[-1].append(slot)
        else:
            runs.append([slot])
    return runs


class CandidateWriter:
    """Parses, reads out and writes the completions of one request in one transaction."""

    def __init__(
        self, run_id: int, spec: CodebookSpec, settings: SamplingSettings, engine: Engine,
        verifier: Engine | None = None, params: SamplingParams | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.run_id, self.spec, self.settings, self.engine = run_id, spec, settings, engine
        self.log = log
        self.verifier, self.params = verifier or engine, params or SamplingParams()
        self.levels = list(range(spec.scale_min, spec.scale_max + 1))
        self.cue = answer_cue(spec.output_format)
        self.readout = settings.readout and engine.supports_readout
        if settings.acceptance == "forced_cue" and not self.readout:
            raise ValueError(f"forced cue needs the score read-out, which {engine.config.label()} does not give")

    def write(self, state: ItemState, slots: Sequence[int], completions: list[Completion], progress: Progress) -> None:
        good = [(slot, c) for slot, c in zip(slots, completions) if c.finish_reason != "error"]
        progress.errors += len(completions) - len(good)
        progress.last_error = next((c.error for c in completions if c.finish_reason == "error" and c.error),
                                   progress.last_error)
        rows = self._post_hoc_rows(state, good) if self.settings.mode == "post_hoc" else self._rows(state, good)
        if not rows:
            return
        write_with_retry(lambda s: insert_or_ignore(s, Candidate, rows, UNIQUE), log_fn=self.log,
                         what=f"candidates of item {state.item_id}")
        for row in rows:
            state.done.add(row["sample_index"])
            for target, label in state.targets.items():
                if row["predicted"] is not None and row["predicted"] == label:
                    state.matches[target] += 1
            progress.written += 1
            progress.accepted += int(row["accepted"])
            progress.tokens += row["completion_tokens"]
        if not next_slots(state, self.settings):
            progress.finished.add(state.item_id)

    def _post_hoc_rows(self, state: ItemState, good: list[tuple[int, Completion]]) -> list[dict]:
        gold = state.targets["gold"]
        checked = verify(self.verifier, self.spec, state.fields, int(gold), [c for _, c in good], self.params)
        return [
            dict(run_id=self.run_id, item_id=state.item_id, target="gold", target_label=gold, sample_index=slot,
                 kind="post_hoc", reasoning=explanation, answer=verdict.answer, predicted=rating,
                 parse_ok=rating is not None, score_dist=None, accepted=accepted,
                 acceptance_mode="written" if rating is not None else None,
                 prompt_tokens=c.prompt_tokens + verdict.prompt_tokens,
                 completion_tokens=c.completion_tokens + verdict.completion_tokens, finish_reason=c.finish_reason)
            for (slot, c), (explanation, verdict, rating, accepted) in zip(good, checked)
        ]

    def _rows(self, state: ItemState, good: list[tuple[int, Completion]]) -> list[dict]:
        rows = []
        parses = [parse_rating(c.answer, self.spec.scale_min, self.spec.scale_max, prompt=state.prompt_text)
                  for _, c in good]
        dists: list[dict[str, float] | None] = [None] * len(good)
        if self.readout and good:
            # after the written rating's statement (its distribution), else after the whole trace
            tokenizer = getattr(self.engine, "tokenizer", None)
            rendered = render_chat(tokenizer, state.messages) if tokenizer is not None else ""
            traces = [readout_trace(rendered, c, p.start if p.ok else None) for (_, c), p in zip(good, parses)]
            dists = list(self.engine.score_readout([state.messages] * len(good), traces, self.levels, self.cue))
        gold = state.targets.get("gold")
        forced = self.settings.acceptance == "forced_cue"
        for (slot, c), parse, dist in zip(good, parses, dists):
            if parse.ok and parse.value is not None:
                predicted, mode = float(parse.value), "written"
            elif forced and dist:
                predicted, mode = float(argmax_score(dist)), "forced_cue"
            else:
                predicted, mode = None, None
            accepted = predicted is not None and gold is not None and predicted == gold
            rows.append(dict(
                run_id=self.run_id, item_id=state.item_id, target="gold", target_label=gold,
                sample_index=slot, kind="sampled", reasoning=c.reasoning, answer=c.answer,
                predicted=predicted, parse_ok=parse.ok, score_dist=dist, acceptance_mode=mode,
                accepted=accepted, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                finish_reason=c.finish_reason,
            ))
        return rows


def _chunk_size(engine: Engine) -> int:
    """Sequences per generate() call: several engine batches, small enough to cancel promptly."""
    return 4 * engine.config.concurrency()


def execute_run(run_id: int, *, engine: Engine | None = None, ctx: JobContext | None = None) -> str:
    """Sample until every item has what the run asks for; returns the run's final status."""
    run, spec, settings, states = _load(run_id)
    own_engine = engine is None
    engine = engine or make_engine(EngineConfig.model_validate(run.engine))
    params = SamplingParams(temperature=settings.temperature, top_p=settings.top_p,
                            max_tokens=settings.max_tokens, seed=settings.seed)
    verifier = make_engine(settings.verifier) if settings.verifier else None
    verify_params = SamplingParams(temperature=0.0, max_tokens=settings.max_tokens, seed=settings.seed)
    log = ctx.log if ctx else (lambda msg: None)
    writer = CandidateWriter(run_id, spec, settings, engine, verifier, verify_params, log=ctx.log if ctx else None)
    total = sum(settings.k - len(st.done) for st in states)
    progress = Progress(n_items=len(states), finished={st.item_id for st in states if not next_slots(st, settings)})
    log(f"run {run_id}: {len(states)} items, k={settings.k}, engine {engine.config.label()}, seed {settings.seed}, "
        f"acceptance {settings.acceptance}, "
        f"at most {total} samples to go"
        + (f", adaptive rounds of {settings.round_size} until {settings.target_accepted} accepted" if settings.adaptive else ""))
    status = "failed"  # until the loop ends by itself
    try:
        outcome = "completed"
        stalled = 0  # consecutive passes that wrote nothing (every request failed)
        while True:
            work = [(st, slots) for st in states if (slots := next_slots(st, settings))]
            if not work:
                break
            if stalled >= MAX_PASSES:
                outcome = "incomplete"
                log(f"run {run_id}: {sum(len(s) for _, s in work)} samples still failing after {MAX_PASSES} passes"
                    + (f"; last error: {progress.last_error}" if progress.last_error else ""))
                break
            written_before = progress.written
            chunk: list[tuple[ItemState, list[int]]] = []
            size = 0
            for st, slots in work:
                chunk.append((st, slots))
                size += len(slots)
                if size >= _chunk_size(engine):
                    _generate(engine, chunk, params, writer, progress, ctx)
                    chunk, size = [], 0
            if chunk:
                _generate(engine, chunk, params, writer, progress, ctx)
            stalled = stalled + 1 if progress.written == written_before else 0
        status = outcome
    except JobCancelled:
        status = "cancelled"
    finally:
        try:
            write_with_retry(lambda s: setattr(s.get(SamplingRun, run_id), "status", status), log_fn=writer.log,
                             what=f"status of run {run_id}", retries=2 * retry_settings()[0])
        except StoreBusyError:
            if status != "failed":  # else the error that failed the run is the one to report
                raise
        if own_engine:
            record_throughput(engine, progress.started, progress.tokens)  # for run estimates
            engine.close()
        if verifier is not None:
            verifier.close()
        if ctx and status != "failed":
            ctx.progress(progress.fraction, progress.text(), force=True)
    log(f"run {run_id} {status}: {progress.text()}")
    if status == "incomplete":
        _last_errors[run_id] = progress.last_error
    return status


def _generate(
    engine: Engine,
    chunk: list[tuple[ItemState, list[int]]],
    params: SamplingParams,
    writer: CandidateWriter,
    progress: Progress,
    ctx: JobContext | None,
) -> None:
    """One generate() call over a chunk of items; each request is written as it finishes."""
    if ctx:
        ctx.check_cancel()
    parts = [(st, run) for st, slots in chunk for run in _contiguous(slots)]
    seed = params.seed or 0  # a run's seed is drawn at creation when none was given
    requests = [GenerationRequest(messages=st.messages, n=len(run), seed=sample_seed(seed, st.external_id, run[0]))
                for st, run in parts]
    call_params = replace(params, seed=_call_seed([r.seed for r in requests]))

    def on_result(i: int, completions: list[Completion]) -> None:
        st, run = parts[i]
        writer.write(st, run, completions, progress)
        if ctx:
            ctx.progress(progress.fraction, progress.text())

    engine.generate(requests, call_params, on_result=on_result)


def run_sampling_job(ctx: JobContext) -> None:
    """Job handler for kind 'sample': params {"run_id": N}."""
    with session_scope() as s:
        run_id = take_run(s, SamplingRun, ctx, f"run {ctx.params['run_id']} is already being sampled by")
    status = execute_run(run_id, ctx=ctx)
    if status == "cancelled":
        raise JobCancelled()
    if status == "incomplete":
        last = _last_errors.pop(run_id, None)
        raise RuntimeError(f"some samples of run {run_id} kept failing after {MAX_PASSES} passes"
                           + (f" (last error: {last})" if last else "") + "; resume the run to retry them")
