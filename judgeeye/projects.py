"""Projects as the user sees them: lookup, pipeline status and the next step, importing with a
codebook, the sample.

The CLI and the app's pages both call these, so the two never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from judgeeye.auth.roles import Actor, can_see_page, require
from judgeeye.codebook import CodebookSpec, RubricLevel, create_version, list_builtin, load_builtin
from judgeeye.datasets import (
    DatasetError,
    GoldRule,
    ImportReport,
    ParsedDataset,
    SplitRule,
    import_dataset,
    load_builtin as load_builtin_dataset,
)
from judgeeye.store import (
    Candidate,
    Codebook,
    Item,
    Job,
    Project,
    RaterRun,
    ReviewRound,
    ReviewTask,
    SamplingRun,
    Selection,
    TrainingRun,
    session_scope,
)

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
SAMPLE_FILE = ASSETS_DIR / "sample" / "hanna_sample.csv"
SAMPLE_PROJECT = "HANNA story complexity (sample)"


class ProjectNotFound(LookupError):
    pass


@dataclass
class PipelineStatus:
    """One row of the home page: how far a project has come through the pipeline."""

    id: int
    name: str
    task: str
    dimension: str
    scale: str
    items: int = 0
    gold_items: int = 0
    dropped: int = 0
    codebook_versions: int = 0
    current_codebook: int | None = None
    sampling_runs: int = 0
    candidates: int = 0
    accepted: int = 0
    items_with_accepted: int = 0
    reviewed: int = 0
    training_runs: int = 0
    rater_runs: int = 0
    open_rounds: int = 0
    #: items of open rounds that wait for a review by the user the status was asked for
    items_to_review: int = 0
    #: kinds of this project's queued or running jobs ("sample", "train", ...)
    active_jobs: set[str] = field(default_factory=set)
    splits: dict[str, int] = field(default_factory=dict)


def find_project(session: Session, ref: str | int) -> Project:
    """A project by id or exact name; the error lists what exists."""
    project = None
    if isinstance(ref, int) or str(ref).isdigit():
        project = session.get(Project, int(ref))
    if project is None:
        project = session.scalar(select(Project).where(Project.name == str(ref)))
    if project is None:
        names = session.scalars(select(Project.name).order_by(Project.id)).all()
        known = ", ".join(repr(n) for n in names) or "none yet"
        raise ProjectNotFound(f"no project {ref!r}; projects: {known}")
    return project


def _counts(session: Session, stmt) -> dict[int, int]:  # type: ignore[no-untyped-def]
    return {pid: n for pid, n in session.execute(stmt).all()}


def pipeline_status(session: Session, actor: Actor | None = None) -> list[PipelineStatus]:
    """Every project's status in a handful of aggregate queries (not one per project); with
    ``actor``, also the items waiting for their review."""
    projects = session.scalars(select(Project).order_by(Project.id)).all()
    rows = {
        p.id: PipelineStatus(
            id=p.id,
            name=p.name,
            task=p.task,
            dimension=p.dimension,
            scale=f"{p.scale_min}-{p.scale_max}",
        )
        for p in projects
    }
    current = {p.id: p.current_codebook_id for p in projects}
    for pid, status, n in session.execute(
        select(Item.project_id, Item.gold_status, func.count()).group_by(Item.project_id, Item.gold_status)
    ).all():
        rows[pid].items += n
        if status == "gold":
            rows[pid].gold_items = n
        elif status == "dropped_disagreement":
            rows[pid].dropped = n
    for pid, split, n in session.execute(
        select(Item.project_id, Item.split, func.count())
        .where(Item.split.is_not(None))
        .group_by(Item.project_id, Item.split)
    ).all():
        rows[pid].splits[split] = n
    for pid, n in _counts(session, select(Codebook.project_id, func.count()).group_by(Codebook.project_id)).items():
        rows[pid].codebook_versions = n
    for cid, pid, version in session.execute(select(Codebook.id, Codebook.project_id, Codebook.version)).all():
        if current.get(pid) == cid:
            rows[pid].current_codebook = version
    for pid, n in _counts(
        session, select(SamplingRun.project_id, func.count()).group_by(SamplingRun.project_id)
    ).items():
        rows[pid].sampling_runs = n
    cand = (
        select(
            SamplingRun.project_id,
            func.count(Candidate.id),
            func.coalesce(func.sum(case((Candidate.accepted, 1), else_=0)), 0),
            func.count(func.distinct(case((Candidate.accepted, Candidate.item_id)))),
        )
        .join(Candidate, Candidate.run_id == SamplingRun.id)
        .group_by(SamplingRun.project_id)
    )
    for pid, n, acc, items_acc in session.execute(cand).all():
        rows[pid].candidates, rows[pid].accepted, rows[pid].items_with_accepted = n, int(acc), items_acc
    reviewed = (
        select(Item.project_id, func.count(func.distinct(Selection.item_id)))
        .join(Selection, Selection.item_id == Item.id)
        .where(Selection.state == "submitted")
        .group_by(Item.project_id)
    )
    for pid, n in _counts(session, reviewed).items():
        rows[pid].reviewed = n
    for pid, n in _counts(
        session, select(TrainingRun.project_id, func.count()).group_by(TrainingRun.project_id)
    ).items():
        rows[pid].training_runs = n
    for pid, n in _counts(session, select(RaterRun.project_id, func.count()).group_by(RaterRun.project_id)).items():
        rows[pid].rater_runs = n
    open_rounds = session.scalars(select(ReviewRound).where(ReviewRound.status == "open")).all()
    for rnd in open_rounds:
        rows[rnd.project_id].open_rounds += 1
    for pid, kind in session.execute(
        select(Job.project_id, Job.kind).where(Job.status.in_(("queued", "running")), Job.project_id.is_not(None))
    ).all():
        rows[pid].active_jobs.add(kind)
    if actor is not None and actor.id is not None:
        for rnd in open_rounds:
            if actor.id in (rnd.annotator_ids or []):
                rows[rnd.project_id].items_to_review += _items_waiting_for(session, rnd.id, actor.id)
    return list(rows.values())


def _items_waiting_for(session: Session, round_id: int, annotator_id: int) -> int:
    """Items of a round that still need a review and that this annotator has not reviewed."""
    submitted = (
        select(Selection.item_id, func.count().label("n"),
               func.max(case((Selection.annotator_id == annotator_id, 1), else_=0)).label("mine"))
        .where(Selection.round_id == round_id, Selection.state == "submitted")
        .group_by(Selection.item_id)
        .subquery()
    )
    return session.scalar(
        select(func.count()).select_from(ReviewTask)
        .outerjoin(submitted, submitted.c.item_id == ReviewTask.item_id)
        .where(ReviewTask.round_id == round_id, func.coalesce(submitted.c.n, 0) < ReviewTask.required,
               func.coalesce(submitted.c.mine, 0) == 0)
    ) or 0


@dataclass(frozen=True)
class NextStep:
    """What a user should do next in a project: a sentence, and the page that does it (``page``
    is its url path, ``label`` the link's words); no page when the user can only wait."""

    text: str
    page: str | None = None
    label: str = ""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _lead_step(s: PipelineStatus) -> tuple[NextStep, str]:
    """The pipeline's next step (import → sample → open a round → review → train → agreement),
    with what the others wait for meanwhile."""
    if s.gold_items == 0:
        return (NextStep("No item has a gold rating (the raters disagreed on every item, or none was rated): "
                         "import the data again with a looser agreement threshold.", "data", "Import data"),
                "a lead to import data with gold ratings")
    if "sample" in s.active_jobs:
        return NextStep("Traces are being sampled.", "sample", "Follow the sampling run"), "the sampling run to finish"
    if s.candidates == 0:
        return (NextStep(f"Sample reasoning traces for the {_plural(s.gold_items, 'gold item')}.",
                         "sample", "Sample traces"), "a lead to sample traces")
    if s.accepted == 0:
        return (NextStep(f"None of the {_plural(s.candidates, 'sampled trace')} reached the gold rating: sample "
                         "again, with a larger token budget or more traces per item.", "sample", "Sample again"),
                "a lead to sample traces that reach the gold rating")
    if s.reviewed == 0 and s.open_rounds:
        return (NextStep("A review round is open and no item is reviewed yet: follow its progress.",
                         "assignments", "Follow the review round"), "the first reviews")
    if s.reviewed == 0:
        return (NextStep(f"{_plural(s.items_with_accepted, 'item')} have accepted traces: open a review round "
                         "so that annotators choose, edit or reject them.", "assignments", "Open a review round"),
                "a lead to open a review round")
    if "train" in s.active_jobs:
        return NextStep("A rater is being trained.", "train", "Follow the training run"), "the training run to finish"
    if s.training_runs == 0:
        return (NextStep(f"{_plural(s.reviewed, 'item')} reviewed: fine-tune a rater on the reviewed traces.",
                         "train", "Train a rater"), "a lead to train a rater")
    if "evaluate" in s.active_jobs:
        return NextStep("A rater run is being measured.", "agreement", "Follow the rater run"), "the rater run to finish"
    if s.rater_runs == 0:
        return (NextStep("Run the trained rater on the test split and measure its agreement with the human "
                         "ratings.", "agreement", "Measure agreement"), "a lead to measure agreement")
    return (NextStep(f"{_plural(s.rater_runs, 'rater run')} measured: compare them, or review and train "
                     "further.", "agreement", "See agreement"), "the next review round")


def next_step(status: PipelineStatus, role: str) -> NextStep:
    """The next thing a user of ``role`` can do in this project, following the pipeline: items
    waiting for their review first; then the pipeline's next step where the role may take it;
    a guideline author refines the codebook once there are traces; otherwise what to wait for
    (and, for authors, the codebook to check meanwhile)."""
    if status.items_to_review:
        return NextStep(f"{_plural(status.items_to_review, 'item')} of an open round wait for your review.",
                        "review", "Review")
    step, waiting_for = _lead_step(status)
    if step.page is not None and can_see_page(role, step.page):
        return step
    if can_see_page(role, "refine") and status.accepted:
        return NextStep(f"{_plural(status.accepted, 'accepted trace')} show how raters read the codebook: "
                        "refine it from them.", "refine", "Refine the codebook")
    if can_see_page(role, "codebooks"):
        return NextStep(f"Waiting for {waiting_for}. Meanwhile, check the codebook the traces will follow.",
                        "codebooks", "Check the codebook")
    return NextStep("Nothing waits for your review. A lead hands out items in a review round when there are "
                    "traces to review.")


def default_codebook_spec(dataset: ParsedDataset) -> CodebookSpec:
    """The codebook for a freshly imported dataset: the built-in original if one exists for
    this loader and dimension, else a minimal one that names the dimension and the scale ends
    (origin 'default', to be written by a guideline author)."""
    builtin = builtin_codebook_for(dataset.loader, dataset.dimension)
    if builtin is not None:
        return builtin
    lo, hi = dataset.scale_min, dataset.scale_max
    levels = [RubricLevel(level=lo, text=f"{lo}: lowest {dataset.dimension}")]
    levels += [
        RubricLevel(level=v, text=f"{v}: between {lo} (lowest) and {hi} (highest)") for v in range(lo + 1, hi)
    ]
    levels.append(RubricLevel(level=hi, text=f"{hi}: highest {dataset.dimension}"))
    return CodebookSpec(
        name=f"{dataset.task} {dataset.dimension}",
        task=dataset.task,
        dimension=dataset.dimension,
        generation_type=dataset.generation_type,
        scale_min=lo,
        scale_max=hi,
        instructions=(
            f"Read the {dataset.generation_type} below and rate its {dataset.dimension} "
            f"on a scale from {lo} to {hi}."
        ),
        rubric=levels,
        sources=["generated default: no original codebook was given for this dataset"],
    )


BUILTIN_CODEBOOK_BY_LOADER = {"hanna": "hanna", "aes2": "aes2", "summeval": "summeval",
                              "wmt_sqm": "wmt20_zhen", "helpsteer2": "helpsteer2"}


def builtin_codebook_for(loader: str, dimension: str) -> CodebookSpec | None:
    prefix = BUILTIN_CODEBOOK_BY_LOADER.get(loader)
    if prefix is None:
        return None
    for name in list_builtin():
        if name.startswith(prefix + "_") and name.endswith("_" + dimension):
            return load_builtin(name)
    return None


def import_with_codebook(
    session: Session,
    dataset: ParsedDataset,
    *,
    actor: Actor,
    project_name: str,
    codebook: CodebookSpec | None = None,
    gold_rule: GoldRule | None = None,
    split_rule: SplitRule | None = None,
    author: str | None = None,
) -> ImportReport:
    """Create the project, its items and codebook version 1 in the caller's transaction.
    ``actor`` must hold ``manage_data`` (the CLI passes ``Actor.system()``)."""
    require(actor, "manage_data")
    spec = codebook or default_codebook_spec(dataset)
    if (spec.scale_min, spec.scale_max) != (dataset.scale_min, dataset.scale_max):
        raise DatasetError(
            file=str(spec.name), row=None, field="scale",
            message=f"codebook scale {spec.scale_min}-{spec.scale_max} differs from the data's "
            f"{dataset.scale_min}-{dataset.scale_max}",
        )
    report = import_dataset(
        session, dataset, project_name=project_name, gold_rule=gold_rule, split_rule=split_rule
    )
    create_version(session, report.project_id, spec, origin="original", author=author,
                   note="imported with the dataset")
    return report


def ensure_sample_project(url: str | None = None) -> int | None:
    """On a first start (an empty store) import the bundled HANNA sample, so a newcomer sees
    data at once. Returns the new project's id, or None when the store already has projects."""
    with session_scope(url) as session:
        if session.scalar(select(func.count()).select_from(Project)):
            return None
        dataset = load_builtin_dataset("hanna", SAMPLE_FILE, "complexity")
        report = import_with_codebook(session, dataset, actor=Actor.system(), project_name=SAMPLE_PROJECT,
                                      author="judgeeye")
        return report.project_id
