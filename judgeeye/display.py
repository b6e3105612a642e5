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
