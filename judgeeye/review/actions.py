"""What an annotator does to an item, each saved at once with an append-only event.

States of a selection: ``pending`` (handed out), ``draft`` (an edit in progress), ``submitted``
(chose a trace, said none fits, or submitted an edit) and ``skipped``. Every change appends a
:class:`SelectionEvent` holding the selection before and after, so :func:`undo` can restore the
state before the annotator's latest action, again and again, without ever rewriting history.
Each selection records the codebook version in force when it was made.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from judgeeye.auth import Actor
from judgeeye.codebook import word_ops
from judgeeye.review.errors import ReviewError
from judgeeye.review.events import SNAPSHOT_FIELDS, record, snapshot
from judgeeye.review.queue import ensure_assigned, member_round, now_utc, renew_lease
from judgeeye.review.rounds import shown_candidates
from judgeeye.review.traces import split_trace
from judgeeye.store import Candidate, Project, ReviewRound, Selection, SelectionEvent

UNDOABLE = ("choose", "none_fits", "edit_draft", "edit_submit", "skip")
MAX_EDIT_CHARS = 100_000


def _codebook_in_force(session: Session, rnd: ReviewRound) -> int | None:
    return session.scalar(select(Project.current_codebook_id).where(Project.id == rnd.project_id))


def _candidate(session: Session, rnd: ReviewRound, item_id: int, candidate_id: int) -> Candidate:
    shown = {c.id: c for c in shown_candidates(session, rnd, item_id)}
    if candidate_id not in shown:
        raise ReviewError(f"candidate {candidate_id} is not one of the traces shown for item {item_id}")
    return shown[candidate_id]


def _apply(
    session: Session, actor: Actor, round_id: int, item_id: int, action: str, **values: Any
) -> Selection:
    rnd = member_round(session, actor, round_id)
    assert actor.id is not None
    selection, assignment = ensure_assigned(session, rnd, actor.id, item_id)
    now = now_utc()
    before = snapshot(selection)
    for name, value in values.items():
        setattr(selection, name, value)
    selection.codebook_id = _codebook_in_force(session, rnd)
    selection.updated_at = now
    if selection.state in ("pending", "draft"):
        assignment.lease_expires_at = now + timedelta(minutes=rnd.lease_minutes)
    elif selection.state == "skipped":  # give the item back at once
        assignment.lease_expires_at = now - timedelta(seconds=1)
    record(session, selection, actor.id, action, rnd.id, before, now)
    return selection


def choose(session: Session, actor: Actor, round_id: int, item_id: int, candidate_id: int) -> Selection:
    """The annotator's reasoning matches this trace: submitted."""
    rnd = member_round(session, actor, round_id)
    _candidate(session, rnd, item_id, candidate_id)
    return _apply(session, actor, round_id, item_id, "choose", state="submitted", verdict="chosen",
                  candidate_id=candidate_id, edited_text=None, edit_diff=None)


def none_fits(session: Session, actor: Actor, round_id: int, item_id: int) -> Selection:
    """No trace reflects the annotator's reasoning: submitted without a trace."""
    return _apply(session, actor, round_id, item_id, "none_fits", state="submitted", verdict="none_fits",
                  candidate_id=None, edited_text=None, edit_diff=None)


def save_edit(
    session: Session, actor: Actor, round_id: int, item_id: int, source_candidate_id: int, text: str,
    *, submit: bool = False,
) -> Selection:
    """An edited trace, kept with its source trace and the word diff from it; a draft until
    ``submit``."""
    rnd = member_round(session, actor, round_id)
    source = _candidate(session, rnd, item_id, source_candidate_id)
    text = (text or "").replace("\r\n", "\n")
    if not text.strip():
        raise ReviewError("an edited trace cannot be empty; choose 'none fits' instead")
    if len(text) > MAX_EDIT_CHARS:
        raise ReviewError(f"an edited trace is limited to {MAX_EDIT_CHARS} characters, got {len(text)}")
    project = session.get(Project, rnd.project_id)
    assert project is not None
    trace, _ = split_trace(source, (project.scale_min, project.scale_max))
    diff = [op.to_dict() for op in word_ops(trace, text)]
    return _apply(session, actor, round_id, item_id, "edit_submit" if submit else "edit_draft",
                  state="submitted" if submit else "draft", verdict="edited",
                  candidate_id=source.id, edited_text=text, edit_diff=diff)


def skip(session: Session, actor: Actor, round_id: int, item_id: int) -> Selection:
    """Not now: the lease goes back so that someone else can take the item."""
    return _apply(session, actor, round_id, item_id, "skip", state="skipped")


def undo(session: Session, actor: Actor, round_id: int) -> int | None:
    """Restore the state before the actor's latest action in this round that is not undone yet;
    returns that item's id (None when there is nothing to undo)."""
    rnd = member_round(session, actor, round_id)
    assert actor.id is not None
    events = session.scalars(
        select(SelectionEvent)
        .join(Selection, Selection.id == SelectionEvent.selection_id)
        .where(SelectionEvent.annotator_id == actor.id, Selection.annotator_id == actor.id,
               Selection.round_id == rnd.id)
        .order_by(SelectionEvent.id.desc())
    ).all()
    undone = {int(e.payload.get("undoes")) for e in events if e.action == "undo"}
    target = next((e for e in events if e.action in UNDOABLE and e.id not in undone
                   and e.payload.get("round_id") == rnd.id), None)
    if target is None:
        return None
    selection = session.get(Selection, target.selection_id)
    assert selection is not None
    now = now_utc()
    before = snapshot(selection)
    for name, value in (target.payload.get("before") or {}).items():
        if name in SNAPSHOT_FIELDS:
            setattr(selection, name, value)
    selection.updated_at = now
    session.flush()
    record(session, selection, actor.id, "undo", rnd.id, before, now, undoes=target.id)
    if selection.state in ("pending", "draft"):
        renew_lease(session, rnd, actor.id, selection.item_id, now)
    return selection.item_id


def my_selection(session: Session, actor: Actor, item_id: int) -> Selection | None:
    return session.scalar(select(Selection).where(
        Selection.item_id == item_id, Selection.annotator_id == actor.id))
