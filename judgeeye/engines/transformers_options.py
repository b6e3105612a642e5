"""The transformers engine's options (documented in :mod:`judgeeye.engines.transformers_engine`)
and the one accessor that reads them."""

from __future__ import annotations

from typing import Any

from judgeeye.engines.base import EngineConfig

#: the engine's own options; any other key of ``config.extra`` goes to ``model.generate``
ENGINE_OPTIONS = ("fast_decode", "compile", "cuda_graphs", "fuse_projections", "decode_attention",
                  "compile_mode", "sync_every", "max_graphs", "merge_adapter", "keep_loaded")


def engine_option(config: EngineConfig, name: str, default: Any = None) -> Any:
    """One option of :data:`ENGINE_OPTIONS`. Today they live in ``config.extra``; this is the only
    place that reads them, so typed per-kind config fields change this line and nothing else."""
    return config.extra.get(name, default)


def with_options(config: EngineConfig, **options: Any) -> EngineConfig:
    """A copy of ``config`` with these options set (the writing side of :func:`engine_option`)."""
    return config.model_copy(update={"extra": {**config.extra, **options}}) if options else config


def generate_kwargs(config: EngineConfig) -> dict[str, Any]:
    """What ``config.extra`` holds besides the engine's options: keyword arguments for
    ``model.generate`` on the plain path."""
    return {k: v for k, v in config.extra.items() if k not in ENGINE_OPTIONS}


__all__ = ["ENGINE_OPTIONS", "engine_option", "generate_kwargs", "with_options"]
