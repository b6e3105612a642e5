"""Split-KV ("flash-decoding") attention for one new token per sequence, in Triton.

Why: in a batched decode step the attention of each layer reads the whole key/value cache of
every sequence, and PyTorch's kernels for a single query row (two small batched matmuls and a
softmax, or cuDNN / memory-efficient sdpa) leave most of the GPU idle: with 64 sequences and 2
key/value heads there are only 128 (batch, head) pairs for 132 multiprocessors, and each pair's
keys are read by one program. Here the cache is cut into chunks along its length (more programs
in flight), all query heads of a grouped-query group share one read of their key/value head,
keys masked out (left padding, positions not yet written) are never loaded, and a second small
kernel merges the chunks' partial softmax results (the log-sum-exp trick).

Used by the transformers engine's static decoder (``decode_attention="triton"``, the default
where Triton and a CUDA GPU are present); :func:`available` says whether it can run, and the
engine checks the kernel once per process against a float64 reference before relying on it.
Importing this module needs neither torch nor Triton.
"""

from __future__ import annotations

import math
from typing import Any

#: keys per inner block of the first kernel (a multiple of 16 for tl.dot)
BLOCK_N = 64

_STATE: dict[str, Any] = {"kernels": None, "op": None, "sms": None}


def available(device: Any = None) -> bool:
    """Triton importable and a CUDA GPU with bf16 tensor cores (compute capability >= 8)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        dev = torch.device(device) if device is not None else torch.device("cuda")
        if dev.type != "cuda":
            return False
        if torch.cuda.get_device_capability(dev)[0] < 8:
            return False
        import triton  # noqa: F401
    except Exception:  # any import/driver problem means "not available"
        return False
    return True


def supported(query: Any, key: Any, value: Any, mask: Any) -> bool:
    """Shapes and dtypes the kernels handle: (B, H, 1, D) queries, (B, KVH, L, D) keys and
    values of the same half-precision dtype on a CUDA device, a boolean (B or 1, 1, 1, L) mask
    or none."""
    import torch

    if not (query.is_cuda and key.is_cuda and value.is_cuda):
        return False
    if query.dim() != 4 or key.dim() != 4 or value.dim() != 4 or query.shape[2] != 1:
        return False
    if query.dtype not in (torch.bfloat16, torch.float16) or key.dtype != query.dtype \
            or value.dtype != query.dtype:
        return False
    if key.shape[-1] != value.shape[-1] or query.shape[-1] != key.shape[-1]:
        return False
    if key.shape[-1] > 256 or query.shape[1] % key.shape[1]:
        return False
    if mask is not None:
        if mask.dtype != torch.bool or mask.dim() != 4 or mask.shape[1] != 1 \
                or mask.shape[2] != 1 or mask.shape[-1] != key.shape[-2]:
            return False
    return True


def _kernels() -> tuple[Any, Any]:
    """Compile-on-first-use Triton kernels (defined lazily: Triton may be absent)."""
    if _STATE["kernels"] is not None:
        return _STATE["kernels"]
    import triton
    import triton.language as tl

    @triton.jit
    def _split_kernel(q_ptr, k_ptr, v_ptr, m_ptr, part_ptr, ml_ptr, scale_log2,
                      stride_qb, stride_qh, stride_kb, stride_kh, stride_kl,
                      stride_vb, stride_vh, stride_vl, stride_mb, stride_ml,
                      kv_len, groups, kv_heads, N_SPLIT: tl.constexpr,
                      BLOCKS_PER_SPLIT: tl.constexpr, HAS_MASK: tl.constexpr,
                      BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                      HEAD_DIM: tl.constexpr):
        """One (sequence, key/value head, chunk): partial softmax-weighted values of the
        group's query heads over the chunk, with their running max and sum (base-2 logs)."""
        bh = tl.program_id(0)
        split = tl.program_id(1)
        b = bh // kv_heads
        kh = bh % kv_heads
        g = tl.arange(0, BLOCK_G)
        d = tl.arange(0, BLOCK_D)
        g_ok = g < groups
        d_ok = d < HEAD_DIM
        q = tl.load(q_ptr + b * stride_qb + (kh * groups + g)[:, None] * stride_qh + d[None, :],
                    mask=g_ok[:, None] & d_ok[None, :], other=0.0)
        m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_G], tl.float32)
        acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
        k_base = k_ptr + b * stride_kb + kh * stride_kh
        v_base = v_ptr + b * stride_vb + kh * stride_vh
        start = split * BLOCKS_PER_SPLIT * BLOCK_N
        for i in range(0, BLOCKS_PER_SPLIT):
            n = start + i * BLOCK_N + tl.arange(0, BLOCK_N)
            ok = n < kv_len
            if HAS_MASK:
                keep = tl.load(m_ptr + b * stride_mb + n * stride_ml, mask=ok, other=0)
                ok = ok & (keep != 0)
            k = tl.load(k_base + n[:, None] * stride_kl + d[None, :],
                        mask=ok[:, None] & d_ok[None, :], other=0.0)
            s = tl.dot(q, tl.trans(k)) * scale_log2
            s = tl.where(ok[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp2(m_i - m_safe)
            p = tl.exp2(s - m_safe[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(v_base + n[:, None] * stride_vl + d[None, :],
                        mask=ok[:, None] & d_ok[None, :], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m_i = m_new
        row = bh * N_SPLIT + split
        tl.store(part_ptr + row * (BLOCK_G * BLOCK_D) + g[:, None] * BLOCK_D + d[None, :], acc)
        tl.store(ml_ptr + row * (2 * BLOCK_G) + g, m_i)
        tl.store(ml_ptr + row * (2 * BLOCK_G) + BLOCK_G + g, l_i)

    @triton.jit
    def _merge_kernel(part_ptr, ml_ptr, out_ptr, stride_ob, stride_oh, groups, kv_heads,
                      N_SPLIT: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_S: tl.constexpr,
                      BLOCK_D: tl.constexpr, HEAD_DIM: tl.constexpr):
        """Merge the chunks of one (sequence, key/value head) into the output rows."""
        bh = tl.program_id(0)
        b = bh // kv_heads
        kh = bh % kv_heads
        s = tl.arange(0, BLOCK_S)
        g = tl.arange(0, BLOCK_G)
        d = tl.arange(0, BLOCK_D)
        s_ok = s < N_SPLIT
        rows = bh * N_SPLIT + s
        m = tl.load(ml_ptr + rows[:, None] * (2 * BLOCK_G) + g[None, :], mask=s_ok[:, None],
                    other=float("-inf"))
        big = tl.max(m, 0)
        big = tl.where(big == float("-inf"), 0.0, big)
        denom = tl.zeros([BLOCK_G], tl.float32)
        acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
        for i in range(0, N_SPLIT):
            r = bh * N_SPLIT + i
            m_s = tl.load(ml_ptr + r * (2 * BLOCK_G) + g)
            l_s = tl.load(ml_ptr + r * (2 * BLOCK_G) + BLOCK_G + g)
            w = tl.exp2(m_s - big)
            denom += w * l_s
            part = tl.load(part_ptr + r * (BLOCK_G * BLOCK_D) + g[:, None] * BLOCK_D + d[None, :])
            acc += part * w[:, None]
        denom = tl.where(denom == 0.0, 1.0, denom)
        out = acc / denom[:, None]
        tl.store(out_ptr + b * stride_ob + (kh * groups + g)[:, None] * stride_oh + d[None, :],
                 out.to(out_ptr.dtype.element_ty),
                 mask=(g < groups)[:, None] & (d < HEAD_DIM)[None, :])

    kernels = (_split_kernel, _merge_kernel)
    _STATE["kernels"] = kernels
    return kernels


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _sm_count(device: Any) -> int:
    import torch

    if _STATE["sms"] is None:
        if device.type == "cuda":
            _STATE["sms"] = torch.cuda.get_device_properties(device).multi_processor_count
        else:  # the Triton interpreter (tests)
            _STATE["sms"] = 8
    return int(_STATE["sms"])


def decode_attention(query: Any, key: Any, value: Any, mask: Any, scale: float | None,
                     n_split: int | None = None) -> Any:
    """Attention of one query token: (B, H, 1, D) queries against (B, KVH, L, D) keys/values
    (query head h uses key/value head h // (H / KVH)), ``mask`` (B or 1, 1, 1, >= L) boolean with
    True = attend, or None. Returns (B, 1, H, D), contiguous, in the inputs' dtype."""
    import torch

    split_kernel, merge_kernel = _kernels()
    b, h, _, dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    groups = h // kv_heads
    block_g = max(16, _next_pow2(groups))
    block_d = max(16, _next_pow2(dim))
    n_blocks = max(1, -(-kv_len // BLOCK_N))
    if n_split is None:
        # enough programs to cover the multiprocessors about twice
        want = -(-2 * _sm_count(query.device) // max(1, b * kv_heads))
        n_split = max(1, min(n_blocks, want))
    blocks_per_split = -(-n_blocks // n_split)
    n_split = -(-n_blocks // blocks_per_split)
    scale = float(scale) if scale is not None else dim ** -0.5
    dev = query.device
    part = torch.empty((b * kv_heads * n_split, block_g, block_d), dtype=torch.float32,
                       device=dev)
    ml = torch.empty((b * kv_heads * n_split, 2, block_g), dtype=torch.float32, device=dev)
    out = torch.empty((b, 1, h, dim), dtype=query.dtype, device=dev)
    if mask is not None:
        m = mask.view(torch.uint8) if mask.dtype == torch.bool else mask
        stride_mb = m.stride(0) if m.shape[0] > 1 else 0
        stride_ml = m.stride(3)
    else:
        m, stride_mb, stride_ml = query, 0, 0
    split_kernel[(b * kv_heads, n_split)](
        query, key, value, m, part, ml, scale * math.log2(math.e),
        query.stride(0), query.stride(1), key.stride(0), key.stride(1), key.stride(2),
        value.stride(0), value.stride(1), value.stride(2), stride_mb, stride_ml,
        kv_len, groups, kv_heads, N_SPLIT=n_split, BLOCKS_PER_SPLIT=blocks_per_split,
        HAS_MASK=mask is not None, BLOCK_G=block_g, BLOCK_N=BLOCK_N, BLOCK_D=block_d,
        HEAD_DIM=dim, num_warps=4, num_stages=2)
    merge_kernel[(b * kv_heads,)](
        part, ml, out, out.stride(0), out.stride(2), groups, kv_heads, N_SPLIT=n_split,
        BLOCK_G=block_g, BLOCK_S=max(2, _next_pow2(n_split)), BLOCK_D=block_d, HEAD_DIM=dim,
        num_warps=4)
    return out


def custom_op() -> Any:
    """:func:`decode_attention` as ``torch.ops.judgeeye.decode_attention`` (opaque to
    ``torch.compile``, which calls it as an external kernel inside the compiled step)."""
    if _STATE["op"] is not None:
        return _STATE["op"]
    import torch

    # explicit schema: this module's annotations are strings (``from __future__``)
    @torch.library.custom_op(
        "judgeeye::decode_attention", mutates_args=(),
        schema="(Tensor query, Tensor key, Tensor value, Tensor? mask, float scale) -> Tensor")
    def _op(query, key, value, mask, scale):
        return decode_attention(query, key, value, mask, scale)

    @_op.register_fake
    def _(query, key, value, mask, scale):
        b, h, _, dim = query.shape
        return query.new_empty((b, 1, h, dim))

    _STATE["op"] = _op
    return _op


def reference(query: Any, key: Any, value: Any, mask: Any, scale: float | None) -> Any:
    """The same attention in float64 (checks), (B, 1, H, D)."""
    import torch

    b, h, _, dim = query.shape
    groups = h // key.shape[1]
    k = key.double().repeat_interleave(groups, dim=1)
    v = value.double().repeat_interleave(groups, dim=1)
    scores = torch.matmul(query.double(), k.transpose(-1, -2)) * (
        scale if scale is not None else dim ** -0.5)
    if mask is not None:
        scores = scores.masked_fill(~mask[..., : key.shape[2]], float("-inf"))
    out = torch.matmul(torch.softmax(scores, dim=-1), v)
    return out.transpose(1, 2)


def random_case(batch: int, heads: int, kv_heads: int, dim: int, length: int, device: Any,
                dtype: Any, seed: int = 0) -> tuple[Any, Any, Any, Any]:
    """Random queries, a cache with garbage past each sequence's end, and a left-padding +
    current-position mask as the static decoder builds it."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn((batch, heads, 1, dim), generator=gen).to(device, dtype)
    k = torch.randn((batch, kv_heads, length, dim), generator=gen).to(device, dtype)
    v = torch.randn((batch, kv_heads, length, dim), generator=gen).to(device, dtype)
    pos = int(torch.randint(1, length, (1,), generator=gen))
    pad = torch.randint(0, pos + 1, (batch,), generator=gen)
    idx = torch.arange(length)
    mask = (idx[None, :] >= pad[:, None]) & (idx[None, :] <= pos)
    return q, k, v, mask[:, None, None, :].to(device)


def self_check(heads: int, kv_heads: int, dim: int, device: Any, dtype: Any) -> float:
    """Relative error of the kernels against float64 on random inputs of the model's head
    layout (a few batch sizes and lengths, split and unsplit); raises if Triton fails."""
    worst = 0.0
    for i, (batch, length, split) in enumerate(((3, 300, None), (2, 64, 1), (5, 517, 3))):
        q, k, v, mask = random_case(batch, heads, kv_heads, dim, length, device, dtype, seed=i)
        out = decode_attention(q, k, v, mask, None, n_split=split)
        ref = reference(q, k, v, mask, None)
        err = float((out.double() - ref).norm() / ref.norm())
        if not math.isfinite(err):
            return float("inf")
        worst = max(worst, err)
    return worst


__all__ = ["available", "custom_op", "decode_attention", "reference", "self_check", "supported"]
