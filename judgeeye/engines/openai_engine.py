"""The ``openai`` engine: any OpenAI-compatible chat-completions server.

Works with vLLM (``vllm serve MODEL --reasoning-parser deepseek_r1``), llama.cpp's servers
(``python -m llama_cpp.server --model FILE.gguf``), and hosted APIs. It speaks the JSON protocol
directly with :mod:`httpx` (no SDK models in between, so server-specific fields such as
``reasoning_content`` are read as sent) on a private asyncio event loop that runs in a daemon
thread; :meth:`OpenAIEngine.generate` stays synchronous, and ``on_result`` callbacks run in the
caller's thread (so they may use the caller's database session).

Behaviour
---------
* **Concurrency**: at most ``config.max_concurrency`` HTTP calls in flight (shared by every
  ``generate`` call on the engine). Backoff sleeps do not hold a slot.
* **Retries**: HTTP 408/409/425/429 and 5xx, timeouts (``config.timeout`` seconds for the whole
  call, connect to last byte), connection errors, and malformed or truncated responses are retried
  up to ``config.max_retries`` times with exponential backoff and jitter (delay for retry *r*,
  counted from 0: ``min(backoff_max, backoff_base * 2**r)`` scaled by a random factor in
  [0.5, 1]); a ``Retry-After`` / ``retry-after-ms`` header, when present, sets the delay instead
  (capped at ``retry_after_max``). Other 4xx answers (bad request, auth, unknown model) are not
  retried. A call that fails for good gives completions with ``finish_reason="error"`` whose
  ``error`` says what went wrong and after how many tries; ``generate`` never raises for one
  failed request (also not when the server is down: every request then comes back as error
  completions, which the sampler reports). It raises :class:`EngineError` only for an unusable
  configuration (no ``base_url``; ``api_key_env`` names a variable that is not set).
* **n > 1**: asked for in one call (``"n": n``). A server that returns fewer choices (llama.cpp's
  Python server ignores ``n``) is asked again for the rest; once a server has answered ``n > 1``
  with a single choice, the engine sends the remaining (and all later) samples as parallel
  ``n=1`` calls so they spread over the server's slots. With a ``seed``, a follow-up call whose
  first completion is the request's *j*-th uses ``seed + j``, so repeated calls do not return
  copies of the same sample and a run stays reproducible.
* **Reasoning**: from ``message.reasoning_content`` (vLLM, DeepSeek), ``message.reasoning``
  (OpenRouter, newer vLLM) or ``<think>...</think>`` in the text, split by
  ``judgeeye.ratings.split_reasoning``. ``Completion.text`` is the raw model output: the content
  as sent, or ``<think>\\n{reasoning}\\n</think>\\n\\n{content}`` when the server split the
  reasoning off, so that text looks the same whichever way the server reports reasoning.
* **Tokens**: ``prompt_tokens`` is the prompt's length (``usage.prompt_tokens``; the prompt is
  shared by all choices of a call, so every completion carries it). ``usage.completion_tokens``
  is the total over the call's choices; it is split evenly across them (remainder to the first
  choices) and ``meta["tokens_split"]`` is set when a call had several choices. No ``usage``
  gives 0 and ``meta["usage_missing"] = True``.
* **finish_reason**: the choice's (``stop``, ``length``, ``content_filter`` ...); missing -> stop.
* **API key**: read at each ``generate`` call from the environment variable *named* by
  ``config.api_key_env`` (``"EMPTY"`` when none is configured; local servers need no key). It is
  never stored on the engine or in the config, never logged, and is scrubbed from error texts
  (a server that echoes it back in an error body does not leak it).
* **Model**: ``config.model`` is sent as ``model``; ``"embedded"``, ``"auto"`` or ``""`` leave the
  field out, so a single-model local server (vLLM, llama.cpp) uses the model it serves.

Engine options in ``config.extra`` (everything else in ``extra`` is merged into the request
body, e.g. ``{"top_k": 20, "chat_template_kwargs": {"enable_thinking": True}}``; it cannot
override ``messages``, ``n``, ``temperature``, ``top_p``, the token limit or ``seed``):

=====================  ======================================================================
``backoff_base``        seconds, first retry delay before jitter (default 0.5)
``backoff_max``         seconds, cap on one backoff delay (default 30)
``retry_after_max``     seconds, cap on a server's ``Retry-After`` (default 300)
``max_tokens_param``    body field for the token limit: ``max_tokens`` (default) or
                        ``max_completion_tokens`` (newer hosted models)
=====================  ======================================================================
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import logging
import math
import os
import queue
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from judgeeye.engines.base import (
    EMBEDDED_MODEL,
    Completion,
    Engine,
    EngineConfig,
    EngineError,
    GenerationRequest,
    ResultCallback,
    SamplingParams,
)
from judgeeye.ratings import split_reasoning

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_BASE = 0.5
DEFAULT_BACKOFF_MAX = 30.0
DEFAULT_RETRY_AFTER_MAX = 300.0
#: keys of ``config.extra`` that configure the engine rather than the request body
ENGINE_OPTIONS = frozenset({"backoff_base", "backoff_max", "retry_after_max", "max_tokens_param"})
#: ``config.model`` values that mean "whatever the server serves" (no ``model`` field is sent)
AUTO_MODELS = frozenset({"", "auto", EMBEDDED_MODEL})
NO_KEY = "EMPTY"
_RETRY_STATUS = frozenset({408, 409, 425, 429})
_CORE_FIELDS = ("messages", "n", "temperature", "top_p", "seed", "stream")


class _CallFailed(Exception):
    """One HTTP call failed; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass
class _CallResult:
    completions: list[Completion]
    asked: int
    failed: bool = False


def _parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000.0
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _text_of(content: Any) -> str:
    """Message content as text: a string, null, or a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    raise TypeError(f"message.content has unexpected type {type(content).__name__}")


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _tries(n: int) -> str:
    return f"{n} {'try' if n == 1 else 'tries'}"


class OpenAIEngine(Engine):
    """Chat completions from an OpenAI-compatible server (see the module docstring)."""

    supports_readout = False

    def __init__(
        self,
        config: EngineConfig,
        *,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
    ) -> None:
        if config.kind != "openai":
            raise EngineError(f"OpenAIEngine needs an engine config of kind 'openai', got {config.kind!r}")
        base_url = (config.base_url or "").strip()
        if not base_url:
            raise EngineError(
                "the openai engine needs base_url (e.g. http://127.0.0.1:8000/v1 for vLLM or "
                "llama.cpp, https://api.openai.com/v1 for OpenAI)"
            )
        if not base_url.startswith(("http://", "https://")):
            raise EngineError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.config = config
        extra = dict(config.extra)
        self._backoff_base = self._option(backoff_base, extra, "backoff_base", DEFAULT_BACKOFF_BASE)
        self._backoff_max = self._option(backoff_max, extra, "backoff_max", DEFAULT_BACKOFF_MAX)
        self._retry_after_max = self._option(None, extra, "retry_after_max", DEFAULT_RETRY_AFTER_MAX)
        self._max_tokens_param = str(extra.get("max_tokens_param") or "max_tokens")
        if self._max_tokens_param not in ("max_tokens", "max_completion_tokens"):
            raise EngineError(
                "config.extra['max_tokens_param'] must be 'max_tokens' or 'max_completion_tokens'"
            )
        self._body_extra = {k: v for k, v in extra.items() if k not in ENGINE_OPTIONS}
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._host = base_url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        self._model = None if config.model.strip() in AUTO_MODELS else config.model.strip()
        #: set once the server has answered a call for n > 1 with a single choice
        self.server_ignores_n = False
        self._start_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._semaphore: asyncio.Semaphore | None = None

    @staticmethod
    def _option(given: float | None, extra: dict[str, Any], key: str, default: float) -> float:
        value = given if given is not None else extra.get(key, default)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise EngineError(f"engine option {key} must be a number of seconds, got {value!r}") from None
        if not math.isfinite(value) or value < 0:
            raise EngineError(f"engine option {key} must be >= 0 seconds, got {value!r}")
        return value

    def __repr__(self) -> str:
        return f"OpenAIEngine({self.config.label()})"

    # ------------------------------------------------------------------ public API
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        params: SamplingParams,
        on_result: ResultCallback | None = None,
    ) -> list[list[Completion]]:
        requests = list(requests)
        for i, req in enumerate(requests):
            if req.n < 0:
                raise EngineError(f"request {i} asks for n={req.n} completions")
        if not requests:
            return []
        key = self._api_key()
        loop = self._ensure_loop()
        inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        done = object()
        future = asyncio.run_coroutine_threadsafe(self._run(requests, params, key, inbox), loop)
        future.add_done_callback(lambda _f: inbox.put(done))
        results: list[list[Completion] | None] = [None] * len(requests)
        try:
            while True:
                try:
                    item = inbox.get(timeout=0.5)
                except queue.Empty:
                    continue
                if item is done:
                    break
                i, completions = item
                results[i] = completions
                if on_result is not None:
                    on_result(i, completions)
            future.result()  # re-raises an internal failure, if any
        except BaseException:
            future.cancel()
            raise
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:  # pragma: no cover - _run always answers every request
            raise EngineError(f"openai engine lost the results of requests {missing[:10]}")
        return [r for r in results if r is not None]

    def close(self) -> None:
        with self._start_lock:
            loop, thread, client = self._loop, self._thread, self._client
            self._loop = self._thread = self._client = None
            self._semaphore = None
        if loop is None:
            return
        if client is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=5)
            except Exception:  # noqa: BLE001 - closing must not fail
                pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        if not loop.is_running():
            loop.close()

    def __del__(self) -> None:  # pragma: no cover - best effort when close() was not called
        try:
            loop = self._loop
            if loop is not None and loop.is_running():
                loop.call_soon_threadsafe(loop.stop)
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------ plumbing
    def _api_key(self) -> str:
        name = self.config.api_key_env
        if not name:
            return NO_KEY
        value = os.environ.get(name, "").strip()
        if not value:
            raise EngineError(
                f"the openai engine reads its API key from the environment variable {name} "
                "(config.api_key_env), which is not set"
            )
        return value

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                thread = threading.Thread(target=serve, name="judgeeye-openai-engine", daemon=True)
                thread.start()
                started.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            cap = self.config.max_concurrency
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.timeout),
                limits=httpx.Limits(max_connections=cap, max_keepalive_connections=cap),
                headers={"Accept": "application/json"},
            )
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.config.max_concurrency)
        return self._client

    async def _run(
        self,
        requests: list[GenerationRequest],
        params: SamplingParams,
        key: str,
        inbox: queue.SimpleQueue[Any],
    ) -> None:
        client = self._get_client()

        async def one(i: int, req: GenerationRequest) -> None:
            try:
                mine = params if req.seed is None else dataclasses.replace(params, seed=req.seed)
                completions = await self._complete(client, req, mine, key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one request must never sink the call
                log.exception("openai engine: unexpected failure on request %d", i)
                message = self._redact(f"internal error: {type(exc).__name__}: {exc}", key)
                completions = [self._error(message, 0) for _ in range(req.n)]
            inbox.put((i, completions))

        await asyncio.gather(*(one(i, req) for i, req in enumerate(requests)))

    async def _complete(
        self, client: httpx.AsyncClient, req: GenerationRequest, params: SamplingParams, key: str
    ) -> list[Completion]:
        """All ``req.n`` completions of one request (error completions for what failed)."""
        n = req.n
        collected: list[Completion] = []
        while len(collected) < n:
            missing = n - len(collected)
            if self.server_ignores_n and missing > 1:
                offset = len(collected)
                parts = await asyncio.gather(
                    *(self._call(client, req.messages, params, key, 1, offset + j) for j in range(missing))
                )
            else:
                part = await self._call(client, req.messages, params, key, missing, len(collected))
                if not part.failed and part.asked > 1 and len(part.completions) == 1:
                    if not self.server_ignores_n:
                        log.info(
                            "openai engine: %s answers n>1 with one choice; sending n=1 calls in parallel",
                            self._host,
                        )
                    self.server_ignores_n = True
                parts = [part]
            for part in parts:
                collected.extend(part.completions)
            if any(part.failed for part in parts):
                break
        if len(collected) < n:  # a call failed for good: the rest are errors like it
            failed = next((c for c in reversed(collected) if c.finish_reason == "error"), None)
            message = failed.error if failed is not None and failed.error else "request failed"
            tries = failed.meta.get("tries", 0) if failed is not None else 0
            collected.extend(self._error(message, tries) for _ in range(n - len(collected)))
        return collected[:n]

    async def _call(
        self,
        client: httpx.AsyncClient,
        messages: list[dict[str, str]],
        params: SamplingParams,
        key: str,
        n: int,
        seed_offset: int,
    ) -> _CallResult:
        """One logical call (asking for ``n`` choices) with retries; never raises for HTTP trouble."""
        attempts = 1 + self.config.max_retries
        assert self._semaphore is not None
        failure: _CallFailed | None = None
        tries = 0
        for attempt in range(attempts):
            tries = attempt + 1
            async with self._semaphore:
                try:
                    completions = await self._call_once(client, messages, params, key, n, seed_offset)
                except _CallFailed as exc:
                    failure = exc
                else:
                    for c in completions:
                        c.meta["tries"] = tries
                    return _CallResult(completions, n)
            if not failure.retryable or attempt == attempts - 1:
                break
            delay = self._delay(attempt, failure.retry_after)
            log.warning(
                "openai engine: %s: %s; retry %d/%d in %.2f s",
                self._host, failure.message, attempt + 1, self.config.max_retries, delay,
            )
            await asyncio.sleep(delay)
        assert failure is not None
        if failure.retryable:
            message = f"{failure.message}; gave up after {_tries(tries)} (max_retries={self.config.max_retries})"
        else:
            message = f"{failure.message} (not retried; {_tries(tries)})"
        message = f"openai engine ({self._host}): {message}"
        log.warning("%s", message)
        return _CallResult([self._error(message, tries)], n, failed=True)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._retry_after_max)
        delay = min(self._backoff_max, self._backoff_base * (2**attempt))
        return delay * random.uniform(0.5, 1.0)

    def _body(self, messages: list[dict[str, str]], params: SamplingParams, n: int, seed_offset: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            k: v for k, v in self._body_extra.items() if k not in _CORE_FIELDS
            and k not in ("max_tokens", "max_completion_tokens")
        }
        if self._model is not None:
            body["model"] = self._model
        body["messages"] = messages
        if n != 1:
            body["n"] = n
        body["temperature"] = params.temperature
        body["top_p"] = params.top_p
        body[self._max_tokens_param] = params.max_tokens
        if params.seed is not None:
            body["seed"] = params.seed + seed_offset
        body["stream"] = False
        return body

    async def _call_once(
        self,
        client: httpx.AsyncClient,
        messages: list[dict[str, str]],
        params: SamplingParams,
        key: str,
        n: int,
        seed_offset: int,
    ) -> list[Completion]:
        body = self._body(messages, params, n, seed_offset)
        headers = {"Authorization": f"Bearer {key}"}
        timeout = self.config.timeout
        try:
            async with asyncio.timeout(timeout):
                response = await client.post(self._url, json=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            raise _CallFailed(f"timed out after {timeout:g} s", retryable=True) from None
        except httpx.RequestError as exc:
            detail = self._redact(f"{type(exc).__name__}: {exc}", key)
            raise _CallFailed(f"connection error ({detail})", retryable=True) from None

        status = response.status_code
        if status >= 400:
            retryable = status in _RETRY_STATUS or status >= 500
            detail = self._redact(self._error_detail(response), key)
            message = f"HTTP {status}" + (f": {detail}" if detail else "")
            raise _CallFailed(
                message, retryable=retryable,
                retry_after=_parse_retry_after(response.headers) if retryable else None,
            )
        try:
            payload = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            size = len(response.content)
            raise _CallFailed(
                f"malformed response: HTTP {status} with a body that is not JSON ({size} bytes"
                f"{', truncated?' if size else ''})", retryable=True,
            ) from None
        try:
            return self._completions(payload, n)
        except _CallFailed:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise _CallFailed(
                self._redact(f"malformed response: {exc}", key), retryable=True
            ) from None

    @staticmethod
    def _error_detail(response: httpx.Response) -> str:
        text = response.text if response.content else ""
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            err = data.get("error", data.get("detail", data.get("message")))
            if isinstance(err, dict):
                err = err.get("message", err)
            if err is not None:
                text = err if isinstance(err, str) else json.dumps(err)
        text = " ".join(text.split())
        return text[:300] + ("..." if len(text) > 300 else "")

    def _completions(self, payload: Any, n: int) -> list[Completion]:
        if not isinstance(payload, dict):
            raise ValueError(f"expected a JSON object, got {type(payload).__name__}")
        if "choices" not in payload and payload.get("error"):
            raise ValueError(f"server answered with an error object: {str(payload['error'])[:300]}")
        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ValueError("no choices in the response")
        for choice in choices:
            if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
                raise ValueError("a choice has no message object")
        if all(_int_or_none(c.get("index")) is not None for c in choices):
            choices = sorted(choices, key=lambda c: _int_or_none(c.get("index")) or 0)
        choices = choices[:n]

        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else None
        prompt_tokens = _int_or_none(usage.get("prompt_tokens")) if usage else None
        total_completion = _int_or_none(usage.get("completion_tokens")) if usage else None
        k = len(choices)
        if total_completion is not None:
            base, rem = divmod(max(total_completion, 0), k)
            per_choice = [base + (1 if j < rem else 0) for j in range(k)]
        else:
            per_choice = [0] * k

        out = []
        for j, choice in enumerate(choices):
            message = choice["message"]
            content = _text_of(message.get("content"))
            reasoning_field = message.get("reasoning_content")
            if not (isinstance(reasoning_field, str) and reasoning_field.strip()):
                reasoning_field = message.get("reasoning")
            if not isinstance(reasoning_field, str) or not reasoning_field.strip():
                reasoning_field = None
            reasoning, answer = split_reasoning(content, reasoning_field)
            text = f"<think>\n{reasoning_field.strip()}\n</think>\n\n{content}" if reasoning_field else content
            finish = choice.get("finish_reason")
            finish = str(finish).lower() if finish else "stop"
            meta: dict[str, Any] = {}
            if isinstance(payload.get("model"), str):
                meta["model"] = payload["model"]
            if usage is None or total_completion is None:
                meta["usage_missing"] = True
            elif k > 1:
                meta["tokens_split"] = True
            out.append(
                Completion(
                    text=text,
                    reasoning=reasoning,
                    answer=answer,
                    prompt_tokens=prompt_tokens or 0,
                    completion_tokens=per_choice[j],
                    finish_reason=finish,
                    meta=meta,
                )
            )
        return out

    @staticmethod
    def _error(message: str, tries: int) -> Completion:
        return Completion(
            text="", reasoning="", answer="", finish_reason="error", error=message,
            meta={"tries": tries},
        )

    @staticmethod
    def _redact(text: str, key: str) -> str:
        if key and key != NO_KEY and len(key) >= 4:
            text = text.replace(key, "***")
        return text
