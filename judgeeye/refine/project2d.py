"""2-D coordinates of critique embeddings for the critique map.

UMAP when umap-learn is installed; otherwise t-SNE (scikit-learn), with PCA for tiny sets
(t-SNE needs more points than its perplexity) or when asked.
"""

from __future__ import annotations

import importlib.util

import numpy as np

METHODS = ("auto", "umap", "tsne", "pca")


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def resolve_method(method: str, n: int) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}; choose from {', '.join(METHODS)}")
    if n < 6:
        return "pca"  # too few points for a neighbourhood method
    if method == "auto":
        return "umap" if umap_available() else "tsne"
    if method == "umap" and not umap_available():
        raise ValueError("the UMAP projection needs umap-learn (pip install umap-learn); use tsne or pca")
    return method


def _pca(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    n_comp = min(2, x.shape[0], x.shape[1])
    out = PCA(n_components=n_comp, random_state=seed).fit_transform(x)
    if out.shape[1] < 2:
        out = np.hstack([out, np.zeros((len(out), 2 - out.shape[1]))])
    return out


def project_2d(x: np.ndarray, method: str = "auto", *, seed: int = 0) -> tuple[np.ndarray, str]:
    """(n, 2) coordinates and the method actually used."""
    n = len(x)
    used = resolve_method(method, n)
    if n == 0:
        return np.zeros((0, 2)), used
    if n == 1:
        return np.zeros((1, 2)), used
    if used == "pca":
        return _pca(x, seed), used
    if used == "umap":
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), metric="cosine", random_state=seed)
        return np.asarray(reducer.fit_transform(x), dtype=float), used
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    reduced = PCA(n_components=min(50, n, x.shape[1]), random_state=seed).fit_transform(x) if x.shape[1] > 50 else x
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return np.asarray(tsne.fit_transform(reduced), dtype=float), used
