"""JudgeEye app entry point: `judgeeye app` (or `streamlit run app.py`)."""

from __future__ import annotations

import streamlit as st

from judgeeye.projects import ensure_sample_project
from judgeeye.store import database_url

st.set_page_config(page_title="JudgeEye", page_icon=":material/visibility:", layout="wide")


@st.cache_resource(show_spinner="Preparing the store…")
def _first_start(url: str) -> int | None:
    """Once per server process and store: upgrade the schema, import the sample into an empty store."""
    return ensure_sample_project(url)


_first_start(database_url())

pages = {
    "Projects": [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/data.py", title="Data", icon=":material/upload_file:"),
        st.Page("pages/codebooks.py", title="Codebooks", icon=":material/menu_book:"),
    ],
    "Traces": [
        st.Page("pages/sample.py", title="Sample", icon=":material/psychology:"),
    ],
    "Evaluate": [
        st.Page("pages/agreement.py", title="Agreement", icon=":material/monitoring:"),
    ],
    "Models": [
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    ],
}
st.navigation(pages).run()
