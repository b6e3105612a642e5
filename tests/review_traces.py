"""Review rounds whose items show a chosen number of traces with chosen text (short, 20k
characters long, or empty), for the Review page's layout tests in AppTest and in chromium.

Built on review_data.make_project: real rows in a real store, every candidate accepted."""

from __future__ import annotations

from sqlalchemy import select

from judgeeye.review import open_round
from judgeeye.store import Candidate, Item, session_scope
from review_data import SYSTEM, make_project

#: a trace of 20,000 characters in paragraphs, its last words findable
LONG_TRACE = "\n".join(f"Paragraph {n}: " + "the plot turns on a small detail that the reader has to keep in mind. " * 4
                       for n in range(70))[:19_980] + " ENDOFTRACE"
TRACE_TEXTS = {
    "short": "The plot is simple and the characters are flat.",
    "long": LONG_TRACE,
    "empty": "",
}


def traces_round(annotators: list[str], n_traces: int, text: str = "short", *, n_items: int = 2,
                 no_gold: bool = False) -> int:
    """A round for ``annotators`` over ``n_items`` items with ``n_traces`` accepted candidates
    each, whose reasoning is TRACE_TEXTS[text] (numbered, unless empty) and whose answer states
    the gold rating 3; ``no_gold`` clears the items' gold rating once the round is open.
    Returns the round's id."""
    _, run_id = make_project(n_items, k=n_traces, name=f"layout {n_traces} {text}")
    with session_scope() as s:
        for c in s.scalars(select(Candidate).where(Candidate.run_id == run_id)).all():
            c.reasoning = f"Sample {c.sample_index + 1}. {TRACE_TEXTS[text]}" if text != "empty" else ""
            c.answer = "<rating>3</rating>"
            c.predicted, c.target_label, c.accepted = 3.0, 3.0, True
        for item in s.scalars(select(Item).join(Candidate, Candidate.item_id == Item.id)
                              .where(Candidate.run_id == run_id)).unique().all():
            item.gold, item.ratings = 3.0, {"r1": 3, "r2": 3, "r3": 4}
        s.flush()
        round_id = open_round(s, SYSTEM, run_id, annotators).id
        if no_gold:
            for item in s.scalars(select(Item).join(Candidate, Candidate.item_id == Item.id)
                                  .where(Candidate.run_id == run_id)).unique().all():
                item.gold = None
    return round_id
