"""Codebook refinement from inferred traces (paper section 3.2): instruction refinement, critique
extraction, embeddings, clustering, the critique map, rubric refinement, and measured comparison
of codebook versions.

The names below are imported on first use (PEP 562): scikit-learn, model2vec and onnxruntime load
only when clustering or embedding runs, not when a page or the CLI merely imports the package.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Clustering": "cluster", "choose_k": "cluster", "cluster_level": "cluster",
    "MapPoint": "critiques", "critique_jobs": "critiques", "map_points": "critiques", "parse_critiques": "critiques",
    "DEFAULT_EMBEDDER": "embed", "EMBEDDED": "embed", "embed_texts": "embed", "embedded_model_dir": "embed",
    "BadAnswer": "llm", "RefinementError": "llm",
    "project_2d": "project2d",
    "MODES": "settings", "ORIGINS": "settings", "RefineSettings": "settings",
    "TraceRow": "traces", "TraceSet": "traces", "TraceSourceError": "traces", "load_trace_set": "traces",
    "select_per_level": "traces",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'judgeeye.refine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"judgeeye.refine.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
