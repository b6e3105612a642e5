"""2-D coordinates of critique embeddings for the critique map.

Computed once, in the refinement job, and stored (critique x/y plus a ``critique_map`` row): no
projection ever runs in a page request. The embeddings are first reduced to at most
:data:`PCA_COMPONENTS` dimensions with PCA (most of the neighbourhood structure, a fraction of
the cost), then laid out by UMAP when umap-learn is installed (its first call compiles with
numba for minutes, which is why it never runs in the UI), else openTSNE (FFT-accelerated
t-SNE), else scikit-learn's t-SNE. Tiny sets (fewer points than a neighbourhood) get PCA.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from judgeeye.refine.embed import cpu_threads

METHODS = ("auto", "umap", "tsne", "pca")
#: the embeddings are reduced to this many PCA components before t-SNE / UMAP
PCA_COMPONENTS = 50
#: openTSNE's iterations (early exaggeration, then the rest): half its defaults (250, 500), half
#: its time; a map to browse critiques by, not a figure to publish
TSNE_ITERATIONS = (125, 250)


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def opentsne_available() -> bool:
    return importlib.util.find_spec("openTSNE") is not None


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


def reduce_pca(x: np.ndarray, components: int, seed: int = 0) -> np.ndarray:
    """At most ``components`` principal components (the input when it is already that small)."""
    from sklearn.decomposition import PCA

    n_comp = min(components, x.shape[0], x.shape[1])
    if n_comp >= x.shape[1]:
        return np.asarray(x, dtype=np.float64)
    return PCA(n_components=n_comp, random_state=seed).fit_transform(x)


def _pca_2d(x: np.ndarray, seed: int) -> np.ndarray:
    out = reduce_pca(x, 2, seed)
    if out.shape[1] < 2:
        out = np.hstack([out, np.zeros((len(out), 2 - out.shape[1]))])
    return out


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    n = len(x)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    if opentsne_available():
        from openTSNE import TSNE

        early, rest = TSNE_ITERATIONS
        # euclidean on PCA components of unit vectors: the cosine distances of the embeddings
        # one thread for small maps: syncing threads each iteration costs more than it saves
        tsne = TSNE(n_components=2, perplexity=perplexity, metric="euclidean", random_state=seed,
                    n_jobs=cpu_threads() if n > 1000 else 1,
                    early_exaggeration_iter=early, n_iter=rest,
                    negative_gradient_method="fft" if n > 1000 else "bh", verbose=False)
        return np.asarray(tsne.fit(x), dtype=float)
    from sklearn.manifold import TSNE as SkTSNE

    return np.asarray(SkTSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x),
                      dtype=float)


def project_2d(x: np.ndarray, method: str = "auto", *, seed: int = 0) -> tuple[np.ndarray, str]:
    """(n, 2) coordinates and the method actually used."""
    n = len(x)
    used = resolve_method(method, n)
    if n == 0:
        return np.zeros((0, 2)), used
    if n == 1:
        return np.zeros((1, 2)), used
    if used == "pca":
        return _pca_2d(x, seed), used
    reduced = reduce_pca(x, PCA_COMPONENTS, seed)
    if used == "umap":
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed)
        return np.asarray(reducer.fit_transform(reduced), dtype=float), used
    return _tsne(reduced, seed), used
