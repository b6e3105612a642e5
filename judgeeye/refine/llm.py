"""Asking an engine for a ``<codebook>`` answer: optional assistant prefill, checks, retries.

A weak local model often writes no tags, an empty section or a cut-off one. Each answer is checked
by the caller's parser; a bad one is retried with another seed, and after the last attempt the
caller gets :class:`RefinementError` listing every attempt and why it was refused, so nothing
is written from a bad answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeGuard, TypeVar

from judgeeye.engines import Engine, GenerationRequest, SamplingParams

T = TypeVar("T")
_BLOCK = re.compile(r"<codebook>(.*?)</codebook>", re.I | re.S)
_OPEN = re.compile(r"<codebook>", re.I)


class BadAnswer(ValueError):
    """An answer that cannot be used (the message says why)."""


class RefinementError(RuntimeError):
    """Every attempt at a refinement step gave an unusable answer; nothing was written."""

    def __init__(self, step: str, attempts: list[Attempt]):
        self.step = step
        self.attempts = attempts
        reasons = "; ".join(f"attempt {a.number}: {a.error}" for a in attempts)
        super().__init__(f"{step}: no usable answer after {len(attempts)} attempt(s) ({reasons}); "
                         "no codebook version was written")


@dataclass
class Attempt:
    number: int
    text: str
    finish_reason: str
    error: str | None = None

    def to_dict(self, max_chars: int = 20_000) -> dict[str, Any]:
        out = asdict(self)
        out["text"] = self.text[:max_chars]
        return out


@dataclass
class Answer:
    text: str
    finish_reason: str
    error: str | None = None


class GeneratedTokens(Protocol):
    """One generated sequence (the transformers engine's TokenResult)."""

    ids: list[int]
    finish_reason: str


class PrefillEngine(Protocol):
    """What continuing an assistant turn needs (the transformers engine has it)."""

    tokenizer: Any

    def generate_tokens(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> Sequence[GeneratedTokens]:
        ...


def supports_prefill(engine: Engine) -> TypeGuard[PrefillEngine]:
    """Local transformers engines can continue an assistant turn we start; servers cannot."""
    return getattr(engine, "tokenizer", None) is not None and hasattr(engine, "generate_tokens")


def complete(engine: Engine, prompt: str, params: SamplingParams, *, n: int = 1,
             prefill: str | None = None) -> list[Answer]:
    """``n`` answers to one user prompt; with a prefill (local engines) the answer starts with it."""
    messages = [{"role": "user", "content": prompt}]
    if prefill and supports_prefill(engine):
        import torch

        from judgeeye.engines.transformers_engine import encode_text, render_chat

        tokenizer = engine.tokenizer
        ids = encode_text(tokenizer, render_chat(tokenizer, messages) + prefill)
        if params.seed is not None:
            torch.manual_seed(int(params.seed))
        results = engine.generate_tokens([ids] * n, params)
        eos = set(getattr(engine, "eos_ids", []) or [])
        out = []
        for r in results:
            new = r.ids[:-1] if r.finish_reason == "stop" and r.ids and r.ids[-1] in eos else r.ids
            out.append(Answer(prefill + tokenizer.decode(new, skip_special_tokens=True), r.finish_reason))
        return out
    completions = engine.generate([GenerationRequest(messages, n=n)], params)[0]
    return [Answer(c.answer if c.reasoning else c.text, c.finish_reason, c.error) for c in completions]


def _norm(line: str) -> str:
    return " ".join(line.split()).lower()


def cut_loop(text: str, min_words: int = 3) -> str | None:
    """The text up to where it starts repeating an earlier line word for word (a model stuck in a
    loop), or None when no line of at least ``min_words`` words repeats."""
    seen: set[str] = set()
    lines = text.split("\n")
    for i, line in enumerate(lines):
        key = _norm(line)
        if len(key.split()) >= min_words and key in seen:
            return "\n".join(lines[:i]).rstrip()
        seen.add(key)
    return None


def codebook_block(text: str, finish_reason: str, *, whole_paragraphs: bool = False) -> str:
    """The content of the answer's last ``<codebook>`` block; :class:`BadAnswer` if there is none,
    it is empty, or it was cut off by the token limit.

    An answer cut off while repeating itself (small models loop until the token limit) counts as
    ended where the repetition began. With ``whole_paragraphs`` (for a part whose completeness the
    caller checks, such as a rubric that must have every level), a cut-off answer keeps its
    finished paragraphs and drops the unfinished last one; otherwise it is refused as incomplete.
    """
    if finish_reason == "length" and not _BLOCK.search(text):
        looped = cut_loop(text)
        if looped is not None:
            text, finish_reason = looped, "loop"
        elif whole_paragraphs and "\n\n" in text.rstrip():
            text, finish_reason = text.rstrip().rsplit("\n\n", 1)[0], "cut at a paragraph"
    blocks = _BLOCK.findall(text)
    if blocks:
        body = blocks[-1]
    else:
        opens = list(_OPEN.finditer(text))
        if not opens:
            raise BadAnswer("no <codebook>…</codebook> in the answer")
        if finish_reason == "length":
            raise BadAnswer("the answer was cut off at the token limit before </codebook>")
        body = text[opens[-1].end():]  # the model ended its turn without closing the tag
    if not body.strip():
        raise BadAnswer("the <codebook> section is empty")
    return body


def ask(engine: Engine, prompt: str, parse: Callable[[str], T], *, step: str, params: SamplingParams,
        attempts: int = 3, prefill: str | None = None, whole_paragraphs: bool = False,
        log: Callable[[str], None] | None = None) -> tuple[T, list[Attempt]]:
    """Ask until ``parse(block)`` accepts the answer's ``<codebook>`` block (it raises
    :class:`BadAnswer` otherwise); returns its value and every attempt made."""
    tried: list[Attempt] = []
    for number in range(1, max(1, attempts) + 1):
        seed = None if params.seed is None else params.seed + number - 1
        attempt_params = SamplingParams(temperature=params.temperature, top_p=params.top_p,
                                        max_tokens=params.max_tokens, seed=seed)
        answer = complete(engine, prompt, attempt_params, prefill=prefill)[0]
        attempt = Attempt(number, answer.text, answer.finish_reason)
        tried.append(attempt)
        if answer.finish_reason == "error":
            attempt.error = f"the engine failed: {answer.error or 'unknown error'}"
        else:
            try:
                block = codebook_block(answer.text, answer.finish_reason, whole_paragraphs=whole_paragraphs)
                return parse(block), tried
            except BadAnswer as exc:
                attempt.error = str(exc)
        if log:
            log(f"{step}: attempt {number} refused ({attempt.error}); answer began: "
                f"{answer.text[:300]!r}")
    raise RefinementError(step, tried)
