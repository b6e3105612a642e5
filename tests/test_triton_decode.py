"""The GPU decode path's kernels that can be checked without a GPU: the chunked sampling argmax
(exactly torch.argmax, ties included), the grouped-query attention of decode steps and read-out
blocks, and, where Triton is installed, the split-KV decode attention in Triton's interpreter
(fp16: the interpreter's bf16 matmul is not usable)."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("width", [1000, 16384, 151936, 50257])
def test_row_argmax_is_argmax(width: int) -> None:
    from judgeeye.engines.gpu.sampling import row_argmax as _row_argmax

    gen = torch.Generator().manual_seed(width)
    x = torch.randn((5, width), generator=gen)
    assert torch.equal(_row_argmax(x), x.argmax(dim=-1))
    ties = (x * 2).round().clamp(max=3)  # many equal maxima per row: the first one wins
    assert torch.equal(_row_argmax(ties), ties.argmax(dim=-1))
    late = torch.full((2, width), -1.0)
    late[0, -1] = 5.0  # in the padded last chunk
    late[1, width // 2] = 5.0
    assert _row_argmax(late).tolist() == [width - 1, width // 2]


def test_chunked_gumbel_max_draws_from_the_softmax() -> None:
    """Sampling through the chunked argmax (vocabulary above the split size) still draws from
    softmax(logits / T); with the noise off it is the plain argmax (greedy in the graph)."""
    from judgeeye.engines.gpu.sampling import sample_next as _sample

    torch.manual_seed(0)
    width = 20000
    logits = torch.full((1, width), -30.0)
    picks = torch.tensor([5, 9000, 16383, 19999])  # in different chunks, one in the padded one
    logits[0, picks] = torch.tensor([1.0, 2.0, 0.5, 1.5])
    rows = logits.expand(400, width).contiguous()
    on, off = torch.ones((), dtype=torch.bool), torch.zeros((), dtype=torch.bool)
    temp, top_p = torch.tensor(0.7), torch.ones(())
    drawn = torch.cat([_sample(rows, False, False, temp, top_p, on) for _ in range(5)])
    freq = torch.stack([(drawn == i).float().mean() for i in picks])
    expected = torch.softmax(logits[0, picks] / 0.7, dim=-1)
    assert float((freq - expected).abs().max()) < 0.03
    assert float(freq.sum()) == pytest.approx(1.0)
    greedy = _sample(rows[:3], False, False, torch.ones(()), top_p, off)
    assert greedy.tolist() == [9000] * 3


@pytest.mark.parametrize("mode", ["sdpa", "math"])
@pytest.mark.parametrize("queries", [1, 5])
def test_grouped_attention_equals_sdpa_on_repeated_heads(mode: str, queries: int) -> None:
    """A decode step (one query) or a read-out block (a few, each with its own mask row) on the
    key/value heads directly gives what sdpa gives on keys/values copied to every query head."""
    from judgeeye.engines.gpu.attention import _decode_attention, set_decode_attention

    g = torch.Generator().manual_seed(0)
    b, kv_heads, groups, length, d = 3, 2, 3, 40, 16
    q = torch.randn((b, kv_heads * groups, queries, d), generator=g)
    k = torch.randn((b, kv_heads, length, d), generator=g)
    v = torch.randn((b, kv_heads, length, d), generator=g)
    # per row: a left pad, then causal over the block at the end (the read-out's mask)
    kv, rows = torch.arange(length), torch.arange(queries)
    pads = torch.tensor([0, 7, 20])
    last = length - queries + rows[None, :, None]  # each block row sees itself and what precedes
    mask = ((kv[None, None, :] >= pads[:, None, None]) & (kv[None, None, :] <= last))[:, None]
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1), attn_mask=mask)
    set_decode_attention(mode)
    try:
        out = _decode_attention(q, k, v, mask, None, groups)
    finally:
        set_decode_attention("sdpa")
    assert out.shape == (b, queries, kv_heads * groups, d)
    assert torch.allclose(out, expected.transpose(1, 2), atol=1e-5)


def test_triton_attention_off_without_cuda() -> None:
    from judgeeye.engines.gpu import triton_decode

    q = torch.zeros((1, 4, 1, 16), dtype=torch.bfloat16)
    k = torch.zeros((1, 2, 8, 16), dtype=torch.bfloat16)
    assert not triton_decode.supported(q, k, k, None)
    if not torch.cuda.is_available():
        assert not triton_decode.available()


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton not installed")
def test_triton_attention_matches_float64_in_interpreter(monkeypatch) -> None:
    from judgeeye.engines.gpu import triton_decode

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setitem(triton_decode._STATE, "kernels", None)  # build them interpreted
    monkeypatch.setitem(triton_decode._STATE, "sms", 4)
    for i, (b, h, kvh, d, length, split) in enumerate(
            [(3, 14, 2, 64, 300, None), (2, 12, 2, 128, 64, 1), (2, 6, 2, 80, 130, 3)]):
        q, k, v, mask = triton_decode.random_case(b, h, kvh, d, length, "cpu", torch.float16,
                                                  seed=i)
        out = triton_decode.decode_attention(q, k, v, mask, None, n_split=split)
        ref = triton_decode.reference(q, k, v, mask, None)
        assert out.shape == (b, 1, h, d) and out.is_contiguous()
        assert float((out.double() - ref).norm() / ref.norm()) < 2e-3
    out = triton_decode.decode_attention(q, k, v, None, 0.3)
    ref = triton_decode.reference(q, k, v, None, 0.3)
    assert float((out.double() - ref).norm() / ref.norm()) < 2e-3
