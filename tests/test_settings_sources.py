"""One source for every setting (DESIGN.md): the CLI's options and the pages' forms show the
defaults and help texts of the pydantic settings models, and restate none of them.

The CLI side reads the click commands typer builds; the form side renders the generated form of
every settings model, and the real pages, in AppTest. A hand-written option or widget for a
setting, with its own default or help, fails here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import BaseModel
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from judgeeye.cli import app
from judgeeye.display import escape_markdown
from judgeeye.engines.base import OpenAIConfig, TransformersConfig, VLLMConfig
from judgeeye.evaluate import RaterSpec
from judgeeye.refine.settings import RefineSettings
from judgeeye.sampling import SamplingSettings, preset_settings
from judgeeye.settings_fields import SettingField, setting_field, setting_fields
from judgeeye.training import TrainingConfig
from judgeeye.training.config import PRESETS as TRAIN_PRESETS
from apptest_login import app_as

REPO = Path(__file__).resolve().parents[1]
#: every settings model whose fields become options or widgets
MODELS: list[type[BaseModel]] = [TrainingConfig, SamplingSettings, RefineSettings, RaterSpec, TransformersConfig,
                                 OpenAIConfig, VLLMConfig]
ENGINES: list[type[BaseModel]] = [TransformersConfig, OpenAIConfig, VLLMConfig]
#: the commands built from the models: (words, the models whose fields they take)
COMMANDS: list[tuple[list[str], list[type[BaseModel]]]] = [
    (["train"], [TrainingConfig]),
    (["evaluate"], [RaterSpec, *ENGINES]),
    (["refine"], [RefineSettings, *ENGINES]),
    (["sample"], [SamplingSettings, *ENGINES]),
    (["refine", "compare"], [RaterSpec]),
    (["refine", "feedback"], ENGINES),
]


def _command(words: list[str]) -> Any:
    command = typer.main.get_command(app)
    ctx = command.make_context("judgeeye", [*words, "--help"], resilient_parsing=True)
    for word in words:
        command = command.get_command(ctx, word)
    return command


def _callback(words: list[str]) -> Any:
    from judgeeye.cli import evaluate_cmd, refine_cmd, sample_cmd, train_cmd

    return {"train": train_cmd.train, "evaluate": evaluate_cmd.evaluate, "refine": refine_cmd.refine,
            "sample": sample_cmd.sample,
            "refine compare": refine_cmd.compare, "refine feedback": refine_cmd.feedback}[" ".join(words)]


def _shown(field: SettingField, value: Any) -> str:
    """The default as a reader expects to see it (None: what the field says None means)."""
    if value is None:
        return field.none or "none"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _check_option(param: Any, field: SettingField, option: str) -> None:
    """An option shows its field's help and the model's default, and has no default of its own."""
    assert param.default is None, f"{option} has a default of its own: {param.default!r}"
    assert field.help and field.help in param.help.replace("\\", ""), (option, param.help)
    default = field.default
    expected = (("" if default else "no-") + field.name.replace("_", "-")) if field.kind == "bool" else \
        _shown(field, default)
    if default is None and field.none is None:
        assert param.show_default is False, option
    else:
        kind = field.model.__name__.removesuffix("Config").lower()  # an engine option names each kind
        assert str(param.show_default).startswith(expected) or f"{kind}: {expected}" in str(param.show_default), \
            (option, param.show_default, expected)


@pytest.mark.parametrize("words,models", COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_cli_options_show_the_models_defaults_and_help(words: list[str], models: list[type[BaseModel]]) -> None:
    command = _command(words)
    params = {opt: p for p in command.params for opt in [*p.opts, *p.secondary_opts]}
    generated = _callback(words).__settings__
    assert generated, "the command takes no option from the settings models"
    for field, option in generated:
        _check_option(params[option.split("/")[0]], field, option)
    # an option written by hand for a setting (one the generator cannot express, such as sample's
    # --limit that also takes 0) still shows that setting's help and default
    fields = {f.name: f for model in reversed(models) for f in setting_fields(model)}
    done = {f.path.replace(".", "__") for f, _ in generated}
    for param in command.params:
        if param.name in fields and param.name not in done:
            _check_option(param, fields[param.name], param.opts[0])


def test_train_help_lists_each_presets_value() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip().startswith(("│ --lr ", "│ --lora-r "))]
    assert any("5e-05; tract: 1e-05" in line for line in lines), lines
    assert any("16; tract: 8" in line for line in lines), lines
    assert TRAIN_PRESETS["tract"]["lora_r"] == 8 and TrainingConfig().lora_r == 16


def test_an_unset_option_leaves_the_model_default(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated options pass on only what was given: the model fills in the rest."""
    from judgeeye.projects import ensure_sample_project
    from judgeeye.store import RaterRun, session_scope

    monkeypatch.setenv("JUDGEEYE_JOB_RUNNER", "workers")  # the job waits for a worker: nothing runs here
    project_id = ensure_sample_project()
    result = CliRunner().invoke(app, ["evaluate", "--project", str(project_id), "--rater", "embedded,temperature=0.3",
                                      "--top-p", "0.5", "--batch-size", "4", "--background"])
    assert result.exit_code == 0, result.output
    with session_scope() as s:
        spec = RaterSpec.model_validate(s.query(RaterRun).one().rater)
    assert (spec.temperature, spec.top_p, spec.engine.batch_size) == (0.3, 0.5, 4)
    assert spec.max_tokens == RaterSpec().max_tokens and spec.readout == RaterSpec().readout
    assert spec.limit is None and spec.seed is None


# ---------------------------------------------------------------------------------------- forms
def _all_forms() -> None:
    """Every settings model's generated form, all plain fields (the test reads the widgets)."""
    from judgeeye.engines.base import OpenAIConfig, TransformersConfig, VLLMConfig
    from judgeeye.evaluate import RaterSpec
    from judgeeye.refine.settings import RefineSettings
    from judgeeye.sampling import SamplingSettings
    from judgeeye.training import TrainingConfig
    from judgeeye_app.ui.settings_form import settings_form

    for model in (TrainingConfig, SamplingSettings, RefineSettings, RaterSpec, TransformersConfig, OpenAIConfig,
                  VLLMConfig):
        settings_form(model, None, prefix=f"{model.__name__}:", more=None)


def _widgets(at: AppTest) -> dict[str, Any]:
    return {w.key: w for kind in ("number_input", "selectbox", "checkbox", "text_input", "multiselect")
            for w in getattr(at, kind) if w.key}


def _check_widget(widget: Any, field: SettingField, expected: Any) -> None:
    assert widget.label == field.title, (field.path, widget.label)
    assert widget.help == escape_markdown(field.help), (field.path, widget.help)
    value = widget.value
    if field.kind == "list" and isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if value in ("", []) and expected is None:  # an empty box: the field's None
        value = None
    if isinstance(expected, float) and value is not None:
        assert math.isclose(value, expected), (field.path, value, expected)
    else:
        assert value == expected, (field.path, value, expected)
    if field.kind in ("int", "float"):
        for bound, attr in (("ge", "min"), ("le", "max")):
            limit = field.bound(bound)  # type: ignore[arg-type]
            if limit is not None:
                assert getattr(widget, attr) == limit, (field.path, bound)


def test_every_models_form_shows_its_defaults_titles_help_and_bounds() -> None:
    at = AppTest.from_function(_all_forms, default_timeout=60).run()
    assert not at.exception, at.exception
    widgets = _widgets(at)
    for model in MODELS:
        for field in setting_fields(model):
            key = f"{model.__name__}:{field.path}"
            assert key in widgets, key
            assert field.help, f"{model.__name__}.{field.path} has no description"
            _check_widget(widgets[key], field, field.default)


def _form_checks(at: AppTest, prefix: str, model: type[BaseModel], values: BaseModel) -> set[str]:
    """Every widget keyed ``prefix`` + a field of ``model`` shows that field (value from
    ``values``); returns the keys it checked."""
    checked = set()
    for key, widget in _widgets(at).items():
        path = key.removeprefix(prefix) if key.startswith(prefix) else None
        try:
            field = setting_field(model, path) if path else None
        except (KeyError, ValueError):
            field = None
        if field is None:
            continue
        expected: Any = values
        for part in path.split("."):
            expected = getattr(expected, part)
        _check_widget(widget, field, expected)
        checked.add(key)
    return checked


def _unchecked_inputs(at: AppTest, prefixes: tuple[str, ...], checked: set[str], allowed: set[str]) -> list[str]:
    """Number boxes, check boxes and select boxes of a form that no model field stands behind."""
    return [w.key or w.label for kind in ("number_input", "checkbox", "selectbox", "text_input")
            for w in getattr(at, kind)
            if (w.key or "").startswith(prefixes) and w.key not in checked
            and not any(w.key == a or w.key.startswith(a + "__") for a in allowed)]  # a live box: key__labels


def test_the_train_form_is_the_models(store_url: str, tmp_path: Path) -> None:
    from training_data import make_tiny_project

    make_tiny_project(tmp_path)
    at = app_as("lead", page="judgeeye_app/views/train.py")
    assert not at.exception, at.exception
    checked = _form_checks(at, "t_", TrainingConfig, TrainingConfig.from_preset("paper"))
    assert {"t_lora_r", "t_learning_rate", "t_protocol.top_p", "t_evaluate_test", "t_mode"} <= checked
    assert not _unchecked_inputs(at, ("t_",), checked, {"t_codebook_version", "t_base_kind", "t_run_pick"})


def test_the_new_rater_run_form_is_the_models(store_url: str) -> None:
    from judgeeye.projects import ensure_sample_project

    ensure_sample_project()
    at = app_as("lead", page="judgeeye_app/views/agreement.py")
    at.session_state["ag_tab"] = "New rater run"
    at.run()
    assert not at.exception, at.exception
    checked = _form_checks(at, "ag_new_", RaterSpec, RaterSpec())
    checked |= _form_checks(at, "ag_new_embedded_", TransformersConfig, TransformersConfig())
    assert {"ag_new_max_tokens", "ag_new_top_p", "ag_new_embedded_batch_size"} <= checked
    at.radio(key="ag_new_engine").set_value("openai").run()
    checked |= _form_checks(at, "ag_new_openai_", OpenAIConfig, OpenAIConfig(model=""))
    assert {"ag_new_openai_max_concurrency", "ag_new_openai_api_key_env"} <= checked
    assert not _unchecked_inputs(at, ("ag_new_",), checked, {"ag_new_codebook", "ag_new_split"})


def test_the_refine_forms_are_the_models(store_url: str, tmp_path: Path) -> None:
    from refine_data import make_project

    project_id = make_project(tmp_path, per_level=1, test_per_level=0)
    at = app_as("lead", page="judgeeye_app/views/refine.py")
    at.session_state["project_id"] = project_id
    at.session_state["rf_tab"] = "Refine"
    at.run()
    assert not at.exception, at.exception
    checked = _form_checks(at, "rf_", RefineSettings, RefineSettings())
    checked |= _form_checks(at, "rf_embedded_", TransformersConfig, TransformersConfig())
    assert {"rf_n_inst", "rf_max_tokens", "rf_embedder", "rf_mode", "rf_note", "rf_embedded_batch_size"} <= checked
    assert not _unchecked_inputs(at, ("rf_",), checked, {"rf_base"})
    at.session_state["rf_tab"] = "Compare versions"
    at.run()
    checked = _form_checks(at, "cv_", RaterSpec, RaterSpec())
    assert checked == {"cv_limit", "cv_max_tokens", "cv_temperature"}
    assert not _unchecked_inputs(at, ("cv_",), checked, {"cv_a", "cv_b"})


def test_the_sample_form_is_the_models_under_its_preset(store_url: str) -> None:
    from review_data import make_project

    make_project(n_items=2, k=1)
    at = app_as("lead", page="judgeeye_app/views/sample.py")
    assert not at.exception, at.exception
    assert at.radio(key="s_preset").value == "embedded demo"  # the embedded engine's preset
    checked = _form_checks(at, "s_", SamplingSettings, preset_settings("embedded demo"))
    checked |= _form_checks(at, "s_embedded_", TransformersConfig, TransformersConfig())
    assert {"s_k", "s_max_tokens", "s_limit", "s_acceptance", "s_round_size", "s_embedded_batch_size"} <= checked
    assert not _unchecked_inputs(at, ("s_",), checked, {"s_codebook", "s_run_pick", "s_item"})  # + the Runs tab
    at.radio(key="s_preset").set_value("paper").run()
    assert _form_checks(at, "s_", SamplingSettings, SamplingSettings()) >= {"s_k", "s_max_tokens", "s_limit"}
