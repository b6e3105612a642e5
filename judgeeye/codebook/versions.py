"""Codebook versions in the store.

Versions are immutable rows of ``Codebook``, numbered 1, 2, ... per project, each with an optional
parent (the version it was derived from) and an origin (``original``, ``edited``,
``refined_instructions``, ``refined_rubric``, ``refined_both``, ``imported`` ...). The project
points at its current version. All functions take an open SQLAlchemy session and never commit.

Where things live: the rubric is stored as a JSON list of ``{"level", "text"}``; task, dimension,
generation type and scale belong to the project; the spec's ``sources`` are kept in
``Codebook.inputs["sources"]``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from judgeeye.codebook.diff import CodebookDiff, diff_codebooks
from judgeeye.codebook.model import (
    CodebookError,
    CodebookNotFoundError,
    CodebookSpec,
    RubricLevel,
)
from judgeeye.store.models import Codebook, Project


#: how each origin reads to a user
ORIGIN_LABELS = {
    "original": "original", "imported": "imported", "edited": "edited",
    "refined_instructions": "refined instructions", "refined_rubric": "refined rubric",
    "refined_both": "refined instructions and rubric", "refined_feedback": "revised from validation feedback",
    "rejected_feedback": "revision not kept (validation)",
}


def describe_origin(origin: str) -> str:
    """A version's origin in words (``refined_both`` -> "refined instructions and rubric")."""
    return ORIGIN_LABELS.get(origin, origin.replace("_", " "))


class CodebookScaleError(CodebookError, ValueError):
    """A codebook whose scale differs from its project's."""


class StaleVersionError(CodebookError, RuntimeError):
    """A save based on a version that is no longer the project's current one.

    ``diff`` compares what the caller edited from (``expected_version``) with the current version
    (``None`` when either does not exist), so the editor can show what changed meanwhile.
    """

    def __init__(
        self,
        project_id: int,
        expected_version: int,
        current_version: int | None,
        diff: CodebookDiff | None,
    ):
        self.project_id = project_id
        self.expected_version = expected_version
        self.current_version = current_version
        self.diff = diff
        current = "no current version" if current_version is None else f"version {current_version}"
        super().__init__(
            f"codebook of project {project_id} changed while you were editing: you started from "
            f"version {expected_version}, the current one is {current}; "
            "review the changes and save again"
        )


def _project(session: Session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise CodebookNotFoundError(f"no project with id {project_id}")
    return project


def _current_row(session: Session, project: Project) -> Codebook | None:
    if project.current_codebook_id is None:
        return None
    return session.get(Codebook, project.current_codebook_id)


def to_spec(row: Codebook, project: Project | None = None) -> CodebookSpec:
    """The :class:`CodebookSpec` of a stored version (task, dimension and scale from the project)."""
    if project is None:
        session = object_session(row)
        if session is None:
            raise ValueError("to_spec needs the project for a codebook row outside a session")
        project = _project(session, row.project_id)
    inputs = row.inputs or {}
    return CodebookSpec(
        name=row.name,
        task=project.task,
        dimension=project.dimension,
        generation_type=project.generation_type or "text",
        scale_min=project.scale_min,
        scale_max=project.scale_max,
        instructions=row.instructions,
        rubric=[RubricLevel.model_validate(lv) for lv in (row.rubric or [])],
        rubric_intro=row.rubric_intro or "",
        rubric_notes=row.rubric_notes or "",
        instructions_after=row.instructions_after or "",
        output_format=row.output_format,
        sources=list(inputs.get("sources") or []),
    )


def list_versions(session: Session, project_id: int) -> list[Codebook]:
    """Every version of the project's codebook, oldest first."""
    stmt = select(Codebook).where(Codebook.project_id == project_id).order_by(Codebook.version)
    return list(session.scalars(stmt))


def get_version(session: Session, project_id: int, version: int) -> Codebook:
    """One version; :class:`CodebookNotFoundError` when it does not exist."""
    stmt = select(Codebook).where(Codebook.project_id == project_id, Codebook.version == version)
    row = session.scalars(stmt).first()
    if row is None:
        raise CodebookNotFoundError(f"project {project_id} has no codebook version {version}")
    return row


def current_version(session: Session, project_id: int) -> Codebook | None:
    """The project's current version (``None`` when it has none yet)."""
    return _current_row(session, _project(session, project_id))


def current_spec(session: Session, project_id: int) -> CodebookSpec | None:
    project = _project(session, project_id)
    row = _current_row(session, project)
    return None if row is None else to_spec(row, project)


def set_current(session: Session, project_id: int, version: int) -> Codebook:
    """Make ``version`` the project's current codebook (e.g. to roll back)."""
    project = _project(session, project_id)
    row = get_version(session, project_id, version)
    project.current_codebook_id = row.id
    session.flush()
    return row


def create_version(
    session: Session,
    project_id: int,
    spec: CodebookSpec,
    *,
    parent_id: int | None = None,
    origin: str = "original",
    author: str | None = None,
    note: str | None = None,
    inputs: dict[str, Any] | None = None,
    make_current: bool = True,
    expected_parent_version: int | None = None,
) -> Codebook:
    """Store ``spec`` as the project's next version (max + 1) and return the new row.

    ``expected_parent_version``: the version the caller edited from. When given and it is not
    the project's current version, nothing is written and :class:`StaleVersionError` is raised;
    when it matches and ``parent_id`` is not given, the new version's parent is that version.
    The spec's scale must equal the project's.
    """
    project = _project(session, project_id)
    if (spec.scale_min, spec.scale_max) != (project.scale_min, project.scale_max):
        raise CodebookScaleError(
            f"codebook scale {spec.scale_min}..{spec.scale_max} does not match project "
            f"{project.name!r} scale {project.scale_min}..{project.scale_max}"
        )

    if expected_parent_version is not None:
        current = _current_row(session, project)
        if current is None or current.version != expected_parent_version:
            diff = None
            if current is not None:
                try:
                    base = get_version(session, project_id, expected_parent_version)
                except CodebookNotFoundError:
                    base = None
                if base is not None:
                    diff = diff_codebooks(
                        to_spec(base, project),
                        to_spec(current, project),
                        a_label=f"version {base.version}",
                        b_label=f"version {current.version} (current)",
                    )
            raise StaleVersionError(
                project_id,
                expected_parent_version,
                None if current is None else current.version,
                diff,
            )
        if parent_id is None:
            parent_id = current.id

    if parent_id is not None:
        parent = session.get(Codebook, parent_id)
        if parent is None or parent.project_id != project_id:
            raise CodebookNotFoundError(
                f"parent codebook {parent_id} does not exist in project {project_id}"
            )

    last = session.scalar(
        select(func.max(Codebook.version)).where(Codebook.project_id == project_id)
    )
    row_inputs = dict(inputs or {})
    if spec.sources and "sources" not in row_inputs:
        row_inputs["sources"] = list(spec.sources)
    row = Codebook(
        project_id=project_id,
        version=(last or 0) + 1,
        parent_id=parent_id,
        name=spec.name,
        instructions=spec.instructions,
        rubric=spec.rubric_json(),
        rubric_intro=spec.rubric_intro,
        rubric_notes=spec.rubric_notes,
        instructions_after=spec.instructions_after,
        output_format=spec.output_format,
        origin=origin,
        author=author,
        note=note,
        inputs=row_inputs,
    )
    session.add(row)
    session.flush()
    if make_current:
        project.current_codebook_id = row.id
        session.flush()
    return row


def lineage(session: Session, codebook_id: int) -> list[Codebook]:
    """The version and its ancestors, newest first (the version itself, its parent, ...)."""
    chain: list[Codebook] = []
    seen: set[int] = set()
    next_id: int | None = codebook_id
    while next_id is not None and next_id not in seen:
        row = session.get(Codebook, next_id)
        if row is None:
            if not chain:
                raise CodebookNotFoundError(f"no codebook with id {codebook_id}")
            break
        chain.append(row)
        seen.add(next_id)
        next_id = row.parent_id
    return chain
