"""The plain decoding path: transformers' ``model.generate`` (any model, any device, adapters
unmerged), used where the static decoder is off or refuses (:mod:`judgeeye.engines.gpu`).

When every row of a batch samples the same prompt (the k candidates of one item), the prompt is
prefilled once and its cache forked k ways, and that prefill is kept for the score read-out."""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from typing import Any

from judgeeye.engines.base import SamplingParams
from judgeeye.engines.token_results import BatchStats, PromptCache, TokenResult


def cache_kwarg(model: Any) -> str:
    """The keyword this transformers release's forward takes a key/value cache under: ``cache``
    (5.2x, where ``past_key_values`` still works with a deprecation warning) or
    ``past_key_values`` (earlier releases)."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - an unusual wrapper
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def full_attention_only(model: Any) -> bool:
    """Every layer attends to the whole past (no sliding window, no recurrent state): a prompt's
    keys/values then stay valid for anything appended after it."""
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        return False
    types = getattr(config.get_text_config(decoder=True), "layer_types", None)
    return not types or all(t == "full_attention" for t in types)


def new_cache(model: Any, prompt: PromptCache | None = None, rows: int = 1) -> Any:
    """A ``DynamicCache`` for ``model``, holding ``prompt``'s keys/values in ``rows`` rows."""
    from transformers import DynamicCache

    if prompt is None:
        return DynamicCache(config=model.config)
    data = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prompt.layers]
    return DynamicCache(ddp_cache_data=data, config=model.config)


def plain_generate(model: Any, prompts: Sequence[Sequence[int]], params: SamplingParams, *,
                   pad_id: int, eos_ids: list[int], generate_kwargs: dict[str, Any],
                   ignore_eos: bool = False) -> tuple[list[TokenResult], BatchStats,
                                                      PromptCache | None]:
    """One batch through ``model.generate``, left-padded; also returns the shared prompt's
    prefill (its first ``len - 1`` tokens) when all rows share one prompt, else None."""
    import torch

    started = time.perf_counter()
    device = model.device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
        mask[r, width - len(p):] = 1
    kwargs = dict(generate_kwargs)
    max_new = max(1, int(params.max_tokens))
    kwargs.update(max_new_tokens=max_new, pad_token_id=pad_id)
    if eos_ids:
        kwargs["eos_token_id"] = eos_ids
    if params.temperature > 0:
        kwargs.update(do_sample=True, temperature=float(params.temperature),
                      top_p=float(params.top_p), top_k=0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if ignore_eos:
        kwargs["min_new_tokens"] = max_new
    prompt_cache = None
    shared = len(prompts) > 1 and len(prompts[0]) > 1 and all(p == prompts[0] for p in prompts)
    if shared and full_attention_only(model):
        # n samples of one prompt: prefill it once and fork the cache n ways (the k candidates
        # of an item share a long prompt; this saves (n - 1) prefills).
        cache_kw = cache_kwarg(model)
        cache = new_cache(model)
        model(input_ids=ids[:1, :-1].to(device), use_cache=True, **{cache_kw: cache})
        prompt_cache = PromptCache(width - 1, [(layer.keys, layer.values) for layer in cache.layers])
        cache.batch_repeat_interleave(len(prompts))
        kwargs[cache_kw] = cache
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
    new = out[:, width:].cpu().tolist()
    eos = set(eos_ids)
    results = []
    for row in new:
        stop = None if ignore_eos else next((i for i, t in enumerate(row) if t in eos), None)
        if stop is None:
            results.append(TokenResult(row[:max_new], "length"))
        else:
            results.append(TokenResult(row[: stop + 1], "stop"))
    elapsed = time.perf_counter() - started
    stats = BatchStats(path="generate", batch=len(prompts), padded_batch=len(prompts),
                       prompt_len=width, new_tokens=len(new[0]) if new else 0, prefill_s=0.0,
                       decode_s=elapsed, total_s=elapsed)
    return results, stats, prompt_cache


__all__ = ["cache_kwarg", "full_attention_only", "new_cache", "plain_generate"]
