"""Typed engine configs: one pydantic model per kind, built from ``EngineConfig(kind=...)``,
specs and stored JSON; configs stored before the typed models (one flat model with an untyped
``extra`` dict) still load from a real store and still run against a real loopback server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from fault_server import FaultServer
from judgeeye.auth import Actor
from judgeeye.engines import (
    EMBEDDED_MODEL,
    EngineConfig,
    OpenAIConfig,
    TransformersConfig,
    VLLMConfig,
)
from judgeeye.evaluate.raters import RaterSpec, create_rater_run, rater_spec
from judgeeye.sampling import SamplingSettings
from judgeeye.sampling.launch import launch_run
from judgeeye.store import Candidate, RaterRun, SamplingRun, session_scope
from training_data import make_tiny_project


def old_flat(kind: str, **fields: Any) -> dict[str, Any]:
    """An engine config as the flat model before the typed ones dumped it (every kind's fields)."""
    return {"kind": kind, "model": EMBEDDED_MODEL, "adapter": None, "device": "auto", "dtype": "auto",
            "batch_size": 16, "base_url": None, "api_key_env": None, "max_concurrency": 8, "timeout": 120.0,
            "max_retries": 5, "extra": {}, **fields}


def test_engine_config_builds_the_model_of_its_kind() -> None:
    assert type(EngineConfig()) is TransformersConfig
    assert EngineConfig(batch_size=4) == TransformersConfig(batch_size=4)
    oa = EngineConfig(kind="openai", model="m", base_url="http://127.0.0.1:1/v1", max_concurrency=3)
    assert type(oa) is OpenAIConfig and oa.max_concurrency == 3 and oa.concurrency() == 3
    assert type(EngineConfig(kind="vllm", model="Qwen/Qwen3-8B")) is VLLMConfig
    assert type(EngineConfig.model_validate({"kind": "openai", "base_url": "http://h/v1"})) is OpenAIConfig
    assert type(EngineConfig.model_validate({})) is TransformersConfig  # the old default kind
    with pytest.raises(ValueError, match="unknown engine kind 'tgi'"):
        EngineConfig(kind="tgi")
    # each kind takes only its own fields, typed
    with pytest.raises(ValidationError, match="base_url"):
        TransformersConfig(base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValidationError, match="batch_size"):
        OpenAIConfig(batch_size=4)
    with pytest.raises(ValidationError, match="decode_attention"):
        TransformersConfig(decode_attention="flash")
    with pytest.raises(ValidationError, match="extra_body cannot set n, seed"):
        OpenAIConfig(extra_body={"n": 3, "seed": 1, "top_k": 5})


def test_specs_labels_and_cli_options_round_trip() -> None:
    cases = {
        "embedded": (TransformersConfig(), "transformers:embedded"),
        "hf:Qwen/Qwen3-0.6B": (TransformersConfig(model="Qwen/Qwen3-0.6B"), "transformers:Qwen3-0.6B"),
        "openai:Qwen/Qwen3-8B@http://gpu:8000/v1": (
            OpenAIConfig(model="Qwen/Qwen3-8B", base_url="http://gpu:8000/v1"), "openai:Qwen/Qwen3-8B@gpu:8000"),
        "vllm:Qwen/Qwen3-8B": (VLLMConfig(model="Qwen/Qwen3-8B"), "vllm:Qwen3-8B"),
    }
    for spec, (config, label) in cases.items():
        assert EngineConfig.parse(spec) == config
        assert config.spec() == spec and config.label() == label
        assert EngineConfig.parse(config.spec()) == config
    # a command passes its tuning options whatever the engine; each kind takes what it has
    assert EngineConfig.parse("embedded", batch_size=4, max_concurrency=9).batch_size == 4
    assert EngineConfig.parse("openai:m@http://h/v1", batch_size=4, max_concurrency=9).max_concurrency == 9
    tuned = EngineConfig.parse("hf:base", adapter="/runs/a1", batch_size=2)
    assert tuned.label() == "transformers:base+a1" and tuned.cli_options() == ["--adapter", "/runs/a1"]
    keyed = EngineConfig.parse("openai:m@http://h/v1", api_key_env="MY_KEY")
    assert keyed.cli_options() == ["--api-key-env", "MY_KEY"]
    with pytest.raises(ValueError, match="openai engine takes no LoRA adapter"):
        EngineConfig.parse("openai:m@http://h/v1", adapter="/runs/a1")
    with pytest.raises(ValueError, match="vllm engine takes no API key variable"):
        EngineConfig.parse("vllm:m", api_key_env="MY_KEY")
    with pytest.raises(ValueError, match="unknown engine"):
        EngineConfig.parse("tgi:m")


def test_old_flat_configs_map_to_the_typed_fields() -> None:
    old_hf = old_flat("transformers", model="Qwen/Qwen3-0.6B", adapter="/a", batch_size=4, max_concurrency=32,
                      extra={"fast_decode": False, "keep_loaded": False, "decode_attention": "math",
                             "compile": None, "use_cache": True})
    assert EngineConfig.model_validate(old_hf) == TransformersConfig(
        model="Qwen/Qwen3-0.6B", adapter="/a", batch_size=4, fast_decode=False, keep_loaded=False,
        decode_attention="math", generate_kwargs={"use_cache": True})
    old_oa = old_flat("openai", model="m", base_url="http://h/v1", api_key_env="K", max_retries=2, timeout=30.0,
                      extra={"backoff_base": 0.1, "retry_after_max": 60, "max_tokens_param": "max_completion_tokens",
                             "top_k": 20, "max_tokens": 999, "chat_template_kwargs": {"enable_thinking": True}})
    assert EngineConfig.model_validate(old_oa) == OpenAIConfig(
        model="m", base_url="http://h/v1", api_key_env="K", max_retries=2, timeout=30.0, backoff_base=0.1,
        max_tokens_param="max_completion_tokens",
        extra_body={"top_k": 20, "chat_template_kwargs": {"enable_thinking": True}})  # max_tokens had no effect
    # inside the settings that hold engine configs (rater specs, post hoc verifiers)
    spec = RaterSpec.model_validate({"engine": old_oa, "readout": "parsed"})
    assert isinstance(spec.engine, OpenAIConfig) and spec.engine.extra_body["top_k"] == 20
    settings = SamplingSettings.model_validate({"k": 2, "mode": "post_hoc", "verifier": old_flat("transformers")})
    assert settings.verifier == TransformersConfig()
    # and they dump as the typed model
    assert "extra" not in spec.model_dump(mode="json")["engine"]
    assert RaterSpec.model_validate(spec.model_dump(mode="json")) == spec


def test_old_configs_in_a_store_load_and_an_old_openai_run_runs(store_url: str, tmp_path: Path) -> None:
    """Runs stored before the typed configs: the sampling run's old flat engine drives a real
    run against a loopback server (its old ``extra`` body fields are sent), the rater run's
    old engine loads with its options typed."""
    from judgeeye.jobs import run_job

    project_id = make_tiny_project(tmp_path)
    server = FaultServer()
    try:
        run_id, job_id = launch_run(project_id, OpenAIConfig(model="fault-model", base_url=server.base_url),
                                    SamplingSettings(k=2, limit=3, max_tokens=16, readout=False),
                                    actor=Actor.system(), start=False)
        old_engine = old_flat("openai", model="fault-model", base_url=server.base_url, max_concurrency=2,
                              max_retries=1, extra={"backoff_base": 0.01, "backoff_max": 0.05, "top_k": 7})
        with session_scope() as s:
            s.get(SamplingRun, run_id).engine = old_engine
            rater = create_rater_run(s, project_id, RaterSpec()).id
            s.get(RaterRun, rater).rater = {**s.get(RaterRun, rater).rater, "engine": old_flat(
                "transformers", batch_size=2, extra={"keep_loaded": False, "merge_adapter": False})}
        server.script.append({"kind": "status", "code": 503})  # the old backoff options are used
        assert run_job(job_id) == "succeeded"
    finally:
        server.stop()
    with session_scope() as s:
        candidates = s.scalars(select(Candidate).where(Candidate.run_id == run_id)).all()
        assert len(candidates) == 3 * 2 and all(c.finish_reason == "stop" for c in candidates)
        assert rater_spec(s.get(RaterRun, rater)).engine == TransformersConfig(
            batch_size=2, keep_loaded=False, merge_adapter=False)
        assert EngineConfig.model_validate(s.get(SamplingRun, run_id).engine).label() == \
            f"openai:fault-model@127.0.0.1:{server.port}"
    assert len(server.requests) == 1 + 3 and all(r["top_k"] == 7 for r in server.requests)
