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
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

Messages = list[dict[str, str]]
EMBEDDED_MODEL = "embedded"


class EngineError(RuntimeError):
    """An engine could not be built or a request failed for good (after retries)."""


class ReadoutUnsupported(EngineError):
    """This engine cannot read token probabilities (e.g. a remote API)."""


_ADVANCED: dict[str, Any] = {"advanced": True}  # forms put these under "More settings"
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
    """Everything needed to rebuild an engine; stored with runs, so it never holds a secret.

    One typed model per engine kind (:class:`TransformersConfig`, :class:`OpenAIConfig`,
    :class:`VLLMConfig`) on this common base. ``EngineConfig(kind=..., ...)`` and
    :meth:`EngineConfig.model_validate` build the model of the given kind (``transformers`` when
    none is given); pydantic fields that hold any engine config are typed :data:`AnyEngineConfig`.
    Configs stored before the typed models (one flat model for every kind, options in an
    untyped ``extra`` dict) still load: see :func:`_from_flat`.
    """

    # hide_input_in_errors: a key typed where its variable's name belongs is not echoed
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    kind: str
    model: str = Field(EMBEDDED_MODEL, title="Model",
                       description="A Hugging Face model id, a local directory, a .gguf file, or embedded "
                                   "(SmolLM2-135M-Instruct); for a server, the served model's name.")

    def __new__(cls, *args: Any, **fields: Any) -> EngineConfig:
        if cls is EngineConfig:  # the base stands for "the config of this kind"
            cls = config_class(fields.get("kind") or "transformers")
        return super().__new__(cls)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:
        """On the base: the config of ``obj["kind"]``; on a kind's model: that model."""
        if cls is EngineConfig:
            return _any_config.validate_python(obj, **kwargs)
        return super().model_validate(obj, **kwargs)

    @classmethod
    def parse(cls, spec: str, **overrides: Any) -> EngineConfig:
        """Build a config from a short spec, as the CLI takes it:
        ``embedded`` · ``hf:Qwen/Qwen3-0.6B`` (any HF id, directory or .gguf) ·
        ``openai:MODEL@http://127.0.0.1:8000/v1`` · ``vllm:Qwen/Qwen3-8B``.

        ``overrides`` (None: not given) apply where the kind has the field, so a command can pass
        its batch size and concurrency whatever the engine; an adapter or an API key variable
        for a kind that has none is refused rather than dropped."""
        spec = spec.strip()
        fields: dict[str, Any]
        if spec in ("", EMBEDDED_MODEL):
            fields = {"kind": "transformers", "model": EMBEDDED_MODEL}
        elif spec.startswith(("hf:", "transformers:")):
            fields = {"kind": "transformers", "model": spec.split(":", 1)[1]}
        elif spec.startswith("vllm:"):
            fields = {"kind": "vllm", "model": spec.split(":", 1)[1]}
        elif spec.startswith("openai:"):
            model, sep, url = spec[len("openai:"):].partition("@")
            if not sep or not model or not url:
                raise ValueError(f"openai engine spec must look like openai:MODEL@BASE_URL, got {spec!r}")
            fields = {"kind": "openai", "model": model, "base_url": url}
        else:
            raise ValueError(
                f"unknown engine {spec!r}: use 'embedded', 'hf:MODEL', 'vllm:MODEL' or 'openai:MODEL@URL'")
        target = config_class(fields["kind"])
        known = {name for kind in ENGINE_KINDS.values() for name in kind.model_fields}
        refused = {"adapter": "LoRA adapter", "api_key_env": "API key variable"}
        for name, value in overrides.items():
            if value is None:
                continue
            if name not in known:
                raise TypeError(f"EngineConfig.parse got an unknown option {name!r}")
            if name in target.model_fields:
                fields[name] = value
            elif name in refused:
                raise ValueError(f"the {fields['kind']} engine takes no {refused[name]}")
        return target(**fields)

    def spec(self) -> str:
        """The short spec :meth:`parse` reads back (model, server; not the tuning options)."""
        raise NotImplementedError

    def label(self) -> str:
        """A short human name, e.g. 'transformers:embedded' or 'openai:Qwen3-8B@127.0.0.1:8000'."""
        raise NotImplementedError

    def concurrency(self) -> int:
        """Requests the engine works on at once (runners hand it a few times that per call)."""
        raise NotImplementedError

    def cli_options(self) -> list[str]:
        """Command-line options beyond :meth:`spec` that rebuild this config (shown commands)."""
        return []


def _short(model: str) -> str:
    return model.rstrip("/").rsplit("/", 1)[-1]


def _adapter_suffix(adapter: str | None) -> str:
    return f"+{_short(adapter)}" if adapter else ""


class TransformersConfig(EngineConfig):
    """The ``transformers`` engine: the embedded model or any HF model / GGUF, CPU or GPU."""

    kind: Literal["transformers"] = "transformers"
    adapter: str | None = Field(None, title="LoRA adapter directory", json_schema_extra={"none": "none"},
                                description="A PEFT (LoRA) adapter directory to load on the model.")
    device: str = Field("auto", title="Device", json_schema_extra=_ADVANCED,
                        description="auto (cuda if available), cpu, cuda, cuda:1 ...")
    dtype: str = Field("auto", title="Data type", json_schema_extra=_ADVANCED,
                       description="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.")
    batch_size: int = Field(16, ge=1, title="Batch size", description="Sequences generated together.")
    fast_decode: bool = Field(True, title="Static decoder", json_schema_extra=_ADVANCED,
                              description="The static decoder (GPU fast path; eager on the CPU); off: always "
                                          "model.generate.")
    compile: bool | None = Field(None, title="Compile the decode step", json_schema_extra=_ADVANCED,
                                 description="Compile the decode step (unset: on CUDA).")
    cuda_graphs: bool | None = Field(None, title="CUDA graphs", json_schema_extra=_ADVANCED,
                                     description="Capture decode steps as CUDA graphs (unset: on CUDA).")
    fuse_projections: bool | None = Field(
        None, title="Fuse projections", json_schema_extra=_ADVANCED,
        description="Fuse q/k/v and gate/up linears in place (unset: on CUDA, for models the engine loaded).")
    decode_attention: Literal["auto", "triton", "sdpa", "efficient", "math"] = Field(
        "auto", title="Decode attention", json_schema_extra=_ADVANCED,
        description="Decode attention kernel (auto: triton on a CUDA GPU with Triton, else sdpa; process-wide).")
    compile_mode: str | None = Field(None, title="Compile mode", json_schema_extra={"none": "default", **_ADVANCED},
                                     description="torch.compile mode of the decode step, e.g. "
                                                 "max-autotune-no-cudagraphs.")
    sync_every: int = Field(16, ge=1, title="Steps between finish checks", json_schema_extra=_ADVANCED,
                            description="Decode steps between 'all sequences finished?' checks.")
    max_graphs: int = Field(4, ge=1, title="Decode slots kept", json_schema_extra=_ADVANCED,
                            description="(batch, length) slots kept with their cache and graphs.")
    merge_adapter: bool = Field(True, title="Merge the adapter", json_schema_extra=_ADVANCED,
                                description="Merge a LoRA adapter into the weights.")
    keep_loaded: bool = Field(True, title="Keep the model loaded", json_schema_extra=_ADVANCED,
                              description="Keep the model in the process cache when the engine closes.")
    generate_kwargs: dict[str, Any] = Field(default_factory=dict, title="model.generate arguments",
                                            description="Extra keyword arguments for model.generate (the plain "
                                                        "path).")

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return _from_flat(data, own={"adapter", "device", "dtype", "batch_size"},
                          options=_TRANSFORMERS_OPTIONS, rest="generate_kwargs")

    def spec(self) -> str:
        return EMBEDDED_MODEL if self.model == EMBEDDED_MODEL else f"hf:{self.model}"

    def label(self) -> str:
        return f"transformers:{_short(self.model)}{_adapter_suffix(self.adapter)}"

    def concurrency(self) -> int:
        return self.batch_size

    def cli_options(self) -> list[str]:
        return ["--adapter", self.adapter] if self.adapter else []


#: request fields the engine sets itself; ``extra_body`` cannot override them
OPENAI_CORE_FIELDS = frozenset({"model", "messages", "n", "temperature", "top_p", "seed", "stream",
                                "max_tokens", "max_completion_tokens"})


#: SamplingParams fields the vllm engine sets itself; ``sampling_kwargs`` cannot override them
VLLM_CORE_FIELDS = frozenset({"n", "seed", "temperature", "top_p", "max_tokens"})


def refuse_core_fields(field: str, value: dict[str, Any], core: frozenset[str]) -> dict[str, Any]:
    """An engine's free-form extra fields, refused where they would override what a run's
    sampling settings set (the run would record one setting and sample with another)."""
    clash = sorted(set(value) & core)
    if clash:
        raise ValueError(f"{field} cannot set {', '.join(clash)}: the engine sets them from the run's sampling "
                         "settings")
    return value


class OpenAIConfig(EngineConfig):
    """The ``openai`` engine: any OpenAI-compatible chat-completions server."""

    kind: Literal["openai"] = "openai"
    base_url: str | None = Field(None, title="Base URL", examples=["http://127.0.0.1:8000/v1"],
                                 description="The server's base URL, e.g. http://127.0.0.1:8000/v1 (vLLM, "
                                             "llama.cpp) or a hosted API's.")
    api_key_env: str | None = Field(None, title="API key variable", json_schema_extra={"none": "no key"},
                                    description="The NAME of the environment variable (or Streamlit secret) "
                                                "holding the API key; the key itself is never stored.")
    max_concurrency: int = Field(8, ge=1, title="Concurrent requests", description="Requests in flight at once.")
    timeout: float = Field(120.0, gt=0, title="Timeout (seconds)", json_schema_extra=_ADVANCED,
                           description="Seconds to connect, and to wait for each read of the answer, before a try "
                                       "times out.")
    max_retries: int = Field(5, ge=0, title="Retries", json_schema_extra=_ADVANCED,
                             description="Retries on 408/409/429, 5xx, timeouts, connection errors and broken "
                                         "answers.")
    backoff_base: float = Field(0.5, ge=0, title="First retry after (seconds)", json_schema_extra=_ADVANCED,
                                description="Seconds before the first retry (doubling per retry, minus up to 25% "
                                            "jitter) unless the server says when (Retry-After, up to 2 minutes).")
    backoff_max: float = Field(8.0, ge=0, title="Longest wait between retries (seconds)", json_schema_extra=_ADVANCED,
                               description="Cap on one backoff delay, in seconds.")
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = Field(
        "max_tokens", title="Token limit field", json_schema_extra=_ADVANCED,
        description="Request-body field for the token limit: max_tokens, or max_completion_tokens (newer hosted "
                    "models).")
    extra_body: dict[str, Any] = Field(default_factory=dict, title="Extra request fields",
                                       description='Extra request-body fields, e.g. {"top_k": 20, '
                                                   '"chat_template_kwargs": {"enable_thinking": true}}.')

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        # the old engine ignored core fields in the body, and retry_after_max is the SDK's now
        return _from_flat(data, own={"base_url", "api_key_env", "max_concurrency", "timeout", "max_retries"},
                          options=_OPENAI_OPTIONS, rest="extra_body",
                          ignored=OPENAI_CORE_FIELDS | {"retry_after_max"})

    @field_validator("api_key_env")
    @classmethod
    def _key_is_a_name(cls, value: str | None) -> str | None:
        return check_api_key_env(value)

    @field_validator("extra_body")
    @classmethod
    def _no_core_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        return refuse_core_fields("extra_body", value, OPENAI_CORE_FIELDS)

    def spec(self) -> str:
        return f"openai:{self.model}@{self.base_url}"

    def label(self) -> str:
        where = "@" + self.base_url.split("://", 1)[-1].split("/", 1)[0] if self.base_url else ""
        return f"openai:{self.model}{where}"

    def concurrency(self) -> int:
        return self.max_concurrency

    def cli_options(self) -> list[str]:
        return ["--api-key-env", self.api_key_env] if self.api_key_env else []


class VLLMConfig(EngineConfig):
    """The ``vllm`` engine: an in-process ``vllm.LLM`` (GPU; ``pip install judgeeye[vllm]``)."""

    kind: Literal["vllm"] = "vllm"
    adapter: str | None = Field(None, title="LoRA adapter directory", json_schema_extra={"none": "none"},
                                description="A PEFT (LoRA) adapter directory, served with vLLM's LoRA support.")
    dtype: str = Field("auto", title="Data type", json_schema_extra=_ADVANCED,
                       description="auto (the checkpoint's; float32 checkpoints run in float16), bfloat16, "
                                   "float16 ...")
    batch_size: int = Field(64, ge=1, title="Requests per call",
                            description="Requests handed to vLLM per call by the runners' chunks (it batches their "
                                        "samples itself).")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, title="GPU memory share", json_schema_extra={"step": 0.05},
                                          description="Share of GPU memory vLLM takes for weights and KV cache.")
    max_model_len: int | None = Field(None, ge=1, title="Context length", json_schema_extra={"none": "the model's"},
                                      description="Context length in tokens.")
    tensor_parallel_size: int = Field(1, ge=1, title="GPUs per model", description="GPUs per model (tensor "
                                                                                   "parallelism).")
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict, title="Chat template arguments",
                                                 description='Extra keyword arguments for the chat template, e.g. '
                                                             '{"enable_thinking": true}.')
    llm_kwargs: dict[str, Any] = Field(default_factory=dict, title="vllm.LLM arguments",
                                       description="Extra keyword arguments for vllm.LLM (e.g. enforce_eager, "
                                                   "max_num_seqs, quantization).")
    sampling_kwargs: dict[str, Any] = Field(default_factory=dict, title="SamplingParams fields",
                                            description="Extra vllm.SamplingParams fields (e.g. top_k, "
                                                        "repetition_penalty).")

    @field_validator("sampling_kwargs")
    @classmethod
    def _no_core_sampling(cls, value: dict[str, Any]) -> dict[str, Any]:
        return refuse_core_fields("sampling_kwargs", value, VLLM_CORE_FIELDS)

    def spec(self) -> str:
        return f"vllm:{self.model}"

    def label(self) -> str:
        return f"vllm:{_short(self.model)}{_adapter_suffix(self.adapter)}"

    def concurrency(self) -> int:
        return self.batch_size

    def cli_options(self) -> list[str]:
        return ["--adapter", self.adapter] if self.adapter else []


#: keys of the old ``extra`` dict that are fields now
_TRANSFORMERS_OPTIONS = frozenset({
    "fast_decode", "compile", "cuda_graphs", "fuse_projections", "decode_attention", "compile_mode",
    "sync_every", "max_graphs", "merge_adapter", "keep_loaded"})
_OPENAI_OPTIONS = frozenset({"backoff_base", "backoff_max", "max_tokens_param"})


def _from_flat(data: Any, *, own: set[str], options: frozenset[str], rest: str,
               ignored: frozenset[str] = frozenset()) -> Any:
    """A config stored before the typed models (it has ``extra``) in this kind's fields.

    The old model had every kind's fields (the other kinds' ones at their defaults, unused by
    this kind's engine: dropped) and engine options plus free keyword arguments in ``extra``:
    the options become fields (None meant the default), the other keys go to the field ``rest``
    except the ``ignored`` ones, which had no effect."""
    if not isinstance(data, dict) or "extra" not in data:
        return data
    extra = data.get("extra") or {}
    if not isinstance(extra, dict):
        raise ValueError("extra must be a dict of engine options")
    out = {k: v for k, v in data.items() if k in own or k in ("kind", "model")}
    out[rest] = {k: v for k, v in extra.items() if k not in options and k not in ignored}
    out.update({k: v for k, v in extra.items() if k in options and v is not None})
    return out


ENGINE_KINDS: dict[str, type[EngineConfig]] = {
    "transformers": TransformersConfig, "openai": OpenAIConfig, "vllm": VLLMConfig}


def config_class(kind: str) -> type[EngineConfig]:
    """The config model of an engine kind."""
    try:
        return ENGINE_KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown engine kind {kind!r}: use {', '.join(ENGINE_KINDS)}") from None


def _default_kind(data: Any) -> Any:
    if isinstance(data, dict) and "kind" not in data:
        return {**data, "kind": "transformers"}  # the old flat model's default
    return data


#: a pydantic field type for any engine config, chosen by ``kind`` (old flat configs included)
AnyEngineConfig = Annotated[
    Annotated[TransformersConfig | OpenAIConfig | VLLMConfig, Field(discriminator="kind")],
    BeforeValidator(_default_kind),
]
_any_config: TypeAdapter[EngineConfig] = TypeAdapter(AnyEngineConfig)


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
        the next token after ``trace + cue``: raw probabilities, not renormalised over the levels
        (:func:`judgeeye.engines.readout.level_probabilities`)."""
        raise ReadoutUnsupported(f"{self.config.kind} engine cannot read token probabilities")

    def close(self) -> None:  # noqa: B027 - a no-op by default: engines that hold nothing need not write one
        """Release models, sessions and threads."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
