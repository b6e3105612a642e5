"""A select box over runs whose labels change while the options stay (a run's status, its counts).

Streamlit identifies a keyed select box by its key alone, and the browser keeps showing the
label of the option as it was first drawn: a run picked while "queued" still reads "queued"
after its job has ended, though the page below it shows the finished run. So the box here is
keyed by its labels as well, and drawn afresh whenever one of them changes; the choice itself
lives under ``key`` in session state, so a redraw keeps it (and an action can set it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st


def widget_key(key: str, labels: Sequence[str]) -> str:
    digest = hashlib.blake2s("\x1f".join(labels).encode(), digest_size=6).hexdigest()
    return f"{key}__{digest}"


def live_selectbox(label: str, options: Sequence[Any], *, format_func: Callable[[Any], str], key: str,
                   default: Any = None, where: Any = st, **kwargs: Any) -> Any:
    """``where.selectbox`` over ``options``, opened on the value kept under ``key`` (else
    ``default``, else the first option); returns the value chosen and keeps it under ``key``."""
    options = list(options)
    box = widget_key(key, [format_func(o) for o in options])
    st.session_state[f"{key}__box"] = box  # for callbacks that read the box before the page runs
    wanted = st.session_state.get(key, default)  # a box drawn before keeps its own value instead
    index = options.index(wanted) if wanted in options else (options.index(default) if default in options else 0)
    value = where.selectbox(label, options, index=index, format_func=format_func, key=box, **kwargs)
    st.session_state[key] = value
    return value


def live_value(key: str) -> Any:
    """The value of a :func:`live_selectbox` as its box holds it now (in a form's submit
    callback, the value just submitted)."""
    box = st.session_state.get(f"{key}__box")
    return st.session_state[box] if box in st.session_state else st.session_state.get(key)


def set_live_value(key: str, value: Any) -> None:
    """Open a :func:`live_selectbox` on ``value`` at its next drawing (from an action's callback)."""
    st.session_state[key] = value
    box = st.session_state.get(f"{key}__box")
    if box and box in st.session_state:
        del st.session_state[box]
