"""judgeeye.ratings: reasoning split, final-rating parsing (formats, anchoring, range, echoes),
trace text, removal of rating mentions from post hoc explanations, score distributions, cues."""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from judgeeye.codebook.model import DEFAULT_OUTPUT_FORMAT, CodebookSpec, RubricLevel
from judgeeye.codebook.render import render_prompt_text
from judgeeye.ratings import (
    RatingParse,
    answer_cue,
    argmax_score,
    expected_score,
    normalise,
    parse_rating,
    remove_rating_mentions,
    split_reasoning,
    strip_final_rating,
    trace_text,
)


def _spec(**kw: object) -> CodebookSpec:
    base: dict[str, object] = dict(
        name="hanna-coherence",
        task="story",
        dimension="coherence",
        scale_min=1,
        scale_max=5,
        instructions="Rate how coherent the story is.",
        rubric=[
            RubricLevel(level=1, text="Incoherent."),
            RubricLevel(level=3, text="Partly coherent."),
            RubricLevel(level=5, text="Fully coherent."),
        ],
    )
    base.update(kw)
    return CodebookSpec(**base)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ split_reasoning
def test_split_closed_think_block() -> None:
    text = "<think>\nThe plot is clear.\n</think>\n\nIt is coherent. <rating>4</rating>"
    assert split_reasoning(text) == ("The plot is clear.", "It is coherent. <rating>4</rating>")


def test_split_only_closing_tag_deepseek_template() -> None:
    # the chat template already opened <think>; the completion has only the closing tag
    text = "Okay, let's tackle this rating.\nThe story...\n</think>\n\n<rating>2</rating>"
    reasoning, answer = split_reasoning(text)
    assert reasoning == "Okay, let's tackle this rating.\nThe story..."
    assert answer == "<rating>2</rating>"


def test_split_unclosed_think_is_all_reasoning() -> None:
    reasoning, answer = split_reasoning("<think>\nFirst, the story is about a robot and")
    assert reasoning == "First, the story is about a robot and"
    assert answer == ""


def test_split_reasoning_field_wins() -> None:
    assert split_reasoning("  <rating>3</rating>\n", " I weighed it. ") == (
        "I weighed it.",
        "<rating>3</rating>",
    )
    # an empty reasoning field (server without a reasoning parser) falls back to the tags
    assert split_reasoning("<think>r</think>a", "") == ("r", "a")
    assert split_reasoning("<think>r</think>a", None) == ("r", "a")


def test_split_without_tags() -> None:
    assert split_reasoning("  Just an answer. <rating>5</rating> ") == (
        "",
        "Just an answer. <rating>5</rating>",
    )
    assert split_reasoning("") == ("", "")


def test_split_uppercase_and_multiple_blocks() -> None:
    reasoning, answer = split_reasoning("<THINK>a</THINK>middle<think>b</think>end")
    assert reasoning == "a\n\nb"
    assert answer == "middle\n\nend"


# ------------------------------------------------------------------------------ parse_rating: formats
@pytest.mark.parametrize(
    "answer, value, fmt",
    [
        ("It is coherent. <rating>4</rating>", 4, "tag"),
        ("It is coherent.\n<rating> 4 </rating>", 4, "tag"),
        ("It is coherent.\n**<rating>4</rating>**", 4, "tag"),
        ("It is coherent.\n<rating>**4**</rating>", 4, "tag"),
        ("It is coherent.\n<rating>4</rating>.", 4, "tag"),
        ("It is coherent.\n<rating>4.</rating>", 4, "tag"),
        ("It is coherent.\n<RATING>4</RATING>", 4, "tag"),
        ("It is coherent.\nFinal rating: <rating>4</rating>", 4, "tag"),
        ("It is coherent.\nRating: 4", 4, "label"),
        ("It is coherent.\nFinal rating: 4", 4, "label"),
        ("It is coherent.\n**Rating:** 4", 4, "label"),
        ("It is coherent.\n**Final Rating: 4**", 4, "label"),
        ("It is coherent.\nRating: 4/5", 4, "label"),
        ("It is coherent.\nRating: 4 out of 5", 4, "label"),
        ("It is coherent.\n- Rating: 4.", 4, "label"),
        ("It is coherent.\n## Final rating: 4", 4, "label"),
        ("It is coherent.\nOverall score (1-5): 4", 4, "label"),
        ("Rating: 1", 1, "label"),
        ("<rating>5</rating>", 5, "tag"),
        ("<rating>4.0</rating>", 4, "tag"),
    ],
)
def test_parse_formats(answer: str, value: int, fmt: str) -> None:
    parse = parse_rating(answer, 1, 5)
    assert parse == RatingParse(value, True, None, parse.start, parse.end, fmt)
    assert parse.start is not None and parse.end is not None
    assert str(value) in answer[parse.start : parse.end]


def test_last_occurrence_wins() -> None:
    answer = (
        "At first I thought <rating>2</rating> would fit, then Rating: 5 crossed my mind.\n"
        "Rating: 3\nOn reflection the ending ties things together.\n<rating>4</rating>"
    )
    assert parse_rating(answer, 1, 5).value == 4
    assert parse_rating("<rating>4</rating>\n\nRating: 2", 1, 5).value == 2


def test_last_statement_decides_even_when_invalid() -> None:
    parse = parse_rating("<rating>4</rating> ... actually <rating>3.5</rating>", 1, 5)
    assert not parse.ok and parse.value is None
    assert "3.5" in (parse.error or "") and "not an integer" in (parse.error or "")


@pytest.mark.parametrize(
    "answer, error",
    [
        ("Great story. <rating>7</rating>", "rating 7 is outside the scale 1-5"),
        ("Awful. <rating>0</rating>", "rating 0 is outside the scale 1-5"),
        ("Rating: 6", "rating 6 is outside the scale 1-5"),
        ("Rating: -2", "rating -2 is outside the scale 1-5"),
        ("Rating: 4/10", "rating 4/10 is not on the scale 1-5"),
    ],
)
def test_out_of_scale_is_a_failure_never_clamped(answer: str, error: str) -> None:
    parse = parse_rating(answer, 1, 5)
    assert parse.ok is False and parse.value is None
    assert parse.error == error
    assert parse.start is not None  # the statement is still located


@pytest.mark.parametrize(
    "answer", ["<rating>3.5</rating>", "Rating: 3.5", "<rating>2,5</rating>", "Final rating: 4.25"]
)
def test_non_integer_is_a_failure(answer: str) -> None:
    parse = parse_rating(answer, 1, 5)
    assert not parse.ok and parse.value is None
    assert "not an integer" in (parse.error or "")


@pytest.mark.parametrize("answer", ["<rating>3-4</rating>", "Rating: 3-4", "<rating>3 or 4</rating>"])
def test_range_is_a_failure(answer: str) -> None:
    parse = parse_rating(answer, 1, 5)
    assert not parse.ok and "not a single integer" in (parse.error or "")


def test_other_scales() -> None:
    assert parse_rating("<rating>0</rating>", 0, 6).value == 0
    assert parse_rating("Rating: 6/6", 0, 6).value == 6
    assert parse_rating("<rating>-2</rating>", -3, 3).value == -2
    assert parse_rating("<rating>10</rating>", 1, 10).value == 10
    assert not parse_rating("<rating>10</rating>", 1, 5).ok


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "I think this story is pretty good overall.",
        "On a scale of 1 to 5 the story has 3 characters and 2 settings; rated 4 by me.",
        "It deserves a 4, and the rubric level 4 fits. 4/5 overall.",  # prose, not the format
        "End with <rating>N</rating> where N is an integer from 1 to 5.",  # placeholder only
        "Rating scale:\n1: bad\n5: good",
        "The score is 4",
        "<rating></rating>",
    ],
)
def test_no_rating_found(answer: str) -> None:
    parse = parse_rating(answer, 1, 5)
    assert parse == RatingParse(None, False, "no rating found")


def test_numbers_in_prose_are_ignored() -> None:
    answer = (
        "The story has 3 characters across 5 paragraphs and 2 timelines; on a scale of 1 to 5 "
        "with 1 the worst, it is mostly coherent.\n<rating>4</rating>"
    )
    assert parse_rating(answer, 1, 5).value == 4


def test_number_word_in_tag_is_a_failure() -> None:
    parse = parse_rating("<rating>four</rating>", 1, 5)
    assert not parse.ok and "four" in (parse.error or "")


def test_label_must_start_the_line() -> None:
    assert not parse_rating("The human gave a Rating: 5 to a similar story.", 1, 5).ok


def test_never_raises_on_none_like_inputs() -> None:
    assert parse_rating(None, 1, 5).error == "no rating found"  # type: ignore[arg-type]
    assert parse_rating("Rating: " + "9" * 5000, 1, 5).ok is False


# ------------------------------------------------------------------------------ ambiguous answers
@pytest.mark.parametrize(
    "answer",
    [
        "Rating: 4\n\nActually, on reflection, I'd lower it to 3.",  # issue 15
        "Rating: 2 3",  # issue 15
        "Rating: 2, 3",
        "It is uneven.\n<rating>4</rating>\n\nOn second thought, 3.",
        "It is uneven.\nRating: 4\nI'd bump it up to a 5 because the ending lands.",
        "<rating>4</rating>\nHonestly it is closer to a 3 than a 4.",
        "Final rating: 2\nThough one could argue for a score of 3.",
    ],
)
def test_revised_or_two_numbers_is_ambiguous_not_a_number(answer: str) -> None:
    parse = parse_rating(answer, 1, 5)
    assert parse.ok is False and parse.value is None and parse.ambiguous
    assert (parse.error or "").startswith("ambiguous rating")
    assert parse.start is not None  # the final statement is still located


@pytest.mark.parametrize(
    "answer, value",
    [
        ("Rating: 4\n\nThe story has 3 paragraphs and 2 characters.", 4),  # numbers, not ratings
        ("Rating: 4\n\nSo I rate it a 4.", 4),  # the same rating again
        ("It is rich.\nRating: 4 (out of 5)", 4),
        ("It is rich.\nRating: 4/5\nThanks for reading!", 4),
        ("<rating>4</rating>\n\nOn a scale of 1 to 5, that is above the middle.", 4),
        ("I first thought a 3, then reread it.\n<rating>4</rating>", 4),  # weighing before deciding
    ],
)
def test_text_after_the_rating_without_another_rating_is_not_ambiguous(answer: str, value: int) -> None:
    parse = parse_rating(answer, 1, 5)
    assert parse.ok and parse.value == value and not parse.ambiguous


def test_a_quote_of_the_item_after_the_rating_is_not_a_revision() -> None:
    answer = f"<rating>2</rating>\n\nFor reference, the story was:\n> {ITEM}"
    # ITEM holds "<rating>5</rating>" and "walked by." after it: copied, neither final nor a revision
    assert parse_rating(answer + "\nA score of 3 would fit too.", 1, 5, prompt=_prompt()).ambiguous
    assert parse_rating(answer, 1, 5, prompt=_prompt()).value == 2


# ------------------------------------------------------------------------------ linear time
#: built in the child process: answers of 100,000 characters that made the old patterns backtrack
#: (a run of spaces after a label took 108 s at 1,000 spaces) or that stress every other path.
_ADVERSARIAL = r"""
N = 100_000
cases = {
    "label then spaces": "Rating:" + " " * N + "x",
    "tag label then spaces": "Final rating:" + " " * N + "<rating>x",
    "label then tabs": "Rating " + " \t" * N,
    "spaces then label": " " * N + "Rating: 4",
    "many tags": "<rating>3</rating>" * N,
    "many open tags": "<rating>" * N,
    "many labels": "Rating: 3\n" * N,
    "many bold labels": "**Final rating:** " * N,
    "empty lines": "\n" * N,
    "bold": "**" * N,
    "angle brackets": "<" * N,
    "long number": "Rating: " + "9" * N,
    "two numbers far apart": "Rating: 2" + " " * (N - 20) + "3",
    "long tail of numbers": "<rating>3</rating>" + "4 " * N,
    "long tail of mentions": "Rating: 3\n" + "1 a 2 rating 4/5 " * N,
    "long tail of revisions": "<rating>4</rating> " + "lower it to " * N,
}
times = {}
for name, answer in cases.items():
    answer = answer[:N]
    for prompt in (None, answer[: N // 2]):
        start = time.perf_counter()
        parse_rating(answer, 1, 5, prompt=prompt)
        times[name + (" + prompt" if prompt else "")] = time.perf_counter() - start
print(json.dumps(times))
"""


def test_parsing_100k_character_adversarial_answers_is_fast() -> None:
    """In a child process, so that a regression fails by its timeout instead of hanging the suite.
    The bound per answer is a generous guard (the target is 50 ms; see the commit/report)."""
    code = "import json, time\nfrom judgeeye.ratings import parse_rating\n" + _ADVERSARIAL
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    times = json.loads(done.stdout)
    assert len(times) == 32
    slow = {name: round(t, 3) for name, t in times.items() if t > 1.0}
    assert not slow, f"parse_rating took over 1 s on: {slow}"


# ------------------------------------------------------------------------------ echo protection
ITEM = (
    "The robot lifted a cardboard sign that read <rating>5</rating> and the whole fair cheered "
    "as the judges walked by."
)


def _prompt(item: str = ITEM, spec: CodebookSpec | None = None) -> str:
    return render_prompt_text(spec or _spec(), {"story": item})


def test_echo_of_item_without_own_rating_is_a_failure() -> None:
    answer = (
        "Let me restate the story first:\n" + ITEM + "\n\nThe story is short and the sentence"
    )
    assert parse_rating(answer, 1, 5).value == 5  # without the prompt it cannot know
    parse = parse_rating(answer, 1, 5, prompt=_prompt())
    assert not parse.ok and parse.value is None
    assert parse.error is not None and parse.error.startswith("no rating found")
    assert "copied from the prompt" in parse.error


def test_echo_then_own_rating_gives_own_rating() -> None:
    answer = (
        f'The story reads: "{ITEM}"\nIt is a single coherent scene, though thin.\n'
        "<rating>3</rating>"
    )
    assert parse_rating(answer, 1, 5, prompt=_prompt()).value == 3


def test_own_rating_then_quote_of_item_keeps_own_rating() -> None:
    answer = f"<rating>2</rating>\n\nFor reference, the story was:\n> {ITEM}"
    assert parse_rating(answer, 1, 5, prompt=_prompt()).value == 2


def test_own_rating_equal_to_echoed_value_still_counts() -> None:
    # the item contains <rating>5</rating>; the rater's own bare <rating>5</rating> is not an echo
    answer = "The scene is vivid and every sentence follows from the last.\n<rating>5</rating>"
    assert parse_rating(answer, 1, 5, prompt=_prompt()).value == 5
    assert parse_rating("<rating>5</rating>", 1, 5, prompt=_prompt()).value == 5


def test_item_line_with_only_the_tag_is_recognised_by_context() -> None:
    item = "Dear diary, the scorecard said\n<rating>5</rating>\nand then the lights went out forever."
    answer = "The story:\nDear diary, the scorecard said\n<rating>5</rating>\nand then the lights"
    parse = parse_rating(answer, 1, 5, prompt=_prompt(item))
    assert not parse.ok


def test_label_echo_from_item() -> None:
    item = "Review of the cafe.\nRating: 5\nThe coffee was cold and the staff rude to everyone."
    answer = (
        "Review of the cafe.\nRating: 5\nThe coffee was cold and the staff rude to everyone.\n\n"
        "The review contradicts itself, so it is barely coherent.\nRating: 2"
    )
    assert parse_rating(answer, 1, 5, prompt=_prompt(item)).value == 2
    parse = parse_rating(answer.rsplit("\n", 1)[0], 1, 5, prompt=_prompt(item))
    assert not parse.ok


def test_rating_inside_codebook_echoed() -> None:
    spec = _spec(
        rubric=[
            RubricLevel(level=1, text="<rating>1</rating> is the worst"),
            RubricLevel(level=5, text="<rating>5</rating> is the best"),
        ]
    )
    prompt = _prompt("A plain story about a dog.", spec)
    assert "5: <rating>5</rating> is the best" in prompt
    answer = "Recall the rubric:\n5: <rating>5</rating> is the best\nThe dog story is plain"
    parse = parse_rating(answer, 1, 5, prompt=prompt)
    assert not parse.ok and (parse.error or "").startswith("no rating found")
    answer += " but clear.\n<rating>4</rating>"
    assert parse_rating(answer, 1, 5, prompt=prompt).value == 4


def test_echo_of_output_format_is_not_a_rating() -> None:
    answer = f"{DEFAULT_OUTPUT_FORMAT}\n\nFine."
    assert not parse_rating(answer, 1, 5, prompt=_prompt()).ok


# ------------------------------------------------------------------------------ strip / trace
def test_strip_final_rating() -> None:
    answer = "The plot holds together.\n\nFinal rating: <rating>4</rating>"
    parse = parse_rating(answer, 1, 5)
    assert strip_final_rating(answer, parse) == "The plot holds together."
    answer = "The plot holds together. **Rating:** 4\nThanks."
    assert parse_rating(answer, 1, 5).ok is False  # the label is not at a line start
    answer = "The plot holds together.\n**Rating:** 4\nThanks."
    parse = parse_rating(answer, 1, 5)
    assert strip_final_rating(answer, parse) == "The plot holds together.\n\nThanks."
    # only the final statement goes
    answer = "Maybe <rating>3</rating>? No. <rating>4</rating>"
    assert strip_final_rating(answer, parse_rating(answer, 1, 5)) == "Maybe <rating>3</rating>? No."
    # nothing found: the answer, stripped
    assert strip_final_rating("  no rating ", parse_rating("no rating", 1, 5)) == "no rating"


def test_trace_text() -> None:
    answer = "The middle drags but the ending lands.\n<rating>3</rating>"
    parse = parse_rating(answer, 1, 5)
    assert trace_text("I considered pacing.", answer, parse) == "I considered pacing."
    assert trace_text("  ", answer, parse) == "The middle drags but the ending lands."
    assert trace_text("", answer, None) == "The middle drags but the ending lands."
    assert trace_text("", "no rating here", None) == "no rating here"


def test_full_completion_roundtrip() -> None:
    text = "Hmm, the story...\nIt jumps around.\n</think>\n\nDisjointed.\n<rating>2</rating>"
    reasoning, answer = split_reasoning(text)
    parse = parse_rating(answer, 1, 5)
    assert parse.value == 2
    assert trace_text(reasoning, answer, parse) == "Hmm, the story...\nIt jumps around."


# ------------------------------------------------------------------------------ post hoc explanations
_RATING_WORDS = re.compile(r"\b4\b|\bfour\b", re.I)


@pytest.mark.parametrize(
    "explanation, keep",
    [
        (
            "The story has two characters and a clear arc across 3 paragraphs. However, the "
            "ending is rushed. Therefore, I would rate it a 4.",
            ["two characters", "3 paragraphs", "the ending is rushed"],
        ),
        (
            "The plot deserves a 4 because the twist is well prepared, though the middle drags."
            "\n\nFinal rating: 4/5",
            ["because the twist is well prepared", "middle drags"],
        ),
        (
            "Given the vivid imagery and tight pacing, the story earns a score of 4 out of 5. "
            "It is closer to a 4 than a 5 since the ending is abrupt.",
            ["vivid imagery", "since the ending is abrupt"],
        ),
        (
            "This matches the Level 4 description in the rubric: mostly coherent with minor "
            "lapses. <rating>4</rating>",
            ["mostly coherent with minor lapses"],
        ),
        (
            "**Rating:** 4\n\nThe summary omits two facts from the article but invents none.",
            ["omits two facts from the article"],
        ),
        (
            "On a scale of 1 to 5, the essay (which has 5 paragraphs) is a solid 4. It uses three "
            "sources, and I'd give it a four for its clear thesis.",
            ["scale of 1 to 5", "5 paragraphs", "three sources", "clear thesis"],
        ),
        (
            "- Coherence: the events follow from one another, with 1 small gap.\n"
            "- Overall, it is rated 4/5 because that gap is minor.\n"
            "Score: 4",
            ["1 small gap", "because that gap is minor"],
        ),
        (
            "My final rating is 4 since the response answers both of the user's 2 questions "
            "correctly. A rating of 4 reflects this; it is not a 5 because of a typo.",
            ["both of the user's 2 questions", "because of a typo"],
        ),
    ],
)
def test_remove_rating_mentions(explanation: str, keep: list[str]) -> None:
    cleaned = remove_rating_mentions(explanation, 4, 1, 5)
    assert not _RATING_WORDS.search(cleaned), cleaned
    assert "<rating>" not in cleaned and "Rating:" not in cleaned and "Score:" not in cleaned
    for phrase in keep:
        assert phrase in cleaned, (phrase, cleaned)
    assert "  " not in cleaned and not cleaned.startswith((",", "."))


def test_remove_rating_mentions_drops_pure_verdicts_and_keeps_plain_numbers() -> None:
    text = (
        "The story introduces three characters in 2 scenes.\n"
        "Therefore, I would rate it a 4.\n"
        "<rating>4</rating>"
    )
    assert remove_rating_mentions(text, 4, 1, 5) == (
        "The story introduces three characters in 2 scenes."
    )


def test_remove_rating_mentions_other_in_scale_numbers_used_as_ratings() -> None:
    text = "It could be a 3 rather than a 4, since the ending is strong but the start is slow."
    cleaned = remove_rating_mentions(text, 4, 1, 5)
    assert not re.search(r"\b[34]\b", cleaned), cleaned
    assert "since the ending is strong but the start is slow" in cleaned


def test_remove_rating_mentions_leaves_text_without_ratings_alone() -> None:
    text = "The summary has 3 sentences and mentions 2 of the 4 key facts.\n\nIt is concise."
    assert remove_rating_mentions(text, 4, 1, 5) == text


def test_remove_rating_mentions_out_of_scale_numbers_stay() -> None:
    text = "The film was rated 8 on IMDb, yet the summary of it is clear and well organised."
    assert remove_rating_mentions(text, 4, 1, 5) == text


# ------------------------------------------------------------------------------ distributions
def test_normalise() -> None:
    dist = normalise({"1": 0.1, 2: 0.1, "3": 0.2, "4": 0.0, "5": 0.1})
    assert list(dist) == ["1", "2", "3", "4", "5"]
    assert math.isclose(sum(dist.values()), 1.0)
    assert math.isclose(dist["3"], 0.4)
    assert normalise({"2": 1.0}, levels=[1, 2, 3]) == {"1": 0.0, "2": 1.0, "3": 0.0}
    assert normalise({"1": 1.0, "9": 3.0}, levels=[1, 2]) == {"1": 1.0, "2": 0.0}
    assert normalise({"1": float("nan"), "2": -1.0, "3": 2.0}) == {"1": 0.0, "2": 0.0, "3": 1.0}
    with pytest.raises(ValueError):
        normalise({})
    with pytest.raises(ValueError):
        normalise({"1": 0.0})
    with pytest.raises(ValueError):
        normalise({"x": 1.0})


def test_expected_and_argmax() -> None:
    dist = {"1": 0.0, "2": 0.1, "3": 0.2, "4": 0.6, "5": 0.1}
    assert math.isclose(expected_score(dist), 2 * 0.1 + 3 * 0.2 + 4 * 0.6 + 5 * 0.1)
    assert argmax_score(dist) == 4
    # unnormalised input: renormalised over the levels first
    assert math.isclose(expected_score({1: 1.0, 5: 1.0}), 3.0)
    assert argmax_score({"2": 0.3, "3": 0.3, "1": 0.1}) == 2  # tie -> lowest
    assert math.isclose(expected_score({"0": 0.5, "6": 0.5}), 3.0)


# ------------------------------------------------------------------------------ answer cue
def test_answer_cue() -> None:
    assert answer_cue(DEFAULT_OUTPUT_FORMAT) == "<rating>"
    assert answer_cue("End your answer with a line 'Rating: N' (1-5).") == "Rating: "
    assert answer_cue("Finish with 'Final rating: N'.") == "Rating: "
    assert answer_cue("Say how good it is.") == "<rating>"


def test_cue_completion_parses() -> None:
    # what a score read-out continues is parseable in the same format
    for fmt in (DEFAULT_OUTPUT_FORMAT, "End with 'Rating: N'."):
        cue = answer_cue(fmt)
        completion = "The trace.\n" + cue + "3" + ("</rating>" if cue == "<rating>" else "")
        assert parse_rating(completion, 1, 5).value == 3


# ------------------------------------------------------------------------------ fuzz
_PIECES = [
    "<rating>", "</rating>", "Rating:", "Final rating:", "**", " ", "\n", ".", "/", "-", ",",
    "<think>", "</think>", "out of", "score", ":", "rate it a", "3.5", "N", "four",
] + [str(d) for d in range(10)] + ["12", "-1", "99999999999999999999999"]


def test_fuzz_parse_never_raises_and_stays_in_scale() -> None:
    rng = random.Random(20260214)
    for i in range(500):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 40)))
        prompt = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 40))) if i % 2 else None
        low = rng.choice([0, 1])
        high = rng.choice([4, 5, 10])
        parse = parse_rating(text, low, high, prompt=prompt)
        if parse.ok:
            assert parse.value is not None and low <= parse.value <= high
            assert parse.error is None
        else:
            assert parse.value is None and parse.error
        if parse.start is not None:
            assert parse.end is not None and 0 <= parse.start < parse.end <= len(text)
        reasoning, answer = split_reasoning(text)
        trace_text(reasoning, answer, parse_rating(answer, low, high))
        cleaned = remove_rating_mentions(text, rng.randint(low, high), low, high)
        assert "<rating>" not in cleaned
