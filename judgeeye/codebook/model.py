"""The codebook: annotation instructions plus ordered rubric levels on a rating scale.

A :class:`CodebookSpec` is the in-memory, validated form of a codebook. It is what gets rendered into
rater prompts (:mod:`judgeeye.codebook.render`), saved as JSON (:mod:`judgeeye.codebook.io`) and
stored as immutable versions (:mod:`judgeeye.codebook.versions`).
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

#: What the rater is asked to write. ``{scale_min}``/``{scale_max}`` are filled in at render time
#: (plain text substitution: any other braces are left alone).
DEFAULT_OUTPUT_FORMAT = (
    "Think step by step: apply the guidelines above to the item and weigh the evidence before you "
    "decide. End your answer with the final rating written as <rating>N</rating>, where N is an "
    "integer from {scale_min} to {scale_max}."
)


class CodebookError(Exception):
    """Base of every error this package raises on bad input (the CLI shows its message)."""


class CodebookNotFoundError(CodebookError, LookupError):
    """No such project, codebook version or built-in codebook."""


class RubricLevel(BaseModel):
    """One rating level of the scale and what it means."""

    model_config = ConfigDict(extra="forbid")

    level: int
    text: str

    @field_validator("text")
    @classmethod
    def _text_not_empty(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a rubric level needs a description (the text is empty)")
        return value


class CodebookSpec(BaseModel):
    """A complete codebook for one task dimension.

    ``rubric`` is kept sorted by level (ascending); levels are unique and lie within
    ``[scale_min, scale_max]``. Not every integer of the scale needs its own level (e.g. the
    WMT SQM scale labels only 0, 2, 4 and 6 in the original).

    Rendered in this order: ``instructions``, the rating-scale header, ``rubric_intro``, the
    levels, ``rubric_notes``, ``instructions_after``, the output format. The three optional
    parts keep what a refined codebook writes around its levels (a rubric's lead-in and notes,
    steps after the rubric) where it wrote it, instead of folding it into the instructions.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    task: str
    dimension: str
    generation_type: str = "text"
    scale_min: int
    scale_max: int
    instructions: str
    rubric: list[RubricLevel]
    #: rubric text before the first level (after the "Rating scale:" header)
    rubric_intro: str = ""
    #: rubric text after the last level (e.g. how to decide between two levels)
    rubric_notes: str = ""
    #: instructions that follow the rubric
    instructions_after: str = ""
    output_format: str = DEFAULT_OUTPUT_FORMAT
    sources: list[str] = Field(default_factory=list)

    @field_validator("name", "task", "dimension", "generation_type")
    @classmethod
    def _label_not_empty(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if not value:
            raise ValueError(f"{info.field_name} must not be empty")
        return value

    @field_validator("scale_max")
    @classmethod
    def _scale_ordered(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("scale_min")
        if low is not None and value <= low:
            raise ValueError(f"scale_max ({value}) must be greater than scale_min ({low})")
        return value

    @field_validator("instructions")
    @classmethod
    def _instructions_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the codebook instructions are empty")
        return value.strip("\n").rstrip()

    @field_validator("rubric_intro", "rubric_notes", "instructions_after")
    @classmethod
    def _optional_part(cls, value: str) -> str:
        return value.strip("\n").rstrip() if value.strip() else ""

    @field_validator("output_format")
    @classmethod
    def _output_format_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the output format is empty (it tells the rater how to write the rating)")
        return value.strip()

    @field_validator("rubric")
    @classmethod
    def _rubric_valid(cls, value: list[RubricLevel], info: ValidationInfo) -> list[RubricLevel]:
        if not value:
            raise ValueError(
                "a codebook needs at least one rubric level (a rating level with its description); "
                "this one has no rating levels"
            )
        counts = Counter(lv.level for lv in value)
        dupes = sorted(level for level, n in counts.items() if n > 1)
        if dupes:
            raise ValueError(f"rubric levels must be unique; repeated: {', '.join(map(str, dupes))}")
        low, high = info.data.get("scale_min"), info.data.get("scale_max")
        if low is not None and high is not None:
            outside = [lv.level for lv in value if not low <= lv.level <= high]
            if outside:
                raise ValueError(
                    f"rubric level(s) {', '.join(map(str, outside))} outside the scale "
                    f"{low}..{high}"
                )
        return sorted(value, key=lambda lv: lv.level)

    # ------------------------------------------------------------------ helpers
    @property
    def levels(self) -> list[int]:
        """The rubric's levels, ascending."""
        return [lv.level for lv in self.rubric]

    @property
    def scale(self) -> list[int]:
        """Every integer rating the scale allows, ascending."""
        return list(range(self.scale_min, self.scale_max + 1))

    def level_text(self, level: int) -> str | None:
        for lv in self.rubric:
            if lv.level == level:
                return lv.text
        return None

    def rendered_output_format(self) -> str:
        """The output format with ``{scale_min}``/``{scale_max}`` filled in."""
        return self.output_format.replace("{scale_min}", str(self.scale_min)).replace(
            "{scale_max}", str(self.scale_max)
        )

    def rubric_json(self) -> list[dict[str, object]]:
        """The rubric as stored in the database (``Codebook.rubric``)."""
        return [lv.model_dump() for lv in self.rubric]
