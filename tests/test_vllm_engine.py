"""The ``vllm`` engine. vLLM runs only on a GPU machine with ``judgeeye[vllm]`` installed: the
engine tests there are skipped elsewhere, saying why. Everywhere: its config, the refusal when
vLLM is missing, and the mapping of requests to ``vllm.SamplingParams`` and of vLLM's
``RequestOutput`` objects (here plain objects of the same shape) to completions."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import ValidationError

from judgeeye.engines import EngineError, GenerationRequest, SamplingParams, VLLMConfig, make_engine
from judgeeye.engines.vllm_engine import completions_from, lora_rank, resolve_model, sampling_kwargs

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


def _gpu_reason() -> str | None:
    if not HAVE_VLLM:
        return "vLLM is not installed (pip install 'judgeeye[vllm]' on a GPU machine)"
    import torch

    if not torch.cuda.is_available():
        return "vLLM is installed but no CUDA GPU is present"
    return None


needs_vllm_gpu = pytest.mark.skipif(_gpu_reason() is not None, reason=_gpu_reason() or "")


# ----------------------------------------------------------------- vLLM's output objects' shape
@dataclass
class CompletionOutput:  # vllm.outputs.CompletionOutput
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = "stop"
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:  # vllm.outputs.RequestOutput
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)


# ------------------------------------------------------------------------------ everywhere
@pytest.mark.skipif(HAVE_VLLM, reason="vLLM is installed here, so the engine does not refuse")
def test_without_vllm_the_engine_refuses_clearly() -> None:
    with pytest.raises(EngineError) as err:
        make_engine(VLLMConfig(model="Qwen/Qwen3-0.6B"))
    assert "install judgeeye[vllm] on a GPU machine" in str(err.value)


def test_config_and_sampling_params() -> None:
    config = VLLMConfig(model="Qwen/Qwen3-8B", sampling_kwargs={"top_k": 20}, batch_size=8)
    assert config.concurrency() == 8 and config.spec() == "vllm:Qwen/Qwen3-8B"
    params = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=64, seed=11)
    # one vLLM request per prompt, its k samples asked for together (they share the prompt's cache)
    assert sampling_kwargs(16, params, config) == {
        "top_k": 20, "n": 16, "temperature": 0.7, "top_p": 0.95, "max_tokens": 64, "seed": 11}
    assert "seed" not in sampling_kwargs(1, SamplingParams(), config)
    with pytest.raises(ValidationError, match="sampling_kwargs cannot set n, seed"):
        VLLMConfig(sampling_kwargs={"n": 2, "seed": 3})
    with pytest.raises(ValidationError, match="gpu_memory_utilization"):
        VLLMConfig(gpu_memory_utilization=1.5)


def test_request_output_to_completions() -> None:
    output = RequestOutput(prompt_token_ids=list(range(40)), outputs=[
        CompletionOutput(1, "No tags here. <rating>2</rating>", [5] * 12, "length"),
        CompletionOutput(0, "<think>\nFlat plot.\n</think>\n\n<rating>1</rating>", [7] * 9, "stop", stop_reason=2),
        CompletionOutput(2, "Only the end of the thinking.</think>Rating: 3", [1, 2, 3]),
    ])
    first, second, third = completions_from(output, 3)
    assert (first.reasoning, first.answer, first.finish_reason) == ("Flat plot.", "<rating>1</rating>", "stop")
    assert first.text.startswith("<think>") and first.meta == {"stop_reason": 2}
    assert (second.reasoning, second.answer, second.finish_reason) == ("", "No tags here. <rating>2</rating>", "length")
    assert (third.reasoning, third.answer) == ("Only the end of the thinking.", "Rating: 3")  # template opened it
    assert [c.prompt_tokens for c in (first, second, third)] == [40] * 3
    assert [c.completion_tokens for c in (first, second, third)] == [9, 12, 3]

    aborted = completions_from(RequestOutput([1, 2], [CompletionOutput(0, "", [], "abort")]), 2)
    assert [c.finish_reason for c in aborted] == ["error", "error"]
    assert "aborted" in aborted[0].error and "returned 1 of 2 samples" in aborted[1].error


def test_models_and_adapters(tmp_path: Path) -> None:
    assert resolve_model("Qwen/Qwen3-8B") == "Qwen/Qwen3-8B"  # vLLM resolves hub ids itself
    assert resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    with pytest.raises(EngineError, match="GGUF file not found"):
        resolve_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(EngineError, match="no PEFT adapter"):
        lora_rank(str(tmp_path))
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 24}))
    assert lora_rank(str(tmp_path)) == 32  # the smallest max_lora_rank vLLM accepts that holds it


# ------------------------------------------------------------------------- GPU and vLLM
@pytest.fixture(scope="module")
def vllm_engine():
    engine = make_engine(VLLMConfig(model="embedded", gpu_memory_utilization=0.3, max_model_len=1024,
                                    llm_kwargs={"enforce_eager": True}))
    yield engine
    engine.close()


@needs_vllm_gpu
@pytest.mark.slow
def test_vllm_k_samples_per_prompt_with_seeds(vllm_engine) -> None:  # type: ignore[no-untyped-def]
    requests = [GenerationRequest([{"role": "user", "content": "Write one word about the sea."}], n=4),
                GenerationRequest([{"role": "user", "content": "Name a colour."}], n=2),
                GenerationRequest([{"role": "user", "content": "unused"}], n=0)]
    seen: list[int] = []
    params = SamplingParams(temperature=1.0, max_tokens=12, seed=7)
    out = vllm_engine.generate(requests, params, on_result=lambda i, comps: seen.append(i))
    assert sorted(seen) == [0, 1, 2] and [len(c) for c in out] == [4, 2, 0]
    for c in out[0] + out[1]:
        assert c.finish_reason in {"stop", "length"} and c.error is None
        assert c.prompt_tokens > 5 and 1 <= c.completion_tokens <= 12 and c.answer == c.text.strip()
    assert len({c.text for c in out[0]}) >= 2  # k samples, not k copies
    again = vllm_engine.generate(requests[:1], params)
    assert [c.text for c in again[0]] == [c.text for c in out[0]]  # the seed reproduces them


@needs_vllm_gpu
@pytest.mark.slow
def test_vllm_a_refused_prompt_fails_alone(vllm_engine) -> None:  # type: ignore[no-untyped-def]
    too_long = GenerationRequest([{"role": "user", "content": "word " * 5000}], n=2)
    fine = GenerationRequest([{"role": "user", "content": "Say hello."}], n=1)
    bad, good = vllm_engine.generate([too_long, fine], SamplingParams(max_tokens=4))
    assert [c.finish_reason for c in bad] == ["error", "error"] and "vllm engine" in bad[0].error
    assert good[0].finish_reason in {"stop", "length"}
