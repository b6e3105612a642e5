"""GPU decode throughput: the transformers engine's static path vs plain ``model.generate``.

Models are built from Qwen2.5-0.5B / Qwen2.5-1.5B configs with random bf16 weights (no
downloads). Every sequence gets a ``--prompt``-token prompt and generates exactly ``--new``
tokens (EOS ignored: ``ignore_eos`` on our path, ``min_new_tokens`` on the plain one), sampled at
temperature 1, top-p 1. For each batch size both paths run in the same process, side by side:

* ``plain``: ``model.generate`` with the default dynamic cache (transformers' stock loop);
* ``ours``: ``TransformersEngine.generate_tokens`` on the GPU fast path (StaticCache, compiled
  forward, one CUDA graph per decode step, no per-step host sync).

Printed per row: generated tokens/s (prefill included), ms per decode step, the memory-bandwidth
bound per decode step (weight bytes / HBM bandwidth: 3.35 TB/s on an H100 SXM, 4.8 TB/s on an
H200) and the fraction of it reached (bound / measured step), and ours/plain.

    PYTHONUNBUFFERED=1 python bench/gpu_throughput.py --out $OUT

Optional: ``--profile-batch 64`` prints the top CUDA kernels of a few decode steps of ours
(torch.profiler); ``--hf-static 64`` also times transformers' own static-cache + compiled
``generate`` (``cache_implementation="static"``) at that batch size; ``--kernel-checks`` first
checks and times the Triton decode attention and the chunked sampling argmax on their own;
``--extra-compile-mode MODE`` times ours compiled with that ``torch.compile`` mode at
``--extra-batch`` after the summary, unless ``--deadline`` seconds have passed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Qwen2.5 configs (values from the models' config.json), weights random.
CONFIGS = {
    "qwen2.5-0.5b": dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
        use_sliding_window=False, bos_token_id=151643, eos_token_id=151643,
    ),
    # a toy for a CPU smoke run of this script (--models tiny --allow-cpu)
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=1000, max_position_embeddings=4096, rms_norm_eps=1e-6,
        rope_theta=10000.0, tie_word_embeddings=True, use_sliding_window=False,
        bos_token_id=1, eos_token_id=2,
    ),
    "qwen2.5-1.5b": dict(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
        use_sliding_window=False, bos_token_id=151643, eos_token_id=151643,
    ),
}


DEVICE = "cuda"


def sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def hbm_bandwidth(name: str) -> float:
    low = name.lower()
    if "h200" in low:
        return 4.8e12
    if "h100" in low:
        return 3.35e12
    if "a100" in low:
        return 2.0e12
    return 3.35e12


def build_model(name: str):
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    values = dict(CONFIGS[name])
    theta = values.pop("rope_theta")
    config = Qwen2Config(**values)
    # transformers 5 keeps rope settings in rope_parameters; older ones read rope_theta
    if getattr(config, "rope_parameters", None) is not None:
        config.rope_parameters["rope_theta"] = theta
    else:  # pragma: no cover
        config.rope_theta = theta
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    dtype = torch.bfloat16 if DEVICE == "cuda" else torch.float32
    with torch.device(DEVICE):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.eval()
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.eos_token_id
    return model


def weight_bytes(model) -> int:
    # parameters() yields each Parameter once, so tied embeddings count once (read once a step)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def prompts_for(batch: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(100, vocab - 100, (batch, length), generator=g).tolist()


def time_plain(model, prompts, new: int) -> tuple[float, float]:
    """(total seconds for `new` tokens, seconds for prefill + 1 token)."""
    import torch

    ids = torch.tensor(prompts, device=DEVICE)
    mask = torch.ones_like(ids)
    kw = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
              pad_token_id=model.generation_config.pad_token_id)
    with torch.inference_mode():
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, min_new_tokens=4,
                       **kw)
        sync()
        t = time.perf_counter()
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=1, min_new_tokens=1, **kw)
        sync()
        first = time.perf_counter() - t
        t = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new,
                             min_new_tokens=new, **kw)
        sync()
        total = time.perf_counter() - t
    assert out.shape[1] - ids.shape[1] == new, out.shape
    return total, first


def time_hf_static(model, prompts, new: int) -> tuple[float, float, float]:
    """transformers' own fast path: generate(cache_implementation="static") + auto-compile."""
    import torch

    model.set_attn_implementation("sdpa")  # stock attention (ours switched it)
    ids = torch.tensor(prompts, device=DEVICE)
    mask = torch.ones_like(ids)
    kw = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, cache_implementation="static",
              pad_token_id=model.generation_config.pad_token_id)
    with torch.inference_mode():
        t = time.perf_counter()
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                       **kw)
        sync()
        warm = time.perf_counter() - t
        t = time.perf_counter()
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=1, min_new_tokens=1, **kw)
        sync()
        first = time.perf_counter() - t
        t = time.perf_counter()
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                       **kw)
        sync()
        total = time.perf_counter() - t
    return total, first, warm


def greedy_reference(model, vocab: int) -> tuple[list[list[int]], list[list[int]]]:
    """Prompts and plain greedy continuations (stock model, before our engine touches it)."""
    import torch

    prompts = prompts_for(8, 64, vocab, seed=7)
    ids = torch.tensor(prompts, device=DEVICE)
    with torch.inference_mode():
        ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=16, min_new_tokens=16,
                             pad_token_id=model.generation_config.pad_token_id)[:, 64:].tolist()
    return prompts, ref


def check_agreement(engine, reference) -> str:
    """Greedy tokens of ours vs plain generate (bf16, other kernels: expect near, not all), and
    that sampling draws fresh random numbers in every row and every replay."""
    from judgeeye.engines.base import SamplingParams

    prompts, ref = reference
    ours = engine.generate_tokens(prompts, SamplingParams(temperature=0, max_tokens=16),
                                  ignore_eos=True)
    first = sum(o.ids[0] == r[0] for o, r in zip(ours, ref))
    prefix = []
    for o, r in zip(ours, ref):
        k = 0
        while k < 16 and o.ids[k] == r[k]:
            k += 1
        prefix.append(k)
    same = [prompts[0]] * 8
    params = SamplingParams(temperature=1.0, max_tokens=16)
    run1 = [tuple(r.ids) for r in engine.generate_tokens(same, params, ignore_eos=True)]
    run2 = [tuple(r.ids) for r in engine.generate_tokens(same, params, ignore_eos=True)]
    return (f"greedy agreement ours vs plain: first token {first}/8, common prefix {prefix} of 16;"
            f" sampling 8 copies of one prompt: {len(set(run1))}/8 distinct rows, "
            f"{len(set(run1) | set(run2))}/16 distinct over two calls")


def describe_decoder(engine) -> str:
    """Which decode attention the engine's static decoder runs, and why (Triton check)."""
    from judgeeye.engines.gpu.attention import TRITON_CHECKED

    dec = engine._decoder
    if dec is None:
        return f"static decoder off: {engine._fast_failed}"
    checked = ", ".join(f"{k[0]}/{k[1]} heads d={k[2]}: rel. err {v:.1e}" if v is not None
                        else f"{k[0]}/{k[1]} heads d={k[2]}: failed"
                        for k, v in TRITON_CHECKED.items())
    return (f"decode attention {dec.decode_attention}"
            + (f" ({dec.attention_note})" if dec.attention_note else "")
            + (f"; Triton kernel check vs float64: {checked}" if checked else ""))


def time_ours_at(engine, prompts, params, repeats: int) -> tuple[float, float, float]:
    """(median total s, median ms per decode step, first-call s)."""
    t = time.perf_counter()
    engine.generate_tokens(prompts, params, ignore_eos=True)
    warm = time.perf_counter() - t
    totals, steps = [], []
    for _ in range(repeats):
        res = engine.generate_tokens(prompts, params, ignore_eos=True)
        st = engine.stats[-1]
        assert all(len(r.ids) == params.max_tokens for r in res)
        totals.append(st.total_s)
        steps.append(st.decode_s / (st.new_tokens - 1) * 1e3)
    return statistics.median(totals), statistics.median(steps), warm


def profile_ours(engine, prompts, new: int, rows: int = 25) -> str:
    from torch.profiler import ProfilerActivity, profile

    from judgeeye.engines.base import SamplingParams

    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=new)
    engine.generate_tokens(prompts, params, ignore_eos=True)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == "cuda" else [])
    with profile(activities=acts) as prof:
        engine.generate_tokens(prompts, params, ignore_eos=True)
        sync()
    sort = "cuda_time_total" if DEVICE == "cuda" else "cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=rows, max_name_column_width=70)


def _cuda_ms(fn, iters: int = 20, replays: int = 5) -> float:
    """Mean GPU ms per call of ``fn``: ``iters`` calls captured in one CUDA graph and replayed
    (this host's Python launch overhead would otherwise hide kernels of a few microseconds)."""
    import torch

    for _ in range(3):
        fn()
    if DEVICE != "cuda":  # smoke runs
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t) / iters * 1e3
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    with torch.cuda.graph(graph):
        for _ in range(iters):
            fn()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / (iters * replays)


def kernel_checks(names: list[str], batch: int, prompt: int, new: int) -> list[str]:
    """The Triton decode attention against float64 and against PyTorch's kernels, and the
    chunked sampling argmax against a plain argmax (same indices; time), at the bench's decode
    shapes (cache bucket of prompt + new, about 3/4 of it valid)."""
    import torch

    from judgeeye.engines.gpu import StaticDecoder
    from judgeeye.engines.gpu import triton_decode as td
    from judgeeye.engines.gpu.sampling import row_argmax as _row_argmax

    lines = []
    if not td.available():
        return ["kernel checks: Triton decode attention not available here"]
    length = -(-(prompt + new) // StaticDecoder.LENGTH_STEP) * StaticDecoder.LENGTH_STEP
    for name in names:
        cfg = CONFIGS[name]
        heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        dim = cfg["hidden_size"] // heads
        q, k, v, _ = td.random_case(batch, heads, kv_heads, dim, length, DEVICE, torch.bfloat16)
        pos = prompt + new * 3 // 4
        idx = torch.arange(length, device=DEVICE)
        mask = (idx <= pos)[None, None, None, :].expand(batch, 1, 1, length).contiguous()
        err = float((td.decode_attention(q, k, v, mask, None).double()
                     - td.reference(q, k, v, mask, None)).norm()
                    / td.reference(q, k, v, mask, None).norm())
        groups = heads // kv_heads
        qg = q.reshape(batch, kv_heads, groups, dim)

        def math_attn() -> None:
            s_ = torch.matmul(qg, k.transpose(-1, -2)).float() * dim ** -0.5
            s_ = s_.masked_fill(~mask, float("-inf"))
            torch.matmul(torch.softmax(s_, dim=-1).to(v.dtype), v)

        def sdpa_attn() -> None:
            torch.nn.functional.scaled_dot_product_attention(qg, k, v, attn_mask=mask)

        t_triton = _cuda_ms(lambda: td.decode_attention(q, k, v, mask, None))
        t_math = _cuda_ms(math_attn)
        t_sdpa = _cuda_ms(sdpa_attn)
        lines.append(f"kernel check {name} b={batch} L={length} (valid {pos + 1}): triton "
                     f"attention rel. err {err:.1e} vs float64; {1e3 * t_triton:.1f} us per "
                     f"layer vs eager math {1e3 * t_math:.1f} us, sdpa {1e3 * t_sdpa:.1f} us")
        print("  " + lines[-1], flush=True)
    vocab = CONFIGS[names[0]]["vocab_size"]
    logits = torch.randn((batch, vocab), device=DEVICE)

    def gumbel_plain(x):  # type: ignore[no-untyped-def]
        return (x - torch.log(-torch.log(torch.rand_like(x)))).argmax(dim=-1)

    def gumbel_split(x):  # type: ignore[no-untyped-def]
        return _row_argmax(x - torch.log(-torch.log(torch.rand_like(x))))

    plain_c = torch.compile(gumbel_plain, dynamic=True)
    split_c = torch.compile(gumbel_split, dynamic=True)
    greedy_c = torch.compile(_row_argmax, dynamic=True)
    ties = (logits * 2).round()
    same = bool(torch.equal(greedy_c(ties), ties.argmax(dim=-1))) and bool(
        torch.equal(greedy_c(logits), logits.argmax(dim=-1)))
    t_plain = _cuda_ms(lambda: plain_c(logits))
    t_split = _cuda_ms(lambda: split_c(logits))
    lines.append(f"kernel check sampling b={batch} V={vocab}: compiled Gumbel-max argmax "
                 f"{1e3 * t_plain:.0f} us plain vs {1e3 * t_split:.0f} us chunked; chunked "
                 f"greedy argmax equals torch.argmax (ties too): {same}")
    print("  " + lines[-1], flush=True)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="qwen2.5-0.5b,qwen2.5-1.5b")
    parser.add_argument("--batches", default="1,8,16,32,64,128,256")
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="ours without torch.compile")
    parser.add_argument("--profile-batch", type=int, default=0)
    parser.add_argument("--hf-static", type=int, default=0,
                        help="also time generate(cache_implementation='static') at this batch")
    parser.add_argument("--variant-batch", type=int, default=0,
                        help="on the first model, time ours without projection fusion and with "
                             "each --attention kernel at this batch; the fastest serves the table")
    parser.add_argument("--attention", default="auto",
                        help="decode attention kernels (engine option decode_attention) to try "
                             "with --variant-batch; the first serves the table otherwise")
    parser.add_argument("--profile-models", default="",
                        help="models to profile (default: all, when --profile-batch is set)")
    parser.add_argument("--eager-batches", default="",
                        help="also time ours without torch.compile at these batches")
    parser.add_argument("--top-p-row", type=int, default=0,
                        help="also time ours with top_p=0.95 at this batch")
    parser.add_argument("--kernel-checks", action="store_true",
                        help="check and time the Triton attention and the chunked argmax first")
    parser.add_argument("--extra-compile-mode", default="",
                        help="after the summary, time ours compiled with this torch.compile "
                             "mode (e.g. max-autotune-no-cudagraphs) at --extra-batch")
    parser.add_argument("--extra-batch", type=int, default=64)
    parser.add_argument("--extra-models", default="", help="models for the extra (default: all)")
    parser.add_argument("--deadline", type=float, default=0,
                        help="skip the extra timing once this many seconds have passed")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--allow-cpu", action="store_true", help="smoke-run on the CPU")
    args = parser.parse_args()

    import torch
    import transformers

    from judgeeye.engines.base import SamplingParams
    from judgeeye.engines.transformers_engine import TransformersEngine

    global DEVICE
    if not torch.cuda.is_available():
        if not args.allow_cpu:
            print("no CUDA device: this benchmark needs a GPU (--allow-cpu for a smoke run)")
            return 2
        DEVICE = "cpu"
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu"
    bw = hbm_bandwidth(device_name)
    print(f"device {device_name}; torch {torch.__version__}; "
          f"transformers {transformers.__version__}; HBM bound uses {bw / 1e12:.2f} TB/s",
          flush=True)
    batches = [int(b) for b in args.batches.split(",") if b]
    rows: list[dict] = []
    chosen_attention = args.attention.split(",")[0]
    variants_done = False
    notes: list[str] = []
    started = time.perf_counter()
    if args.kernel_checks and DEVICE == "cuda":
        try:
            notes += kernel_checks([m for m in args.models.split(",") if m in CONFIGS],
                                   args.extra_batch, args.prompt, args.new)
        except Exception as exc:
            notes.append(f"kernel checks failed: {type(exc).__name__}: {exc}")
            print("  " + notes[-1], flush=True)

    for name in args.models.split(","):
        model = build_model(name)
        wbytes = weight_bytes(model)
        bound_ms = wbytes / bw * 1e3
        vocab = model.config.vocab_size
        print(f"\n== {name}: {wbytes / 1e9:.3f} GB of bf16 weights; bound {bound_ms:.3f} ms per "
              f"decode step", flush=True)

        # --- plain transformers generate (stock sdpa attention, dynamic cache)
        plain: dict[int, tuple[float, float]] = {}
        for b in batches:
            prompts = prompts_for(b, args.prompt, vocab, seed=b)
            total, first = time_plain(model, prompts, args.new)
            plain[b] = (total, first)
            step = (total - first) / (args.new - 1) * 1e3
            print(f"  plain  b={b:4d}: {b * args.new / total:9.0f} tok/s  {step:7.2f} ms/step",
                  flush=True)

        reference = greedy_reference(model, vocab)

        # --- ours: variants at one batch size first (the first is the pristine, unfused model)
        base_extra = {"compile": not args.no_compile and DEVICE == "cuda", "fast_decode": True,
                      "max_graphs": len(batches) + 2, "fuse_projections": True}
        params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=args.new)
        engine = None
        if args.variant_batch and not variants_done:
            vb = args.variant_batch
            vprompts = prompts_for(vb, args.prompt, vocab, seed=vb)
            variants = [("no projection fusion, attention sdpa",
                         {"fuse_projections": False, "decode_attention": "sdpa"})]
            variants += [(f"fused, attention {a}",
                          {"fuse_projections": True, "decode_attention": a})
                         for a in args.attention.split(",")]
            best = None
            variants_done = True
            for label, opts in variants:
                eng = TransformersEngine.from_model(
                    model, None, batch_size=max(batches), **{**base_extra, **opts})
                try:
                    total, step, warm = time_ours_at(eng, vprompts, params, args.repeats)
                except Exception as exc:
                    notes.append(f"{name} b={vb} {label}: failed: {type(exc).__name__}: {exc}")
                    print("  " + notes[-1], flush=True)
                    eng.close()
                    continue
                notes.append(f"{name} b={vb} {label}: {vb * args.new / total:.0f} tok/s, "
                             f"{step:.2f} ms/step ({100 * bound_ms / step:.1f}% of bound; "
                             f"first call {warm:.1f} s)")
                print("  " + notes[-1], flush=True)
                if opts["fuse_projections"] and (best is None or step < best[0]):
                    if best is not None:
                        best[2].close()
                    best = (step, opts["decode_attention"], eng)
                else:
                    eng.close()
            if best is not None:
                chosen_attention = best[1]
                engine = best[2]
                notes.append(f"chosen decode attention: {chosen_attention}")
                print("  " + notes[-1], flush=True)
        if engine is None:
            engine = TransformersEngine.from_model(
                model, None, batch_size=max(batches),
                **{**base_extra, "decode_attention": chosen_attention})
        try:
            notes.append(f"{name}: {check_agreement(engine, reference)}")
            print("  " + notes[-1], flush=True)
        except Exception as exc:
            notes.append(f"{name}: agreement check failed: {type(exc).__name__}: {exc}")
            print("  " + notes[-1], flush=True)
        notes.append(f"{name}: {describe_decoder(engine)}")
        print("  " + notes[-1], flush=True)
        for b in batches:
            prompts = prompts_for(b, args.prompt, vocab, seed=b)
            total, step, warm = time_ours_at(engine, prompts, params, args.repeats)
            p_total, p_first = plain[b]
            p_step = (p_total - p_first) / (args.new - 1) * 1e3
            row = {
                "model": name, "batch": b, "ours_tok_s": b * args.new / total,
                "plain_tok_s": b * args.new / p_total, "ours_ms_step": step,
                "plain_ms_step": p_step, "bound_ms_step": bound_ms,
                "ours_frac_bound": bound_ms / step, "plain_frac_bound": bound_ms / p_step,
                "ratio": p_total / total, "warmup_s": warm, "path": engine.stats[-1].path,
                "weight_gb": wbytes / 1e9,
            }
            rows.append(row)
            print(f"  ours   b={b:4d}: {row['ours_tok_s']:9.0f} tok/s  {step:7.2f} ms/step  "
                  f"{100 * row['ours_frac_bound']:5.1f}% of bound  x{row['ratio']:.1f} vs plain"
                  f"  (first call {warm:.1f} s, path {row['path']})", flush=True)
            (out_dir / "gpu_throughput.json").write_text(json.dumps(
                {"device": device_name, "rows": rows, "notes": notes}, indent=2))
        if args.top_p_row:
            b = args.top_p_row
            prompts = prompts_for(b, args.prompt, vocab, seed=b)
            p95 = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=args.new)
            engine.generate_tokens(prompts, p95, ignore_eos=True)
            engine.generate_tokens(prompts, p95, ignore_eos=True)
            st = engine.stats[-1]
            step = st.decode_s / (st.new_tokens - 1) * 1e3
            notes.append(f"{name}: ours with top_p=0.95 at b={b}: {b * args.new / st.total_s:.0f}"
                         f" tok/s, {step:.2f} ms/step ({100 * bound_ms / step:.1f}% of bound)")
            print("  " + notes[-1], flush=True)
        hf_static = None
        if args.hf_static:
            b = args.hf_static
            try:
                total, first, warm = time_hf_static(model, prompts_for(b, args.prompt, vocab, b),
                                                    args.new)
                step = (total - first) / (args.new - 1) * 1e3
                hf_static = (b, total, step)
                print(f"  hf-static b={b}: {b * args.new / total:9.0f} tok/s  {step:7.2f} ms/step"
                      f"  (first call incl. compile {warm:.1f} s)", flush=True)
            except Exception as exc:
                notes.append(f"{name}: hf static failed: {type(exc).__name__}: {exc}")
                print("  hf-static failed:", exc, flush=True)

        if hf_static:
            b, total, step = hf_static
            ours_row = next((r for r in rows if r["model"] == name and r["batch"] == b), None)
            msg = (f"{name}: transformers generate(cache_implementation='static') at b={b}: "
                   f"{b * args.new / total:.0f} tok/s, {step:.2f} ms/step "
                   f"({100 * bound_ms / step:.1f}% of bound)")
            if ours_row:
                msg += f"; ours is x{total / (b * args.new / ours_row['ours_tok_s']):.2f} of it"
            notes.append(msg)
        if args.eager_batches:
            eager = TransformersEngine.from_model(
                model, None, batch_size=max(batches),
                **{**base_extra, "compile": False, "decode_attention": chosen_attention})
            for b in [int(x) for x in args.eager_batches.split(",") if x]:
                prompts = prompts_for(b, args.prompt, vocab, seed=b)
                eager.generate_tokens(prompts, params, ignore_eos=True)
                eager.generate_tokens(prompts, params, ignore_eos=True)
                st = eager.stats[-1]
                step = st.decode_s / (st.new_tokens - 1) * 1e3
                notes.append(f"{name}: ours without torch.compile (eager graph) b={b}: "
                             f"{b * args.new / st.total_s:.0f} tok/s, {step:.2f} ms/step "
                             f"({100 * bound_ms / step:.1f}% of bound)")
                print("  " + notes[-1], flush=True)
            eager.close()
        if args.profile_batch and (not args.profile_models
                                   or name in args.profile_models.split(",")):
            b = args.profile_batch
            table = profile_ours(engine, prompts_for(b, args.prompt, vocab, b), args.new)
            (out_dir / f"profile_{name}_b{b}.txt").write_text(table)
            print(table[:6000], flush=True)
        engine.close()
        del engine, model
        torch._dynamo.reset()
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
        (out_dir / "gpu_throughput.json").write_text(json.dumps(
            {"device": device_name, "rows": rows, "notes": notes}, indent=2))

    print(f"\nSummary ({device_name}; prompt {args.prompt}, {args.new} new tokens, "
          f"T=1 top_p=1; decode attention {chosen_attention}; "
          f"{time.perf_counter() - started:.0f} s)")
    header = (f"{'model':14s} {'batch':>5s} {'ours tok/s':>11s} {'plain tok/s':>11s} "
              f"{'ours ms/step':>12s} {'plain ms/step':>13s} {'bound ms':>8s} "
              f"{'ours %bound':>11s} {'plain %bound':>12s} {'ours/plain':>10s}")
    print(header)
    for r in rows:
        print(f"{r['model']:14s} {r['batch']:5d} {r['ours_tok_s']:11.0f} {r['plain_tok_s']:11.0f} "
              f"{r['ours_ms_step']:12.2f} {r['plain_ms_step']:13.2f} {r['bound_ms_step']:8.3f} "
              f"{100 * r['ours_frac_bound']:10.1f}% {100 * r['plain_frac_bound']:11.2f}% "
              f"{r['ratio']:10.1f}")
    for n in notes:
        print("note:", n)
    if args.extra_compile_mode and DEVICE == "cuda":
        params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=args.new)
        elapsed = time.perf_counter() - started
        if args.deadline and elapsed > args.deadline:
            print(f"extra ({args.extra_compile_mode}) skipped: {elapsed:.0f} s > deadline")
        else:
            for name in (args.extra_models or args.models).split(","):
                model = build_model(name)
                bound_ms = weight_bytes(model) / bw * 1e3
                b = args.extra_batch
                eng = TransformersEngine.from_model(
                    model, None, batch_size=b, compile=True, fast_decode=True,
                    fuse_projections=True, max_graphs=2, decode_attention=chosen_attention,
                    compile_mode=args.extra_compile_mode)
                total, step, warm = time_ours_at(
                    eng, prompts_for(b, args.prompt, model.config.vocab_size, seed=b), params,
                    args.repeats)
                print(f"extra: {name} compile mode {args.extra_compile_mode} b={b}: "
                      f"{b * args.new / total:.0f} tok/s, {step:.2f} ms/step "
                      f"({100 * bound_ms / step:.1f}% of bound; first call {warm:.0f} s)",
                      flush=True)
                eng.close()
                del eng, model
                torch._dynamo.reset()
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
