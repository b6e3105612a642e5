"""LoRA SFT throughput: JudgeEye's training settings (with and without packing) vs TRL's defaults.

Models are built from the Qwen2.5-0.5B / 1.5B configs of ``bench/gpu_throughput.py`` with random
bf16 weights (no downloads). The data are rows shaped like rating traces: a prompt of
``--prompt-min``..``--prompt-max`` random tokens (no loss) and a completion of
``--completion-min``..``--completion-max`` tokens (loss), the same rows for every setting. Each
setting trains the same LoRA (r=16, α=32, all linear layers) with TRL's SFTTrainer, in the same
process, one after the other:

* ``trl-defaults``: SFTConfig's own defaults where JudgeEye sets something else (gradient
  checkpointing on, no packing), the same batch size;
* ``judgeeye``: :func:`judgeeye.training.trainer.sft_args` (gradient checkpointing off, no
  packing);
* ``judgeeye+packing``: the same with ``packing=True`` (TRL's best-fit-decreasing packing into
  ``--max-length`` rows, padding-free, position ids mark the row boundaries).

Printed per setting: trained tokens/s (real tokens, padding excluded; after ``--warmup`` steps),
model-FLOPs utilisation, peak memory, and the ratio to ``trl-defaults``. MFU counts model FLOPs
only: per token 4·N (forward 2·N plus the activation gradients 2·N; the frozen base weights need
no weight gradients, the LoRA matrices' are negligible) with N the weights in matmuls (the LM
head included), plus attention 3·4·L·d·c̄ (forward 4·L·d·c̄ for scores and values with c̄ the mean
causal context, backward twice that); recomputation by gradient checkpointing is not counted.
Peak: 989 TFLOP/s dense bf16 (H100 SXM, H200).

    PYTHONUNBUFFERED=1 python bench/lora_sft_gpu.py --out $OUT
    python bench/lora_sft_gpu.py --allow-cpu --models tiny --steps 3 --warmup 1 --rows 32   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_throughput import CONFIGS  # noqa: E402

PEAK_BF16 = 989e12


def make_rows(n: int, vocab: int, args: argparse.Namespace, seed: int = 0) -> list[dict[str, list[int]]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        p = rng.randint(args.prompt_min, args.prompt_max)
        c = rng.randint(args.completion_min, args.completion_max)
        ids = [rng.randrange(10, vocab) for _ in range(p + c)][: args.max_length]
        rows.append({"input_ids": ids, "labels": [-100] * min(p, len(ids)) + ids[p:]})
    return rows


def flops_per_token(model, rows: list[dict]) -> float:  # type: ignore[no-untyped-def]
    cfg = model.config
    n_matmul = sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in name)
    if getattr(cfg, "tie_word_embeddings", False):
        n_matmul += model.get_input_embeddings().weight.numel()  # the tied LM head is a matmul too
    lengths = [len(r["input_ids"]) for r in rows]
    mean_ctx = sum(n * (n + 1) / 2 for n in lengths) / sum(lengths)
    attn_fwd = 4 * cfg.num_hidden_layers * cfg.hidden_size * mean_ctx
    return 4 * n_matmul + 3 * attn_fwd


def run_setting(name: str, model_name: str, rows: list[dict], args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from trl import pack_dataset

    from judgeeye.training import TrainingConfig
    from judgeeye.training.plan import plan_stage
    from judgeeye.training.trainer import base_location, lora_config, sft_args

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.allow_cpu else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = Qwen2ForCausalLM(Qwen2Config(**CONFIGS[model_name])).to(device=device, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(base_location("embedded")) if args.tokenizer is None \
        else AutoTokenizer.from_pretrained(args.tokenizer)
    tokenizer.pad_token = tokenizer.eos_token
    config = TrainingConfig(batch_size=args.batch, grad_accum=1, max_steps=args.steps, max_length=args.max_length,
                            warmup_steps=0, eval_steps=10_000, packing=name.endswith("packing"))
    out = Path(args.scratch) / f"{model_name}-{name}"
    if name == "trl-defaults":
        train_args = SFTConfig(output_dir=str(out), per_device_train_batch_size=args.batch, max_steps=args.steps,
                               max_length=args.max_length, report_to=[], save_strategy="no", logging_steps=1,
                               disable_tqdm=True, use_cpu=device.type == "cpu", bf16=device.type == "cuda")
    from datasets import Dataset

    dataset = Dataset.from_list(rows)
    if name != "trl-defaults":
        if config.packing:  # JudgeEye packs its datasets itself (training.trainer.prepare_dataset)
            dataset = pack_dataset(dataset, args.max_length, "bfd")
        train_args = sft_args(config, out, device, plan_stage(config, len(dataset), 0, world=1))
        train_args.save_strategy = "no"
    marks: dict[str, float] = {}

    class Timer(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):  # type: ignore[no-untyped-def]
            if device.type == "cuda":
                torch.cuda.synchronize()
            if state.global_step == args.warmup:
                marks["t0"], marks["tok0"] = time.perf_counter(), trainer._total_train_tokens
            if state.global_step == args.steps:
                marks["t1"], marks["tok1"] = time.perf_counter(), trainer._total_train_tokens

    trainer = SFTTrainer(model=model, args=train_args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora_config(config), callbacks=[Timer()])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    seconds = marks["t1"] - marks["t0"]
    tokens = marks["tok1"] - marks["tok0"]
    tps = tokens / seconds
    flops = flops_per_token(trainer.model.get_base_model(), rows)
    result = {"model": model_name, "setting": name, "tokens_per_s": tps, "mfu": flops * tps / PEAK_BF16,
              "timed_steps": args.steps - args.warmup, "timed_tokens": tokens, "seconds": seconds,
              "gradient_checkpointing": bool(train_args.gradient_checkpointing), "packing": bool(train_args.packing),
              "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None}
    del trainer, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="qwen2.5-0.5b,qwen2.5-1.5b")
    parser.add_argument("--settings", default="trl-defaults,judgeeye,judgeeye+packing")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--prompt-min", type=int, default=200)
    parser.add_argument("--prompt-max", type=int, default=1200)
    parser.add_argument("--completion-min", type=int, default=100)
    parser.add_argument("--completion-max", type=int, default=700)
    parser.add_argument("--tokenizer", default=None, help="a tokenizer folder (default: the embedded model's)")
    parser.add_argument("--scratch", default="/tmp/lora-sft-bench")
    parser.add_argument("--allow-cpu", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        sys.exit("no GPU (use --allow-cpu --models tiny for a smoke run)")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.allow_cpu else "cpu"
    print(f"device: {device}; torch {torch.__version__}")
    results = []
    for model_name in args.models.split(","):
        rows = make_rows(args.rows, min(CONFIGS[model_name]["vocab_size"], 49152), args)
        for setting in args.settings.split(","):
            r = run_setting(setting, model_name, rows, args)
            results.append(r)
            print(json.dumps(r), flush=True)
    print(f"\n| model | setting | tokens/s | MFU | peak GiB | vs trl-defaults |\n|---|---|---:|---:|---:|---:|")
    for r in results:
        base = next((x for x in results if x["model"] == r["model"] and x["setting"] == "trl-defaults"), None)
        ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}×" if base else "—"
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "—"
        print(f"| {r['model']} | {r['setting']} | {r['tokens_per_s']:,.0f} | {r['mfu']:.1%} | {peak} | {ratio} |")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "lora_sft_gpu.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
