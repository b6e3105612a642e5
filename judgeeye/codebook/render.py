"""Codebook <-> text: rater prompts, the plain-text codebook, and reading a codebook back.

``render_codebook`` gives the text that refinement prompts use as ``{original_codebook}``;
``parse_codebook_text`` reads an LLM's ``<codebook>...</codebook>`` answer back into a spec.
Item text is always inserted verbatim (never through ``str.format``), so braces, markup or a fake
``<rating>`` inside an item cannot change the prompt around it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from judgeeye.codebook.model import CodebookError, CodebookSpec, RubricLevel

RATING_SCALE_HEADER = "Rating scale:"
ITEM_INTRO = "Here is the item to rate."


class CodebookParseError(CodebookError, ValueError):
    """An LLM's codebook text could not be read back (e.g. it has no rubric levels)."""


# --------------------------------------------------------------------------- rendering
def render_rubric(spec: CodebookSpec) -> str:
    """The "Rating scale" section: a header, the rubric's lead-in, one ``N: text`` line per level,
    and (after a blank line, so it reads back as no level's text) the rubric's notes."""
    lines = [RATING_SCALE_HEADER]
    if spec.rubric_intro:
        lines.append(spec.rubric_intro)
    lines += [f"{lv.level}: {lv.text}" for lv in spec.rubric]
    rubric = "\n".join(lines)
    return f"{rubric}\n\n{spec.rubric_notes}" if spec.rubric_notes else rubric


def render_guidelines(spec: CodebookSpec) -> str:
    """Instructions, rating scale and the instructions after it, without the output format."""
    parts = [spec.instructions.strip(), render_rubric(spec)]
    if spec.instructions_after:
        parts.append(spec.instructions_after)
    return "\n\n".join(parts)


def render_codebook(spec: CodebookSpec) -> str:
    """The whole codebook as text: instructions, rating scale, output format."""
    return f"{render_guidelines(spec)}\n\n{spec.rendered_output_format()}"


def field_tag(name: str) -> str:
    """A field name made safe as a tag name: ``"Human story"`` -> ``human_story``."""
    tag = re.sub(r"[^a-z0-9_]+", "_", str(name).strip().lower())
    tag = re.sub(r"_+", "_", tag).strip("_")
    if not tag:
        return "field"
    if tag[0].isdigit():
        tag = f"field_{tag}"
    return tag


def _unique_tag(base: str, value: str, used: set[str]) -> str:
    """``base``, or a variant whose closing tag neither occurs in ``value`` nor is already used."""
    lowered = value.lower()
    tag, n = base, 1
    while tag in used or f"</{tag}>" in lowered:
        n += 1
        tag = f"{base}_{n}"
    used.add(tag)
    return tag


def render_item(fields: dict[str, object]) -> str:
    """The item's fields, each verbatim in a ``<tag>\\n...\\n</tag>`` block, in the given order."""
    used: set[str] = set()
    blocks = []
    for name, value in fields.items():
        text = "" if value is None else str(value)
        tag = _unique_tag(field_tag(name), text, used)
        blocks.append(f"<{tag}>\n{text}\n</{tag}>")
    return "\n\n".join(blocks)


def render_prompt_text(spec: CodebookSpec, fields: dict[str, object]) -> str:
    """The rater's prompt as one string: guidelines, the item, then the output format."""
    return "\n\n".join(
        [render_guidelines(spec), ITEM_INTRO, render_item(fields), spec.rendered_output_format()]
    )


def render_prompt(
    spec: CodebookSpec, fields: dict[str, object], *, system: str | None = None
) -> list[dict[str, str]]:
    """Chat messages for a rater: an optional system message and one user message."""
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": render_prompt_text(spec, fields)})
    return messages


# --------------------------------------------------------------------------- parsing
_CODEBOOK_BLOCK = re.compile(r"<codebook>(.*?)</codebook>", re.I | re.S)
_CODEBOOK_OPEN = re.compile(r"<codebook>", re.I)

# A rubric line: optional bullet / heading / bold, optional "Score" / "Rating" / "Level" [of],
# the number, an optional "(worst)"-style label, then a separator (. : ) - – — =).
_LEVEL_LINE = re.compile(
    r"""^\s*(?:[-*•+]\s+|\#{1,6}\s*)?
        (?:\*\*|__)?\s*
        (?:(?:score|rating|level|grade)s?\s*(?:of\s+)?)?
        [\[(]?\s*(?P<level>-?\d+)(?!\d|\.\d)\s*[\])]?
        (?:\s*(?:points?|pts)\b)?
        \s*(?P<label>\([^)\n]{1,40}\))?
        \s*(?:\*\*|__)?\s*
        (?:[.:)=]|\s[-–—]|[-–—]\s|\*\*(?=\s)|__(?=\s))
        \s*(?:\*\*|__)?\s*
        (?P<text>.*)$""",
    re.I | re.X,
)
_RUBRIC_HEADER = re.compile(
    r"^\W*(?:the\s+)?(?:rating\s+scale|rating\s+rubric|scoring\s+rubrics?|score\s+rubrics?|rubrics?"
    r"|scale|scoring\s+guide|score\s+levels?|rating\s+levels?|levels?)\W*$",
    re.I,
)
_RUBRIC_HINT = re.compile(r"\b(?:rating|score|scoring|rubric|scale|level|criteri)", re.I)


@dataclass
class _Level:
    line: int  # index of the level line
    end: int  # index after its last continuation line
    level: int
    text: str
    keyword: bool  # written as "Score 3" / "Level 3"


def _extract_codebook(text: str) -> str:
    blocks = _CODEBOOK_BLOCK.findall(text)
    if blocks:
        # The answer proper is the last complete block (earlier ones may be quoted in reasoning).
        return blocks[-1]
    opens = list(_CODEBOOK_OPEN.finditer(text))
    if opens:  # an unterminated block (answer cut off): take what follows the last opening tag
        return text[opens[-1].end():]
    return text


def _find_levels(lines: list[str], scale_min: int, scale_max: int) -> list[_Level]:
    found: list[_Level] = []
    i = 0
    while i < len(lines):
        m = _LEVEL_LINE.match(lines[i])
        if not m or not scale_min <= int(m.group("level")) <= scale_max:
            i += 1
            continue
        first = re.sub(r"\s*(?:\*\*|__)\s*$", "", m.group("text").strip())
        label = (m.group("label") or "").strip()
        head = f"{label} {first}".strip()
        parts = [head] if head else []
        j = i + 1
        while j < len(lines) and lines[j].strip():
            nxt = _LEVEL_LINE.match(lines[j])
            if nxt and scale_min <= int(nxt.group("level")) <= scale_max:
                break
            parts.append(lines[j].rstrip())
            j += 1
        if not head and j == i + 1:
            # "### Score 5" with the description after a blank line
            k = j
            while k < len(lines) and not lines[k].strip():
                k += 1
            while k < len(lines) and lines[k].strip() and not _LEVEL_LINE.match(lines[k]):
                parts.append(lines[k].rstrip())
                k += 1
            j = k
        text = "\n".join(parts).strip()
        keyword = bool(re.match(r"^\s*(?:[-*•+]\s+|#{1,6}\s*)?(?:\*\*|__)?\s*[a-z]", lines[i], re.I))
        if text:
            found.append(_Level(i, j, int(m.group("level")), text, keyword))
        i = j
    return found


def _runs(levels: list[_Level], lines: list[str]) -> list[list[_Level]]:
    """Group level lines into runs: only blank lines between them, levels strictly monotonic."""
    runs: list[list[_Level]] = []
    for lv in levels:
        if runs:
            run = runs[-1]
            prev = run[-1]
            gap_blank = all(not lines[k].strip() for k in range(prev.end, lv.line))
            direction = 0 if len(run) < 2 else (1 if run[1].level > run[0].level else -1)
            step = lv.level - prev.level
            monotonic = step != 0 and (direction == 0 or (step > 0) == (direction > 0))
            if gap_blank and monotonic and lv.level not in {x.level for x in run}:
                run.append(lv)
                continue
        runs.append([lv])
    return runs


def _header_before(run: list[_Level], lines: list[str]) -> tuple[int | None, bool]:
    """Index of the nearest non-blank line before the run, and whether it talks about rating."""
    k = run[0].line - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    if k < 0:
        return None, False
    return k, bool(_RUBRIC_HINT.search(lines[k]))


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, stripped, empty ones dropped."""
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


@dataclass
class CodebookParts:
    """A codebook text cut where it was written: what precedes the rubric, the rubric's lead-in
    (between a rating-scale header and the first level), the levels, and the paragraphs after
    the last level, each as written (nothing moved, nothing merged)."""

    before: str
    intro: str
    rubric: list[RubricLevel]
    after: list[str]


#: paragraphs back from the first level where a rating-scale header may start the rubric's lead-in
_INTRO_REACH = 3


def _rubric_start(lines: list[str], first: int) -> tuple[int, int]:
    """(index where the rubric section starts, index where its lead-in starts) for a rubric whose
    first level is on line ``first``: a generic header line ("Rating scale:") at most a few
    paragraphs above opens the section, and the lines between it and the first level are the
    lead-in; without one the section starts at the first level."""
    seen, inside = 0, False
    for k in range(first - 1, -1, -1):
        line = lines[k].strip()
        if not line:
            seen += inside
            inside = False
            if seen >= _INTRO_REACH:
                break
            continue
        inside = True
        if _RUBRIC_HEADER.match(line):
            return k, k + 1
    return first, first


def split_codebook_text(text: str, scale_min: int, scale_max: int) -> CodebookParts:
    """Cut an LLM's codebook answer (or a rendered codebook) into its parts.

    Rubric lines start with the level number (``1.``, ``1:``, ``- 1:``, ``Score 1:``,
    ``SCORE OF 6:``, ``**Level 1**:`` ...). The rubric is the longest run of consecutive level
    lines (ties: the one under a rating/score/rubric header, then the later one). A generic
    header just above it (e.g. ``Rating scale:``) is dropped, since rendering adds it back.

    Raises :class:`CodebookParseError` when no rubric levels are found.
    """
    body = _extract_codebook(text)
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    levels = _find_levels(lines, scale_min, scale_max)
    if not levels:
        raise CodebookParseError(
            f"no rubric levels found in the codebook text: expected lines starting with a level "
            f"number from {scale_min} to {scale_max} (e.g. '{scale_min}: ...', "
            f"'Score {scale_max}: ...')"
        )

    def rank(item: tuple[int, list[_Level]]) -> tuple[int, int, int, int]:
        index, run = item
        _, hinted = _header_before(run, lines)
        keyword = sum(lv.keyword for lv in run) == len(run)
        return (len(run), int(hinted or keyword), int(keyword), index)

    _, rubric_run = max(enumerate(_runs(levels, lines)), key=rank)
    first, end = rubric_run[0].line, rubric_run[-1].end
    start, intro_start = _rubric_start(lines, first)
    return CodebookParts(
        before="\n".join(lines[:start]).strip(),
        intro="\n".join(lines[intro_start:first]).strip(),
        rubric=[RubricLevel(level=lv.level, text=lv.text) for lv in rubric_run],
        after=paragraphs("\n".join(lines[end:])),
    )


def output_format_keys(spec: CodebookSpec) -> set[str]:
    """The output format as written and as rendered, normalised: an answer that repeats it."""
    return {_norm(spec.rendered_output_format()), _norm(spec.output_format)}


def parse_codebook_text(
    text: str, scale_min: int, scale_max: int, base: CodebookSpec
) -> CodebookSpec:
    """Read a whole codebook back from an LLM answer containing ``<codebook>...</codebook>``.

    Everything before the rubric is the instructions, the lines between a rating-scale header and
    the first level the rubric's lead-in, and the paragraphs after the levels the instructions
    after the rubric (a paragraph repeating ``base``'s output format is dropped, since rendering
    adds it back). Name, task, dimension, generation type, output format and sources come from
    ``base``. An answer that starts with its rubric has its instructions after it: they become
    the instructions (``base``'s when there are none).

    Raises :class:`CodebookParseError` when no rubric levels are found.
    """
    parts = split_codebook_text(text, scale_min, scale_max)
    drop = output_format_keys(base)
    after = "\n\n".join(p for p in parts.after if _norm(p) not in drop)
    if not parts.before:  # the rubric first: what follows it is all the instructions there are
        before, after = after or base.instructions, ""
    else:
        before = parts.before
    return CodebookSpec(
        name=base.name,
        task=base.task,
        dimension=base.dimension,
        generation_type=base.generation_type,
        scale_min=scale_min,
        scale_max=scale_max,
        instructions=before,
        rubric=parts.rubric,
        rubric_intro=parts.intro,
        instructions_after=after,
        output_format=base.output_format,
        sources=list(base.sources),
    )
