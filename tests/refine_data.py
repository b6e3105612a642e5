"""A small project with accepted traces at every rating level, and a scripted model for it.

The traces are hand-written analyses (three sentences per item from a pool per level), stored as
the accepted candidates of one sampling run, the way rejection sampling leaves them.
``scripted_reply`` answers the three Appendix D prompts and rating prompts deterministically, for
``tests/chat_server.py``: critiques are the analysis's sentences, one per line.
"""

from __future__ import annotations

import re

from judgeeye.auth import Actor
from judgeeye.codebook import load_builtin
from judgeeye.datasets import ColumnMapping, SplitRule, read_table
from judgeeye.projects import import_with_codebook
from judgeeye.store import Candidate, Item, SamplingRun, session_scope

POOLS = {
    1: ["The story has no plot at all.", "There are no named characters in the text.",
        "The text is only two sentences long.", "Nothing in the story is developed.",
        "The story has no setting to speak of."],
    2: ["The plot is thin and predictable.", "Only one character appears and has no motive.",
        "The ending comes abruptly.", "A few elements are introduced but left flat.",
        "The setting is named but never described."],
    3: ["Several elements are introduced but not developed.", "The characters have names but little depth.",
        "There is a conflict that is resolved too quickly.", "The setting adds some atmosphere.",
        "Two events are connected only loosely."],
    4: ["Two plot lines are woven together with a twist.", "The characters have clear motives and change.",
        "The setting is detailed and matters to the plot.", "Only a small part of the story feels rushed.",
        "Themes of loss and memory run under the events."],
    5: ["The story builds a rich world with its own rules.", "Several layered themes are developed throughout.",
        "Every character has depth and a distinct voice.", "The structure is non-linear and fully controlled.",
        "Subplots reinforce the central conflict."],
}
REFINED_MARKER = "Step 1: list the story's elements"


def trace_for(level: int, index: int) -> str:
    pool = POOLS[level]
    sentences = [pool[(index + j) % len(pool)] for j in range(3)]
    return " ".join(sentences) + f" <rating>{level}</rating>"


def make_project(tmp_path, per_level: int = 3, test_per_level: int = 1, name: str = "refine test",  # type: ignore[no-untyped-def]
                 val_per_level: int = 0) -> int:
    """Items rated 1..5 (three annotators agree), ``per_level`` train items per level with an
    accepted trace each (sample 1; sample 0 is a rejected one), then ``val_per_level`` validation
    and ``test_per_level`` test items per level."""
    rows = ["id,text,r1,r2,r3"]
    for level in range(1, 6):
        for i in range(per_level + val_per_level + test_per_level):
            rows.append(f"L{level}-{i},\"A story of level {level}, number {i}.\",{level},{level},{level}")
    path = tmp_path / "refine_items.csv"
    path.write_text("\n".join(rows) + "\n")
    mapping = ColumnMapping(id_column="id", text_columns={"story": "text"},
                            rating_columns={"r1": "r1", "r2": "r2", "r3": "r3"}, scale_min=1, scale_max=5,
                            dimension="complexity", generation_type="story")
    with session_scope() as s:
        report = import_with_codebook(s, read_table(path, mapping), actor=Actor.system(), project_name=name,
                                      codebook=load_builtin("hanna_complexity"),
                                      split_rule=SplitRule(ratios=(1.0, 0.0, 0.0)))
        project_id = report.project_id
        items = s.query(Item).filter(Item.project_id == project_id).order_by(Item.id).all()
        from judgeeye.codebook import current_version

        run = SamplingRun(project_id=project_id, codebook_id=current_version(s, project_id).id, k=2,
                          status="completed", engine={"kind": "transformers", "model": "embedded"})
        s.add(run)
        s.flush()
        for item in items:
            level, index = int(item.gold), int(item.external_id.split("-")[1])
            if index >= per_level:
                item.split = "validation" if index < per_level + val_per_level else "test"
                continue
            s.add(Candidate(run_id=run.id, item_id=item.id, sample_index=0, target="gold", target_label=level,
                            answer=f"Hard to say. <rating>{6 - level if level != 3 else 2}</rating>",
                            predicted=6 - level if level != 3 else 2, parse_ok=True, accepted=False))
            s.add(Candidate(run_id=run.id, item_id=item.id, sample_index=1, target="gold", target_label=level,
                            answer=trace_for(level, index), predicted=level, parse_ok=True, accepted=True))
    return project_id


def _between(prompt: str, tag: str) -> str:
    m = re.search(rf"<{tag}>\n(.*)\n</{tag}>", prompt, re.S)
    return m.group(1) if m else ""


def refined_instructions() -> str:
    return (f"{REFINED_MARKER}: characters, events, setting and themes.\nStep 2: judge how far each is developed "
            "and how they connect.\nStep 3: pick the level whose description fits best.")


def scripted_reply(prompt: str, body: dict | None = None) -> tuple[str, str]:
    """A deterministic model for the refinement prompts and for rating prompts (model ``rater-b``
    errs on more items than ``rater-a`` under the original codebook)."""
    if "list all the critique" in prompt:
        analysis = re.sub(r"<rating>.*?</rating>", "", _between(prompt, "analysis"))
        return "\n".join(s.strip() + "." for s in analysis.split(".") if s.strip()), "stop"
    if "extract a concrete and concise step-by-step instruction" in prompt:
        original = _between(prompt, "original_codebook")
        rubric = original[original.index("Rating scale:"):].split("\n\n")[0]
        return f"Here you go.\n<codebook>\n{refined_instructions()}\n\n{rubric}\n</codebook>", "stop"
    if "<critiques>" in prompt:
        critiques = _between(prompt, "critiques").splitlines()
        levels = []
        for level in range(1, 6):
            mine = [c.split(": ", 1)[1] for c in critiques if c.startswith(f"Rating {level}: ")]
            levels.append(f"{level}: " + " ".join(mine[:2]))
        return "<codebook>\nRate the story.\n\nRating scale:\n" + "\n".join(levels) + "\n</codebook>", "stop"
    if "<disagreements>" in prompt:  # the feedback round's revision
        marker = REFINED_MARKER if (body or {}).get("model") == "reviser-good" else "Read the story slowly"
        levels = "\n".join(f"{lv}: Level {lv} as the gold ratings show it." for lv in range(1, 6))
        return f"<codebook>\n{marker}.\n\nRating scale:\n{levels}\n</codebook>", "stop"
    m = re.search(r"A story of level (\d)", prompt)
    if m:  # a rating prompt: the refined codebook rates right, the original is off by one
        level = int(m.group(1))
        wrong = {3} if (body or {}).get("model") == "rater-a" else {2, 3}
        if REFINED_MARKER not in prompt and level in wrong:
            level += 1
        return f"Considering the elements. <rating>{level}</rating>", "stop"
    return "I cannot help with that.", "stop"


def save_as_another_author(project_id: int, version: int, level: int, text: str) -> None:
    """Someone else ("bea") saves an edit of ``version`` (changing one level) while a test's editor is open."""
    from judgeeye.codebook import list_versions, to_spec
    from judgeeye.codebook.editor import edited_spec, save_edit

    with session_scope() as s:
        spec = to_spec(next(v for v in list_versions(s, project_id) if v.version == version))
        other = edited_spec(spec, spec.instructions, {**{lv.level: lv.text for lv in spec.rubric}, level: text})
        save_edit(s, project_id, other, actor=Actor(None, "bea", "author"), edited_from=version,
                  seen_current=version, note=f"level {level}")


SECOND_RUN = "From the second run:"


def add_run(project_id: int) -> int:
    """A second sampling run over the same train items, whose accepted traces start with
    ``SECOND_RUN``; returns its id (the first run stays the items' first accepted trace)."""
    from judgeeye.codebook import current_version

    with session_scope() as s:
        run = SamplingRun(project_id=project_id, codebook_id=current_version(s, project_id).id, k=1,
                          status="completed", engine={"kind": "openai", "model": "other-model"})
        s.add(run)
        s.flush()
        for item in s.query(Item).filter(Item.project_id == project_id, Item.split == "train").order_by(Item.id):
            level, index = int(item.gold), int(item.external_id.split("-")[1])
            s.add(Candidate(run_id=run.id, item_id=item.id, sample_index=0, target="gold", target_label=level,
                            answer=f"{SECOND_RUN} {trace_for(level, index + 1)}", predicted=level, parse_ok=True,
                            accepted=True))
        return run.id
