"""Single-token decode attention for the static decoder, registered with transformers as the
attention implementation ``judgeeye_sdpa``.

It is transformers' ``sdpa`` except for one case: a decode step (one query per sequence) of a
grouped-query model. There the query heads of a group become the query-length axis, so the
key/value cache is read once per key/value head instead of being copied ``num_heads /
num_kv_heads`` times by ``repeat_kv``; on a CUDA GPU with Triton it runs the split-KV kernels of
:mod:`judgeeye.engines.gpu.triton_decode`. This relies on transformers' attention registry
(``AttentionInterface``) and ``config._attn_implementation``: see :mod:`.compat` for the
versions it is tested with.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

ATTN_NAME = "judgeeye_sdpa"

#: how single-token decode attention is computed (``decode_attention`` engine option):
#: "triton" (split-KV kernels of :mod:`judgeeye.engines.gpu.triton_decode`), "sdpa" (PyTorch picks
#: a kernel), "efficient" (the memory-efficient kernel), "math" (two batched matmuls and a
#: softmax, which the compiler fuses around); "auto" is "triton" where it runs (a CUDA GPU with
#: Triton, checked once against a float64 reference) and "sdpa" elsewhere
DECODE_ATTENTION = ("auto", "triton", "sdpa", "efficient", "math")
#: at most this many query positions go through :func:`_decode_attention` (the tokens a
#: read-out appends to a cached trace); longer ones (prefill) take transformers' sdpa
PACKED_QUERIES = 16
#: the mode the registered function runs (process-wide: read while tracing a compiled step)
_decode_attention_mode = {"value": "sdpa"}
#: (heads, kv heads, head dim, dtype) -> relative error of the Triton kernels (None: failed)
TRITON_CHECKED: dict[tuple[Any, ...], float | None] = {}
#: largest relative error against float64 accepted from the Triton kernels (bf16 rounding of
#: the output and of the softmax weights gives ~4e-3)
TRITON_TOLERANCE = 2e-2


def _decode_attention(query: Any, key: Any, value: Any, mask: Any, scaling: Any,
                      groups: int) -> Any:
    """(B, H, T, D) queries (one decode step, or the few tokens a read-out appends to a trace)
    against (B, KVH, L, D) keys: the H/KVH query heads of each group and the T positions become
    one query axis, so the cache is read once per KV head, never copied per query head."""
    import torch

    b, h, t, d = query.shape
    if mask is not None:
        mask = mask[:, :, :, : key.shape[-2]]
    mode = _decode_attention_mode["value"]
    if mode == "triton":
        from judgeeye.engines.gpu import triton_decode

        if t == 1 and triton_decode.supported(query, key, value, mask):
            scale = float(scaling) if scaling is not None else d ** -0.5
            return torch.ops.judgeeye.decode_attention(query, key, value, mask, scale)
        mode = "sdpa"
    q = query.reshape(b, h // groups, groups * t, d)
    if mask is not None and t > 1:  # (B, 1, T, L): the same rows for every head of a group
        mask = mask[:, :, None].expand(mask.shape[0], 1, groups, t, mask.shape[-1]).reshape(
            mask.shape[0], 1, groups * t, mask.shape[-1])
    if mode == "math":
        scale = scaling if scaling is not None else d ** -0.5
        scores = torch.matmul(q, key.transpose(-1, -2)).float() * scale
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool \
                else scores + mask
        out = torch.matmul(torch.softmax(scores, dim=-1).to(value.dtype), value)
    else:
        if mode == "efficient" and mask is not None and mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(
                ~mask, float("-inf"))
        if mode == "efficient":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
                out = torch.nn.functional.scaled_dot_product_attention(
                    q, key, value, attn_mask=mask, dropout_p=0.0, scale=scaling)
        else:
            out = torch.nn.functional.scaled_dot_product_attention(
                q, key, value, attn_mask=mask, dropout_p=0.0, scale=scaling)
    return out.reshape(b, h, t, value.shape[-1]).transpose(1, 2).contiguous()


def _register_attention() -> None:
    """``judgeeye_sdpa``: transformers' sdpa, except decode steps (and blocks of at most
    :data:`PACKED_QUERIES` tokens with their mask, as a read-out appends to a cached trace) with
    grouped-query heads and a head-shared mask (see :func:`_decode_attention`: no ``repeat_kv``
    copy of the whole cache per layer and step)."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if ATTN_NAME in AttentionInterface():  # registered once per process
        return

    def judgeeye_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                      is_causal=None, **kwargs):
        groups = int(getattr(module, "num_key_value_groups", 1) or 1)
        t = query.shape[2]
        if (
            # one decode step; or a few tokens with their (causal) mask given
            (t == 1 or (t <= PACKED_QUERIES and attention_mask is not None and groups > 1
                        and not dropout))
            and (groups > 1 or _decode_attention_mode["value"] == "triton")
            and (attention_mask is None
                 or (attention_mask.dim() == 4 and attention_mask.shape[1] == 1))
            and key.shape[1] * groups == query.shape[1]
        ):
            return _decode_attention(query, key, value, attention_mask, scaling, groups), None
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)

    AttentionInterface.register(ATTN_NAME, judgeeye_sdpa)
    try:  # its mask function too, where this release has mask interfaces
        from transformers import AttentionMaskInterface
        from transformers.masking_utils import sdpa_mask
    except ImportError:  # pragma: no cover
        return
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)


def set_decode_attention(mode: str) -> None:
    """Make ``mode`` (one of :data:`DECODE_ATTENTION` but "auto") the process-wide decode
    attention; each decoder sets its own again before it runs."""
    _decode_attention_mode["value"] = mode


def use_decode_attention(model: Any) -> bool:
    """Switch an sdpa model to ``judgeeye_sdpa`` (same results, faster GQA decode)."""
    config = model.config
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    _register_attention()
    try:
        model.set_attn_implementation(ATTN_NAME)
    except Exception:
        config._attn_implementation = ATTN_NAME
    return config._attn_implementation == ATTN_NAME


def resolve_triton(model: Any) -> tuple[str, str | None]:
    """("triton", None) when the Triton decode-attention kernels run on this model's device and
    pass a check against float64 on random inputs of its head layout (once per process and
    layout), else ("sdpa", the reason)."""
    import torch

    from judgeeye.engines.gpu import triton_decode

    if model.device.type != "cuda":
        return "sdpa", "Triton attention needs a CUDA device"
    if not triton_decode.available(model.device):
        return "sdpa", "Triton (or a GPU of compute capability >= 8) is not available"
    config = model.config.get_text_config(decoder=True)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    dtype = next(model.parameters()).dtype
    if dtype not in (torch.bfloat16, torch.float16):
        return "sdpa", f"Triton attention runs in bf16/fp16, the model is {dtype}"
    key = (heads, kv_heads, dim, dtype)
    if key not in TRITON_CHECKED:
        try:
            triton_decode.custom_op()
            TRITON_CHECKED[key] = triton_decode.self_check(heads, kv_heads, dim, model.device,
                                                            dtype)
        except Exception as exc:
            log.warning("Triton decode attention failed its check: %s: %s",
                        type(exc).__name__, exc)
            TRITON_CHECKED[key] = None
    err = TRITON_CHECKED[key]
    if err is None:
        return "sdpa", "Triton attention failed to run (see the log)"
    if not err <= TRITON_TOLERANCE:
        return "sdpa", f"Triton attention is off by {err:.1e} relative to float64"
    return "triton", None



__all__ = ["ATTN_NAME", "DECODE_ATTENTION", "TRITON_CHECKED", "TRITON_TOLERANCE", "resolve_triton",
           "set_decode_attention", "use_decode_attention"]
