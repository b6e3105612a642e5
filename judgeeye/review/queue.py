"""Handing items out: leases that expire, overlap, the annotator's current item and history.

An item is *taken* by every submitted review of it and by every unexpired lease on it whose
review is still open (pending or draft); it is handed to one more annotator only while fewer
than its ``required`` reviews take it. A skip gives the lease back at once. An annotator keeps
their own open items (a reload or a restart brings them back to the same one).

Every hand-out locks the task row (``FOR UPDATE`` on PostgreSQL; SQLite transactions here are
``BEGIN IMMEDIATE``, which serialises writers) and counts again before it writes, so two
annotators racing for the last slot of an item cannot both get it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from judgeeye.auth import AccessDenied, Actor, require
from judgeeye.review.errors import ReviewError
from judgeeye.review.events import record, snapshot
from judgeeye.review.rounds import get_round
from judgeeye.store import ReviewAssignment, ReviewRound, ReviewTask, Selection

OPEN_STATES = ("pending", "draft")
CANDIDATE_BATCH = 32


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive UTC datetimes; PostgreSQL aware ones."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def member_round(session: Session, actor: Actor, round_id: int) -> ReviewRound:
    """The round, when it is open and the actor is one of its annotators."""
    require(actor, "review")
    rnd = get_round(session, round_id)
    if actor.id not in (rnd.annotator_ids or []):
        raise AccessDenied(f"{actor.name} is not an annotator of review round {round_id}")
    return rnd


def _taken(session: Session, round_id: int, item_id: int, now: datetime, *, exclude: int | None) -> int:
    a, s = ReviewAssignment, Selection
    stmt = (
        select(func.count())
        .select_from(a)
        .join(s, and_(s.item_id == a.item_id, s.annotator_id == a.annotator_id))
        .where(
            a.round_id == round_id, a.item_id == item_id, s.round_id == round_id,
            or_(s.state == "submitted", and_(s.state.in_(OPEN_STATES), a.lease_expires_at > now)),
        )
    )
    if exclude is not None:
        stmt = stmt.where(a.annotator_id != exclude)
    return int(session.scalar(stmt) or 0)


def _open_own(session: Session, rnd: ReviewRound, annotator_id: int) -> list[tuple[ReviewAssignment, Selection, ReviewTask]]:
    a, s, t = ReviewAssignment, Selection, ReviewTask
    return list(session.execute(
        select(a, s, t)
        .join(s, and_(s.item_id == a.item_id, s.annotator_id == a.annotator_id))
        .join(t, and_(t.round_id == a.round_id, t.item_id == a.item_id))
        .where(a.round_id == rnd.id, a.annotator_id == annotator_id, s.round_id == rnd.id,
               s.state.in_(OPEN_STATES))
        .order_by(t.position)
    ).tuples().all())


def renew_lease(session: Session, rnd: ReviewRound, annotator_id: int, item_id: int, now: datetime | None = None) -> None:
    now = now or now_utc()
    assignment = session.scalar(select(ReviewAssignment).where(
        ReviewAssignment.round_id == rnd.id, ReviewAssignment.item_id == item_id,
        ReviewAssignment.annotator_id == annotator_id))
    if assignment is not None:
        assignment.lease_expires_at = now + timedelta(minutes=rnd.lease_minutes)


def next_item(session: Session, actor: Actor, round_id: int, *, now: datetime | None = None) -> int | None:
    """The item the actor should review now: their own open one, else a newly handed out one;
    None when the round has nothing left for them."""
    rnd = member_round(session, actor, round_id)
    now = now or now_utc()
    assert actor.id is not None
    for assignment, selection, task in _open_own(session, rnd, actor.id):
        if selection.state == "draft" or _taken(session, rnd.id, task.item_id, now, exclude=actor.id) < task.required:
            assignment.lease_expires_at = now + timedelta(minutes=rnd.lease_minutes)
            return task.item_id
        # others finished the item while this lease had lapsed: nothing of ours to keep open
    if rnd.status != "open":
        return None
    mine = select(ReviewAssignment.item_id).where(
        ReviewAssignment.round_id == rnd.id, ReviewAssignment.annotator_id == actor.id)
    a, s, t = ReviewAssignment, Selection, ReviewTask
    taken = (
        select(a.item_id, func.count().label("n"))
        .join(s, and_(s.item_id == a.item_id, s.annotator_id == a.annotator_id))
        .where(a.round_id == rnd.id, s.round_id == rnd.id,
               or_(s.state == "submitted", and_(s.state.in_(OPEN_STATES), a.lease_expires_at > now)))
        .group_by(a.item_id)
        .subquery()
    )
    offset = 0
    while True:
        candidates = session.execute(
            select(t.id, t.item_id, t.required)
            .outerjoin(taken, taken.c.item_id == t.item_id)
            .where(t.round_id == rnd.id, t.item_id.not_in(mine),
                   func.coalesce(taken.c.n, 0) < t.required)
            .order_by(t.position)
            .offset(offset)
            .limit(CANDIDATE_BATCH)
        ).all()
        if not candidates:
            return None
        serialised = session.get_bind().dialect.name == "sqlite"  # BEGIN IMMEDIATE: the counts are current
        for task_id, item_id, required in candidates:
            if not serialised:
                # lock the task, then count again with what other transactions committed meanwhile
                session.execute(select(t.id).where(t.id == task_id).with_for_update())
                if _taken(session, rnd.id, item_id, now, exclude=None) >= required:
                    continue
            _hand_out(session, rnd, actor.id, item_id, now)
            return item_id
        offset += CANDIDATE_BATCH


def _hand_out(session: Session, rnd: ReviewRound, annotator_id: int, item_id: int, now: datetime) -> None:
    selection = session.scalar(select(Selection).where(
        Selection.item_id == item_id, Selection.annotator_id == annotator_id))
    session.add(ReviewAssignment(round_id=rnd.id, item_id=item_id, annotator_id=annotator_id,
                                 lease_expires_at=now + timedelta(minutes=rnd.lease_minutes), created_at=now))
    if selection is None:
        selection = Selection(item_id=item_id, annotator_id=annotator_id, state="pending",
                              round_id=rnd.id, updated_at=now)
        session.add(selection)
        session.flush()
        record(session, selection, annotator_id, "assign", rnd.id, None, now)
        return
    before = snapshot(selection)
    # the same person met this item in an earlier round: this round starts it afresh (the
    # earlier answer stays in the event log)
    selection.state, selection.verdict, selection.candidate_id = "pending", None, None
    selection.edited_text, selection.edit_diff, selection.round_id = None, None, rnd.id
    selection.updated_at = now
    session.flush()
    record(session, selection, annotator_id, "assign", rnd.id, before, now)


def history(session: Session, actor: Actor, round_id: int) -> list[int]:
    """Items handed to the actor in this round, in the order they got them."""
    rows = session.scalars(
        select(ReviewAssignment.item_id)
        .where(ReviewAssignment.round_id == round_id, ReviewAssignment.annotator_id == actor.id)
        .order_by(ReviewAssignment.id)
    ).all()
    return list(rows)


def previous_item(session: Session, actor: Actor, round_id: int, current: int | None) -> int | None:
    """The item handed to the actor before ``current`` (the latest one when ``current`` is None)."""
    member_round(session, actor, round_id)
    items = history(session, actor, round_id)
    if current in items:
        index = items.index(current)
        return items[index - 1] if index > 0 else None
    return items[-1] if items else None


def following_item(session: Session, actor: Actor, round_id: int, current: int | None) -> int | None:
    member_round(session, actor, round_id)
    items = history(session, actor, round_id)
    if current in items and items.index(current) + 1 < len(items):
        return items[items.index(current) + 1]
    return None


def ensure_assigned(session: Session, rnd: ReviewRound, annotator_id: int, item_id: int) -> tuple[Selection, ReviewAssignment]:
    """The actor's selection for an item handed to them in this round, and its assignment."""
    row = session.execute(
        select(Selection, ReviewAssignment)
        .join(ReviewAssignment, and_(ReviewAssignment.item_id == Selection.item_id,
                                     ReviewAssignment.annotator_id == Selection.annotator_id))
        .where(Selection.item_id == item_id, Selection.annotator_id == annotator_id,
               Selection.round_id == rnd.id, ReviewAssignment.round_id == rnd.id)
    ).first()
    if row is None:
        raise ReviewError(f"item {item_id} was not handed to you in review round {rnd.id}")
    return row[0], row[1]
