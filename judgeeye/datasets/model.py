"""What a dataset looks like once read, and how a user's columns map onto it.

Every reader and loader produces the same :class:`ParsedDataset`, so gold labels, splits and
the import into the store never care which file format or benchmark the data came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

LabelKind = Literal["per_annotator", "aggregated"]

#: Rater key used when a dataset only has one (already aggregated) label per item.
AGGREGATED_RATER = "label"


@dataclass(slots=True)
class ParsedItem:
    """One thing to rate: its text fields and every rating it received (annotator -> rating).

    ``group`` names what the item shares with others (its source article, writing prompt,
    question...): items of one group always land in the same split, so a rater is never tested
    on a source it was trained on. None: the item is a group of its own.
    """

    external_id: str
    fields: dict[str, str]
    ratings: dict[str, float]
    group: str | None = None


@dataclass(slots=True)
class ParsedDataset:
    """A validated dataset, ready for gold labels, splits and import."""

    source_file: str
    loader: str
    task: str
    dimension: str
    generation_type: str
    scale_min: int
    scale_max: int
    text_fields: list[str]
    items: list[ParsedItem]
    label_kind: LabelKind
    meta: dict[str, Any] = field(default_factory=dict)
    format: str = ""
    #: what the items' groups are, in words ("source article", or the generic group column);
    #: None when the dataset has no grouping and items are split one by one
    group_by: str | None = None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def raters(self) -> list[str]:
        """Every rater key that occurs, in first-seen order."""
        seen: dict[str, None] = {}
        for item in self.items:
            for name in item.ratings:
                seen.setdefault(name, None)
        return list(seen)


class ColumnMapping(BaseModel):
    """Which columns of a user's table hold the id, the texts and the ratings.

    Exactly one of ``rating_columns`` (one column per annotator: annotator name -> column) or
    ``label_column`` (a single aggregated label) must be given. ``text_columns`` maps the field
    name used in prompts to the column; a list means "same name". ``id_column=None`` numbers the
    rows 1, 2, ... instead. ``group_column`` names what rows share (a source document, a prompt):
    rows with the same value are kept in one split.
    """

    model_config = ConfigDict(extra="forbid")

    id_column: str | None = None
    text_columns: dict[str, str]
    rating_columns: dict[str, str] | None = None
    label_column: str | None = None
    group_column: str | None = None
    scale_min: int
    scale_max: int
    integer_scale: bool = True
    task: str = "custom"
    dimension: str = "rating"
    generation_type: str = "text"

    @field_validator("text_columns", mode="before")
    @classmethod
    def _list_to_dict(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return {str(c): str(c) for c in value}
        return value

    @field_validator("text_columns")
    @classmethod
    def _need_text(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("text_columns needs at least one column")
        for name, col in value.items():
            if not name.strip() or not col.strip():
                raise ValueError("text field names and columns must not be empty")
        return value

    @model_validator(mode="after")
    def _check(self) -> ColumnMapping:
        if (self.rating_columns is None) == (self.label_column is None):
            raise ValueError("give exactly one of rating_columns (per annotator) or label_column")
        if self.rating_columns is not None and not self.rating_columns:
            raise ValueError("rating_columns must name at least one annotator column")
        if self.label_column is not None and not self.label_column.strip():
            raise ValueError("label_column must not be empty")
        if self.group_column is not None and not self.group_column.strip():
            raise ValueError("group_column must not be empty")
        if self.scale_min >= self.scale_max:
            raise ValueError(
                f"scale_min ({self.scale_min}) must be below scale_max ({self.scale_max})"
            )
        return self

    @property
    def label_kind(self) -> LabelKind:
        return "per_annotator" if self.rating_columns is not None else "aggregated"

    @property
    def rater_columns(self) -> dict[str, str]:
        """Annotator name -> column, with the aggregated label as the single rater 'label'."""
        if self.rating_columns is not None:
            return dict(self.rating_columns)
        assert self.label_column is not None
        return {AGGREGATED_RATER: self.label_column}

    def required_columns(self) -> list[str]:
        cols = [] if self.id_column is None else [self.id_column]
        cols += list(self.text_columns.values()) + list(self.rater_columns.values())
        if self.group_column is not None:
            cols.append(self.group_column)
        return list(dict.fromkeys(cols))
