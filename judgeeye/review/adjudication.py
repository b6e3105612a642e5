"""Disagreements among an item's reviewers, and a lead settling them.

A disagreement is an item (within one round, one candidate set) whose submitted reviews do not
all give the same outcome: a different trace, 'none fits' against a trace, or two different
edits. A lead's :func:`adjudicate` appends an :class:`Adjudication`; the newest one is the
item's settled trace and the export uses it (provenance ``adjudicated``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from judgeeye.auth import Actor, require
from judgeeye.review.errors import ReviewError
from judgeeye.review.labels import Review, outcome_key, submitted_reviews
from judgeeye.review.rounds import get_round
from judgeeye.store import Adjudication, Annotator, Candidate, Item, Project

VERDICTS = ("chosen", "edited", "none_fits")


@dataclass
class Choice:
    annotator: str
    verdict: str
    candidate_id: int | None
    position: int | None  # 1-based position in the canonical shown set
    edited_text: str | None


@dataclass
class Disagreement:
    item_id: int
    external_id: str
    round_id: int | None  # None: reviews made outside a round
    choices: list[Choice] = field(default_factory=list)
    settled: Adjudication | None = None


def latest_adjudications(session: Session, item_ids: list[int] | None = None) -> dict[int, Adjudication]:
    stmt = select(Adjudication).order_by(Adjudication.id)
    if item_ids is not None:
        stmt = stmt.where(Adjudication.item_id.in_(item_ids))
    return {a.item_id: a for a in session.scalars(stmt).all()}


def disagreements(
    session: Session, project_id: int, *, round_id: int | None = None, include_settled: bool = False
) -> list[Disagreement]:
    reviews = submitted_reviews(session, project_id)
    if round_id is not None:
        reviews = [r for r in reviews if r.round_id == round_id]
    groups: dict[tuple[int | None, int], list[Review]] = defaultdict(list)
    for r in reviews:
        groups[r.group].append(r)
    conflicted = {key: rs for key, rs in groups.items()
                  if len(rs) >= 2 and len({outcome_key(r.selection) for r in rs}) > 1}
    if not conflicted:
        return []
    item_ids = sorted({item_id for _, item_id in conflicted})
    settled = latest_adjudications(session, item_ids)
    external = dict(session.execute(select(Item.id, Item.external_id).where(Item.id.in_(item_ids))).all())
    names = dict(session.execute(select(Annotator.id, Annotator.name)).all())
    out = []
    for (rid, item_id), rs in sorted(conflicted.items(), key=lambda kv: (kv[0][1], kv[0][0] or 0)):
        done = settled.get(item_id)
        if done is not None and not include_settled:
            continue
        out.append(Disagreement(
            item_id=item_id, external_id=external.get(item_id, str(item_id)), round_id=rid, settled=done,
            choices=[Choice(names.get(r.selection.annotator_id, f"#{r.selection.annotator_id}"),
                            "none_fits" if r.none_fits else (r.selection.verdict or "chosen"),
                            r.selection.candidate_id, r.position, r.selection.edited_text)
                     for r in rs],
        ))
    return out


def adjudicate(
    session: Session,
    actor: Actor,
    item_id: int,
    *,
    verdict: str,
    candidate_id: int | None = None,
    edited_text: str | None = None,
    round_id: int | None = None,
    note: str | None = None,
) -> Adjudication:
    """Settle an item (leads and admins): a trace, an edit of a trace, or none fits."""
    require(actor, "adjudicate")
    if actor.id is None:
        raise ReviewError("adjudication is recorded under a named lead, not the system user")
    item = session.get(Item, item_id)
    if item is None:
        raise ReviewError(f"no item {item_id}")
    if verdict not in VERDICTS:
        raise ReviewError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    if verdict == "none_fits":
        candidate_id, edited_text = None, None
    else:
        if candidate_id is None:
            raise ReviewError(f"a {verdict!r} settlement needs the trace (candidate id)")
        candidate = session.get(Candidate, candidate_id)
        if candidate is None or candidate.item_id != item_id:
            raise ReviewError(f"candidate {candidate_id} is not a trace of item {item_id}")
        if round_id is not None and candidate.run_id != get_round(session, round_id).run_id:
            raise ReviewError(f"candidate {candidate_id} is not from the sampling run of round {round_id}")
        if verdict == "edited" and not (edited_text or "").strip():
            raise ReviewError("an 'edited' settlement needs the edited text")
        if verdict == "chosen":
            edited_text = None
    project = session.get(Project, item.project_id)
    row = Adjudication(item_id=item_id, round_id=round_id, lead_id=actor.id, verdict=verdict,
                       candidate_id=candidate_id, edited_text=edited_text, note=(note or None),
                       codebook_id=project.current_codebook_id if project else None)
    session.add(row)
    session.flush()
    return row
