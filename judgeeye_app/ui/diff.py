"""Word diffs shown as the words themselves: deleted words struck through on red, inserted words
on green, everything else as it is.

The text is never interpreted: every piece is HTML-escaped and placed in ``<del>``/``<ins>``
spans of a ``white-space: pre-wrap`` block, so Markdown (``~~``, ``**``, ``#``), HTML and line
breaks in a codebook or a trace show as the characters they are. (A Markdown rendering such as
``:red[~~somewhat simple ~~]`` shows the tildes instead of a deletion when the deleted run ends
in a space.) Any page can use it; the review page's edit diff can switch to :func:`diff_html`.
"""

from __future__ import annotations

import html

import streamlit as st

from judgeeye.codebook import CodebookDiff, word_ops
from judgeeye.display import escape_markdown

_BLOCK = ("white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.6; font-size: 0.95rem; "
          "padding: 0.5rem 0.75rem; border-radius: 0.5rem; border: 1px solid rgba(128, 128, 128, 0.3)")
_DEL = ("background: rgba(255, 75, 75, 0.18); color: inherit; text-decoration: line-through; "
        "text-decoration-color: rgba(255, 75, 75, 0.9); border-radius: 0.2rem")
_INS = "background: rgba(33, 195, 84, 0.22); color: inherit; text-decoration: none; border-radius: 0.2rem"


def _span(tag: str, style: str, text: str) -> str:
    """``text`` escaped in a ``<tag>``, the whitespace around it left outside (a tidy mark)."""
    core = text.strip()
    if not core:
        return html.escape(text)
    lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()):]
    return f'{html.escape(lead)}<{tag} style="{style}">{html.escape(core)}</{tag}>{html.escape(trail)}'


def diff_html(old: str, new: str) -> str:
    """One block of HTML: ``old`` turned into ``new`` word by word (all text escaped)."""
    out = []
    for op in word_ops(old, new):
        if op.op == "equal":
            out.append(html.escape(op.b))
        if op.op in ("delete", "replace"):
            out.append(_span("del", _DEL, op.a))
        if op.op in ("insert", "replace"):
            out.append(_span("ins", _INS, op.b))
    return f'<div class="je-diff" style="{_BLOCK}">{"".join(out)}</div>'


def show_word_diff(old: str, new: str) -> None:
    st.html(diff_html(old, new))


def show_codebook_diff(diff: CodebookDiff) -> None:
    """Every changed section of two codebooks, word by word, under its title."""
    if not diff.changed_sections:
        st.success("No differences.")
        return
    st.caption("Deleted words are struck through on red, inserted words are on green.")
    for section in diff.sections:
        if not section.changed:
            continue
        note = {"added": " (added)", "removed": " (removed)"}.get(section.status, "")
        st.markdown(f"**{escape_markdown(section.name)}**{note}")
        show_word_diff(section.a_text or "", section.b_text or "")
