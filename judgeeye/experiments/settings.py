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

from judgeeye.engines.base import check_api_key_env

Mode = Literal["sft", "labels_only", "tract"]
PresetName = Literal["paper", "quick"]
LocalReadout = Literal["parsed", "argmax", "expected"]
#: fine-tuned raters in words (the report's and the page's names)
MODE_TITLES: dict[str, str] = {"sft": "SFT on traces", "labels_only": "SFT on labels only", "tract": "TRACT"}


class Protocol(BaseModel):
    """How every rater of the grid rates: the same test items, sampling settings and budget."""

    model_config = ConfigDict(extra="forbid")

    split: Literal["test"] = "test"
    temperature: float = Field(1.0, ge=0, description="Sampling temperature of every rating (the paper: 1.0).")
    top_p: float = Field(0.95, gt=0, le=1, description="Top-p of every rating (the paper: 0.95).")
    max_tokens: int = Field(1024, ge=1, description="Tokens each rater may write per item.")
    seed: int = Field(0, ge=0, description="Seed of every rating.")
    limit: int | None = Field(None, ge=1, description="Rate only the first N test items (none: all).")
    readout: LocalReadout = Field(
        "parsed", description="How a local rater's completion becomes a rating: parsed (the rating it wrote), "
                              "argmax or expected (the rating-token distribution after its trace). Black-box raters "
                              "always use parsed; TRACT uses expected (CoT-RAIL), its own read-out.")


class ExperimentSettings(BaseModel):
    """One experiment: which raters, and how each stage runs. Stored with the experiment."""

    model_config = ConfigDict(extra="forbid")

    preset: PresetName = Field("paper", description="paper (the paper's protocol) or quick (the embedded model "
                                                   "on a CPU, minutes).")
    base_model: str = Field("embedded", description="The open rater that is rated as is and fine-tuned: embedded, "
                                                     "a Hugging Face id or a model folder.")
    sampler: str = Field("", description="The engine that infers the traces, e.g. openai:MODEL@URL (default: the "
                                         "base model).")
    codebook_version: int | None = Field(None, description="The original codebook version (default: the current "
                                                           "one, fixed when the experiment is created).")
    sampling: dict[str, Any] = Field(default_factory=dict, description="Sampling settings (SamplingSettings fields).")
    training: dict[str, Any] = Field(default_factory=dict, description="Training settings shared by every fine-tuned "
                                                                        "rater (TrainingConfig fields).")
    modes: list[Mode] = Field(default_factory=lambda: ["sft", "labels_only"],
                              description="Fine-tuned raters: sft (on traces), labels_only (Table 4), tract.")
    blackbox: list[str] = Field(default_factory=list, description="A black-box rater, openai:MODEL@URL; repeat for "
                                                                  "several.")
    api_key_env: str | None = Field(None, description="NAME of the environment variable with the servers' API key.")
    refined_codebook: int | None = Field(None, description="Refined codebook version for the black-box raters "
                                                           "(default: the experiment refines the original).")
    refine: dict[str, Any] = Field(default_factory=dict, description="Refinement settings (RefineSettings fields).")
    refine_engine: str = Field("", description="The engine that refines the codebook (default: the first black-box "
                                               "rater).")
    protocol: Protocol = Field(default_factory=Protocol)

    @field_validator("api_key_env")
    @classmethod
    def _key_name(cls, value: str | None) -> str | None:
        return check_api_key_env(value)

    @field_validator("modes")
    @classmethod
    def _modes(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("blackbox")
    @classmethod
    def _blackbox(cls, value: list[str]) -> list[str]:
        value = [v.strip() for v in value if v.strip()]
        bad = [v for v in value if not v.startswith("openai:")]
        if bad:
            raise ValueError(f"black-box raters are OpenAI-compatible servers (openai:MODEL@URL); got {bad}")
        if len(set(value)) != len(value):
            raise ValueError("a black-box rater is listed twice")
        return value

    @model_validator(mode="after")
    def _check(self) -> ExperimentSettings:
        if self.refine_engine and not self.blackbox:
            raise ValueError("a refine engine only matters with black-box raters (they use the refined codebook)")
        return self

    @classmethod
    def from_preset(cls, preset: str = "paper", **overrides: Any) -> ExperimentSettings:
        """The preset's settings with ``overrides`` on top; dict fields (``sampling``,
        ``training``, ``refine``, ``protocol``) are merged key by key. None values are left out."""
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


#: settings whose values are dicts merged key by key over the preset's
MERGED = ("sampling", "training", "refine", "protocol")

#: "paper": the protocol of Zhang et al. (k = 16 traces at T = 1.0 per train item; the library's
#: training defaults, which are the paper's hyperparameters; ratings at T = 1.0, top-p 0.95, the
#: rating each rater writes; instruction and rubric refinement from 10/50 traces per level).
#: "quick": the embedded model on a CPU in minutes: a few items, short traces, a handful of
#: training steps, and the score read-out after the trace (the 135M model seldom writes a
#: rating within a short budget). It shows the protocol end to end; its numbers are no evidence.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "sampling": {"k": 16, "temperature": 1.0, "seed": 0},
        "training": {"seed": 42},
        "modes": ["sft", "labels_only"],
        "refine": {"mode": "both"},
        "protocol": {"temperature": 1.0, "top_p": 0.95, "max_tokens": 1024, "readout": "parsed", "seed": 0},
    },
    "quick": {
        "sampling": {"k": 4, "temperature": 1.0, "max_tokens": 48, "limit": 5, "seed": 0},
        # a HANNA row is up to ~2,500 tokens: one per step, activations recomputed (about half the memory)
        "training": {"max_steps": 1, "batch_size": 1, "grad_accum": 1, "learning_rate": 2e-4, "warmup_steps": 0,
                     "eval_steps": 1, "patience": 1, "max_length": 2560, "gradient_checkpointing": True,
                     "val_limit": 2, "val_max_tokens": 16, "val_readout": "argmax", "val_batch_size": 2, "seed": 42},
        "modes": ["sft", "labels_only"],
        "refine": {"mode": "instruction", "n_inst": 2, "attempts": 2},
        "protocol": {"temperature": 1.0, "top_p": 0.95, "max_tokens": 24, "limit": 5, "readout": "argmax", "seed": 0},
    },
}
PRESET_HELP: dict[str, str] = {
    "paper": "The paper's protocol (k=16, T=1.0, the paper's training hyperparameters, ratings at T=1.0, "
             "top-p 0.95): for real models on a GPU or a server.",
    "quick": "The embedded model on a CPU in minutes: 5 train items, k=4, one training step per fine-tuned rater, "
             "5 test items. It runs the protocol end to end; its numbers are no evidence.",
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
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if parts == ["modes"] or parts == ["blackbox"]:
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


def cli_command(project: str, settings: ExperimentSettings) -> str:
    """The `judgeeye experiment run` command that starts the same experiment."""
    args = ["judgeeye", "experiment", "run", "--project", project, "--preset", settings.preset]
    diff = changed(settings)
    options = {"base_model": "--base", "sampler": "--sampler", "codebook_version": "--codebook",
               "refined_codebook": "--refined-codebook", "refine_engine": "--refine-engine",
               "api_key_env": "--api-key-env"}
    for key, option in options.items():
        if key in diff and diff[key] not in (None, ""):
            args += [option, str(diff.pop(key))]
        else:
            diff.pop(key, None)
    if "blackbox" in diff:
        for spec in diff.pop("blackbox"):
            args += ["--blackbox", spec]
    if "modes" in diff:
        modes = diff.pop("modes")
        default = ExperimentSettings.from_preset(settings.preset).modes
        if sorted(set(modes) ^ set(default)) == ["tract"]:
            args.append("--tract" if "tract" in modes else "--no-tract")
        else:
            args += ["--set", "modes=" + ",".join(modes)]
    for section in MERGED:
        for name, value in (diff.pop(section, None) or {}).items():
            args += ["--set", f"{section}.{name}={_cli_value(value)}"]
    for key, value in diff.items():  # nothing else today; kept complete for new fields
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


__all__ = ["MODE_TITLES", "PRESETS", "PRESET_HELP", "ExperimentSettings", "Mode", "Protocol",
           "apply_assignments", "changed", "cli_command", "parse_assignment"]
