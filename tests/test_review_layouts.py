"""The Review page in AppTest in both layouts, with 1, 4 and 16 traces per item and with short,
20,000-character and empty traces: it renders without an exception (Streamlit 1.67 refused the
stacked layout's container height), every shown trace can be chosen, at most three traces sit
side by side, long reasoning scrolls in a box and is never cut. Also what the page says about an
item: its place in the queue, a total that skipping does not change, and a missing gold rating."""

from __future__ import annotations

from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from apptest_login import app_as, login_as
from judgeeye.review import MAX_SHOWN
from review_traces import traces_round

LAYOUTS = ["Side by side", "Stacked"]


def _children(node: Any) -> list[Any]:
    return list(getattr(node, "children", {}).values())


def _walk(node: Any) -> list[Any]:
    out = [node]
    for child in _children(node):
        out.extend(_walk(child))
    return out


def _choose_keys(node: Any) -> list[str]:
    return [n.key for n in _walk(node) if type(n).__name__ == "Button" and (n.key or "").startswith("rv_choose_")]


def traces_per_row(at: AppTest) -> list[int]:
    """For each row of columns that holds traces, how many traces sit side by side in it."""
    rows = []
    for node in _walk(at.main):
        columns = [c for c in _children(node) if type(c).__name__ == "Column"]
        if columns and any(_choose_keys(c) for c in columns):
            rows.append(sum(len(_choose_keys(c)) for c in columns))
    return rows


def reasoning_heights(at: AppTest) -> list[int | None]:
    """The height of the box around each trace's reasoning (None: the text's own height)."""
    heights = []
    for node in _walk(at.main):
        if type(node).__name__ == "Block" and any(
                type(c).__name__ == "Markdown" and (c.value.startswith("Sample ") or c.value == "_(empty)_")
                for c in _children(node)):
            config = node.proto.height_config
            heights.append(config.pixel_height if config.HasField("pixel_height") else None)
    return heights


def open_review(layout: str) -> AppTest:
    """The annotator's Review page, switched to ``layout`` when it opened in the other one."""
    at = app_as("annotator", "ann")
    assert not at.exception, at.exception
    if at.segmented_control(key="rv_layout").value != layout:
        at.segmented_control(key="rv_layout").set_value(layout).run()
    return at


def no_traceback(at: AppTest) -> None:
    assert not at.exception, at.exception
    shown = [e.value for kind in ("markdown", "caption", "error", "warning", "info", "text", "code")
             for e in getattr(at, kind)]
    assert not [v for v in shown if "Traceback" in str(v)]


@pytest.mark.parametrize("text", ["short", "long", "empty"])
@pytest.mark.parametrize("n_traces", [1, 4, 16])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_review_page_renders_in_every_layout(store_url: str, layout: str, n_traces: int, text: str) -> None:
    login_as("annotator", "ann")
    traces_round(["ann"], n_traces, text)
    at = open_review(layout)
    no_traceback(at)
    shown = min(n_traces, MAX_SHOWN)  # a round shows at most 9 traces (keys 1-9)
    assert _choose_keys(at.main) == [f"rv_choose_{n}" for n in range(1, shown + 1)]
    assert [at.button(key=f"rv_choose_{n}").proto.shortcut for n in range(1, shown + 1)] == \
        [str(n) for n in range(1, shown + 1)]
    assert at.button(key="rv_none") and at.button(key="rv_edit_open") and at.button(key="rv_skip")

    rows, heights = traces_per_row(at), reasoning_heights(at)
    assert len(heights) == shown
    if layout == "Side by side":
        assert sum(rows) == shown and max(rows) <= 3 and max(rows) - min(rows) <= 1, rows  # balanced rows
        assert heights == [380] * shown  # each trace scrolls in its own box
    else:
        assert rows == []  # one trace per row, full width
        assert heights == ([640] * shown if text == "long" else [None] * shown)
    bodies = [m.value for m in at.markdown if m.value.startswith("Sample ") or m.value == "_(empty)_"]
    if text == "long":  # all of it is on the page (the box scrolls), nothing cut
        assert all(b.endswith("ENDOFTRACE") and len(b) > 19_000 for b in bodies)
    if text == "empty":
        assert bodies == ["_(empty)_"] * shown

    assert at.markdown[0].value == "### Item 1 of 2"  # the title says where the reviewer is, not an id
    at.button(key="rv_choose_1").click().run()  # choosing works in this layout and moves on
    no_traceback(at)
    assert {m.label: m.value for m in at.metric}["Done"] == "1 / 2"
    assert at.segmented_control(key="rv_layout").value == layout  # the layout stays as chosen
    assert any(m.value == "### Item 2 of 2" for m in at.markdown)


def test_skipping_keeps_the_total_and_the_title_counts_items(store_url: str) -> None:
    login_as("annotator", "ann")
    traces_round(["ann"], 4, n_items=3)
    at = app_as("annotator", "ann")
    assert at.markdown[0].value == "### Item 1 of 3"
    assert {m.label: m.value for m in at.metric}["Done"] == "0 / 3"
    assert any(c.value == "layout 4 short · run 1 review" for c in at.caption)  # project and round
    assert any("item id s" in c.value for c in at.caption)  # the external id: a small caption only
    at.button(key="rv_skip").click().run()
    assert at.markdown[0].value == "### Item 2 of 3"
    assert {m.label: m.value for m in at.metric}["Done"] == "0 / 3"  # skipping leaves the total alone
    at.button(key="rv_none").click().run()
    assert at.markdown[0].value == "### Item 3 of 3"
    assert {m.label: m.value for m in at.metric}["Done"] == "1 / 3"
    at.button(key="rv_back").click().run()
    assert at.markdown[0].value == "### Item 2 of 3" and any("you said none fits" in c.value for c in at.caption)


def test_an_item_without_a_gold_rating_says_so(store_url: str) -> None:
    login_as("annotator", "ann")
    traces_round(["ann"], 2, no_gold=True)
    at = app_as("annotator", "ann")
    no_traceback(at)
    assert "Human rating" not in {m.label for m in at.metric}
    assert any("no gold rating" in c.value for c in at.caption)
    assert not [m for m in at.metric if m.value in ("–", "-", "None", "nan")]
