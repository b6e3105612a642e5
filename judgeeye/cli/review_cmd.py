"""`judgeeye review open-round|rounds|close-round|progress|agreement|export`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from judgeeye.cli.common import echo_table, user_errors

review_app = typer.Typer(help="Select-and-validate: review rounds, progress, agreement, export of D_reason.",
                         no_args_is_help=True)


def _project_id(ref: str) -> int:
    from judgeeye.projects import find_project
    from judgeeye.store import session_scope

    with session_scope() as session:
        return find_project(session, ref).id


@contextmanager
def _review_errors() -> Iterator[None]:
    """Bad review input ends the command with one line on stderr and exit status 2."""
    from judgeeye.auth import AccessDenied, UserError
    from judgeeye.review import ReviewError

    with user_errors(ReviewError, UserError, AccessDenied):
        yield


@review_app.command("open-round")
def open_round_cmd(
    run: Annotated[int, typer.Option(help="Sampling run whose candidates are reviewed.")],
    annotator: Annotated[list[str], typer.Option(help="An annotator's user name; repeat.")],
    overlap: Annotated[int, typer.Option(help="Reviewers per item.")] = 1,
    high_overlap: Annotated[int, typer.Option(help="Reviewers per item on the agreement share.")] = 2,
    share: Annotated[float, typer.Option(help="Share of items (0-1) reviewed by --high-overlap people, for agreement.")] = 0.0,
    include_unaccepted: Annotated[bool, typer.Option(
        help="Also items without an accepted candidate (all candidates shown).")] = False,
    max_shown: Annotated[int, typer.Option(help="Candidates shown per item (1-9).")] = 9,
    lease_minutes: Annotated[int, typer.Option(help="How long an item stays with an annotator who does not act on it.")] = 30,
    name: Annotated[str | None, typer.Option(help="Round name.")] = None,
    seed: Annotated[int, typer.Option(help="Seed choosing the agreement share.")] = 0,
) -> None:
    """Open a review round on a sampling run."""
    from judgeeye.auth import Actor
    from judgeeye.review import open_round, round_progress
    from judgeeye.store import session_scope

    with _review_errors():
        with session_scope() as session:
            rnd = open_round(session, Actor.system(), run, annotator, overlap=overlap, high_overlap=high_overlap,
                             high_overlap_share=share, include_unaccepted=include_unaccepted, max_shown=max_shown,
                             lease_minutes=lease_minutes, name=name, seed=seed)
            progress = round_progress(session, rnd.id)
    typer.echo(f"opened review round {progress.round_id} {progress.name!r}: {progress.items} items, "
               f"{progress.reviews_required} reviews needed from {', '.join(progress.annotators)}")


@review_app.command("rounds")
def rounds_cmd(project: Annotated[str | None, typer.Option("--project", "-p", help="Project name or id.")] = None) -> None:
    """Review rounds and how far they are."""
    from judgeeye.review import list_rounds, round_progress
    from judgeeye.store import session_scope

    with _review_errors():
        pid = _project_id(project) if project else None
        with session_scope() as session:
            rows = []
            for rnd in list_rounds(session, pid):
                p = round_progress(session, rnd.id)
                rows.append({"id": rnd.id, "name": p.name, "run": rnd.run_id, "status": p.status, "items": p.items,
                             "done": p.done, "reviews": f"{p.reviews_submitted}/{p.reviews_required}",
                             "skipped": p.skipped, "annotators": ", ".join(p.annotators)})
    echo_table(rows)


@review_app.command("close-round")
def close_round_cmd(round_id: int, reopen: Annotated[bool, typer.Option(help="Open it again instead.")] = False) -> None:
    """Close a round: nothing more is handed out."""
    from judgeeye.auth import Actor
    from judgeeye.review import set_round_status
    from judgeeye.store import session_scope

    with _review_errors():
        with session_scope() as session:
            set_round_status(session, Actor.system(), round_id, "open" if reopen else "closed")
    typer.echo(f"round {round_id} {'reopened' if reopen else 'closed'}")


@review_app.command("progress")
def progress_cmd(project: Annotated[str, typer.Option("--project", "-p", help="Project name or id.")]) -> None:
    """Each annotator's progress and pace, and agreement on the chosen traces."""
    from judgeeye.review import annotator_progress, choice_agreement
    from judgeeye.store import session_scope

    with _review_errors():
        pid = _project_id(project)
        with session_scope() as session:
            table = annotator_progress(session, pid)
            agreement = choice_agreement(session, pid)
    rows = table.drop(columns=["last_active"]).to_dict("records")
    for row in rows:
        row["pace_per_hour"] = "" if math.isnan(row["pace_per_hour"]) else f"{row['pace_per_hour']:.0f}"
    echo_table(rows)
    pa, kappa = agreement["percent_agreement"], agreement["fleiss_kappa"]
    typer.echo(f"items with >= 2 reviews: {agreement['n_items']}; percent agreement "
               f"{'n/a' if math.isnan(pa) else f'{pa:.1%}'}; Fleiss' kappa "
               f"{'n/a' if math.isnan(kappa) else f'{kappa:.3f}'} (on {agreement['fleiss_items']} items with "
               f"{agreement['raters_per_item']} reviewers)")


@review_app.command("export")
def export_cmd(
    project: Annotated[str, typer.Option("--project", "-p", help="Project name or id.")],
    out: Annotated[Path, typer.Option(help="Folder to write into (created).")],
    fmt: Annotated[str, typer.Option("--format", help="Comma-separated: jsonl, parquet, hf, csv.")] = "jsonl,parquet,hf",
    split: Annotated[list[str] | None, typer.Option(help="Only these splits (repeat); default all.")] = None,
    run: Annotated[list[int] | None,
                   typer.Option(help="Only the traces of this sampling run (repeat); default all runs.")] = None,
) -> None:
    """Export the reasoning dataset D_reason: one row per gold item with its trace, the sampling
    run it came from, the acceptance mode of its rating, and its provenance."""
    from judgeeye.auth import Actor
    from judgeeye.review import export_reasoning, parse_formats
    from judgeeye.store import session_scope

    with _review_errors():
        formats = parse_formats(fmt)
        pid = _project_id(project)
        with session_scope() as session:
            summary = export_reasoning(session, Actor.system(), pid, out, formats, splits=split, runs=run)
    typer.echo(f"D_reason: {summary.rows} rows"
               + (f" from sampling run(s) {', '.join(map(str, summary.runs))}" if summary.runs else "") + " ("
               + ", ".join(f"{k} {v}" for k, v in sorted(summary.provenance.items())) + "; rating "
               + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(summary.acceptance_modes.items())) + ")"
               + f"; left out: {summary.rejected} settled as none fits, {summary.no_trace} without a trace")
    for fmt_name, path in summary.files.items():
        typer.echo(f"  {fmt_name}: {path}")
