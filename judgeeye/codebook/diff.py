"""Differences between two codebooks, per section and word by word.

``diff_codebooks(a, b)`` compares the instructions, every rubric level (by level number) and the
output format. Each section carries word-level ops (``equal``/``insert``/``delete``/``replace``)
whose texts, joined, give back the old (``a_text``) and new (``b_text``) section exactly, so a UI
can colour them; ``unified_text()`` is a plain unified diff of the rendered codebooks for the CLI.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Literal

from judgeeye.codebook.model import CodebookSpec
from judgeeye.codebook.render import render_codebook

OpKind = Literal["equal", "insert", "delete", "replace"]
SectionStatus = Literal["unchanged", "changed", "added", "removed"]

_TOKEN = re.compile(r"\s*\S+\s*|\s+")


@dataclass(frozen=True)
class DiffOp:
    """One run of words: ``a`` is the old text, ``b`` the new (both equal for ``equal``)."""

    op: OpKind
    a: str
    b: str

    @property
    def kind(self) -> OpKind:
        """Alias of ``op``."""
        return self.op

    @property
    def old(self) -> str:
        """The old text (alias of ``a``)."""
        return self.a

    @property
    def text(self) -> str:
        """The text to show: the new text, or the old one for a ``delete``."""
        return self.a if self.op == "delete" else self.b

    def to_dict(self) -> dict[str, str]:
        return {"op": self.op, "a": self.a, "b": self.b}


@dataclass
class SectionDiff:
    """The diff of one section: ``instructions``, ``rubric:<level>``, ``output_format`` or ``scale``."""

    key: str
    title: str
    a_text: str | None
    b_text: str | None
    ops: list[DiffOp] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Alias of ``title`` (e.g. "Level 3")."""
        return self.title

    @property
    def status(self) -> SectionStatus:
        if self.a_text is None:
            return "added"
        if self.b_text is None:
            return "removed"
        return "unchanged" if self.a_text == self.b_text else "changed"

    @property
    def changed(self) -> bool:
        return self.status != "unchanged"

    def to_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "title": self.title,
            "status": self.status,
            "a": self.a_text,
            "b": self.b_text,
            "ops": [op.to_dict() for op in self.ops],
        }


@dataclass
class CodebookDiff:
    a: CodebookSpec
    b: CodebookSpec
    sections: list[SectionDiff]
    a_label: str = "a"
    b_label: str = "b"

    @property
    def changed_sections(self) -> list[str]:
        """Keys of the sections that differ, in codebook order."""
        return [s.key for s in self.sections if s.changed]

    @property
    def has_changes(self) -> bool:
        return bool(self.changed_sections)

    def __bool__(self) -> bool:  # "if diff:" means "if anything changed"
        return self.has_changes

    def section(self, key: str) -> SectionDiff:
        for s in self.sections:
            if s.key == key:
                return s
        raise KeyError(key)

    def unified_text(self, context: int = 3) -> str:
        """A unified diff of the two rendered codebooks ("" when they render the same)."""
        lines = difflib.unified_diff(
            render_codebook(self.a).splitlines(),
            render_codebook(self.b).splitlines(),
            fromfile=self.a_label,
            tofile=self.b_label,
            n=context,
            lineterm="",
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "a": self.a_label,
            "b": self.b_label,
            "changed_sections": self.changed_sections,
            "sections": [s.to_dict() for s in self.sections],
        }


def _tokens(text: str) -> list[str]:
    """Words with their surrounding whitespace; ``"".join(tokens) == text``."""
    return _TOKEN.findall(text)


def word_ops(a: str, b: str) -> list[DiffOp]:
    """Word-level ops turning ``a`` into ``b`` (whitespace changes alone do not count)."""
    ta, tb = _tokens(a), _tokens(b)
    ka, kb = [t.strip() for t in ta], [t.strip() for t in tb]
    matcher = difflib.SequenceMatcher(None, ka, kb, autojunk=False)
    ops: list[DiffOp] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        ops.append(DiffOp(tag, "".join(ta[i1:i2]), "".join(tb[j1:j2])))  # type: ignore[arg-type]
    return ops


def _section(key: str, title: str, a: str | None, b: str | None) -> SectionDiff:
    return SectionDiff(key, title, a, b, word_ops(a or "", b or ""))


def diff_codebooks(
    a: CodebookSpec, b: CodebookSpec, *, a_label: str = "a", b_label: str = "b"
) -> CodebookDiff:
    """Compare two codebooks section by section (``a`` old, ``b`` new).

    Sections: ``instructions``, ``rubric:<level>`` for every level in either codebook (ascending),
    ``output_format`` (as rendered, placeholders filled), ``scale`` only when the scales differ,
    and ``rubric_intro``, ``rubric_notes``, ``instructions_after`` only when either codebook has
    that part (an absent part counts as empty text, so adding one shows as an insertion).
    """
    sections = [_section("instructions", "Instructions", a.instructions, b.instructions)]
    if (a.scale_min, a.scale_max) != (b.scale_min, b.scale_max):
        sections.append(
            _section(
                "scale",
                "Scale",
                f"{a.scale_min} to {a.scale_max}",
                f"{b.scale_min} to {b.scale_max}",
            )
        )
    if a.rubric_intro or b.rubric_intro:
        sections.append(_section("rubric_intro", "Rating scale: lead-in", a.rubric_intro, b.rubric_intro))
    for level in sorted(set(a.levels) | set(b.levels)):
        sections.append(
            _section(f"rubric:{level}", f"Level {level}", a.level_text(level), b.level_text(level))
        )
    for key, title in (("rubric_notes", "Rating scale: notes"), ("instructions_after", "Instructions after the rubric")):
        if getattr(a, key) or getattr(b, key):
            sections.append(_section(key, title, getattr(a, key), getattr(b, key)))
    sections.append(
        _section(
            "output_format",
            "Output format",
            a.rendered_output_format(),
            b.rendered_output_format(),
        )
    )
    return CodebookDiff(a, b, sections, a_label, b_label)
