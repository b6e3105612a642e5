"""What a fine-tuning run does: data, base model, LoRA, optimiser, plan, validation, evaluation.

Two named recipes (``preset``) fill the defaults; any field can be set on top of them:

* ``paper`` (the default): Zhang et al., Appendix C: LoRA r=16, α=32, AdamW, lr 5e-5, weight
  decay 0.01, batch size 128 (8 rows × 16 accumulation steps), early stopping on validation
  Kendall τ; the paper's step counts (warm-up 100 steps, patience 100 steps) assume far more
  optimiser steps than a few hundred items give, so they are **scaled by the plan**
  (:mod:`judgeeye.training.plan`): warm-up is 10% of the planned steps, validation runs about
  10 times over the plan and patience is 3 validations. The paper gives no epoch count (it
  trains until early stopping); JudgeEye caps it at 10 epochs. LoRA dropout (0.05) and the
  linear decay are not in the paper.
* ``tract``: Chiang et al., Appendix A (Llama-Factory defaults): LoRA r=8 on all linear layers
  (α = 2r = 16 and dropout 0, Llama-Factory's defaults), lr 1e-5, cosine schedule, 2 epochs,
  effective batch 8, warm-up ratio 1.0 as the paper states it (the learning rate then rises
  over the whole run and the cosine decay never starts; the plan warns about it), weight decay
  0 (the Trainer's default); the CoT-RAFT objective with λ = 1; rated with temperature 1.0,
  top-p 0.9, 1,024 tokens and the CoT-RAIL read-out (the paper's repetition penalty 1.03 is
  not applied: the engines do not support it on every path).

Validation (which selects the checkpoint and stops early) and the test split are rated under one
:class:`RatingProtocol`, so the checkpoint is chosen the way it is judged. The config is stored
with the run (``TrainingRun.config``) and with the adapter, so a resumed run trains exactly as it
started and an adapter says how it was made.
"""

from __future__ import annotations

import shlex
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Mode = Literal["sft", "labels_only", "tract"]
Source = Literal["auto", "review", "candidates"]
Readout = Literal["auto", "parsed", "argmax", "expected"]
Preset = Literal["paper", "tract"]
MODES: tuple[str, ...] = ("sft", "labels_only", "tract")


#: how each recipe, objective and read-out is called in front of users
PRESET_LABELS: dict[str, str] = {"paper": "Zhang et al. (Appendix C), scaled to the data",
                                 "tract": "TRACT (Chiang et al., Appendix A)"}
MODE_LABELS: dict[str, str] = {"sft": "SFT on traces", "labels_only": "Labels only (ablation)",
                               "tract": "TRACT (CoT-RAFT, two stages)"}
READOUT_LABELS: dict[str, str] = {"auto": "auto (expected for TRACT, else parsed)",
                                  "parsed": "parsed (the rating it wrote)", "argmax": "argmax (most probable level)",
                                  "expected": "expected (CoT-RAIL)"}
_ADVANCED: dict[str, Any] = {"advanced": True}


class RatingProtocol(BaseModel):
    """How the rater under training rates an item, on the validation split (checkpoint selection,
    early stopping) and on the test split alike. The defaults are the paper's (section 4.3)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(1.0, ge=0, title="Temperature",
                               description="Sampling temperature for validation and test ratings.",
                               json_schema_extra={"step": 0.1})
    top_p: float = Field(0.95, gt=0, le=1, title="Top-p", description="Top-p for validation and test ratings.",
                         json_schema_extra={"step": 0.05})
    max_tokens: int = Field(1024, ge=1, title="Tokens per rating",
                            description="Tokens generated per validation or test rating.")
    readout: Readout = Field(
        "auto", title="Read-out", json_schema_extra={"labels": READOUT_LABELS},
        description="How a completion becomes a rating: parsed (the rating it wrote; unparsed answers "
                    "are counted and left out), argmax or expected (CoT-RAIL); auto: expected for TRACT, "
                    "else parsed.")


class TrainingConfig(BaseModel):
    """One training run's settings (see the module docstring for where the defaults come from)."""

    model_config = ConfigDict(extra="forbid")

    preset: Preset = Field("paper", title="Recipe", json_schema_extra={"labels": PRESET_LABELS},
                           description="Recipe for the defaults: paper (Zhang et al.) or tract (Chiang et al.).")

    # ---- data
    mode: Mode = Field("sft", title="Objective", json_schema_extra={"labels": MODE_LABELS},
                       description="sft (trace + rating), labels_only (rating only), tract (CoT-RAFT, two stages).")
    source: Source = Field(
        "auto", title="Traces",
        description="review: the reviewed reasoning dataset (unreviewed items: their first accepted trace); "
                    "candidates: the first accepted trace per item of one sampling run; auto: review when "
                    "available.")
    sampling_run: int | None = Field(None, title="Sampling run", json_schema_extra={"none": "the latest"},
                                     description="Candidates of this sampling run.")
    codebook_version: int | None = Field(None, title="Codebook version (prompts)",
                                         json_schema_extra={"none": "the traces' version"},
                                         description="Codebook version for the prompts.")
    train_limit: int | None = Field(None, ge=1, title="Training rows", json_schema_extra={"none": "all", **_ADVANCED},
                                    description="Only the first N training rows.")
    max_length: int = Field(4096, ge=16, title="Max length (tokens)", json_schema_extra={"step": 64},
                            description="Prompt + completion tokens; longer rows are left out, never cut.")
    packing: bool = Field(False, title="Sequence packing",
                          description="Pack rows into max_length sequences (padding-free).")
    think_tags: Literal["auto", "on", "off"] = Field(
        "auto", title="<think> tags", json_schema_extra=_ADVANCED,
        description="Wrap the trace in <think>…</think>: auto (when the chat template knows <think>), on, off.")

    # ---- model
    base_model: str = Field("embedded", title="Base model",
                            description="embedded, a Hugging Face id, a model directory or a .gguf file.")
    device: str = Field("auto", title="Device", json_schema_extra=_ADVANCED, description="auto, cpu, cuda, cuda:1 ...")
    dtype: str = Field("auto", title="Data type", json_schema_extra=_ADVANCED,
                       description="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16.")
    lora_r: int = Field(16, ge=1, title="LoRA r", description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, title="LoRA α", description="LoRA alpha.")
    lora_dropout: float = Field(0.05, ge=0, lt=1, title="LoRA dropout", description="LoRA dropout.",
                                json_schema_extra={"step": 0.01})
    target_modules: str = Field("all-linear", title="Target modules",
                                description="all-linear, or names such as q_proj,v_proj.")
    gradient_checkpointing: bool = Field(False, title="Gradient checkpointing", json_schema_extra=_ADVANCED,
                                         description="Recompute activations in the backward pass (less memory).")

    # ---- optimiser (AdamW) and the plan (judgeeye.training.plan)
    learning_rate: float = Field(5e-5, gt=0, title="Learning rate", description="AdamW learning rate.",
                                 json_schema_extra={"step": 1e-6, "format": "%.1e"})
    lr_scheduler: str = Field("linear", title="Schedule",
                              json_schema_extra={"suggestions": ["linear", "cosine", "constant_with_warmup"]},
                              description="Learning-rate schedule after warm-up: linear, cosine, constant ...")
    weight_decay: float = Field(0.01, ge=0, title="Weight decay", description="AdamW weight decay.",
                                json_schema_extra={"step": 0.01})
    epochs: float = Field(10.0, gt=0, title="Epochs (most)", json_schema_extra={"step": 0.5},
                          description="Most epochs; training stops earlier when validation τ stops improving.")
    max_steps: int | None = Field(None, ge=1, title="Max steps", json_schema_extra={"none": "by epochs"},
                                  description="Optimiser steps (instead of epochs × steps per epoch).")
    batch_size: int = Field(8, ge=1, title="Batch size per device", description="Rows per device and micro-step.")
    grad_accum: int = Field(16, ge=1, title="Gradient accumulation", description="Gradient accumulation steps.")
    warmup_ratio: float = Field(0.1, ge=0, le=1, title="Warm-up ratio", json_schema_extra={"step": 0.05},
                                description="Linear warm-up as a share of the planned steps.")
    warmup_steps: int | None = Field(None, ge=0, title="Warm-up steps", json_schema_extra={"none": "by ratio"},
                                     description="Warm-up steps (instead of the ratio).")
    seed: int = Field(42, title="Seed", json_schema_extra=_ADVANCED,
                      description="Seed of training and of the validation and test ratings.")

    # ---- validation and early stopping
    evaluations: int = Field(10, ge=1, title="Validations over the run",
                             description="Validations over the planned steps (sets the interval).")
    eval_steps: int | None = Field(None, ge=1, title="Validate every N steps", json_schema_extra={"none": "from the plan"},
                                   description="Validate every N steps (instead of the planned interval).")
    patience_evaluations: int = Field(3, ge=1, title="Patience (validations)",
                                      description="Early stopping: validations without a better τ.")
    patience: int | None = Field(None, ge=1, title="Patience in steps", json_schema_extra={"none": "by validations"},
                                 description="Early stopping in steps (instead of validations).")
    val_limit: int | None = Field(None, ge=1, title="Validation items", json_schema_extra={"none": "all"},
                                  description="Only the first N validation items.")
    val_batch_size: int = Field(8, ge=1, title="Validation batch", json_schema_extra=_ADVANCED,
                                description="Items rated together in validation, test and stage-2 sampling.")
    protocol: RatingProtocol = Field(default_factory=RatingProtocol, title="Rating protocol",
                                     description="How validation and test items are rated (one protocol).")
    force: bool = Field(False, title="Train anyway",
                        description="Train even when the plan is refused (warm-up longer than the run, "
                                    "fewer than 3 validations).")

    # ---- TRACT
    lambda_raft: float = Field(1.0, ge=0, title="λ (weight of the squared error)", json_schema_extra={"step": 0.1},
                               description="TRACT: weight of the squared-error term.")
    self_trace_max_tokens: int = Field(1024, ge=1, title="Stage 2: tokens per self-generated trace",
                                       description="TRACT stage 2: tokens per self-generated trace.")
    self_trace_temperature: float = Field(1.0, ge=0, title="Stage 2: temperature",
                                          json_schema_extra={"step": 0.1, **_ADVANCED},
                                          description="TRACT stage 2: sampling temperature of the self-generated "
                                                      "traces.")

    # ---- test evaluation (adapter against the base model)
    evaluate_test: bool = Field(True, title="Evaluate on the test split",
                                description="Evaluate adapter and base on the test split.")
    test_limit: int | None = Field(None, ge=1, title="Test items", json_schema_extra={"none": "all"},
                                   description="Only the first N test items.")
    n_boot: int = Field(1000, ge=100, title="Bootstrap resamples", json_schema_extra=_ADVANCED,
                        description="Bootstrap resamples of the test comparison's one-sided tests.")

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """Configs stored before the one rating protocol: validation and test had their own
        settings; a resumed old run rates both the way its test did."""
        if not isinstance(data, dict) or not any(k in data for k in _OLD_PROTOCOL):
            return data
        data = dict(data)
        old = {k: data.pop(k) for k in _OLD_PROTOCOL if k in data}
        if "protocol" not in data:
            data["protocol"] = {new: old[key] for key, new in _OLD_PROTOCOL.items() if new and key in old}
        return data

    @model_validator(mode="after")
    def _check(self) -> TrainingConfig:
        if self.mode == "labels_only" and self.think_tags == "on":
            raise ValueError("labels_only trains on the rating alone; think_tags 'on' makes no sense there")
        if not self.target_modules.strip():
            raise ValueError("target_modules is empty; use 'all-linear' or names like q_proj,v_proj")
        return self

    @classmethod
    def from_preset(cls, preset: str = "paper", **values: Any) -> TrainingConfig:
        """The preset's config with ``values`` set on top (None values are left out)."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
        chosen = {k: v for k, v in values.items() if v is not None}
        protocol = {**PRESETS[preset].get("protocol", {}), **dict(chosen.pop("protocol", None) or {})}
        return cls.model_validate({**PRESETS[preset], **chosen, "protocol": protocol, "preset": preset})

    # ------------------------------------------------------------------ helpers
    def targets(self) -> str | list[str]:
        text = self.target_modules.strip()
        return text if text == "all-linear" else [t.strip() for t in text.split(",") if t.strip()]

    @property
    def readout(self) -> str:
        """The concrete read-out: "auto" is CoT-RAIL's expected score for TRACT, else "parsed"."""
        if self.protocol.readout != "auto":
            return self.protocol.readout
        return "expected" if self.mode == "tract" else "parsed"

    @property
    def effective_batch(self) -> int:
        """Rows per optimiser step on one device (times the devices under ``accelerate launch``)."""
        return self.batch_size * self.grad_accum


#: settings of configs stored before the one rating protocol -> the protocol field they become
_OLD_PROTOCOL: dict[str, str | None] = {
    "test_temperature": "temperature", "test_top_p": "top_p", "test_max_tokens": "max_tokens",
    "test_readout": "readout", "val_max_tokens": None, "val_readout": None,
}

#: the recipes (see the module docstring); "paper" is the field defaults themselves
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "tract": {"mode": "tract", "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear",
              "learning_rate": 1e-5, "lr_scheduler": "cosine", "epochs": 2.0, "warmup_ratio": 1.0,
              "weight_decay": 0.0, "batch_size": 8, "grad_accum": 1, "lambda_raft": 1.0,
              "protocol": {"temperature": 1.0, "top_p": 0.9, "max_tokens": 1024, "readout": "expected"}},
}
#: CLI option name -> config field ("protocol.x" for the rating protocol's fields)
CLI_OPTIONS: dict[str, str] = {
    "--preset": "preset", "--base": "base_model", "--mode": "mode", "--source": "source",
    "--sampling-run": "sampling_run", "--codebook": "codebook_version", "--train-limit": "train_limit",
    "--max-length": "max_length", "--lora-r": "lora_r", "--lora-alpha": "lora_alpha",
    "--lora-dropout": "lora_dropout", "--target-modules": "target_modules", "--lr": "learning_rate",
    "--scheduler": "lr_scheduler", "--warmup-ratio": "warmup_ratio", "--warmup-steps": "warmup_steps",
    "--weight-decay": "weight_decay", "--epochs": "epochs", "--max-steps": "max_steps",
    "--batch-size": "batch_size", "--grad-accum": "grad_accum", "--seed": "seed",
    "--evaluations": "evaluations", "--eval-steps": "eval_steps", "--patience-evaluations": "patience_evaluations",
    "--patience": "patience", "--val-limit": "val_limit", "--temperature": "protocol.temperature",
    "--top-p": "protocol.top_p", "--max-tokens": "protocol.max_tokens", "--readout": "protocol.readout",
    "--lambda": "lambda_raft", "--self-trace-max-tokens": "self_trace_max_tokens", "--test-limit": "test_limit",
    "--device": "device", "--dtype": "dtype", "--think-tags": "think_tags", "--val-batch-size": "val_batch_size",
    "--self-trace-temperature": "self_trace_temperature", "--n-boot": "n_boot",
}
#: boolean fields and their CLI flags (on, off)
CLI_FLAGS: dict[str, tuple[str, str]] = {
    "packing": ("--packing", "--no-packing"),
    "gradient_checkpointing": ("--gradient-checkpointing", "--no-gradient-checkpointing"),
    "evaluate_test": ("--test-eval", "--no-test-eval"),
    "force": ("--force", "--no-force"),
}


def field_value(config: BaseModel, path: str) -> Any:
    """``config``'s value at a dotted field path ("protocol.top_p")."""
    value: Any = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


def cli_command(project: str, config: TrainingConfig) -> str:
    """The `judgeeye train` command that starts the same run (only options off the preset's values)."""
    default = TrainingConfig.from_preset(config.preset)
    args = ["judgeeye", "train", "--project", project]
    if config.preset != "paper":
        args += ["--preset", config.preset]
    for option, path in CLI_OPTIONS.items():
        value = field_value(config, path)
        if path == "preset" or value is None or value == field_value(default, path):
            continue
        if path == "mode":
            value = str(value).replace("_", "-")
        args += [option, f"{value:g}" if isinstance(value, float) else str(value)]
    for name, (on, off) in CLI_FLAGS.items():
        value = getattr(config, name)
        if value != getattr(default, name):
            args.append(on if value else off)
    return shlex.join(args)


__all__ = ["CLI_FLAGS", "CLI_OPTIONS", "MODES", "PRESETS", "PRESET_LABELS", "Mode", "Preset", "RatingProtocol",
           "Readout", "Source", "TrainingConfig", "cli_command", "field_value"]
