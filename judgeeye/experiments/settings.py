"""What an experiment runs: the raters of its grid, each stage's settings, one rating protocol.

The grid follows Zhang et al.: traces are inferred by rejection sampling on the train split; an
open base model is fine-tuned with LoRA on them (SFT on traces) and, as the paper's Table 4
ablation, on the ratings alone (labels only); TRACT (Chiang et al.) optionally; black-box raters
(OpenAI-compatible servers) rate with the original and with the refined codebook (Tables 2–3).
Every rater rates the same test items under one :class:`Protocol`.

Stage settings are stored as the library's own fields (``sampling`` holds
:class:`~judgeeye.sampling.SamplingSettings` fields, ``training``
:class:`~judgeeye.training.TrainingConfig` fields, ``refine``
:class:`~judgeeye.refine.settings.RefineSettings` fields), so an experiment never restates a
library default; :mod:`judgeeye.experiments.stages` turns them into the library's objects.
"""

from __future__ import annotations

import json
import shlex
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.fields import FieldInfo

from judgeeye.engines import AnyEngineConfig, EngineConfig
from judgeeye.engines.base import config_class
from judgeeye.evaluate.raters import RaterSpec, Readout
from judgeeye.training.config import MODE_LABELS, Mode, TrainingConfig

PresetName = Literal["paper", "quick"]
#: fine-tuned raters in words (the report's and the page's names)
MODE_TITLES: dict[str, str] = {"sft": "SFT on traces", "labels_only": "SFT on labels only", "tract": "TRACT"}
PRESET_LABELS: dict[str, str] = {"paper": "Paper protocol", "quick": "Quick (embedded model, minutes)"}
#: the fine-tuned raters of a grid unless chosen: SFT on traces and its labels-only ablation
DEFAULT_MODES: tuple[Mode, ...] = ("sft", "labels_only")


def _like(model: type[BaseModel], name: str, **changes: Any) -> Any:
    """Another settings model's field (its default, bounds, title and help) with ``changes``:
    the rating protocol and the base model restate no default of the rater or the training."""
    return FieldInfo.merge_field_infos(model.model_fields[name], **changes)


class Protocol(BaseModel):
    """How every rater of the grid rates: the same test items, sampling settings and budget.
    Fine-tuned raters are validated the same way while they train (their checkpoint is chosen
    the way it is judged)."""

    model_config = ConfigDict(extra="forbid")

    split: Literal["test"] = "test"
    temperature: float = _like(RaterSpec, "temperature", description="Sampling temperature of every rating "
                                                                     "(the paper: 1.0).")
    top_p: float = _like(RaterSpec, "top_p", description="Top-p of every rating (the paper: 0.95).")
    max_tokens: int = _like(RaterSpec, "max_tokens", title="Tokens per rating",
                            description="Tokens each rater may write per item.")
    seed: int = Field(0, ge=0, title="Seed", description="Seed of every rating (recorded with the experiment).")
    limit: int | None = _like(RaterSpec, "limit", title="Test items",
                              description="Rate only the first N test items.")
    readout: Readout = _like(
        RaterSpec, "readout", title="Read-out of local raters",
        description="How a local rater's completion becomes a rating: parsed (the rating it wrote), argmax or "
                    "expected (the rating-token distribution after its trace). Black-box raters always use parsed; "
                    "TRACT uses expected (CoT-RAIL), its own read-out.")


def engine_from_text(text: str, **shared: Any) -> EngineConfig:
    """An engine from ``SPEC[,field=value...]`` (``openai:M@URL,max_concurrency=4``): the spec as
    :meth:`EngineConfig.parse` reads it, then the kind's fields; ``shared`` (None: not given)
    fills the fields the kind has that the text does not set (a command's ``--api-key-env``)."""
    head, *pairs = _split_top(text)
    fields: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"engine {text!r}: {pair!r} is not field=value")
        fields[key.strip()] = _read(raw.strip())
    config = EngineConfig.parse(head)
    kind = config_class(config.kind)
    fields = {**{k: v for k, v in shared.items() if v is not None and k in kind.model_fields}, **fields}
    return kind.model_validate({**config.model_dump(), **fields}) if fields else config


def engine_text(config: EngineConfig) -> str:
    """The text :func:`engine_from_text` reads back into ``config``: its spec, then each field
    that differs from what the spec alone gives."""
    plain = EngineConfig.parse(config.spec()).model_dump(mode="json")
    mine = config.model_dump(mode="json")
    return ",".join([config.spec(), *(f"{k}={_cli_value(v)}" for k, v in mine.items() if plain.get(k) != v)])


def _split_top(text: str) -> list[str]:
    """``text`` split at commas outside brackets, braces and quotes (a JSON value may hold commas)."""
    parts, depth, quote, current = [], 0, False, ""
    for ch in text:
        if ch == '"':
            quote = not quote
        elif not quote and ch in "[{":
            depth += 1
        elif not quote and ch in "]}":
            depth -= 1
        if ch == "," and depth == 0 and not quote:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return [*parts, current.strip()]


def _read(raw: str) -> Any:
    """A value as JSON where it parses (numbers, true/false, null, lists), else the text itself."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


class ExperimentSettings(BaseModel):
    """One experiment: which raters, and how each stage runs. Stored with the experiment."""

    # hide_input_in_errors: a key typed where its variable's name belongs is not echoed
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    preset: PresetName = Field("paper", title="Preset", json_schema_extra={"labels": dict(PRESET_LABELS)},
                               description="paper (the paper's protocol) or quick (the embedded model on a CPU, "
                                           "minutes).")
    base_model: str = _like(TrainingConfig, "base_model", title="Base model (rated as is and fine-tuned)",
                            description="The open rater that is rated as is and fine-tuned: embedded, a Hugging Face "
                                        "id or a model folder.")
    sampler: AnyEngineConfig | None = Field(
        None, title="Sampler", description="The engine that infers the traces, e.g. openai:MODEL@URL (none: the base "
                                           "model). The paper infers traces with a strong reasoning model and "
                                           "fine-tunes a smaller one.")
    codebook_version: int | None = Field(None, title="Codebook version", json_schema_extra={"none": "the current one"},
                                         description="The original codebook version (fixed when the experiment is "
                                                     "created).")
    sampling: dict[str, Any] = Field(default_factory=dict, description="Sampling settings (SamplingSettings fields).")
    training: dict[str, Any] = Field(default_factory=dict, description="Training settings shared by every fine-tuned "
                                                                        "rater (TrainingConfig fields).")
    modes: list[Mode] = Field(default_factory=lambda: list(DEFAULT_MODES), title="Fine-tuned raters",
                              json_schema_extra={"labels": dict(MODE_LABELS)},
                              description="sft (on traces), labels_only (the paper's Table 4 ablation), tract "
                                          "(TRACT, two stages).")
    blackbox: list[AnyEngineConfig] = Field(default_factory=list, title="Black-box raters",
                                            description="OpenAI-compatible servers that rate with the original and "
                                                        "the refined codebook (openai:MODEL@URL).")
    refined_codebook: int | None = Field(None, title="Refined codebook",
                                         json_schema_extra={"none": "refine the original"},
                                         description="Refined codebook version for the black-box raters (none: the "
                                                     "experiment refines the original).")
    refine: dict[str, Any] = Field(default_factory=dict, description="Refinement settings (RefineSettings fields).")
    refine_engine: AnyEngineConfig | None = Field(None, title="Refiner",
                                                  description="The engine that refines the codebook (none: the first "
                                                              "black-box rater).")
    protocol: Protocol = Field(default_factory=Protocol, title="Rating protocol",
                               description="How every rater rates the test split (one protocol).")

    @field_validator("sampler", "refine_engine", mode="before")
    @classmethod
    def _engine(cls, value: Any) -> Any:
        if isinstance(value, str):
            return engine_from_text(value) if value.strip() else None
        return value

    @field_validator("modes")
    @classmethod
    def _modes(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("blackbox", mode="before")
    @classmethod
    def _blackbox_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [engine_from_text(v) if isinstance(v, str) else v for v in value if not isinstance(v, str)
                    or v.strip()]
        return value

    @field_validator("blackbox")
    @classmethod
    def _blackbox(cls, value: list[EngineConfig]) -> list[EngineConfig]:
        bad = [v.spec() for v in value if v.kind != "openai"]
        if bad:
            raise ValueError(f"black-box raters are OpenAI-compatible servers (openai:MODEL@URL); got {bad}")
        specs = [v.spec() for v in value]
        if len(set(specs)) != len(specs):
            raise ValueError("a black-box rater is listed twice")
        return value

    @model_validator(mode="after")
    def _check(self) -> ExperimentSettings:
        if self.refine_engine is not None and not self.blackbox:
            raise ValueError("a refine engine only matters with black-box raters (they use the refined codebook)")
        return self

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides: Any) -> ExperimentSettings:
        """The preset's settings (None: the default preset) with ``overrides`` on top; dict fields
        (``sampling``, ``training``, ``refine``, ``protocol``) are merged key by key. None values
        are left out."""
        preset = preset or cls.model_fields["preset"].default
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        data: dict[str, Any] = json.loads(json.dumps(PRESETS[preset]))
        for key, value in overrides.items():
            if value is None:
                continue
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json")
            if key in MERGED and isinstance(value, dict):
                data[key] = {**data.get(key, {}), **value}
            else:
                data[key] = value
        return cls.model_validate({**data, "preset": preset})

    def refines(self) -> bool:
        """Whether the experiment writes the refined codebook itself."""
        return bool(self.blackbox) and self.refined_codebook is None

    @property
    def original_version(self) -> int:
        """The original codebook version, which :func:`~judgeeye.experiments.launch.resolve`
        writes in (an experiment stores resolved settings); unresolved settings have none yet."""
        if self.codebook_version is None:
            raise ValueError("the experiment's codebook version is not resolved yet")
        return self.codebook_version


#: settings whose values are dicts merged key by key over the preset's
MERGED = ("sampling", "training", "refine", "protocol")

#: The presets set only what differs from the library's defaults (which are the paper's).
#: "paper": the protocol of Zhang et al. (k = 16 traces at T = 1.0 per train item, the rating each
#: trace writes; the paper's training hyperparameters scaled by the training plan; ratings at
#: T = 1.0, top-p 0.95, the rating each rater writes; instruction and rubric refinement), with
#: the sampling seed fixed, so a rerun finds the same runs.
#: "quick": the embedded model on a CPU in minutes: the shortest train items, short traces rated
#: by the forced answer cue (the 135M model seldom writes a rating within a short budget), one
#: training step (``force``: one step allows no checkpoint selection, which the training plan
#: otherwise refuses), and the score read-out after the trace. It shows the protocol end to end;
#: its numbers are no evidence.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"sampling": {"seed": 0}},
    "quick": {
        "sampling": {"k": 4, "max_tokens": 48, "limit": 5, "order": "shortest", "acceptance": "forced_cue",
                     "seed": 0},
        # a HANNA row is up to ~2,500 tokens: one per step, activations recomputed (about half the memory)
        "training": {"max_steps": 1, "batch_size": 1, "grad_accum": 1, "learning_rate": 2e-4, "warmup_steps": 0,
                     "eval_steps": 1, "patience": 1, "max_length": 2560, "gradient_checkpointing": True,
                     "val_limit": 2, "val_batch_size": 2, "force": True},
        "refine": {"mode": "instruction", "n_inst": 2, "attempts": 2},
        "protocol": {"max_tokens": 24, "limit": 5, "readout": "argmax"},
    },
}
PRESET_HELP: dict[str, str] = {
    "paper": "The paper's protocol (k=16, T=1.0, the paper's training hyperparameters scaled by the training plan, "
             "ratings at T=1.0, top-p 0.95): for real models on a GPU or a server.",
    "quick": "The embedded model on a CPU in minutes: the 5 shortest train items, k=4, forced answer cue, one "
             "training step per fine-tuned rater, 5 test items. It runs the protocol end to end; its numbers are no "
             "evidence.",
}


# ------------------------------------------------------------------------------- editing


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """``section.field=value`` (``sampling.k=2``, ``protocol.limit=3``, ``modes=sft,tract``) →
    (path, value); the value is read as JSON where it parses (numbers, true/false, null)."""
    path, sep, raw = text.partition("=")
    parts = [p.strip() for p in path.split(".") if p.strip()]
    if not sep or not parts:
        raise ValueError(f"{text!r} is not KEY=VALUE (e.g. sampling.k=4 or protocol.limit=20)")
    if len(parts) > 2:
        raise ValueError(f"{text!r}: a key is a setting or section.field, e.g. sampling.k")
    raw = raw.strip()
    value = _read(raw)
    if parts == ["modes"]:
        value = value if isinstance(value, list) else [v.strip() for v in str(raw).split(",") if v.strip()]
    return parts, value


def apply_assignments(overrides: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """``overrides`` with each ``KEY=VALUE`` set (sections merged key by key)."""
    out = json.loads(json.dumps(overrides))
    for text in assignments:
        path, value = parse_assignment(text)
        if len(path) == 1:
            if path[0] in MERGED:
                raise ValueError(f"{text!r}: set one field of {path[0]}, e.g. {path[0]}.max_tokens=64")
            if path[0] not in ExperimentSettings.model_fields or path[0] == "preset":
                raise ValueError(f"{text!r}: unknown setting {path[0]!r}; settings: "
                                 + ", ".join(f for f in ExperimentSettings.model_fields if f != "preset"))
            out[path[0]] = value
        else:
            section, name = path
            if section not in MERGED:
                raise ValueError(f"{text!r}: {section!r} has no fields; sections: {', '.join(MERGED)}")
            out.setdefault(section, {})[name] = value
    return out


def changed(settings: ExperimentSettings) -> dict[str, Any]:
    """What the settings change against their preset: top-level values and section fields."""
    base = ExperimentSettings.from_preset(settings.preset).model_dump(mode="json")
    mine = settings.model_dump(mode="json")
    out: dict[str, Any] = {}
    for key, value in mine.items():
        if key == "preset" or value == base.get(key):
            continue
        if key in MERGED:
            diff = {k: v for k, v in value.items() if base[key].get(k, _MISSING) != v}
            if diff:
                out[key] = diff
        else:
            out[key] = value
    return out


_MISSING = object()

#: the settings `judgeeye experiment run` takes as options (generated from the fields by
#: :func:`judgeeye.settings_cli.settings_options`; None: ``--field-name``); the engines are
#: ``--sampler``, ``--blackbox`` and ``--refine-engine`` (:func:`engine_from_text`), the
#: sections' fields ``--set section.field=value``
CLI_OPTIONS: dict[str, str | None] = {
    "preset": None, "base_model": "--base", "codebook_version": "--codebook", "modes": "--mode",
    "refined_codebook": None, "protocol.temperature": "--rate-temperature", "protocol.top_p": "--rate-top-p",
    "protocol.max_tokens": "--rate-max-tokens", "protocol.seed": "--rate-seed", "protocol.limit": "--test-limit",
    "protocol.readout": "--readout",
}
#: the engine settings and their options
ENGINE_OPTIONS: dict[str, str] = {"sampler": "--sampler", "blackbox": "--blackbox", "refine_engine": "--refine-engine"}


def cli_command(project: str, settings: ExperimentSettings) -> str:
    """The `judgeeye experiment run` command that starts the same experiment."""
    from judgeeye.settings_cli import option_name

    args = ["judgeeye", "experiment", "run", "--project", project, "--preset", settings.preset]
    diff = changed(settings)
    for path, option in CLI_OPTIONS.items():
        section, _, name = path.rpartition(".")
        where = diff.get(section, {}) if section else diff
        if path == "preset" or name not in where:
            continue
        value = where.pop(name)
        option = option or option_name(path)
        if value is None:  # no option says "none": the field itself does
            args += ["--set", f"{path}=null"]
        elif isinstance(value, list):
            args += [a for v in value for a in (option, str(v))] or ["--set", f"{path}=[]"]
        else:
            args += [option, f"{value:g}" if isinstance(value, float) else str(value)]
    for key, option in ENGINE_OPTIONS.items():
        if key not in diff:
            continue
        value = getattr(settings, key)
        for engine in value if isinstance(value, list) else [value]:
            if engine is not None:
                args += [option, engine_text(engine)]
        diff.pop(key)
    for section in MERGED:
        for name, value in (diff.pop(section, None) or {}).items():
            args += ["--set", f"{section}.{name}={_cli_value(value)}"]
    for key, value in diff.items():  # a top-level setting without an option of its own
        args += ["--set", f"{key}={_cli_value(value)}"]
    return shlex.join(args)


def _cli_value(value: Any) -> str:
    """A value as ``--set`` reads it back: text as it is unless it would read as JSON."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError:
            return value
    return json.dumps(value)


__all__ = ["CLI_OPTIONS", "ENGINE_OPTIONS", "MODE_TITLES", "PRESETS", "PRESET_HELP", "ExperimentSettings", "Mode",
           "Protocol", "apply_assignments", "changed", "cli_command", "engine_from_text", "engine_text",
           "parse_assignment"]
