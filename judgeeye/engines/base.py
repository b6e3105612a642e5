"""One interface for every LLM engine: chat requests in, n completions per request out.

Samplers, raters and refinement only ever talk to :class:`Engine`; which engine runs (the
embedded transformers model, a Hugging Face model on a GPU, a vLLM or llama.cpp server, a hosted
API) is configuration, stored with every run as :class:`EngineConfig` (never with a secret).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Messages = list[dict[str, str]]
EMBEDDED_MODEL = "embedded"


class EngineError(RuntimeError):
    """An engine could not be built or a request failed for good (after retries)."""


class ReadoutUnsupported(EngineError):
    """This engine cannot read token probabilities (e.g. a remote API)."""


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def check_api_key_env(name: str | None) -> str | None:
    """The NAME of the variable that holds an API key, or None; a value that cannot be a
    variable name (or looks like a key: long, digits, no underscore) is refused without being
    repeated, because whatever is accepted here is stored with the run."""
    name = (name or "").strip()
    if not name:
        return None
    looks_like_a_key = len(name) >= 20 and "_" not in name and any(c.isdigit() for c in name)
    if not _ENV_NAME.fullmatch(name) or looks_like_a_key:
        raise ValueError("the API key variable must be the NAME of an environment variable or Streamlit "
                         "secret (letters, digits and _, e.g. OPENAI_API_KEY), never the key itself")
    return name


class EngineConfig(BaseModel):
    """Everything needed to rebuild an engine; stored with runs, so it never holds a secret."""

    # hide_input_in_errors: a key typed where its variable's name belongs is not echoed
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    kind: Literal["transformers", "openai"] = "transformers"
    #: HF model id, local directory, a .gguf file, or "embedded" (SmolLM2-135M-Instruct)
    model: str = EMBEDDED_MODEL
    #: PEFT adapter directory (transformers engine)
    adapter: str | None = None
    #: transformers: "auto" (cuda if available), "cpu", "cuda", "cuda:1" ...
    device: str = "auto"
    #: transformers: "auto" (bf16 on GPU, fp32 on CPU), "float32", "bfloat16", "float16"
    dtype: str = "auto"
    #: transformers: sequences generated together
    batch_size: int = Field(16, ge=1)
    #: openai: server base URL, e.g. http://127.0.0.1:8000/v1
    base_url: str | None = None
    #: openai: NAME of the environment variable holding the API key (the key is never stored)
    api_key_env: str | None = None
    #: openai: requests in flight at once
    max_concurrency: int = Field(8, ge=1)
    #: openai: seconds per request before it counts as a timeout (then retried)
    timeout: float = Field(120.0, gt=0)
    #: openai: retries on 429, 5xx, timeouts and broken responses, with exponential backoff
    max_retries: int = Field(5, ge=0)
    #: extra keyword arguments for the request body / generate()
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("api_key_env")
    @classmethod
    def _key_is_a_name(cls, value: str | None) -> str | None:
        return check_api_key_env(value)

    @classmethod
    def parse(cls, spec: str, **overrides: Any) -> EngineConfig:
        """Build a config from a short spec, as the CLI takes it:
        ``embedded`` · ``hf:Qwen/Qwen3-0.6B`` (any HF id, directory or .gguf) ·
        ``openai:MODEL@http://127.0.0.1:8000/v1``."""
        spec = spec.strip()
        fields: dict[str, Any]
        if spec in ("", EMBEDDED_MODEL):
            fields = {"kind": "transformers", "model": EMBEDDED_MODEL}
        elif spec.startswith(("hf:", "transformers:")):
            fields = {"kind": "transformers", "model": spec.split(":", 1)[1]}
        elif spec.startswith("openai:"):
            model, sep, url = spec[len("openai:"):].partition("@")
            if not sep or not model or not url:
                raise ValueError(f"openai engine spec must look like openai:MODEL@BASE_URL, got {spec!r}")
            fields = {"kind": "openai", "model": model, "base_url": url}
        else:
            raise ValueError(f"unknown engine {spec!r}: use 'embedded', 'hf:MODEL' or 'openai:MODEL@URL'")
        fields.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**fields)

    def spec(self) -> str:
        """The short spec :meth:`parse` reads back (model, server; not the tuning options)."""
        if self.kind == "openai":
            return f"openai:{self.model}@{self.base_url}"
        return EMBEDDED_MODEL if self.model == EMBEDDED_MODEL else f"hf:{self.model}"

    def label(self) -> str:
        """A short human name, e.g. 'transformers:embedded' or 'openai:Qwen3-8B@127.0.0.1:8000'."""
        name = self.model.rsplit("/", 1)[-1] if self.kind == "transformers" else self.model
        where = ""
        if self.kind == "openai" and self.base_url:
            where = "@" + self.base_url.split("://", 1)[-1].split("/", 1)[0]
        adapter = f"+{self.adapter.rstrip('/').rsplit('/', 1)[-1]}" if self.adapter else ""
        return f"{self.kind}:{name}{adapter}{where}"


@dataclass
class SamplingParams:
    """Sampling settings shared by every engine."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int | None = None


@dataclass
class GenerationRequest:
    """One prompt (chat messages) and how many independent completions it needs."""

    messages: Messages
    n: int = 1
    #: seed of this request's completions (engines that take one per request: the openai engine
    #: sends it, ``+ j`` for a call that starts at the j-th completion); overrides
    #: ``SamplingParams.seed``. Lets a sampler fix each sample's seed whatever the batching.
    seed: int | None = None


@dataclass
class Completion:
    """One sampled completion, split into reasoning and answer."""

    text: str
    reasoning: str
    answer: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: "stop", "length", or "error" (then ``error`` says why)
    finish_reason: str = "stop"
    error: str | None = None
    #: filled by score read-outs: {"1": p1, "2": p2, ...}
    score_dist: dict[str, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


#: called as soon as one request's completions are all done: (request index, completions)
ResultCallback = Callable[[int, list[Completion]], None]


class Engine(ABC):
    """An LLM that samples chat completions."""

    config: EngineConfig

    #: whether :meth:`score_readout` works (local engines with access to logits)
    supports_readout: bool = False

    @abstractmethod
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        params: SamplingParams,
        on_result: ResultCallback | None = None,
    ) -> list[list[Completion]]:
        """Return ``requests[i].n`` completions for each request, in order.

        ``on_result`` fires as each request finishes so callers can persist work as it
        arrives; a failed request gives completions with ``finish_reason="error"`` rather
        than raising, unless the engine as a whole is unusable (then :class:`EngineError`).
        """

    def score_readout(
        self, messages: Sequence[Messages], traces: Sequence[str], levels: Sequence[int], cue: str
    ) -> list[dict[str, float]]:
        """TRACT's CoT-RAIL read-out: for each prompt, the probability of each rating level at
        the next token after ``trace + cue`` (renormalised over the levels)."""
        raise ReadoutUnsupported(f"{self.config.kind} engine cannot read token probabilities")

    def close(self) -> None:
        """Release models, sessions and threads."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
