"""Review statistics for leads and annotators: progress, pace, agreement on the chosen trace.

``annotator_progress`` and ``choice_agreement`` are what the Agreement and Assignments pages
show; ``my_progress`` is the bar on an annotator's Review page.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pandas as pd
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from judgeeye.metrics import fleiss_kappa_from_labels
from judgeeye.review.labels import NONE, submitted_reviews
from judgeeye.review.queue import OPEN_STATES, aware, now_utc
from judgeeye.store import (
    Annotator,
    Item,
    ReviewAssignment,
    ReviewRound,
    ReviewTask,
    Selection,
    SelectionEvent,
)

SUBMIT_ACTIONS = ("choose", "none_fits", "edit_submit")
#: gaps longer than this between two submissions are breaks, not work
PACE_MAX_GAP = timedelta(minutes=10)
PROGRESS_COLUMNS = ["annotator", "role", "assigned", "submitted", "skipped", "none_fits", "edited",
                    "drafts", "today", "pace_per_hour", "last_active"]
AGREEMENT_NOTE = ("Agreement compares the trace each reviewer chose (an edit counts as a choice of its "
                  "source trace; 'none fits' is a category). Choices are comparable only within the same "
                  "candidate set, so items are grouped by review round; Fleiss' κ uses the items with the "
                  "most common number of reviewers, and its categories are trace positions in the "
                  "canonical (unshuffled) order, which mean different traces on different items.")


def start_of_today(now: datetime | None = None) -> datetime:
    """Midnight of the server's local day, in UTC."""
    local = (now or now_utc()).astimezone()
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(timezone.utc)


def pace_per_hour(times: Sequence[datetime]) -> float:
    """Submissions per hour of work, from submission times (gaps over 10 minutes are breaks)."""
    stamps = sorted(aware(t) for t in times if t is not None)  # type: ignore[misc]
    if len(stamps) < 2:
        return math.nan
    worked = sum((min(b - a, PACE_MAX_GAP) for a, b in zip(stamps, stamps[1:])), timedelta())
    seconds = worked.total_seconds()
    return (len(stamps) - 1) * 3600.0 / seconds if seconds > 0 else math.nan


@dataclass
class MyProgress:
    """One annotator in one round: what the Review page shows at all times."""

    submitted: int
    skipped: int
    open: int
    available: int
    today: int
    pace_per_hour: float

    @property
    def assigned(self) -> int:
        """Reviews this annotator has done or can still get in the round."""
        return self.submitted + self.open + self.available

    @property
    def share(self) -> float:
        return self.submitted / self.assigned if self.assigned else 1.0


def _submission_times(session: Session, annotator_id: int, since: datetime, *, round_id: int | None = None) -> list[datetime]:
    stmt = (
        select(SelectionEvent.created_at)
        .join(Selection, Selection.id == SelectionEvent.selection_id)
        .where(SelectionEvent.annotator_id == annotator_id, SelectionEvent.action.in_(SUBMIT_ACTIONS),
               SelectionEvent.created_at >= since)
    )
    if round_id is not None:
        stmt = stmt.where(Selection.round_id == round_id)
    return [aware(t) for t in session.scalars(stmt).all()]  # type: ignore[misc]


def my_progress(session: Session, annotator_id: int, round_id: int, *, now: datetime | None = None) -> MyProgress:
    now = now or now_utc()
    a, s, t = ReviewAssignment, Selection, ReviewTask
    states = dict(session.execute(
        select(s.state, func.count())
        .join(a, and_(a.item_id == s.item_id, a.annotator_id == s.annotator_id, a.round_id == round_id))
        .where(s.annotator_id == annotator_id, s.round_id == round_id)
        .group_by(s.state)
    ).all())
    taken = (
        select(a.item_id, func.count().label("n"))
        .join(s, and_(s.item_id == a.item_id, s.annotator_id == a.annotator_id))
        .where(a.round_id == round_id, s.round_id == round_id,
               or_(s.state == "submitted", and_(s.state.in_(OPEN_STATES), a.lease_expires_at > now)))
        .group_by(a.item_id)
        .subquery()
    )
    mine = select(a.item_id).where(a.round_id == round_id, a.annotator_id == annotator_id)
    rnd = session.get(ReviewRound, round_id)
    available = 0
    if rnd is not None and rnd.status == "open":
        available = int(session.scalar(
            select(func.count()).select_from(t)
            .outerjoin(taken, taken.c.item_id == t.item_id)
            .where(t.round_id == round_id, t.item_id.not_in(mine), func.coalesce(taken.c.n, 0) < t.required)
        ) or 0)
    times = _submission_times(session, annotator_id, start_of_today(now), round_id=round_id)
    return MyProgress(
        submitted=int(states.get("submitted", 0)), skipped=int(states.get("skipped", 0)),
        open=int(states.get("pending", 0) + states.get("draft", 0)), available=available,
        today=_count_items_today(session, annotator_id, start_of_today(now), round_id),
        pace_per_hour=pace_per_hour(times),
    )


def _count_items_today(session: Session, annotator_id: int, since: datetime, round_id: int | None) -> int:
    stmt = select(func.count()).select_from(Selection).where(
        Selection.annotator_id == annotator_id, Selection.state == "submitted", Selection.updated_at >= since)
    if round_id is not None:
        stmt = stmt.where(Selection.round_id == round_id)
    return int(session.scalar(stmt) or 0)


def annotator_progress(session: Session, project_id: int) -> pd.DataFrame:
    """One row per annotator of the project's rounds (or with reviews in it): items assigned,
    submitted, skipped, 'none fits', edited, drafts, submitted today, pace (items/hour today)."""
    members: set[int] = set()
    for ids in session.scalars(select(ReviewRound.annotator_ids).where(ReviewRound.project_id == project_id)).all():
        members.update(ids or [])
    in_project = select(Item.id).where(Item.project_id == project_id)
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    last: dict[int, datetime] = {}
    for annotator_id, state, verdict, no_candidate, n, latest in session.execute(
        select(Selection.annotator_id, Selection.state, Selection.verdict, Selection.candidate_id.is_(None),
               func.count(), func.max(Selection.updated_at))
        .where(Selection.item_id.in_(in_project))
        .group_by(Selection.annotator_id, Selection.state, Selection.verdict, Selection.candidate_id.is_(None))
    ).all():
        row = counts[annotator_id]
        if state == "submitted":
            row["submitted"] += n
            row["none_fits"] += n if verdict == "none_fits" or no_candidate else 0
            row["edited"] += n if verdict == "edited" else 0
        elif state == "skipped":
            row["skipped"] += n
        elif state == "draft":
            row["drafts"] += n
        if state != "pending" and latest is not None:
            last[annotator_id] = max(last.get(annotator_id, aware(latest)), aware(latest))  # type: ignore[arg-type]
    assigned = dict(session.execute(
        select(ReviewAssignment.annotator_id, func.count(func.distinct(ReviewAssignment.item_id)))
        .join(ReviewRound, ReviewRound.id == ReviewAssignment.round_id)
        .where(ReviewRound.project_id == project_id)
        .group_by(ReviewAssignment.annotator_id)
    ).all())
    since = start_of_today()
    today = dict(session.execute(
        select(Selection.annotator_id, func.count())
        .where(Selection.item_id.in_(in_project), Selection.state == "submitted", Selection.updated_at >= since)
        .group_by(Selection.annotator_id)
    ).all())
    times: dict[int, list[datetime]] = defaultdict(list)
    for annotator_id, created in session.execute(
        select(SelectionEvent.annotator_id, SelectionEvent.created_at)
        .join(Selection, Selection.id == SelectionEvent.selection_id)
        .where(Selection.item_id.in_(in_project), SelectionEvent.action.in_(SUBMIT_ACTIONS),
               SelectionEvent.created_at >= since)
    ).all():
        times[annotator_id].append(aware(created))  # type: ignore[arg-type]
    ids = members | set(counts) | set(assigned)
    people = {u.id: u for u in session.scalars(select(Annotator).where(Annotator.id.in_(ids))).all()} if ids else {}
    rows = []
    for annotator_id in sorted(ids, key=lambda i: people[i].name if i in people else ""):
        c = counts.get(annotator_id, {})
        user = people.get(annotator_id)
        rows.append({
            "annotator": user.name if user else f"#{annotator_id}", "role": user.role if user else "",
            "assigned": int(assigned.get(annotator_id, 0)), "submitted": c.get("submitted", 0),
            "skipped": c.get("skipped", 0), "none_fits": c.get("none_fits", 0), "edited": c.get("edited", 0),
            "drafts": c.get("drafts", 0), "today": int(today.get(annotator_id, 0)),
            "pace_per_hour": pace_per_hour(times.get(annotator_id, [])), "last_active": last.get(annotator_id),
        })
    return pd.DataFrame(rows, columns=PROGRESS_COLUMNS)


def choice_agreement(session: Session, project_id: int) -> dict[str, object]:
    """Agreement on the chosen trace among items reviewed by two or more annotators.

    Keys: ``n_items`` (items with ≥ 2 reviews in one round), ``n_reviews``,
    ``percent_agreement`` (mean share of agreeing reviewer pairs per item), ``fleiss_kappa``,
    ``fleiss_items`` and ``raters_per_item`` (the items and reviewer count κ was computed on),
    ``none_label`` (the label of 'none fits'),
    ``none_fits_rate`` ({annotator: share of their submitted reviews that said none fits}),
    ``per_annotator`` (rows with reviews, none_fits, edited, none_fits_rate) and ``note``.
    """
    reviews = submitted_reviews(session, project_id)
    names = dict(session.execute(select(Annotator.id, Annotator.name)).all())
    groups: dict[tuple[int | None, int], list[str]] = defaultdict(list)
    per: dict[str, dict[str, int]] = defaultdict(lambda: {"reviews": 0, "none_fits": 0, "edited": 0})
    for r in reviews:
        groups[r.group].append(r.label)
        row = per[names.get(r.selection.annotator_id, f"#{r.selection.annotator_id}")]
        row["reviews"] += 1
        row["none_fits"] += int(r.none_fits)
        row["edited"] += int(r.selection.verdict == "edited")
    multi = [labels for labels in groups.values() if len(labels) >= 2]
    pairwise = []
    for labels in multi:
        n = len(labels)
        same = sum(labels.count(v) * (labels.count(v) - 1) for v in set(labels))
        pairwise.append(same / (n * (n - 1)))
    kappa, fleiss_items, m = math.nan, 0, 0
    if multi:
        sizes = pd.Series([len(labels) for labels in multi])
        m = int(sizes.mode().max())
        rows = [labels for labels in multi if len(labels) == m]
        fleiss_items = len(rows)
        kappa = fleiss_kappa_from_labels(rows) if fleiss_items else math.nan
    per_annotator = [
        {"annotator": name, **row, "none_fits_rate": row["none_fits"] / row["reviews"] if row["reviews"] else math.nan}
        for name, row in sorted(per.items())
    ]
    return {
        "n_items": len(multi),
        "n_reviews": len(reviews),
        "percent_agreement": float(sum(pairwise) / len(pairwise)) if pairwise else math.nan,
        "fleiss_kappa": float(kappa),
        "fleiss_items": fleiss_items,
        "raters_per_item": m,
        "none_fits_rate": {r["annotator"]: r["none_fits_rate"] for r in per_annotator},
        "per_annotator": per_annotator,
        "none_label": NONE,
        "note": AGREEMENT_NOTE,
    }


def _when(moment: datetime | None) -> str:
    return "—" if moment is None or pd.isna(moment) else f"{aware(moment):%Y-%m-%d %H:%M} UTC"


def progress_view(progress: pd.DataFrame) -> pd.DataFrame:
    """:func:`annotator_progress` as people read it: column names in words, pace rounded, "—"
    where there is no pace or activity yet."""
    view = progress.rename(columns={"none_fits": "none fits", "pace_per_hour": "pace (items/h)",
                                    "last_active": "last active"})
    view["pace (items/h)"] = ["—" if pd.isna(v) else f"{v:,.0f}" for v in progress["pace_per_hour"]]
    view["last active"] = [_when(v) for v in progress["last_active"]]
    return view


def agreement_rows(agreement: dict[str, object]) -> pd.DataFrame:
    """:func:`choice_agreement` as a two-column table in words (measure, value)."""
    pa, kappa = float(agreement["percent_agreement"]), float(agreement["fleiss_kappa"])  # type: ignore[arg-type]
    on = f" (on {agreement['fleiss_items']} items with {agreement['raters_per_item']} reviewers each)"
    return pd.DataFrame([
        {"measure": "Items reviewed by two or more people", "value": f"{agreement['n_items']:,}"},
        {"measure": "Reviews submitted", "value": f"{agreement['n_reviews']:,}"},
        {"measure": "Percent agreement", "value": "—" if math.isnan(pa) else f"{pa:.0%}"},
        {"measure": "Fleiss' κ", "value": "—" if math.isnan(kappa) else f"{kappa:.2f}{on}"},
    ], columns=["measure", "value"])
