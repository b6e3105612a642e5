"""Building the trainer: the base model, LoRA (PEFT) and TRL's SFTTrainer (or TRACT's subclass).

Any base the ``transformers`` engine loads works, the embedded SmolLM2 included (its GGUF is
converted once and cached by :mod:`judgeeye.engines.model_loader`). Precision: bf16 on a GPU that
supports it, fp32 on the CPU. The datasets are prepared here, not by TRL
(:func:`prepare_dataset`): tokenized by :mod:`judgeeye.training.data` (``input_ids``, ``labels``
with -100 on the prompt, and for TRACT the ``rating_mask``), packed with TRL's own
``pack_dataset`` when asked. So the number of training sequences is known before the Trainer is
built, and the plan (:mod:`judgeeye.training.plan`) sets its steps, warm-up and checkpoints.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from judgeeye.engines.base import EngineError
from judgeeye.training.config import TrainingConfig
from judgeeye.training.plan import StagePlan

log = logging.getLogger(__name__)


def base_location(model: str) -> str:
    """The checkpoint folder or hub id the base model loads from (a GGUF is converted once)."""
    from judgeeye.engines.model_loader import ensure_gguf_converted, resolve_source

    source = resolve_source(model)
    if source.kind == "gguf":
        return str(ensure_gguf_converted(source.location))
    return source.location


def load_base(config: TrainingConfig) -> tuple[Any, Any, Any]:
    """(model, tokenizer, device) for training: on its device, bf16 on GPU / fp32 on CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from judgeeye.engines.model_loader import resolve_device, resolve_dtype

    location = base_location(config.base_model)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    try:
        model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(location)
    except OSError as exc:
        raise EngineError(f"could not load base model {config.base_model!r}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model.config.use_cache = False
    return model.to(device), tokenizer, device


def lora_config(config: TrainingConfig):  # type: ignore[no-untyped-def]
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.targets(), bias="none", task_type="CAUSAL_LM")


def prepare_dataset(config: TrainingConfig, examples: list[Any]):  # type: ignore[no-untyped-def]
    """The training dataset as the Trainer gets it: one row per example, or best-fit-decreasing
    packed sequences of ``max_length`` (TRL's ``pack_dataset``, which keeps every column aligned,
    the rating mask included, and adds ``seq_lengths``)."""
    from judgeeye.training.data import to_dataset

    dataset = to_dataset(examples, rating_mask=config.mode == "tract")
    if config.packing:
        from trl import pack_dataset

        dataset = pack_dataset(dataset, config.max_length, "bfd")
    return dataset


def sft_args(config: TrainingConfig, output_dir: Path, device: Any, plan: StagePlan):  # type: ignore[no-untyped-def]
    """TRL's SFTConfig for a stage of a run, with the plan's steps and warm-up. Validation is ours
    (a callback), so the Trainer's is off; a checkpoint is saved at every validation (resume after
    a crash or a stop)."""
    from trl import SFTConfig

    on_gpu = device.type == "cuda"
    import torch

    bf16 = bool(on_gpu and config.dtype in ("auto", "bf16", "bfloat16") and torch.cuda.is_bf16_supported())
    return SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        warmup_steps=plan.warmup_steps,
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.lr_scheduler,
        optim="adamw_torch",
        max_steps=plan.optimizer_steps,
        logging_steps=1,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=plan.eval_steps,
        save_total_limit=2,
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        bf16=bf16,
        fp16=False,
        use_cpu=not on_gpu,
        gradient_checkpointing=config.gradient_checkpointing,
        max_length=config.max_length,
        packing=config.packing,
        packing_strategy="bfd",
        dataset_kwargs={"skip_prepare_dataset": True},  # prepare_dataset did it
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=0,
        # TRACT's rating_mask is no model input; the Trainer must not drop it before the collator
        remove_unused_columns=config.mode != "tract",
    )


def build_trainer(config: TrainingConfig, model: Any, tokenizer: Any, train_dataset: Any, output_dir: Path,
                  device: Any, callbacks: list[Any], plan: StagePlan, *, rating: Any = None):  # type: ignore[no-untyped-def]
    """SFTTrainer with LoRA, or TRACT's CoT-RAFT trainer when ``config.mode == "tract"`` (its
    collator carries the rating mask; TRL refuses a custom collator when padding-free, so it wraps
    the one TRL builds)."""
    args = sft_args(config, output_dir, device, plan)
    kwargs: dict[str, Any] = dict(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer,
                                  peft_config=lora_config(config), callbacks=callbacks)
    if config.mode == "tract":
        from judgeeye.training.tract import RatingCollator, make_tract_trainer_class

        if rating is None:
            raise ValueError("TRACT needs the rating tokens")
        trainer = make_tract_trainer_class()(rating=rating, lam=config.lambda_raft, **kwargs)
        trainer.data_collator = RatingCollator(trainer.data_collator)
        return trainer
    from trl import SFTTrainer

    return SFTTrainer(**kwargs)


def latest_checkpoint(output_dir: Path) -> str | None:
    """The newest complete ``checkpoint-N`` folder (the Trainer's own resume point), if any."""
    found = []
    for path in Path(output_dir).glob("checkpoint-*"):
        try:
            step = int(path.name.split("-", 1)[1])
        except ValueError:
            continue
        try:  # written last by the Trainer: a checkpoint killed while being saved lacks it or has half of it
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        found.append((step, path))
    return str(max(found)[1]) if found else None


__all__ = ["base_location", "build_trainer", "latest_checkpoint", "load_base", "lora_config", "prepare_dataset",
           "sft_args"]
