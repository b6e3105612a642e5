"""Adaptive rounds against fixed k: completion tokens generated and utilization reached.

Runs a fixed-k run and an adaptive run (rounds of r, stop an item at m accepted) over the same
HANNA complexity items with the same engine in one process, then prints both runs' tokens and
utilization (share of items with an accepted trace) and the token ratio adaptive / fixed.

    .venv/bin/python bench/adaptive_vs_fixed.py --items 100 --k 16 --round 4 --accepted 1
    .venv/bin/python bench/adaptive_vs_fixed.py --engine openai:x@http://127.0.0.1:8080/v1 ...
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--round", type=int, default=4)
    ap.add_argument("--accepted", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--engine", default="embedded", help="embedded · hf:MODEL · openai:MODEL@URL")
    ap.add_argument("--readout", action="store_true",
                    help="rate every trace by the score read-out too (local engines)")
    args = ap.parse_args()
    os.environ["JUDGEEYE_DATA_DIR"] = tempfile.mkdtemp(prefix="je-bench-")
    os.environ.pop("JUDGEEYE_DB", None)

    from judgeeye.auth import Actor
    from judgeeye.engines import EngineConfig, make_engine
    from judgeeye.projects import ensure_sample_project
    from judgeeye.sampling import SamplingSettings, run_stats
    from judgeeye.sampling.launch import launch_run
    from judgeeye.sampling.runner import execute_run
    from judgeeye.store import session_scope

    project_id = ensure_sample_project()
    config = EngineConfig.parse(args.engine, batch_size=args.k)
    engine = make_engine(config)
    common = dict(k=args.k, max_tokens=args.max_tokens, limit=args.items, readout=args.readout,
                  splits=["train", "validation", "test"])
    results = {}
    for name, settings in (
        ("fixed", SamplingSettings(**common)),
        ("adaptive", SamplingSettings(**common, round_size=args.round, target_accepted=args.accepted)),
    ):
        run_id, _ = launch_run(project_id, config, settings, actor=Actor.system(), start=False)
        started = time.perf_counter()
        execute_run(run_id, engine=engine)
        print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
        with session_scope() as s:
            st = run_stats(s, run_id)
        results[name] = st
        print(f"{name:9s} items {st.n_items} · candidates {st.n_candidates} · completion tokens "
              f"{st.completion_tokens} · utilization {st.items_with_accepted / max(st.n_items, 1):.1%}")
    fixed, adaptive = results["fixed"], results["adaptive"]
    print(f"tokens adaptive/fixed: {adaptive.completion_tokens / max(fixed.completion_tokens, 1):.3f} "
          f"(saved {fixed.completion_tokens - adaptive.completion_tokens} tokens) at utilization "
          f"{adaptive.items_with_accepted / max(adaptive.n_items, 1):.1%} vs "
          f"{fixed.items_with_accepted / max(fixed.n_items, 1):.1%}")


if __name__ == "__main__":
    main()
