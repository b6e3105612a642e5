"""Codebook files: JSON (the exchange format) and Markdown export."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import ValidationError

from judgeeye.codebook.model import CodebookError, CodebookSpec


class CodebookFileError(CodebookError, ValueError):
    """A codebook file that cannot be read; the message names the file and the bad field(s)."""

    def __init__(self, path: str | os.PathLike[str], problems: list[tuple[str, str]]):
        self.path = Path(path)
        self.problems = problems  # (field, message); field "" for whole-file problems
        self.fields = [f for f, _ in problems if f]
        details = "; ".join(f"field '{f}': {m}" if f else m for f, m in problems)
        super().__init__(f"{self.path}: invalid codebook file: {details}")


def _loc_to_field(loc: tuple[object, ...]) -> str:
    """``('rubric', 0, 'level')`` -> ``rubric[0].level``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_problems(err: ValidationError) -> list[tuple[str, str]]:
    """(field, message) pairs from a pydantic error (used by the file loader and the UI)."""
    problems = []
    for e in err.errors(include_url=False):
        msg = str(e.get("msg", "invalid"))
        msg = msg.removeprefix("Value error, ")
        problems.append((_loc_to_field(tuple(e.get("loc", ()))) or "(codebook)", msg))
    return problems


def codebook_from_dict(data: object, source: str | os.PathLike[str] = "<data>") -> CodebookSpec:
    """Validate a parsed JSON object as a codebook; errors name ``source`` and the field."""
    if not isinstance(data, dict):
        raise CodebookFileError(source, [("", "expected a JSON object at the top level")])
    try:
        return CodebookSpec.model_validate(data)
    except ValidationError as err:
        raise CodebookFileError(source, validation_problems(err)) from err


def load_codebook_file(path: str | os.PathLike[str]) -> CodebookSpec:
    """Read a codebook JSON file.

    Raises ``FileNotFoundError`` for a missing file and :class:`CodebookFileError` (a
    ``ValueError``) naming the file and each bad field for malformed JSON or invalid content.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise CodebookFileError(
            p, [("", f"not valid JSON (line {err.lineno}, column {err.colno}): {err.msg}")]
        ) from err
    return codebook_from_dict(data, p)


def codebook_to_json(spec: CodebookSpec) -> str:
    return spec.model_dump_json(indent=2) + "\n"


def save_codebook_file(spec: CodebookSpec, path: str | os.PathLike[str]) -> Path:
    """Write ``spec`` as JSON (atomically: a temporary file, then a rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(codebook_to_json(spec), encoding="utf-8")
    os.replace(tmp, p)
    return p


def to_markdown(spec: CodebookSpec) -> str:
    """A readable Markdown document of the codebook (for export and review)."""
    lines = [
        f"# {spec.name}",
        "",
        f"- **Task:** {spec.task}",
        f"- **Dimension:** {spec.dimension}",
        f"- **Rated item:** {spec.generation_type}",
        f"- **Scale:** {spec.scale_min} to {spec.scale_max}",
        "",
        "## Instructions",
        "",
        spec.instructions.strip(),
        "",
        "## Rating scale",
        "",
    ]
    if spec.rubric_intro:
        lines += [spec.rubric_intro, ""]
    for lv in spec.rubric:
        text = lv.text.replace("\n", "\n  ")
        lines.append(f"- **{lv.level}**: {text}")
    if spec.rubric_notes:
        lines += ["", spec.rubric_notes]
    if spec.instructions_after:
        lines += ["", "## Instructions after the rubric", "", spec.instructions_after]
    lines += ["", "## Output format", "", spec.rendered_output_format()]
    if spec.sources:
        lines += ["", "## Sources", ""]
        lines += [f"- {s}" for s in spec.sources]
    return "\n".join(lines) + "\n"
