"""Data: upload a rating file or use a built-in format, map columns, validate, preview, import."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.express as px
from pydantic import ValidationError
import streamlit as st
from sqlalchemy import select

from judgeeye.codebook import list_builtin, load_builtin
from judgeeye.datasets import (
    LOADERS,
    ColumnMapping,
    DatasetError,
    DatasetValidationError,
    GoldRule,
    SplitRule,
    apply_gold,
    load_builtin as load_dataset,
    preview,
    read_source,
    read_table,
)
from judgeeye.datasets.gold import STATUS_TEXT
from judgeeye.datasets.values import fmt_number
from judgeeye.display import escape_markdown
from judgeeye.projects import SAMPLE_FILE, builtin_codebook_for, import_with_codebook
from judgeeye.store import Item, read_scope, session_scope
from judgeeye.uploads import list_uploads, save_upload, upload_name
from judgeeye_app.ui.common import project_picker
from judgeeye_app.ui.access import require_page

actor = require_page("data")  # every page checks the session itself (see pages/access.py)

st.title("Data")
import_tab, browse_tab = st.tabs(["Import", "Browse items"])


NO_GROUP = "(none: split rows one by one)"
SPLITS = ("train", "validation", "test")


def _problems(exc: DatasetError, path: Path) -> str:
    """Every problem in full, one line each: where (another file of a folder, row, field), what."""
    lines = []
    for e in exc.errors:
        where = []
        if e.file and Path(e.file).name != path.name:  # one file of several (a SummEval folder)
            where.append(Path(e.file).name)
        if e.row is not None:
            where.append(f"row {e.row}")
        if e.field is not None:
            where.append(f"field “{e.field}”")
        what = escape_markdown(e.message)
        lines.append(f"- **{escape_markdown(', '.join(where))}:** {what}" if where else f"- {what}")
    if isinstance(exc, DatasetValidationError) and exc.truncated:
        lines.append(f"- … stopped after {len(exc.errors)} problems; fix these and check again for more.")
    return "\n".join(lines)


def _show_problems(headline: str, exc: DatasetError, path: Path) -> None:
    st.error(f"{headline}\n\n{_problems(exc, path)}")


def _mapping_problem(exc: ValidationError) -> str:
    """A column mapping's pydantic error as sentences (no model names, inputs or dicts)."""
    return " ".join(err["msg"].removeprefix("Value error, ").rstrip(".") + "." for err in exc.errors())


def _split_text(splits: dict[str, int]) -> str:
    return ", ".join(f"{splits.get(name, 0):,} {name}" for name in SPLITS)


@st.cache_data(show_spinner="Reading the file…", max_entries=8)
def _columns(path: str, mtime: float) -> list[str]:
    return read_source(path).columns


@st.cache_data(show_spinner="Validating…", max_entries=8)
def _parse(path: str, mtime: float, loader: str | None, dimension: str | None, mapping_json: str | None):
    if loader:
        return load_dataset(loader, path, dimension)
    return read_table(path, ColumnMapping.model_validate_json(mapping_json))


def import_flow() -> None:
    """Pick a file, choose how to read it, check it, import it; returns early until ready."""
    st.markdown("**1 · File**")
    source = st.radio("Source", ["Upload a file", "A file uploaded before", "Bundled sample (HANNA, 300 stories)"],
                      horizontal=True, key="data_source")
    path: Path | None = None
    if source == "Upload a file":
        upload = st.file_uploader("CSV, TSV, JSONL, JSON or Parquet",
                                  type=["csv", "tsv", "jsonl", "json", "parquet"], key="data_upload")
        if upload is not None:
            path = save_upload(upload.name, upload.getvalue())
    elif source == "A file uploaded before":
        uploads = list_uploads()
        if uploads:
            path = st.selectbox("Uploaded file", uploads, format_func=upload_name, key="data_uploaded")
        else:
            st.info("Nothing uploaded yet.")
    else:
        path = SAMPLE_FILE
    if path is None:
        return
    shown = escape_markdown(SAMPLE_FILE.name if path == SAMPLE_FILE else upload_name(path))

    st.markdown("**2 · Format**")
    kind = st.radio("How to read it", ["Built-in format", "Map columns"], horizontal=True, key="data_kind",
                    index=0 if source.startswith("Bundled") else 1)
    loader_name = dimension = mapping_json = None
    try:
        if kind == "Built-in format":
            names = list(LOADERS)
            loader_name = st.selectbox("Format", names, format_func=lambda n: f"{n}: {LOADERS[n].description}",
                                       key="data_loader")
            dimension = st.selectbox("Dimension to rate", LOADERS[loader_name].dimensions, key="data_dimension")
        else:
            columns = _columns(str(path), path.stat().st_mtime)
            c1, c2 = st.columns(2)
            id_col = c1.selectbox("Id column", columns, key="map_id")
            text_cols = c2.multiselect("Text fields (what the rater reads)",
                                       [c for c in columns if c != id_col], key="map_text")
            mode = st.radio("Ratings", ["One column per annotator", "One aggregated label"], horizontal=True,
                            key="map_mode")
            rest = [c for c in columns if c != id_col and c not in text_cols]
            if mode == "One column per annotator":
                rater_cols, label_col = st.multiselect("Annotators' rating columns", rest, key="map_raters"), None
            else:
                rater_cols, label_col = [], st.selectbox("Label column", rest, key="map_label")
            group_col = st.selectbox(
                "Keep rows together in one split by (optional)",
                [NO_GROUP, *(c for c in columns if c != id_col and c not in rater_cols and c != label_col)],
                key="map_group",
                help="Rows with the same value here (their source document, prompt or question) always "
                     "land in the same split, so a rater is never tested on a source it was trained on.")
            c1, c2, c3, c4, c5 = st.columns(5)
            lo = c1.number_input("Scale min", value=1, step=1, key="map_min")
            hi = c2.number_input("Scale max", value=5, step=1, key="map_max")
            task = c3.text_input("Task", "rating", key="map_task")
            dimension = c4.text_input("Dimension", "quality", key="map_dimension")
            gen_type = c5.text_input("Items are", "text", key="map_gentype")
            if not text_cols or not (rater_cols or label_col):
                st.info("Choose at least one text field and the rating column(s).")
                return
            if lo >= hi:
                st.error(f"Scale min ({int(lo)}) must be below scale max ({int(hi)}).")
                return
            mapping_json = ColumnMapping(
                id_column=id_col, text_columns={c: c for c in text_cols},
                rating_columns={c: c for c in rater_cols} or None,
                label_column=label_col, group_column=None if group_col == NO_GROUP else group_col,
                scale_min=int(lo), scale_max=int(hi), task=task,
                dimension=dimension, generation_type=gen_type,
            ).model_dump_json()
        dataset = _parse(str(path), path.stat().st_mtime, loader_name, dimension, mapping_json)
    except DatasetError as exc:
        _show_problems(f"**{shown}** cannot be imported; nothing was written. Fix "
                       f"{'this' if len(exc.errors) == 1 else 'these'} and upload it again:", exc, path)
        return
    except ValidationError as exc:  # an impossible column mapping (e.g. scale min above max)
        st.error(_mapping_problem(exc))
        return
    except ValueError as exc:
        st.error(str(exc))
        return

    st.markdown("**3 · Gold standard and splits**")
    c1, c2, c3, c4, c5 = st.columns(5)
    max_std = c1.number_input("Drop items whose raters' std exceeds", value=1.0, min_value=0.0, step=0.1,
                              key="gold_max_std", help="The paper's rule: std > 1.0 → dropped; gold = median.")
    train = c2.number_input("Train", value=0.7, min_value=0.0, max_value=1.0, step=0.05, key="split_train")
    val = c3.number_input("Validation", value=0.1, min_value=0.0, max_value=1.0, step=0.05, key="split_val")
    test = c4.number_input("Test", value=0.2, min_value=0.0, max_value=1.0, step=0.05, key="split_test")
    seed = c5.number_input("Seed", value=42, step=1, key="split_seed")
    gold_rule = GoldRule(max_std=max_std)
    stats = apply_gold(dataset, gold_rule).stats

    if dataset.group_by:
        st.caption(f"Splits keep each {escape_markdown(dataset.group_by)} together: all its items go to "
                   "the same split, stratified by gold label as far as that allows.")
    m = st.columns(4)
    m[0].metric("Items", stats.n_items)
    m[1].metric("Gold items", stats.n_gold)
    m[2].metric("Dropped (raters disagree)", stats.n_dropped)
    m[3].metric("Without rating", stats.n_no_rating)
    hist = pd.DataFrame({"gold label": [fmt_number(k) for k in stats.histogram],
                         "items": list(stats.histogram.values())})
    histogram = px.bar(hist, x="gold label", y="items", title="Gold label histogram")
    histogram.update_xaxes(type="category")  # one bar per label, not a numeric axis of 0.5 steps
    st.plotly_chart(histogram, width="stretch")
    st.dataframe(preview(dataset, gold_rule), hide_index=True, width="stretch")

    st.markdown("**4 · Import**")
    default_cb = builtin_codebook_for(dataset.loader, dataset.dimension)
    options = (["original for this dataset"] if default_cb else ["generated default"]) + list_builtin()
    c1, c2 = st.columns(2)
    name = c1.text_input("Project name", f"{dataset.loader} {dataset.dimension}", key="import_name")
    cb_choice = c2.selectbox("Codebook", options, key="import_codebook")
    if st.button("Import", type="primary", key="import_go"):
        if abs(train + val + test - 1) > 1e-6:
            st.error("Train, validation and test must add up to 1.")
            return
        spec = load_builtin(cb_choice) if cb_choice in list_builtin() else None
        try:
            with session_scope() as session:
                report = import_with_codebook(
                    session, dataset, actor=actor, project_name=name, codebook=spec, gold_rule=gold_rule,
                    split_rule=SplitRule(ratios=(train, val, test), seed=int(seed)),
                )
        except DatasetError as exc:
            _show_problems("Nothing was imported:", exc, path)
        else:
            st.session_state["project_id"] = report.project_id
            grouped = (f" Split by {escape_markdown(report.group_by)}: {report.n_groups:,} groups, each in "
                       "one split." if report.group_by else "")
            st.success(f"Imported **{report.n_gold:,}** gold items into project #{report.project_id} "
                       f"({report.n_dropped:,} dropped because the raters disagreed). "
                       f"Splits: {_split_text(report.splits)}.{grouped}")


with import_tab:
    import_flow()

with browse_tab:
    project = project_picker()
    if project is not None:
        c1, c2 = st.columns(2)
        status = c1.selectbox("Status", ["all", *STATUS_TEXT], format_func=lambda s: STATUS_TEXT.get(s, s),
                              key="browse_status")
        split = c2.selectbox("Split", ["all", *SPLITS], key="browse_split")
        stmt = select(Item).where(Item.project_id == project.id).order_by(Item.id).limit(2000)
        if status != "all":
            stmt = stmt.where(Item.gold_status == status)
        if split != "all":
            stmt = stmt.where(Item.split == split)
        with read_scope() as session:
            items = session.scalars(stmt).all()
        st.caption(f"{len(items)} items shown (at most 2,000)")
        st.dataframe(
            pd.DataFrame([
                {"id": i.external_id, "split": i.split or "—",
                 "gold": "—" if i.gold is None else fmt_number(i.gold),
                 "raters' std": "—" if i.rating_std is None else f"{i.rating_std:.2f}",
                 "status": STATUS_TEXT.get(i.gold_status, i.gold_status),
                 "ratings": ", ".join(f"{k}: {fmt_number(v)}" for k, v in i.ratings.items()),
                 **{f: (v[:200] + "…" if len(v) > 200 else v) for f, v in i.fields.items()}}
                for i in items
            ]),
            hide_index=True, width="stretch",
        )
