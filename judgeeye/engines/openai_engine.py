"""The ``openai`` engine: any OpenAI-compatible chat-completions server, through the ``openai`` SDK.

Works with vLLM (``vllm serve MODEL --reasoning-parser deepseek_r1``), llama.cpp's servers
(``python -m llama_cpp.server --model FILE.gguf``), and hosted APIs. Requests go out through
``openai.AsyncOpenAI`` on a private asyncio event loop that runs in a daemon thread;
:meth:`OpenAIEngine.generate` stays synchronous, and ``on_result`` callbacks run in the caller's
thread (so they may use the caller's database session) while the loop keeps the other requests
going.

Behaviour
---------
* **Concurrency**: at most ``config.max_concurrency`` SDK calls in flight (an asyncio semaphore
  shared by every ``generate`` call on the engine); one connection pool for the engine's life.
* **Retries** are the SDK's: HTTP 408/409/429 and 5xx, timeouts (``config.timeout`` seconds to
  connect and for each read of the answer) and connection errors (a truncated answer included)
  are retried up to ``config.max_retries`` times. The delay is the server's ``Retry-After`` /
  ``retry-after-ms`` when it sends one (the SDK gives up at once on more than 2 minutes), else
  ``min(backoff_max, backoff_base * 2**r)`` minus up to 25% jitter for retry *r* (counted from
  0), the SDK's rule with the config's numbers. An answer the SDK accepts but that is not a
  chat completion (not JSON, cut off, no choices) is retried by the engine on the same budget
  and rule. Other 4xx answers (bad request, auth, unknown model) are not retried. A call that
  fails for good gives completions with ``finish_reason="error"`` whose ``error`` names the
  server and says what went wrong after how many tries; ``generate`` never raises for one failed
  request (also not when the server is down). It raises :class:`EngineError` only for an
  unusable configuration (no ``base_url``; ``api_key_env`` names a variable that is not set).
* **n > 1**: asked for in one call (``n``). A server that returns fewer choices (llama.cpp's
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
  gives 0 and ``meta["usage_missing"] = True``. ``meta["tries"]`` counts the HTTP tries.
* **finish_reason**: the choice's (``stop``, ``length``, ``content_filter`` ...); missing -> stop.
* **API key**: read at each ``generate`` call from the environment variable *named* by
  ``config.api_key_env`` (``"EMPTY"`` when none is configured; local servers need no key) and
  handed to an SDK client that lives for that call only. It is never stored on the engine or in
  the config, never logged, and is scrubbed from error texts (a server that echoes it back in
  an error body does not leak it).
* **Model**: ``config.model`` is sent as ``model``; ``"embedded"``, ``"auto"`` or ``""`` leave the
  field out, so a single-model local server (vLLM, llama.cpp) uses the model it serves.
* **Request body**: ``messages``, ``n``, ``temperature``, ``top_p``, the token limit (field
  ``config.max_tokens_param``) and ``seed`` come from the request and :class:`SamplingParams`;
  ``config.extra_body`` adds server-specific fields (``top_k``, ``chat_template_kwargs`` ...).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import queue
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai

from judgeeye.engines.base import (
    EMBEDDED_MODEL,
    Completion,
    Engine,
    EngineError,
    GenerationRequest,
    OpenAIConfig,
    ResultCallback,
    SamplingParams,
)
from judgeeye.ratings import split_reasoning

log = logging.getLogger(__name__)

#: ``config.model`` values that mean "whatever the server serves" (no ``model`` field is sent)
AUTO_MODELS = frozenset({"", "auto", EMBEDDED_MODEL})
NO_KEY = "EMPTY"
_RETRY_STATUS = frozenset({408, 409, 429})


def backoff_delay(retry: int, base: float, cap: float) -> float:
    """The SDK's backoff rule with our numbers: ``min(cap, base * 2**retry)`` minus 0-25% jitter."""
    return min(cap, base * 2.0 ** min(retry, 1000)) * (1 - 0.25 * random.random())


class _Client(openai.AsyncOpenAI):
    """``AsyncOpenAI`` whose backoff between retries uses the config's numbers (the SDK's are
    fixed: 0.5 s doubling to 8 s); a delay the server asks for is still the SDK's to honour.
    Should a later SDK stop calling this hook, its own fixed backoff applies."""

    backoff: tuple[float, float] = (0.5, 8.0)

    def _calculate_retry_timeout(self, remaining_retries: int, options: Any,
                                 response_headers: Any = None) -> float:
        if response_headers is not None and any(h in response_headers for h in ("retry-after", "retry-after-ms")):
            return super()._calculate_retry_timeout(remaining_retries, options, response_headers)
        retry = options.get_max_retries(self.max_retries) - remaining_retries
        return backoff_delay(retry, *self.backoff)


class _Malformed(ValueError):
    """The server answered 200 with something that is not a chat completion."""


@dataclass
class _CallResult:
    completions: list[Completion]
    asked: int
    failed: bool = False


def _text_of(content: Any) -> str:
    """Message content as text: a string, null, or a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            text = part.get("text") if isinstance(part, dict) else getattr(part, "text", part)
            if isinstance(text, str):
                parts.append(text)
        return "".join(parts)
    raise _Malformed(f"message.content has unexpected type {type(content).__name__}")


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


def _reasoning_field(message: Any) -> str | None:
    for name in ("reasoning_content", "reasoning"):
        value = getattr(message, name, None)
        if isinstance(value, str) and value.strip():
            return value
    return None


def completions_from(payload: Any, n: int) -> list[Completion]:
    """The completions of one parsed answer (``openai.types.chat.ChatCompletion``), at most ``n``;
    raises :class:`_Malformed` for an answer without usable choices."""
    choices = getattr(payload, "choices", None)
    if not choices:
        error = getattr(payload, "error", None)
        if error:
            raise _Malformed(f"server answered with an error object: {str(error)[:300]}")
        raise _Malformed("no choices in the response")
    if not isinstance(choices, list) or any(getattr(c, "message", None) is None for c in choices):
        raise _Malformed("a choice has no message object")
    if all(_int_or_none(getattr(c, "index", None)) is not None for c in choices):
        choices = sorted(choices, key=lambda c: c.index)
    choices = choices[:n]

    usage = getattr(payload, "usage", None)
    prompt_tokens = _int_or_none(getattr(usage, "prompt_tokens", None))
    total_completion = _int_or_none(getattr(usage, "completion_tokens", None))
    k = len(choices)
    if total_completion is not None:
        base, rem = divmod(max(total_completion, 0), k)
        per_choice = [base + (1 if j < rem else 0) for j in range(k)]
    else:
        per_choice = [0] * k
    model = getattr(payload, "model", None)

    out = []
    for j, choice in enumerate(choices):
        message = choice.message
        content = _text_of(getattr(message, "content", None))
        reasoning_field = _reasoning_field(message)
        reasoning, answer = split_reasoning(content, reasoning_field)
        text = f"<think>\n{reasoning_field.strip()}\n</think>\n\n{content}" if reasoning_field else content
        finish = getattr(choice, "finish_reason", None)
        meta: dict[str, Any] = {}
        if isinstance(model, str):
            meta["model"] = model
        if total_completion is None:
            meta["usage_missing"] = True
        elif k > 1:
            meta["tokens_split"] = True
        out.append(Completion(
            text=text, reasoning=reasoning, answer=answer, prompt_tokens=prompt_tokens or 0,
            completion_tokens=per_choice[j], finish_reason=str(finish).lower() if finish else "stop",
            meta=meta,
        ))
    return out


class OpenAIEngine(Engine):
    """Chat completions from an OpenAI-compatible server (see the module docstring)."""

    supports_readout = False
    config: OpenAIConfig

    def __init__(self, config: OpenAIConfig) -> None:
        if not isinstance(config, OpenAIConfig):
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
        self._base_url = base_url.rstrip("/")
        self._host = base_url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        model = config.model.strip()
        self._model: str | openai.Omit = openai.omit if model in AUTO_MODELS else model
        #: set once the server has answered a call for n > 1 with a single choice
        self.server_ignores_n = False
        self._start_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._http: Any = None  # the SDK's async HTTP client: one connection pool, made in the loop
        self._semaphore: asyncio.Semaphore | None = None

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
                    item = inbox.get(timeout=0.5)  # a timeout keeps the thread open to signals
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
            loop, thread, http = self._loop, self._thread, self._http
            self._loop = self._thread = self._http = None
            self._semaphore = None
        if loop is None:
            return
        if http is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(http.aclose(), loop).result(timeout=5)
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

    def _clients(self, key: str) -> _ClientsByBudget:
        """SDK clients for one ``generate`` call (the key lives as long as they do)."""
        if self._http is None:
            self._http = openai.DefaultAsyncHttpxClient()
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.config.max_concurrency)
        return _ClientsByBudget(self.config, self._base_url, key, self._http)

    async def _run(
        self,
        requests: list[GenerationRequest],
        params: SamplingParams,
        key: str,
        inbox: queue.SimpleQueue[Any],
    ) -> None:
        clients = self._clients(key)

        async def one(i: int, req: GenerationRequest) -> None:
            try:
                mine = params if req.seed is None else dataclasses.replace(params, seed=req.seed)
                completions = await self._complete(clients, req, mine)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one request must never sink the call
                log.exception("openai engine: unexpected failure on request %d", i)
                message = clients.redact(f"internal error: {type(exc).__name__}: {exc}")
                completions = [self._error(message, 0) for _ in range(req.n)]
            inbox.put((i, completions))

        await asyncio.gather(*(one(i, req) for i, req in enumerate(requests)))

    async def _complete(self, clients: _ClientsByBudget, req: GenerationRequest,
                        params: SamplingParams) -> list[Completion]:
        """All ``req.n`` completions of one request (error completions for what failed)."""
        n = req.n
        collected: list[Completion] = []
        while len(collected) < n:
            missing = n - len(collected)
            if self.server_ignores_n and missing > 1:
                offset = len(collected)
                parts = await asyncio.gather(
                    *(self._call(clients, req.messages, params, 1, offset + j) for j in range(missing))
                )
            else:
                part = await self._call(clients, req.messages, params, missing, len(collected))
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
        clients: _ClientsByBudget,
        messages: list[dict[str, str]],
        params: SamplingParams,
        n: int,
        seed_offset: int,
    ) -> _CallResult:
        """One logical call (asking for ``n`` choices) with retries; never raises for HTTP trouble."""
        max_retries = self.config.max_retries
        used = 0  # HTTP tries so far
        assert self._semaphore is not None
        while True:
            client = clients.with_retries(max_retries - used)
            try:
                async with self._semaphore:
                    raw = await client.chat.completions.with_raw_response.create(
                        messages=messages,  # type: ignore[arg-type]
                        model=self._model,  # type: ignore[arg-type]
                        n=n if n != 1 else openai.omit,
                        temperature=params.temperature,
                        top_p=params.top_p,
                        seed=params.seed + seed_offset if params.seed is not None else openai.omit,
                        extra_body=self.config.extra_body or None,
                        **{self.config.max_tokens_param: params.max_tokens},
                    )
            except openai.APIError as exc:
                tries = used + 1 + _retries_taken(exc)
                return _CallResult([self._error(self._failure(clients, exc, tries), tries)], n, failed=True)
            used += 1 + raw.retries_taken
            try:
                completions = completions_from(raw.parse(), n)
            except (ValueError, TypeError, AttributeError, openai.APIResponseValidationError) as exc:
                problem = clients.redact(f"malformed response: {_malformed_detail(exc, raw)}")
                if used > max_retries:
                    message = f"{problem}; gave up after {_tries(used)} (max_retries={max_retries})"
                    return _CallResult([self._error(self._named(message), used)], n, failed=True)
                delay = backoff_delay(used - 1, self.config.backoff_base, self.config.backoff_max)
                log.warning("openai engine: %s: %s; retry in %.2f s", self._host, problem, delay)
                await asyncio.sleep(delay)
                continue
            for c in completions:
                c.meta["tries"] = used
            return _CallResult(completions, n)

    def _failure(self, clients: _ClientsByBudget, exc: openai.APIError, tries: int) -> str:
        """What went wrong, for the error completion (named server, tries, no key)."""
        retryable = True
        if isinstance(exc, openai.APITimeoutError):
            detail = f"timed out after {self.config.timeout:g} s"
        elif isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            detail = f"connection error ({type(cause).__name__}: {cause})" if cause else "connection error"
        elif isinstance(exc, openai.APIStatusError):
            retryable = exc.status_code in _RETRY_STATUS or exc.status_code >= 500
            said = _status_detail(exc)
            detail = f"HTTP {exc.status_code}" + (f": {said}" if said else "")
        else:
            detail = f"{type(exc).__name__}: {exc}"
        detail = clients.redact(detail)
        max_retries = self.config.max_retries
        if retryable and tries > max_retries:
            message = f"{detail}; gave up after {_tries(tries)} (max_retries={max_retries})"
        else:
            message = f"{detail} (not retried; {_tries(tries)})"
        log.warning("openai engine (%s): %s", self._host, message)
        return self._named(message)

    def _named(self, message: str) -> str:
        return f"openai engine ({self._host}): {message}"

    @staticmethod
    def _error(message: str, tries: int) -> Completion:
        return Completion(
            text="", reasoning="", answer="", finish_reason="error", error=message,
            meta={"tries": tries},
        )


class _ClientsByBudget:
    """SDK clients of one ``generate`` call, one per retry budget (a call whose answer was
    malformed goes on with the retries it has left)."""

    def __init__(self, config: OpenAIConfig, base_url: str, key: str, http: Any) -> None:
        self._config, self._base_url, self._key, self._http = config, base_url, key, http
        self._by_budget: dict[int, _Client] = {}

    def with_retries(self, max_retries: int) -> _Client:
        client = self._by_budget.get(max_retries)
        if client is None:
            client = _Client(api_key=self._key, base_url=self._base_url, timeout=self._config.timeout,
                             max_retries=max_retries, http_client=self._http)
            client.backoff = (self._config.backoff_base, self._config.backoff_max)
            self._by_budget[max_retries] = client
        return client

    def redact(self, text: str) -> str:
        key = self._key
        if key and key != NO_KEY and len(key) >= 4:
            text = text.replace(key, "***")
        return text


def _retries_taken(exc: openai.APIError) -> int:
    """Retries the SDK made before raising (it numbers each try in a request header)."""
    try:
        return int(exc.request.headers.get("x-stainless-retry-count", "0"))
    except (AttributeError, ValueError):
        return 0


def _status_detail(exc: openai.APIStatusError) -> str:
    """The server's error message, on one line, at most 300 characters."""
    body = exc.body
    if isinstance(body, dict):
        err = body.get("message", body.get("detail", body.get("error", body)))
        if isinstance(err, dict):
            err = err.get("message", err)
        text = err if isinstance(err, str) else str(err)
    elif isinstance(body, str):
        text = body
    else:
        try:
            text = exc.response.text
        except Exception:  # noqa: BLE001 - a body that cannot be read has no detail
            text = ""
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _malformed_detail(exc: Exception, raw: Any) -> str:
    if isinstance(exc, _Malformed):
        return str(exc)
    size = len(raw.content)
    return (f"HTTP {raw.status_code} with a body that is not a chat completion ({size} bytes"
            f"{', truncated?' if size else ''}: {type(exc).__name__})")
