"""Ratings in completions: reasoning/answer split, the final rating, traces, score distributions.

Rejection sampling keeps a trace only when its rating equals the human label, so reading the
rating wrongly silently corrupts the training data. The rules here are therefore strict:

* the rating is the **last** rating statement of the answer (a rater may weigh "a 3 or a 4"
  before deciding), in one of the two formats the codebook asks for
  (``<rating>N</rating>``, or ``Rating: N`` at the start of a line);
* it must be an integer on the codebook's scale: ``3.5`` or ``7`` on a 1-5 scale is a parse
  failure with a reason, never rounded or clamped;
* an answer that revises its rating after the statement ("Rating: 4 ... I'd lower it to 3") or
  writes two numbers in it ("Rating: 2 3") is *ambiguous*, a failure, never one of its numbers;
* a rating statement copied from the prompt (an item that happens to contain
  ``<rating>5</rating>``, a rubric line quoted back) is an echo, not the rater's decision;
* nothing here raises on a malformed completion: failures come back as ``ok=False`` + ``error``.

No heavy imports: this module runs in the sampler, the review pages and the tests alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "RatingParse",
    "answer_cue",
    "argmax_score",
    "expected_score",
    "normalise",
    "parse_rating",
    "remove_rating_mentions",
    "split_reasoning",
    "strip_final_rating",
    "trace_text",
]

# =========================================================================== reasoning / answer
_THINK_OPEN = re.compile(r"<think>", re.I)
_THINK_CLOSE = re.compile(r"</think>", re.I)
_THINK_BLOCK = re.compile(r"<think>(.*?)(?:</think>|\Z)", re.I | re.S)


def _split_think_tags(text: str) -> tuple[str, str]:
    """(reasoning, answer) from ``<think>`` blocks in ``text``; ("", text) when there are none."""
    first_open = _THINK_OPEN.search(text)
    first_close = _THINK_CLOSE.search(text)
    if first_open is None and first_close is None:
        return "", text.strip()
    if first_close is not None and (first_open is None or first_close.start() < first_open.start()):
        # DeepSeek-R1 style: the chat template already opened <think>, only the close is generated.
        text = "<think>" + text
    reasoning_parts: list[str] = []
    answer_parts: list[str] = []
    pos = 0
    for m in _THINK_BLOCK.finditer(text):
        answer_parts.append(text[pos:m.start()])
        reasoning_parts.append(m.group(1))
        pos = m.end()
    answer_parts.append(text[pos:])
    reasoning = "\n\n".join(p.strip() for p in reasoning_parts if p.strip())
    answer = "\n\n".join(p.strip() for p in answer_parts if p.strip())
    return reasoning, answer


def split_reasoning(text: str, reasoning: str | None = None) -> tuple[str, str]:
    """Split a completion into ``(reasoning, answer)``, both stripped.

    Servers differ in where the thinking goes, and the trace we keep must be the thinking, not the
    verdict: a separate ``reasoning`` field (OpenAI-compatible ``message.reasoning`` /
    ``reasoning_content``) wins and ``text`` is the answer; otherwise ``<think>…</think>`` is
    taken from the text, including text with only a closing ``</think>`` (the template opened
    it) and an unclosed ``<think>`` (a truncated trace: all reasoning, empty answer). No tags: no
    reasoning, the whole text is the answer.
    """
    text = text or ""
    tag_reasoning, answer = _split_think_tags(text)
    if reasoning is not None and reasoning.strip():
        # Stray think blocks left in the content still belong to the reasoning, not the answer.
        parts = [reasoning.strip()] + ([tag_reasoning] if tag_reasoning else [])
        return "\n\n".join(parts), answer
    return tag_reasoning, answer


# =========================================================================== parsing the rating
@dataclass(frozen=True)
class RatingParse:
    """The final rating of an answer, or why there is none.

    ``start``/``end`` locate the final rating statement in the answer (also when it was invalid,
    so it can be shown or stripped); ``format`` is ``"tag"`` (``<rating>N</rating>``) or
    ``"label"`` (``Rating: N``), None when no statement was found. An ambiguous answer is a
    failure (``ok=False``, ``error`` starting with "ambiguous"), never one of its numbers.
    """

    value: int | None
    ok: bool
    error: str | None = None
    start: int | None = None
    end: int | None = None
    format: str | None = None
    #: the answer states more than one rating at its end: two numbers in the final statement
    #: ("Rating: 2 3") or a different rating after it ("Rating: 4 ... I'd lower it to 3")
    ambiguous: bool = False


_B = r"(?:\*\*|__)"  # markdown bold
_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}
_NUMBER_WORDS_LIST = list(_NUMBER_WORDS)
_MINUS = "\u2212"

# Parsing is linear in the answer's length (an answer is model output: it may be anything). The
# patterns use possessive quantifiers (``*+``, ``?+``; Python 3.11+), so a run of spaces is never
# re-split between neighbouring ``[ \t]*`` (the old tag pattern backtracked catastrophically:
# ``"Rating:" + " " * 1000 + "x"`` took minutes). A tag statement is found from its ``<rating>``
# (a literal search), its body and close are matched forward, and its optional label
# ("Final rating:", bold, spaces) backward over a bounded window, by a reversed pattern.

# "<rating>N</rating>", optionally bold, optionally led by "Final rating:" (part of the statement,
# so stripping the statement removes the label too), optionally followed by a full stop.
_TAG_OPEN = re.compile("<rating>", re.I)
_TAG_REST = re.compile(
    rf"<rating>(?P<body>[^<>]{{0,80}}?)</rating>(?:[ \t]*+{_B})?+(?:[ \t]*+\.(?!\d))?+", re.I
)
#: What may precede ``<rating>`` as part of its statement, read backwards from the tag:
#: ``(?<![\w*])**(my|the) (final|overall) (rating|score|grade|answer|verdict)** : **\n **`` reversed.
_TAG_LEAD_REVERSED = re.compile(
    rf"""
    [ \t]*+{_B}?+
    (?:[ \t]*+\n?+[ \t]*+{_B}?+[ \t]*+[:=][ \t]*+{_B}?+
       (?:gnitar|erocs|edarg|rewsna|tcidrev)
       (?:\s++(?:lanif|llarevo))?(?:\s++(?:ym|eht))?{_B}?
       (?![\w*])
    )?+
    """,
    re.I | re.X,
)
#: Characters before ``<rating>`` searched for its label.
_TAG_LEAD_WINDOW = 160

# "Rating: N", "Final rating: N", "**Rating:** N", "- Overall score (1-5): N/5" at a line start.
# ``more``: a second number right after the first ("Rating: 2 3") makes the statement ambiguous.
_LABEL_STATEMENT = re.compile(
    rf"""
    ^[ \t]*+(?:[-*+>][ \t]++|\#{{1,6}}+[ \t]*+)?+
    {_B}?+[ \t]*+(?:(?:my|the)[ \t]++)?+(?:(?:final|overall)[ \t]++)?+(?:rating|score)
    (?:[ \t]*+\([^)\n]{{0,30}}+\))?+
    [ \t]*+{_B}?+[ \t]*+[:=][ \t]*+{_B}?+[ \t]*+
    (?P<num>[-+{_MINUS}]?+\d++(?:[.,]\d++)?+)
    (?:[ \t]*+(?:/|out[ \t]++of)[ \t]*+(?P<den>\d++))?+
    (?P<range>[ \t]*+(?:-|–|—|to|or)[ \t]*+\d++)?+
    (?P<more>[ \t]*+[,;&]?+[ \t]*+\d++)?+
    (?:[ \t]*+{_B})?+(?:[ \t]*+\.(?!\d))?+
    """,
    re.I | re.M | re.X,
)

_LABEL_WORD = re.compile("rating|score", re.I)

_INT = re.compile(rf"^[-+{_MINUS}]?\d+$")
_DECIMAL = re.compile(rf"^[-+{_MINUS}]?\d+[.,]\d+$")
_FRACTION = re.compile(rf"^(?P<num>[-+{_MINUS}]?\d+)\s*(?:/|out\s+of)\s*(?P<den>\d+)$", re.I)
_RANGE = re.compile(r"^\d+\s*(?:-|–|—|to|or|and)\s*\d+$", re.I)

#: Context (non-space characters) on either side of a rating statement that must also occur in
#: the prompt for the statement to count as copied from it.
_ECHO_CONTEXT = 20
#: Non-space characters besides the statement that make its line distinctive enough to compare.
_ECHO_LINE_EXTRA = 4
#: Characters of a statement's line on either side that are compared with the prompt.
_ECHO_LINE_MAX = 1000


@dataclass(frozen=True)
class _Statement:
    start: int
    end: int
    format: str
    value: int | None
    error: str | None
    den: str | None
    ambiguous: bool = False


def _safe_int(digits: str) -> int | None:
    """int() that refuses absurd lengths (Python limits int(str) to 4300 digits)."""
    digits = digits.replace(_MINUS, "-")
    if len(digits.lstrip("+-")) > 18:
        return None
    return int(digits)


def _shown(text: str, limit: int = 40) -> str:
    """Text for an error message: whitespace collapsed, cut (an answer may be adversarial)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _read_number(raw: str, rng: str | None = None) -> tuple[int | None, str | None]:
    """Interpret the number of a rating statement: (value, None) or (None, why it is not one)."""
    shown = raw.strip()
    if rng:
        return None, f"rating '{_shown(shown + rng)}' is not a single integer"
    if _DECIMAL.match(shown):
        whole, frac = re.split(r"[.,]", shown, maxsplit=1)
        if frac.strip("0"):
            return None, f"rating {shown} is not an integer"
        shown = whole  # "4.0" is the integer 4
    value = _safe_int(shown)
    if value is None:
        return None, f"rating {shown[:20]}... is not a plausible rating"
    return value, None


def _tag_body(body: str) -> tuple[bool, int | None, str | None, str | None]:
    """(is a rating, value, error, denominator) for the text inside ``<rating>…</rating>``.

    A body with no digit at all (``N``, ``your rating``) is a placeholder from the instructions,
    not a rating statement.
    """
    text = body.strip().strip("*_ \t").strip()
    text = re.sub(r"\s*\.$", "", text).strip("*_ \t").strip()
    if text.lower() in _NUMBER_WORDS:
        return True, None, f"rating '{text}' is not written as an integer", None
    if not re.search(r"\d", text):
        return False, None, None, None
    if _INT.match(text) or _DECIMAL.match(text):
        value, error = _read_number(text)
        return True, value, error, None
    m = _FRACTION.match(text)
    if m:
        value, error = _read_number(m.group("num"))
        return True, value, error, m.group("den")
    if _RANGE.match(text):
        return True, None, f"rating '{text}' is not a single integer", None
    shown = body.strip()[:40]
    return True, None, f"could not read an integer rating from <rating>{shown}</rating>", None


def _tag_statement(answer: str, m: re.Match[str]) -> _Statement | None:
    """The tag statement matched by ``_TAG_REST`` at ``m``, or None for a placeholder body."""
    is_rating, value, error, den = _tag_body(m.group("body"))
    if not is_rating:
        return None
    window = answer[max(0, m.start() - _TAG_LEAD_WINDOW): m.start()][::-1]
    lead = _TAG_LEAD_REVERSED.match(window)
    return _Statement(m.start() - (lead.end() if lead else 0), m.end(), "tag", value, error, den)


def _label_statement(m: re.Match[str]) -> _Statement:
    if m.group("more") and not m.group("range"):
        error = f"ambiguous rating: '{_shown(m.group('num') + m.group('more'))}' is not a single integer"
        return _Statement(m.start(), m.end(), "label", None, error, m.group("den"), ambiguous=True)
    value, error = _read_number(m.group("num"), m.group("range"))
    return _Statement(m.start(), m.end(), "label", value, error, m.group("den"))


def _statement_matches(answer: str) -> list[tuple[int, str, re.Match[str]]]:
    """(position, format, match) of every candidate rating statement, in order of position; read
    lazily by :func:`_statements` (an answer may hold thousands of them)."""
    found: list[tuple[int, str, re.Match[str]]] = []
    for opening in _TAG_OPEN.finditer(answer):
        m = _TAG_REST.match(answer, opening.start())
        if m is not None:
            found.append((m.start(), "tag", m))
    # A label statement needs "rating" or "score" on its line: try the pattern only at the start of
    # such lines (trying it at every line start is slow on an answer of empty lines).
    line_start, scanned, tried = 0, 0, -1
    for word in _LABEL_WORD.finditer(answer):
        newline = answer.rfind("\n", scanned, word.start())
        if newline != -1:
            line_start = newline + 1
        scanned = word.start()
        if line_start != tried:
            tried = line_start
            m = _LABEL_STATEMENT.match(answer, line_start)
            if m is not None:
                found.append((m.start(), "label", m))
    found.sort(key=lambda t: t[0])
    return found


def _statements(answer: str, *, reverse: bool = False) -> Iterator[_Statement]:
    """Every rating statement in the answer, in order of position (or from the last)."""
    matches = _statement_matches(answer)
    for _, fmt, m in reversed(matches) if reverse else matches:
        st = _tag_statement(answer, m) if fmt == "tag" else _label_statement(m)
        if st is not None:
            yield st


def _norm(text: str) -> str:
    return " ".join(text.split())


def _nonspace(text: str) -> int:
    return sum(1 for c in text if not c.isspace())


_QUOTE_MARKERS = "\"'“”‘’>*-•` \t"


def _unquote(text: str) -> str:
    """Text with markdown block-quote markers removed from its line starts (a quoted copy)."""
    return re.sub(r"(?m)^[ \t]*>[ \t]?", "", text)


def _is_echo(answer: str, start: int, end: int, prompt_norm: str) -> bool:
    """Whether the statement at ``answer[start:end]`` is copied from the prompt.

    It is when the statement itself occurs in the prompt and so does distinctive context around it:
    its whole line (quote/bullet markers aside) when the line has more than the statement, or
    ``_ECHO_CONTEXT`` non-space characters before or after it. A bare ``<rating>5</rating>`` line
    is never an echo by itself: that is how raters answer.
    """
    statement = _norm(answer[start:end])
    if not statement or statement not in prompt_norm:
        return False
    # the line, or at most _ECHO_LINE_MAX characters of it on either side (bounded work per statement)
    low, high = max(0, start - _ECHO_LINE_MAX), min(len(answer), end + _ECHO_LINE_MAX)
    line_start = answer.rfind("\n", low, start)
    line_start = low if line_start == -1 else line_start + 1
    line_end = answer.find("\n", end, high)
    line_end = high if line_end == -1 else line_end
    outside = (answer[line_start:start] + answer[end:line_end]).strip(_QUOTE_MARKERS)
    if _nonspace(outside) >= _ECHO_LINE_EXTRA:
        line = answer[line_start:line_end].strip(_QUOTE_MARKERS)
        if _norm(line) in prompt_norm:
            return True
    # context before the statement (may cross lines)
    i, seen = start, 0
    while i > 0 and seen < _ECHO_CONTEXT:
        i -= 1
        seen += not answer[i].isspace()
    if seen >= _ECHO_CONTEXT and _norm(_unquote(answer[i:end])) in prompt_norm:
        return True
    # context after it
    j, seen = end, 0
    while j < len(answer) and seen < _ECHO_CONTEXT:
        seen += not answer[j].isspace()
        j += 1
    return seen >= _ECHO_CONTEXT and _norm(_unquote(answer[start:j])) in prompt_norm


#: Echoed statements skipped from the end before giving up (each check reads the prompt once).
_MAX_ECHOES = 100


def _final_statement(answer: str, prompt_norm: str) -> tuple[_Statement | None, int]:
    """The last rating statement that is not an echo of the prompt, and how many were skipped."""
    skipped = 0
    for st in _statements(answer, reverse=True):
        if prompt_norm and _is_echo(answer, st.start, st.end, prompt_norm):
            skipped += 1
            if skipped >= _MAX_ECHOES:
                break
            continue
        return st, skipped
    return None, skipped


# A rating revised after the final statement: "I'd lower it to 3", "bump it up to a 5",
# "Actually, 3.", "on reflection ... 3" (the number within the same sentence as the cue).
_REVISE = re.compile(
    r"\b(?:lower|rais|bump|drop|mov|chang|revis|adjust|increas|decreas|reduc|downgrad|upgrad|switch"
    r"|amend|correct)\w*+(?:\s++(?!to\b)\w++){0,3}?\s++(?:(?:down|up|back)\s++)?(?:to|at)\s++"
    rf"(?:(?:a|an)\s++)?{_B}?+(?P<n>\d++(?:\.\d++)?+|{'|'.join(_NUMBER_WORDS_LIST)})(?![\w%])",
    re.I,
)
_REVISE_CUE = re.compile(
    r"\b(?:actually|on\s++(?:second\s++thought|(?:further\s++)?reflection)|correction|i\s++mean)\b"
    r"[^.!?\n\d]{0,60}+(?<![\w./-])(?P<n>\d++(?:\.\d++)?+)(?![\w%/])",
    re.I,
)
#: Characters after the final statement searched for a revised rating: the first ones and, of a
#: longer tail, the last ones (a bound that keeps parsing fast on any answer).
_TAIL_HEAD, _TAIL_END = 2000, 1000


def _squeeze(text: str) -> str:
    """Whitespace runs collapsed (a line break wins), so the mention patterns stay linear."""
    text = re.sub(r"[^\S\n]++", " ", text)
    return re.sub(r" ?+\n\s*+", "\n", text)


def _number(raw: str) -> float | None:
    word = raw.lower()
    if word in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[word])
    try:
        return float(raw)
    except ValueError:
        return None


def _later_rating(answer: str, st: _Statement, scale_min: int, scale_max: int, prompt_norm: str) -> str | None:
    """Why the answer is ambiguous when, after its final statement, it states a different rating
    on the scale (a revision, or a rating discussed after the verdict); None when it does not.
    Mentions copied from the prompt do not count."""
    tail = answer[st.end:]
    if not tail.strip():
        return None
    windows = [tail[:_TAIL_HEAD]]
    if len(tail) > _TAIL_HEAD:
        windows.append(tail[max(_TAIL_HEAD, len(tail) - _TAIL_END):])
    patterns = [(m.pattern, m.kind) for m in _MENTIONS] + [(_REVISE, "revise"), (_REVISE_CUE, "cue")]
    for window in map(_squeeze, windows):
        for pattern, kind in patterns:
            for m in pattern.finditer(window):
                raw = m.groupdict().get("n")
                value = _number(raw) if raw else None
                if value is None or value == st.value or not scale_min <= value <= scale_max:
                    continue
                if kind == "fraction" and m.group("den") != str(scale_max):
                    continue
                if prompt_norm and _is_echo(window, m.start(), m.end(), prompt_norm):
                    continue
                return (f"ambiguous rating: '{_shown(m.group(0))}' after the final rating {st.value} "
                        "states another one")
    return None


def parse_rating(
    answer: str, scale_min: int, scale_max: int, *, prompt: str | None = None
) -> RatingParse:
    """The rater's final rating in ``answer``; never raises.

    Formats: ``<rating>N</rating>`` (spaces, ``**`` and a trailing ``.`` tolerated, optionally led
    by ``Final rating:``) and ``Rating: N`` / ``Final rating: N`` / ``**Rating:** N`` /
    ``Rating: N/5`` at the start of a line. The last statement wins; a non-integer, a range, a
    denominator other than ``scale_max`` or a value off the scale is a failure with the reason.
    With ``prompt``, statements copied from it (see :func:`_is_echo`) are skipped. Numbers in prose
    ("a scale of 1 to 5", "3 characters") are never read. The answer is *ambiguous* (a failure,
    ``ambiguous=True``) when the final statement holds two numbers ("Rating: 2 3") or the text after
    it states a different rating of the scale ("Actually, I'd lower it to 3", "closer to a 3"):
    the rating must be the answer's last word on the matter. Linear in the answer's length.
    """
    prompt_norm = _norm(prompt) if prompt else ""
    try:
        st, skipped = _final_statement(answer or "", prompt_norm)
    except Exception as exc:  # pragma: no cover - defensive: a parser must not kill a sampling run
        return RatingParse(None, False, f"could not parse the rating: {exc}")
    if st is None:
        error = "no rating found"
        if skipped:
            error += f" (ignored {skipped} rating statement(s) copied from the prompt)"
        return RatingParse(None, False, error)
    where = {"start": st.start, "end": st.end, "format": st.format}
    if st.value is None or st.error:
        return RatingParse(None, False, st.error, ambiguous=st.ambiguous, **where)
    if st.den is not None and st.den.lstrip("0") != str(scale_max):
        return RatingParse(
            None, False,
            f"rating {st.value}/{st.den} is not on the scale {scale_min}-{scale_max}", **where,
        )
    if not scale_min <= st.value <= scale_max:
        return RatingParse(
            None, False, f"rating {st.value} is outside the scale {scale_min}-{scale_max}", **where
        )
    later = _later_rating(answer, st, scale_min, scale_max, prompt_norm)
    if later is not None:
        return RatingParse(None, False, later, ambiguous=True, **where)
    return RatingParse(st.value, True, None, **where)


def strip_final_rating(answer: str, parse: RatingParse) -> str:
    """The answer without its final rating statement: the rationale, for training data and display
    (the rating itself is stored separately)."""
    answer = answer or ""
    if parse.start is None or parse.end is None:
        return answer.strip()
    before, after = answer[: parse.start], answer[parse.end:]
    head, tail = before.rstrip(), after.lstrip()
    if not head or not tail:
        return (head + tail).strip()
    gap = before[len(head):] + after[: len(after) - len(tail)]
    sep = "\n\n" if "\n" in gap else " "
    return f"{head}{sep}{tail}".strip()


def trace_text(reasoning: str, answer: str, parse: RatingParse | None) -> str:
    """The item's thinking trace: the reasoning when the model gave one, else the answer without
    its final rating statement (models without thinking tokens reason in the answer)."""
    if reasoning and reasoning.strip():
        return reasoning.strip()
    if parse is None:
        st, _ = _final_statement(answer or "", "")
        if st is None:
            return (answer or "").strip()
        parse = RatingParse(st.value, st.value is not None, st.error, st.start, st.end, st.format)
    return strip_final_rating(answer, parse)


# =========================================================================== post hoc explanations
_WORD = "|".join(_NUMBER_WORDS)
# A number used as a rating: digits (a decimal counts: "3.5" is still rating information) or,
# in explicit rating phrases only, a number word. It must not be glued to a word or range.
_RN = rf"(?P<n>[-+]?\d+(?:\.\d+)?|{_WORD})(?![\w%])(?!-\w)"
_RN_DIGITS = r"(?<![\w./-])(?P<n>\d+(?:\.\d+)?)(?![\w%])(?!-\w)"
# "/5", "out of 5", and ranges "3-4", "3 or 4" after the number
_RN_TAIL = (
    r"(?:\s*(?:/|out\s+of)\s*(?P<den>\d+))?"
    rf"(?:\s*(?:-|–|—|to|or)\s*(?:(?:a|an)\s+)?(?:\d+(?:\.\d+)?|{_WORD})(?![\w%]))?"
)
# A rating number is followed by punctuation, the end, or one of these words (so "rated 4 because"
# is a rating but "gives 3 characters" is not).
_FOLLOW = (
    r"(?=\s*(?:$|[.,;:!?)\]\"'”’*]|\s(?:out|of|on|for|in|by|stars?|points?|rating|score|grade|level"
    r"|because|since|as|but|and|or|than|rather|instead|overall|here|given|is|was|would|which|that"
    r"|this|from|with|due|seems|makes|feels|fits|reflects|indicates|means|if|though|although|while"
    r"|at|the)\b))"
)
_ADJ = (
    r"(?:(?:solid|clear|clearly|strong|firm|low|high|weak|borderline|generous|harsh|fair|perfect"
    r"|middling|modest|definite|possible|likely|respectable|decent|reasonable)\s+)"
)
_NOUN = r"(?:rating|score|grade|mark)"
_RATE_VERBS = r"rat(?:e|es|ed|ing)|scor(?:e|es|ed|ing)|grad(?:e|es|ed|ing)|mark(?:s|ed)?"
_OTHER_VERBS = (
    r"giv(?:e|es|en|ing)|gave|assign(?:s|ed|ing)?|award(?:s|ed|ing)?|deserv(?:e|es|ed|ing)"
    r"|merit(?:s|ed|ing)?|warrant(?:s|ed|ing)?|earn(?:s|ed|ing)?|get(?:s|ting)?|got"
    r"|receiv(?:e|es|ed|ing)|justif(?:y|ies|ied)|select(?:s|ed)?|choos(?:e|es|ing)|chose"
    r"|pick(?:s|ed)?|land(?:s|ed)?\s+(?:on|at)|settl(?:e|es|ed)\s+on"
)
_OBJ = (
    r"(?:\s+(?:it|this|that|them|him|her|the\s+\w+|this\s+\w+|that\s+\w+|its\s+\w+"
    r"|the\s+(?:subject|human|model|chatbot|news)\s+\w+))?"
)


@dataclass(frozen=True)
class _Mention:
    pattern: re.Pattern[str]
    kind: str


_MENTIONS: list[_Mention] = [
    # "Final rating: 4", "**Score:** 4/5", "Rating: <rating>4</rating>", "Verdict = 4"
    _Mention(re.compile(
        rf"{_B}?(?<!\w)(?:(?:my|the|our|a|an)\s+)?(?:(?:final|overall|proposed|suggested|predicted"
        rf"|assigned|human|gold)\s+)?(?:{_NOUN}|verdict|final\s+answer|final\s+label|judge?ment)"
        rf"(?:\s*\([^)\n]{{0,30}}\))?\s*{_B}?\s*[:=]\s*{_B}?\s*"
        rf"(?:{_B}?<rating>[^<>]{{0,80}}</rating>{_B}?|{_RN}{_RN_TAIL}{_B}?)",
        re.I), "statement"),
    # any <rating>…</rating> tag, and stray halves of one
    _Mention(re.compile(rf"{_B}?<rating>[^<>]{{0,80}}</rating>{_B}?|</?rating>", re.I), "tag"),
    # "a score of 4", "the rating of 3.5", "a final score of 4 out of 5"
    _Mention(re.compile(
        rf"\b(?P<det>(?:a|an|the|my|our|its|this|that)\s+)?{_ADJ}?(?:(?:final|overall|human|gold)\s+)?"
        rf"(?P<noun>{_NOUN}|level)\s+of\s+{_ADJ}?(?:(?:a|an)\s+)?{_RN}{_RN_TAIL}{_FOLLOW}",
        re.I), "of"),
    # "the rating is 4", "my score would be a 4", "the final grade should be 2"
    _Mention(re.compile(
        rf"\b(?P<subj>(?:(?:my|the|our|its|this|that|a|an)\s+)?(?:(?:final|overall|appropriate"
        rf"|correct|proposed|fair|human|gold|right)\s+)*(?P<noun>{_NOUN}|label))\s+"
        rf"(?P<link>is|was|would\s+be|should\s+be|will\s+be|could\s+be|must\s+be|=)\s+"
        rf"(?:(?:a|an)\s+)?{_ADJ}?{_RN}{_RN_TAIL}{_FOLLOW}",
        re.I), "link"),
    # "level 3", "score 4", "a rating 2 story", "Level-4"
    _Mention(re.compile(
        rf"\b(?P<det>(?:a|an|the)\s+)?(?P<noun>{_NOUN}|level|category|band|tier)[\s-]+{_RN}"
        rf"{_RN_TAIL}(?![\w-])",
        re.I), "noun"),
    # "I would rate it a 4", "rated 4/5", "deserves a solid 4", "give the story a score of 2"
    _Mention(re.compile(
        rf"\b(?P<verb>{_RATE_VERBS}|{_OTHER_VERBS}){_OBJ}\s+(?:(?:as|at)\s+)?(?:(?:a|an)\s+)?{_ADJ}?"
        rf"(?:{_NOUN}\s+(?:of\s+)?)?(?:(?:a|an)\s+)?{_RN}{_RN_TAIL}{_FOLLOW}",
        re.I), "verb"),
    # "4/5", "a 4 out of 5" (only with the scale's maximum as denominator)
    _Mention(re.compile(
        rf"\b(?P<det>(?:a|an)\s+)?{_RN_DIGITS}\s*(?:/|out\s+of)\s*(?P<den>\d+)(?![\d/.]\d)(?![\w])",
        re.I), "fraction"),
    # "a 4-star", "4 stars", "a 4 rating", "the 3-level description"
    _Mention(re.compile(
        rf"\b(?P<det>(?:a|an|the)\s+)?{_RN_DIGITS}(?:-|\s+)(?:stars?|{_NOUN}|level)\b", re.I),
        "unit"),
    # bare "a 4" / "a solid 4" where it is clearly a rating: "closer to a 4 than a 5", "not a 5."
    _Mention(re.compile(
        rf"\b(?P<det>(?:a|an)\s+){_ADJ}?{_RN_DIGITS}"
        r"(?=\s*(?:$|[.,;:!?)\]\"'”’]|\s+(?:than|rather|instead|because|since|as|but|and|or|for|on"
        r"|here|overall|given|seems|is|would|fits|makes|feels|at\s+best|at\s+most|at\s+least)\b))",
        re.I), "bare"),
]

_FILLER = set(
    """
    i i'd id i'm we we'd you it its it's this that these those the a an and or but so thus hence
    therefore overall final finally my our is was be been would should will could must would've
    rate rated rating ratings score scored scoring grade graded give gives given gave assign
    assigned award awarded deserve deserves deserved merit merits warrant warrants earn earns
    earned get gets got receive receives received accordingly justified justifies level as at
    of on to in for with given here my conclusion summary in-summary thereby which appropriate
    appropriately fitting best most clearly solid fair story response summary essay text item
    translation answer verdict label
    """.split()
)


def _in_scale_number(raw: str, label: int, scale_min: int, scale_max: int) -> bool:
    word = raw.lower()
    if word in _NUMBER_WORDS:
        value: float = _NUMBER_WORDS[word]
    else:
        try:
            value = float(raw)
        except ValueError:
            return False
    return value == label or scale_min <= value <= scale_max


def _replacement(m: re.Match[str], kind: str) -> str:
    """Readable text in place of a removed mention (empty for pure statements)."""
    if kind in {"statement", "tag"}:
        return ""
    if kind == "of":
        return f"this {m.group('noun').lower()}"
    if kind == "link":
        link = m.group("link").lower()
        verb = "was" if link == "was" else "is"
        return f"{m.group('subj')} {verb} justified"
    if kind == "noun":
        noun = m.group("noun").lower()
        return f"this {noun}"
    if kind == "verb":
        verb = m.group("verb")
        obj = m.group(0)[len(verb):]
        obj_m = re.match(_OBJ, obj, re.I)
        obj_text = obj_m.group(0) if obj_m else ""
        if re.fullmatch(_RATE_VERBS, verb, re.I):
            return f"{verb}{obj_text} accordingly"
        return f"{verb}{obj_text} this rating"
    before = m.string[: m.start()]
    if kind == "bare" and re.search(r"\bnot\s*$", before, re.I):
        return "at a different level"  # "it is not a 5 because" -> "it is not at a different level"
    if kind == "bare" and re.search(r"\b(?:is|was|be|being|seems|feels|remains)\s*$", before, re.I):
        return "at this level"  # "the essay is a solid 4" -> "the essay is at this level"
    return "this rating"


def _mask_sentence(sentence: str, label: int, scale_min: int, scale_max: int) -> tuple[str, int]:
    """The sentence with every rating mention replaced, and how many there were."""
    spans: list[tuple[int, int, str]] = []

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e, _ in spans)

    for mention in _MENTIONS:
        for m in mention.pattern.finditer(sentence):
            if not free(m.start(), m.end()) or m.end() == m.start():
                continue
            groups = m.groupdict()
            if groups.get("n") is not None and not _in_scale_number(
                groups["n"], label, scale_min, scale_max
            ):
                continue
            if mention.kind == "fraction" and groups.get("den") != str(scale_max):
                continue
            text = _replacement(m, mention.kind)
            if text and m.group(0)[:1].isupper():
                text = text[0].upper() + text[1:]
            spans.append((m.start(), m.end(), text))
    if not spans:
        return sentence, 0
    out, pos, seen = [], 0, 0
    for start, end, text in sorted(spans):
        if text.lower() in {"this rating", "at this level"}:
            seen += 1
            if seen > 1:  # "closer to a 4 than a 5" -> "closer to this rating than another rating"
                text = text.replace("this", "another")
        out.append(sentence[pos:start])
        out.append(text)
        pos = end
    out.append(sentence[pos:])
    return "".join(out), len(spans)


def _tidy(text: str) -> str:
    """Fix the spacing and punctuation a removal leaves behind."""
    text = re.sub(r"\*\*\s*\*\*|__\s*__", "", text)
    text = re.sub(r"\(\s*\)|\[\s*\]", "", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r"\s+([,.;:!?)])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    text = re.sub(r"[,;:]\s*([.!?])", r"\1", text)
    text = re.sub(r"^\s*[,;:.]\s*", "", text)
    return text.strip()


def _substantive(text: str) -> bool:
    """Whether a sentence still says something once its rating is gone (3+ content words)."""
    words = re.findall(r"[a-z][a-z'-]*", text.lower())
    return sum(1 for w in words if w not in _FILLER) >= 3


_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])(\s+)(?=\S)")


def remove_rating_mentions(text: str, label: int, scale_min: int, scale_max: int) -> str:
    """A post hoc explanation without explicit rating information (paper, Table 6).

    An explanation written *for* a known label must not simply state it, or the check that the
    remaining reasoning leads to the label is void. "Explicit" here means a number (the label, or
    any integer of the scale, in digits or as a word in rating phrases) used *as a rating*:
    ``<rating>`` tags; ``Rating: N`` / ``Final score: N/5`` statements; ``a score of N``,
    ``the rating is N``; ``level N`` / ``score N`` / ``category N``; verbs of rating
    (``I would rate it N``, ``rated N``, ``deserves a N``, ``give it a N``, ``earns a N``);
    ``N/5`` and ``N out of 5`` with the scale's maximum; ``N stars``, ``a N rating``; and a bare
    ``a N`` where it is clearly a rating (``closer to a 4 than a 5``, ``not a 5.``).

    A sentence that was only a verdict ("Therefore, I would rate it a 4.") is dropped; elsewhere the
    mention is replaced by neutral words ("deserves this rating", "rate it accordingly", "this
    level") so the explanation still reads. Numbers that are not ratings ("two characters",
    "3 paragraphs", "a scale of 1 to 5") stay, and so do rubric descriptions in words.
    """
    out_lines: list[str] = []
    for line in (text or "").replace("\r\n", "\n").split("\n"):
        if not line.strip():
            out_lines.append("")
            continue
        pieces = _SENTENCE_SPLIT.split(line)
        sentences = pieces[0::2]
        seps = pieces[1::2] + [""]
        kept: list[str] = []
        for sentence, sep in zip(sentences, seps, strict=True):
            masked, n = _mask_sentence(sentence, label, scale_min, scale_max)
            if n == 0:
                kept.append(sentence + sep)
            elif _substantive(masked):
                kept.append(_tidy(masked) + sep)
        new_line = "".join(kept).rstrip()
        if new_line.strip(" \t*_-#>•:"):
            out_lines.append(new_line)
    result = "\n".join(out_lines)
    result = re.sub(r"\n{3,}", "\n\n", result)
    return result.strip()


# =========================================================================== score distributions
def _level(key: str | int) -> int:
    if isinstance(key, bool):
        raise ValueError(f"not a rating level: {key!r}")
    if isinstance(key, int):
        return key
    text = str(key).strip()
    if not _INT.match(text):
        raise ValueError(f"not a rating level: {key!r}")
    return int(text.replace(_MINUS, "-"))


def normalise(
    dist: Mapping[str | int, float], levels: Iterable[int] | None = None
) -> dict[str, float]:
    """Probabilities over the rating levels summing to 1, keyed ``"1"``, ``"2"``, … ascending.

    A score read-out gives raw probabilities of the level tokens (the rest of the mass is on other
    tokens), so they are renormalised over the levels (TRACT). With ``levels``, those levels and
    only those are kept (missing ones get 0). Negative or non-finite values count as 0; a
    distribution with no mass raises ``ValueError``.
    """
    probs: dict[int, float] = {}
    for key, p in dist.items():
        level = _level(key)
        value = float(p)
        usable = value if math.isfinite(value) and value > 0 else 0.0
        probs[level] = probs.get(level, 0.0) + usable
    if levels is not None:
        wanted = sorted({int(lv) for lv in levels})
        probs = {lv: probs.get(lv, 0.0) for lv in wanted}
    total = sum(probs.values())
    if not probs or total <= 0:
        raise ValueError("the score distribution has no probability mass on any rating level")
    return {str(lv): probs[lv] / total for lv in sorted(probs)}


def expected_score(dist: Mapping[str | int, float]) -> float:
    """Σ p(y)·y over the levels (TRACT's CoT-RAIL): a finer rating than the argmax."""
    return sum(int(level) * p for level, p in normalise(dist).items())


def argmax_score(dist: Mapping[str | int, float]) -> int:
    """The most probable level (ties: the lowest, so the result is deterministic)."""
    norm = normalise(dist)
    best = max(norm.values())
    return min(int(level) for level, p in norm.items() if p == best)


# =========================================================================== answer cue
def answer_cue(output_format: str) -> str:
    """What to append after a trace so that the very next token is the rating (score read-outs).

    ``"<rating>"`` for the tag format (the default, and the fallback for formats that name
    neither), ``"Rating: "`` for the ``Rating: N`` label format (``"Score: "`` if the format only
    speaks of a score label).
    """
    text = output_format or ""
    if re.search(r"<rating>", text, re.I):
        return "<rating>"
    if re.search(r"\brating\s*(?:\([^)\n]{0,30}\))?\s*:", text, re.I):
        return "Rating: "
    if re.search(r"\bscore\s*(?:\([^)\n]{0,30}\))?\s*:", text, re.I):
        return "Score: "
    return "<rating>"
