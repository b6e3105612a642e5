"""Review rounds: a lead picks a sampling run, the annotators and the overlap; items become tasks.

Items with at least one accepted candidate are reviewed over their accepted candidates; with
``include_unaccepted`` the items without one are reviewed too, over all their candidates (an
annotator may still find a usable trace, or say none fits). At most ``max_shown`` candidates are
shown per item (the first ones by sample index), the same set to every annotator, so that their
choices are comparable.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from judgeeye.auth import Actor, require
from judgeeye.jobs import run_status
from judgeeye.review.errors import ReviewError
from judgeeye.store import (
    Annotator,
    Candidate,
    Item,
    Job,
    ReviewAssignment,
    ReviewRound,
    ReviewTask,
    SamplingRun,
    Selection,
)

MAX_SHOWN = 9  # keys 1-9 choose a trace


@dataclass
class RoundProgress:
    round_id: int
    name: str
    status: str
    items: int
    done: int
    reviews_required: int
    reviews_submitted: int
    skipped: int
    annotators: list[str]

    @property
    def share_done(self) -> float:
        return self.done / self.items if self.items else 0.0


def _resolve_annotators(session: Session, refs: Sequence[str | int]) -> list[Annotator]:
    users: list[Annotator] = []
    for ref in refs:
        user = session.get(Annotator, ref) if isinstance(ref, int) else None
        if user is None:
            user = session.scalar(select(Annotator).where(Annotator.name == str(ref)))
        if user is None:
            raise ReviewError(f"no user {ref!r}: add them first (judgeeye users add NAME)")
        if not user.active:
            raise ReviewError(f"user {user.name!r} is deactivated")
        if user not in users:
            users.append(user)
    if not users:
        raise ReviewError("a round needs at least one annotator")
    return users


def round_items(session: Session, run_id: int, include_unaccepted: bool) -> list[int]:
    """Item ids of a run that a round reviews (see the module docstring)."""
    mine = (Candidate.run_id == run_id) & (Candidate.target == "gold")
    rows = session.execute(
        select(Candidate.item_id, func.max(case((Candidate.accepted, 1), else_=0)))
        .where(mine)
        .group_by(Candidate.item_id)
        .order_by(Candidate.item_id)
    ).all()
    return [item_id for item_id, has_accepted in rows if has_accepted or include_unaccepted]


def open_round(
    session: Session,
    actor: Actor,
    run_id: int,
    annotators: Sequence[str | int],
    *,
    overlap: int = 1,
    high_overlap: int = 2,
    high_overlap_share: float = 0.0,
    include_unaccepted: bool = False,
    max_shown: int = MAX_SHOWN,
    lease_minutes: int = 30,
    name: str | None = None,
    seed: int = 0,
) -> ReviewRound:
    """Open a round over a sampling run (leads and admins only); every item becomes a task that
    needs ``overlap`` submitted reviews, a random ``high_overlap_share`` of them ``high_overlap``."""
    require(actor, "manage_rounds")
    run = session.get(SamplingRun, run_id)
    if run is None:
        raise ReviewError(f"no sampling run {run_id}")
    users = _resolve_annotators(session, annotators)
    if overlap < 1:
        raise ReviewError(f"overlap must be at least 1, got {overlap}")
    if not 0.0 <= high_overlap_share <= 1.0:
        raise ReviewError(f"the share with higher overlap must be between 0 and 1, got {high_overlap_share}")
    if high_overlap_share > 0 and high_overlap < 2:
        raise ReviewError(f"the higher overlap must be at least 2, got {high_overlap}")
    needed = max(overlap, high_overlap if high_overlap_share > 0 else 0)
    if needed > len(users):
        raise ReviewError(f"an overlap of {needed} needs at least {needed} annotators; {len(users)} chosen")
    if not 1 <= max_shown <= MAX_SHOWN:
        raise ReviewError(f"max_shown must be between 1 and {MAX_SHOWN}, got {max_shown}")
    if lease_minutes < 1:
        raise ReviewError(f"a lease must last at least 1 minute, got {lease_minutes}")
    items = round_items(session, run_id, include_unaccepted)
    if not items:
        what = "candidates" if include_unaccepted else "accepted candidates"
        raise ReviewError(f"sampling run {run_id} has no items with {what} to review")
    n_high = round(high_overlap_share * len(items))
    high = set(random.Random(seed).sample(items, n_high)) if n_high else set()
    rnd = ReviewRound(
        project_id=run.project_id, run_id=run_id,
        name=(name or "").strip() or f"run {run_id} review",
        overlap=overlap, high_overlap=high_overlap, high_overlap_share=high_overlap_share,
        include_unaccepted=include_unaccepted, max_shown=max_shown, lease_minutes=lease_minutes,
        annotator_ids=[u.id for u in users], created_by=actor.id, status="open",
    )
    session.add(rnd)
    session.flush()
    session.add_all(
        ReviewTask(round_id=rnd.id, item_id=item_id, required=high_overlap if item_id in high else overlap,
                   position=position)
        for position, item_id in enumerate(items)
    )
    session.flush()
    return rnd


def get_round(session: Session, round_id: int) -> ReviewRound:
    cache = session.info.setdefault("judgeeye_rounds", {})  # strong refs: one load per transaction
    rnd = cache.get(round_id) or session.get(ReviewRound, round_id)
    if rnd is None:
        raise ReviewError(f"no review round {round_id}")
    cache[round_id] = rnd
    return rnd


def set_round_status(session: Session, actor: Actor, round_id: int, status: str) -> ReviewRound:
    """Close a round (nothing more is handed out) or reopen it."""
    require(actor, "manage_rounds")
    if status not in ("open", "closed"):
        raise ReviewError(f"a round is open or closed, not {status!r}")
    rnd = get_round(session, round_id)
    rnd.status = status
    return rnd


def rounds_for(session: Session, actor: Actor, *, project_id: int | None = None) -> list[ReviewRound]:
    """Open rounds the actor reviews in, newest first."""
    stmt = select(ReviewRound).where(ReviewRound.status == "open").order_by(ReviewRound.id.desc())
    if project_id is not None:
        stmt = stmt.where(ReviewRound.project_id == project_id)
    return [r for r in session.scalars(stmt).all() if actor.id in (r.annotator_ids or [])]


def list_rounds(session: Session, project_id: int | None = None) -> list[ReviewRound]:
    stmt = select(ReviewRound).order_by(ReviewRound.id.desc())
    if project_id is not None:
        stmt = stmt.where(ReviewRound.project_id == project_id)
    return list(session.scalars(stmt).all())


def shown_candidates(session: Session, rnd: ReviewRound, item_id: int) -> list[Candidate]:
    """The candidates an item's reviewers see, in canonical order (by sample index)."""
    base = select(Candidate).where(
        Candidate.run_id == rnd.run_id, Candidate.item_id == item_id, Candidate.target == "gold"
    ).order_by(Candidate.sample_index, Candidate.id)
    accepted = list(session.scalars(base.where(Candidate.accepted.is_(True)).limit(rnd.max_shown)).all())
    if accepted or not rnd.include_unaccepted:
        return accepted
    return list(session.scalars(base.limit(rnd.max_shown)).all())


def display_order(candidates: Sequence[Candidate], annotator_id: int, item_id: int) -> list[Candidate]:
    """The candidates shuffled for one annotator: stable across reloads, different per person,
    so that position in the list does not steer everyone the same way."""
    order = list(candidates)
    random.Random(f"judgeeye-review:{annotator_id}:{item_id}").shuffle(order)
    return order


def submitted_per_item(session: Session, round_id: int) -> dict[int, int]:
    """Submitted reviews per item of a round (reviews by the round's assignees only)."""
    a, s = ReviewAssignment, Selection
    rows = session.execute(
        select(a.item_id, func.count())
        .join(s, and_(s.item_id == a.item_id, s.annotator_id == a.annotator_id))
        .where(a.round_id == round_id, s.state == "submitted", s.round_id == round_id)
        .group_by(a.item_id)
    ).all()
    return {item_id: n for item_id, n in rows}


def round_progress(session: Session, round_id: int) -> RoundProgress:
    rnd = get_round(session, round_id)
    required = dict(session.execute(
        select(ReviewTask.item_id, ReviewTask.required).where(ReviewTask.round_id == round_id)).all())
    submitted = submitted_per_item(session, round_id)
    a, s = ReviewAssignment, Selection
    skipped = session.scalar(
        select(func.count()).select_from(a)
        .join(s, and_(s.item_id == a.item_id, s.annotator_id == a.annotator_id))
        .where(a.round_id == round_id, s.state == "skipped", s.round_id == round_id)
    ) or 0
    names = dict(session.execute(select(Annotator.id, Annotator.name)).all())
    return RoundProgress(
        round_id=rnd.id, name=rnd.name, status=rnd.status, items=len(required),
        done=sum(1 for item_id, need in required.items() if submitted.get(item_id, 0) >= need),
        reviews_required=sum(required.values()),
        reviews_submitted=sum(min(n, required.get(i, 0)) for i, n in submitted.items()),
        skipped=int(skipped), annotators=[names.get(i, f"#{i}") for i in rnd.annotator_ids or []],
    )


def item_of_round(session: Session, rnd: ReviewRound, item_id: int) -> Item:
    task = session.scalar(select(ReviewTask).where(ReviewTask.round_id == rnd.id, ReviewTask.item_id == item_id))
    item = session.get(Item, item_id)
    if task is None or item is None:
        raise ReviewError(f"item {item_id} is not part of review round {rnd.id}")
    return item


@dataclass
class ReviewableRun:
    run_id: int
    status: str
    k: int
    items: int
    items_with_accepted: int

    @property
    def label(self) -> str:
        return (f"run {self.run_id} · k={self.k} · {self.items_with_accepted} of {self.items} items "
                f"with an accepted trace · {self.status}")


def reviewable_runs(session: Session, project_id: int) -> list[ReviewableRun]:
    """A project's sampling runs with what a round over each would contain, newest first."""
    stats = {
        run_id: (n, int(acc or 0))
        for run_id, n, acc in session.execute(
            select(Candidate.run_id, func.count(func.distinct(Candidate.item_id)),
                   func.count(func.distinct(case((Candidate.accepted, Candidate.item_id)))))
            .join(SamplingRun, SamplingRun.id == Candidate.run_id)
            .where(SamplingRun.project_id == project_id, Candidate.target == "gold")
            .group_by(Candidate.run_id)
        ).all()
    }
    runs = session.execute(select(SamplingRun, Job.status).outerjoin(Job, Job.id == SamplingRun.job_id)
                           .where(SamplingRun.project_id == project_id).order_by(SamplingRun.id.desc())).all()
    return [ReviewableRun(r.id, run_status(r.status, job_status), r.k, *stats.get(r.id, (0, 0)))
            for r, job_status in runs]
