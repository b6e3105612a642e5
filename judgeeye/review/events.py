"""The append-only event log of selections: every change to a selection (an assignment, an
action, an undo) is one :class:`SelectionEvent` holding the selection before and after.

Both the queue (handing an item out) and the annotator's actions write it, so it lives apart
from either.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from judgeeye.store import Selection, SelectionEvent

SNAPSHOT_FIELDS = ("state", "verdict", "candidate_id", "edited_text", "edit_diff", "codebook_id")


def snapshot(selection: Selection) -> dict[str, Any]:
    """The fields of a selection that an undo restores."""
    return {name: getattr(selection, name) for name in SNAPSHOT_FIELDS}


def record(
    session: Session, selection: Selection, annotator_id: int, action: str, round_id: int,
    before: dict[str, Any] | None, now: datetime, **extra: Any,
) -> SelectionEvent:
    """Append one event: the selection as it was (``before``) and as it is now."""
    event = SelectionEvent(
        selection_id=selection.id, annotator_id=annotator_id, action=action, created_at=now,
        payload={"round_id": round_id, "item_id": selection.item_id, "before": before,
                 "after": snapshot(selection), **extra},
    )
    session.add(event)
    return event
