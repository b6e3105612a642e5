"""Form widgets generated from the settings models: one default, one help text, one label.

Each field of a pydantic settings model becomes a widget: a number box bounded by the field's
``ge``/``gt``/``le``/``lt``, a select box for a Literal, a check box for a bool, a text box for a
string; its label is the field's ``title``, its help the field's ``description``, and a None value
is an empty box whose placeholder says what None means. Fields marked ``advanced`` go under "More
settings". (The field metadata is read by :mod:`judgeeye.settings_fields`, which the CLI's
generated options read too.)

Widgets hold their values in session state under ``prefix + path`` (``t_lora_r``,
``t_protocol.top_p``), filled from ``values`` (a preset, say) the first time a field is shown;
:func:`fill` puts other values in (when the preset changes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import streamlit as st
from pydantic import BaseModel, ValidationError

from judgeeye.display import escape_markdown
from judgeeye.settings_fields import SettingField, setting_fields, value_in

MORE = "More settings"


def widget_key(prefix: str, path: str) -> str:
    return f"{prefix}{path}"


def _options(field: SettingField) -> list[Any]:
    """The values a list field picks from (a Literal's, or its ``options``); [] for free text."""
    return list(field.choices or field.extra("options") or [])


def _stored(field: SettingField, value: Any) -> Any:
    """A value as the field's widget holds it (numbers as the widget's type; a list as a list,
    or as comma-separated text where it has no options to pick from)."""
    if field.kind == "list":
        items = list(value or [])
        return items if _options(field) else ", ".join(str(v) for v in items)
    if value is None:
        return "" if field.kind == "str" else None
    if field.kind == "int":
        return int(value)
    if field.kind == "float":
        return float(value)
    return value


def fill(model: type[BaseModel], paths: Iterable[str] | None, prefix: str,
         values: BaseModel | Mapping[str, Any] | None = None, *, force: bool = False) -> None:
    """Put the fields' values from ``values`` (default: the model's defaults) into the widgets'
    session state: for fields not shown yet, or all of them with ``force``."""
    for field in setting_fields(model, paths):
        key = widget_key(prefix, field.path)
        if force or key not in st.session_state:
            st.session_state[key] = _stored(field, value_in(field, values))


def _number(where: Any, field: SettingField, key: str, label: str, help: str | None, **kwargs: Any) -> Any:
    whole = field.kind == "int"
    low, high = field.limits()
    cast: type[int] | type[float] = int if whole else float
    step = field.extra("step")
    value = where.number_input(
        label, min_value=None if low is None else cast(low), max_value=None if high is None else cast(high),
        step=cast(step) if step is not None else (1 if whole else None), key=key, help=help,
        format=field.extra("format") or (None if whole else "%g"), placeholder=field.none, **kwargs)
    return None if value is None else cast(value)


def _choice(where: Any, field: SettingField, key: str, label: str, help: str | None, **kwargs: Any) -> Any:
    labels = field.labels
    options = list(field.choices) + ([None] if field.optional else [])
    return where.selectbox(label, options, key=key, help=help, **kwargs,
                           format_func=lambda v: labels.get(v, field.none or "—") if v is None else labels.get(v, str(v)))


def _text(where: Any, field: SettingField, key: str, label: str, help: str | None, **kwargs: Any) -> Any:
    suggestions = field.extra("suggestions")
    if suggestions:  # common values offered, any other may be typed
        current = st.session_state.get(key)
        options = list(suggestions) + ([current] if current and current not in suggestions else [])
        return where.selectbox(label, options, key=key, help=help, accept_new_options=True,
                               format_func=lambda v: field.labels.get(v, str(v)), **kwargs)
    examples = field.info.examples or []
    text = where.text_input(label, key=key, help=help, placeholder=field.none or (examples[0] if examples else None),
                            **kwargs)
    text = (text or "").strip()
    return text or (None if field.optional else text)


def _bool(where: Any, field: SettingField, key: str, label: str, help: str | None, **kwargs: Any) -> Any:
    if field.optional:  # on, off, or the engine decides
        names = {None: field.none or "auto", True: "on", False: "off"}
        return where.selectbox(label, list(names), key=key, help=help, format_func=lambda v: names.get(v, ""), **kwargs)
    return where.checkbox(label, key=key, help=help, **kwargs)


def _list(where: Any, field: SettingField, key: str, label: str, help: str | None, **kwargs: Any) -> Any:
    options = _options(field)
    if options:
        return list(where.multiselect(label, options, key=key, help=help, placeholder=field.none,
                                      format_func=lambda v: field.labels.get(v, str(v)), **kwargs))
    text = where.text_input(label, key=key, help=help, placeholder=field.none or "comma-separated", **kwargs)
    words = [part.strip() for part in (text or "").split(",") if part.strip()]
    items: list[int | str] = list(words)
    if field.item == "int":  # a word that is not a number is left to the model to refuse, by name
        items = [int(word) if word.lstrip("-").isdigit() else word for word in words]
    return items or (None if field.optional else [])


_WIDGETS = {"int": _number, "float": _number, "choice": _choice, "str": _text, "bool": _bool, "list": _list}


def help_text(field: SettingField) -> str | None:
    """A field's description as a widget's help (Markdown: escaped, so it reads as written)."""
    return escape_markdown(field.help) if field.help else None


def field_widget(field: SettingField, prefix: str, *, where: Any = st, **kwargs: Any) -> Any:
    """The widget of one field (its value in session state already: :func:`fill`); its value."""
    return _WIDGETS[field.kind](where, field, widget_key(prefix, field.path), field.title, help_text(field), **kwargs)


def settings_form(
    model: type[BaseModel],
    paths: Sequence[str] | None,
    *,
    prefix: str,
    values: BaseModel | Mapping[str, Any] | None = None,
    columns: int = 4,
    more: str | None = MORE,
    only: Literal["plain", "advanced"] | None = None,
) -> dict[str, Any]:
    """Widgets for the fields at ``paths`` (None: every plain setting of the model), ``columns``
    to a row, the advanced ones in an expander titled ``more`` (None: with the others); returns
    {path: value}. ``values`` fill fields shown for the first time (default: the model's
    defaults); ``only``: draw only the plain or only the advanced fields (a page that gathers the advanced
    fields of several sections in one expander)."""
    fields = [f for f in setting_fields(model, paths) if only is None or f.advanced == (only == "advanced")]
    fill(model, [f.path for f in fields], prefix, values)
    gather = more is not None and only is None  # the advanced fields under "More settings"
    plain = [f for f in fields if not (gather and f.advanced)]
    advanced = [f for f in fields if gather and f.advanced]
    out = _grid(plain, prefix, columns)
    if advanced and more:
        with st.expander(more):
            out.update(_grid(advanced, prefix, columns))
    return {f.path: out[f.path] for f in fields}


def _grid(fields: list[SettingField], prefix: str, columns: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for start in range(0, len(fields), columns):
        row = fields[start:start + columns]
        cells = st.columns(columns, vertical_alignment="bottom")  # check boxes in line with the boxes
        for cell, field in zip(cells, row):
            out[field.path] = field_widget(field, prefix, where=cell)
    return out


def problem(exc: ValueError, model: type[BaseModel] | None = None) -> str:
    """What is wrong with a form's values, named by the fields' titles in ``model`` (no pydantic
    internals: no error codes, links or echoed input)."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        title = _title(model, [str(part) for part in error["loc"]])
        lines.append(f"{title}: {message}" if title else message)
    return "; ".join(lines)


def _title(model: type[BaseModel] | None, loc: list[str]) -> str | None:
    """The title of the field an error is about."""
    for part in loc:
        if model is None or part not in model.model_fields:
            return None
        info = model.model_fields[part]
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            model = nested
            continue
        return info.title or part.replace("_", " ")
    return None


__all__ = ["MORE", "field_widget", "fill", "help_text", "problem", "settings_form", "widget_key"]
