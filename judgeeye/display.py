"""Making user text (items, traces, codebooks, names) safe to show as Markdown, and numbers
and names read as words.

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


def plural(n: float, word: str) -> str:
    """``n`` and ``word``, with an s unless ``n`` is 1 ("1 step", "3 steps", "2.5 epochs")."""
    return f"{n:g} {word}" if n == 1 else f"{n:g} {word}s"


def duration(seconds: float | None) -> str:
    """A time span in words ("45 s", "3 min 05 s", "43 h 56 min"; "unknown" for None)."""
    if seconds is None:
        return "unknown"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {(seconds % 3600) // 60:02.0f} min"


def field_title(name: str) -> str:
    """An item field's name as a heading ("human_story" → "Human story"): the stored name stays
    what the prompt uses; readers see words."""
    words = str(name).replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else str(name)
