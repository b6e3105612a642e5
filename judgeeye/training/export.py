"""Trained adapters on disk: the adapter with its config, data version and metrics; merging.

An adapter folder is a PEFT adapter (``adapter_config.json`` + weights) plus the tokenizer and
``judgeeye.json`` (how it was trained: the run's config, base model, codebook version, data
version, best validation τ, test metrics). It is usable at once as a rater:
``EngineConfig(model=<base>, adapter=<folder>)``. :func:`merge_and_export` folds the LoRA weights
into the base and writes a plain model folder (``EngineConfig(model=<folder>)``, or any tool that
reads Hugging Face checkpoints).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

META_FILE = "judgeeye.json"


def read_metadata(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_metadata(folder: str | Path, **values: Any) -> dict[str, Any]:
    """Merge ``values`` into the folder's ``judgeeye.json``; returns the whole record."""
    meta = read_metadata(folder)
    meta.update(values)
    meta["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    Path(folder, META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    return meta


def install_adapter(source: str | Path, target: str | Path, **metadata: Any) -> Path:
    """Copy a saved adapter (e.g. the best checkpoint) to the run's adapter folder, with metadata."""
    source, target = Path(source), Path(target)
    if not (source / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no PEFT adapter (adapter_config.json) in {source}")
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    write_metadata(target, **metadata)
    return target


def save_adapter(model: Any, tokenizer: Any, target: str | Path, **metadata: Any) -> Path:
    """Save a PEFT model's adapter (not the base weights), its tokenizer and the metadata."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    write_metadata(target, **metadata)
    return target


def merge_and_export(adapter_dir: str | Path, out_dir: str | Path, *, base_model: str | None = None,
                     dtype: str = "auto") -> Path:
    """Fold the adapter into its base model and save a plain model folder at ``out_dir``.

    ``base_model`` defaults to the one recorded in the adapter's ``judgeeye.json``.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from judgeeye.training.trainer import base_location

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no PEFT adapter (adapter_config.json) in {adapter_dir}")
    meta = read_metadata(adapter_dir)
    base = base_model or meta.get("base_model")
    if not base:
        raise ValueError(f"{adapter_dir} does not say its base model; pass base_model")
    names = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    model = AutoModelForCausalLM.from_pretrained(base_location(base), dtype=names[dtype])
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir))
    AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(str(out_dir))
    (out_dir / META_FILE).write_text(json.dumps({**meta, "merged_from": str(adapter_dir), "base_model": base},
                                                indent=2, default=str))
    return out_dir


__all__ = ["META_FILE", "install_adapter", "merge_and_export", "read_metadata", "save_adapter", "write_metadata"]
