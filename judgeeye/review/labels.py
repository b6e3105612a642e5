"""What a submitted review says, as comparable labels.

Two views of the same selection:

- the *choice label* for agreement statistics: the chosen trace's position in the item's shown
  set (canonical order by sample index, so the same for every reviewer of that round, whatever
  order they saw), with an edit counted as a choice of its source trace, or ``"none"``;
- the *outcome key* for disagreements and export: like the choice label, but an edited trace
  is its own outcome (two different edits of one trace still need settling).

Labels compare only within one candidate set, so reviews are grouped by (round, item); a
selection made outside any round (imported, or written by a script) is grouped by item, and its
position is that among the accepted candidates of its candidate's run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from judgeeye.store import Candidate, Item, ReviewRound, Selection

NONE = "none"


class ReviewedSelection(Protocol):
    """A submitted :class:`Selection`, or a row of its :data:`REVIEW_COLUMNS`."""

    @property
    def item_id(self) -> int: ...
    @property
    def annotator_id(self) -> int: ...
    @property
    def candidate_id(self) -> int | None: ...
    @property
    def edited_text(self) -> str | None: ...
    @property
    def verdict(self) -> str | None: ...


@dataclass
class Review:
    """A submitted selection with the candidate set it belongs to and its position in it."""

    selection: ReviewedSelection
    round_id: int | None
    position: int | None  # 1-based in the canonical shown set; None for none fits

    @property
    def group(self) -> tuple[int | None, int]:
        return (self.round_id, self.selection.item_id)

    @property
    def none_fits(self) -> bool:
        return self.selection.verdict == "none_fits" or self.selection.candidate_id is None

    @property
    def label(self) -> str:
        if self.none_fits:
            return NONE
        if self.position is None:
            return f"candidate {self.selection.candidate_id}"
        return f"trace {self.position}"


def _submitted(project_id: int | None) -> ColumnElement[bool]:
    return (Item.project_id == project_id) & (Selection.state == "submitted")


def shown_positions(session: Session, rounds: Iterable[ReviewRound], items: Iterable[int] | None = None,
                    *, project_id: int | None = None) -> dict[tuple[int, int], dict[int, int]]:
    """(round id, item id) -> {candidate id: 1-based position in the shown set}, one query per round
    (the same rule as :func:`judgeeye.review.rounds.shown_candidates`): for the given items, or
    for the items with submitted reviews in that round of ``project_id``."""
    out: dict[tuple[int, int], dict[int, int]] = {}
    for rnd in rounds:
        stmt = (select(Candidate.item_id, Candidate.id, Candidate.accepted)
                .where(Candidate.run_id == rnd.run_id, Candidate.target == "gold")
                .order_by(Candidate.item_id, Candidate.sample_index, Candidate.id))
        if items is not None:
            stmt = stmt.where(Candidate.item_id.in_(list(set(items))))
        else:
            reviewed = (select(Selection.item_id).join(Item, Item.id == Selection.item_id)
                        .where(_submitted(project_id), Selection.round_id == rnd.id))
            stmt = stmt.where(Candidate.item_id.in_(reviewed))
        per_item: dict[int, list[tuple[int, bool]]] = defaultdict(list)
        for item_id, cid, accepted in session.execute(stmt).all():
            per_item[item_id].append((cid, bool(accepted)))
        for item_id, cands in per_item.items():
            accepted_ids = [c for c, ok in cands if ok]
            shown = accepted_ids if accepted_ids or not rnd.include_unaccepted else [c for c, _ in cands]
            out[(rnd.id, item_id)] = {cid: i + 1 for i, cid in enumerate(shown[: rnd.max_shown])}
    return out


def _positions_outside_rounds(session: Session, project_id: int, round_ids: set[int]) -> dict[int, int]:
    """Candidate id -> 1-based position among the accepted candidates of its run and item, for the
    candidates of the project's submitted reviews made outside any (known) round."""
    outside = (Selection.round_id.is_(None) | Selection.round_id.not_in(round_ids)) if round_ids \
        else Selection.round_id.is_(None)
    where = and_(_submitted(project_id), outside)
    pairs = {(int(r), int(i)) for r, i in session.execute(
        select(Candidate.run_id, Candidate.item_id).distinct()
        .join(Selection, Selection.candidate_id == Candidate.id)
        .join(Item, Item.id == Selection.item_id)
        .where(where)
    ).all()}
    reviewed = select(Selection.item_id).join(Item, Item.id == Selection.item_id).where(where)
    out: dict[int, int] = {}
    last: tuple[int, int] | None = None
    rank = 0
    for item_id, run_id, cid in session.execute(  # by item (its index), a few candidates each
        select(Candidate.item_id, Candidate.run_id, Candidate.id)
        .where(Candidate.item_id.in_(reviewed), Candidate.accepted.is_(True))
        .order_by(Candidate.item_id, Candidate.run_id, Candidate.sample_index, Candidate.id)
    ).all():
        if (run_id, item_id) not in pairs:
            continue
        rank = rank + 1 if last == (run_id, item_id) else 1
        last = (run_id, item_id)
        out[cid] = rank
    return out


REVIEW_COLUMNS = (Selection.id, Selection.item_id, Selection.annotator_id, Selection.candidate_id,
                  Selection.edited_text, Selection.state, Selection.verdict, Selection.codebook_id,
                  Selection.round_id, Selection.updated_at)


def submitted_reviews(session: Session, project_id: int) -> list[Review]:
    """The project's submitted reviews (plain rows, not ORM objects: thousands are read at
    once), each with its candidate set and position."""
    rows = session.execute(
        select(*REVIEW_COLUMNS)
        .join(Item, Item.id == Selection.item_id)
        .where(_submitted(project_id))
        .order_by(Selection.item_id, Selection.annotator_id)
    ).all()
    round_ids = {r.round_id for r in rows if r.round_id is not None}
    rounds = ({r.id: r for r in session.scalars(select(ReviewRound).where(ReviewRound.id.in_(round_ids))).all()}
              if round_ids else {})
    positions = shown_positions(session, rounds.values(), project_id=project_id)
    outside = _positions_outside_rounds(session, project_id, set(rounds)) \
        if any(r.round_id not in rounds and r.candidate_id is not None for r in rows) else {}
    reviews = []
    for r in rows:
        if r.round_id in rounds:
            pos = positions.get((r.round_id, r.item_id), {}).get(r.candidate_id) if r.candidate_id else None
            reviews.append(Review(r, r.round_id, pos))
        else:
            reviews.append(Review(r, None, outside.get(r.candidate_id) if r.candidate_id else None))
    return reviews


def outcome_key(selection: ReviewedSelection) -> tuple[str, int | None, str | None]:
    if selection.verdict == "none_fits" or selection.candidate_id is None:
        return (NONE, None, None)
    if selection.verdict == "edited":
        return ("edited", selection.candidate_id, selection.edited_text)
    return ("chosen", selection.candidate_id, None)
