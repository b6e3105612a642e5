"""Post hoc explanations (paper Table 6): explain a known label, then check the explanation.

The generator is told the gold rating and asked to explain it; every explicit mention of the
rating is removed; a second engine reads the stripped explanation with the item and must arrive
at the gold rating on its own. Only explanations that pass are accepted.
"""

from __future__ import annotations

from collections.abc import Sequence

from judgeeye.codebook import CodebookSpec, render_prompt_text
from judgeeye.engines import Completion, Engine, GenerationRequest, SamplingParams
from judgeeye.ratings import parse_rating, remove_rating_mentions, trace_text

EXPLAIN = (
    "\n\nAn expert annotator following these guidelines rated this item {label}. Explain, step by "
    "step, the reasoning under the guidelines that leads to this rating, as the annotator would "
    "have thought it through."
)
VERIFY = (
    "\n\nHere is an analysis of the item written by an annotator:\n<analysis>\n{analysis}\n</analysis>\n"
    "Using the guidelines and this analysis, decide the rating yourself."
)


def explain_messages(spec: CodebookSpec, fields: dict[str, str], label: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": render_prompt_text(spec, fields) + EXPLAIN.format(label=label)}]


def verify_messages(spec: CodebookSpec, fields: dict[str, str], analysis: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": render_prompt_text(spec, fields) + VERIFY.format(analysis=analysis)}]


def verify(
    verifier: Engine,
    spec: CodebookSpec,
    fields: dict[str, str],
    label: int,
    completions: Sequence[Completion],
    params: SamplingParams,
) -> list[tuple[str, Completion, float | None, bool]]:
    """For each explanation: (stripped explanation, verifier completion, verifier rating, accepted)."""
    stripped = [
        remove_rating_mentions(trace_text(c.reasoning, c.answer, None), label, spec.scale_min, spec.scale_max)
        for c in completions
    ]
    requests = [GenerationRequest(messages=verify_messages(spec, fields, s), n=1) for s in stripped]
    verdicts = verifier.generate(requests, params)
    out = []
    for text, (verdict,) in zip(stripped, verdicts):
        prompt = verify_messages(spec, fields, text)[0]["content"]
        parse = parse_rating(verdict.answer, spec.scale_min, spec.scale_max, prompt=prompt)
        rating = float(parse.value) if parse.ok and parse.value is not None else None
        out.append((text, verdict, rating, rating is not None and rating == label))
    return out
