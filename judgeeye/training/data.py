"""Training examples from the reasoning dataset D_reason: prompt, completion, loss mask.

Input is a small, explicit list of :class:`ReasonRow` (item fields, gold, split, trace, codebook
version); :func:`load_reason_rows` fills it from the review export (``judgeeye.review.export``)
or, without it, from the first accepted candidate per item of the latest sampling run.

One example is laid out exactly as the rater sees it at inference time:

* **prompt** = the codebook rendered with the item (``render_prompt``) through the model's chat
  template with the assistant turn opened, tokenized as the engines do (``render_chat`` +
  ``encode_text``);
* **completion** = the trace, then the codebook's final rating line (``<rating>N</rating>``, or
  ``Rating: N`` for a label-format codebook), then whatever closes an assistant turn in the chat
  template (e.g. ``<|im_end|>``). In ``labels_only`` mode (paper Table 4) the completion is the
  rating line alone.

The completion is tokenized in three pieces: ``trace + separator + cue`` as one string (the
engines' score read-out tokenizes ``trace + cue`` the same way), then the single rating token
(each level must be exactly one token after the cue: :func:`judgeeye.engines.readout.level_token_ids`),
then the rest. So ``rating_pos``, the index of the rating token, is known exactly; TRACT's
CoT-RAFT loss reads p(y) from the logits one position before it.

Loss is on the completion only (labels are -100 on the prompt). A row whose prompt + completion
exceeds ``max_length`` is reported and left out, never trained with its rating cut off.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from judgeeye.codebook import CodebookSpec, render_prompt
from judgeeye.ratings import answer_cue, parse_rating, trace_text
from judgeeye.store import Candidate, Codebook, Item, Project, SamplingRun

IGNORE = -100
#: stands in for the assistant's message when the chat template is probed for its turn ending
_PROBE = "\u2063JUDGEEYE-PROBE\u2063"


class TrainingDataError(ValueError):
    """The reasoning dataset cannot be used for training (says which project, run or row)."""


@dataclass
class ReasonRow:
    """One item of the reasoning dataset: what it shows, its gold label and its trace."""

    item_id: int
    external_id: str
    fields: dict[str, Any]
    gold: float
    split: str | None
    trace: str
    codebook_version: int | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class Example:
    """One tokenized training example."""

    item_id: int
    input_ids: list[int]
    labels: list[int]
    prompt_len: int
    #: index in input_ids of the rating token (the level right after the answer cue)
    rating_pos: int
    gold: int


@dataclass
class Excluded:
    item_id: int
    external_id: str
    reason: str
    length: int | None = None


@dataclass
class BuildReport:
    """Examples kept, and every row left out with why (too long, no trace, non-integer gold)."""

    examples: list[Example]
    excluded: list[Excluded]

    @property
    def too_long(self) -> list[Excluded]:
        return [e for e in self.excluded if e.reason == "too_long"]

    def summary(self) -> str:
        reasons = Counter(e.reason for e in self.excluded)
        text = f"{len(self.examples)} examples"
        if reasons:
            text += " (left out: " + ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in sorted(reasons.items())) + ")"
        return text


# ================================================================================ layout


@dataclass
class ChatLayout:
    """How a model's chat template wraps an assistant turn, learnt once per tokenizer."""

    tokenizer: Any
    cue: str
    levels: list[int]
    level_ids: dict[str, int]
    #: text that closes the assistant turn after its content (e.g. "<|im_end|>\n")
    turn_end: str
    think: bool

    @classmethod
    def build(cls, tokenizer: Any, spec: CodebookSpec, think_tags: str = "auto") -> ChatLayout:
        from judgeeye.engines.readout import level_token_ids
        from judgeeye.engines.transformers_engine import render_chat

        cue = answer_cue(spec.output_format)
        levels = list(range(spec.scale_min, spec.scale_max + 1))
        level_ids = level_token_ids(tokenizer, levels, cue)  # raises naming multi-token levels
        messages = [{"role": "user", "content": "x"}]
        prompt = render_chat(tokenizer, messages)
        turn_end = tokenizer.eos_token or ""
        if getattr(tokenizer, "chat_template", None):
            full = tokenizer.apply_chat_template(
                messages + [{"role": "assistant", "content": _PROBE}], tokenize=False)
            if isinstance(full, list):
                full = full[0]
            at = full.find(_PROBE)
            if at >= 0 and full[:at].startswith(prompt):
                turn_end = full[at + len(_PROBE):]
        template = getattr(tokenizer, "chat_template", None) or ""
        think = think_tags == "on" or (think_tags == "auto" and "<think>" in template)
        return cls(tokenizer, cue, levels, level_ids, turn_end, think)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def closing(self) -> str:
        """What follows the rating digit on the rating line ("</rating>" for the tag format)."""
        return "</rating>" if self.cue == "<rating>" else ""

    def completion_head(self, prompt_text: str, trace: str | None) -> str:
        """Completion text before the cue: the trace (in <think> tags for reasoning models) and a
        blank line; "" for labels only (``trace=None``)."""
        opened = prompt_text.rstrip().endswith("<think>")
        if trace is None:
            return "\n</think>\n\n" if opened else ""
        trace = trace.strip()
        if opened:  # the template already opened <think> (DeepSeek-R1 distills)
            return f"{trace}\n</think>\n\n"
        if self.think:
            return f"<think>\n{trace}\n</think>\n\n"
        return f"{trace}\n\n"

    def example(self, item_id: int, messages: list[dict[str, str]], trace: str | None, gold: int) -> Example:
        from judgeeye.engines.transformers_engine import render_chat

        prompt_text = render_chat(self.tokenizer, messages)
        prompt_ids = self.encode(prompt_text)
        head_ids = self.encode(self.completion_head(prompt_text, trace) + self.cue)
        rating_id = self.level_ids[str(gold)]
        tail_ids = self.encode(self.closing() + self.turn_end)
        completion = head_ids + [rating_id] + tail_ids
        input_ids = prompt_ids + completion
        labels = [IGNORE] * len(prompt_ids) + completion
        return Example(item_id=item_id, input_ids=input_ids, labels=labels, prompt_len=len(prompt_ids),
                       rating_pos=len(prompt_ids) + len(head_ids), gold=gold)


# ============================================================================== examples


def build_examples(
    rows: Sequence[ReasonRow],
    tokenizer: Any,
    spec: CodebookSpec,
    *,
    mode: str = "sft",
    max_length: int = 4096,
    think_tags: str = "auto",
) -> BuildReport:
    """Tokenized examples for ``rows`` (see the module docstring); rows that cannot be trained on
    are reported in :attr:`BuildReport.excluded`, never silently changed."""
    layout = ChatLayout.build(tokenizer, spec, think_tags)
    examples: list[Example] = []
    excluded: list[Excluded] = []
    for row in rows:
        gold = row.gold
        if gold is None or not float(gold).is_integer() or str(int(gold)) not in layout.level_ids:
            excluded.append(Excluded(row.item_id, row.external_id, "gold_not_a_level"))
            continue
        trace = None if mode == "labels_only" else (row.trace or "").strip()
        if trace == "":
            excluded.append(Excluded(row.item_id, row.external_id, "empty_trace"))
            continue
        ex = layout.example(row.item_id, render_prompt(spec, row.fields), trace, int(gold))
        if len(ex.input_ids) > max_length:
            excluded.append(Excluded(row.item_id, row.external_id, "too_long", len(ex.input_ids)))
            continue
        examples.append(ex)
    return BuildReport(examples, excluded)


def to_dataset(examples: Sequence[Example], *, rating_mask: bool = False):  # type: ignore[no-untyped-def]
    """A ``datasets.Dataset`` with ``input_ids`` and ``labels`` (TRL takes it as tokenized).

    ``rating_mask``: also a per-token column that is 1 at the rating token (``rating_pos``) and 0
    elsewhere. Being aligned with ``input_ids``, it survives packing and padding exactly as the
    tokens do, so TRACT's loss reads the rating where the data put it.
    """
    from datasets import Dataset

    data: dict[str, list[list[int]]] = {"input_ids": [e.input_ids for e in examples],
                                        "labels": [e.labels for e in examples]}
    if rating_mask:
        data["rating_mask"] = [[int(t == e.rating_pos) for t in range(len(e.input_ids))] for e in examples]
    return Dataset.from_dict(data)


def data_version(rows: Sequence[ReasonRow], codebook_version: int | None, mode: str) -> str:
    """A short hash of what was trained on (items, gold, traces, codebook, mode)."""
    h = hashlib.sha256()
    h.update(json.dumps([mode, codebook_version]).encode())
    for r in sorted(rows, key=lambda r: r.item_id):
        h.update(json.dumps([r.item_id, r.gold, r.trace]).encode())
    return h.hexdigest()[:16]


# ================================================================================ loading


def load_reason_rows(
    session: Session, project_id: int, *, source: str = "auto", sampling_run: int | None = None,
    splits: Sequence[str] = ("train",),
) -> tuple[list[ReasonRow], str]:
    """D_reason rows of the given splits and where they came from ("review" or "candidates").

    Item fields always come from the store (the prompt must be rendered exactly as raters see
    it). A trace that is empty because the model wrote no separate reasoning is the answer
    without its final rating statement (:func:`judgeeye.ratings.trace_text`).
    """
    project = session.get(Project, project_id)
    if project is None:
        raise TrainingDataError(f"no project {project_id}")
    rows: list[ReasonRow] = []
    used = source
    if source in ("auto", "review") and sampling_run is None:
        from judgeeye.review.export import reason_rows

        exported, _ = reason_rows(session, project_id, splits=list(splits))
        rows = _from_export(session, project, exported)
        used = "review"
    if not rows and source != "review":
        rows = _from_candidates(session, project, sampling_run, splits)
        used = "candidates"
    if not rows:
        where = f"sampling run {sampling_run}" if sampling_run else f"project {project.name!r}"
        raise TrainingDataError(
            f"{where} has no traces for the {'/'.join(splits)} split: sample traces (judgeeye sample) "
            "and, optionally, review them first")
    return rows, used


def _trace_of(reasoning: str, answer: str, scale: tuple[int, int]) -> str:
    if reasoning and reasoning.strip():
        return reasoning.strip()
    return trace_text("", answer or "", parse_rating(answer or "", *scale) if answer else None)


def _from_export(session: Session, project: Project, exported: list[dict[str, Any]]) -> list[ReasonRow]:
    items = {i.id: i for i in session.scalars(
        select(Item).where(Item.id.in_([r["item_id"] for r in exported]))).all()}
    scale = (project.scale_min, project.scale_max)
    out = []
    for r in exported:
        item = items[r["item_id"]]
        trace = r.get("trace") or ""
        if not trace.strip() and r.get("provenance") != "human-edited":
            trace = _trace_of("", r.get("answer") or "", scale)
        out.append(ReasonRow(
            item_id=item.id, external_id=item.external_id, fields=dict(item.fields or {}),
            gold=float(r["gold"]), split=item.split, trace=trace, codebook_version=r.get("codebook_version"),
            provenance={"source": "review", "provenance": r.get("provenance"),
                        "candidate_id": r.get("candidate_id"), "run_id": r.get("run_id")}))
    return out


def _from_candidates(session: Session, project: Project, run_id: int | None,
                     splits: Sequence[str]) -> list[ReasonRow]:
    """Without review: the first accepted candidate (lowest sample index) per item of one run."""
    if run_id is None:
        run_id = session.scalar(
            select(SamplingRun.id).join(Candidate, Candidate.run_id == SamplingRun.id)
            .where(SamplingRun.project_id == project.id, Candidate.accepted.is_(True))
            .order_by(SamplingRun.id.desc()).limit(1))
        if run_id is None:
            return []
    run = session.get(SamplingRun, run_id)
    if run is None or run.project_id != project.id:
        raise TrainingDataError(f"no sampling run {run_id} in project {project.name!r}")
    version = session.scalar(select(Codebook.version).where(Codebook.id == run.codebook_id))
    found = session.execute(
        select(Candidate, Item).join(Item, Item.id == Candidate.item_id)
        .where(Candidate.run_id == run_id, Candidate.accepted.is_(True), Candidate.target == "gold",
               Item.split.in_(list(splits)), Item.gold_status == "gold")
        .order_by(Item.id, Candidate.sample_index)).all()
    scale = (project.scale_min, project.scale_max)
    rows: dict[int, ReasonRow] = {}
    for cand, item in found:
        if item.id in rows:
            continue
        rows[item.id] = ReasonRow(
            item_id=item.id, external_id=item.external_id, fields=dict(item.fields or {}),
            gold=float(item.gold), split=item.split, trace=_trace_of(cand.reasoning, cand.answer, scale),
            codebook_version=version,
            provenance={"source": "candidates", "provenance": "first-accepted", "candidate_id": cand.id,
                        "run_id": run_id})
    return list(rows.values())


def rows_to_json(rows: Sequence[ReasonRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


def rows_from_json(data: Sequence[dict[str, Any]]) -> list[ReasonRow]:
    return [ReasonRow(**d) for d in data]


__all__ = [
    "IGNORE", "BuildReport", "ChatLayout", "Example", "Excluded", "ReasonRow", "TrainingDataError",
    "build_examples", "data_version", "load_reason_rows", "rows_from_json", "rows_to_json", "to_dataset",
]
