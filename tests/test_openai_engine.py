"""The openai engine against real servers on loopback: llama.cpp's OpenAI-compatible server
serving the embedded SmolLM2 GGUF, and a scriptable fault server (standard-library
``http.server``) that speaks the chat-completions JSON and misbehaves on request."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from fault_server import FaultServer  # the scriptable server, shared with tests/test_faults.py
from llama_server import free_port, llama_server_url  # noqa: F401 - registers the fixture

from judgeeye.engines import (
    Completion,
    EngineConfig,
    EngineError,
    GenerationRequest,
    OpenAIConfig,
    SamplingParams,
    make_engine,
)
from judgeeye.engines.openai_engine import OpenAIEngine

FAST = {"backoff_base": 0.01, "backoff_max": 0.05}  # OpenAIConfig fields
MESSAGES = [{"role": "user", "content": "Rate this story from 1 to 5."}]


@pytest.fixture
def fault():
    server = FaultServer()
    yield server
    server.stop()


def engine_for(server: FaultServer, **overrides: Any) -> OpenAIEngine:
    config = OpenAIConfig(**{
        "model": "embedded", "base_url": server.base_url, "max_retries": 3, "timeout": 5.0,
        **FAST, **overrides,
    })
    engine = make_engine(config)
    assert isinstance(engine, OpenAIEngine)
    return engine


def one(engine: OpenAIEngine, n: int = 1, **params: Any) -> list[Completion]:
    return engine.generate([GenerationRequest(MESSAGES, n=n)], SamplingParams(max_tokens=32, **params))[0]


# --------------------------------------------------------------------------- llama.cpp server
@pytest.mark.slow
def test_llama_several_requests_n1_concurrently(llama_server_url: str) -> None:  # noqa: F811
    config = EngineConfig(kind="openai", base_url=llama_server_url, max_concurrency=4, timeout=120)
    prompts = ["Name a colour.", "Say hello.", "Count to three.", "Name a fruit."]
    seen: list[int] = []
    with make_engine(config) as engine:
        out = engine.generate(
            [GenerationRequest([{"role": "user", "content": p}], n=1) for p in prompts],
            SamplingParams(temperature=1.0, max_tokens=16),
            on_result=lambda i, comps: seen.append(i),
        )
    assert sorted(seen) == [0, 1, 2, 3]
    assert [len(c) for c in out] == [1, 1, 1, 1]
    for (c,) in out:
        assert c.finish_reason in {"stop", "length"}, c.error
        assert c.error is None
        assert c.text and c.answer == c.text.strip() and c.reasoning == ""
        assert c.prompt_tokens > 5
        assert 1 <= c.completion_tokens <= 16
        assert c.meta["tries"] == 1


@pytest.mark.slow
def test_llama_n3_collects_all_samples(llama_server_url: str) -> None:  # noqa: F811
    config = EngineConfig(kind="openai", base_url=llama_server_url, max_concurrency=3, timeout=120)
    requests = [
        GenerationRequest([{"role": "user", "content": "Write one word about the sea."}], n=3),
        GenerationRequest([{"role": "user", "content": "Write one word about the sky."}], n=3),
    ]
    with make_engine(config) as engine:
        out = engine.generate(requests, SamplingParams(temperature=1.0, max_tokens=12, seed=11))
        # llama.cpp's Python server ignores "n": the engine noticed and filled up with n=1 calls
        assert engine.server_ignores_n
    assert [len(c) for c in out] == [3, 3]
    for comps in out:
        assert all(c.finish_reason in {"stop", "length"} and c.completion_tokens > 0 for c in comps)
        # seeds seed, seed+1, seed+2: three different samples, not three copies
        assert len({c.text for c in comps}) >= 2


@pytest.mark.slow
def test_llama_length_finish_and_seed(llama_server_url: str) -> None:  # noqa: F811
    config = EngineConfig(kind="openai", base_url=llama_server_url, timeout=120)
    request = GenerationRequest([{"role": "user", "content": "Tell me a long story about a dragon."}])
    params = SamplingParams(max_tokens=3, seed=5)
    with make_engine(config) as engine:
        # llama.cpp samples a prompt it sees for the first time differently from one whose
        # tokens it still holds (its prompt cache), whatever the seed: show it the prompt first
        engine.generate([request], params)
        (a,), (b,) = engine.generate([request, request], params)
    for c in (a, b):
        assert c.finish_reason == "length"
        assert c.completion_tokens == 3
    assert a.text == b.text  # same seed, same sample


# --------------------------------------------------------------------------- fault handling
def test_429_with_retry_after_then_success(fault: FaultServer) -> None:
    fault.script.append({"kind": "status", "code": 429, "headers": {"Retry-After": "1"}})
    with engine_for(fault) as engine:
        t0 = time.monotonic()
        (c,) = one(engine)
        elapsed = time.monotonic() - t0
    assert c.finish_reason == "stop" and c.error is None
    assert c.meta["tries"] == 2
    assert len(fault.requests) == 2
    assert elapsed >= 0.95  # Retry-After honoured (the backoff alone would be ~10 ms)


def test_500_then_success(fault: FaultServer) -> None:
    fault.script.append({"kind": "status", "code": 500})
    with engine_for(fault) as engine:
        (c,) = one(engine)
    assert c.finish_reason == "stop" and c.meta["tries"] == 2
    assert "<rating>3</rating>" in c.answer


@pytest.mark.parametrize("kind", ["malformed", "cut_json", "truncated"])
def test_broken_body_then_success(fault: FaultServer, kind: str) -> None:
    fault.script.append({"kind": kind})
    with engine_for(fault) as engine:
        (c,) = one(engine)
    assert c.finish_reason == "stop" and c.error is None and c.meta["tries"] == 2


def test_hang_longer_than_timeout_is_retried(fault: FaultServer) -> None:
    fault.script.append({"kind": "hang", "seconds": 20})
    with engine_for(fault, timeout=0.5) as engine:
        t0 = time.monotonic()
        (c,) = one(engine)
        elapsed = time.monotonic() - t0
    assert c.finish_reason == "stop" and c.meta["tries"] == 2
    assert 0.45 <= elapsed < 15


def test_always_500_gives_error_completions_after_max_retries(fault: FaultServer) -> None:
    fault.default = {"kind": "status", "code": 503, "message": "overloaded"}
    seen: list[tuple[int, int]] = []
    with engine_for(fault, max_retries=3) as engine:
        out = engine.generate(
            [GenerationRequest(MESSAGES, n=2)], SamplingParams(max_tokens=8),
            on_result=lambda i, comps: seen.append((i, len(comps))),
        )
    assert seen == [(0, 2)]
    assert len(out[0]) == 2
    for c in out[0]:
        assert c.finish_reason == "error"
        assert c.text == c.answer == c.reasoning == ""
        assert "HTTP 503" in c.error and "overloaded" in c.error
        assert "4 tries" in c.error
    assert len(fault.requests) == 4


def test_backoff_follows_the_config(fault: FaultServer) -> None:
    """The SDK retries with the config's backoff (its own is 0.5 s, then 1 s, ...)."""
    fault.default = {"kind": "status", "code": 500}
    with engine_for(fault, max_retries=2, backoff_base=0.3, backoff_max=0.3) as engine:
        t0 = time.monotonic()
        (c,) = one(engine)
        elapsed = time.monotonic() - t0
    assert c.finish_reason == "error" and "3 tries" in c.error and len(fault.requests) == 3
    assert 0.45 <= elapsed < 1.05  # two waits of 0.3 s less up to 25% jitter; the SDK's would take >= 1.1 s


def test_client_error_is_not_retried(fault: FaultServer) -> None:
    fault.default = {"kind": "status", "code": 400, "message": "context length exceeded"}
    with engine_for(fault) as engine:
        (c,) = one(engine)
    assert c.finish_reason == "error"
    assert "HTTP 400" in c.error and "context length exceeded" in c.error and "1 try" in c.error
    assert len(fault.requests) == 1


def test_unreachable_server_gives_error_completions_not_exceptions() -> None:
    config = EngineConfig(
        kind="openai", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=1, **FAST
    )
    with make_engine(config) as engine:
        out = engine.generate([GenerationRequest(MESSAGES, n=2)] * 3, SamplingParams(max_tokens=8))
    assert [len(c) for c in out] == [2, 2, 2]
    for comps in out:
        for c in comps:
            assert c.finish_reason == "error"
            assert "connection error" in c.error and "2 tries" in c.error


def test_server_that_ignores_n_is_asked_again(fault: FaultServer) -> None:
    fault.default = {"kind": "ok", "ignore_n": True}
    with engine_for(fault) as engine:
        (comps,) = engine.generate([GenerationRequest(MESSAGES, n=3)], SamplingParams(seed=7))
        assert engine.server_ignores_n
        # later requests go out as n=1 calls straight away
        engine.generate([GenerationRequest(MESSAGES, n=2)], SamplingParams(seed=100))
    assert len(comps) == 3 and len({c.text for c in comps}) == 3
    assert [r.get("n", 1) for r in fault.requests[:3]] == [3, 1, 1]
    assert sorted(r["seed"] for r in fault.requests[:3]) == [7, 8, 9]
    assert [r.get("n", 1) for r in fault.requests[3:]] == [1, 1]
    assert sorted(r["seed"] for r in fault.requests[3:]) == [100, 101]
    assert all(c.completion_tokens == 10 and c.prompt_tokens == 17 for c in comps)


def test_server_that_caps_n_is_asked_for_the_rest(fault: FaultServer) -> None:
    fault.default = {"kind": "ok", "cap_n": 2}
    with engine_for(fault) as engine:
        (comps,) = engine.generate([GenerationRequest(MESSAGES, n=5)], SamplingParams())
        assert not engine.server_ignores_n
    assert len(comps) == 5 and len({c.text for c in comps}) == 5
    assert [r["n"] for r in fault.requests[:2]] + [fault.requests[2].get("n", 1)] == [5, 3, 1]


def test_n_in_one_call_and_token_split(fault: FaultServer) -> None:
    fault.default = {"kind": "ok", "completion_tokens": 10, "finish_reason": "length"}
    with engine_for(fault) as engine:
        (comps,) = engine.generate([GenerationRequest(MESSAGES, n=3)], SamplingParams())
    assert len(fault.requests) == 1 and fault.requests[0]["n"] == 3
    assert [c.completion_tokens for c in comps] == [4, 3, 3]  # 10 split evenly, remainder first
    assert all(c.prompt_tokens == 17 and c.meta.get("tokens_split") for c in comps)
    assert all(c.finish_reason == "length" for c in comps)


def test_missing_usage_gives_zero_tokens(fault: FaultServer) -> None:
    fault.default = {"kind": "ok", "usage": False}
    with engine_for(fault) as engine:
        (c,) = one(engine)
    assert c.prompt_tokens == 0 and c.completion_tokens == 0 and c.meta["usage_missing"]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_field(fault: FaultServer, field: str) -> None:
    fault.default = {"kind": "ok", field: "The story is plain.", "content": "<rating>2</rating>"}
    with engine_for(fault) as engine:
        (c,) = one(engine)
    assert c.reasoning == "The story is plain."
    assert c.answer == "<rating>2</rating>"
    assert c.text == "<think>\nThe story is plain.\n</think>\n\n<rating>2</rating>"


def test_think_tags_in_content(fault: FaultServer) -> None:
    fault.default = {"kind": "ok", "content": "<think>\nSimple plot, flat characters.\n</think>\n\nRating: <rating>1</rating>"}
    with engine_for(fault) as engine:
        (c,) = one(engine)
    assert c.reasoning == "Simple plot, flat characters."
    assert c.answer == "Rating: <rating>1</rating>"
    assert c.text.startswith("<think>")


def test_concurrency_limit_and_callbacks_in_caller_thread(fault: FaultServer) -> None:
    fault.default = {"kind": "ok", "delay": 0.2}
    caller = threading.get_ident()
    seen: list[tuple[int, int]] = []
    with engine_for(fault, max_concurrency=3) as engine:
        t0 = time.monotonic()
        out = engine.generate(
            [GenerationRequest(MESSAGES, n=1) for _ in range(9)], SamplingParams(),
            on_result=lambda i, comps: seen.append((i, threading.get_ident())),
        )
        elapsed = time.monotonic() - t0
    assert fault.max_in_flight == 3
    assert elapsed >= 0.55  # 9 calls, 3 at a time, 0.2 s each
    assert sorted(i for i, _ in seen) == list(range(9))
    assert {t for _, t in seen} == {caller}
    assert all(len(c) == 1 and c[0].finish_reason == "stop" for c in out)


def test_request_body_seed_model_and_extra(fault: FaultServer) -> None:
    with engine_for(fault, extra_body={"top_k": 5}) as engine:
        one(engine, seed=42, temperature=0.7, top_p=0.9)
        one(engine)
    first, second = fault.requests
    assert "model" not in first  # "embedded" -> whatever the server serves
    assert first["seed"] == 42 and "seed" not in second
    assert first["temperature"] == 0.7 and first["top_p"] == 0.9 and first["max_tokens"] == 32
    assert first["top_k"] == 5 and "backoff_base" not in first and "n" not in first
    with engine_for(fault, model="Qwen/Qwen3-8B", max_tokens_param="max_completion_tokens") as engine:
        one(engine)
    assert fault.requests[-1]["model"] == "Qwen/Qwen3-8B"
    assert fault.requests[-1]["max_completion_tokens"] == 32 and "max_tokens" not in fault.requests[-1]


def test_bad_config_raises_engine_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EngineError, match="base_url"):
        make_engine(EngineConfig(kind="openai"))
    monkeypatch.delenv("JE_NOT_SET_KEY", raising=False)
    engine = make_engine(EngineConfig(kind="openai", base_url="http://127.0.0.1:9/v1", api_key_env="JE_NOT_SET_KEY"))
    with pytest.raises(EngineError, match="JE_NOT_SET_KEY"):
        engine.generate([GenerationRequest(MESSAGES)], SamplingParams())
    engine.close()
    assert engine.generate([], SamplingParams()) == []


def test_api_key_is_sent_but_never_leaks(
    fault: FaultServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = "sk-planted-9f8e7d6c5b4a3210-SECRET"
    monkeypatch.setenv("JE_TEST_API_KEY", key)
    caplog.set_level(logging.DEBUG)  # every logger, httpx/httpcore included
    # the server echoes the Authorization header into its error messages
    fault.script.extend([
        {"kind": "status", "code": 500, "echo_auth": True},
        {"kind": "status", "code": 500, "echo_auth": True},
        {"kind": "status", "code": 401, "echo_auth": True},
    ])
    config = EngineConfig(
        kind="openai", base_url=fault.base_url, api_key_env="JE_TEST_API_KEY", max_retries=2,
        **FAST,
    )
    with make_engine(config) as engine:
        errors = engine.generate([GenerationRequest(MESSAGES, n=2)], SamplingParams())[0]
        fault.default = {"kind": "ok", "content": "fine"}
        good = engine.generate([GenerationRequest(MESSAGES, n=1)], SamplingParams())[0]
        text_of_engine = repr(engine) + repr(vars(engine)) + config.model_dump_json()
    assert fault.headers[0]["authorization"] == f"Bearer {key}"  # it is really sent
    assert all(c.finish_reason == "error" and "HTTP 401" in c.error and "***" in c.error for c in errors)
    everything = "\n".join(
        [repr(c) for c in errors + good] + [caplog.text, text_of_engine, *capsys.readouterr()]
    )
    assert key not in everything
    assert "planted" not in everything
