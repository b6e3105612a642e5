"""A corpus of broken dataset files (tests/data/bad): each must fail with an error that names the
file, the row the user sees and the field; and a failed import must leave the store untouched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from judgeeye.datasets import (
    ColumnMapping,
    DatasetError,
    DatasetValidationError,
    ParsedDataset,
    ParsedItem,
    import_dataset,
    load_builtin,
    read_table,
)
from judgeeye.datasets import importer as importer_mod

BAD = Path(__file__).parent / "data" / "bad"
GOOD = Path(__file__).parent / "data" / "datasets"

PER_ANNOTATOR = ColumnMapping(
    id_column="id",
    text_columns=["text"],
    rating_columns={"rater1": "rater1", "rater2": "rater2"},
    scale_min=1,
    scale_max=5,
)
LABEL = ColumnMapping(
    id_column="id", text_columns=["text"], label_column="label", scale_min=1, scale_max=5
)

# file -> (row, field, words in the message); row/field None where the problem has none
# (the whole file is empty or in another encoding; a JSON line is not JSON at all).
CASES: dict[str, tuple[int | None, str | None, str]] = {
    "latin1.csv": (3, "text", "not UTF-8: byte 0xE9"),
    "latin1.jsonl": (2, "text", "not UTF-8: byte 0xE8"),
    "utf16.csv": (1, None, "UTF-16"),
    "utf16_nobom.csv": (1, None, "not UTF-8"),
    "missing_column.csv": (1, "rater2", "column 'rater2' is missing"),
    "duplicate_header.csv": (1, "rater1", "appears twice in the header"),
    "out_of_scale.csv": (4, "rater2", "rating 7 is outside the scale 1-5"),
    "negative_rating.csv": (2, "rater1", "rating -1 is outside the scale 1-5"),
    "label_out_of_scale.csv": (3, "label", "rating 0 is outside the scale 1-5"),
    "non_numeric.csv": (2, "rater2", "'four' is not a number"),
    "rating_word.jsonl": (1, "rater2", "'high' is not a number"),
    "rating_bool.jsonl": (1, "rater1", "is not a number"),
    "decimal_rating.csv": (3, "rater1", "3.5 is not a whole number"),
    "nan_rating.csv": (2, "rater1", "'NaN' is not a finite number"),
    "inf_rating.csv": (2, "rater2", "'inf' is not a finite number"),
    "duplicate_id.csv": (5, "id", "duplicate id 'x1' (also on row 2)"),
    "empty_id.csv": (3, "id", "the id is empty"),
    "empty_text.csv": (3, "text", "the text is empty"),
    "no_ratings.csv": (3, "rater1, rater2", "no rating at all"),
    "label_empty.csv": (3, "label", "no rating at all"),
    "missing_key.jsonl": (2, "text", "key 'text' is missing"),
    "empty_file.csv": (None, None, "the file is empty"),
    "whitespace_only.csv": (None, None, "the file is empty"),
    "header_only.csv": (1, None, "no data rows"),
    "too_many_fields.csv": (3, None, "5 fields but the header has 4"),
    "short_row.csv": (3, "rater2", "3 fields but the header has 4"),
    "truncated_last_line.csv": (3, None, "never closed"),
    "multiline_error.csv": (6, "rater2", "rating 9 is outside"),  # record after a 3-line text
    "malformed_line.jsonl": (3, None, "malformed JSON"),
    "truncated_last_line.jsonl": (2, None, "the last line is cut off"),
    "not_an_object.jsonl": (2, None, "expected a JSON object"),
    "json_array.jsonl": (1, None, "JSON array, not JSON Lines"),
    "summeval_bad_annotation.jsonl": (1, "expert_annotations[1].coherence", "rating 6 is outside"),
    "prometheus_bad_score.json": (12, "gpt4_score[1]", "rating 7 is outside"),
    "wmt_bad_score.tsv": (3, "score", "'n/a' is not a number"),
    "hanna_wrong_header.csv": (1, "story_id", "not a HANNA file"),
}


def _load(path: Path, **kwargs: Any):  # type: ignore[no-untyped-def]
    name = path.name
    if name.startswith("summeval"):
        return load_builtin("summeval", path, "coherence", **kwargs)
    if name.startswith("prometheus"):
        return load_builtin("prometheus", path, "rubric", **kwargs)
    if name.startswith("wmt"):
        return load_builtin("wmt_sqm", path, "quality", **kwargs)
    if name.startswith("hanna"):
        return load_builtin("hanna", path, "complexity", **kwargs)
    return read_table(path, LABEL if name.startswith("label") else PER_ANNOTATOR, **kwargs)


def test_corpus_is_complete() -> None:
    files = {p.name for p in BAD.iterdir() if p.name != "README.md"}
    assert files == set(CASES)
    assert len(files) >= 20


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_file_names_file_row_and_field(name: str) -> None:
    row, field, words = CASES[name]
    with pytest.raises(DatasetError) as exc:
        _load(BAD / name)
    err = exc.value.errors[0]
    assert (err.row, err.field) == (row, field), str(exc.value)
    assert words in err.message
    assert Path(err.file).name == name
    rendered = str(exc.value)
    assert name in rendered
    if row is not None:
        assert f"row {row}" in rendered
    if field is not None:
        assert f"field '{field}'" in rendered


def test_every_bad_row_is_reported() -> None:
    with pytest.raises(DatasetValidationError) as exc:
        read_table(BAD / "inf_rating.csv", PER_ANNOTATOR)
    assert [(e.row, e.field) for e in exc.value.errors] == [(2, "rater2"), (3, "rater1")]
    assert len(str(exc.value).splitlines()) == 3


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_enormous_line(tmp_path: Path, fmt: str) -> None:
    """A 3 MB text in one cell: reported (not a crash, not csv's 128 KiB field limit)."""
    huge = "word " * 600_000
    path = tmp_path / f"enormous.{fmt}"
    if fmt == "csv":
        path.write_text(f"id,text,rater1,rater2\nx1,short,3,4\nx2,{huge},3,4\n")
    else:
        path.write_text(
            json.dumps({"id": "x1", "text": "short", "rater1": 3, "rater2": 4}) + "\n"
            + json.dumps({"id": "x2", "text": huge, "rater1": 3, "rater2": 4}) + "\n"
        )
    with pytest.raises(DatasetValidationError) as exc:
        read_table(path, PER_ANNOTATOR)
    err = exc.value.errors[0]
    assert (err.row, err.field) == (3 if fmt == "csv" else 2, "text")
    assert "3,000,000 characters" in err.message and "limit" in err.message
    # a raised limit accepts it
    ds = read_table(path, PER_ANNOTATOR, max_field_chars=4_000_000)
    assert len(ds.items[1].fields["text"]) == 3_000_000


def test_bom_file_is_accepted() -> None:
    ds = read_table(GOOD / "generic_bom.csv", LABEL)
    assert ds.items[0].external_id == "b1" and ds.items[0].fields["text"] == "Café au lait"


def test_extra_columns_are_accepted() -> None:
    ds = read_table(GOOD / "generic_extra_columns.csv", PER_ANNOTATOR)
    assert len(ds) == 4 and ds.meta["ignored_columns"] == ["notes", "unused_score"]


# --------------------------------------------------------------------------- nothing is written


def _counts(url: str) -> tuple[int, int]:
    from judgeeye.store import Item, Project, session_scope

    with session_scope(url) as s:
        return s.scalar(select(func.count(Project.id))), s.scalar(select(func.count(Item.id)))


def test_failed_imports_leave_the_database_unchanged(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import IntegrityError

    from judgeeye.store import session_scope

    with session_scope(store_url) as s:
        import_dataset(s, read_table(GOOD / "generic_extra_columns.csv", PER_ANNOTATOR),
                       project_name="existing")
    before = _counts(store_url)
    assert before == (1, 4)

    # 1. a bad file: validation fails before anything is written
    with pytest.raises(DatasetValidationError), session_scope(store_url) as s:
        import_dataset(s, read_table(BAD / "out_of_scale.csv", PER_ANNOTATOR), project_name="new")
    assert _counts(store_url) == before

    # 2. a name that is taken
    with pytest.raises(DatasetError), session_scope(store_url) as s:
        import_dataset(s, read_table(GOOD / "generic.jsonl", ColumnMapping(
            id_column="id", text_columns=["text"], rating_columns={"a": "r1", "b": "r2"},
            scale_min=1, scale_max=5)), project_name="existing")
    assert _counts(store_url) == before

    # 3. a failure in the middle of writing: the project row and the first item batches are
    #    already in the transaction when the database rejects a later batch; all is rolled back.
    monkeypatch.setattr(importer_mod, "BATCH_SIZE", 2)
    monkeypatch.setattr(importer_mod, "_check_items", lambda ds: None)
    items = [ParsedItem(f"id{i}", {"text": "t"}, {"a": 3.0}) for i in range(6)]
    items.append(ParsedItem("id0", {"text": "t"}, {}))  # unrated (no split); id violates uniqueness
    ds = ParsedDataset("x.csv", "generic", "t", "d", "text", 1, 5, ["text"], items, "per_annotator")
    with pytest.raises(IntegrityError), session_scope(store_url) as s:
        import_dataset(s, ds, project_name="half-written")
    assert _counts(store_url) == before
