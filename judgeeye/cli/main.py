"""Root of the `judgeeye` command: projects, import, app; sub-commands live beside this file."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from judgeeye.cli.codebook_cmd import codebook_app
from judgeeye.cli.refine_cmd import refine_app
from judgeeye.cli.evaluate_cmd import evaluate
from judgeeye.cli.jobs_cmd import jobs_app
from judgeeye.cli.sample_cmd import runs_app, sample
from judgeeye.cli.train_cmd import train_app
from judgeeye.cli.review_cmd import review_app
from judgeeye.cli.users_cmd import users_app
from judgeeye.cli.common import echo_store, echo_table, user_errors
from judgeeye.store import StoreNotFound, session_scope, store_exists, store_location
from judgeeye.store.db import DATA_DIR_ENV, DB_URL_ENV, allow_store_creation, legacy_store, store_source

#: the commands that work on an empty store, so may create one where none is; every other
#: command (a listing, or work on a project, run or job that must exist) refuses a missing store
CREATES_STORE = frozenset({"import", "app", "users add"})
_COMMAND_KEY = "judgeeye.command"


def command_path(group: TyperGroup, ctx: typer.Context, words: list[str]) -> str:
    """The sub-command the words name, e.g. "users add" for ``users add ann --role lead``."""
    names: list[str] = []
    command: object = group
    for word in words:
        sub = command.get_command(ctx, word) if isinstance(command, TyperGroup) else None
        if sub is None:
            break
        names.append(word)
        command = sub
    return " ".join(names)


class RootGroup(TyperGroup):
    """The `judgeeye` group: its help says where the store is (read when the help is shown, so
    it follows the environment), and every command runs under the store-creation rule above."""

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        self.epilog = (f"Store: {store_location()} ({store_source()}; {DB_URL_ENV} or {DATA_DIR_ENV} "
                       f"choose another){'' if store_exists() else ' — not created yet'}.")
        super().format_help(ctx, formatter)

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        ctx.meta[_COMMAND_KEY] = command_path(self, ctx, list(args))
        return super().parse_args(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:
        previous = allow_store_creation(ctx.meta.get(_COMMAND_KEY, "") in CREATES_STORE)
        try:
            return super().invoke(ctx)
        except StoreNotFound as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        finally:
            allow_store_creation(previous)


app = typer.Typer(
    name="judgeeye",
    cls=RootGroup,
    help="LLM raters that agree with humans: import ratings, infer traces, review, refine, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(codebook_app, name="codebook")
app.command("sample")(sample)
app.add_typer(runs_app, name="runs")
app.add_typer(jobs_app, name="jobs")
app.add_typer(refine_app, name="refine")
app.add_typer(train_app, name="train")
app.command("evaluate")(evaluate)
app.add_typer(users_app, name="users")
app.add_typer(review_app, name="review")

def _parse_named(values: list[str] | None) -> dict[str, str]:
    """`NAME=COLUMN` or `COLUMN` (the column's own name) pairs, in order."""
    out: dict[str, str] = {}
    for value in values or []:
        name, _, column = value.partition("=")
        out[name.strip()] = (column or name).strip()
    return out


def _parse_scale(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in text.replace(":", "-").split("-", 1))
    except ValueError:
        raise typer.BadParameter(f"scale must look like 1-5, got {text!r}") from None
    if lo >= hi:
        raise typer.BadParameter(f"scale minimum must be below its maximum, got {text!r}")
    return lo, hi


def _parse_ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1) > 1e-6:
        raise typer.BadParameter(f"splits must be three non-negative ratios summing to 1, e.g. 0.7,0.1,0.2; got {text!r}")
    return parts  # type: ignore[return-value]


@app.command("projects")
def projects_cmd() -> None:
    """List projects with their pipeline status."""
    from judgeeye.projects import pipeline_status

    with session_scope() as session:
        rows = [
            {
                "id": s.id, "name": s.name, "dimension": s.dimension, "scale": s.scale,
                "items": s.items, "gold": s.gold_items, "dropped": s.dropped,
                "codebook": f"v{s.current_codebook}/{s.codebook_versions}" if s.current_codebook else s.codebook_versions,
                "sampled": s.candidates, "accepted": s.accepted, "reviewed": s.reviewed,
                "training": s.training_runs,
            }
            for s in pipeline_status(session)
        ]
    echo_store()
    echo_table(rows)


@app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="CSV, JSONL or Parquet file (a folder for SummEval's split files).")],
    loader: Annotated[Optional[str], typer.Option(help="Built-in format: hanna, summeval, wmt_sqm, helpsteer2, aes2, prometheus.")] = None,
    dimension: Annotated[Optional[str], typer.Option(help="What is rated, e.g. HANNA 'complexity'.")] = None,
    project: Annotated[Optional[str], typer.Option(help="Project name (default: from the loader and dimension).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="csv, jsonl or parquet (default: by extension).")] = None,
    id_column: Annotated[Optional[str], typer.Option(help="Generic import: the id column.")] = None,
    text: Annotated[Optional[list[str]], typer.Option(help="Generic import: a text field, COLUMN or NAME=COLUMN; repeat.")] = None,
    rater: Annotated[Optional[list[str]], typer.Option(help="Generic import: one annotator's rating column, COLUMN or NAME=COLUMN; repeat.")] = None,
    label: Annotated[Optional[str], typer.Option(help="Generic import: one aggregated label column (instead of --rater).")] = None,
    group_column: Annotated[Optional[str], typer.Option(help="Generic import: what rows share (source document, prompt); rows with the same value stay in one split.")] = None,
    scale: Annotated[Optional[str], typer.Option(help="Generic import: rating scale, e.g. 1-5.")] = None,
    task: Annotated[str, typer.Option(help="Generic import: task name.")] = "rating",
    generation_type: Annotated[str, typer.Option(help="Generic import: what the items are (story, essay, ...).")] = "text",
    max_std: Annotated[float, typer.Option(help="Drop items whose raters' standard deviation exceeds this.")] = 1.0,
    splits: Annotated[str, typer.Option(help="train,validation,test ratios.")] = "0.7,0.1,0.2",
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 42,
    codebook: Annotated[Optional[str], typer.Option(help="A built-in codebook name or a codebook JSON file (default: the original for the loader and dimension).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Validate and report; write nothing.")] = False,
) -> None:
    """Import a rating dataset into a new project (one transaction: all or nothing)."""
    from judgeeye.codebook import list_builtin, load_builtin, load_codebook_file
    from judgeeye.datasets import ColumnMapping, GoldRule, SplitRule, apply_gold, load_builtin as load_dataset, read_table
    from judgeeye.auth import Actor
    from judgeeye.projects import import_with_codebook

    with user_errors():
        if loader:
            if not dimension:
                raise typer.BadParameter("--dimension is required with --loader")
            if group_column:
                raise typer.BadParameter("--group-column is for a generic import; a built-in loader "
                                         "groups its items itself (e.g. SummEval by source article)")
            dataset = load_dataset(loader, path, dimension)
        else:
            if not (id_column and text and scale and (rater or label)):
                raise typer.BadParameter(
                    "a generic import needs --id-column, --text, --scale and either --rater or --label "
                    "(or use --loader for a built-in format)"
                )
            lo, hi = _parse_scale(scale)
            mapping = ColumnMapping(
                id_column=id_column, text_columns=_parse_named(text),
                rating_columns=_parse_named(rater) or None, label_column=label,
                group_column=group_column, scale_min=lo, scale_max=hi, task=task, dimension=dimension or "quality",
                generation_type=generation_type,
            )
            dataset = read_table(path, mapping, format=fmt)
        spec = None
        if codebook:
            spec = load_builtin(codebook) if codebook in list_builtin() else load_codebook_file(Path(codebook))
        gold_rule = GoldRule(max_std=max_std)
        split_rule = SplitRule(ratios=_parse_ratios(splits), seed=seed)
        name = project or f"{dataset.loader or path.stem} {dataset.dimension}"
        if dry_run:
            stats = apply_gold(dataset, gold_rule).stats
            typer.echo(f"{path}: {len(dataset.items)} items valid; {stats.n_gold} gold, "
                       f"{stats.n_dropped} dropped (rater std > {max_std}); nothing written (--dry-run)")
            return
        with session_scope() as session:
            report = import_with_codebook(session, dataset, actor=Actor.system(), project_name=name, codebook=spec,
                                          gold_rule=gold_rule, split_rule=split_rule)
    stats = report.gold
    typer.echo(f"imported project {name!r} (id {report.project_id}) from {path}")
    typer.echo(f"  items {stats.n_items}, gold {stats.n_gold}, dropped {stats.n_dropped} "
               f"(raters' std > {max_std}), without rating {stats.n_no_rating}")
    typer.echo("  gold labels: " + ", ".join(f"{k}: {v}" for k, v in stats.to_dict()["histogram"].items()))
    order = ("train", "validation", "test")
    typer.echo("  splits: " + ", ".join(f"{k} {report.splits.get(k, 0)}" for k in order))
    if report.group_by:
        typer.echo(f"  split by {report.group_by}: {report.n_groups} groups, each in one split")


@app.command("app")
def app_cmd(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8501,
    address: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    no_sample: Annotated[bool, typer.Option(help="Do not import the bundled sample project into an empty store.")] = False,
) -> None:
    """Start the Streamlit app (imports the sample project on a first start).

    Ctrl-C or SIGTERM stops the app and its server. Jobs started from the app run detached and
    keep running to the end (stop one with `judgeeye jobs cancel ID`; it resumes later)."""
    from judgeeye.cli.server import run_until_stopped
    from judgeeye.projects import ensure_sample_project

    from judgeeye_app import ENTRY_SCRIPT as script  # the installed app package (imports no streamlit)

    if not store_exists():
        legacy = legacy_store()
        typer.echo(f"first start: creating the store at {store_location()}")
        if legacy is not None:
            typer.echo(f"  a store of an earlier version is at {legacy}; to use it instead, stop (Ctrl-C) "
                       f"and start again with {DATA_DIR_ENV}={legacy.parent}")
    if not no_sample:
        created = ensure_sample_project()
        if created:
            typer.echo(f"first start: imported the sample project (id {created})")
    _first_admin()
    echo_store()
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
           "--server.address", address, "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "minimal", "--server.maxUploadSize", "1024"]
    code = run_until_stopped(cmd, os.environ.copy())
    _jobs_left_running()
    raise typer.Exit(code)


def _jobs_left_running() -> None:
    """Say which jobs outlive the app (workers are detached so that a page reload or an app
    restart never loses a job) and how to follow or stop them."""
    from sqlalchemy import select

    from judgeeye.jobs import reconcile
    from judgeeye.store import Job

    with session_scope() as session:
        reconcile(session)  # a worker that died meanwhile is not "running"
        running = session.scalars(select(Job).where(Job.status == "running").order_by(Job.id)).all()
        for job in running:
            typer.echo(f"job {job.id} ({job.kind}) keeps running in the background: `judgeeye jobs show {job.id}` "
                       f"follows it, `judgeeye jobs cancel {job.id}` stops it at a safe point (resumable)")


def _first_admin() -> None:
    """A store without users gets an admin; its password is printed here, once."""
    from judgeeye.auth import FIRST_ADMIN, ensure_first_admin

    with session_scope() as session:
        password = ensure_first_admin(session)
    if password:
        typer.echo(f"first start: created user {FIRST_ADMIN!r} with password {password}  "
                   "(shown once; log in and change it on the Users page)")


def main() -> None:
    app()
