"""What a fine-tuning run does: data, base model, LoRA, optimiser, validation, evaluation.

Defaults follow the paper (Zhang et al., Appendix C: LoRA r=16, α=32, AdamW, lr 5e-5, warmup
100 steps, weight decay 0.01, batch size 128; early stopping with a patience of 100 steps on
validation Kendall τ) and TRACT (Chiang et al.: λ = 1, CoT-RAIL read-out). The config is stored
with the run (``TrainingRun.config``) and with the adapter, so a resumed run trains exactly as it
started and an adapter says how it was made.
"""

from __future__ import annotations

import shlex
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Mode = Literal["sft", "labels_only", "tract"]
Source = Literal["auto", "review", "candidates"]
Readout = Literal["auto", "parsed", "argmax", "expected"]
MODES: tuple[str, ...] = ("sft", "labels_only", "tract")


class TrainingConfig(BaseModel):
    """One training run's settings (see the module docstring for where the defaults come from)."""

    model_config = ConfigDict(extra="forbid")

    # ---- data
    #: "sft": trace + final rating line; "labels_only": the rating line only (paper Table 4);
    #: "tract": CoT-RAFT loss, two stages (TRACT)
    mode: Mode = "sft"
    #: the reasoning dataset: the review export, accepted candidates of a sampling run, or
    #: "auto" (the review export when it has rows, else the candidates)
    source: Source = "auto"
    #: candidates source: this sampling run (default: the project's latest with accepted traces)
    sampling_run: int | None = None
    #: codebook version the prompts are rendered with (default: the one most training rows used)
    codebook_version: int | None = None
    #: train on the first N training rows only (smoke tests, quick looks)
    train_limit: int | None = Field(None, ge=1)
    #: prompt + completion tokens; longer rows are reported and left out, never cut
    max_length: int = Field(4096, ge=16)
    #: pack several rows into one sequence of max_length (TRL "bfd" packing, padding-free)
    packing: bool = False
    #: wrap the trace in <think>…</think>: "auto" when the chat template knows <think>
    think_tags: Literal["auto", "on", "off"] = "auto"

    # ---- model
    #: "embedded", a Hugging Face id, a local model directory or a .gguf file
    base_model: str = "embedded"
    device: str = "auto"
    #: "auto": bf16 on GPU, fp32 on CPU
    dtype: str = "auto"
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    #: "all-linear" (every linear layer but the output head) or a comma-separated list
    target_modules: str = "all-linear"
    gradient_checkpointing: bool = False

    # ---- optimiser (AdamW)
    learning_rate: float = Field(5e-5, gt=0)
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    lr_scheduler: str = "linear"
    epochs: float = Field(3.0, gt=0)
    #: stop after this many optimiser steps (overrides epochs when set)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(16, ge=1)
    seed: int = 42

    # ---- validation and early stopping
    #: rate the validation split every this many steps
    eval_steps: int = Field(25, ge=1)
    #: stop when validation τ has not improved for this many steps
    patience: int = Field(100, ge=1)
    val_limit: int | None = Field(None, ge=1)
    val_max_tokens: int = Field(512, ge=0)
    #: "auto": the expected score (CoT-RAIL) for TRACT, else the written rating with the
    #: argmax read-out for completions that did not write one
    val_readout: Readout = "auto"
    val_batch_size: int = Field(8, ge=1)

    # ---- TRACT
    lambda_raft: float = Field(1.0, ge=0)
    #: stage 2: tokens of the self-generated trace per training item
    self_trace_max_tokens: int = Field(1024, ge=1)
    self_trace_temperature: float = Field(1.0, ge=0)

    # ---- test evaluation (adapter against the base model)
    evaluate_test: bool = True
    test_limit: int | None = Field(None, ge=1)
    test_max_tokens: int = Field(1024, ge=1)
    test_readout: Readout = "auto"
    #: the paper rates with temperature 1.0, top-p 0.95
    test_temperature: float = Field(1.0, ge=0)
    test_top_p: float = Field(0.95, gt=0, le=1)
    n_boot: int = Field(1000, ge=100)

    @model_validator(mode="after")
    def _check(self) -> TrainingConfig:
        if self.mode == "labels_only" and self.think_tags == "on":
            raise ValueError("labels_only trains on the rating alone; think_tags 'on' makes no sense there")
        if not self.target_modules.strip():
            raise ValueError("target_modules is empty; use 'all-linear' or names like q_proj,v_proj")
        return self

    # ------------------------------------------------------------------ helpers
    def targets(self) -> str | list[str]:
        text = self.target_modules.strip()
        return text if text == "all-linear" else [t.strip() for t in text.split(",") if t.strip()]

    def readout_for(self, which: Readout) -> str:
        """The concrete read-out: "auto" is CoT-RAIL's expected score for TRACT, else "parsed"."""
        if which != "auto":
            return which
        return "expected" if self.mode == "tract" else "parsed"

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum


#: CLI option name -> config field, for the options `judgeeye train` takes (and the page shows)
CLI_OPTIONS: dict[str, str] = {
    "--base": "base_model", "--mode": "mode", "--source": "source", "--sampling-run": "sampling_run",
    "--codebook": "codebook_version", "--train-limit": "train_limit", "--max-length": "max_length",
    "--lora-r": "lora_r", "--lora-alpha": "lora_alpha", "--lora-dropout": "lora_dropout",
    "--target-modules": "target_modules", "--lr": "learning_rate", "--warmup-steps": "warmup_steps",
    "--weight-decay": "weight_decay", "--epochs": "epochs", "--max-steps": "max_steps",
    "--batch-size": "batch_size", "--grad-accum": "grad_accum", "--seed": "seed",
    "--eval-steps": "eval_steps", "--patience": "patience", "--val-limit": "val_limit",
    "--val-max-tokens": "val_max_tokens", "--val-readout": "val_readout",
    "--lambda": "lambda_raft", "--self-trace-max-tokens": "self_trace_max_tokens",
    "--test-limit": "test_limit", "--test-max-tokens": "test_max_tokens",
    "--test-readout": "test_readout", "--device": "device", "--dtype": "dtype",
}
#: boolean fields and their CLI flags (on, off)
CLI_FLAGS: dict[str, tuple[str, str]] = {
    "packing": ("--packing", "--no-packing"),
    "gradient_checkpointing": ("--gradient-checkpointing", "--no-gradient-checkpointing"),
    "evaluate_test": ("--test-eval", "--no-test-eval"),
}


def cli_command(project: str, config: TrainingConfig) -> str:
    """The `judgeeye train` command that starts the same run (only options off their defaults)."""
    default = TrainingConfig()
    args = ["judgeeye", "train", "--project", project]
    for option, name in CLI_OPTIONS.items():
        value = getattr(config, name)
        if value == getattr(default, name) or value is None:
            continue
        if name == "mode":
            value = str(value).replace("_", "-")
        args += [option, f"{value:g}" if isinstance(value, float) else str(value)]
    for name, (on, off) in CLI_FLAGS.items():
        value = getattr(config, name)
        if value != getattr(default, name):
            args.append(on if value else off)
    return shlex.join(args)


__all__ = ["CLI_FLAGS", "CLI_OPTIONS", "MODES", "Mode", "Readout", "Source", "TrainingConfig", "cli_command"]
