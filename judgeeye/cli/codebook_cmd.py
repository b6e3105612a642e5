"""`judgeeye codebook show|list|export|import|diff|builtin`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from judgeeye.cli.common import echo_table, user_errors
from judgeeye.store import session_scope

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from judgeeye.codebook import CodebookSpec
    from judgeeye.store import Codebook, Project

codebook_app = typer.Typer(help="Show, export, import and diff codebook versions.", no_args_is_help=True)

ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="Project name or id.")]
VersionOpt = Annotated[int | None, typer.Option("--version", "-v", help="Version (default: current).")]


def _spec(session: Session, project_ref: str, version: int | None) -> tuple[Project, Codebook, CodebookSpec]:
    from judgeeye.codebook import CodebookNotFoundError, current_version, get_version, to_spec
    from judgeeye.projects import find_project

    project = find_project(session, project_ref)
    row = get_version(session, project.id, version) if version else current_version(session, project.id)
    if row is None:
        raise CodebookNotFoundError(f"project {project.name!r} has no codebook version {version or '(current)'}")
    return project, row, to_spec(row, project)


@codebook_app.command("show")
def show(project: ProjectOpt, version: VersionOpt = None) -> None:
    """Print a codebook version as the rater sees it."""
    from judgeeye.codebook import render_codebook

    with user_errors(), session_scope() as session:
        _, row, spec = _spec(session, project, version)
        typer.echo(f"# version {row.version} ({row.origin})\n")
        typer.echo(render_codebook(spec))


@codebook_app.command("list")
def list_cmd(project: ProjectOpt) -> None:
    """Version history: parent, origin, author, note."""
    from judgeeye.codebook import list_versions
    from judgeeye.projects import find_project

    with user_errors(), session_scope() as session:
        p = find_project(session, project)
        by_id: dict[int | None, int] = {}
        rows = []
        for v in list_versions(session, p.id):
            by_id[v.id] = v.version
            rows.append({
                "version": v.version, "current": "*" if v.id == p.current_codebook_id else "",
                "parent": by_id.get(v.parent_id), "origin": v.origin, "author": v.author,
                "created": v.created_at.strftime("%Y-%m-%d %H:%M"), "note": (v.note or "")[:60],
            })
    echo_table(rows)


@codebook_app.command("export")
def export(
    project: ProjectOpt,
    version: VersionOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json or md.")] = "json",
) -> None:
    """Export a version as JSON (re-importable) or Markdown."""
    from judgeeye.codebook import to_markdown

    with user_errors(), session_scope() as session:
        _, _, spec = _spec(session, project, version)
    if fmt not in ("json", "md"):
        raise typer.BadParameter("--format must be json or md")
    text = spec.model_dump_json(indent=2) if fmt == "json" else to_markdown(spec)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text)


@codebook_app.command("import")
def import_cmd(
    project: ProjectOpt,
    path: Annotated[Path, typer.Argument(help="Codebook JSON file.")],
    note: Annotated[str | None, typer.Option(help="Why this version exists.")] = None,
    author: Annotated[str | None, typer.Option(help="Who wrote it.")] = None,
) -> None:
    """Add a codebook file as the project's new current version (child of the current one)."""
    from judgeeye.codebook import create_version, current_version, load_codebook_file
    from judgeeye.projects import find_project

    with user_errors(), session_scope() as session:
        spec = load_codebook_file(path)
        p = find_project(session, project)
        if (spec.scale_min, spec.scale_max) != (p.scale_min, p.scale_max):
            typer.echo(f"error: {path}: field 'scale_min'/'scale_max': codebook scale "
                       f"{spec.scale_min}-{spec.scale_max} differs from the project's {p.scale_min}-{p.scale_max}", err=True)
            raise typer.Exit(2)
        parent = current_version(session, p.id)
        row = create_version(session, p.id, spec, parent_id=parent.id if parent else None,
                             origin="imported", author=author, note=note or f"imported from {path.name}")
        typer.echo(f"project {p.name!r}: version {row.version} is now current")


@codebook_app.command("diff")
def diff(
    project: ProjectOpt,
    a: Annotated[int, typer.Argument(help="Older version.")],
    b: Annotated[int, typer.Argument(help="Newer version.")],
) -> None:
    """Unified diff of two versions, section by section."""
    from judgeeye.codebook import diff_codebooks

    with user_errors(), session_scope() as session:
        _, _, spec_a = _spec(session, project, a)
        _, _, spec_b = _spec(session, project, b)
    result = diff_codebooks(spec_a, spec_b)
    text = result.unified_text()
    typer.echo(text if text.strip() else f"versions {a} and {b} are identical")


@codebook_app.command("builtin")
def builtin() -> None:
    """The original codebooks shipped with JudgeEye."""
    from judgeeye.codebook import list_builtin, load_builtin

    rows = []
    for name in list_builtin():
        spec = load_builtin(name)
        rows.append({"name": name, "task": spec.task, "dimension": spec.dimension,
                     "scale": f"{spec.scale_min}-{spec.scale_max}"})
    echo_table(rows)
