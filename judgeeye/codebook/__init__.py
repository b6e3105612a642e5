"""Codebooks: instructions + ordered rubric levels; rendering, parsing, diffs, files, versions."""

from judgeeye.codebook.builtin import assets_dir, builtin_path, list_builtin, load_builtin
from judgeeye.codebook.diff import CodebookDiff, DiffOp, SectionDiff, diff_codebooks, word_ops
from judgeeye.codebook.io import (
    CodebookFileError,
    codebook_from_dict,
    codebook_to_json,
    load_codebook_file,
    save_codebook_file,
    to_markdown,
)
from judgeeye.codebook.model import DEFAULT_OUTPUT_FORMAT, CodebookError, CodebookSpec, RubricLevel
from judgeeye.codebook.render import (
    CodebookParseError,
    CodebookParts,
    field_tag,
    parse_codebook_text,
    render_codebook,
    render_guidelines,
    render_item,
    render_prompt,
    render_prompt_text,
    render_rubric,
    split_codebook_text,
)
from judgeeye.codebook.versions import (
    CodebookNotFoundError,
    CodebookScaleError,
    StaleVersionError,
    create_version,
    current_spec,
    current_version,
    get_version,
    lineage,
    list_versions,
    set_current,
    to_spec,
)

__all__ = [
    "DEFAULT_OUTPUT_FORMAT", "CodebookDiff", "CodebookError", "CodebookFileError",
    "CodebookNotFoundError", "CodebookScaleError",
    "CodebookParseError", "CodebookParts", "CodebookSpec", "DiffOp", "RubricLevel", "SectionDiff",
    "StaleVersionError", "assets_dir", "builtin_path", "codebook_from_dict", "codebook_to_json",
    "create_version", "current_spec", "current_version", "diff_codebooks", "field_tag",
    "get_version", "lineage", "list_builtin", "list_versions", "load_builtin",
    "load_codebook_file", "parse_codebook_text", "render_codebook", "render_guidelines",
    "render_item", "render_prompt", "render_prompt_text", "render_rubric", "save_codebook_file",
    "set_current", "split_codebook_text", "to_markdown", "to_spec", "word_ops",
]
