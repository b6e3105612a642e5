"""What a refinement keeps: the part it did not refine, byte for byte, on the eight built-in
codebooks; the refined part where the answer wrote it (a rubric's lead-in and notes kept, steps
after the rubric left after it)."""

from __future__ import annotations

import pytest

from judgeeye.codebook import CodebookSpec, list_builtin, load_builtin, render_codebook, render_rubric
from judgeeye.refine.llm import BadAnswer
from judgeeye.refine.refiner import instruction_answer, rubric_answer

BUILTIN = list_builtin()


def test_all_eight_builtin_codebooks_are_covered() -> None:
    assert len(BUILTIN) == 8


def _respaced(text: str) -> str:
    """What a model does to text it copies: lines re-wrapped, spaces doubled."""
    return text.replace("\n", " ").replace(". ", ".  ")


@pytest.mark.parametrize("name", BUILTIN)
def test_rubric_refinement_keeps_instructions_and_unrefined_levels_byte_for_byte(name: str) -> None:
    base = load_builtin(name)
    changed = base.levels[len(base.levels) // 2]
    levels = "\n".join(f"{lv.level}: " + ("The story weaves several developed threads, e.g. a twist that "
                                         "recasts the opening." if lv.level == changed else _respaced(lv.text))
                       for lv in base.rubric)
    answer = (f"<codebook>\n{_respaced(base.instructions)}\n\nRating scale:\nDecide by the number of developed "
              f"elements, not by length.\n{levels}\n\nWhen torn between two levels, choose the lower one.\n\n"
              f"{base.rendered_output_format()}\n</codebook>")
    refined = rubric_answer(answer, base)
    assert refined.instructions == base.instructions  # not refined: byte for byte
    assert refined.output_format == base.output_format
    for lv in base.rubric:
        if lv.level != changed:  # copied back re-spaced: the original text, byte for byte
            assert refined.level_text(lv.level) == lv.text
    assert refined.level_text(changed).startswith("The story weaves several developed threads")
    rubric = render_rubric(refined)
    assert rubric.startswith("Rating scale:\nDecide by the number of developed elements, not by length.\n")
    assert rubric.endswith("\n\nWhen torn between two levels, choose the lower one.")  # the rubric's own text
    assert render_codebook(refined) == "\n\n".join([base.instructions, rubric, base.rendered_output_format()])


def _instruction_answer(base: CodebookSpec, rubric: str) -> str:
    return ("<codebook>\nStep 1: Read the materials thoroughly.\nStep 2: List the elements that matter.\n\n"
            f"{rubric}\n\nStep 3: Handle specific cases: rate a text cut off mid-sentence as if it ended before "
            f"the cut.\n\nStep 4: Keep your focus on this criterion only.\n\n{base.rendered_output_format()}"
            "\n</codebook>")


@pytest.mark.parametrize("name", BUILTIN)
def test_instruction_refinement_keeps_the_rubric_and_the_order_of_its_sections(name: str) -> None:
    base = load_builtin(name)
    # the answer copies the rubric as a numbered list (Appendix E's "Select the Rating"), re-spaced
    rubric = "Select the Rating\n\n" + "\n".join(f"{lv.level}. {_respaced(lv.text)}" for lv in base.rubric)
    refined = instruction_answer(_instruction_answer(base, rubric), base)
    assert refined.rubric == base.rubric and refined.output_format == base.output_format
    assert refined.instructions == ("Step 1: Read the materials thoroughly.\nStep 2: List the elements that matter."
                                    "\n\nSelect the Rating")
    expected = "\n\n".join([
        refined.instructions, render_rubric(base),
        "Step 3: Handle specific cases: rate a text cut off mid-sentence as if it ended before the cut.",
        "Step 4: Keep your focus on this criterion only.", base.rendered_output_format()])
    assert render_codebook(refined) == expected  # the steps after the rubric stay after it


@pytest.mark.parametrize("name", BUILTIN)
def test_both_keep_each_others_parts(name: str) -> None:
    """Instructions refined first, then the rubric: the second step keeps all the first wrote."""
    base = load_builtin(name)
    step1 = instruction_answer(_instruction_answer(base, render_rubric(base)), base)
    levels = "\n".join(f"{lv.level}: {lv.text} Concretely: level {lv.level}." for lv in base.rubric)
    # the answer copies the instructions before and after its rubric, and adds a note to the rubric
    answer = (f"<codebook>\n{step1.instructions}\n\nRating scale:\n{levels}\n\nNote: prefer the lower level when "
              f"unsure.\n\n{step1.instructions_after}\n</codebook>")
    step2 = rubric_answer(answer, step1)
    assert (step2.instructions, step2.instructions_after) == (step1.instructions, step1.instructions_after)
    assert step2.rubric_notes == "Note: prefer the lower level when unsure."
    assert all(step2.level_text(lv.level).endswith(f"Concretely: level {lv.level}.") for lv in base.rubric)


def test_an_answer_that_changes_nothing_is_refused() -> None:
    base = load_builtin("hanna_complexity")
    same = f"<codebook>\n{render_codebook(base).replace('. ', '.  ')}\n</codebook>"
    with pytest.raises(BadAnswer, match="leaves the rubric unchanged"):
        rubric_answer(same, base)
    with pytest.raises(BadAnswer, match="leaves the instructions unchanged"):
        instruction_answer(same, base)
    with pytest.raises(BadAnswer, match="lacks level"):
        rubric_answer("<codebook>\nRating scale:\n1: None.\n2: Few.\n</codebook>", base)
