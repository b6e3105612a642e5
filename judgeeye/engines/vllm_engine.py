"""The ``vllm`` engine: vLLM in this process (``vllm.LLM``), for sampling on a GPU.

Each request goes to vLLM as one chat conversation with ``SamplingParams(n=k, seed=...)``: vLLM
prefills the prompt once and its k samples share that prefix in the KV cache (prefix caching is
on by default), which is what rejection sampling needs (k candidates per item). The chat
template is the model's, applied by ``LLM.chat`` (extra template arguments from
``config.chat_template_kwargs``, e.g. ``{"enable_thinking": true}``); reasoning and answer are
split from ``<think>`` tags by ``judgeeye.ratings.split_reasoning`` (offline vLLM runs no
reasoning parser). ``Completion.text`` is the raw output, as with the transformers engine.

vLLM is an optional extra (``pip install judgeeye[vllm]``, on a GPU machine: it pins its own
torch) and is imported only when an engine is built; without it :class:`VLLMEngine` refuses
with a message that says so. ``"embedded"`` and ``.gguf`` models are converted once to a
checkpoint folder (:func:`judgeeye.engines.model_loader.ensure_gguf_converted`), which vLLM
loads like any local model. A LoRA adapter directory runs through vLLM's LoRA support.

One ``generate`` call is one ``LLM.chat`` call (vLLM schedules all its sequences together), so
``on_result`` fires for every request when the call ends; the runners hand the engine
``4 * config.batch_size`` requests per call. A call that vLLM refuses (a prompt longer than the
context, say) is retried request by request, so only the bad request gets error completions.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from judgeeye.engines.base import (
    Completion,
    Engine,
    EngineError,
    GenerationRequest,
    ResultCallback,
    SamplingParams,
    VLLMConfig,
)
from judgeeye.ratings import split_reasoning

log = logging.getLogger(__name__)

MISSING = ("the vllm engine needs vLLM, which is not installed here: install judgeeye[vllm] on a GPU "
           "machine (pip install 'judgeeye[vllm]'); elsewhere use the transformers engine, or an "
           "openai engine pointed at a vLLM server")
#: LoRA ranks vLLM accepts for ``max_lora_rank``
_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def import_vllm() -> Any:
    """The ``vllm`` module, or :class:`EngineError` saying how to get it."""
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:
        raise EngineError(f"{MISSING} ({type(exc).__name__}: {exc})") from None


def sampling_kwargs(n: int, params: SamplingParams, config: VLLMConfig) -> dict[str, Any]:
    """``vllm.SamplingParams`` arguments for one request of ``n`` samples."""
    kwargs: dict[str, Any] = {**config.sampling_kwargs, "n": n, "temperature": params.temperature,
                              "top_p": params.top_p, "max_tokens": params.max_tokens}
    if params.seed is not None:
        kwargs["seed"] = int(params.seed)
    return kwargs


def completions_from(output: Any, n: int) -> list[Completion]:
    """The ``n`` completions of one ``vllm.RequestOutput`` (its ``outputs`` in index order)."""
    prompt_tokens = len(getattr(output, "prompt_token_ids", None) or [])
    samples = sorted(output.outputs, key=lambda o: o.index)[:n]
    out = []
    for sample in samples:
        finish = sample.finish_reason or "stop"
        if finish == "abort":
            out.append(Completion("", "", "", prompt_tokens=prompt_tokens, finish_reason="error",
                                  error="vllm engine: vLLM aborted the request"))
            continue
        reasoning, answer = split_reasoning(sample.text)
        meta = {"stop_reason": sample.stop_reason} if getattr(sample, "stop_reason", None) is not None else {}
        out.append(Completion(text=sample.text, reasoning=reasoning, answer=answer,
                              prompt_tokens=prompt_tokens, completion_tokens=len(sample.token_ids),
                              finish_reason=finish, meta=meta))
    out += [Completion("", "", "", prompt_tokens=prompt_tokens, finish_reason="error",
                       error=f"vllm engine: vLLM returned {len(samples)} of {n} samples")
            for _ in range(n - len(samples))]
    return out


def resolve_model(model: str) -> str:
    """What vLLM loads: a checkpoint folder for "embedded" and .gguf files, else the name as given."""
    from judgeeye.engines.model_loader import ensure_gguf_converted, resolve_source

    source = resolve_source(model)
    return str(ensure_gguf_converted(source.location)) if source.kind == "gguf" else source.location


def lora_rank(adapter: str) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds the adapter's rank."""
    config = Path(adapter).expanduser() / "adapter_config.json"
    if not config.is_file():
        raise EngineError(f"no PEFT adapter (adapter_config.json) in {adapter!r}")
    rank = int(json.loads(config.read_text()).get("r", 16))
    return next((r for r in _LORA_RANKS if r >= rank), rank)


class VLLMEngine(Engine):
    """Chat completions from ``vllm.LLM`` in this process (see the module docstring)."""

    supports_readout = False
    config: VLLMConfig

    def __init__(self, config: VLLMConfig) -> None:
        if not isinstance(config, VLLMConfig):
            raise EngineError(f"VLLMEngine needs an engine config of kind 'vllm', got {config.kind!r}")
        self.config = config
        self._vllm = import_vllm()
        kwargs: dict[str, Any] = {
            "model": resolve_model(config.model), "dtype": config.dtype,
            "gpu_memory_utilization": config.gpu_memory_utilization,
            "tensor_parallel_size": config.tensor_parallel_size, "enable_prefix_caching": True,
        }
        if config.max_model_len is not None:
            kwargs["max_model_len"] = config.max_model_len
        self._lora: Any = None
        if config.adapter:
            from vllm.lora.request import LoRARequest

            kwargs.update(enable_lora=True, max_lora_rank=lora_rank(config.adapter))
            self._lora = LoRARequest("adapter", 1, str(Path(config.adapter).expanduser().resolve()))
        kwargs.update(config.llm_kwargs)
        try:
            self.llm: Any = self._vllm.LLM(**kwargs)
        except Exception as exc:  # noqa: BLE001 - no GPU, unknown model, out of memory ...
            raise EngineError(f"vLLM could not load {config.model!r}: {type(exc).__name__}: {exc}") from exc

    def __repr__(self) -> str:
        return f"VLLMEngine({self.config.label()})"

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        params: SamplingParams,
        on_result: ResultCallback | None = None,
    ) -> list[list[Completion]]:
        if self.llm is None:
            raise EngineError("engine is closed")
        requests = list(requests)
        results: list[list[Completion]] = [[] for _ in requests]
        todo = [i for i, r in enumerate(requests) if r.n > 0]
        try:
            outputs = self._chat([requests[i] for i in todo], params)
        except Exception as exc:  # noqa: BLE001 - find the request vLLM refused, keep the others
            log.warning("vllm engine: a call of %d requests failed (%s); retrying one by one", len(todo), exc)
            outputs = []
            for i in todo:
                try:
                    outputs += self._chat([requests[i]], params)
                except Exception as one_exc:  # noqa: BLE001
                    outputs.append(one_exc)
        for i, output in zip(todo, outputs, strict=True):
            if isinstance(output, Exception):
                error = f"vllm engine: {type(output).__name__}: {output}"
                results[i] = [Completion("", "", "", finish_reason="error", error=error)
                              for _ in range(requests[i].n)]
            else:
                results[i] = completions_from(output, requests[i].n)
        if on_result is not None:
            for i in range(len(requests)):
                on_result(i, results[i])
        return results

    def _chat(self, requests: list[GenerationRequest], params: SamplingParams) -> list[Any]:
        if not requests:
            return []
        sampling = [self._vllm.SamplingParams(**sampling_kwargs(r.n, params, self.config)) for r in requests]
        outputs = self.llm.chat([r.messages for r in requests], sampling, use_tqdm=False,
                                lora_request=self._lora,
                                chat_template_kwargs=self.config.chat_template_kwargs or None)
        if len(outputs) != len(requests):
            raise EngineError(f"vLLM answered {len(outputs)} of {len(requests)} requests")
        return list(outputs)

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        del llm
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001  # pragma: no cover
            pass
