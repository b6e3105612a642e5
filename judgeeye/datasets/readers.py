"""Generic import: any CSV / TSV / JSON Lines / JSON / Parquet table plus a :class:`ColumnMapping`.

Validation reports every problem it can (up to the error limit) with file, row and field, so a
user fixes the file once; nothing is produced unless the whole file is clean.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from judgeeye.datasets.errors import MAX_ERRORS, DatasetError, ErrorCollector
from judgeeye.datasets.model import ColumnMapping, ParsedDataset, ParsedItem
from judgeeye.datasets.sources import SourceTable, read_source
from judgeeye.datasets.values import CellError, cell_text, parse_rating

#: Longest text accepted in one field; longer ones are almost certainly a broken file (and far
#: beyond any rater's context window).
MAX_FIELD_CHARS = 1_000_000
#: Item.external_id is a String(200) in the store.
MAX_ID_CHARS = 200


def read_table(
    path: str | Path,
    mapping: ColumnMapping,
    *,
    format: str | None = None,
    data: bytes | None = None,
    sep: str | None = None,
    quoting: int = csv.QUOTE_MINIMAL,
    max_errors: int = MAX_ERRORS,
    max_field_chars: int = MAX_FIELD_CHARS,
) -> ParsedDataset:
    """Read and validate a table with the given column mapping.

    The format comes from the extension unless ``format`` is given; ``data`` lets callers
    pass an upload's bytes with ``path`` as its name. Raises :class:`DatasetValidationError`.
    """
    table = read_source(
        path, format, data=data, sep=sep, quoting=quoting, max_errors=max_errors
    )
    return table_to_dataset(
        table, mapping, loader="generic", max_errors=max_errors, max_field_chars=max_field_chars
    )


def check_columns(
    table: SourceTable, required: list[str], errors: ErrorCollector, *, hint: str = ""
) -> None:
    """Add one error per required column the table lacks (row = the header line)."""
    have = set(table.columns)
    shown = ", ".join(table.columns[:30]) + (" ..." if len(table.columns) > 30 else "")
    if len(table.columns) == 1 and table.format in ("csv", "tsv"):
        for sep in (";", "\t", "|", ","):
            if sep in table.columns[0]:
                shown += f" (one column: is the separator '{sep}'? pass sep={sep!r})"
                break
    for col in required:
        if col not in have:
            errors.add(
                f"column '{col}' is missing; the file has: {shown}{hint}",
                row=table.header_row,
                field=col,
            )


def text_value(
    raw: Any, *, row: int, column: str, errors: ErrorCollector, max_field_chars: int
) -> str | None:
    """A text cell, or None after recording why it is unusable (absent, empty, too long)."""
    if raw is None:
        errors.add(f"key '{column}' is missing from this record", row=row, field=column)
        return None
    text = raw if isinstance(raw, str) else (cell_text(raw) or "")
    if not text.strip():
        errors.add("the text is empty", row=row, field=column)
        return None
    if len(text) > max_field_chars:
        errors.add(
            f"the text is {len(text):,} characters long, more than the limit of "
            f"{max_field_chars:,}",
            row=row,
            field=column,
        )
        return None
    return text


def id_value(
    raw: Any, *, row: int, column: str, seen: dict[str, int], errors: ErrorCollector
) -> str | None:
    """A unique, non-empty external id; duplicates name both rows."""
    if raw is None:
        errors.add(f"key '{column}' is missing from this record", row=row, field=column)
        return None
    if isinstance(raw, (list, dict)):
        errors.add("the id must be a single value, not a list or object", row=row, field=column)
        return None
    ext = (cell_text(raw) or "").strip()
    if not ext:
        errors.add("the id is empty", row=row, field=column)
        return None
    if len(ext) > MAX_ID_CHARS:
        errors.add(f"the id is longer than {MAX_ID_CHARS} characters", row=row, field=column)
        return None
    if ext in seen:
        errors.add(f"duplicate id '{ext}' (also on row {seen[ext]})", row=row, field=column)
        return None
    seen[ext] = row
    return ext


def group_value(raw: Any, *, row: int, column: str, errors: ErrorCollector) -> str | None:
    """The group a row belongs to (its source document, prompt...), or None after recording
    why it is unusable: a row without a group could end up beside its own source in another
    split, so an empty group is an error rather than a group of its own."""
    if raw is None:
        errors.add(f"key '{column}' is missing from this record", row=row, field=column)
        return None
    if isinstance(raw, (list, dict)):
        errors.add("the group must be a single value, not a list or object", row=row, field=column)
        return None
    group = (cell_text(raw) or "").strip()
    if not group:
        errors.add("the group is empty", row=row, field=column)
        return None
    return group


def rating_value(
    raw: Any,
    *,
    row: int,
    column: str,
    scale_min: int,
    scale_max: int,
    integer_scale: bool,
    errors: ErrorCollector,
) -> tuple[float | None, bool]:
    """(rating or None if blank, ok). ``ok`` is False when an error was recorded."""
    try:
        return parse_rating(raw, scale_min, scale_max, integer_scale=integer_scale), True
    except CellError as exc:
        errors.add(str(exc), row=row, field=column)
        return None, False


def table_to_dataset(
    table: SourceTable,
    mapping: ColumnMapping,
    *,
    loader: str,
    max_errors: int = MAX_ERRORS,
    max_field_chars: int = MAX_FIELD_CHARS,
    meta: dict[str, Any] | None = None,
    group_by: str | None = None,
) -> ParsedDataset:
    """Validate every row of ``table`` against ``mapping`` and build the dataset.

    ``group_by`` describes the mapping's group column in words (default: the column's name).
    """
    errors = ErrorCollector(table.file, max_errors)
    check_columns(table, mapping.required_columns(), errors)
    errors.raise_if_any()
    if len(table) == 0:
        raise DatasetError("no data rows", file=table.file, row=table.header_row)

    frame = table.frame
    values = {c: frame[c].tolist() for c in mapping.required_columns()}
    raters = mapping.rater_columns
    no_rating_field = ", ".join(raters.values())
    seen: dict[str, int] = {}
    items: list[ParsedItem] = []
    for i, row in enumerate(table.row_numbers):
        if mapping.id_column is None:
            ext: str | None = str(i + 1)
        else:
            ext = id_value(
                values[mapping.id_column][i], row=row, column=mapping.id_column, seen=seen,
                errors=errors,
            )
        fields: dict[str, str] = {}
        for name, col in mapping.text_columns.items():
            text = text_value(
                values[col][i], row=row, column=col, errors=errors, max_field_chars=max_field_chars
            )
            if text is not None:
                fields[name] = text
        ratings: dict[str, float] = {}
        all_ok = True
        for rater, col in raters.items():
            value, ok = rating_value(
                values[col][i], row=row, column=col, scale_min=mapping.scale_min,
                scale_max=mapping.scale_max, integer_scale=mapping.integer_scale, errors=errors,
            )
            all_ok &= ok
            if value is not None:
                ratings[rater] = value
        if all_ok and not ratings:
            what = "the label is blank" if len(raters) == 1 else "every rating column is blank"
            errors.add(f"the item has no rating at all ({what})", row=row, field=no_rating_field)
        group = None
        text_failed = any(  # the group column is also a text field, already reported as such
            col == mapping.group_column and name not in fields
            for name, col in mapping.text_columns.items()
        )
        if mapping.group_column is not None and not text_failed:
            group = group_value(
                values[mapping.group_column][i], row=row, column=mapping.group_column,
                errors=errors,
            )
        if ext is not None:
            items.append(ParsedItem(ext, fields, ratings, group))
    errors.raise_if_any()

    used = set(mapping.required_columns())
    ignored = [c for c in table.columns if c not in used]
    info: dict[str, Any] = {"columns": table.columns, "ignored_columns": ignored}
    info.update(meta or {})
    return ParsedDataset(
        source_file=table.file,
        loader=loader,
        task=mapping.task,
        dimension=mapping.dimension,
        generation_type=mapping.generation_type,
        scale_min=mapping.scale_min,
        scale_max=mapping.scale_max,
        text_fields=list(mapping.text_columns),
        items=items,
        label_kind=mapping.label_kind,
        meta=info,
        format=table.format,
        group_by=None if mapping.group_column is None else group_by or mapping.group_column,
    )
