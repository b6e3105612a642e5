"""vLLM's decode throughput at ``gpu_throughput.py``'s shapes, for the same table (GPU only).

vLLM pins its own torch build, so it runs in its own environment and process; run this script
and ``gpu_throughput.py`` on the same GPU machine, one after the other, and compare the rows
(see bench/README.md). Same models as there: Qwen2.5-0.5B / 1.5B configs (``CONFIGS`` in
``gpu_throughput.py``) with random weights (vLLM's ``load_format="dummy"``: nothing is
downloaded), bf16; every sequence gets a ``--prompt``-token random prompt and generates exactly
``--new`` tokens (``ignore_eos``), temperature 1, top-p 1, no detokenization. Per batch size: one
warm-up call, then the median of ``--repeats`` calls of ``LLM.generate``; tok/s = batch x new /
wall time (prefill included, as in ``gpu_throughput.py``). ``--shared-k K`` adds, per batch
size B, B/K prompts with ``SamplingParams(n=K)`` (K samples sharing a prompt, as the vllm
engine sends an item's candidates). Not yet run: written for the next GPU session.

    for m in qwen2.5-1.5b qwen2.5-0.5b; do   # one process per model: vLLM holds its GPU memory
        python bench/vllm_throughput.py --model $m --shared-k 16 --out $OUT; done
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_throughput import CONFIGS  # noqa: E402  (stdlib-only at import time)


def model_dir(name: str) -> str:
    """A folder with just the model's config.json (weights are vLLM's dummy ones)."""
    values = dict(CONFIGS[name])
    folder = Path(tempfile.mkdtemp(prefix=f"vllm-{name}-"))
    (folder / "config.json").write_text(json.dumps({
        **values, "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "torch_dtype": "bfloat16",
        "hidden_act": "silu", "max_window_layers": values["num_hidden_layers"],
    }))
    return str(folder)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-0.5b", choices=sorted(CONFIGS))
    ap.add_argument("--batches", default="1,8,16,32,64,128,256")
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shared-k", type=int, default=0, help="also B/K prompts x n=K per batch size B")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()

    import torch
    import vllm
    from vllm import LLM, SamplingParams

    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU")
        return 2
    device = torch.cuda.get_device_name()
    print(f"device {device}; vllm {vllm.__version__}; torch {torch.__version__}", flush=True)
    rows = []
    name = args.model
    llm = LLM(model=model_dir(name), load_format="dummy", skip_tokenizer_init=True, dtype="bfloat16",
              max_model_len=args.prompt + args.new + 16, gpu_memory_utilization=args.gpu_memory_utilization,
              enable_prefix_caching=True, seed=0)
    vocab = CONFIGS[name]["vocab_size"]
    gen = torch.Generator().manual_seed(0)
    for b in [int(x) for x in args.batches.split(",") if x]:
        shapes = [("distinct", b, 1)]
        if args.shared_k and b >= args.shared_k and b % args.shared_k == 0:
            shapes.append((f"{b // args.shared_k}x n={args.shared_k}", b // args.shared_k, args.shared_k))
        for label, prompts, n in shapes:
            ids = torch.randint(100, vocab - 100, (prompts, args.prompt), generator=gen).tolist()
            batch = [{"prompt_token_ids": p} for p in ids]
            params = SamplingParams(n=n, temperature=1.0, top_p=1.0, max_tokens=args.new, ignore_eos=True,
                                    detokenize=False, seed=0)
            llm.generate(batch, params, use_tqdm=False)  # warm-up (graphs, allocator)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = llm.generate(batch, params, use_tqdm=False)
                times.append(time.perf_counter() - t0)
            made = sum(len(o.token_ids) for r in out for o in r.outputs)
            assert made == b * args.new, f"expected {b * args.new} tokens, got {made}"
            total = statistics.median(times)
            rows.append({"model": name, "batch": b, "shape": label, "tok_s": b * args.new / total, "seconds": total})
            print(f"{name:14s} batch {b:4d} {label:14s} {b * args.new / total:10.0f} tok/s ({total:.3f} s)",
                  flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"vllm_throughput_{args.model}.json").write_text(json.dumps({"device": device, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
