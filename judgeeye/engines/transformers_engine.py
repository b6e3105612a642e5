"""The ``transformers`` engine: the embedded SmolLM2, any Hugging Face model, a GGUF file, with
an optional PEFT adapter, on the CPU or a GPU.

:meth:`TransformersEngine.generate` renders and tokenizes the chat prompts, sorts the sequences
by prompt length (the k samples of an item stay adjacent) and decodes them in batches of
``config.batch_size`` with one of two decoders:

* the **static decoder** (:mod:`judgeeye.engines.gpu`, the default): a preallocated cache, each
  distinct prompt prefilled once, compiled and graph-captured steps on a GPU, eager on the CPU;
  only on the transformers releases it supports, and models with full attention in every layer;
* **plain** ``model.generate`` (:mod:`judgeeye.engines.plain_decode`) everywhere else.

Sampling is temperature + top-p; ``temperature == 0`` is greedy. The two decoders sample the same
distribution but not the same random numbers, so a seed reproduces results on one path and
device. What a batch computed is kept until the next batch, so the score read-out
(:meth:`score_readout`) right after an item's traces runs only the answer cue on the static
decoder's rows (the traces' keys/values are there), or the traces on the prompt's keys/values
after ``generate``; it never prefills the prompt again.

Engine options (:class:`TransformersConfig` fields; ``generate_kwargs`` go to ``model.generate``
on the plain path):

====================  =========================================================================
``fast_decode``       ``True`` (default): the static decoder where supported; ``False``: always
                      ``model.generate``
``compile``           compile the decode step (default ``True`` on CUDA)
``cuda_graphs``       capture decode steps as CUDA graphs (default ``True`` on CUDA)
``fuse_projections``  fuse q/k/v and gate/up linears, in place (default: on CUDA, for models the
                      engine loaded itself; such a model then leaves the process cache)
``decode_attention``  ``"auto"`` (default), ``"triton"``, ``"sdpa"``, ``"efficient"``, ``"math"``
``compile_mode``      ``torch.compile`` mode of the decode step (default ``None``)
``sync_every``        decode steps between "all sequences finished?" checks (default 16)
``max_graphs``        (batch, length) slots kept with their cache and graphs (default 4; without
                      CUDA graphs one: every batch then has a shape of its own)
``merge_adapter``     merge a LoRA adapter into the weights (default ``True``; read by the loader)
``keep_loaded``       ``False``: :meth:`close` also drops the model from the process cache
====================  =========================================================================
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from judgeeye.engines.base import (
    Completion,
    Engine,
    EngineError,
    GenerationRequest,
    Messages,
    ResultCallback,
    SamplingParams,
    TransformersConfig,
)
from judgeeye.engines.chat_prompt import encode_text, eos_token_ids, pad_token_id, render_chat
from judgeeye.engines.gpu import StaticDecoder, build_static_decoder
from judgeeye.engines.model_loader import load_model, prepare_tokenizer, release_model
from judgeeye.engines.plain_decode import full_attention_only, plain_generate
from judgeeye.engines.readout import (
    level_token_ids,
    levels_from_logits,
    read_each,
    read_shared_prompt,
)
from judgeeye.engines.token_results import BatchStats, PromptCache, TokenResult
from judgeeye.ratings import split_reasoning

log = logging.getLogger(__name__)


def _common_start(a: Sequence[int], b: Sequence[int]) -> int:
    """How many tokens ``a`` and ``b`` share from the start."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


class TransformersEngine(Engine):
    """Local inference with transformers (see the module docstring)."""

    supports_readout = True
    config: TransformersConfig

    def __init__(self, config: TransformersConfig | None = None, *, model: Any = None,
                 tokenizer: Any = None) -> None:
        config = config or TransformersConfig()
        if not isinstance(config, TransformersConfig):
            raise EngineError(f"TransformersEngine got a {config.kind!r} config")
        self.config = config
        #: loaded here (shared through the process cache) rather than handed in
        self._owns_model = model is None
        if model is None:
            model, tokenizer = load_model(self.config)
        elif tokenizer is not None:
            prepare_tokenizer(tokenizer, model)
        self.model: Any = model
        self.tokenizer: Any = tokenizer
        self.device = model.device
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.pad_id = pad_token_id(model, tokenizer, self.eos_ids)
        self._fast_wanted = self.config.fast_decode
        self._decoder: StaticDecoder | None = None
        #: why the static decoder is off (unsupported release or model, or it failed)
        self._fast_failed: str | None = None
        #: the last batch's prompts and their keys/values, for the read-out that follows it
        self._prompt_caches: dict[tuple[int, ...], PromptCache] = {}
        #: the static decoder's last batch, row by row (prompt, generated tokens it cached)
        self._trace_rows: list[tuple[tuple[int, ...], list[int]]] = []
        self.stats: list[BatchStats] = []
        #: tokens the score read-outs ran through the model (benchmarks, tests)
        self.readout_tokens = 0

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any = None, config: TransformersConfig | None = None,
                   **fields: Any) -> TransformersEngine:
        """An engine around an already loaded model (benchmarks, training callbacks); ``fields``
        override config fields."""
        cfg = config or TransformersConfig()
        if fields:
            cfg = TransformersConfig.model_validate({**cfg.model_dump(), **fields})
        return cls(cfg, model=model, tokenizer=tokenizer)

    # ------------------------------------------------------------------------------ paths
    @property
    def decode_path(self) -> str:
        """"static" or "generate": the decoder the next batch uses."""
        return "static" if self._static_decoder() is not None else "generate"

    @property
    def decode_note(self) -> str | None:
        """Why the static decoder is not used, if it is not."""
        return self._fast_failed

    def _static_decoder(self) -> StaticDecoder | None:
        if not self._fast_wanted or self._fast_failed is not None:
            return None
        if self._decoder is None:
            on_cuda = self.device.type == "cuda"
            cfg = self.config
            graphs = on_cuda if cfg.cuda_graphs is None else cfg.cuda_graphs
            self._decoder, self._fast_failed = build_static_decoder(
                self.model, pad_id=self.pad_id, eos=self.eos_ids,
                compile=on_cuda if cfg.compile is None else cfg.compile, cuda_graphs=graphs,
                sync_every=cfg.sync_every,
                # without graphs every batch has a shape of its own: keep only the last one
                max_slots=cfg.max_graphs if graphs else 1,
                fuse=(graphs and self._owns_model if cfg.fuse_projections is None
                      else cfg.fuse_projections),
                decode_attention=cfg.decode_attention, compile_mode=cfg.compile_mode)
            if self._decoder is not None and self._decoder.fused_groups and self._owns_model:
                # Its modules changed: later load_model() calls get a pristine copy.
                release_model(self.config)
        return self._decoder

    # --------------------------------------------------------------------- token level API
    def generate_tokens(self, prompts: Sequence[Sequence[int]], params: SamplingParams, *,
                        ignore_eos: bool = False) -> list[TokenResult]:
        """Generate for already tokenized prompts, one batch (the caller sizes it).

        ``ignore_eos`` keeps generating after EOS (benchmarks: every sequence runs
        ``params.max_tokens`` steps). Appends a :class:`BatchStats` to ``self.stats``.
        """
        import torch

        self._forget_batch()
        with torch.inference_mode():
            decoder = self._static_decoder()
            if decoder is not None:
                try:
                    results, stats = decoder.run(
                        prompts, max_new_tokens=params.max_tokens, temperature=params.temperature,
                        top_p=params.top_p, ignore_eos=ignore_eos)
                    self.stats.append(stats)
                    self._prompt_caches = decoder.prompt_caches()
                    self._trace_rows = decoder.trace_rows()
                    return results
                except EngineError:
                    raise
                except Exception as exc:
                    if _is_oom(exc):
                        raise
                    if any(s.path == "static" for s in self.stats):
                        raise  # it worked before: a real failure, not an unsupported model
                    self._fast_failed = f"{type(exc).__name__}: {exc}"
                    log.warning("static decoder failed (%s); using model.generate",
                                self._fast_failed)
                    self._decoder = None
            results, stats, cache = plain_generate(
                self.model, prompts, params, pad_id=self.pad_id, eos_ids=self.eos_ids,
                generate_kwargs=self.config.generate_kwargs, ignore_eos=ignore_eos)
            self.stats.append(stats)
            if cache is not None:
                self._prompt_caches = {tuple(prompts[0]): cache}
            return results

    # -------------------------------------------------------------------------- generate
    def encode_messages(self, messages: Messages) -> list[int]:
        if self.tokenizer is None:
            raise EngineError("this engine has no tokenizer: use generate_tokens")
        return encode_text(self.tokenizer, render_chat(self.tokenizer, messages))

    def _completion(self, result: TokenResult, prompt_len: int) -> Completion:
        ids = result.ids
        if result.finish_reason == "stop" and ids and ids[-1] in self.eos_ids:
            ids = ids[:-1]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        reasoning, answer = split_reasoning(text)
        return Completion(text=text, reasoning=reasoning, answer=answer,
                          prompt_tokens=prompt_len, completion_tokens=len(result.ids),
                          finish_reason=result.finish_reason)

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams,
                 on_result: ResultCallback | None = None) -> list[list[Completion]]:
        import torch

        if self.model is None:
            raise EngineError("engine is closed")
        if params.seed is not None:
            torch.manual_seed(int(params.seed))
        results: list[list[Completion | None]] = [[None] * max(0, r.n) for r in requests]
        remaining = [max(0, r.n) for r in requests]
        encoded: dict[int, list[int]] = {}

        def finish(i: int) -> None:
            if on_result is not None:
                on_result(i, list(results[i]))  # type: ignore[arg-type]

        for i, req in enumerate(requests):
            if req.n <= 0:
                finish(i)
                continue
            try:
                encoded[i] = self.encode_messages(req.messages)
                if not encoded[i]:
                    raise EngineError("the prompt is empty")
            except EngineError:
                raise
            except Exception as exc:
                err = f"could not build the prompt: {type(exc).__name__}: {exc}"
                results[i] = [Completion("", "", "", finish_reason="error", error=err)
                              for _ in range(req.n)]
                remaining[i] = 0
                finish(i)

        # All n samples of a request are adjacent; shortest prompts first (less padding).
        seqs = [(len(encoded[i]), i, j) for i in encoded for j in range(requests[i].n)]
        seqs.sort()
        size = self.config.batch_size
        if self._static_decoder() is None:
            # Plain path: a batch never mixes prompts, so each batch shares its prompt's prefill.
            batches = []
            for i in sorted(encoded, key=lambda i: len(encoded[i])):
                mine = [t for t in seqs if t[1] == i]
                batches += [mine[s: s + size] for s in range(0, len(mine), size)]
        else:
            batches = [seqs[s: s + size] for s in range(0, len(seqs), size)]
        for batch in batches:
            outcomes = self._run_batch([encoded[i] for _, i, _ in batch], params)
            touched: list[int] = []
            for (plen, i, j), outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, TokenResult):
                    results[i][j] = self._completion(outcome, plen)
                else:
                    results[i][j] = Completion("", "", "", prompt_tokens=plen,
                                               finish_reason="error", error=outcome)
                remaining[i] -= 1
                if remaining[i] == 0:
                    touched.append(i)
            for i in touched:
                finish(i)
        self._forget_batch()
        return [list(r) for r in results]  # type: ignore[arg-type]

    def _forget_batch(self) -> None:
        """What the read-out may reuse of a batch is valid only until the next one runs."""
        self._prompt_caches = {}
        self._trace_rows = []

    def _run_batch(self, prompts: list[list[int]], params: SamplingParams
                   ) -> list[TokenResult | str]:
        """Token results, or an error text per sequence; halves the batch on out-of-memory."""
        try:
            return list(self.generate_tokens(prompts, params))
        except Exception as exc:
            if _is_oom(exc) and len(prompts) > 1:
                self._free_cuda()
                half = len(prompts) // 2
                return (self._run_batch(prompts[:half], params)
                        + self._run_batch(prompts[half:], params))
            log.exception("generation failed for a batch of %d", len(prompts))
            return [f"{type(exc).__name__}: {exc}"] * len(prompts)

    def _free_cuda(self) -> None:
        import torch

        self._forget_batch()
        if self._decoder is not None:
            self._decoder.close()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # --------------------------------------------------------------------------- readout
    def score_readout(self, messages: Sequence[Messages], traces: Sequence[str],
                      levels: Sequence[int], cue: str) -> list[dict[str, float]]:
        import torch

        if self.model is None:
            raise EngineError("engine is closed")
        if len(messages) != len(traces):
            raise ValueError("score_readout needs one trace per prompt")
        if not messages:
            return []
        level_ids = level_token_ids(self.tokenizer, levels, cue)
        keys = list(level_ids)
        index = [level_ids[k] for k in keys]
        if (len(messages) > 1 and all(m == messages[0] for m in messages)
                and full_attention_only(self.model)):
            # The k > 1 traces of one item: each continues its sampled row where the decoder
            # still holds it, the rest run on the prompt once (from the sampling batch when it
            # is still there). A rater's single trace is read on the whole prompt and trace, as
            # validation reads it, so that both give the same numbers (tests/test_readout_protocol.py).
            prefix = self.encode_messages(messages[0])
            suffixes = [encode_text(self.tokenizer, t + cue) for t in traces]
            if prefix and all(suffixes):
                with torch.inference_mode():
                    out = self._read_on_rows(tuple(prefix), suffixes, index, keys)
                    rest = [j for j, d in enumerate(out) if d is None]
                    if rest:
                        cached = self._prompt_caches.get(tuple(prefix))
                        self.readout_tokens += sum(len(suffixes[j]) for j in rest) + (
                            len(prefix) - cached.length if cached else len(prefix))
                        found = read_shared_prompt(self.model, prefix, [suffixes[j] for j in rest],
                                                   index, keys, pad_id=self.pad_id, cached=cached)
                        for j, dist in zip(rest, found, strict=True):
                            out[j] = dist
                return out  # type: ignore[return-value]
        seqs = [encode_text(self.tokenizer, render_chat(self.tokenizer, m) + t + cue)
                for m, t in zip(messages, traces, strict=True)]
        self.readout_tokens += sum(len(x) for x in seqs)
        with torch.inference_mode():
            return read_each(self.model, seqs, index, keys, pad_id=self.pad_id,
                             batch_size=self.config.batch_size)

    def _read_on_rows(self, prompt: tuple[int, ...], suffixes: list[list[int]],
                      index: list[int], keys: list[str]) -> list[dict[str, float] | None]:
        """Read-outs that continue the static decoder's rows of ``prompt`` in the last batch:
        each suffix (a trace and the cue) takes the free row whose generated tokens share its
        longest start, and only the rest of it runs (:meth:`StaticDecoder.continue_rows`).
        None for a suffix left without a row."""
        out: list[dict[str, float] | None] = [None] * len(suffixes)
        free = [r for r, (p, _) in enumerate(self._trace_rows) if p == prompt]
        if not free or self._decoder is None:
            return out
        chosen: list[tuple[int, int, int]] = []  # (suffix, row, tokens kept)
        for j, suffix in enumerate(suffixes):
            if not free:
                break
            shared = {r: _common_start(self._trace_rows[r][1], suffix) for r in free}
            row = max(free, key=shared.__getitem__)
            free.remove(row)
            chosen.append((j, row, min(shared[row], len(suffix) - 1)))  # at least one runs
        tails = [suffixes[j][k:] for j, _, k in chosen]
        self.readout_tokens += sum(len(t) for t in tails)
        logits = self._decoder.continue_rows([r for _, r, _ in chosen], [k for _, _, k in chosen],
                                             tails)
        for (j, _, _), dist in zip(chosen, levels_from_logits(logits, index, keys), strict=True):
            out[j] = dist
        return out

    # ----------------------------------------------------------------------------- close
    def close(self) -> None:
        self._forget_batch()
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        if self.model is not None and not self.config.keep_loaded:
            release_model(self.config)
        self.model = None
        self.tokenizer = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # pragma: no cover
            pass


__all__ = ["BatchStats", "StaticDecoder", "TokenResult", "TransformersEngine",
           "encode_text", "eos_token_ids", "render_chat"]
