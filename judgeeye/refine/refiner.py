"""Instruction and rubric refinement (paper section 3.2), and writing the refined version.

* Instructions: N_inst traces per level go into the Appendix D instruction prompt; only the
  instructions of the answer's ``<codebook>`` are kept (what it writes before its rubric stays
  before the rubric, what it writes after stays after), the rubric stays as it was.
* Rubric: the representative critiques go into the Appendix D rubric prompt; only the rubric of
  the answer is kept (every level of the original must be there, with any lead-in and notes it
  writes around them), the instructions stay.

What was not refined is kept byte for byte: the answer is cut into its parts
(:func:`judgeeye.codebook.split_codebook_text`) and only the refined part replaces the base's.
* Both: instructions first, then the rubric of the instruction-refined codebook, as in the paper.

The refined codebook becomes a new version in one transaction, with its parent, origin and every
input (trace ids, critique ids, clusters, prompts, answers, engine) recorded on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from judgeeye.codebook import (
    CodebookParseError,
    CodebookParts,
    CodebookSpec,
    create_version,
    parse_codebook_text,
    split_codebook_text,
)
from judgeeye.codebook.render import output_format_keys, paragraphs
from judgeeye.engines import Engine, SamplingParams
from judgeeye.refine import prompts
from judgeeye.refine.llm import Attempt, BadAnswer, ask, supports_prefill
from judgeeye.refine.traces import TraceRow
from judgeeye.store import Codebook


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _kept(new: str, old: str) -> str:
    """``old`` byte for byte when ``new`` only re-wraps or re-spaces it, else ``new``."""
    return old if _norm(new) == _norm(old) else new


def _answer_parts(block: str, base: CodebookSpec) -> CodebookParts:
    try:
        return split_codebook_text(block, base.scale_min, base.scale_max)
    except CodebookParseError as exc:
        raise BadAnswer(f"the answer has no rubric: {exc}") from None


def instruction_answer(block: str, base: CodebookSpec) -> CodebookSpec:
    """``base`` with the instructions of a ``<codebook>`` block: the text before its rubric stays
    before the rubric, the text after it after; the rubric (lead-in, levels, notes) and the
    output format are ``base``'s, byte for byte."""
    skip = output_format_keys(base)
    try:
        parts = split_codebook_text(block, base.scale_min, base.scale_max)
    except CodebookParseError:  # no rubric written back: the whole block is the instructions
        before = "\n\n".join(p for p in paragraphs(block) if _norm(p) not in skip)
        after_parts: list[str] = []
    else:
        before = parts.before
        if parts.intro and _norm(parts.intro) != _norm(base.rubric_intro):
            before = f"{before}\n\n{parts.intro}".strip()  # written inside the rubric's lead-in
        skip |= {_norm(p) for p in paragraphs(base.rubric_notes)}
        after_parts = [p for p in parts.after if _norm(p) not in skip]
    after = "\n\n".join(after_parts)
    if not before.strip():  # the rubric first: the instructions it wrote after it are all there are
        before, after = after, ""
    if not before.strip():
        raise BadAnswer("the <codebook> section has no instructions")
    before, after = _kept(before, base.instructions), _kept(after, base.instructions_after)
    if before == base.instructions and after == base.instructions_after:
        raise BadAnswer("the answer leaves the instructions unchanged")
    return CodebookSpec.model_validate({**base.model_dump(), "instructions": before, "instructions_after": after})


def parse_full_rubric(block: str, base: CodebookSpec, what: str = "the rubric") -> CodebookSpec:
    """A ``<codebook>`` block parsed against ``base``; refused unless it rates every level."""
    try:
        parsed = parse_codebook_text(block, base.scale_min, base.scale_max, base)
    except CodebookParseError as exc:
        raise BadAnswer(f"the answer has no rubric: {exc}") from None
    missing = [lv for lv in base.levels if parsed.level_text(lv) is None]
    if missing:
        raise BadAnswer(f"{what} lacks level(s) {', '.join(map(str, missing))}")
    return parsed


def rubric_answer(block: str, base: CodebookSpec) -> CodebookSpec:
    """``base`` with the rubric of a ``<codebook>`` block: its levels, the lead-in between its
    rating-scale header and the first level, and its notes after the levels. The instructions
    (before and after the rubric) and the output format are ``base``'s, byte for byte, and so is
    every part of the rubric the answer only re-spaced."""
    parts = _answer_parts(block, base)
    written = {lv.level: lv.text for lv in parts.rubric}
    missing = [lv for lv in base.levels if lv not in written]
    if missing:
        raise BadAnswer(f"the rubric lacks level(s) {', '.join(map(str, missing))}")
    echoes = output_format_keys(base) | {_norm(p) for p in paragraphs(base.instructions)
                                         + paragraphs(base.instructions_after)}
    levels = [{"level": lv, "text": _kept(text, base.level_text(lv) or "")} for lv, text in sorted(written.items())]
    intro = _kept(parts.intro, base.rubric_intro)
    notes = _kept("\n\n".join(p for p in parts.after if _norm(p) not in echoes), base.rubric_notes)
    if levels == base.rubric_json() and intro == base.rubric_intro and notes == base.rubric_notes:
        raise BadAnswer("the answer leaves the rubric unchanged")
    return CodebookSpec.model_validate({**base.model_dump(), "rubric": levels, "rubric_intro": intro,
                                        "rubric_notes": notes})


@dataclass
class StepResult:
    """One refinement step: the codebook it produced and what went into it."""

    spec: CodebookSpec
    prompt: str
    prefill: str | None
    attempts: list[Attempt]
    inputs: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {**self.inputs, "prompt": self.prompt, "prefill": self.prefill,
                "answer": self.attempts[-1].text if self.attempts else None,
                "attempts": [a.to_dict(2000) for a in self.attempts]}


def _prefill(engine: Engine, use: bool, text: str) -> str | None:
    return text if use and supports_prefill(engine) else None


def refine_instructions(engine: Engine, base: CodebookSpec, traces: dict[int, list[TraceRow]], *,
                        params: SamplingParams, attempts: int = 3, prefill: bool = True,
                        max_chars: int | None = None, log: Callable[[str], None] | None = None) -> StepResult:
    """New instructions from N_inst traces per level; the rubric is kept."""
    chosen = [t for level in sorted(traces) for t in traces[level]]
    if not chosen:
        raise ValueError("instruction refinement needs at least one trace")
    prompt = prompts.instruction_prompt(base, [(t.level, t.text) for t in chosen], max_chars)
    start = _prefill(engine, prefill, prompts.instruction_prefill(base))
    spec, tried = ask(engine, prompt, lambda block: instruction_answer(block, base),
                      step="instruction refinement", params=params, attempts=attempts, prefill=start, log=log)
    inputs = {"trace_ids": [t.candidate_id for t in chosen], "item_ids": [t.item_id for t in chosen],
              "per_level": {str(lv): len(ts) for lv, ts in sorted(traces.items())}}
    return StepResult(spec, prompt, start, tried, inputs)


def refine_rubric(engine: Engine, base: CodebookSpec, critiques: Sequence[tuple[int, str]], *,
                  params: SamplingParams, attempts: int = 3, prefill: bool = True,
                  log: Callable[[str], None] | None = None) -> StepResult:
    """A new rubric from representative critiques; the instructions are kept."""
    if not critiques:
        raise ValueError("rubric refinement needs at least one critique")
    prompt = prompts.rubric_prompt(base, critiques)
    start = _prefill(engine, prefill, prompts.rubric_prefill(base))
    # a cut-off answer may keep its finished paragraphs: rubric_answer checks every level is there
    spec, tried = ask(engine, prompt, lambda block: rubric_answer(block, base), step="rubric refinement",
                      params=params, attempts=attempts, prefill=start, whole_paragraphs=True, log=log)
    return StepResult(spec, prompt, start, tried, {})


def write_refined_version(session: Session, project_id: int, base_row: Codebook, spec: CodebookSpec, *,
                          origin: str, inputs: dict[str, Any], author: str | None = None,
                          note: str | None = None, make_current: bool = False) -> Codebook:
    """Store the refined codebook as a new version whose parent is ``base_row``."""
    record = dict(inputs)
    if spec.sources:
        record.setdefault("sources", list(spec.sources))
    return create_version(session, project_id, spec, parent_id=base_row.id, origin=origin,
                          author=author or "refinement", note=note, inputs=record, make_current=make_current)
