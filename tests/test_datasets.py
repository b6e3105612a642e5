"""judgeeye.datasets: readers, built-in loaders, gold standard, splits, import into the store.

Runs on the small fixtures in tests/data/datasets; tests marked ``shared`` use the full files in
../shared/data and are skipped where that folder is absent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import event, func, select

from judgeeye.datasets import (
    LOADERS,
    ColumnMapping,
    DatasetError,
    DatasetValidationError,
    GoldRule,
    ImportReport,
    ParsedDataset,
    ParsedItem,
    SplitRule,
    apply_gold,
    assign_splits,
    compute_gold,
    import_dataset,
    load_builtin,
    preview,
    read_table,
)
from judgeeye.datasets import importer as importer_mod
from judgeeye.datasets.gold import rating_std

DATA = Path(__file__).parent / "data" / "datasets"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
shared = pytest.mark.shared
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not present")

PER_ANNOTATOR = ColumnMapping(
    id_column="id",
    text_columns=["text"],
    rating_columns={"rater1": "rater1", "rater2": "rater2"},
    scale_min=1,
    scale_max=5,
)


# --------------------------------------------------------------------------- errors


def test_error_reads_like_a_location() -> None:
    err = DatasetError(
        "rating 7 is outside the scale 1-5", file="/x/data.csv", row=12, field="rater2"
    )
    assert str(err) == "data.csv, row 12, field 'rater2': rating 7 is outside the scale 1-5"
    assert (err.file, err.row, err.field) == ("/x/data.csv", 12, "rater2")
    assert isinstance(err, ValueError) and err.errors == [err]
    other = DatasetError("the id is empty", file="data.csv", row=3, field="id")
    many = DatasetValidationError([err, other])
    lines = str(many).splitlines()
    assert len(lines) == 3 and lines[1].strip() == str(err)
    assert lines[2].strip() == "data.csv, row 3, field 'id': the id is empty"
    assert isinstance(many, DatasetError) and many.row == 12


# --------------------------------------------------------------------------- generic reader


def test_extra_columns_are_accepted_and_ignored() -> None:
    ds = read_table(DATA / "generic_extra_columns.csv", PER_ANNOTATOR)
    assert [i.external_id for i in ds.items] == ["a1", "a2", "a3", "a4"]
    assert all(set(i.fields) == {"text"} for i in ds.items)
    assert ds.items[1].ratings == {"rater1": 2.0}  # blank cell: rater2 did not rate
    assert ds.items[2].fields["text"] == "Multi-line\ntext in one cell."
    assert ds.meta["ignored_columns"] == ["notes", "unused_score"]
    assert ds.label_kind == "per_annotator" and ds.format == "csv" and ds.loader == "generic"


def test_utf8_bom_is_accepted() -> None:
    mapping = ColumnMapping(id_column="id", text_columns={"body": "text"}, label_column="label",
                            scale_min=1, scale_max=5)
    ds = read_table(DATA / "generic_bom.csv", mapping)
    assert [i.external_id for i in ds.items] == ["b1", "b2"]  # the BOM is not part of 'id'
    assert ds.items[0].fields == {"body": "Café au lait"}
    assert ds.items[1].ratings == {"label": 5.0}
    assert ds.label_kind == "aggregated" and ds.text_fields == ["body"]


def test_jsonl_numbers_nulls_and_absent_keys() -> None:
    mapping = ColumnMapping(id_column="id", text_columns=["text"],
                            rating_columns={"a": "r1", "b": "r2"}, scale_min=1, scale_max=5)
    ds = read_table(DATA / "generic.jsonl", mapping)
    assert [(i.external_id, i.ratings) for i in ds.items] == [
        ("j1", {"a": 4.0, "b": 3.0}),
        ("j2", {"b": 2.0}),  # null = did not rate
        ("j3", {"a": 5.0}),  # key absent = did not rate
    ]


def test_upload_bytes_explicit_format_and_row_numbering(tmp_path: Path) -> None:
    data = b"text,score\nfirst,1\nsecond,2\n"
    mapping = ColumnMapping(text_columns=["text"], label_column="score", scale_min=0, scale_max=4)
    ds = read_table("upload.txt", mapping, data=data, format="csv")
    assert [i.external_id for i in ds.items] == ["1", "2"]  # no id column: positions
    with pytest.raises(DatasetError) as exc:
        read_table(tmp_path / "data.xlsx", mapping)
    assert exc.value.field == "format"


def test_parquet_and_gzip(tmp_path: Path) -> None:
    frame = pd.read_csv(DATA / "helpsteer2_sample.csv")  # typed ints, as real Parquet files are
    frame.to_parquet(tmp_path / "train.parquet")
    ds = load_builtin("helpsteer2", tmp_path / "train.parquet", "helpfulness")
    assert ds.format == "parquet" and len(ds) == 6
    assert ds.items[0].ratings == {"label": 4.0}
    import gzip

    (tmp_path / "train.jsonl.gz").write_bytes(
        gzip.compress((DATA / "helpsteer2_sample.jsonl").read_bytes())
    )
    gz = load_builtin("helpsteer2", tmp_path / "train.jsonl.gz", "verbosity")
    assert [i.ratings["label"] for i in gz.items] == [1, 2, 1, 1, 0, 2]


def test_column_mapping_is_validated() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ColumnMapping(text_columns=["t"], rating_columns={"a": "a"}, label_column="l",
                      scale_min=1, scale_max=5)
    with pytest.raises(ValueError, match="exactly one"):
        ColumnMapping(text_columns=["t"], scale_min=1, scale_max=5)
    with pytest.raises(ValueError, match="below"):
        ColumnMapping(text_columns=["t"], label_column="l", scale_min=5, scale_max=5)
    with pytest.raises(ValueError, match="at least one"):
        ColumnMapping(text_columns=[], label_column="l", scale_min=1, scale_max=5)
    m = ColumnMapping(
        text_columns=["prompt", "response"], label_column="l", scale_min=0, scale_max=4
    )
    assert m.text_columns == {"prompt": "prompt", "response": "response"}
    assert m.rater_columns == {"label": "l"}


def test_errors_are_gathered_in_one_pass(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,text,rater1,rater2\nx1,One,3,4\nx1,Two,3,4\nx3,,3,4\nx4,Four,3,six\n")
    with pytest.raises(DatasetValidationError) as exc:
        read_table(path, PER_ANNOTATOR)
    got = [(e.row, e.field) for e in exc.value.errors]
    assert got == [(3, "id"), (4, "text"), (5, "rater2")]
    assert len(str(exc.value).splitlines()) == 4
    assert "also on row 2" in exc.value.errors[0].message


def test_error_list_stops_at_twenty(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,text,rater1,rater2\n" + "".join(f"x{i},T,9,9\n" for i in range(100)))
    with pytest.raises(DatasetValidationError) as exc:
        read_table(path, PER_ANNOTATOR)
    assert len(exc.value.errors) == 20 and exc.value.truncated
    assert str(exc.value).startswith("stopped after 20 problems")


# --------------------------------------------------------------------------- loaders


def test_loader_registry_describes_itself() -> None:
    assert set(LOADERS) == {"hanna", "summeval", "wmt_sqm", "helpsteer2", "aes2", "prometheus"}
    for loader in LOADERS.values():
        assert loader.description and loader.dimensions and loader.generation_type
    assert LOADERS["hanna"].dimensions == (
        "relevance", "coherence", "empathy", "surprise", "engagement", "complexity")
    with pytest.raises(DatasetError) as exc:
        load_builtin("nope", DATA / "aes2_train_sample.csv", "holistic")
    assert exc.value.field == "loader" and "hanna" in exc.value.message


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_unknown_dimension_lists_valid_ones(name: str) -> None:
    with pytest.raises(DatasetError) as exc:
        load_builtin(name, DATA / "whatever.csv", "beauty")
    assert exc.value.field == "dimension"
    for dim in LOADERS[name].dimensions:
        assert dim in exc.value.message


def test_hanna_per_annotator_csv() -> None:
    ds = load_builtin("hanna", DATA / "hanna_per_annotator.csv", "Complexity")
    assert (ds.task, ds.dimension, ds.generation_type) == ("hanna", "complexity", "story")
    assert (ds.scale_min, ds.scale_max) == (1, 5)
    assert ds.text_fields == ["prompt", "human_story", "story"]
    assert [i.external_id for i in ds.items] == ["0", "1", "9", "10", "17", "825", "851", "937"]
    assert ds.items[0].ratings == {"rater1": 4.0, "rater2": 1.0, "rater3": 3.0}
    assert ds.items[0].fields["prompt"].startswith("When you die the afterlife is an arena")
    stats = apply_gold(ds).stats
    assert (stats.n_gold, stats.n_dropped) == (7, 1)
    assert stats.histogram == {1.0: 2, 2.0: 1, 3.0: 3, 4.0: 1}


def test_hanna_original_long_format_matches_wide() -> None:
    wide = load_builtin("hanna", DATA / "hanna_per_annotator.csv", "coherence")
    long = load_builtin("hanna", DATA / "hanna_stories_annotations.csv", "coherence")
    assert long.meta["hanna_format"] == "original_long" and long.meta["annotations"] == 24
    assert [i.external_id for i in long.items] == [i.external_id for i in wide.items]
    for w, lg in zip(wide.items, long.items):
        assert w.fields == lg.fields
        assert sorted(w.ratings.values()) == sorted(lg.ratings.values())
        assert all(k.startswith("A") for k in lg.ratings)  # keyed by Worker ID
    assert [r.gold for r in apply_gold(long).results] == [r.gold for r in apply_gold(wide).results]


def test_hanna_long_format_without_worker_ids(tmp_path: Path) -> None:
    frame = pd.read_csv(DATA / "hanna_stories_annotations.csv", dtype=str, keep_default_na=False)
    frame.drop(columns=["Worker ID"]).to_csv(tmp_path / "anon.csv", index=False)
    ds = load_builtin("hanna", tmp_path / "anon.csv", "empathy")
    assert list(ds.items[0].ratings) == ["rater1", "rater2", "rater3"]


def test_summeval_folder_file_and_glob(tmp_path: Path) -> None:
    folder = load_builtin("summeval", DATA / "summeval", "consistency")
    assert len(folder) == 6 and folder.text_fields == ["article", "summary"]
    first = folder.items[0]
    assert first.external_id == "dm-test-8764fb95bfad8ee849274873a92fb8d6b400eee2|M8"
    assert first.fields["summary"].startswith("paul merson has restarted his row")
    assert first.ratings == {"expert1": 4.0, "expert2": 2.0, "expert3": 3.0}
    assert (folder.scale_min, folder.scale_max, folder.generation_type) == (1, 5, "summary")
    one = load_builtin("summeval", DATA / "summeval" / "M9_outputs_annotations.jsonl", "fluency")
    assert len(one) == 3 and all(i.external_id.endswith("|M9") for i in one.items)
    pattern = str(DATA / "summeval" / "M*_outputs_annotations.jsonl")
    globbed = load_builtin("summeval", pattern, "relevance")
    assert len(globbed) == 6
    turkers = load_builtin("summeval", DATA / "summeval", "coherence", annotators="turker")
    assert list(turkers.items[0].ratings) == [f"turker{k}" for k in range(1, 6)]
    # the same (id, system) twice across files names both places
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("M8_outputs_annotations.jsonl", "M8b_outputs_annotations.jsonl"):
        shutil.copy(DATA / "summeval" / "M8_outputs_annotations.jsonl", copy / name)
    with pytest.raises(DatasetValidationError) as exc:
        load_builtin("summeval", copy, "coherence")
    err = exc.value.errors[0]
    assert err.file.endswith("M8b_outputs_annotations.jsonl") and err.row == 1 and err.field == "id"
    assert "M8_outputs_annotations.jsonl row 1" in err.message


def test_wmt_sqm_groups_ratings_per_segment() -> None:
    ds = load_builtin("wmt_sqm", DATA / "psqm_newstest2020_zhen_sample.tsv", "quality")
    assert (ds.scale_min, ds.scale_max, ds.generation_type) == (0, 6, "translation")
    assert ds.text_fields == ["source", "translation"]
    assert len(ds) == 7 and ds.meta["skipped_empty_text"] == 1  # one empty translation
    first = ds.items[0]
    assert first.external_id == "Online-B.1605|1|1"
    assert first.fields == {
        "source": "他说明天会下雨。", "translation": "He said it would rain tomorrow."
    }
    assert first.ratings == {"rater1": 6.0, "rater2": 5.0, "rater3": 6.0}
    quoted = next(i for i in ds.items if i.external_id == "Online-B.1605|2|3")
    assert quoted.fields["translation"] == '"We will keep working hard," she said.'


def test_helpsteer2_csv_and_jsonl() -> None:
    csv_ds = load_builtin("helpsteer2", DATA / "helpsteer2_sample.csv", "correctness")
    jsonl_ds = load_builtin("helpsteer2", DATA / "helpsteer2_sample.jsonl", "correctness")
    for ds in (csv_ds, jsonl_ds):
        assert (ds.scale_min, ds.scale_max, ds.label_kind) == (0, 4, "aggregated")
        assert ds.text_fields == ["prompt", "response"]
        assert [i.external_id for i in ds.items] == ["1", "2", "3", "4", "5", "6"]
        assert [i.ratings["label"] for i in ds.items] == [4, 4, 4, 4, 0, 3]
    assert csv_ds.items[1].fields == jsonl_ds.items[1].fields


def test_helpsteer2_uses_an_id_column(tmp_path: Path) -> None:
    frame = pd.read_csv(DATA / "helpsteer2_sample.csv")
    frame.insert(0, "id", [f"hs-{i}" for i in range(len(frame))])
    frame.to_csv(tmp_path / "hs.csv", index=False)
    ds = load_builtin("helpsteer2", tmp_path / "hs.csv", "coherence")
    assert ds.items[0].external_id == "hs-0"


def test_aes2_essays() -> None:
    ds = load_builtin("aes2", DATA / "aes2_train_sample.csv", "holistic")
    assert (ds.scale_min, ds.scale_max) == (1, 6)
    assert (ds.generation_type, ds.label_kind) == ("essay", "aggregated")
    assert ds.text_fields == ["essay"]
    assert [i.ratings["label"] for i in ds.items] == [2, 3, 4, 1, 5, 6]
    assert "\n\n" in ds.items[0].fields["essay"]


def test_aes2_row_numbers_count_lines_of_multiline_essays(tmp_path: Path) -> None:
    text = (DATA / "aes2_train_sample.csv").read_bytes().decode().replace("\r\n0030e86", "\r\n")
    (tmp_path / "train.csv").write_bytes(text.encode())
    with pytest.raises(DatasetValidationError) as exc:
        load_builtin("aes2", tmp_path / "train.csv", "holistic")
    err = exc.value.errors[0]
    # the last essay starts on the line after all earlier quoted paragraphs
    expected = text[: text.index('\r\n,"Extracurricular')].count("\n") + 2
    assert (err.row, err.field, err.message) == (expected, "essay_id", "the id is empty")


@pytest.mark.parametrize(
    "name", ["prometheus_mt_bench_sample.json", "prometheus_mt_bench_sample.jsonl"]
)
def test_prometheus_rubric_sets(name: str) -> None:
    ds = load_builtin("prometheus", DATA / name, "rubric")
    assert [i.external_id for i in ds.items] == [
        "83|llama2_chat_13b", "85|wizardlm_13b", "83|vicuna_13b"]
    assert ds.items[0].ratings == {"gpt4_1": 3.0, "gpt4_2": 2.0, "gpt4_3": 3.0}
    assert ds.items[2].ratings == {"gpt4_1": 1.0, "gpt4_2": 2.0, "gpt4_3": 2.0}  # "[1, 2, 2]"
    assert ds.text_fields == ["instruction"]
    rubric = ds.items[0].fields["rubric"]
    assert rubric.startswith("[Does the response properly address the specific request")
    assert rubric.rstrip().endswith("thorough consideration of the original question.")
    assert "###" not in rubric
    assert ds.items[0].fields["instruction"].startswith("###Task Description:")
    assert (ds.scale_min, ds.scale_max, ds.generation_type) == (1, 5, "chatbot response")


# --------------------------------------------------------------------------- gold


def test_gold_is_the_median_of_agreeing_raters() -> None:
    assert compute_gold({"a": 2, "b": 3, "c": 4}) == compute_gold([2, 3, 4])
    kept = compute_gold([2, 3, 4])
    assert (kept.gold, kept.std, kept.status) == (3.0, 1.0, "gold")  # std exactly 1.0 is kept
    dropped = compute_gold([1, 3, 3])
    assert dropped.status == "dropped_disagreement" and dropped.gold is None
    assert dropped.std == pytest.approx(1.1547, abs=1e-4)
    assert compute_gold([1, 3, 3], GoldRule(ddof=0)).status == "gold"  # population std 0.94
    assert compute_gold([1, 3, 3], GoldRule(max_std=1.2)).gold == 3.0
    single = compute_gold({"label": 4})
    assert (single.gold, single.std, single.status) == (4.0, None, "gold")
    assert compute_gold({}).status == "no_rating"
    even = compute_gold([3, 4])
    assert even.gold == 3.5 and isinstance(even.gold, float)
    assert rating_std([1, 2, 3], ddof=0) == pytest.approx((2 / 3) ** 0.5)
    assert rating_std([5], ddof=1) is None


def test_gold_stats() -> None:
    items = [ParsedItem(str(i), {"t": "x"}, r) for i, r in enumerate(
        [{"a": 1, "b": 1}, {"a": 1, "b": 5}, {"a": 2, "b": 3}, {}, {"a": 2}])]
    ds = ParsedDataset("f.csv", "generic", "t", "d", "text", 1, 5, ["t"], items, "per_annotator")
    outcome = apply_gold(ds)
    assert [r.status for r in outcome.results] == [
        "gold", "dropped_disagreement", "gold", "no_rating", "gold"]
    s = outcome.stats
    assert (s.n_items, s.n_gold, s.n_dropped, s.n_no_rating) == (5, 3, 1, 1)
    assert s.histogram == {1.0: 1, 2.0: 1, 2.5: 1}
    assert s.to_dict()["histogram"] == {"1": 1, "2": 1, "2.5": 1}


# --------------------------------------------------------------------------- splits


def _labelled(n: int) -> tuple[list[str], list[float]]:
    ids = [f"item-{i:04d}" for i in range(n)]
    labels = [float(1 + (i * 7) % 5) for i in range(n)]
    return ids, labels


def test_splits_are_reproducible_whatever_the_input_order() -> None:
    ids, labels = _labelled(200)
    a = assign_splits(ids, labels)
    b = assign_splits(ids[::-1], labels[::-1])
    assert a == b
    assert assign_splits(ids, labels, SplitRule(seed=7)) != a
    counts = pd.Series(a).value_counts().to_dict()
    assert counts == {"train": 140, "test": 40, "validation": 20}


def test_splits_are_stratified_by_label() -> None:
    ids, labels = _labelled(500)
    splits = assign_splits(ids, labels)
    frame = pd.DataFrame({"split": [splits[i] for i in ids], "label": labels})
    table = pd.crosstab(frame.label, frame.split)
    assert (table["train"] == 70).all()
    assert (table["validation"] == 10).all()
    assert (table["test"] == 20).all()


def test_small_classes_are_pooled_and_ratios_configurable() -> None:
    ids = [f"i{k}" for k in range(30)]
    labels = [1.0] * 24 + [2.0, 2.0, 3.0, 4.0, 5.0, 5.0]  # only label 1 is big enough
    rule = SplitRule(ratios=(0.5, 0.0, 0.5), seed=1)
    splits = assign_splits(ids, labels, rule)
    assert set(splits.values()) == {"train", "test"}
    big = [splits[i] for i, lab in zip(ids, labels) if lab == 1.0]
    assert big.count("train") == 12 and big.count("test") == 12
    assert list(splits.values()).count("train") == 15
    flat = assign_splits(ids, labels, SplitRule(stratify=False))
    assert pd.Series(flat).value_counts().to_dict() == {"train": 21, "test": 6, "validation": 3}
    with pytest.raises(ValueError, match="sum to 1"):
        SplitRule(ratios={"train": 0.9, "test": 0.2})
    with pytest.raises(ValueError, match="duplicate"):
        assign_splits(["a", "a"], [1.0, 2.0])


# --------------------------------------------------------------------------- import


def _counts(url: str) -> tuple[int, int]:
    from judgeeye.store import Item, Project, session_scope

    with session_scope(url) as s:
        return s.scalar(select(func.count(Project.id))), s.scalar(select(func.count(Item.id)))


def test_import_writes_project_and_items(store_url: str) -> None:
    from judgeeye.store import Item, Project, session_scope

    ds = load_builtin("hanna", DATA / "hanna_per_annotator.csv", "complexity")
    with session_scope(store_url) as s:
        report = import_dataset(s, ds, project_name="HANNA complexity",
                                split_rule=SplitRule(ratios=(0.6, 0.2, 0.2)))
    assert isinstance(report, ImportReport)
    assert (report.n_items, report.n_gold, report.n_dropped, report.n_no_rating) == (8, 7, 1, 0)
    assert sum(report.splits.values()) == 7
    assert report.to_dict()["gold"]["histogram"] == {"1": 2, "2": 1, "3": 3, "4": 1}
    with session_scope(store_url) as s:
        project = s.get(Project, report.project_id)
        assert (project.task, project.dimension) == ("hanna", "complexity")
        assert project.generation_type == "story"
        assert (project.scale_min, project.scale_max) == (1, 5)
        assert project.text_fields == ["prompt", "human_story", "story"]
        assert project.source["loader"] == "hanna" and project.source["format"] == "csv"
        assert project.source["file"].endswith("hanna_per_annotator.csv")
        assert project.gold_rule["ddof"] == 1 and project.gold_rule["max_std"] == 1.0
        assert project.gold_rule["split"]["seed"] == 42
        rows = s.scalars(select(Item).where(Item.project_id == project.id))
        items = {i.external_id: i for i in rows}
        assert len(items) == 8
        dropped = items["0"]
        assert (dropped.gold, dropped.split) == (None, None)
        assert dropped.gold_status == "dropped_disagreement"
        assert dropped.rating_std == pytest.approx(1.5275, abs=1e-4)
        assert dropped.ratings == {"rater1": 4.0, "rater2": 1.0, "rater3": 3.0}
        boundary = items["17"]  # 3, 4, 2: std exactly 1.0 -> kept
        assert (boundary.gold, boundary.rating_std, boundary.gold_status) == (3.0, 1.0, "gold")
        assert boundary.split in {"train", "validation", "test"}
        assert set(boundary.fields) == {"prompt", "human_story", "story"}


def test_import_refuses_an_existing_project_name(store_url: str) -> None:
    from judgeeye.store import session_scope

    ds = load_builtin("aes2", DATA / "aes2_train_sample.csv", "holistic")
    with session_scope(store_url) as s:
        import_dataset(s, ds, project_name="essays")
    before = _counts(store_url)
    with pytest.raises(DatasetError) as exc, session_scope(store_url) as s:
        import_dataset(s, ds, project_name=" essays ")
    assert exc.value.field == "project" and "already exists" in exc.value.message
    assert _counts(store_url) == before


def test_import_uses_one_insert_per_batch(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from judgeeye.store import get_engine, session_scope

    monkeypatch.setattr(importer_mod, "BATCH_SIZE", 1000)
    items = [ParsedItem(f"id{i:05d}", {"text": f"text {i}"}, {"a": 1 + i % 5, "b": 1 + (i * 3) % 5})
             for i in range(3500)]
    ds = ParsedDataset(
        "big.csv", "generic", "t", "d", "text", 1, 5, ["text"], items, "per_annotator"
    )
    inserts: list[bool] = []

    def count(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO ITEM"):
            inserts.append(executemany)

    engine = get_engine(store_url)
    event.listen(engine, "before_cursor_execute", count)
    try:
        with session_scope(store_url) as s:
            report = import_dataset(s, ds, project_name="big")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert report.n_items == 3500 and _counts(store_url) == (1, 3500)
    assert inserts == [True] * 4  # 4 batches, each one executemany


def test_preview_shows_gold_std_and_status() -> None:
    ds = load_builtin("hanna", DATA / "hanna_per_annotator.csv", "complexity")
    frame = preview(ds, n=3, max_chars=40)
    assert list(frame.columns) == ["id", "prompt", "human_story", "story",
                                   "rater1", "rater2", "rater3", "gold", "raters' std", "status"]
    assert len(frame) == 3
    # text a person reads: no None, no raw status names
    assert frame.status.tolist() == ["dropped: raters disagree", "gold", "gold"]
    assert frame.gold.tolist() == ["—", "4", "3"]
    assert frame["raters' std"].tolist()[0] == "1.53" and frame.rater1.tolist()[0] == "4"
    assert not frame.isna().any().any()
    assert all(len(t) <= 40 for t in frame.story)
    long = load_builtin("hanna", DATA / "hanna_stories_annotations.csv", "complexity")
    assert "ratings" not in preview(long, n=2).columns  # 4 distinct workers fit as columns


# --------------------------------------------------------------------------- full shared files


@shared
@needs_shared
def test_shared_hanna_complexity_gold_counts() -> None:
    path = SHARED / "hanna" / "hanna_reconstructed_per_annotator.csv"
    # independent check with plain pandas: sample std (ddof=1) <= 1.0, median of the 3 raters
    frame = pd.read_csv(path)
    ratings = frame[[f"rater{k}_complexity" for k in (1, 2, 3)]]
    keep = ratings.std(axis=1, ddof=1) <= 1.0
    expected_hist = ratings[keep].median(axis=1).value_counts().sort_index().to_dict()
    assert (int(keep.sum()), int((~keep).sum())) == (783, 273)
    assert expected_hist == {1.0: 108, 2.0: 373, 3.0: 237, 4.0: 51, 5.0: 14}

    ds = load_builtin("hanna", path, "complexity")
    stats = apply_gold(ds).stats
    assert (stats.n_items, stats.n_gold, stats.n_dropped, stats.n_no_rating) == (1056, 783, 273, 0)
    assert stats.histogram == expected_hist


@shared
@needs_shared
def test_shared_hanna_ddof_reproduces_the_paper() -> None:
    """Paper, App. B: 10,245 of 19,008 annotations have rater std 'lower than 1.0'."""
    path = SHARED / "hanna" / "hanna_reconstructed_per_annotator.csv"
    totals = {}
    for ddof in (0, 1):
        rule = GoldRule(ddof=ddof)
        kept = sum(apply_gold(load_builtin("hanna", path, dim), rule).stats.n_gold
                   for dim in LOADERS["hanna"].dimensions)
        totals[ddof] = kept * 3  # annotations = kept (story, criterion) pairs x 3 raters
    assert totals == {0: 13542, 1: 10245}
    assert GoldRule().ddof == 1


@shared
@needs_shared
def test_shared_files_load_and_import(store_url: str) -> None:
    from judgeeye.store import session_scope

    summeval = load_builtin("summeval", SHARED / "summeval", "coherence")
    assert len(summeval) == 1200 and len({i.external_id for i in summeval.items}) == 1200
    assert all(len(i.ratings) == 3 for i in summeval.items)
    for name in ("mt_bench_eval.json", "vicuna_eval.json"):
        ds = load_builtin("prometheus", SHARED / "prometheus_tract" / name, "rubric")
        assert len(ds) == 320 and ds.meta["items_without_rubric"] == 0
    hanna_csv = SHARED / "hanna" / "hanna_reconstructed_per_annotator.csv"
    hanna = load_builtin("hanna", hanna_csv, "complexity")
    with session_scope(store_url) as s:
        report = import_dataset(s, hanna, project_name="HANNA complexity")
    assert (report.n_items, report.n_gold, report.n_dropped) == (1056, 783, 273)
    # split by writing prompt (96 prompts, each told by 11 systems): whole prompts per split
    assert report.splits == {"train": 533, "validation": 83, "test": 167}
    assert (report.group_by, report.n_groups) == ("writing prompt", 96)
    assert _counts(store_url) == (1, 1056)
    # the gold labels round-trip through JSON/the store
    assert json.loads(json.dumps(report.to_dict()))["gold"]["n_gold"] == 783
