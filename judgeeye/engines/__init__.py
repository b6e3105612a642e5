"""LLM engines behind one interface: the embedded/any HF model (transformers), any
OpenAI-compatible server (vLLM, llama.cpp, hosted APIs) and vLLM in-process (``vllm``)."""

from judgeeye.engines.base import (
    EMBEDDED_MODEL,
    ENGINE_KINDS,
    AnyEngineConfig,
    Completion,
    Engine,
    EngineConfig,
    EngineError,
    GenerationRequest,
    Messages,
    OpenAIConfig,
    ReadoutUnsupported,
    ResultCallback,
    SamplingParams,
    TransformersConfig,
    VLLMConfig,
)


def make_engine(config: EngineConfig) -> Engine:
    """Build the engine a config describes (imports heavy dependencies only when needed)."""
    if isinstance(config, TransformersConfig):
        from judgeeye.engines.transformers_engine import TransformersEngine

        return TransformersEngine(config)
    if isinstance(config, OpenAIConfig):
        from judgeeye.engines.openai_engine import OpenAIEngine

        return OpenAIEngine(config)
    if isinstance(config, VLLMConfig):
        from judgeeye.engines.vllm_engine import VLLMEngine

        return VLLMEngine(config)
    raise EngineError(f"unknown engine kind {config.kind!r}")


__all__ = [
    "EMBEDDED_MODEL", "ENGINE_KINDS", "AnyEngineConfig", "Completion", "Engine", "EngineConfig",
    "EngineError", "GenerationRequest", "Messages", "OpenAIConfig", "ReadoutUnsupported",
    "ResultCallback", "SamplingParams", "TransformersConfig", "VLLMConfig", "make_engine",
]
