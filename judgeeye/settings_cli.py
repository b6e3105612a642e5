"""Command-line options generated from the settings models, as TRL's ``TrlParser`` does from
dataclasses: the option's type, help (the field's description), shown default, range and choices
all come from the pydantic field, so no default or help text is written twice.

A command lists the fields it takes (and an option name where it is not ``--field-name``) in
:func:`settings_options`; the decorated function gets the values given on the command line as one
dict under ``dest``, nested like the model and without the options left out, and the model fills
in the rest. So an option never has a default of its own: an unset option means "the model's
default", or the chosen preset's value (``presets``: the help lists each preset's value).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from typer.core import DEFAULT_MARKUP_MODE

from judgeeye.settings_fields import SettingField, nest, setting_field, shown, value_in

if TYPE_CHECKING:
    from judgeeye.engines import EngineConfig

F = TypeVar("F", bound=Callable[..., Any])
_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def choice_parser(field: SettingField) -> Callable[[str], Any]:
    """Reads a Literal field's value; ``labels-only`` is read as ``labels_only`` (the README's spelling)."""
    choices = {str(c): c for c in field.choices}

    def parse(text: str) -> Any:
        for candidate in (text, text.replace("-", "_"), text.replace("-", " ")):
            if candidate in choices:
                return choices[candidate]
        raise typer.BadParameter(f"{text!r} is not one of {', '.join(choices)}")

    return parse


def option_name(path: str) -> str:
    """The option a field gets unless named otherwise: ``--max-tokens`` (``protocol.top_p``: ``--top-p``)."""
    return "--" + path.rsplit(".", 1)[-1].replace("_", "-")


def param_name(path: str) -> str:
    """The Python parameter that receives the field's option."""
    return path.replace(".", "__")


def _help_text(text: str) -> str:
    if DEFAULT_MARKUP_MODE == "rich":  # typer reads help as Rich markup: "[...]" would vanish
        from rich.markup import escape

        return escape(text)
    return text


def default_text(field: SettingField, presets: Mapping[str, Mapping[str, Any]] | None = None) -> str | None:
    """The default as the help shows it: the model's, then each preset's where it differs
    ("5e-05; tract: 1e-05"); None when there is nothing to say (None without a ``none`` label)."""
    base = field.default
    if field.kind == "bool" and not field.optional:
        text = field.name.replace("_", "-") if base else "no-" + field.name.replace("_", "-")
    elif base is None and field.none is None:
        text = None
    else:
        text = shown(field, base)
    others = [f"{name}: {shown(field, value_in(field, values))}" for name, values in (presets or {}).items()
              if value_in(field, values) != base]
    return "; ".join([text or "none", *others]) if others else text


def _option(field: SettingField, decl: str | None, presets: Mapping[str, Mapping[str, Any]] | None, *,
            help: str | None = None, shown_default: str | None = "") -> Any:
    """The ``Annotated[Optional[T], typer.Option(...)]`` annotation of one field's option (the
    field's help and default unless ``help`` and ``shown_default`` say otherwise)."""
    decl = decl or option_name(field.path)
    kwargs: dict[str, Any] = {"help": _help_text(field.help if help is None else help)}
    text = default_text(field, presets) if shown_default == "" else shown_default
    kwargs["show_default"] = text if text is not None else False
    python: Any = _TYPES.get(field.kind if field.kind != "list" else field.item or "str", str)
    if field.kind == "bool" and "/" not in decl:
        decl = f"{decl}/--no-{decl.removeprefix('--')}"
    if field.choices:  # a Literal, or a list of them
        python = str
        kwargs["parser"] = choice_parser(field)
        kwargs["metavar"] = "[" + "|".join(str(c) for c in field.choices) + "]"
    if field.kind in ("int", "float"):
        kwargs.update({k: v for k, v in zip(("min", "max"), field.limits()) if v is not None})
    if field.kind == "list":
        python = list[python]  # type: ignore[valid-type]
    return Annotated[python | None, typer.Option(*decl.split(" "), **kwargs)]


def _add_options(func: F, dest: str, options: Mapping[str, Any], collect: Callable[[dict[str, Any]], Any],
                 described: list[tuple[SettingField, str]]) -> F:
    """``func`` with the parameter ``dest`` replaced by ``options`` (parameter name -> typer
    annotation, each defaulting to None); it gets ``dest`` = ``collect(the options' values)``.
    ``described``: (field, option) of each generated option, kept on the command as
    ``__settings__`` (with those of the decorators below it) for the tests that check them."""
    signature = inspect.signature(func, eval_str=True)
    if dest not in signature.parameters:
        raise TypeError(f"{func.__name__} has no parameter {dest!r} for the settings")
    params: list[inspect.Parameter] = []
    for p in signature.parameters.values():
        if p.name == dest:
            params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
                       for name, annotation in options.items()]
        else:
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    names = [p.name for p in params]
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise TypeError(f"{func.__name__}: generated options clash with its parameters {sorted(clash)}")

    @functools.wraps(func)
    def command(**kwargs: Any) -> Any:
        kwargs[dest] = collect({name: kwargs.pop(name) for name in options})
        return func(**kwargs)

    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__settings__ = [*getattr(func, "__settings__", []), *described]  # type: ignore[attr-defined]
    return command  # type: ignore[return-value]


def settings_options(
    model: type[BaseModel],
    options: Mapping[str, str | None],
    *,
    dest: str,
    presets: Mapping[str, Mapping[str, Any]] | None = None,
) -> Callable[[F], F]:
    """Add an option for each field of ``options`` (dotted path -> option declaration, None for
    ``--field-name``; a bool's is ``--on/--off``) to a typer command, where its parameter ``dest``
    stands; the command gets ``dest`` = the values given, nested like the model.

    ``presets``: name -> the preset's values (nested like the model); each option's help shows
    the value under every preset that differs from the model's default."""
    fields = {path: setting_field(model, path) for path in options}

    def collect(values: dict[str, Any]) -> dict[str, Any]:
        return nest({path: values[param_name(path)] for path in fields if values[param_name(path)] is not None})

    def decorate(func: F) -> F:
        return _add_options(func, dest, {param_name(path): _option(field, options[path], presets)
                                         for path, field in fields.items()}, collect,
                            [(field, options[path] or option_name(path)) for path, field in fields.items()])

    return decorate


#: what ``--engine`` takes (:meth:`judgeeye.engines.EngineConfig.parse`)
ENGINE_SPEC_HELP = ("embedded · hf:MODEL (a Hugging Face id, a directory or a .gguf file) · vllm:MODEL · "
                    "openai:MODEL@BASE_URL")
#: the engine fields a command's own options set, whatever the engine kind (those it has)
ENGINE_FIELDS: dict[str, str | None] = {"adapter": None, "api_key_env": None, "batch_size": None,
                                        "max_concurrency": "--concurrency"}


def engine_options(
    dest: str, *, spec: str | None = "--engine", fields: Mapping[str, str | None] = ENGINE_FIELDS,
    spec_help: str = ENGINE_SPEC_HELP,
) -> Callable[[F], F]:
    """Add the engine's options to a command: ``spec`` (``--engine SPEC``; None: the command
    reads the spec elsewhere, as ``--rater``) and ``fields`` of the engine configs (field ->
    option, None for ``--field-name``), each with the help and default of every engine kind
    that has it. The command gets ``dest`` = the values given (``spec`` under "spec"), ready for
    :func:`engine_config` or :meth:`EngineConfig.parse`'s overrides."""
    from judgeeye.engines.base import EMBEDDED_MODEL, ENGINE_KINDS

    options: dict[str, Any] = {}
    if spec is not None:
        options["spec"] = Annotated[str | None, typer.Option(*spec.split(" "), help=_help_text(spec_help),
                                                             show_default=EMBEDDED_MODEL)]
    described: list[tuple[SettingField, str]] = []
    for name, decl in fields.items():
        kinds = {kind: setting_field(model, name) for kind, model in ENGINE_KINDS.items() if name in model.model_fields}
        if not kinds:
            raise ValueError(f"no engine kind has a field {name!r}")
        helps: dict[str, list[str]] = {}
        for kind, field in kinds.items():
            helps.setdefault(field.help, []).append(kind)
        defaults = {kind: default_text(field) for kind, field in kinds.items()}
        shown_default = ("; ".join(f"{kind}: {text}" for kind, text in defaults.items() if text is not None)
                         if len(set(defaults.values())) > 1 else next(iter(defaults.values())))
        options[name] = _option(next(iter(kinds.values())), decl, None, shown_default=shown_default or None,
                                help=" ".join(f"{', '.join(ks)}: {text}" for text, ks in helps.items()))
        described += [(field, decl or option_name(name)) for field in kinds.values()]

    def collect(values: dict[str, Any]) -> dict[str, Any]:
        return {name: value for name, value in values.items() if value is not None}

    def decorate(func: F) -> F:
        return _add_options(func, dest, options, collect, described)

    return decorate


def engine_config(values: Mapping[str, Any]) -> EngineConfig:
    """The engine config of :func:`engine_options`' values (ValueError: a bad spec or option)."""
    from judgeeye.engines import EMBEDDED_MODEL, EngineConfig

    given = dict(values)
    return EngineConfig.parse(given.pop("spec", None) or EMBEDDED_MODEL, **given)


__all__ = ["ENGINE_FIELDS", "ENGINE_SPEC_HELP", "choice_parser", "default_text", "engine_config", "engine_options",
           "option_name", "param_name", "settings_options"]
