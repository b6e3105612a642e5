"""What the transformers engine's decoders return: token ids per sequence, timings per batch,
and the prompt's keys/values kept for the score read-out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TokenResult:
    """One generated sequence: new token ids (EOS included when it stopped on one)."""

    ids: list[int]
    finish_reason: str  # "stop" | "length"


@dataclass
class BatchStats:
    """One decoded batch, for benchmarks and throughput estimates."""

    path: str  # "static" | "generate"
    batch: int  # real sequences
    padded_batch: int
    prompt_len: int  # longest prompt (padded length)
    new_tokens: int  # steps run (first token included)
    prefill_s: float
    decode_s: float
    total_s: float
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PromptCache:
    """Keys and values of a prompt's first ``length`` tokens, one (key, value) pair per layer,
    each shaped (1, kv heads, length, head dim): what a decoder computed in its prefill, kept so
    that the score read-out after the traces does not prefill the prompt a second time."""

    length: int
    layers: list[tuple[Any, Any]]


__all__ = ["BatchStats", "PromptCache", "TokenResult"]
