"""Home: every project and how far it has come through the pipeline."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from judgeeye.display import escape_markdown
from judgeeye.projects import pipeline_status
from judgeeye.store import read_scope
from judgeeye_app.ui.access import require_page

require_page("home")  # every page checks the session itself (see pages/access.py)

st.title("JudgeEye")
st.caption("LLM raters that agree with humans: infer the reasoning behind label-only ratings, "
           "review it, refine the codebook, fine-tune raters, and measure agreement.")

with read_scope() as session:
    statuses = pipeline_status(session)

if not statuses:
    st.info("No projects yet. Import a rating dataset on the **Data** page.")
    st.page_link("pages/data.py", label="Import data", icon=":material/upload_file:")
    st.stop()

table = pd.DataFrame(
    [
        {
            "Project": s.name, "Dimension": s.dimension, "Scale": s.scale, "Items": s.items,
            "Gold items": s.gold_items, "Dropped": s.dropped,
            "Codebook": f"v{s.current_codebook} of {s.codebook_versions}" if s.current_codebook else "—",
            "Sampled": s.candidates, "Accepted": s.accepted, "Reviewed": s.reviewed,
            "Training runs": s.training_runs,
        }
        for s in statuses
    ]
)
st.subheader("Projects")
st.dataframe(table, hide_index=True, width="stretch")

st.subheader("Pipeline")
for s in statuses:
    with st.container(border=True):
        st.markdown(f"**{escape_markdown(s.name)}** · {escape_markdown(s.task)} · {escape_markdown(s.dimension)} ({s.scale})")
        cols = st.columns(6)
        cols[0].metric("Gold items", s.gold_items, help=f"{s.dropped} dropped: raters disagreed (std > threshold)")
        cols[1].metric("Test items", s.splits.get("test", 0),
                       help=f"train {s.splits.get('train', 0)} · validation {s.splits.get('validation', 0)} "
                       f"· test {s.splits.get('test', 0)}")
        cols[2].metric("Codebook versions", s.codebook_versions)
        cols[3].metric("Traces sampled", s.candidates, help=f"{s.sampling_runs} sampling runs")
        cols[4].metric("Accepted traces", s.accepted,
                       help=f"{s.items_with_accepted} items have at least one accepted trace")
        cols[5].metric("Reviewed items", s.reviewed)
