"""Making user text (items, traces, codebooks, names) safe to show as Markdown.

Streamlit renders Markdown; text from datasets and models must come out as the literal
characters, never as links, HTML or formatting.
"""

from __future__ import annotations

import re

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:])")


def escape_markdown(text: str) -> str:
    """Backslash-escape every Markdown-significant character (HTML tags included)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def snippet(text: str, words: int = 10) -> str:
    """The first ``words`` words of a text, on one line (an item's title where its id means
    nothing to a reader); "…" marks a cut."""
    parts = str(text).split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")
