"""Splits by group: items that share a source (a SummEval article, a HANNA prompt, an MT-Bench
question...) never straddle train / validation / test, in the library, the store and the CLI.

The SummEval fixture is written in the published per-system layout (one file per system, one line
per article, three expert and five turker annotations), so the real loader reads it; tests marked
``shared`` check the full SummEval files in ../shared/data.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from judgeeye.datasets import (
    ColumnMapping,
    DatasetValidationError,
    GoldRule,
    SplitRule,
    apply_gold,
    assign_splits,
    groups_across_splits,
    import_dataset,
    load_builtin,
    read_table,
)

DATA = Path(__file__).parent / "data" / "datasets"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DIMENSIONS = ("coherence", "consistency", "fluency", "relevance")


def write_summeval(folder: Path, *, articles: int = 40, systems: int = 8, seed: int = 0) -> Path:
    """SummEval as published by system: ``M<k>_outputs_annotations.jsonl``, one line per article.

    Experts mostly agree around a per-summary quality (so most items become gold, with every
    level present); articles differ in difficulty, as in the real data.
    """
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    difficulty = [rng.choice((-1, 0, 0, 1)) for _ in range(articles)]
    for m in range(systems):
        lines = []
        for a in range(articles):
            def annotation() -> dict[str, int]:
                return {d: min(5, max(1, base + difficulty[a] + rng.choice((-1, 0, 0, 1))))
                        for d in DIMENSIONS}
            base = rng.randint(1, 5)
            lines.append(json.dumps({
                "id": f"cnn-test-{a:040x}",
                "decoded": f"summary {m} of article {a} .",
                "expert_annotations": [annotation() for _ in range(3)],
                "turker_annotations": [annotation() for _ in range(5)],
                "references": [f"reference of article {a}"],
                "model_id": f"M{m + 8}",
                "filepath": f"cnndm/cnn/stories/{a:040x}.story",
                "text": f"Article {a}. (CNN) Something happened on day {a}.",
            }))
        (folder / f"M{m + 8}_outputs_annotations.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _article(external_id: str) -> str:
    return external_id.split("|")[0]


def test_summeval_import_keeps_every_article_in_one_split(store_url: str, tmp_path: Path) -> None:
    """Real-shaped SummEval (40 articles x 8 systems) into the real store: no article's summaries
    are in two splits, and the splits still have about the ratios asked for."""
    from judgeeye.store import Item, Project, session_scope

    ds = load_builtin("summeval", write_summeval(tmp_path / "summeval"), "coherence")
    assert ds.group_by == "source article"
    assert all(i.group == _article(i.external_id) for i in ds.items)
    with session_scope(store_url) as s:
        report = import_dataset(s, ds, project_name="SummEval coherence")
    with session_scope(store_url) as s:
        rows = s.execute(select(Item.external_id, Item.split).where(
            Item.project_id == report.project_id, Item.split.is_not(None))).all()
        assert s.get(Project, report.project_id).source["group_by"] == "source article"
    splits = dict(rows)
    straddling = groups_across_splits(splits, {e: _article(e) for e in splits})
    assert straddling == {}, f"{len(straddling)} articles straddle splits: {straddling}"
    counts = Counter(splits.values())
    assert set(counts) == {"train", "validation", "test"}
    assert report.n_gold == len(splits) and report.n_groups == len({_article(e) for e in splits})
    assert report.group_by == "source article"
    assert abs(counts["train"] / len(splits) - 0.7) < 0.06
    assert abs(counts["test"] / len(splits) - 0.2) < 0.06


def _grouped(n_groups: int = 60, seed: int = 3) -> tuple[list[str], list[float], list[str]]:
    rng = random.Random(seed)
    ids, labels, groups = [], [], []
    for g in range(n_groups):
        for k in range(rng.randint(1, 12)):
            ids.append(f"g{g:03d}-{k}")
            labels.append(float(rng.choice((1, 2, 3, 3, 4, 4, 5))))
            groups.append(f"g{g:03d}")
    return ids, labels, groups


def test_group_splits_are_reproducible_stratified_and_never_straddle() -> None:
    ids, labels, groups = _grouped()
    a = assign_splits(ids, labels, groups=groups)
    order = list(range(len(ids)))
    random.Random(1).shuffle(order)
    b = assign_splits([ids[i] for i in order], [labels[i] for i in order], groups=[groups[i] for i in order])
    assert a == b  # whatever order the items come in
    assert assign_splits(ids, labels, SplitRule(seed=7), groups=groups) != a
    assert groups_across_splits(a, dict(zip(ids, groups))) == {}
    frame = pd.DataFrame({"split": [a[i] for i in ids], "label": labels})
    share = pd.crosstab(frame.label, frame.split, normalize="index")
    assert (share["train"].between(0.55, 0.85)).all(), share  # every level in train, in proportion
    assert (share["test"] > 0).all(), share
    # unstratified, groups still hold
    flat = assign_splits(ids, labels, SplitRule(stratify=False), groups=groups)
    assert groups_across_splits(flat, dict(zip(ids, groups))) == {}


def test_label_only_splits_scatter_groups() -> None:
    """Why grouping is needed: the label-only split puts most groups in several splits."""
    ids, labels, groups = _grouped()
    assert len(groups_across_splits(assign_splits(ids, labels), dict(zip(ids, groups)))) > 20


def test_few_groups_fill_whole_splits() -> None:
    ids = [f"a{k}" for k in range(4)] + [f"b{k}" for k in range(3)] + ["c0", "c1"]
    groups = [i[0] for i in ids]
    splits = assign_splits(ids, [3.0] * len(ids), groups=groups)
    by_group = {g: {splits[i] for i in ids if i[0] == g} for g in "abc"}
    assert all(len(s) == 1 for s in by_group.values())
    assert sorted(s.pop() for s in by_group.values()) == ["test", "train", "train"]  # 0.7/0.1/0.2 of 3
    assert set(assign_splits(ids, [3.0] * len(ids), groups=["one"] * len(ids)).values()) == {"train"}
    with pytest.raises(ValueError, match="same length"):
        assign_splits(ids, None, groups=groups[:-1])


def test_builtin_loaders_name_their_groups(tmp_path: Path) -> None:
    hanna = load_builtin("hanna", DATA / "hanna_per_annotator.csv", "complexity")
    assert hanna.group_by == "writing prompt"
    assert [i.group for i in hanna.items][-3:] == ["57", "83", "73"]  # story 825 is on prompt 57
    long = load_builtin("hanna", DATA / "hanna_stories_annotations.csv", "complexity")
    assert long.group_by == "writing prompt"
    assert long.items[0].group == long.items[0].fields["prompt"].strip()
    wmt = load_builtin("wmt_sqm", DATA / "psqm_newstest2020_zhen_sample.tsv", "quality")
    assert wmt.group_by == "source document" and {i.group for i in wmt.items} == {"xinhua.1001", "people.2002"}
    helpsteer = load_builtin("helpsteer2", DATA / "helpsteer2_sample.csv", "helpfulness")
    assert helpsteer.group_by == "prompt" and all(i.group == i.fields["prompt"] for i in helpsteer.items)
    prometheus = load_builtin("prometheus", DATA / "prometheus_mt_bench_sample.json", "rubric")
    assert prometheus.group_by == "question" and [i.group for i in prometheus.items] == ["83", "85", "83"]
    essays = pd.read_csv(DATA / "aes2_train_sample.csv", dtype=str, keep_default_na=False)
    assert load_builtin("aes2", DATA / "aes2_train_sample.csv", "holistic").group_by is None
    essays["prompt_name"] = ["Car-free cities", "Car-free cities", "Venus"] * 2
    essays.to_csv(tmp_path / "train.csv", index=False)
    aes = load_builtin("aes2", tmp_path / "train.csv", "holistic")
    assert aes.group_by == "essay prompt" and {i.group for i in aes.items} == {"Car-free cities", "Venus"}


GROUPED = ColumnMapping(id_column="id", text_columns=["text"], rating_columns={"a": "r1", "b": "r2"},
                        group_column="doc", scale_min=1, scale_max=5)


def _generic_csv(path: Path, blank_group_row: int | None = None) -> Path:
    rows = ["id,doc,text,r1,r2"]
    for k in range(30):
        doc = "" if k + 2 == blank_group_row else f"doc{k % 6}"
        rows.append(f"x{k},{doc},text {k},{1 + k % 5},{1 + k % 5}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_generic_import_groups_by_a_named_column(tmp_path: Path) -> None:
    ds = read_table(_generic_csv(tmp_path / "grouped.csv"), GROUPED)
    assert ds.group_by == "doc" and ds.items[7].group == "doc1"
    assert "doc" not in ds.meta["ignored_columns"]
    with pytest.raises(DatasetValidationError) as exc:
        read_table(_generic_csv(tmp_path / "blank.csv", blank_group_row=5), GROUPED)
    err = exc.value.errors[0]
    assert (Path(err.file).name, err.row, err.field) == ("blank.csv", 5, "doc")
    assert "the group is empty" in err.message
    with pytest.raises(ValueError, match="group_column"):
        ColumnMapping(id_column="id", text_columns=["t"], label_column="l", group_column=" ",
                      scale_min=1, scale_max=5)


def test_cli_import_group_column(store_url: str, tmp_path: Path) -> None:
    from judgeeye.cli import app
    from judgeeye.store import Item, session_scope

    path = _generic_csv(tmp_path / "grouped.csv")
    args = ["import", str(path), "--id-column", "id", "--text", "text", "--rater", "r1", "--rater", "r2",
            "--scale", "1-5", "--project", "grouped"]
    result = CliRunner().invoke(app, [*args, "--group-column", "doc"])
    assert result.exit_code == 0, result.output
    assert "split by doc: 6 groups, each in one split" in result.output
    with session_scope(store_url) as s:
        splits = dict(s.execute(select(Item.external_id, Item.split)).all())
    doc_of = {f"x{k}": f"doc{k % 6}" for k in range(30)}
    assert len(splits) == 30 and groups_across_splits(splits, doc_of) == {}
    # a group column the file lacks: exit 2, the column named, nothing written
    bad = CliRunner().invoke(app, [*args[:-1], "other", "--group-column", "source"])
    assert bad.exit_code == 2 and "field 'source'" in bad.output and "column 'source' is missing" in bad.output
    with session_scope(store_url) as s:
        assert len(s.scalars(select(Item.id)).all()) == 30
    loader = CliRunner().invoke(app, ["import", "--loader", "hanna", str(DATA / "hanna_per_annotator.csv"),
                                      "--dimension", "complexity", "--group-column", "prompt"])
    assert loader.exit_code == 2 and "--group-column is for a generic import" in loader.output


@pytest.mark.shared
@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not present")
@pytest.mark.parametrize("dimension", DIMENSIONS)
def test_shared_summeval_articles_never_straddle(dimension: str, store_url: str) -> None:
    """The full SummEval files (100 articles x 12 systems): the label-only split scattered
    nearly every article over several splits (97 of 100 for coherence); grouped, none."""
    from judgeeye.store import Item, session_scope

    ds = load_builtin("summeval", SHARED / "summeval", dimension)
    outcome = apply_gold(ds, GoldRule())
    gold = [i for i, r in zip(ds.items, outcome.results) if r.status == "gold"]
    label_only = assign_splits([i.external_id for i in gold],
                               [r.gold for r in outcome.results if r.status == "gold"])
    article = {i.external_id: _article(i.external_id) for i in ds.items}
    assert len(groups_across_splits(label_only, article)) >= 90
    with session_scope(store_url) as s:
        report = import_dataset(s, ds, project_name=f"SummEval {dimension}")
    with session_scope(store_url) as s:
        splits = dict(s.execute(select(Item.external_id, Item.split).where(Item.split.is_not(None))).all())
    assert len(splits) == report.n_gold and report.n_groups == 100
    assert groups_across_splits(splits, article) == {}
    share = {k: v / len(splits) for k, v in Counter(splits.values()).items()}
    assert abs(share["train"] - 0.7) < 0.03 and abs(share["test"] - 0.2) < 0.03


def test_an_empty_prompt_is_reported_once(tmp_path: Path) -> None:
    """HelpSteer2 groups by its prompt, which is also a text field: one problem, not two."""
    path = tmp_path / "hs.csv"
    path.write_text("prompt,response,helpfulness,correctness,coherence,complexity,verbosity\n"
                    "Hi,Hello,3,3,3,1,1\n,Orphan answer,2,2,2,1,1\n")
    with pytest.raises(DatasetValidationError) as exc:
        load_builtin("helpsteer2", path, "helpfulness")
    assert [(e.row, e.field, e.message) for e in exc.value.errors] == [(3, "prompt", "the text is empty")]
