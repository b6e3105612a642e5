"""Review: pick the trace that matches your own reasoning, say none fits, or edit one.

Every click or key is saved to the store at once; a reload or a restart brings you back to the
same item. Keys: 1-9 choose, N none fits, E edit, S skip, B back, F forward, U undo.
"""

from __future__ import annotations

import math
from functools import partial

import streamlit as st

from judgeeye.codebook import word_ops
from judgeeye.display import escape_markdown
from judgeeye.review import (
    ItemView,
    ReviewError,
    choose,
    following_item,
    history,
    item_view,
    my_progress,
    next_item,
    none_fits,
    previous_item,
    rounds_for,
    save_edit,
    skip,
    undo,
)
from judgeeye.store import Project, read_scope, session_scope
from judgeeye_app.ui.access import require_permission

actor = require_permission("review")
KEYS = "Keys: **1–9** choose a trace · **N** none fits · **E** edit · **S** skip · **B** back · **F** forward · **U** undo"
LAYOUTS = ["Side by side", "Stacked"]
#: side by side, traces sit in rows of at most this many columns: narrower ones are unreadable
MAX_COLUMNS = 3
#: a trace's reasoning scrolls in a box this high side by side, and in the stacked layout once it
#: is longer than LONG_TRACE characters (so that the choose buttons stay within reach)
SIDE_HEIGHT, STACKED_HEIGHT, LONG_TRACE = 380, 640, 3000


def text_block(text: str) -> str:
    """User text as inert Markdown that keeps its line breaks."""
    return "  \n".join(escape_markdown(line) for line in (text or "").splitlines()) or "_(empty)_"


def _marked(text: str, fmt: str) -> str:
    core = text.strip()
    if not core:
        return text
    lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()):]
    return lead + fmt.format(escape_markdown(core)) + trail


def diff_markdown(old: str, new: str) -> str:
    """A word diff: deletions struck through in red, insertions bold in green."""
    out = []
    for op in word_ops(old, new):
        if op.op == "equal":
            out.append(escape_markdown(op.b))
        if op.op in ("delete", "replace"):
            out.append(_marked(op.a, ":red[~~{}~~]"))
        if op.op in ("insert", "replace"):
            out.append(_marked(op.b, ":green[**{}**]"))
    return "".join(out).replace("\n", "  \n")


def default_layout(traces: list[TraceView]) -> str:
    """Side by side while the traces are few and short enough to compare at a glance."""
    longest = max((len(t.reasoning) for t in traces), default=0)
    return "Side by side" if len(traces) <= 4 and longest < 4000 else "Stacked"


def trace_slots(n: int, layout: str) -> list:  # type: ignore[type-arg]
    """One container per trace: stacked one under the other, or side by side in balanced rows of
    at most MAX_COLUMNS (4 traces: 2 + 2; 9 traces: 3 + 3 + 3)."""
    if layout != "Side by side":
        return [st.container() for _ in range(n)]
    per_row = math.ceil(n / math.ceil(n / MAX_COLUMNS)) if n else 1
    slots: list = []  # type: ignore[type-arg]
    for start in range(0, n, per_row):
        slots.extend(st.columns(per_row)[: n - start])
    return slots


def reasoning_box(text: str, layout: str):  # type: ignore[no-untyped-def]
    """Where a trace's reasoning goes: a scrolling box of fixed height, or the text's own height."""
    height = SIDE_HEIGHT if layout == "Side by side" else STACKED_HEIGHT if len(text) > LONG_TRACE else None
    return st.container(height=height, border=False) if height else st.container(border=False)


with read_scope() as session:
    rounds = [(r.id, r.name, session.get(Project, r.project_id).name) for r in rounds_for(session, actor)]
if not rounds:
    st.title("Review")
    st.info("No review round is open for you yet. A lead opens one on the **Assignments** page.")
    st.stop()

labels = {rid: f"{name} · {project}" for rid, name, project in rounds}
round_id = rounds[0][0]
if len(rounds) > 1:
    round_id = st.sidebar.selectbox("Round", list(labels), format_func=labels.get, key="rv_round")
if st.session_state.get("rv_round_seen") != round_id:
    st.session_state.pop("rv_item", None)
    st.session_state["rv_round_seen"] = round_id


def go(item_id: int | None) -> None:
    """Show this item (one from the annotator's history), or the head of the queue (None)."""
    if item_id is None:
        st.session_state.pop("rv_item", None)
    else:
        st.session_state["rv_item"] = item_id
    st.session_state.pop("rv_edit", None)


def act(action, *args) -> None:  # type: ignore[no-untyped-def]
    """Run a review action in its own transaction; report bad input instead of failing."""
    try:
        with session_scope() as s:
            action(s, actor, round_id, *args)
    except ReviewError as exc:
        st.session_state["rv_flash"] = str(exc)
        return
    go(None)


with session_scope() as session:  # next_item leases the item it hands out
    mine = history(session, actor, round_id)
    wanted = st.session_state.get("rv_item")
    current = wanted if wanted in mine else next_item(session, actor, round_id)
    view: ItemView | None = item_view(session, actor, round_id, current) if current is not None else None
    progress = my_progress(session, actor.id, round_id)

# a skipped item stays the annotator's (it is neither open nor available to them any more), so
# it counts in the total: skipping does not change "x of N"
total = progress.submitted + progress.skipped + progress.open + progress.available
position = mine.index(current) + 1 if current in mine else len(mine) + 1
pace = "not yet" if math.isnan(progress.pace_per_hour) else f"{progress.pace_per_hour:.0f}/h"
with st.sidebar:
    st.markdown("**Your progress**")
    st.progress(progress.submitted / total if total else 1.0, text=f"{progress.submitted} of {total} done")
    st.caption(f"Today {progress.today} · pace {pace} · skipped {progress.skipped}")
    if view is not None:
        with st.expander(f"Codebook v{view.codebook_version}", expanded=True, icon=":material/menu_book:"):
            st.markdown(text_block(view.codebook_instructions))
            for level, text in view.codebook_levels:
                st.markdown(f"**{level}** · {text_block(text)}")

round_name, project_name = next((name, project) for rid, name, project in rounds if rid == round_id)
top = st.columns([3, 1, 1, 1])
top[0].markdown(f"### Item {position} of {total}" if view is not None else "### Review")
top[0].caption(f"{escape_markdown(project_name)} · {escape_markdown(round_name)}")
top[1].metric("Done", f"{progress.submitted} / {total}")
top[2].metric("Today", progress.today)
top[3].metric("Pace", pace, help="Items per hour today (breaks over 10 minutes not counted)")
if flash := st.session_state.pop("rv_flash", None):
    st.error(flash)

if view is None:
    st.success("Nothing left for you in this round. Thank you!")
    if mine and st.button("Back to your last item", shortcut="B", key="rv_back_done", icon=":material/undo:"):
        go(mine[-1])
        st.rerun()
    if st.button("Undo my last action", shortcut="U", key="rv_undo_done"):
        with session_scope() as s:
            restored = undo(s, actor, round_id)
        go(restored)
        st.rerun()
    st.stop()

state_text = {"pending": "to do", "draft": "edit in progress", "submitted": "done", "skipped": "skipped"}[view.state]
answer = ""
if view.state == "submitted":
    answer = {"none_fits": " · you said none fits", "edited": f" · you edited trace {view.chosen_number}",
              "chosen": f" · you chose trace {view.chosen_number}"}.get(view.verdict or "", "")
st.caption(f"{state_text.capitalize()}{answer} · item id {escape_markdown(view.external_id)}")

item_col, rating_col = st.columns([4, 1])
with item_col:
    for name, text in view.fields:
        with st.container(border=True):
            st.markdown(f"**{escape_markdown(name)}**")
            st.markdown(text_block(text))
with rating_col:
    low, high = view.scale
    if view.gold is None:
        st.markdown("**Human rating**")
        st.caption(f"This item has no gold rating (scale {low}–{high}).")
    else:
        st.metric("Human rating", f"{view.gold:g}", help=f"The gold label on the {low}–{high} scale")
        st.caption(f"on the {low}–{high} scale")
    ratings = [f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in view.ratings.values() if v is not None]
    if ratings:
        st.caption("Each rater: " + " · ".join(ratings))

# rv_edit: {"item", "number"} while editing, {"item", "closed": True} after Cancel
edit_state = st.session_state.get("rv_edit")
if edit_state is not None and edit_state.get("item") != view.item_id:
    edit_state = None
if edit_state is None and view.state == "draft":  # a draft reopens its editor, also after a reload
    edit_state = {"item": view.item_id, "number": view.chosen_number or 1}
editing = edit_state if edit_state is not None and not edit_state.get("closed") else None

if editing is None:
    # the key keeps the reviewer's choice from item to item; the default only sets the first one
    fallback = default_layout(view.traces)
    layout = st.segmented_control("Layout", LAYOUTS, default=fallback, key="rv_layout",
                                  label_visibility="collapsed") or fallback
    for trace, slot in zip(view.traces, trace_slots(len(view.traces), layout)):
        with slot.container(border=True):
            chosen = view.state == "submitted" and view.chosen_number == trace.number
            st.markdown(f"**Trace {trace.number}**" + (" · :green[your choice]" if chosen else ""))
            with reasoning_box(trace.reasoning, layout):
                st.markdown(text_block(trace.reasoning))
            st.caption("Final answer")
            st.info(text_block(trace.answer), icon=":material/flag:")
            if st.button(f"Choose {trace.number}", key=f"rv_choose_{trace.number}",
                         shortcut=str(trace.number) if trace.number <= 9 else None,  # one key per trace
                         type="primary" if chosen else "secondary", width="stretch"):
                act(choose, view.item_id, trace.candidate_id)
                st.rerun()
    if not view.traces:
        st.warning("This item has no trace to show.")

    actions = st.columns(6)
    if actions[0].button("None fits", key="rv_none", shortcut="N", icon=":material/block:", width="stretch"):
        act(none_fits, view.item_id)
        st.rerun()
    if actions[1].button("Edit", key="rv_edit_open", shortcut="E", icon=":material/edit:", width="stretch",
                         disabled=not view.traces):
        st.session_state["rv_edit"] = {"item": view.item_id, "number": view.chosen_number or 1}
        st.rerun()
    if actions[2].button("Skip", key="rv_skip", shortcut="S", icon=":material/skip_next:", width="stretch"):
        act(skip, view.item_id)
        st.rerun()
    if actions[3].button("Back", key="rv_back", shortcut="B", icon=":material/arrow_back:", width="stretch"):
        with session_scope() as s:
            target = previous_item(s, actor, round_id, view.item_id)
        if target is not None:
            go(target)
        st.rerun()
    if actions[4].button("Forward", key="rv_forward", shortcut="F", icon=":material/arrow_forward:", width="stretch"):
        with session_scope() as s:
            go(following_item(s, actor, round_id, view.item_id))
        st.rerun()
    if actions[5].button("Undo", key="rv_undo", shortcut="U", icon=":material/undo:", width="stretch"):
        with session_scope() as s:
            restored = undo(s, actor, round_id)
        go(restored)
        st.toast("Undone." if restored is not None else "Nothing to undo.")
        st.rerun()
    st.caption(KEYS)
else:
    numbers = [t.number for t in view.traces]
    number = st.selectbox("Start from", numbers, index=numbers.index(editing["number"]) if editing["number"] in numbers else 0,
                          format_func=lambda n: f"Trace {n}", key=f"rv_edit_source_{view.item_id}")
    source = view.trace(number)
    start = view.edited_text if view.state == "draft" and view.chosen_number == number and view.edited_text else source.reasoning
    text_key = f"rv_edit_text_{view.item_id}_{number}"

    def save_draft() -> None:
        try:
            with session_scope() as s:
                save_edit(s, actor, round_id, view.item_id, source.candidate_id, st.session_state.get(text_key, ""))
        except ReviewError as exc:
            st.session_state["rv_flash"] = str(exc)

    text = st.text_area("Your version of the reasoning (the final answer stays that of the trace)", value=start,
                        height=320, key=text_key, on_change=save_draft)
    st.caption("Final answer")
    st.info(text_block(source.answer), icon=":material/flag:")
    with st.expander("Changes", expanded=True):
        st.markdown(diff_markdown(source.reasoning, text) if text != source.reasoning else "_No changes yet._")
    cols = st.columns(3)
    if cols[0].button("Submit edit", key="rv_edit_submit", type="primary", shortcut="Alt+Enter", width="stretch"):
        act(partial(save_edit, submit=True), view.item_id, source.candidate_id, text)
        st.rerun()
    if cols[1].button("Save draft", key="rv_edit_save", shortcut="Alt+S", width="stretch"):
        save_draft()
        st.rerun()
    if cols[2].button("Cancel", key="rv_edit_cancel", shortcut="Esc", width="stretch"):
        st.session_state["rv_edit"] = {"item": view.item_id, "closed": True}  # a draft stays in the store
        st.rerun()
    st.caption("Keys: **Alt+Enter** submit the edit · **Alt+S** save a draft · **Esc** cancel. "
               "Drafts are saved whenever the text box loses focus.")
