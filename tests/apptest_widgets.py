"""Finding widgets in AppTest by what the user reads."""

from __future__ import annotations

from typing import Any

from streamlit.testing.v1 import AppTest


def box(at: AppTest, label: str) -> Any:
    """The select box labelled ``label`` (boxes over runs are keyed by their option labels too:
    judgeeye_app/ui/live_select.py)."""
    found = [b for b in at.selectbox if b.label == label]
    assert len(found) == 1, (label, [b.label for b in at.selectbox])
    return found[0]
