"""Everything the Review screen shows for one item, read in one transaction.

Model and sample identity stay out of it: traces are numbered 1..n in the annotator's own
shuffled order and carry their text, their candidate id (for the actions) and the acceptance mode
that gave their rating ("written" by the trace itself, or "forced_cue": read after the answer cue
was appended to a trace that wrote none), so the page can tell a forced rating from a written one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from judgeeye.auth import Actor
from judgeeye.review.actions import my_selection
from judgeeye.review.queue import member_round
from judgeeye.review.rounds import display_order, item_of_round, shown_candidates
from judgeeye.review.traces import split_trace
from judgeeye.store import Codebook, Project


@dataclass
class TraceView:
    number: int  # 1-based, in this annotator's order; the key that chooses it
    candidate_id: int
    reasoning: str
    answer: str
    #: "written", "forced_cue", or None (the trace has no rating: shown with unaccepted traces)
    acceptance_mode: str | None = None


@dataclass
class ItemView:
    round_id: int
    round_name: str
    item_id: int
    external_id: str
    fields: list[tuple[str, str]]
    gold: float | None
    ratings: dict[str, Any]
    scale: tuple[int, int]
    traces: list[TraceView]
    state: str
    verdict: str | None
    chosen_number: int | None
    edited_text: str | None
    codebook_version: int | None
    codebook_instructions: str = ""
    codebook_levels: list[tuple[int, str]] = field(default_factory=list)

    def trace(self, number: int) -> TraceView:
        return self.traces[number - 1]

    def number_of(self, candidate_id: int | None) -> int | None:
        return next((t.number for t in self.traces if t.candidate_id == candidate_id), None)


def item_view(session: Session, actor: Actor, round_id: int, item_id: int) -> ItemView:
    rnd = member_round(session, actor, round_id)
    assert actor.id is not None
    item = item_of_round(session, rnd, item_id)
    project = session.get(Project, rnd.project_id)
    assert project is not None
    ordered = display_order(shown_candidates(session, rnd, item_id), actor.id, item_id)
    scale = (project.scale_min, project.scale_max)
    traces = [TraceView(n, c.id, *split_trace(c, scale), acceptance_mode=c.acceptance_mode)
              for n, c in enumerate(ordered, start=1)]
    names = list(project.text_fields or []) or sorted(item.fields or {})
    selection = my_selection(session, actor, item_id)
    codebook = session.get(Codebook, project.current_codebook_id) if project.current_codebook_id else None
    view = ItemView(
        round_id=rnd.id, round_name=rnd.name, item_id=item.id, external_id=item.external_id,
        fields=[(name, str((item.fields or {}).get(name, ""))) for name in names],
        gold=item.gold, ratings=dict(item.ratings or {}), scale=(project.scale_min, project.scale_max),
        traces=traces,
        state=selection.state if selection is not None and selection.round_id == rnd.id else "pending",
        verdict=selection.verdict if selection is not None and selection.round_id == rnd.id else None,
        chosen_number=None, edited_text=None,
        codebook_version=codebook.version if codebook else None,
        codebook_instructions=codebook.instructions if codebook else "",
        codebook_levels=[(int(lv["level"]), str(lv["text"])) for lv in (codebook.rubric if codebook else [])],
    )
    if selection is not None and selection.round_id == rnd.id:
        view.chosen_number = view.number_of(selection.candidate_id)
        view.edited_text = selection.edited_text
    return view
