"""An optional further round: revise a codebook from its disagreements with gold on the
validation split, and keep the revision only if validation Kendall τ improves.

Like GEPA or TextGrad accepting a prompt edit, a rater prompted with the codebook rates the
validation split; the items it got wrong (item, gold, its rating, its reasoning) go to a reviser
model with the prompt below (JudgeEye's own: the paper has no such round); the revised codebook
is stored as a candidate version, rates the same validation items with the same rater, and is
kept (origin ``refined_feedback``) only when its τ is higher, otherwise marked
``rejected_feedback``. The choice only ever looks at the validation split, never at the test split.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select

from judgeeye.auth import Actor, require
from judgeeye.codebook import (
    CodebookSpec,
    create_version,
    get_version,
    render_codebook,
    render_guidelines,
    to_spec,
)
from judgeeye.engines import EngineConfig, SamplingParams, make_engine
from judgeeye.evaluate import RaterSpec
from judgeeye.metrics import kendall_tau
from judgeeye.refine.compare import rate_inline, rater_runs_for
from judgeeye.refine.llm import BadAnswer, ask, supports_prefill
from judgeeye.refine.prompts import fill
from judgeeye.refine.refiner import parse_full_rubric
from judgeeye.store import Item, Prediction, Project, session_scope

SPLIT = "validation"
REVISION_PROMPT = """<instruction>
You will be given annotation guidelines for scoring the {dimension} of {generation_type}, and a list of
cases in which a rater who followed them disagreed with the human gold rating. Each case shows the
item, the gold rating, the rater's rating and the rater's reasoning. Revise the guidelines (the
instructions and the rubric) so that a rater following them would agree with the gold ratings, without
mentioning these particular items. Keep every rating level. Your final annotation guidelines should be
put into <codebook>...</codebook> tag.
</instruction>

<original_codebook>
{original_codebook}
</original_codebook>

<disagreements>
{disagreements}
</disagreements>"""


@dataclass
class Case:
    item_id: int
    external_id: str
    fields: dict[str, Any]
    gold: float
    rating: float | None
    reasoning: str


@dataclass
class FeedbackResult:
    base_version: int
    candidate_version: int
    accepted: bool
    tau_base: float
    tau_candidate: float
    base_run: int
    candidate_run: int
    cases: int


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n].rstrip() + " …"


def format_cases(cases: list[Case], max_chars: int = 1500) -> str:
    blocks = []
    for i, c in enumerate(cases, 1):
        fields = "\n".join(f"{k}: {_clip(str(v), max_chars)}" for k, v in c.fields.items())
        rating = "none (no rating could be read)" if c.rating is None else f"{c.rating:g}"
        blocks.append(f"Case {i}\nItem:\n{fields}\nGold rating: {c.gold:g}\nRater's rating: {rating}\n"
                      f"Rater's reasoning:\n{_clip(c.reasoning.strip(), max_chars)}")
    return "\n\n".join(blocks)


def disagreements(run_id: int, max_cases: int) -> list[Case]:
    """The run's wrong or unreadable ratings, largest errors first (ties by item id)."""
    with session_scope() as session:
        rows = session.execute(select(Prediction, Item).join(Item, Item.id == Prediction.item_id)
                               .where(Prediction.rater_run_id == run_id).order_by(Item.id)).all()
        cases = [Case(i.id, i.external_id, dict(i.fields or {}), float(i.gold), p.rating, p.reasoning or p.answer)
                 for p, i in rows if i.gold is not None and (p.rating is None or p.rating != i.gold)]
    cases.sort(key=lambda c: (-(math.inf if c.rating is None else abs(c.rating - c.gold)), c.item_id))
    return cases[:max_cases]


def run_tau(run_id: int) -> float:
    with session_scope() as session:
        pairs = session.execute(select(Item.gold, Prediction.rating).join(Item, Item.id == Prediction.item_id)
                                .where(Prediction.rater_run_id == run_id)).all()
    gold = np.array([np.nan if g is None else g for g, _ in pairs], dtype=float)
    pred = np.array([np.nan if r is None else r for _, r in pairs], dtype=float)
    return float(kendall_tau(gold, pred))


def revision_answer(block: str, base: CodebookSpec) -> CodebookSpec:
    parsed = parse_full_rubric(block, base, "the revised rubric")
    if render_guidelines(parsed) == render_guidelines(base):
        raise BadAnswer("the answer leaves the codebook unchanged")
    return parsed


def _rated(project_id: int, version: int, rater: RaterSpec, log: Callable[[str], None]) -> int:
    with session_scope() as session:
        run_id = rater_runs_for(session, project_id, version, rater, SPLIT).id
    status = rate_inline([run_id], log=log)[run_id]
    if status != "completed":
        raise RuntimeError(f"rater run {run_id} (v{version}, validation split) ended {status}")
    return run_id


def feedback_round(project_id: int, version: int, rater: RaterSpec, reviser: EngineConfig, *, actor: Actor,
                   max_cases: int = 20, attempts: int = 3, max_tokens: int = 2048, temperature: float = 0.7,
                   seed: int = 0, log: Callable[[str], None] = print) -> FeedbackResult:
    """One revision of ``version`` from its validation disagreements, kept only if τ improves
    (``actor`` must hold ``edit_codebook``: the revision becomes a version)."""
    require(actor, "edit_codebook")
    with session_scope() as session:
        project = session.get(Project, project_id)
        if project is None:
            raise LookupError(f"no project {project_id}")
        base_row = get_version(session, project_id, version)
        base = to_spec(base_row, project)
    base_run = _rated(project_id, version, rater, log)
    tau_base = run_tau(base_run)
    cases = disagreements(base_run, max_cases)
    if not cases:
        raise ValueError(f"codebook v{version} already agrees with gold on every validation item: nothing to revise")
    prompt = fill(REVISION_PROMPT, {"dimension": base.dimension, "generation_type": base.generation_type,
                                    "original_codebook": render_codebook(base),
                                    "disagreements": format_cases(cases)})
    with make_engine(reviser) as engine:
        prefill = "<codebook>\n" if supports_prefill(engine) else None
        spec, tried = ask(engine, prompt, lambda block: revision_answer(block, base), step="feedback revision",
                          params=SamplingParams(temperature, 0.95, max_tokens, seed), attempts=attempts,
                          prefill=prefill, log=log)
    record: dict[str, Any] = {
        "split": SPLIT, "base_version": version, "rater": rater.model_dump(mode="json"),
        "reviser": reviser.model_dump(mode="json"), "base_run": base_run, "tau_base": tau_base,
        "cases": [c.item_id for c in cases], "prompt": prompt, "prefill": prefill,
        "attempts": [a.to_dict(2000) for a in tried],
    }
    with session_scope() as session:
        row = create_version(session, project_id, spec, parent_id=base_row.id, origin="feedback_candidate",
                             author=actor.name, inputs={"feedback": record}, make_current=False)
        candidate = row.version
    candidate_run = _rated(project_id, candidate, rater, log)
    tau_candidate = run_tau(candidate_run)
    accepted = not math.isnan(tau_candidate) and (math.isnan(tau_base) or tau_candidate > tau_base)
    with session_scope() as session:
        row = get_version(session, project_id, candidate)
        row.origin = "refined_feedback" if accepted else "rejected_feedback"
        row.note = (f"validation τ {tau_base:.3f} → {tau_candidate:.3f}: "
                    + ("kept" if accepted else "not kept (no improvement)"))
        row.inputs = {"feedback": {**record, "candidate_run": candidate_run, "tau_candidate": tau_candidate,
                                   "accepted": accepted}}
    log(f"feedback round: v{candidate} {'kept' if accepted else 'rejected'} "
        f"(validation τ {tau_base:.3f} → {tau_candidate:.3f})")
    return FeedbackResult(version, candidate, accepted, tau_base, tau_candidate, base_run, candidate_run, len(cases))
