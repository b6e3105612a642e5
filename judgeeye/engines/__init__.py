"""LLM engines behind one interface: the embedded/any HF model (transformers) and any
OpenAI-compatible server (vLLM, llama.cpp, hosted APIs)."""

from judgeeye.engines.base import (
    EMBEDDED_MODEL,
    Completion,
    Engine,
    EngineConfig,
    EngineError,
    GenerationRequest,
    Messages,
    ReadoutUnsupported,
    ResultCallback,
    SamplingParams,
)


def make_engine(config: EngineConfig) -> Engine:
    """Build the engine a config describes (imports heavy dependencies only when needed)."""
    if config.kind == "transformers":
        from judgeeye.engines.transformers_engine import TransformersEngine

        return TransformersEngine(config)
    if config.kind == "openai":
        from judgeeye.engines.openai_engine import OpenAIEngine

        return OpenAIEngine(config)
    raise EngineError(f"unknown engine kind {config.kind!r}")


__all__ = [
    "EMBEDDED_MODEL", "Completion", "Engine", "EngineConfig", "EngineError", "GenerationRequest",
    "Messages", "ReadoutUnsupported", "ResultCallback", "SamplingParams", "make_engine",
]
