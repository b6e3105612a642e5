"""Sampling throughput of the real job path against the bench path, embedded model, CPU.

* **job path**: ``judgeeye sample --project ID --k K --limit N --max-tokens T`` as a subprocess on a
  fresh temporary store holding the sample project (what a user types; the worker runs in that
  process). Timed from the start of the process to its exit: imports, model load, the store,
  sampling, the score read-out of every candidate and every write are inside. Tokens: the
  completion tokens its candidates recorded in the store.
* **bench path**: ``TransformersEngine.generate`` in this process on the job's requests (the same
  settings: the embedded engine's default preset with K, N and T on top, so the same items in
  the same order, rendered the same way), the model loaded beforehand (not timed), no read-out,
  no store.

Both print generated tokens per second; the ratio job / bench is the share of the engine's
throughput a user gets (target >= 0.8). The two alternate, ``--repeats`` times; medians are
printed. ``--default-run`` then times ``judgeeye sample --project ID`` with nothing else on a
fresh store (the embedded engine's default preset, the embedded demo), after printing what
``judgeeye sample --project ID --dry-run`` estimates for it there.

    .venv/bin/python bench/sample_job_path.py --repeats 3 --default-run
    .venv/bin/python bench/sample_job_path.py --items 5 --k 4 --max-tokens 48   # issue 14's example
    .venv/bin/python bench/sample_job_path.py --repeats 0 --default-run     # the default run only

The defaults (8 items, k=4, 96 tokens) are the embedded demo's size: the first run a newcomer
starts. The job path pays a fixed start-up (imports, model load: 7-14 s on 2 cores) that a
smaller run cannot spread, so its ratio is lower.

``--baseline DIR`` also times the job path of another copy of the code (``git archive COMMIT | tar
-x -C DIR``) in every repeat: the before/after of a change, in one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
try:  # the bench path runs with the OpenMP settings of a job worker (before torch is imported)
    from judgeeye.jobs import worker_environment

    os.environ.update(worker_environment())
except ImportError:  # code from before workers had their own settings
    pass


@dataclass
class Timed:
    seconds: float
    tokens: int
    note: str = ""

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def _store_env(folder: Path, code: Path) -> dict[str, str]:
    """The environment of a `judgeeye` subprocess on the store in ``folder``, running the code
    of the checkout ``code`` (run it in ``code`` too: ``python -m`` and ``-c`` put the working
    folder first on the path); OpenMP settings are left to that code (its job worker's own)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "PYTHONPATH")}
    env.update(JUDGEEYE_DATA_DIR=str(folder), JUDGEEYE_DB=f"sqlite:///{folder / 'judgeeye.db'}",
               PYTHONPATH=str(code))
    return env


def fresh_store(code: Path) -> tuple[Path, int]:
    """A temporary store with the sample project (set up by a subprocess, not timed)."""
    folder = Path(tempfile.mkdtemp(prefix="je-jobpath-"))
    out = subprocess.run(
        [sys.executable, "-c", "from judgeeye.projects import ensure_sample_project as e; print(e())"],
        env=_store_env(folder, code), cwd=code, capture_output=True, text=True, check=True)
    return folder, int(out.stdout.strip().splitlines()[-1])


@dataclass
class RunSummary:
    tokens: int  # completion tokens of its candidates
    settings: dict
    items: int
    candidates: int
    accepted: int
    startup_s: float | None = None  # process start to the first batch, as the run recorded it
    outside_s: float | None = None  # the sampling loop's time outside the decoder (read-out, writes)


def run_summary(folder: Path) -> RunSummary:
    """What the store's last run holds."""
    from sqlalchemy import func, select

    from judgeeye.engines import TransformersConfig
    from judgeeye.sampling.estimate import recorded_throughput
    from judgeeye.store import Candidate, SamplingRun, session_scope
    from judgeeye.store.db import dispose_engines

    with session_scope(f"sqlite:///{folder / 'judgeeye.db'}") as s:
        run = s.scalars(select(SamplingRun).order_by(SamplingRun.id.desc())).first()
        if run is None:
            return RunSummary(0, {}, 0, 0, 0)
        tokens, items, n, accepted = s.execute(
            select(func.coalesce(func.sum(Candidate.completion_tokens), 0),
                   func.count(func.distinct(Candidate.item_id)), func.count(Candidate.id),
                   func.count(Candidate.id).filter(Candidate.accepted.is_(True)))
            .where(Candidate.run_id == run.id)).one()
        settings = dict(run.settings)
        measured = recorded_throughput(s, TransformersConfig())
    dispose_engines()
    if measured is None or measured.source != "runs":
        return RunSummary(int(tokens), settings, int(items), int(n), int(accepted))
    return RunSummary(int(tokens), settings, int(items), int(n), int(accepted), measured.startup_s,
                      measured.overhead_s_per_token * int(tokens))


def judgeeye(folder: Path, project: int, args: list[str], code: Path = REPO,
             timeout: float | None = None) -> tuple[float, str]:
    """``judgeeye sample --project ID ARGS`` on the store in ``folder``: (seconds, a note:
    empty, or how it failed)."""
    cmd = [sys.executable, "-m", "judgeeye.cli", "sample", "--project", str(project), *args]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=_store_env(folder, code), cwd=code, capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, f"stopped after {timeout:.0f} s"
    seconds = time.perf_counter() - start
    return seconds, (proc.stdout if proc.returncode == 0
                     else f"exit {proc.returncode}: {proc.stderr[-400:]}")


def job_path(args: list[str], code: Path = REPO) -> Timed:
    """One timed `judgeeye sample` on a fresh store."""
    folder, project = fresh_store(code)
    seconds, out = judgeeye(folder, project, args, code)
    summary = run_summary(folder)
    note = out if out.startswith("exit ") else (
        f"(start-up {summary.startup_s:.1f} s, outside the decoder {summary.outside_s:.1f} s)"
        if summary.startup_s is not None and summary.outside_s is not None else "")
    shutil.rmtree(folder, ignore_errors=True)
    return Timed(seconds, summary.tokens, note)


def job_settings(items: int, k: int, max_tokens: int, seed: int):  # type: ignore[no-untyped-def]
    """The settings `judgeeye sample --k K --limit N --max-tokens T --seed S` uses with the
    embedded engine: its default preset (the embedded demo) with these on top."""
    from judgeeye.engines import TransformersConfig
    from judgeeye.sampling import default_preset, preset_settings

    return preset_settings(default_preset(TransformersConfig()), k=k, limit=items,
                           max_tokens=max_tokens, seed=seed)


def bench_calls(settings, batch_size: int) -> list:  # type: ignore[no-untyped-def]
    """The job path's ``generate`` calls: the items it samples, in its order, rendered, seeded
    and chunked as its runner does (:func:`judgeeye.sampling.runner.execute_run`), so that both
    paths draw the same tokens. [(requests, the call's seed)]."""
    from judgeeye.codebook import current_spec, render_prompt
    from judgeeye.engines import GenerationRequest, TransformersConfig
    from judgeeye.projects import ensure_sample_project
    from judgeeye.sampling import run_items
    from judgeeye.sampling.runner import _call_seed, sample_seed
    from judgeeye.sampling.runs import create_run
    from judgeeye.store import session_scope

    folder = Path(tempfile.mkdtemp(prefix="je-benchpath-"))
    url = f"sqlite:///{folder / 'judgeeye.db'}"
    project = ensure_sample_project(url)
    with session_scope(url) as s:
        run = create_run(s, project, TransformersConfig(), settings)
        spec = current_spec(s, project)
        requests = [GenerationRequest(render_prompt(spec, it.fields), n=settings.k,
                                      seed=sample_seed(settings.seed, it.external_id, 0))
                    for it in run_items(s, run)]
    shutil.rmtree(folder, ignore_errors=True)
    calls, chunk = [], []
    for request in requests:  # a call once it holds 4 engine batches (the runner's _chunk_size)
        chunk.append(request)
        if sum(r.n for r in chunk) >= 4 * batch_size:
            calls.append(chunk)
            chunk = []
    calls += [chunk] if chunk else []
    return [(c, _call_seed([r.seed for r in c])) for c in calls]


def default_run(timeout: float) -> None:
    """`judgeeye sample --project ID` on a fresh store with nothing else, after the estimate
    `--dry-run` prints for it there (which measures this machine first: nothing is recorded yet)."""
    folder, project = fresh_store(REPO)
    seconds, out = judgeeye(folder, project, ["--dry-run"])
    estimate = [ln.strip() for ln in out.splitlines() if ln.strip()]
    print(f"estimate before the default run (judgeeye sample --project ID --dry-run, {seconds:.0f} s "
          "with its calibration):", flush=True)
    for line in estimate:
        print(f"  {line}", flush=True)
    seconds, out = judgeeye(folder, project, [], timeout=timeout)
    run = run_summary(folder)
    shutil.rmtree(folder, ignore_errors=True)
    shown = ", ".join(f"{k}={run.settings[k]}" for k in ("k", "max_tokens", "limit", "order", "acceptance")
                      if k in run.settings)
    print(f"default run (judgeeye sample --project ID: {shown}): {run.items} items, {run.candidates} "
          f"candidates, {run.accepted} accepted, {run.tokens} tokens in {seconds:.0f} s "
          f"({seconds / 60:.1f} min, {run.tokens / seconds:.1f} tok/s; target <= 5 min)"
          + (f" {out}" if out.startswith(("exit ", "stopped")) else ""), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # default: the embedded demo preset's own size (what a newcomer's first run samples)
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--seed", type=int, default=1, help="both paths draw the same tokens with it")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--default-run", action="store_true",
                    help="also time `judgeeye sample --project ID` with the default settings")
    ap.add_argument("--default-timeout", type=float, default=1800.0,
                    help="stop the default run after this many seconds")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout (e.g. the code before a change): its job path is "
                         "timed too, in every repeat, on the same items")
    args = ap.parse_args()

    import torch
    import transformers

    from judgeeye.engines import SamplingParams, TransformersConfig
    from judgeeye.engines.transformers_engine import TransformersEngine

    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs (load average {load:.1f} at the start), torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset')} in this process), transformers "
          f"{transformers.__version__}", flush=True)
    job_args = ["--k", str(args.k), "--limit", str(args.items), "--max-tokens", str(args.max_tokens),
                "--seed", str(args.seed)]
    ratios, jobs, benches = [], [], []
    if args.repeats > 0:
        settings = job_settings(args.items, args.k, args.max_tokens, args.seed)
        engine = TransformersEngine(TransformersConfig())
        calls = bench_calls(settings, engine.config.batch_size)
        params = SamplingParams(temperature=settings.temperature, top_p=settings.top_p,
                                max_tokens=settings.max_tokens)
        prompts = [len(engine.encode_messages(r.messages)) for c, _ in calls for r in c]
        print(f"{len(prompts)} items (mean prompt {statistics.mean(prompts):.0f} tokens) x k={args.k} x "
              f"{args.max_tokens} tokens, seed {args.seed}; job path: judgeeye sample "
              f"{' '.join(job_args)}; bench path: engine.generate ({engine.decode_path} decoder, "
              f"{len(calls)} call{'s' if len(calls) > 1 else ''})", flush=True)

        def bench() -> Timed:
            first = len(engine.stats)
            start = time.perf_counter()
            tokens = 0
            for requests, seed in calls:
                out = engine.generate(requests, replace(params, seed=seed))
                tokens += sum(c.completion_tokens for cs in out for c in cs)
            seconds = time.perf_counter() - start
            stats = engine.stats[first:]
            note = (f"(prefill {sum(s.prefill_s for s in stats):.1f} s, decode "
                    f"{sum(s.decode_s for s in stats):.1f} s, {len(stats)} batches)")
            return Timed(seconds, tokens, note)

        names = ["job", "bench"] + (["baseline"] if args.baseline else [])
        baselines = []
        for r in range(args.repeats):
            pair = {}
            for name in (names if r % 2 == 0 else names[::-1]):
                if name == "bench":
                    pair[name] = bench()
                else:
                    pair[name] = job_path(job_args, code=args.baseline if name == "baseline"
                                          else REPO)
            jobs.append(pair["job"])
            benches.append(pair["bench"])
            ratios.append(pair["job"].tok_s / pair["bench"].tok_s)
            if args.baseline:
                baselines.append(pair["baseline"])
            for name in names:
                t = pair[name]
                print(f"  repeat {r + 1} {name:>8}: {t.seconds:7.1f} s  {t.tokens:5d} tokens  "
                      f"{t.tok_s:6.1f} tok/s {t.note}", flush=True)
        engine.close()
        print(f"median: job path {statistics.median(t.tok_s for t in jobs):.1f} tok/s, bench path "
              f"{statistics.median(t.tok_s for t in benches):.1f} tok/s; ratio job/bench "
              f"{statistics.median(ratios):.2f} (target >= 0.8)", flush=True)
        if baselines:
            print(f"baseline job path ({args.baseline}): "
                  f"{statistics.median(t.tok_s for t in baselines):.1f} tok/s; this checkout / "
                  f"baseline {statistics.median(j.tok_s / b.tok_s for j, b in zip(jobs, baselines, strict=True)):.2f}",
                  flush=True)
    if args.default_run:
        default_run(args.default_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
