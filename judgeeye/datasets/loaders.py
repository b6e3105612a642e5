"""Built-in loaders for the benchmark formats the paper uses, as published.

Each loader knows its benchmark's columns, scale, text fields and valid dimensions, so a user
only names the file and the dimension. All of them return a :class:`ParsedDataset` and report
problems the same way as the generic reader.
"""

from __future__ import annotations

import csv
import glob
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from judgeeye.datasets.errors import MAX_ERRORS, DatasetError, ErrorCollector
from judgeeye.datasets.model import ColumnMapping, ParsedDataset, ParsedItem
from judgeeye.datasets.readers import (
    MAX_FIELD_CHARS,
    check_columns,
    id_value,
    rating_value,
    table_to_dataset,
    text_value,
)
from judgeeye.datasets.sources import SourceTable, read_source
from judgeeye.datasets.values import CellError, parse_rating

LoadFn = Callable[..., ParsedDataset]


@dataclass(frozen=True)
class Loader:
    """A built-in loader: what it reads, its scale, and the dimensions one can import."""

    name: str
    description: str
    dimensions: tuple[str, ...]
    scale: tuple[int, int]
    generation_type: str
    formats: tuple[str, ...]
    load: LoadFn

    def __call__(self, path: str | Path, dimension: str, **kwargs: Any) -> ParsedDataset:
        return self.load(path, dimension, **kwargs)


def check_dimension(
    loader: str, dimension: str, valid: tuple[str, ...], path: str | Path | None = None
) -> str:
    """The dimension, normalised; an unknown one is an error listing the valid ones."""
    dim = (dimension or "").strip().lower()
    if dim not in valid:
        raise DatasetError(
            f"unknown dimension '{dimension}' for {loader}; valid: " + ", ".join(valid),
            file=path,
            field="dimension",
        )
    return dim


def _dataset(
    items: list[ParsedItem],
    *,
    source: str,
    loader: str,
    dimension: str,
    generation_type: str,
    scale: tuple[int, int],
    text_fields: list[str],
    label_kind: Literal["per_annotator", "aggregated"],
    fmt: str,
    meta: dict[str, Any] | None = None,
    group_by: str | None = None,
) -> ParsedDataset:
    return ParsedDataset(
        source_file=source,
        loader=loader,
        task=loader,
        dimension=dimension,
        generation_type=generation_type,
        scale_min=scale[0],
        scale_max=scale[1],
        text_fields=text_fields,
        items=items,
        label_kind=label_kind,
        meta=meta or {},
        format=fmt,
        group_by=group_by,
    )


# --------------------------------------------------------------------------- HANNA

HANNA_DIMENSIONS = ("relevance", "coherence", "empathy", "surprise", "engagement", "complexity")
HANNA_FIELDS = ["prompt", "human_story", "story"]


def load_hanna(
    path: str | Path, dimension: str, *, max_errors: int = MAX_ERRORS
) -> ParsedDataset:
    """HANNA stories: the per-annotator wide CSV or the original one-row-per-annotation CSV.

    The format is told by the header: ``story_id`` + ``rater<N>_<dimension>`` columns (wide) or
    ``Story ID`` + capitalised dimension columns (original long format).
    """
    dimension = check_dimension("hanna", dimension, HANNA_DIMENSIONS, path)
    table = read_source(path, "csv", max_errors=max_errors)
    if "Story ID" in table.columns:
        return _hanna_long(table, dimension, max_errors)
    if "story_id" in table.columns:
        return _hanna_wide(table, dimension, max_errors)
    raise DatasetError(
        "not a HANNA file: expected a 'story_id' column with rater<N>_<dimension> columns "
        "(per-annotator CSV) or a 'Story ID' column (hanna_stories_annotations.csv)",
        file=table.file,
        row=table.header_row,
        field="story_id",
    )


def _hanna_wide(table: SourceTable, dimension: str, max_errors: int) -> ParsedDataset:
    pattern = re.compile(rf"^rater(\d+)_{dimension}$")
    raters = {
        f"rater{m.group(1)}": c
        for c in table.columns
        if (m := pattern.match(c))
    }
    if not raters:
        raise DatasetError(
            f"no rating columns for '{dimension}' (expected rater1_{dimension}, "
            f"rater2_{dimension}, ...)",
            file=table.file,
            row=table.header_row,
            field=f"rater1_{dimension}",
        )
    mapping = ColumnMapping(
        id_column="story_id",
        text_columns={"prompt": "prompt", "human_story": "human_reference_story", "story": "story"},
        rating_columns=dict(sorted(raters.items(), key=lambda kv: int(kv[0][5:]))),
        # every prompt is told by 11 systems: their stories share a split
        group_column="prompt_index" if "prompt_index" in table.columns else "prompt",
        scale_min=1,
        scale_max=5,
        task="hanna",
        dimension=dimension,
        generation_type="story",
    )
    return table_to_dataset(
        table, mapping, loader="hanna", max_errors=max_errors,
        meta={"hanna_format": "per_annotator_wide"}, group_by="writing prompt",
    )


def _hanna_long(table: SourceTable, dimension: str, max_errors: int) -> ParsedDataset:
    """One row per (story, worker): group rows by Story ID; raters keyed by Worker ID."""
    errors = ErrorCollector(table.file, max_errors)
    dim_col = dimension.capitalize()
    check_columns(table, ["Story ID", "Prompt", "Story", dim_col], errors)
    errors.raise_if_any()
    cols = table.columns
    get = {c: table.frame[c].tolist() for c in cols}
    has_worker = "Worker ID" in cols
    has_human = "Human" in cols
    groups: dict[str, dict[str, Any]] = {}
    renamed = 0
    for i, row in enumerate(table.row_numbers):
        sid_raw = get["Story ID"][i]
        sid = (sid_raw or "").strip()
        if not sid:
            errors.add("the id is empty", row=row, field="Story ID")
            continue
        group = groups.get(sid)
        if group is None:
            fields: dict[str, str] = {}
            for name, col in (("prompt", "Prompt"), ("human_story", "Human"), ("story", "Story")):
                if col == "Human" and not has_human:
                    continue
                text = text_value(
                    get[col][i], row=row, column=col, errors=errors, max_field_chars=MAX_FIELD_CHARS
                )
                if text is not None:
                    fields[name] = text
            group = groups[sid] = {
                "row": row, "fields": fields, "ratings": {}, "ok": True,
                "prompt": (get["Prompt"][i] or "").strip() or None,
            }
        value, ok = rating_value(
            get[dim_col][i], row=row, column=dim_col, scale_min=1, scale_max=5,
            integer_scale=True, errors=errors,
        )
        group["ok"] &= ok
        if value is None:
            continue
        worker = (get["Worker ID"][i] or "").strip() if has_worker else ""
        key = worker or f"rater{len(group['ratings']) + 1}"
        if key in group["ratings"]:
            n = 2
            while f"{key}#{n}" in group["ratings"]:
                n += 1
            key, renamed = f"{key}#{n}", renamed + 1
        group["ratings"][key] = value
    for sid, group in groups.items():
        if group["ok"] and not group["ratings"]:
            errors.add(
                f"story {sid} has no rating at all", row=group["row"], field=dim_col
            )
    errors.raise_if_any()
    items = [ParsedItem(sid, g["fields"], g["ratings"], g["prompt"]) for sid, g in groups.items()]
    meta: dict[str, Any] = {"hanna_format": "original_long", "annotations": len(table)}
    if renamed:
        meta["warnings"] = [f"{renamed} repeated worker ratings of one story kept as '<worker>#2'"]
    return _dataset(
        items, source=table.file, loader="hanna", dimension=dimension, generation_type="story",
        scale=(1, 5), text_fields=[f for f in HANNA_FIELDS if f != "human_story" or has_human],
        label_kind="per_annotator", fmt="csv", meta=meta, group_by="writing prompt",
    )


# --------------------------------------------------------------------------- SummEval

SUMMEVAL_DIMENSIONS = ("coherence", "consistency", "fluency", "relevance")


def summeval_files(path: str | Path) -> list[Path]:
    """A file, a glob pattern's matches, or a folder's ``*annotations*.jsonl`` files (sorted;
    every ``*.jsonl`` when none is named so; other files there, e.g. derived means, are skipped)."""
    text = str(path)
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*annotations*.jsonl")) or sorted(p.glob("*.jsonl"))
    elif any(ch in text for ch in "*?["):
        files = sorted(Path(f) for f in glob.glob(text))
    else:
        files = [p]
    if not files:
        raise DatasetError("no .jsonl files found", file=text)
    return files


def load_summeval(
    path: str | Path,
    dimension: str,
    *,
    annotators: Literal["expert", "turker"] = "expert",
    max_errors: int = MAX_ERRORS,
) -> ParsedDataset:
    """SummEval ``model_annotations.aligned.jsonl`` (or the per-system split files).

    One item per (article id, system): the same article is summarised by every system, hence
    ``external_id = f"{id}|{model_id}"``; the article id is the item's group, so all summaries of
    an article share a split. Raters are the three experts (or the five turkers).
    """
    dimension = check_dimension("summeval", dimension, SUMMEVAL_DIMENSIONS, path)
    if annotators not in ("expert", "turker"):
        raise DatasetError("annotators must be 'expert' or 'turker'", field="annotators")
    files = summeval_files(path)
    errors = ErrorCollector(str(path), max_errors)
    key = f"{annotators}_annotations"
    seen: dict[str, tuple[str, int]] = {}
    items: list[ParsedItem] = []
    for f in files:
        table = read_source(f, "jsonl", max_errors=max_errors)
        fe = errors.for_file(table.file)
        check_columns(table, ["id", "model_id", "text", "decoded", key], fe)
        errors.raise_if_any()
        get = {c: table.frame[c].tolist() for c in ("id", "model_id", "text", "decoded", key)}
        for i, row in enumerate(table.row_numbers):
            parts = []
            for col in ("id", "model_id"):
                value = get[col][i]
                if value is None or not str(value).strip() or isinstance(value, (list, dict)):
                    fe.add("the id is empty or missing", row=row, field=col)
                else:
                    parts.append(str(value).strip())
            ext = "|".join(parts) if len(parts) == 2 else None
            if ext is not None and ext in seen:
                other_file, other_row = seen[ext]
                fe.add(
                    f"duplicate item '{ext}' (also in {Path(other_file).name} row {other_row})",
                    row=row, field="id",
                )
                ext = None
            elif ext is not None:
                seen[ext] = (table.file, row)
            fields = {}
            for name, col in (("article", "text"), ("summary", "decoded")):
                text = text_value(
                    get[col][i], row=row, column=col, errors=fe, max_field_chars=MAX_FIELD_CHARS
                )
                if text is not None:
                    fields[name] = text
            ratings = _summeval_ratings(get[key][i], row, key, annotators, dimension, fe)
            if ext is not None and ratings is not None:
                items.append(ParsedItem(ext, fields, ratings, group=parts[0]))
    errors.raise_if_any()
    return _dataset(
        items,
        source=str(path),
        loader="summeval",
        dimension=dimension,
        generation_type="summary",
        scale=(1, 5),
        text_fields=["article", "summary"],
        label_kind="per_annotator",
        fmt="jsonl",
        meta={"files": [str(f) for f in files], "annotators": annotators},
        group_by="source article",
    )


def _summeval_ratings(
    anns: Any, row: int, key: str, who: str, dimension: str, errors: ErrorCollector
) -> dict[str, float] | None:
    if not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
        errors.add("expected a list of annotation objects", row=row, field=key)
        return None
    ratings: dict[str, float] = {}
    ok = True
    for k, ann in enumerate(anns, 1):
        field = f"{key}[{k - 1}].{dimension}"
        if dimension not in ann:
            errors.add(f"annotation {k} has no '{dimension}'", row=row, field=field)
            ok = False
            continue
        value, good = rating_value(
            ann[dimension], row=row, column=field, scale_min=1, scale_max=5,
            integer_scale=True, errors=errors,
        )
        ok &= good
        if value is not None:
            ratings[f"{who}{k}"] = value
    if ok and not ratings:
        errors.add("the item has no rating at all", row=row, field=key)
        return None
    return ratings if ok else None


# --------------------------------------------------------------------------- WMT-2020 SQM

WMT_COLUMNS = ["system", "seg_id", "rater", "source", "target", "score"]
_VTAG = re.compile(r"</?v>")


def load_wmt_sqm(
    path: str | Path, dimension: str = "quality", *, max_errors: int = MAX_ERRORS
) -> ParsedDataset:
    """WMT-2020 pSQM TSV (``psqm_newstest2020_*.tsv``): one row per rating, scores 0-6.

    Rows are grouped by (system, doc_id, seg_id) into one item per translated segment with the
    raters as annotators. The file's texts hold ``<v>...</v>`` highlight marks, removed here.
    Segments whose source or translation is empty in the file (a few are) are skipped and
    counted in ``meta['skipped_empty_text']`` rather than failing the import. Scores are
    accepted anywhere in 0-6 (the published file could not be checked for whole numbers).
    Every system translates the same source segments, so the item's group is its source
    document (``doc``, else ``doc_id``), or its source segment where the file names no document.
    """
    dimension = check_dimension("wmt_sqm", dimension, ("quality",), path)
    table = read_source(path, "tsv", quoting=csv.QUOTE_NONE, max_errors=max_errors)
    errors = ErrorCollector(table.file, max_errors)
    check_columns(table, WMT_COLUMNS, errors)
    errors.raise_if_any()
    keys = ["system", "doc_id", "seg_id"] if "doc_id" in table.columns else ["system", "seg_id"]
    group_col = next((c for c in ("doc", "doc_id") if c in table.columns), "seg_id")
    get = {c: table.frame[c].tolist() for c in {*WMT_COLUMNS, *keys, group_col}}
    groups: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(table.row_numbers):
        parts = [(get[k][i] or "").strip() for k in keys]
        bad = [k for k, v in zip(keys, parts) if not v]
        if bad:
            errors.add("the id is empty", row=row, field=bad[0])
            continue
        ext = "|".join(parts)
        group = groups.get(ext)
        if group is None:
            group = groups[ext] = {
                "row": row,
                "group": (get[group_col][i] or "").strip() or parts[-1],
                "source": _VTAG.sub("", get["source"][i] or "").strip(),
                "target": _VTAG.sub("", get["target"][i] or "").strip(),
                "ratings": {},
                "ok": True,
            }
        value, ok = rating_value(
            get["score"][i], row=row, column="score", scale_min=0, scale_max=6,
            integer_scale=False, errors=errors,
        )
        group["ok"] &= ok
        if value is None:
            continue
        rater = (get["rater"][i] or "").strip() or f"rater{len(group['ratings']) + 1}"
        n, key = 2, rater
        while key in group["ratings"]:
            key, n = f"{rater}#{n}", n + 1
        group["ratings"][key] = value
    items = []
    skipped = 0
    for ext, g in groups.items():
        if not g["source"] or not g["target"]:
            skipped += 1
            continue
        if g["ok"] and not g["ratings"]:
            errors.add(f"segment {ext} has no rating at all", row=g["row"], field="score")
            continue
        fields = {"source": g["source"], "translation": g["target"]}
        items.append(ParsedItem(ext, fields, g["ratings"], g["group"]))
    errors.raise_if_any()
    return _dataset(
        items, source=table.file, loader="wmt_sqm", dimension=dimension,
        generation_type="translation", scale=(0, 6), text_fields=["source", "translation"],
        label_kind="per_annotator", fmt="tsv",
        meta={"ratings": len(table), "skipped_empty_text": skipped, "item_key": keys},
        group_by="source segment" if group_col == "seg_id" else "source document",
    )


# --------------------------------------------------------------------------- HelpSteer2

HELPSTEER2_DIMENSIONS = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")


def load_helpsteer2(
    path: str | Path, dimension: str, *, format: str | None = None, max_errors: int = MAX_ERRORS
) -> ParsedDataset:
    """HelpSteer2 (CSV, JSON Lines incl. the published ``train.jsonl.gz``, or Parquet).

    One aggregated 0-4 label per response; ``external_id`` is the ``id`` column if there is one,
    else the record's position (1, 2, ...). Responses to the same prompt share a split.
    """
    dimension = check_dimension("helpsteer2", dimension, HELPSTEER2_DIMENSIONS, path)
    table = read_source(path, format, max_errors=max_errors)
    mapping = ColumnMapping(
        id_column="id" if "id" in table.columns else None,
        text_columns={"prompt": "prompt", "response": "response"},
        label_column=dimension,
        group_column="prompt",
        scale_min=0,
        scale_max=4,
        task="helpsteer2",
        dimension=dimension,
        generation_type="chatbot response",
    )
    return table_to_dataset(
        table, mapping, loader="helpsteer2", max_errors=max_errors, group_by="prompt"
    )


# --------------------------------------------------------------------------- Kaggle AES 2.0

AES2_PROMPT_COLUMNS = ("prompt_name", "essay_set")


def load_aes2(
    path: str | Path, dimension: str = "holistic", *, max_errors: int = MAX_ERRORS
) -> ParsedDataset:
    """Kaggle "Learning Agency Lab - Automated Essay Scoring 2.0" ``train.csv`` (1-6 holistic).

    The published file has no prompt column; where one is present (``prompt_name`` as in the
    PERSUADE corpus, ``essay_set`` as in ASAP) essays on the same prompt share a split.
    """
    dimension = check_dimension("aes2", dimension, ("holistic",), path)
    table = read_source(path, None if Path(str(path)).suffix else "csv", max_errors=max_errors)
    prompt_col = next((c for c in AES2_PROMPT_COLUMNS if c in table.columns), None)
    mapping = ColumnMapping(
        id_column="essay_id",
        text_columns={"essay": "full_text"},
        label_column="score",
        group_column=prompt_col,
        scale_min=1,
        scale_max=6,
        task="aes2",
        dimension=dimension,
        generation_type="essay",
    )
    return table_to_dataset(
        table, mapping, loader="aes2", max_errors=max_errors, group_by="essay prompt"
    )


# --------------------------------------------------------------------------- Prometheus / TRACT

PROMETHEUS_DIMENSIONS = ("rubric",)
_RUBRIC = re.compile(r"###\s*Score Rubrics?\s*:\s*(.*?)\s*(?=\n\s*###|\Z)", re.S)


def parse_rubric(instruction: str) -> str | None:
    """The item's ``###Score Rubrics:`` block (criterion + score descriptions), if any."""
    m = _RUBRIC.search(instruction)
    return m.group(1).strip() or None if m else None


def _scores(raw: Any) -> list[Any]:
    """gpt4_score as a list: a list, a JSON list in a string ("[3, 2, 3]"), or one number."""
    if isinstance(raw, list):
        return raw
    text = (raw or "").strip() if isinstance(raw, str) else raw
    if text == "" or text is None:
        return []
    if isinstance(text, str) and text[:1] == "[":
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise CellError(f"score list '{text}' is not a valid list of numbers") from None
        if not isinstance(value, list):
            raise CellError(f"score list '{text}' is not a list")
        return value
    return [text]


def load_prometheus(
    path: str | Path,
    dimension: str = "rubric",
    *,
    format: str | None = None,
    max_errors: int = MAX_ERRORS,
) -> ParsedDataset:
    """Prometheus / TRACT rubric sets (e.g. ``mt_bench_eval.json``): JSON array or JSON Lines.

    ``instruction`` is the whole grading prompt (question, response, reference answer and the
    item's own ``###Score Rubrics:``); ``gpt4_score`` holds one score per GPT-4 run, kept as
    raters ``gpt4_1``, ``gpt4_2``, ... The rubric is also parsed into the field ``rubric`` (not
    a text field: it is already inside the instruction) for codebook work. The question's
    ``idx`` is the item's group: the responses of every model to one question share a split.
    """
    dimension = check_dimension("prometheus", dimension, PROMETHEUS_DIMENSIONS, path)
    table = read_source(path, format, max_errors=max_errors)
    errors = ErrorCollector(table.file, max_errors)
    check_columns(table, ["instruction", "gpt4_score"], errors)
    errors.raise_if_any()
    cols = table.columns
    get = {c: table.frame[c].tolist() for c in cols}
    id_cols = [c for c in ("idx", "response_source") if c in cols]
    seen: dict[str, int] = {}
    items: list[ParsedItem] = []
    no_rubric = 0
    for i, row in enumerate(table.row_numbers):
        if id_cols:
            raw = "|".join(str(get[c][i] if get[c][i] is not None else "").strip() for c in id_cols)
            ext = id_value(
                raw if raw.strip("|") else "", row=row, column="+".join(id_cols), seen=seen,
                errors=errors,
            )
        else:
            ext = str(i + 1)
        instruction = text_value(
            get["instruction"][i], row=row, column="instruction", errors=errors,
            max_field_chars=MAX_FIELD_CHARS,
        )
        ratings: dict[str, float] = {}
        ok = True
        try:
            scores = _scores(get["gpt4_score"][i])
        except CellError as exc:
            errors.add(str(exc), row=row, field="gpt4_score")
            continue
        for k, raw_score in enumerate(scores, 1):
            try:
                value = parse_rating(raw_score, 1, 5, integer_scale=True)
            except CellError as exc:
                errors.add(str(exc), row=row, field=f"gpt4_score[{k - 1}]")
                ok = False
                continue
            if value is not None:
                ratings[f"gpt4_{k}"] = value
        if ok and not ratings:
            errors.add("the item has no rating at all", row=row, field="gpt4_score")
        if ext is None or instruction is None:
            continue
        fields = {"instruction": instruction}
        rubric = parse_rubric(instruction)
        if rubric:
            fields["rubric"] = rubric
        else:
            no_rubric += 1
        group = None
        if "idx" in cols and get["idx"][i] is not None and not isinstance(get["idx"][i], (list, dict)):
            group = str(get["idx"][i]).strip() or None
        items.append(ParsedItem(ext, fields, ratings, group))
    errors.raise_if_any()
    return _dataset(
        items, source=table.file, loader="prometheus", dimension=dimension,
        generation_type="chatbot response", scale=(1, 5), text_fields=["instruction"],
        label_kind="per_annotator", fmt=table.format,
        meta={
            "set": Path(table.file).name.split(".")[0],
            "per_item_rubric": True,
            "rubric_field": "rubric",
            "items_without_rubric": no_rubric,
            "label_source": "GPT-4 (not human)",
        },
        group_by="question" if "idx" in cols else None,
    )


# --------------------------------------------------------------------------- registry

LOADERS: dict[str, Loader] = {
    loader.name: loader
    for loader in (
        Loader(
            "hanna",
            "HANNA stories (Chhun et al. 2022): per-annotator CSV or the original "
            "hanna_stories_annotations.csv; 3 raters, 1-5",
            HANNA_DIMENSIONS, (1, 5), "story", ("csv",), load_hanna,
        ),
        Loader(
            "summeval",
            "SummEval (Fabbri et al. 2021) model_annotations.aligned.jsonl, a folder or glob of "
            "such files; 3 experts, 1-5",
            SUMMEVAL_DIMENSIONS, (1, 5), "summary", ("jsonl",), load_summeval,
        ),
        Loader(
            "wmt_sqm",
            "WMT-2020 pSQM TSV (Freitag et al. 2021), one row per rating; 0-6",
            ("quality",), (0, 6), "translation", ("tsv",), load_wmt_sqm,
        ),
        Loader(
            "helpsteer2",
            "HelpSteer2 (Wang et al. 2024) CSV / JSON Lines / Parquet; aggregated label, 0-4",
            HELPSTEER2_DIMENSIONS, (0, 4), "chatbot response", ("csv", "jsonl", "parquet"),
            load_helpsteer2,
        ),
        Loader(
            "aes2",
            "Kaggle Automated Essay Scoring 2.0 train.csv (essay_id, full_text, score); 1-6",
            ("holistic",), (1, 6), "essay", ("csv",), load_aes2,
        ),
        Loader(
            "prometheus",
            "Prometheus / TRACT rubric sets (instruction with an item rubric, gpt4_score runs); "
            "JSON array or JSON Lines; 1-5",
            PROMETHEUS_DIMENSIONS, (1, 5), "chatbot response", ("json", "jsonl"),
            load_prometheus,
        ),
    )
}


def load_builtin(name: str, path: str | Path, dimension: str, **kwargs: Any) -> ParsedDataset:
    """Read ``path`` with the built-in loader ``name`` for one ``dimension``."""
    loader = LOADERS.get((name or "").strip().lower())
    if loader is None:
        raise DatasetError(
            f"unknown loader '{name}'; built-in loaders: {', '.join(LOADERS)}",
            file=path,
            field="loader",
        )
    return loader(path, dimension, **kwargs)
