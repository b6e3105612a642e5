"""The engine picker of every page that runs a model: the embedded model, a Hugging Face model, an
OpenAI-compatible server or vLLM in-process; it returns the typed engine config.

Every field's label, default and help come from the engine configs
(:mod:`judgeeye.engines.base`) through the generated form; the API key is asked for by the NAME
of its variable (:mod:`judgeeye_app.ui.keys`), never the key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st
from pydantic import ValidationError

from judgeeye.engines import EMBEDDED_MODEL, EngineConfig
from judgeeye.engines.base import OpenAIConfig, TransformersConfig, VLLMConfig
from judgeeye.settings_fields import setting_field
from judgeeye_app.ui.keys import api_key_field
from judgeeye_app.ui.settings_form import field_widget, fill, problem, settings_form

KINDS: dict[str, str] = {
    "embedded": "Embedded model (SmolLM2-135M, CPU)",
    "hf": "Hugging Face model",
    "openai": "OpenAI-compatible server",
    "vllm": "vLLM (in-process, GPU)",
}
#: the settings each kind's form shows besides the model (the advanced ones under "More settings")
_TRANSFORMERS = ["adapter", "batch_size", "device", "dtype", "fast_decode", "compile", "cuda_graphs",
                 "fuse_projections", "decode_attention", "compile_mode", "sync_every", "max_graphs",
                 "merge_adapter", "keep_loaded"]
_OPENAI = ["max_concurrency", "timeout", "max_retries", "backoff_base", "backoff_max", "max_tokens_param"]
MORE = "More engine settings"
CONFIGS: dict[str, type[EngineConfig]] = {"embedded": TransformersConfig, "hf": TransformersConfig,
                                          "openai": OpenAIConfig, "vllm": VLLMConfig}
_VLLM = ["adapter", "batch_size", "gpu_memory_utilization", "max_model_len", "tensor_parallel_size", "dtype"]


def engine_picker(prefix: str, *, adapter: bool = True,
                  on_change: Callable[[], None] | None = None) -> EngineConfig | None:
    """The engine chosen, or None (and a line saying what is missing) while it is incomplete.
    ``prefix`` keys its widgets (the kind's radio is ``{prefix}engine``); ``adapter``: offer a
    LoRA adapter (a rater, not a refiner); ``on_change``: called when the kind changes."""
    kind = st.radio("Engine", list(KINDS), format_func=KINDS.get, key=f"{prefix}engine", horizontal=True,
                    on_change=on_change)
    key = f"{prefix}{kind}_"
    if kind == "openai":
        return _openai(key)
    config = CONFIGS[kind]
    model = EMBEDDED_MODEL if kind == "embedded" else _model(config, key)
    fields = [f for f in (_VLLM if kind == "vllm" else _TRANSFORMERS) if adapter or f != "adapter"]
    values = settings_form(config, fields, prefix=key, more=MORE)  # drawn even while the model is missing,
    if not model:  # so that what was typed in them is kept
        st.info("Enter a model id or directory.")
        return None
    return _config(config, model=model, **values)


def _config(config: type[EngineConfig], **values: Any) -> EngineConfig | None:
    """The config, or None and what is wrong with it in the fields' own words."""
    try:
        return config(**values)
    except ValidationError as exc:
        st.error(problem(exc, config))
        return None


def _model(config: type[EngineConfig], key: str) -> str:
    """The model box of a kind (empty at first: the config's default is the embedded model)."""
    fill(config, ["model"], key, {"model": ""})
    return field_widget(setting_field(config, "model"), key) or ""


def _openai(key: str) -> EngineConfig | None:
    fill(OpenAIConfig, ["base_url", "model", "api_key_env"], key, {"model": ""})
    c1, c2, c3 = st.columns(3)
    url = field_widget(setting_field(OpenAIConfig, "base_url"), key, where=c1)
    model = field_widget(setting_field(OpenAIConfig, "model"), key, where=c2)
    typed = field_widget(setting_field(OpenAIConfig, "api_key_env"), key, where=c3)
    usable, key_name = api_key_field(typed or "")
    values = settings_form(OpenAIConfig, _OPENAI, prefix=key, more=MORE)
    if not usable:
        return None
    if not url or not model:
        st.info("Enter the server's base URL and the served model's name.")
        return None
    return _config(OpenAIConfig, model=model, base_url=url, api_key_env=key_name, **values)


__all__ = ["KINDS", "engine_picker"]
