"""Home: every project, what to do next in it (by role), and how far it has come."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from judgeeye.auth import can_see_page
from judgeeye.display import escape_markdown
from judgeeye.projects import next_step, pipeline_status
from judgeeye.store import read_scope, store_location
from judgeeye_app.ui.access import require_page

actor = require_page("home")  # every page checks the session itself (see ui/access.py)
VIEWS = Path(__file__).resolve().parent
#: the sidebar's icon of each page a next step links to
ICONS = {"data": ":material/upload_file:", "sample": ":material/psychology:", "assignments": ":material/assignment_ind:",
         "review": ":material/rate_review:", "refine": ":material/auto_fix_high:", "codebooks": ":material/menu_book:",
         "train": ":material/model_training:", "agreement": ":material/monitoring:"}

st.title("JudgeEye")
st.caption("LLM raters that agree with humans: infer the reasoning behind label-only ratings, "
           "review it, refine the codebook, fine-tune raters, and measure agreement.")
if actor.can("manage_data"):  # where the data lives is for those who manage it
    st.caption(f"Store: `{store_location()}`", help="Every project, review and run is kept here. "
               "Set JUDGEEYE_DB or JUDGEEYE_DATA_DIR before starting the app to use another store.")

with read_scope() as session:
    statuses = pipeline_status(session, actor)

if not statuses:
    if can_see_page(actor.role, "data"):
        st.info("No projects yet. Import a rating dataset to start.")
        st.page_link(VIEWS / "data.py", label="Import data", icon=ICONS["data"])
    else:
        st.info("No projects yet: a lead imports one.")
    st.stop()

st.subheader("Next steps")
for s in statuses:
    step = next_step(s, actor.role)
    with st.container(border=True, key=f"next_{s.id}"):
        st.markdown(f"**{escape_markdown(s.name)}** · {escape_markdown(step.text)}")
        if step.page is not None:
            st.page_link(VIEWS / f"{step.page}.py", label=step.label, icon=ICONS.get(step.page),
                         query_params={"project": str(s.id)})

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
