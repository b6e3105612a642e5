"""The three refinement prompts of the paper, verbatim (Zhang et al., Appendix D), and how they
are filled.

Placeholders are filled in one pass over the template, so braces or tags inside a codebook, a
trace or a critique are inserted literally and never re-read as placeholders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from judgeeye.codebook import CodebookSpec, render_codebook

INSTRUCTION_PROMPT = """<instruction>
You will be given a list of analysis on scoring the {dimension} of {generation_type}. Your
task is to extract a concrete and concise step-by-step instruction from the analysis that could
be easily followed by an annotator without any training. Based on your extraction, improve the
original annotation guidelines (<original_codebook>...</original_codebook>). Only improve the
instruction part (e.g. thinking path to follow), do not change the rubric part (e.g. criteria). Your
final annotation guidelines should be put into <codebook>...</codebook> tag.
</instruction>

<original_codebook>
{original_codebook}
</original_codebook>

<analysis>
{analysis}
</analysis>"""

CRITIQUE_PROMPT = """<instruction>
You will be given an analysis on scoring the {dimension} of a {generation_type}. Your task is to
list all the critique from the analysis that help evaluate the {dimension} of the {generation_type}.
Your response should be a list of sentences, each on a new line, without bullet points. Your response
should not include any other text.
</instruction>

<analysis>
{cot}
</analysis>"""

RUBRIC_PROMPT = """<instruction>
You will be shown a list of diverse critiques on the {dimension} of {generation_type}. Each of
the critique is corresponding to a specific rating level. Your task is to summarize the critiques into a
single rubric, based on the pattern of the different rating levels. Based on the new criteria, improve
the original annotation guidelines. Only modify the criterion part. Your final annotation guidelines
should be put into <codebook>...</codebook> tag.
</instruction>

<original_codebook>
{original_codebook}
</original_codebook>

<critiques>
{critiques}
</critiques>"""

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def fill(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{name}`` placeholders in one pass; every placeholder must have a value."""
    missing = sorted({m for m in _PLACEHOLDER.findall(template) if m not in values})
    if missing:
        raise KeyError(f"no value for placeholder(s) {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def _clip(text: str, max_chars: int | None) -> str:
    if max_chars is None or len(text) <= max_chars:
        return text
    return text[:max_chars].rstrip() + " …"


def format_analysis(traces: Sequence[tuple[int, str]], max_chars: int | None = None) -> str:
    """The instruction prompt's ``{analysis}``: each trace headed by its rating level."""
    return "\n\n".join(f"Analysis {i} (rating {level}):\n{_clip(text.strip(), max_chars)}"
                       for i, (level, text) in enumerate(traces, 1))


def format_critiques(critiques: Sequence[tuple[int, str]]) -> str:
    """The rubric prompt's ``{critiques}``: one critique per line with its rating level."""
    return "\n".join(f"Rating {level}: {' '.join(text.split())}" for level, text in critiques)


def instruction_prompt(spec: CodebookSpec, traces: Sequence[tuple[int, str]], max_chars: int | None = None) -> str:
    return fill(INSTRUCTION_PROMPT, {
        "dimension": spec.dimension, "generation_type": spec.generation_type,
        "original_codebook": render_codebook(spec), "analysis": format_analysis(traces, max_chars)})


def critique_prompt(spec: CodebookSpec, trace: str, max_chars: int | None = None) -> str:
    return fill(CRITIQUE_PROMPT, {"dimension": spec.dimension, "generation_type": spec.generation_type,
                                  "cot": _clip(trace.strip(), max_chars)})


def rubric_prompt(spec: CodebookSpec, critiques: Sequence[tuple[int, str]]) -> str:
    return fill(RUBRIC_PROMPT, {
        "dimension": spec.dimension, "generation_type": spec.generation_type,
        "original_codebook": render_codebook(spec), "critiques": format_critiques(critiques)})


# ------------------------------------------------------------------ assistant prefills
# Engines that can continue an assistant turn (local models) are started inside the answer's
# format, so that even a small model writes a parsable <codebook>. API engines get no prefill.

def instruction_prefill(spec: CodebookSpec) -> str:
    return "<codebook>\n"


def rubric_prefill(spec: CodebookSpec) -> str:
    """The rating scale opened at its first level (only the rubric of the answer is kept)."""
    first = spec.levels[0] if spec.rubric else spec.scale_min
    return f"<codebook>\nRating scale:\n{first}:"
