"""Data: upload a rating file or use a built-in format, map columns, validate, preview, import."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.express as px
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
from judgeeye.projects import SAMPLE_FILE, builtin_codebook_for, import_with_codebook
from judgeeye.store import Item, read_scope, session_scope
from judgeeye.uploads import list_uploads, save_upload
from judgeeye_app.ui.common import project_picker
from judgeeye_app.ui.access import require_page

actor = require_page("data")  # every page checks the session itself (see pages/access.py)

st.title("Data")
import_tab, browse_tab = st.tabs(["Import", "Browse items"])


def _error_table(exc: DatasetError) -> pd.DataFrame:
    errors = exc.errors if isinstance(exc, DatasetValidationError) else [exc]
    return pd.DataFrame(
        [{"file": Path(str(e.file)).name if e.file else "", "row": e.row, "field": e.field, "problem": e.message}
         for e in errors]
    )


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
            path = st.selectbox("Uploaded file", uploads, format_func=lambda p: p.name, key="data_uploaded")
        else:
            st.info("Nothing uploaded yet.")
    else:
        path = SAMPLE_FILE
    if path is None:
        return

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
            c1, c2, c3, c4, c5 = st.columns(5)
            lo = c1.number_input("Scale min", value=1, step=1, key="map_min")
            hi = c2.number_input("Scale max", value=5, step=1, key="map_max")
            task = c3.text_input("Task", "rating", key="map_task")
            dimension = c4.text_input("Dimension", "quality", key="map_dimension")
            gen_type = c5.text_input("Items are", "text", key="map_gentype")
            if not text_cols or not (rater_cols or label_col):
                st.info("Choose at least one text field and the rating column(s).")
                return
            mapping_json = ColumnMapping(
                id_column=id_col, text_columns={c: c for c in text_cols},
                rating_columns={c: c for c in rater_cols} or None,
                label_column=label_col, scale_min=int(lo), scale_max=int(hi), task=task,
                dimension=dimension, generation_type=gen_type,
            ).model_dump_json()
        dataset = _parse(str(path), path.stat().st_mtime, loader_name, dimension, mapping_json)
    except DatasetError as exc:
        st.error(f"**{Path(str(exc.file or path)).name}** cannot be imported; nothing was written. Fix these and upload again:")
        st.dataframe(_error_table(exc), hide_index=True, width="stretch")
        return
    except ValueError as exc:  # an impossible column mapping
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

    m = st.columns(4)
    m[0].metric("Items", stats.n_items)
    m[1].metric("Gold items", stats.n_gold)
    m[2].metric("Dropped (raters disagree)", stats.n_dropped)
    m[3].metric("Without rating", stats.n_no_rating)
    hist = pd.DataFrame({"gold label": [str(k) for k in stats.histogram], "items": list(stats.histogram.values())})
    st.plotly_chart(px.bar(hist, x="gold label", y="items", title="Gold label histogram"), width="stretch")
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
            st.error("Nothing was imported:")
            st.dataframe(_error_table(exc), hide_index=True, width="stretch")
        else:
            st.session_state["project_id"] = report.project_id
            st.success(f"Imported **{report.n_gold}** gold items into project #{report.project_id} "
                       f"({report.n_dropped} dropped; splits {report.splits}).")


with import_tab:
    import_flow()

with browse_tab:
    project = project_picker()
    if project is not None:
        c1, c2 = st.columns(2)
        status = c1.selectbox("Status", ["all", "gold", "dropped_disagreement", "no_rating"], key="browse_status")
        split = c2.selectbox("Split", ["all", "train", "validation", "test"], key="browse_split")
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
                {"id": i.external_id, "split": i.split, "gold": i.gold, "std": i.rating_std,
                 "status": i.gold_status, "ratings": ", ".join(f"{k}: {v:g}" for k, v in i.ratings.items()),
                 **{f: (v[:200] + "…" if len(v) > 200 else v) for f, v in i.fields.items()}}
                for i in items
            ]),
            hide_index=True, width="stretch",
        )
