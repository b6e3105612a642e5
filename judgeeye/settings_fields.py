"""What a settings model says about each of its fields, for the generated CLI options and forms.

The pydantic settings models (:class:`~judgeeye.training.TrainingConfig`,
:class:`~judgeeye.sampling.SamplingSettings`, :class:`~judgeeye.refine.settings.RefineSettings`,
:class:`~judgeeye.evaluate.RaterSpec`, the engine configs) are the one source of every default
and help text. :mod:`judgeeye.settings_cli` turns their fields into command-line options and
``judgeeye_app.ui.settings_form`` into form widgets; both read the fields through
:class:`SettingField`, so they agree on the type, the default, the bounds and the choices.

Besides pydantic's own ``default``, ``description`` (the help), ``title`` (a form's label) and
``ge``/``gt``/``le``/``lt`` bounds, a field may carry these keys in ``json_schema_extra``:

``advanced``
    True: a form puts the field under "More settings".
``none``
    What None means, in a few words ("all", "by epochs"): a CLI's shown default, a form's placeholder.
``labels``
    For a Literal: the words a form shows for each value.
``suggestions``
    For a string: common values a form offers (any other may be typed).
``step``, ``format``
    A form's number step and printf format.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

Kind = Literal["bool", "int", "float", "str", "choice", "list"]
_SCALARS: dict[Any, Kind] = {bool: "bool", int: "int", float: "float", str: "str"}


@dataclass(frozen=True)
class SettingField:
    """One field of a settings model (``path`` is dotted for a nested model: ``protocol.top_p``)."""

    model: type[BaseModel]
    path: str
    info: FieldInfo
    kind: Kind
    optional: bool  #: None is allowed (and means what ``none`` says)
    choices: tuple[Any, ...] = ()  #: a Literal's values (also of a list's items)
    item: Kind | None = None  #: a list's item kind

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def default(self) -> Any:
        return self.info.get_default(call_default_factory=True)

    @property
    def help(self) -> str:
        return self.info.description or ""

    @property
    def title(self) -> str:
        return self.info.title or self.name.replace("_", " ").capitalize()

    def extra(self, key: str, default: Any = None) -> Any:
        extra = self.info.json_schema_extra
        return extra.get(key, default) if isinstance(extra, dict) else default

    @property
    def advanced(self) -> bool:
        return bool(self.extra("advanced"))

    @property
    def none(self) -> str | None:
        return self.extra("none")

    @property
    def labels(self) -> dict[Any, str]:
        return dict(self.extra("labels") or {})

    def bound(self, name: Literal["ge", "gt", "le", "lt"]) -> float | None:
        """A bound of the field's value from its metadata (``Field(ge=1)``), or None."""
        for item in self.info.metadata:  # annotated_types.Ge(ge=1), Interval(gt=0, le=1) ...
            value = getattr(item, name, None)
            if value is not None:
                return value
        return None


    def limits(self) -> tuple[float | None, float | None]:
        """The lowest and highest value allowed, as closed bounds: an open bound of a whole number
        becomes the next one in (``gt=0`` -> 1); an open bound of a real number is left out (the
        model still checks it)."""
        low, high = self.bound("ge"), self.bound("le")
        if self.kind == "int":
            above, below = self.bound("gt"), self.bound("lt")
            low = low if low is not None or above is None else int(above) + 1
            high = high if high is not None or below is None else int(below) - 1
        return low, high


def _kind(annotation: Any) -> tuple[Kind | None, bool, tuple[Any, ...], Kind | None]:
    """(kind, optional, choices, item kind) of an annotation; kind None: not a simple setting."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            return None, optional, (), None
        annotation = args[0]
        origin = typing.get_origin(annotation)
    if origin is Literal:
        return "choice", optional, typing.get_args(annotation), None
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        kind, _, choices, _ = _kind(item)
        if kind in ("int", "str", "choice"):
            return "list", optional, choices, kind
        return None, optional, (), None
    return _SCALARS.get(annotation), optional, (), None


def setting_field(model: type[BaseModel], path: str) -> SettingField:
    """The field at ``path`` (dotted through nested models); ValueError if it is not a plain setting
    (a nested model, a dict, an engine config: commands and forms handle those themselves)."""
    *parents, name = path.split(".")
    owner = model
    for parent in parents:
        owner = owner.model_fields[parent].annotation  # type: ignore[assignment]
    info = owner.model_fields[name]
    kind, optional, choices, item = _kind(info.annotation)
    if kind is None:
        raise ValueError(f"{model.__name__}.{path} is not a plain setting ({info.annotation})")
    return SettingField(model=model, path=path, info=info, kind=kind, optional=optional, choices=choices, item=item)


def setting_fields(model: type[BaseModel], paths: Iterable[str] | None = None) -> list[SettingField]:
    """The given fields, or every plain setting of the model (nested models' fields included)."""
    if paths is not None:
        return [setting_field(model, p) for p in paths]
    out: list[SettingField] = []
    for name, info in model.model_fields.items():
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            out += [setting_field(model, f"{name}.{f.path}") for f in setting_fields(nested)]
        elif _kind(info.annotation)[0] is not None and len(_kind(info.annotation)[2]) != 1:
            out.append(setting_field(model, name))  # (a Literal of one value, an engine's kind, is no setting)
    return out


def value_in(field: SettingField, values: BaseModel | Mapping[str, Any] | None) -> Any:
    """The field's value in ``values`` (a model instance, or a preset's overrides nested like the
    model), else its default."""
    value: Any = values
    for part in field.path.split("."):
        if isinstance(value, BaseModel) and part in type(value).model_fields:
            value = getattr(value, part)
        elif isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return field.default
    return value


def shown(field: SettingField, value: Any) -> str:
    """A value as a CLI's help and a plan show it: 5e-05, 16, on/off, 'all' for None."""
    if value is None:
        return field.none or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"protocol.top_p": 0.9}`` -> ``{"protocol": {"top_p": 0.9}}``."""
    out: dict[str, Any] = {}
    for path, value in values.items():
        *parents, name = path.split(".")
        target = out
        for parent in parents:
            target = target.setdefault(parent, {})
        target[name] = value
    return out


__all__ = ["Kind", "SettingField", "nest", "setting_field", "setting_fields", "shown", "value_in"]
