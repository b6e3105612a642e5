"""The reasoning dataset D_reason: one row per gold item with its settled trace and provenance.

Which trace an item gets, in order:

1. a lead's adjudication (``adjudicated``; settled as 'none fits': the item has no trace);
2. its submitted reviews: the most common outcome, ties to the earliest submitted
   (``human-selected`` or ``human-edited``; 'none fits' wins: no trace);
3. no review: its first accepted candidate (``first-accepted``, or ``post-hoc`` for a post hoc
   explanation), as the paper does without human review.

Every row names the sampling run its trace came from (``run_id``) and the acceptance mode that
gave its rating (``acceptance_mode``: "written" by the trace, or "forced_cue": read after the
answer cue), so runs and modes can be compared. ``runs`` restricts the export to some sampling
runs: only their candidates, and only reviews and adjudications of their rounds (or of their
candidates), count; an item reviewed on another run falls back to its first accepted candidate
here.

Items with no trace are left out and counted. Formats: JSONL, Parquet, a Hugging Face
``datasets.Dataset`` saved to disk, and CSV for spreadsheets (cells that a spreadsheet would run
as a formula are prefixed with an apostrophe).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from judgeeye.auth import Actor, require
from judgeeye.review.adjudication import latest_adjudications
from judgeeye.review.errors import ReviewError
from judgeeye.review.labels import NONE, outcome_key
from judgeeye.review.traces import split_trace
from judgeeye.spreadsheet import spreadsheet_safe, write_csv  # noqa: F401 - spreadsheet_safe re-exported
from judgeeye.store import Annotator, Candidate, Codebook, Item, Project, ReviewRound, SamplingRun, Selection

FORMATS = ("jsonl", "parquet", "hf", "csv")
DEFAULT_FORMATS = ("jsonl", "parquet", "hf")
PROVENANCES = ("human-selected", "human-edited", "adjudicated", "first-accepted", "post-hoc")
FILES = {"jsonl": "d_reason.jsonl", "parquet": "d_reason.parquet", "hf": "d_reason_hf", "csv": "d_reason.csv"}
COLUMNS = ["item_id", "external_id", "split", "fields", "gold", "ratings", "codebook_version", "trace",
           "answer", "provenance", "candidate_id", "run_id", "acceptance_mode", "reviewers", "n_reviews"]


@dataclass
class ExportSummary:
    project_id: int
    rows: int = 0
    provenance: dict[str, int] = field(default_factory=dict)
    no_trace: int = 0
    rejected: int = 0
    #: the sampling runs exported (None: all of the project's)
    runs: list[int] | None = None
    #: rows per acceptance mode of their rating
    acceptance_modes: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_formats(text: str | Sequence[str]) -> list[str]:
    parts = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    bad = [p for p in parts if p not in FORMATS]
    if bad or not parts:
        raise ReviewError(f"unknown export format(s) {', '.join(bad) or '(none)'}; choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(parts))


def _majority(selections: list[Selection]) -> Selection:
    counts = Counter(outcome_key(s) for s in selections)
    top = max(counts.values())
    tied = [s for s in sorted(selections, key=lambda s: (s.updated_at, s.id)) if counts[outcome_key(s)] == top]
    return tied[0]


def reason_rows(
    session: Session, project_id: int, *, splits: Sequence[str] | None = None, runs: Sequence[int] | None = None,
) -> tuple[list[dict[str, Any]], ExportSummary]:
    """The D_reason rows of a project's gold items (optionally only some splits, and only the
    traces of some sampling runs)."""
    project = session.get(Project, project_id)
    if project is None:
        raise ReviewError(f"no project {project_id}")
    run_set = _check_runs(session, project_id, runs)
    stmt = select(Item).where(Item.project_id == project_id, Item.gold_status == "gold",
                              Item.gold.is_not(None)).order_by(Item.id)
    if splits:
        stmt = stmt.where(Item.split.in_(list(splits)))
    items = list(session.scalars(stmt).all())
    ids = [i.id for i in items]
    in_runs = _run_filter(session, project_id, run_set)
    settled = {i: a for i, a in latest_adjudications(session, ids).items() if in_runs(a.round_id, a.candidate_id)}
    reviews: dict[int, list[Selection]] = defaultdict(list)
    for s in session.scalars(select(Selection).where(Selection.item_id.in_(ids), Selection.state == "submitted")).all():
        if in_runs(s.round_id, s.candidate_id):
            reviews[s.item_id].append(s)
    names = dict(session.execute(select(Annotator.id, Annotator.name)).all())
    versions = dict(session.execute(select(Codebook.id, Codebook.version).where(Codebook.project_id == project_id)).all())
    run_codebook = dict(session.execute(select(SamplingRun.id, SamplingRun.codebook_id).where(SamplingRun.project_id == project_id)).all())
    first = _first_accepted(session, ids, run_set)
    field_names = list(project.text_fields or []) or sorted({k for i in items for k in (i.fields or {})})
    summary = ExportSummary(project_id=project_id, runs=sorted(run_set) if run_set is not None else None)
    scale = (project.scale_min, project.scale_max)
    rows: list[dict[str, Any]] = []
    for item in items:
        sels = reviews.get(item.id, [])
        candidate: Candidate | None = None
        text: str | None = None
        codebook_id: int | None = None
        if item.id in settled:
            adj = settled[item.id]
            provenance, codebook_id = "adjudicated", adj.codebook_id
            if adj.verdict == "none_fits":
                summary.rejected += 1
                continue
            candidate = session.get(Candidate, adj.candidate_id)
            text = adj.edited_text if adj.verdict == "edited" else None
        elif sels:
            pick = _majority(sels)
            if outcome_key(pick)[0] == NONE:
                summary.rejected += 1
                continue
            candidate = session.get(Candidate, pick.candidate_id)
            text = pick.edited_text if pick.verdict == "edited" else None
            provenance = "human-edited" if text is not None else "human-selected"
            codebook_id = pick.codebook_id
        else:
            candidate = first.get(item.id)
            if candidate is None:
                summary.no_trace += 1
                continue
            provenance = "post-hoc" if candidate.kind == "post_hoc" else "first-accepted"
        if candidate is None:
            summary.no_trace += 1
            continue
        codebook_id = codebook_id or run_codebook.get(candidate.run_id)
        rows.append({
            "item_id": item.id, "external_id": item.external_id, "split": item.split,
            "fields": {name: _text((item.fields or {}).get(name)) for name in field_names},
            "gold": float(item.gold) if item.gold is not None else None,
            "ratings": [{"annotator": str(k), "rating": _float(v)} for k, v in sorted((item.ratings or {}).items())],
            "codebook_version": versions.get(codebook_id) if codebook_id else None,
            "trace": text if text is not None else split_trace(candidate, scale)[0],
            "answer": candidate.answer or "",
            "provenance": provenance, "candidate_id": candidate.id, "run_id": candidate.run_id,
            "acceptance_mode": candidate.acceptance_mode,
            "reviewers": sorted(names.get(s.annotator_id, f"#{s.annotator_id}") for s in sels),
            "n_reviews": len(sels),
        })
    summary.rows = len(rows)
    summary.provenance = dict(Counter(r["provenance"] for r in rows))
    summary.acceptance_modes = dict(Counter(r["acceptance_mode"] or "none" for r in rows))
    return rows, summary


def _check_runs(session: Session, project_id: int, runs: Sequence[int] | None) -> set[int] | None:
    """The requested sampling runs, each checked to be one of the project's."""
    if runs is None:
        return None
    wanted = {int(r) for r in runs}
    known = set(session.scalars(select(SamplingRun.id).where(SamplingRun.project_id == project_id,
                                                             SamplingRun.id.in_(wanted))).all())
    missing = sorted(wanted - known)
    if missing:
        raise ReviewError(f"no sampling run {', '.join(map(str, missing))} in project {project_id}")
    return wanted


def _run_filter(session: Session, project_id: int, run_set: set[int] | None) -> Callable[[int | None, int | None], bool]:
    """Whether a review or adjudication (its round, its candidate) belongs to the exported runs:
    by its round's sampling run, else by its candidate's."""
    if run_set is None:
        return lambda round_id, candidate_id: True
    round_run = dict(session.execute(select(ReviewRound.id, ReviewRound.run_id)
                                     .where(ReviewRound.project_id == project_id)).all())

    def belongs(round_id: int | None, candidate_id: int | None) -> bool:
        if round_id is not None and round_id in round_run:
            return round_run[round_id] in run_set
        if candidate_id is None:
            return False
        return session.scalar(select(Candidate.run_id).where(Candidate.id == candidate_id)) in run_set

    return belongs


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _first_accepted(session: Session, item_ids: list[int], runs: set[int] | None = None) -> dict[int, Candidate]:
    """Each item's first accepted gold-target candidate (earliest run, lowest sample index),
    among the given runs' candidates."""
    out: dict[int, Candidate] = {}
    stmt = (select(Candidate)
            .where(Candidate.item_id.in_(item_ids), Candidate.accepted.is_(True), Candidate.target == "gold")
            .order_by(Candidate.item_id, Candidate.run_id, Candidate.sample_index))
    if runs is not None:
        stmt = stmt.where(Candidate.run_id.in_(runs))
    for cand in session.scalars(stmt).all():
        out.setdefault(cand.item_id, cand)
    return out


def _write_csv(rows: list[dict[str, Any]], path: Path, field_names: list[str]) -> None:
    columns = [c for c in COLUMNS if c != "fields"]
    header = ["item_id", "external_id", "split", *(f"field:{n}" for n in field_names), *columns[3:]]

    def values(r: dict[str, Any]) -> list[Any]:
        out = [r["item_id"], r["external_id"], r["split"], *(r["fields"].get(n) for n in field_names)]
        for c in columns[3:]:
            v = r[c]
            out.append(json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v)
        return out

    write_csv(path, header, (values(r) for r in rows))  # escapes formula-like cells


def write_rows(rows: list[dict[str, Any]], out_dir: Path, formats: Sequence[str]) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for fmt in formats:
        target = out_dir / FILES[fmt]
        if fmt == "jsonl":
            with target.open("w", encoding="utf-8") as fh:
                for r in rows:
                    fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows, schema=_schema(rows)), target)
        elif fmt == "hf":
            import datasets

            if target.exists():
                shutil.rmtree(target)
            features = datasets.Features.from_arrow_schema(_schema(rows))
            datasets.Dataset.from_list(rows, features=features).save_to_disk(str(target))
        elif fmt == "csv":
            names = list(rows[0]["fields"]) if rows else []
            _write_csv(rows, target, names)
        files[fmt] = str(target)
    return files


def _schema(rows: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    """An explicit Arrow schema, so empty or sparse exports get the same columns and types."""
    import pyarrow as pa

    names = list(rows[0]["fields"]) if rows else []
    return pa.schema([
        ("item_id", pa.int64()), ("external_id", pa.string()), ("split", pa.string()),
        ("fields", pa.struct([(n, pa.string()) for n in names]) if names else pa.struct([("text", pa.string())])),
        ("gold", pa.float64()),
        ("ratings", pa.list_(pa.struct([("annotator", pa.string()), ("rating", pa.float64())]))),
        ("codebook_version", pa.int64()), ("trace", pa.string()), ("answer", pa.string()),
        ("provenance", pa.string()), ("candidate_id", pa.int64()), ("run_id", pa.int64()),
        ("acceptance_mode", pa.string()), ("reviewers", pa.list_(pa.string())), ("n_reviews", pa.int64()),
    ])


def default_export_dir(project_id: int) -> Path:
    """Where the app writes an export: a new folder under the data folder's ``exports/``."""
    from datetime import datetime, timezone

    from judgeeye.store import data_dir

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return data_dir() / "exports" / f"project-{int(project_id)}-{stamp}"


def export_reasoning(
    session: Session,
    actor: Actor,
    project_id: int,
    out_dir: str | Path,
    formats: Sequence[str] = DEFAULT_FORMATS,
    *,
    splits: Sequence[str] | None = None,
    runs: Sequence[int] | None = None,
) -> ExportSummary:
    """Write D_reason in the given formats under ``out_dir`` plus ``manifest.json``."""
    require(actor, "export")
    formats = parse_formats(formats)
    rows, summary = reason_rows(session, project_id, splits=splits, runs=runs)
    out = Path(out_dir)
    summary.files = write_rows(rows, out, formats)
    manifest = {**summary.to_dict(), "columns": COLUMNS, "provenances": list(PROVENANCES)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return summary
