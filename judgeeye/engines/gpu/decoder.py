"""The static decoder: batched sampling on a preallocated ``StaticCache``.

The prompt goes through one eager forward pass (prefill; each distinct prompt once, its
keys/values copied into every row that samples it); every decode step (forward, Gumbel-max
sampling, EOS bookkeeping, the output write) is one function. On a GPU that function is compiled
by ``torch.compile`` with dynamic shapes and captured once as a CUDA graph per (batch bucket,
cache length bucket), replayed with no host synchronisation except an "all finished?" check
every ``sync_every`` steps; batch sizes are padded up to powers of two (>= 2) and cache lengths
up to multiples of 256, so a handful of graphs serve every batch. On the CPU the same step runs
eagerly on exact shapes: the preallocated cache and the shared prefill are what make it faster
than ``generate`` there (``bench/README.md``).

This is transformers' own model code and ``StaticCache``; only the loop around them is ours,
because ``generate``'s Python loop synchronises with the GPU on every step and leaves a small
model launch-bound. It relies on transformers internals: :mod:`.compat` says which releases.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from judgeeye.engines.base import EngineError
from judgeeye.engines.gpu.attention import (
    DECODE_ATTENTION,
    resolve_triton,
    set_decode_attention,
    use_decode_attention,
)
from judgeeye.engines.gpu.fusion import fuse_projections
from judgeeye.engines.gpu.sampling import sample_next
from judgeeye.engines.plain_decode import cache_kwarg
from judgeeye.engines.token_results import BatchStats, PromptCache, TokenResult

log = logging.getLogger(__name__)


def _kv_layers(cache: Any) -> list[Any]:
    """A cache's layers with their ``keys``/``values`` tensors. Any: transformers types them as a
    union with linear-attention and dummy layers (optional keys), which these caches never hold."""
    return list(cache.layers)


class _Slot:
    """Static buffers, cache and captured graphs for one (batch, cache length) shape."""

    def __init__(self, model: Any, batch: int, length: int, pad_id: int, eos: list[int]) -> None:
        import torch
        from transformers import StaticCache

        device = model.device
        self.batch, self.length = batch, length
        self.cache = StaticCache(config=model.config, max_cache_len=length)
        self.tok = torch.full((batch, 1), pad_id, dtype=torch.long, device=device)
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.pad = torch.zeros(batch, dtype=torch.long, device=device)
        self.kv_idx = torch.arange(length, dtype=torch.long, device=device)
        self.out = torch.full((batch, length), pad_id, dtype=torch.long, device=device)
        self.finished = torch.zeros(batch, dtype=torch.bool, device=device)
        self.eos = torch.tensor(eos or [-1], dtype=torch.long, device=device)
        self.pad_tok = torch.tensor(pad_id, dtype=torch.long, device=device)
        self.temperature = torch.ones((), dtype=torch.float32, device=device)
        self.noise_on = torch.ones((), dtype=torch.bool, device=device)
        self.top_p = torch.ones((), dtype=torch.float32, device=device)
        self.graphs: dict[tuple[bool, bool, bool], Any] = {}

    def set_cache_length(self, n: int) -> None:
        for layer in self.cache.layers:
            cl = getattr(layer, "cumulative_length", None)
            if cl is None:
                raise EngineError("unsupported cache layer for the static decoder")
            if hasattr(cl, "fill_"):
                cl.fill_(n)
            else:  # pragma: no cover - an int counter cannot follow graph replays
                raise EngineError("static cache layers without a tensor position counter")


@dataclass
class _LastRun:
    """What the slot holds after a run: rows' prompts (left-padded by ``pads`` to ``width``)
    and the generated tokens fed back (``cached``; the cache is filled up to ``end``)."""

    slot: _Slot
    prompts: list[tuple[int, ...]]
    pads: list[int]
    width: int
    end: int
    cached: list[list[int]]


class StaticDecoder:
    """Batched sampling on a ``StaticCache`` with a compiled, graph-captured decode step."""

    #: cache lengths are rounded up to this (graphs are per length)
    LENGTH_STEP = 256

    def __init__(self, model: Any, *, pad_id: int, eos: list[int], compile: bool,
                 cuda_graphs: bool, sync_every: int = 16, max_slots: int = 4,
                 fuse: bool = False, decode_attention: str = "auto",
                 compile_mode: str | None = None) -> None:
        import torch

        self.model = model
        self.pad_id, self.eos = pad_id, eos
        self.device = model.device
        self.graphs = bool(cuda_graphs and self.device.type == "cuda")
        self.sync_every = max(1, int(sync_every))
        self.max_slots = max(1, int(max_slots))
        self.slots: OrderedDict[tuple[int, int], _Slot] = OrderedDict()
        self._pool = torch.cuda.graph_pool_handle() if self.graphs else None
        check_static_support(model)
        if decode_attention not in DECODE_ATTENTION:
            raise EngineError(f"decode_attention must be one of {DECODE_ATTENTION}")
        #: why the Triton kernels are not used, where asked for ("auto"/"triton")
        self.attention_note: str | None = None
        if decode_attention in ("auto", "triton"):
            decode_attention, self.attention_note = resolve_triton(model)
            if self.attention_note:
                log.info("decode attention: %s", self.attention_note)
        self.decode_attention = decode_attention
        set_decode_attention(decode_attention)
        self.attention_packed = use_decode_attention(model)
        self.fused_groups = fuse_projections(model) if fuse else 0
        #: prefill each distinct prompt alone (CPU) rather than as one padded batch (GPU)
        self.prefill_each = self.device.type == "cpu"
        #: the last run, for :meth:`prompt_caches` and :meth:`continue_rows`
        self._last: _LastRun | None = None

        cache_kw = cache_kwarg(model)

        def forward(input_ids: Any, mask: Any, position_ids: Any, cache: Any) -> Any:
            out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                        use_cache=True, logits_to_keep=1, **{cache_kw: cache})
            return out.logits

        def step(tok: Any, pos: Any, pad: Any, kv_idx: Any, out: Any, finished: Any, eos: Any,
                 pad_tok: Any, temperature: Any, top_p: Any, noise_on: Any, cache: Any,
                 use_top_p: bool, ignore_eos: bool) -> None:
            """One decode step, entirely on the device: attend, sample, record, advance.
            Greedy decoding is this same function (one compilation) with the noise off."""
            valid = (kv_idx[None, :] >= pad[:, None]) & (kv_idx[None, :] <= pos)
            logits = forward(tok, valid[:, None, None, :], (pos - pad).unsqueeze(1), cache)
            nxt = sample_next(logits[:, -1, :].float(), False, use_top_p, temperature, top_p,
                              noise_on)
            if not ignore_eos:
                nxt = torch.where(finished, pad_tok, nxt)
                finished.copy_(finished | (nxt[:, None] == eos[None, :]).any(dim=-1))
            out.index_copy_(1, pos + 1, nxt.unsqueeze(1))
            tok.copy_(nxt.unsqueeze(1))
            pos.add_(1)

        self._eager_forward = forward
        self._step_fn = step
        if compile:
            import torch._dynamo as dynamo

            limit = getattr(dynamo.config, "recompile_limit", None)
            if limit is not None and limit < 32:
                dynamo.config.recompile_limit = 32
            self._step_fn = torch.compile(step, dynamic=True, fullgraph=False, mode=compile_mode)

    # ----------------------------------------------------------------------------- shapes
    def _bucket_batch(self, n: int) -> int:
        if not self.graphs:
            return n
        b = 2
        while b < n:
            b *= 2
        return b

    def _bucket_length(self, n: int) -> int:
        if not self.graphs:
            return n
        step = self.LENGTH_STEP
        return -(-n // step) * step

    def _slot(self, batch: int, length: int) -> _Slot:
        key = (batch, length)
        if key in self.slots:
            self.slots.move_to_end(key)
            return self.slots[key]
        while len(self.slots) >= self.max_slots:
            self.slots.popitem(last=False)
        slot = _Slot(self.model, batch, length, self.pad_id, self.eos)
        self.slots[key] = slot
        return slot

    def close(self) -> None:
        self.slots.clear()
        self._last = None

    def prompt_caches(self) -> dict[tuple[int, ...], PromptCache]:
        """Each distinct prompt of the last :meth:`run` with its keys/values: views into the
        slot's cache, valid until the next run writes it (the engine drops them then)."""
        if self._last is None:
            return {}
        last = self._last
        out: dict[tuple[int, ...], PromptCache] = {}
        for row, prompt in enumerate(last.prompts):
            if prompt not in out:
                pad, width = last.pads[row], last.width
                out[prompt] = PromptCache(width - pad, [
                    (layer.keys[row:row + 1, :, pad:width], layer.values[row:row + 1, :, pad:width])
                    for layer in _kv_layers(last.slot.cache)])
        return out

    def trace_rows(self) -> list[tuple[tuple[int, ...], list[int]]]:
        """Each row of the last :meth:`run`: its prompt and the generated tokens whose
        keys/values the slot holds (all but the last one, which no step has fed back)."""
        if self._last is None:
            return []
        return list(zip(self._last.prompts, self._last.cached, strict=True))

    def continue_rows(self, rows: Sequence[int], kept: Sequence[int],
                      tails: Sequence[Sequence[int]]) -> Any:
        """Next-token logits, shape (len(rows), vocab), after row ``rows[j]`` of the last run
        continued by ``tails[j]`` from its prompt and its first ``kept[j]`` generated tokens.

        The score read-out after a trace: the trace's keys/values are already in the slot, so
        only what follows them runs (the answer cue, and the few tokens where the trace's text
        re-tokenizes differently) instead of the whole trace again. The rows' keys/values are
        copied out of the slot, which is left as it was; valid until the next :meth:`run`."""
        import torch
        from transformers import DynamicCache

        last = self._last
        if last is None:
            raise EngineError("no decoded batch to continue")
        if not rows or any(not t for t in tails) or any(
                not 0 <= k <= len(last.cached[r]) for r, k in zip(rows, kept, strict=True)):
            raise ValueError("each row needs a tail and at most its cached tokens")
        dev, end = self.device, last.end
        n, t = len(rows), max(len(x) for x in tails)
        index = torch.tensor(list(rows), device=dev)
        data = [(layer.keys[:, :, :end].index_select(0, index),
                 layer.values[:, :, :end].index_select(0, index)) for layer in _kv_layers(last.slot.cache)]
        cache = DynamicCache(ddp_cache_data=data, config=self.model.config)
        # Tails left-padded, so that every row's last token is the block's last position.
        ids = torch.full((n, t), self.pad_id, dtype=torch.long)
        for j, tail in enumerate(tails):
            ids[j, t - len(tail):] = torch.as_tensor(list(tail), dtype=torch.long)
        pad = torch.tensor([last.pads[r] for r in rows], device=dev)
        stop = torch.tensor([last.width + k for k in kept], device=dev)  # past the kept tokens
        start = torch.tensor([t - len(x) for x in tails], device=dev)  # first real tail slot
        kv = torch.arange(end + t, device=dev)[None, None, :]
        q = torch.arange(t, device=dev)[None, :, None]
        past = (kv >= pad[:, None, None]) & (kv < stop[:, None, None])
        own = (kv >= end + start[:, None, None]) & (kv <= end + q)
        valid = ((past | own) & (q >= start[:, None, None])) | (kv == end + q)  # pads: themselves
        position_ids = ((last.width - pad + torch.tensor(list(kept), device=dev))[:, None]
                        + torch.arange(t, device=dev)[None, :] - start[:, None]).clamp(min=0)
        logits = self._eager_forward(ids.to(dev), valid[:, None, :, :], position_ids, cache)
        return logits[:, -1, :]

    # ------------------------------------------------------------------------------- step
    def _step(self, slot: _Slot, mode: tuple[bool, bool, bool]) -> None:
        _greedy, use_top_p, ignore_eos = mode  # greedy: slot.noise_on is off
        self._step_fn(slot.tok, slot.pos, slot.pad, slot.kv_idx, slot.out, slot.finished,
                      slot.eos, slot.pad_tok, slot.temperature, slot.top_p, slot.noise_on,
                      slot.cache, use_top_p, ignore_eos)

    def _graph(self, slot: _Slot, mode: tuple[bool, bool, bool]) -> Any:
        """Capture one decode step (compiling it first if needed); state is left as found."""
        import torch

        if mode in slot.graphs:
            return slot.graphs[mode]
        saved = [t.clone() for t in (slot.tok, slot.pos, slot.out, slot.finished)]
        cache_len = int(slot.pos.item())
        # Warm-up on a side stream (compiles, autotunes, allocates), then capture.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._step(slot, mode)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            self._step(slot, mode)
        # The warm-up wrote past the prompt into the cache; those positions are rewritten
        # before anything attends to them. Put the counters and buffers back.
        for t, s in zip((slot.tok, slot.pos, slot.out, slot.finished), saved, strict=True):
            t.copy_(s)
        slot.set_cache_length(cache_len)
        slot.graphs[mode] = graph
        return graph

    # -------------------------------------------------------------------------------- run
    def _prefill_each(self, slot: _Slot, prompts: list[tuple[int, ...]], source: list[int],
                      width: int) -> Any:
        """Prefill each distinct prompt on its own and copy its keys/values into every row that
        samples it (``source[row]`` = index into ``prompts``), right-aligned at ``width``.
        Returns the last-position logits per row.

        Why (CPU): one prompt needs no padding and no mask, so attention is the plain causal
        kernel; a padded, masked batch of the sample project's prompts (1,000 to 2,500 tokens)
        cost twice the CPU time (``bench/README.md``)."""
        import torch
        from transformers import DynamicCache

        dev = self.device
        last = []
        for u, prompt in enumerate(prompts):
            tmp = DynamicCache(config=self.model.config)
            length = len(prompt)
            last.append(self._eager_forward(torch.tensor([prompt], device=dev), None,
                                            torch.arange(length, device=dev)[None], tmp))
            rows = [r for r, v in enumerate(source) if v == u]
            for layer, part in zip(_kv_layers(slot.cache), _kv_layers(tmp), strict=True):
                if not layer.is_initialized:
                    layer.lazy_initialization(part.keys.expand(slot.batch, -1, -1, -1),
                                              part.values.expand(slot.batch, -1, -1, -1))
                for r in rows:
                    layer.keys[r, :, width - length:width].copy_(part.keys[0])
                    layer.values[r, :, width - length:width].copy_(part.values[0])
        slot.set_cache_length(width)
        return torch.cat(last).index_select(0, torch.tensor(source, device=dev))

    def _prefill_shared(self, slot: _Slot, ids: Any, pads: Any, position_ids: Any, unique: Any,
                        source: Any, width: int) -> Any:
        """Prefill only the rows ``unique`` (one per distinct prompt) into a dynamic cache, then
        copy each one's keys/values into every row of ``slot.cache`` that holds its prompt
        (``source[row]`` = index into ``unique``). Returns the last-position logits per row."""
        import torch
        from transformers import DynamicCache

        q = torch.arange(width, device=ids.device)
        keys, queries = q[None, None, :], q[None, :, None]
        pad_u = pads.index_select(0, unique)
        valid = ((keys >= pad_u[:, None, None]) & (keys <= queries)) | (keys == queries)
        tmp = DynamicCache(config=self.model.config)
        logits = self._eager_forward(ids.index_select(0, unique), valid[:, None, :, :],
                                     position_ids.index_select(0, unique), tmp)
        for layer, part in zip(_kv_layers(slot.cache), _kv_layers(tmp), strict=True):
            k_rows, v_rows = part.keys.index_select(0, source), part.values.index_select(0, source)
            if not layer.is_initialized:
                layer.lazy_initialization(k_rows, v_rows)
            layer.keys[:, :, :width].copy_(k_rows)
            layer.values[:, :, :width].copy_(v_rows)
        slot.set_cache_length(width)
        return logits.index_select(0, source)

    def run(self, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, temperature: float,
            top_p: float, ignore_eos: bool = False) -> tuple[list[TokenResult], BatchStats]:
        import torch

        started = time.perf_counter()
        self._last = None
        n = len(prompts)
        if n == 0:
            raise ValueError("no prompts")
        # process-wide setting read while tracing; put ours back if another decoder changed it
        set_decode_attention(self.decode_attention)
        width = max(len(p) for p in prompts)
        if width == 0:
            raise EngineError("empty prompt")
        max_new = max(1, int(max_new_tokens))
        batch = self._bucket_batch(n)
        length = self._bucket_length(width + max_new)
        slot = self._slot(batch, length)
        rows = list(prompts) + [prompts[0]] * (batch - n)  # filler rows copy the first prompt
        ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        pads = torch.zeros(batch, dtype=torch.long)
        for r, p in enumerate(rows):
            ids[r, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
            pads[r] = width - len(p)
        greedy = temperature <= 0
        use_top_p = (not greedy) and top_p < 1.0
        mode = (greedy, use_top_p, ignore_eos)

        # ---- prefill (eager: every prompt length, compute-bound anyway)
        dev = self.device
        ids_d, pads_d = ids.to(dev), pads.to(dev)
        slot.pad.copy_(pads_d)
        slot.set_cache_length(0)
        # greedy: temperature 1 and no noise, so the step's draw is the plain argmax
        slot.temperature.fill_(max(float(temperature), 1e-5) if not greedy else 1.0)
        slot.noise_on.fill_(not greedy)
        slot.top_p.fill_(float(top_p))
        q = torch.arange(width, device=dev)
        position_ids = (q[None, :] - pads_d[:, None]).clamp(min=0)
        # The k samples of an item are k rows with one prompt: prefill each distinct prompt once
        # and copy its keys/values into all its rows (saves (k-1)/k of the prefill).
        first_row: dict[tuple[int, ...], int] = {}
        source = [first_row.setdefault(tuple(p), len(first_row)) for p in rows]
        if self.prefill_each:
            logits = self._prefill_each(slot, list(first_row), source, width)
        elif len(first_row) < batch:
            unique = torch.tensor([source.index(u) for u in range(len(first_row))], device=dev)
            logits = self._prefill_shared(slot, ids_d, pads_d, position_ids, unique,
                                          torch.tensor(source, device=dev), width)
        else:
            k = slot.kv_idx
            keys, queries = k[None, None, :], q[None, :, None]
            valid = ((keys >= pads_d[:, None, None]) & (keys <= queries)) \
                | (keys == queries)  # padding queries see themselves: no NaN
            logits = self._eager_forward(ids_d, valid[:, None, :, :], position_ids, slot.cache)
        first = sample_next(logits[:, -1, :].float(), greedy, use_top_p, slot.temperature, slot.top_p)
        slot.out.fill_(self.pad_id)
        slot.out[:, width] = first
        slot.tok.copy_(first.unsqueeze(1))
        slot.pos.fill_(width)
        if ignore_eos:
            slot.finished.zero_()
        else:
            slot.finished.copy_((first[:, None] == slot.eos[None, :]).any(dim=-1))
        if batch > n:
            slot.finished[n:] = True  # filler rows never hold up the early exit
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        prefill_done = time.perf_counter()

        # ---- decode
        steps = max_new - 1
        graph = self._graph(slot, mode) if (self.graphs and steps > 0) else None
        decode_start = time.perf_counter()
        done = 1
        for s in range(steps):
            if graph is not None:
                graph.replay()
            else:
                self._step(slot, mode)
            done += 1
            if not ignore_eos and (s + 1) % self.sync_every == 0 and bool(slot.finished.all()):
                break
        out = slot.out[:n, width: width + max_new].cpu()  # synchronises
        finished_at = time.perf_counter()

        results: list[TokenResult] = []
        eos = set(self.eos)
        for row in out.tolist():
            row = row[:done]
            stop = None
            if not ignore_eos:
                stop = next((i for i, t in enumerate(row) if t in eos), None)
            if stop is None:
                results.append(TokenResult(row, "length"))
            else:
                results.append(TokenResult(row[: stop + 1], "stop"))
        stats = BatchStats(
            path="static", batch=n, padded_batch=batch, prompt_len=width, new_tokens=done,
            prefill_s=prefill_done - started, decode_s=finished_at - decode_start,
            total_s=finished_at - started,
            meta={"graph": graph is not None, "cache_len": length,
                  "prompt_tokens": sum(len(p) for p in first_row),  # prefilled, once per prompt
                  "capture_s": decode_start - prefill_done},
        )
        fed = width + done - 1  # the last sampled token was never fed back into the cache
        self._last = _LastRun(slot, [tuple(p) for p in prompts], pads[:n].tolist(), width, fed,
                              [row[:done - 1] for row in out.tolist()])
        return results, stats


def check_static_support(model: Any) -> None:
    """Raise EngineError unless every layer is full attention on a plain ``StaticCache``."""
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        raise EngineError("encoder-decoder models are not supported by the static decoder")
    types = getattr(config.get_text_config(decoder=True), "layer_types", None)
    if types and any(t != "full_attention" for t in types):
        raise EngineError(f"layer types {sorted(set(types))} need transformers' generate")
    if type(model).__name__.startswith("Peft"):
        raise EngineError("an unmerged PEFT model needs transformers' generate")

