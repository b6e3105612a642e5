"""k-means over one rating level's critique embeddings, and its representatives.

Not every critique is typical of its level (a good story may still have a flaw), so the critiques
of a level are clustered and the ones nearest each centroid (highest cosine similarity) stand for
the cluster (paper section 3.2). The number of clusters is given, or chosen by the silhouette
score over 2..k_max, computed on a seeded sample of at most :data:`SILHOUETTE_SAMPLE` points
(scikit-learn's ``sample_size``; the score is quadratic in the points). ``algorithm`` picks
scikit-learn's KMeans (the default) or MiniBatchKMeans; ``bench/critique_clustering.py``
measures both on real critiques (speed, and agreement with KMeans' clusters).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

#: silhouette on at most this many points (it is quadratic in n)
SILHOUETTE_SAMPLE = 1000
ALGORITHMS = ("kmeans", "minibatch")


@dataclass
class Cluster:
    index: int
    members: list[int]
    #: members nearest the centroid, most similar first
    representatives: list[int]
    #: cosine similarity of each representative to the centroid
    similarity: list[float]

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass
class Clustering:
    labels: np.ndarray
    clusters: list[Cluster]
    #: "given", "silhouette", or "too few points" (one cluster)
    chosen_by: str
    silhouette: float | None = None
    #: silhouette score of every k tried
    scores: dict[int, float] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.clusters)


def _kmeans(x: np.ndarray, k: int, seed: int, algorithm: str = "kmeans") -> np.ndarray:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown clustering {algorithm!r}; choose from {', '.join(ALGORITHMS)}")
    # one thread (OpenMP and BLAS): a level's few thousand points are too few to share, and
    # threads that wait on each other at every iteration made the search 4-15x slower on a busy
    # 2-core machine
    with threadpool_limits(limits=1):
        if algorithm == "minibatch":
            return MiniBatchKMeans(n_clusters=k, n_init=3, batch_size=1024, random_state=seed).fit_predict(x)
        return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)


def _silhouette(x: np.ndarray, labels: np.ndarray, seed: int) -> float:
    sample = SILHOUETTE_SAMPLE if len(x) > SILHOUETTE_SAMPLE else None
    with threadpool_limits(limits=1):
        return float(silhouette_score(x, labels, metric="cosine", sample_size=sample, random_state=seed))


def choose_k(x: np.ndarray, *, k_max: int = 8, seed: int = 0,
             algorithm: str = "kmeans") -> tuple[int, dict[int, float], np.ndarray | None]:
    """The k in 2..k_max with the best silhouette (k=1 when the points allow no split)."""
    distinct = len(np.unique(np.round(x, 6), axis=0))
    upper = min(k_max, distinct, len(x) - 1)
    scores: dict[int, float] = {}
    best: tuple[float, int, np.ndarray] | None = None
    for k in range(2, upper + 1):
        labels = _kmeans(x, k, seed, algorithm)
        if len(set(labels.tolist())) < 2:
            continue
        scores[k] = _silhouette(x, labels, seed)
        if best is None or scores[k] > best[0]:
            best = (scores[k], k, labels)
    if best is None:
        return 1, scores, None
    return best[1], scores, best[2]


def representatives(x: np.ndarray, labels: np.ndarray, *, per_cluster: int = 1) -> list[Cluster]:
    """Each cluster's members and the ``per_cluster`` members most similar to its centroid."""
    clusters = []
    for index in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == index)
        centroid = x[members].mean(axis=0)
        norm = float(np.linalg.norm(centroid))
        sims = x[members] @ (centroid / norm if norm > 0 else centroid)
        order = np.argsort(-sims, kind="stable")[:per_cluster]
        clusters.append(Cluster(int(index), members.tolist(), members[order].tolist(),
                                [float(s) for s in sims[order]]))
    return clusters


def cluster_level(x: np.ndarray, k: int | None = None, *, k_max: int = 8, per_cluster: int = 1,
                  seed: int = 0, algorithm: str = "kmeans") -> Clustering:
    """Cluster one level's unit vectors: k given (clipped to the points), or by silhouette."""
    n = len(x)
    if n == 0:
        return Clustering(np.zeros(0, dtype=int), [], "too few points")
    if per_cluster < 1:
        raise ValueError(f"representatives per cluster must be at least 1, got {per_cluster}")
    scores: dict[int, float] = {}
    if k is not None:
        if k < 1:
            raise ValueError(f"the number of clusters must be at least 1, got {k}")
        distinct = len(np.unique(np.round(x, 6), axis=0))
        k_used = min(k, n, distinct)
        labels = _kmeans(x, k_used, seed, algorithm) if k_used > 1 else np.zeros(n, dtype=int)
        chosen = "given" if k_used == k else f"given {k}, clipped to {k_used} distinct points"
    else:
        k_used, scores, found = choose_k(x, k_max=k_max, seed=seed, algorithm=algorithm)
        labels = found if found is not None else np.zeros(n, dtype=int)
        chosen = "silhouette" if found is not None else "too few points"
    labels = np.asarray(labels, dtype=int)
    sil = None
    if len(set(labels.tolist())) > 1 and len(set(labels.tolist())) < n:
        sil = scores.get(k_used) if k_used in scores else _silhouette(x, labels, seed)
    return Clustering(labels, representatives(x, labels, per_cluster=per_cluster), chosen, sil, scores)
