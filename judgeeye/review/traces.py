"""A candidate as a reviewer reads it: its thinking trace, and its final answer apart.

Models with thinking tokens give both (``reasoning`` and ``answer``); others reason inside the
answer, and then the trace is the answer without its final rating statement, which is shown on
its own (:func:`judgeeye.ratings.trace_text`). An answer that wrote no rating statement is all
trace: its final answer is empty (a forced-cue rating was read after it, not written in it).
"""

from __future__ import annotations

from judgeeye.ratings import parse_rating, trace_text
from judgeeye.store import Candidate


def split_trace(candidate: Candidate, scale: tuple[int, int]) -> tuple[str, str]:
    """(trace, final answer) of a candidate; the final answer is "" when the answer wrote no rating."""
    reasoning, answer = candidate.reasoning or "", candidate.answer or ""
    if reasoning.strip():
        return reasoning.strip(), answer.strip()
    trace = trace_text("", answer, parse_rating(answer, *scale) if answer else None)
    body = answer.strip()
    final = body[len(trace):].strip() if trace and body.startswith(trace) else body
    return trace, final
