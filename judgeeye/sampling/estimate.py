"""Before a sampling run starts: about how many tokens it generates and how long it takes here.

Time model: ``startup + prompt tokens / prefill rate + candidates x max tokens / decode rate +
generated tokens x overhead``. Each item's prompt is prefilled once per pass (its k candidates
share it, and so does the score read-out); a batch decodes until its longest candidate stops,
so decoding is paid for the token budget; the overhead per generated token is everything else
of the sampling loop (the read-out over each trace, parsing, store writes). Where an engine does
not report prefill and decode apart (``generate``, servers), the decode rate covers both.

The rates are measured on this host for this engine (model, adapter, device, batch size or
concurrency): each sampling run records them when it ends (:func:`record_throughput`, median of
the last five runs), and where none is recorded :func:`calibrate` measures one prompt and a few
decode steps (then recorded too). Tokens per candidate and acceptance come from the project's
earlier candidates (none: every candidate uses its whole budget, adaptive runs use all k).
"""

from __future__ import annotations

import logging
import re
import socket
import statistics
import time
from dataclasses import asdict, dataclass
from math import comb
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from judgeeye.codebook import get_version, render_prompt, to_spec
from judgeeye.codebook.versions import current_version
from judgeeye.engines import Engine, EngineConfig
from judgeeye.sampling.runs import SamplingSettings, run_items
from judgeeye.store import Candidate, Project, SamplingRun, session_scope, write_with_retry

log = logging.getLogger(__name__)

#: recorded runs kept per engine and host (their median is used)
KEEP_RUNS = 5
#: prompt characters per token where no candidate of the project tells
CHARS_PER_TOKEN = 4.0


@dataclass
class Throughput:
    """What one engine does per second on this host."""

    decode_tok_s: float  # candidate-tokens (candidates x steps) per second of decoding
    prefill_tok_s: float | None  # prompt tokens per second; None: inside decode_tok_s
    overhead_s_per_token: float  # read-out, parsing, writes, per generated token
    startup_s: float  # process start to the first batch (imports, model load, store)
    source: str  # "runs" or "calibration"
    runs: int = 0

    def describe(self) -> str:
        if self.source == "calibration":
            return "measured by a short calibration on this machine"
        return f"measured on this machine by the last {self.runs} run{'s' if self.runs != 1 else ''}"


@dataclass
class RunEstimate:
    items: int
    candidates: float  # expected
    max_candidates: int
    tokens: float  # expected generated tokens
    max_tokens: int  # every candidate using its whole budget
    prompt_tokens: float  # prefilled
    seconds: float | None
    throughput: Throughput | None

    def text(self) -> str:
        """``about 6,100 tokens, about 4 min on this machine`` (or why the time is unknown)."""
        tokens = f"about {_round(self.tokens):,} tokens"
        if self.max_candidates > self.candidates + 0.5:
            tokens += f" (at most {self.max_tokens:,})"
        if self.seconds is None:
            return f"{tokens}; time unknown until this engine has run here once"
        minutes = self.seconds / 60
        when = f"about {minutes:.0f} min" if minutes >= 2 else f"about {max(self.seconds, 1):.0f} s"
        return f"{tokens}, {when} on this machine"


def _round(x: float) -> int:
    if x < 1000:
        return int(round(x))
    step = 10 ** (len(str(int(x))) - 2)
    return int(round(x / step) * step)


# ---------------------------------------------------------------------------- recording


def engine_key(config: EngineConfig) -> str:
    """The stats-cache key of one engine's throughput on this host."""
    where = "/".join(str(getattr(config, name, "")) for name in ("device", "dtype"))
    return f"throughput:{config.label()}|x{config.concurrency()}/{where}@{socket.gethostname()}"


def _stored(session: Session, config: EngineConfig) -> dict[str, Any]:
    from judgeeye.evaluate import cache  # lazily: the evaluation package is heavy for a worker

    return cache.read(session, engine_key(config), {"layout": 1}) or {}


def _store(config: EngineConfig, update: dict[str, Any]) -> None:
    from judgeeye.evaluate import cache

    def write(session: Session) -> None:
        payload = {**_stored(session, config), **update}
        cache.write(session, engine_key(config), {"layout": 1}, payload)

    write_with_retry(write, what="engine throughput")


def _process_age() -> float:
    """Seconds since this process started."""
    import psutil

    return max(0.0, time.time() - psutil.Process().create_time())


def measured(engine: Engine, loop_s: float, generated: int, startup_s: float) -> Throughput | None:
    """Throughput from one sampling loop: the engine's batch statistics (where it keeps them),
    the loop's wall time and the tokens it generated."""
    stats = list(getattr(engine, "stats", []) or [])
    if generated <= 0 or loop_s <= 0:
        return None
    steps = sum(s.batch * s.new_tokens for s in stats)
    decode_s = sum(s.decode_s for s in stats)
    prefill_s = sum(s.prefill_s for s in stats)
    prompts = sum(int(s.meta.get("prompt_tokens", 0)) for s in stats)
    if steps and decode_s > 0 and prefill_s > 0 and prompts:
        busy = sum(s.total_s for s in stats)
        return Throughput(decode_tok_s=steps / decode_s, prefill_tok_s=prompts / prefill_s,
                          overhead_s_per_token=max(0.0, loop_s - busy) / generated,
                          startup_s=startup_s, source="runs")
    return Throughput(decode_tok_s=(steps or generated) / loop_s, prefill_tok_s=None,
                      overhead_s_per_token=0.0, startup_s=startup_s, source="runs")


def record_throughput(engine: Engine, loop_started: float, generated: int) -> None:
    """At the end of a sampling run in this process: record what the engine did since
    ``loop_started`` (``time.monotonic()``), ``generated`` tokens. Never raises: a run that
    cannot record its speed still succeeded."""
    try:
        loop_s = time.monotonic() - loop_started
        found = measured(engine, loop_s, generated, max(0.0, _process_age() - loop_s))
        if found is None:
            return
        with session_scope() as session:
            runs = list(_stored(session, engine.config).get("runs", []))
        _store(engine.config, {"runs": (runs + [asdict(found)])[-KEEP_RUNS:]})
    except Exception as exc:
        log.warning("could not record the engine's throughput: %s: %s", type(exc).__name__, exc)


def recorded_throughput(session: Session, config: EngineConfig) -> Throughput | None:
    """The median of this engine's recorded runs on this host, else its calibration, else None."""
    payload = _stored(session, config)
    runs = [Throughput(**r) for r in payload.get("runs", [])]
    if runs:
        prefill = [r.prefill_tok_s for r in runs if r.prefill_tok_s]
        return Throughput(
            decode_tok_s=statistics.median(r.decode_tok_s for r in runs),
            prefill_tok_s=statistics.median(prefill) if len(prefill) == len(runs) else None,
            overhead_s_per_token=statistics.median(r.overhead_s_per_token for r in runs),
            startup_s=statistics.median(r.startup_s for r in runs), source="runs", runs=len(runs))
    if payload.get("calibration"):
        return Throughput(**payload["calibration"])
    return None


def calibrate(config: EngineConfig, messages: list[dict[str, str]], *, rows: int, levels: list[int],
              cue: str, max_tokens: int = 16) -> Throughput:
    """A short measurement in this process: load the engine, prefill one real prompt, decode
    ``max_tokens`` steps for ``rows`` candidates, read out their ratings. Recorded for later
    estimates (until a real run records its own figures).

    It runs as a job would (:func:`judgeeye.jobs.use_worker_environment`), after a two-token
    warm-up at the same width: a process's first forward passes pay one-off set-up costs that a
    run spreads over all its batches. Without both, `judgeeye sample --dry-run` on 2 busy cores
    measured the embedded model's decode at 5.8 tokens/s and estimated 17 min for a run that
    took 2.7; with them, 43 tokens/s and 3 min for 2.6 (``bench/sample_job_path.py``)."""
    from judgeeye.engines import GenerationRequest, SamplingParams, make_engine
    from judgeeye.jobs import use_worker_environment

    use_worker_environment()
    started = time.monotonic()
    engine = make_engine(config)
    try:
        startup = _process_age()
        engine.generate([GenerationRequest([{"role": "user", "content": "Hello."}], n=max(1, rows))],
                        SamplingParams(max_tokens=2))
        warmup = getattr(engine, "stats", None)
        if isinstance(warmup, list):
            warmup.clear()  # the warm-up is not measured
        loop = time.monotonic()
        out = engine.generate([GenerationRequest(messages, n=max(1, rows))],
                              SamplingParams(max_tokens=max_tokens))[0]
        generated = sum(c.completion_tokens for c in out)
        if engine.supports_readout:
            engine.score_readout([messages] * len(out), [c.text for c in out], levels, cue)
        found = measured(engine, time.monotonic() - loop, generated, startup)
    finally:
        engine.close()
    if found is None:
        raise RuntimeError("the calibration generated nothing; no throughput to measure")
    found.source = "calibration"
    log.info("calibrated %s in %.1f s", config.label(), time.monotonic() - started)
    _store(config, {"calibration": asdict(found)})
    return found


# ----------------------------------------------------------------------------- estimating


@dataclass
class ProjectHistory:
    """What the project's earlier candidates say about a planned run."""

    prompt_tokens: float | None  # per item (None: no candidate yet)
    lengths: list[tuple[int, str]]  # (completion tokens, finish reason) of recent candidates
    acceptance: float | None


def project_history(session: Session, project_id: int, limit: int = 2000) -> ProjectHistory:
    rows = session.execute(
        select(Candidate.prompt_tokens, Candidate.completion_tokens, Candidate.finish_reason,
               Candidate.accepted)
        .join(SamplingRun, SamplingRun.id == Candidate.run_id)
        .where(SamplingRun.project_id == project_id, Candidate.kind == "sampled")
        .order_by(Candidate.id.desc()).limit(limit)).all()
    if not rows:
        return ProjectHistory(None, [], None)
    prompts = [r[0] for r in rows if r[0]]
    return ProjectHistory(prompt_tokens=statistics.fmean(prompts) if prompts else None,
                          lengths=[(int(r[1]), str(r[2] or "")) for r in rows],
                          acceptance=sum(bool(r[3]) for r in rows) / len(rows))


def budget_share(lengths: list[tuple[int, str]], max_tokens: int) -> float:
    """The expected share of the token budget a candidate uses: an earlier candidate that stopped
    by itself used what it used; one cut at a limit is taken to go on to this budget."""
    if not lengths:
        return 1.0
    used = [min(n, max_tokens) if reason == "stop" or n >= max_tokens else max_tokens
            for n, reason in lengths]
    return statistics.fmean(used) / max_tokens


def expected_candidates(settings: SamplingSettings, acceptance: float | None) -> tuple[float, float]:
    """(candidates, rounds) expected per item. Fixed k: (k, 1). Adaptive: rounds of
    ``round_size`` until ``target_accepted`` are accepted or k are drawn, each candidate accepted
    with the project's past rate (unknown: all k)."""
    k = settings.k
    if not settings.adaptive:
        return float(k), 1.0
    size = int(settings.round_size or k)
    if acceptance is None:
        return float(k), float(-(-k // size))
    p = min(max(acceptance, 0.0), 1.0)
    alive = {0: 1.0}  # accepted so far (below the target) -> probability, items still sampling
    drawn, candidates, rounds = 0, 0.0, 0.0
    while alive and drawn < k:
        n = min(size, k - drawn)
        share = sum(alive.values())
        candidates, rounds, drawn = candidates + n * share, rounds + share, drawn + n
        after: dict[int, float] = {}
        for accepted, prob in alive.items():
            for hits in range(n + 1):
                if accepted + hits < settings.target_accepted:
                    after[accepted + hits] = after.get(accepted + hits, 0.0) + \
                        prob * comb(n, hits) * p ** hits * (1 - p) ** (n - hits)
        alive = {a: v for a, v in after.items() if v > 1e-12}
    return candidates, rounds


def estimate_run(session: Session, project_id: int, config: EngineConfig, settings: SamplingSettings,
                 codebook_version: int | None = None, *, throughput: Throughput | None = None
                 ) -> RunEstimate:
    """Tokens and time of a planned run, from what this store has measured (see the module
    docstring); ``seconds`` is None when this engine has no recorded throughput on this host."""
    if session.get(Project, project_id) is None:
        raise LookupError(f"no project {project_id}")
    planned = SamplingRun(project_id=project_id, splits=list(settings.splits),
                          settings=settings.model_dump(mode="json"))
    items = run_items(session, planned)
    history = project_history(session, project_id)
    prompt_tokens = history.prompt_tokens
    if prompt_tokens is None and items:
        codebook = (get_version(session, project_id, codebook_version) if codebook_version
                    else current_version(session, project_id))
        spec = to_spec(codebook, session.get(Project, project_id)) if codebook is not None else None
        if spec is not None:
            chars = [sum(len(m["content"]) for m in render_prompt(spec, it.fields)) for it in items[:50]]
            prompt_tokens = statistics.fmean(chars) / CHARS_PER_TOKEN
    per_item, passes = expected_candidates(settings, history.acceptance)
    n = len(items)
    share = budget_share(history.lengths, settings.max_tokens)
    estimate = RunEstimate(
        items=n, candidates=n * per_item, max_candidates=n * settings.k,
        tokens=n * per_item * settings.max_tokens * share,
        max_tokens=n * settings.k * settings.max_tokens,
        prompt_tokens=n * passes * (prompt_tokens or 0.0), seconds=None, throughput=None)
    found = throughput or recorded_throughput(session, config)
    if found is not None and n:
        seconds = found.startup_s + estimate.candidates * settings.max_tokens / found.decode_tok_s
        if found.prefill_tok_s:
            seconds += estimate.prompt_tokens / found.prefill_tok_s
        seconds += estimate.tokens * found.overhead_s_per_token
        estimate.seconds, estimate.throughput = seconds, found
    return estimate


def planned_prompt(session: Session, project_id: int, settings: SamplingSettings,
                   codebook_version: int | None = None) -> list[dict[str, str]] | None:
    """The first planned item's prompt (what a calibration measures), or None."""
    planned = SamplingRun(project_id=project_id, splits=list(settings.splits),
                          settings=settings.model_copy(update={"limit": 1}).model_dump(mode="json"))
    items = run_items(session, planned)
    codebook = (get_version(session, project_id, codebook_version) if codebook_version
                else current_version(session, project_id))
    if not items or codebook is None:
        return None
    return render_prompt(to_spec(codebook, session.get(Project, project_id)), items[0].fields)


def estimate_or_calibrate(project_id: int, config: EngineConfig, settings: SamplingSettings,
                          codebook_version: int | None = None) -> RunEstimate:
    """:func:`estimate_run`, calibrating first (in this process, about a minute at most) when
    this engine has no recorded throughput here: for ``judgeeye sample --dry-run``."""
    from judgeeye.ratings import answer_cue

    with session_scope() as session:
        estimate = estimate_run(session, project_id, config, settings, codebook_version)
        if estimate.seconds is not None or not estimate.items:
            return estimate
        messages = planned_prompt(session, project_id, settings, codebook_version)
        codebook = (get_version(session, project_id, codebook_version) if codebook_version
                    else current_version(session, project_id))
        if codebook is None:  # nothing to prompt with: no time to measure
            return estimate
        spec = to_spec(codebook, session.get(Project, project_id))
    rows = min(settings.k * max(1, estimate.items), config.concurrency())
    calibrate(config, messages or [], rows=rows, levels=list(range(spec.scale_min, spec.scale_max + 1)),
              cue=answer_cue(spec.output_format))
    with session_scope() as session:
        return estimate_run(session, project_id, config, settings, codebook_version)


def calibrate_in_subprocess(project: str, config: EngineConfig, settings: SamplingSettings,
                            codebook_version: int | None = None, timeout: float = 900) -> str | None:
    """Calibrate in a separate process, as ``judgeeye sample ... --dry-run`` (the app never loads
    a model itself); returns None when it worked, else its last error line."""
    import shlex
    import subprocess
    import sys

    from judgeeye.jobs import worker_environment
    from judgeeye.sampling.launch import cli_command

    args = shlex.split(cli_command(project, config, settings, codebook_version))[1:]
    args += ["--concurrency" if config.kind == "openai" else "--batch-size", str(config.concurrency())]
    try:
        done = subprocess.run([sys.executable, "-m", "judgeeye.cli", *args, "--dry-run"],
                              capture_output=True, text=True, timeout=timeout,
                              env=worker_environment(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"the measurement took longer than {timeout:.0f} s"
    if done.returncode == 0:
        return None
    lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
    last = lines[-1] if lines else f"exit status {done.returncode}"
    return re.sub(r"^(error: |[A-Za-z_.]*(Error|Exception): )", "", last)


__all__ = [
    "ProjectHistory", "RunEstimate", "Throughput", "budget_share", "calibrate",
    "calibrate_in_subprocess", "engine_key", "estimate_or_calibrate", "estimate_run",
    "expected_candidates", "planned_prompt", "project_history", "record_throughput",
    "recorded_throughput",
]
