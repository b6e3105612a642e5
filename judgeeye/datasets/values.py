"""Turning raw cells into ratings and texts, with messages a user can act on.

Cells arrive as strings (files are read with every value as text) so that "3.5", "nan", "high"
or "" are judged here against the project's scale rather than silently coerced by a parser.
"""

from __future__ import annotations

import json
import math
from typing import Any


class CellError(ValueError):
    """A cell's value is unusable; the caller adds file, row and field."""


def fmt_number(value: float) -> str:
    """3.0 -> '3', 3.5 -> '3.5' (for messages and rater keys)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def scale_text(scale_min: float, scale_max: float) -> str:
    return f"{fmt_number(scale_min)}-{fmt_number(scale_max)}"


def parse_rating(
    raw: Any, scale_min: float, scale_max: float, *, integer_scale: bool = True
) -> float | None:
    """A rating as float, or None when the cell is blank (that annotator did not rate).

    Raises :class:`CellError` for non-numbers, NaN/inf, fractions on an integer scale and
    values outside the scale.
    """
    if raw is None:
        return None
    if isinstance(raw, bool) or isinstance(raw, (list, dict)):
        raise CellError(f"rating {json.dumps(raw)} is not a number")
    text = str(raw).strip()
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise CellError(f"rating '{shown}' is not a number") from None
    if not math.isfinite(value):
        raise CellError(f"rating '{text}' is not a finite number")
    scale = scale_text(scale_min, scale_max)
    if integer_scale and not value.is_integer():
        raise CellError(
            f"rating {fmt_number(value)} is not a whole number; the scale {scale} has "
            "whole-number points only"
        )
    if value < scale_min or value > scale_max:
        raise CellError(f"rating {fmt_number(value)} is outside the scale {scale}")
    return value


#: Largest whole number a float holds exactly (2**53); beyond it 1e19 is not one integer.
_EXACT_INT = 2**53


def cell_text(value: Any) -> str | None:
    """A cell as text: None stays None (key absent), JSON null -> '', nested -> JSON.

    Numbers in JSON and Parquet are written as a person would: a whole-number float is an
    integer (``1.0`` -> ``"1"``: an id column that pandas stored as float64 because of a gap
    keeps the ids ``"1"``, ``"2"``...); any other float keeps its exact shortest form
    (``1.5`` -> ``"1.5"``). Text cells are never reinterpreted: ``"1.0"`` in a CSV stays ``"1.0"``.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) <= _EXACT_INT:
            return str(int(value))
        return repr(value)
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
