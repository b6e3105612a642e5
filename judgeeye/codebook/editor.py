"""What the side-by-side codebook editor needs: building the edited codebook, the default pair
of versions to show, and saving without ever overwriting someone else's save.

A save is refused (:class:`~judgeeye.codebook.versions.StaleVersionError`, which carries the diff
of what changed) when the project's current version is no longer the one the editor saw when it
opened: someone saved meanwhile. The editor then shows that diff and the author decides.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError
from sqlalchemy.orm import Session

from judgeeye.auth import Actor, require
from judgeeye.codebook.io import validation_problems
from judgeeye.codebook.model import CodebookError, CodebookSpec
from judgeeye.codebook.versions import (
    create_version,
    current_version,
    get_version,
    lineage,
    list_versions,
    set_current,
    to_spec,
)
from judgeeye.store import Codebook


class EditError(CodebookError, ValueError):
    """An edit that cannot be saved (an empty section, nothing changed); names the field."""


def edited_spec(base: CodebookSpec, instructions: str, levels: Mapping[int, str], *,
                rubric_intro: str | None = None, rubric_notes: str | None = None,
                instructions_after: str | None = None) -> CodebookSpec:
    """``base`` with new instructions and level texts (every level of ``base`` must be given), and
    the optional parts around the rubric where given (``None`` keeps ``base``'s)."""
    missing = [lv for lv in base.levels if lv not in levels]
    if missing:
        raise EditError(f"rubric level(s) {', '.join(map(str, missing))} missing from the edit")
    data = base.model_dump()
    data["instructions"] = instructions
    data["rubric"] = [{"level": lv, "text": levels[lv]} for lv in base.levels]
    for key, value in (("rubric_intro", rubric_intro), ("rubric_notes", rubric_notes),
                       ("instructions_after", instructions_after)):
        if value is not None:
            data[key] = value
    try:
        return CodebookSpec.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"field '{f}': {m}" for f, m in validation_problems(err))
        raise EditError(f"cannot save this codebook: {problems}") from None


def default_pair(session: Session, project_id: int) -> tuple[int, int] | None:
    """(left, right) versions to open: the original the newest version descends from, and the
    newest version (a refined one, usually)."""
    versions = list_versions(session, project_id)
    if not versions:
        return None
    newest = versions[-1]
    root = lineage(session, newest.id)[-1]
    return root.version, newest.version


def save_edit(session: Session, project_id: int, spec: CodebookSpec, *, actor: Actor, edited_from: int,
              seen_current: int, note: str | None = None) -> Codebook:
    """Store the edit as a new current version whose parent is ``edited_from``, by ``actor``
    (who must hold ``edit_codebook``).

    ``seen_current`` is the project's current version when the editor opened; if it changed
    since, :class:`StaleVersionError` is raised with the diff and nothing is written.
    """
    require(actor, "edit_codebook")
    source = get_version(session, project_id, edited_from)
    current = current_version(session, project_id)
    if to_spec(source) == spec and current is not None and current.version == seen_current:
        raise EditError(f"nothing to save: the edit is identical to version {edited_from}")
    return create_version(session, project_id, spec, parent_id=source.id, origin="edited", author=actor.name,
                          note=(note or "").strip() or None, make_current=True,
                          expected_parent_version=seen_current)


def make_current(session: Session, project_id: int, version: int, *, actor: Actor) -> Codebook:
    """Make ``version`` the project's current codebook (e.g. to roll back), by an author."""
    require(actor, "edit_codebook")
    return set_current(session, project_id, version)
