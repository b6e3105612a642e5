"""Sampler overhead: the whole rejection sampler (prompts, engine, parsing, store writes) against
a bare `model.generate` loop on the same prompts, batch size and token budget, CPU, embedded model.

Both sides run in one process, alternating, `--repeats` times; the script prints each time and
the median ratio sampler / bare. The bare loop batches `n` copies of each prompt the usual way
(`num_return_sequences`); the sampler's engine prefills each prompt once and forks the cache, so
a ratio below 1 is possible on long prompts.

    .venv/bin/python bench/sampler_overhead.py --items 6 --k 4 --max-tokens 32 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=6)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ["JUDGEEYE_DATA_DIR"] = tempfile.mkdtemp(prefix="je-bench-")
    os.environ.pop("JUDGEEYE_DB", None)

    import torch

    from judgeeye.auth import Actor
    from judgeeye.codebook import current_spec, render_prompt
    from judgeeye.engines import TransformersConfig
    from judgeeye.engines.transformers_engine import TransformersEngine
    from judgeeye.projects import ensure_sample_project
    from judgeeye.sampling import SamplingSettings, run_items
    from judgeeye.sampling.launch import launch_run
    from judgeeye.sampling.runner import execute_run
    from judgeeye.store import SamplingRun, session_scope

    project_id = ensure_sample_project()
    config = TransformersConfig(batch_size=args.k)
    engine = TransformersEngine(config)
    settings = SamplingSettings(k=args.k, max_tokens=args.max_tokens, limit=args.items, readout=False)
    probe_id, _ = launch_run(project_id, config, settings, actor=Actor.system(), start=False)
    with session_scope() as s:
        spec = current_spec(s, project_id)
        prompts = [engine.encode_messages(render_prompt(spec, it.fields))
                   for it in run_items(s, s.get(SamplingRun, probe_id))]
    model, pad = engine.model, engine.pad_id
    print(f"{len(prompts)} items, mean prompt {statistics.mean(map(len, prompts)):.0f} tokens, "
          f"k={args.k}, max_tokens={args.max_tokens}, threads={torch.get_num_threads()}")

    def bare() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for ids in prompts:
                x = torch.tensor([ids])
                model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=True,
                               temperature=1.0, top_k=0, max_new_tokens=args.max_tokens,
                               num_return_sequences=args.k, pad_token_id=pad)
        return time.perf_counter() - start

    def sampler() -> float:
        run_id, _ = launch_run(project_id, config, settings, actor=Actor.system(), start=False)
        start = time.perf_counter()
        execute_run(run_id, engine=engine)
        return time.perf_counter() - start

    ratios = []
    for r in range(args.repeats):
        b, s_ = bare(), sampler()
        ratios.append(s_ / b)
        print(f"repeat {r + 1}: bare generate {b:.1f} s · sampler {s_:.1f} s · ratio {s_ / b:.3f}")
    print(f"median ratio sampler/bare: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
