"""From a refinement's stored critiques to its representative critiques and the map.

Embeds the critiques that have no embedding yet, clusters each rating level (k-means), marks the
critiques nearest each centroid as representatives and places every critique on a 2-D map; all
of it is written back to the critique rows in one transaction, with a ``critique_map`` row that
records how the map was made. The Refine page only reads them: no embedding, clustering or
projection ever runs in a page request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import delete, select, update

from judgeeye.refine.cluster import cluster_level
from judgeeye.refine.embed import DEFAULT_EMBEDDER, embed_texts, from_blobs, to_blob
from judgeeye.refine.project2d import PCA_COMPONENTS, project_2d
from judgeeye.store import Critique, CritiqueMap, session_scope


@dataclass
class ClusterInfo:
    cluster: int
    size: int
    representative_ids: list[int]
    representatives: list[str]
    similarity: list[float]


@dataclass
class LevelGroups:
    level: int
    n: int
    k: int
    chosen_by: str
    silhouette: float | None
    scores: dict[int, float]
    clusters: list[ClusterInfo] = field(default_factory=list)


@dataclass
class Grouping:
    levels: dict[int, LevelGroups]
    projection: str
    embedder: str
    critique_ids: list[int]
    #: seconds per stage: embed, cluster, project
    seconds: dict[str, float] = field(default_factory=dict)

    def representative_critiques(self) -> list[tuple[int, str]]:
        """(level, text) for the rubric prompt: by level, larger clusters first."""
        out = []
        for level in sorted(self.levels):
            for c in sorted(self.levels[level].clusters, key=lambda c: (-c.size, c.cluster)):
                out += [(level, text) for text in c.representatives]
        return out

    def representative_ids(self) -> list[int]:
        return [i for lv in self.levels.values() for c in lv.clusters for i in c.representative_ids]

    def to_dict(self) -> dict[str, Any]:
        return {"projection": self.projection, "embedder": self.embedder, "seconds": self.seconds,
                "levels": {str(k): {**asdict(v), "scores": {str(s): f for s, f in v.scores.items()}}
                           for k, v in sorted(self.levels.items())}}


def group_critiques(job_id: int, *, embedder: str = DEFAULT_EMBEDDER, clusters: int | None = None, k_max: int = 8,
                    per_cluster: int = 1, projection: str = "auto", seed: int = 0, algorithm: str = "kmeans",
                    log: Callable[[str], None] | None = None) -> Grouping:
    """Embed, cluster per level, pick representatives and project the job's critiques; store it all."""
    with session_scope() as session:
        rows = session.execute(select(Critique.id, Critique.level, Critique.text, Critique.embedding)
                               .where(Critique.job_id == job_id).order_by(Critique.id)).all()
    if not rows:
        raise ValueError(f"refinement job {job_id} has no critiques to cluster")
    ids = [r[0] for r in rows]
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    missing = [i for i, r in enumerate(rows) if r[3] is None]
    stored = {i: r[3] for i, r in enumerate(rows) if r[3] is not None}
    if missing:
        vectors = embed_texts([rows[i][2] for i in missing], embedder, log_line=log)
        with session_scope() as session:
            session.execute(update(Critique), [{"id": ids[i], "embedding": to_blob(v)} for i, v in zip(missing, vectors)])
        stored.update({i: to_blob(v) for i, v in zip(missing, vectors)})
        if log:
            log(f"embedded {len(missing)} critiques with {embedder}")
    x = from_blobs([stored[i] for i in range(len(rows))])
    seconds["embed"] = time.perf_counter() - started
    started = time.perf_counter()
    levels = np.array([r[1] for r in rows])
    cluster_of = np.zeros(len(rows), dtype=int)
    rep = np.zeros(len(rows), dtype=bool)
    out: dict[int, LevelGroups] = {}
    for level in sorted(set(levels.tolist())):
        where = np.flatnonzero(levels == level)
        result = cluster_level(x[where], clusters, k_max=k_max, per_cluster=per_cluster, seed=seed,
                               algorithm=algorithm)
        cluster_of[where] = result.labels
        groups = LevelGroups(int(level), len(where), result.k, result.chosen_by, result.silhouette, result.scores)
        for c in result.clusters:
            members = where[c.representatives]
            rep[members] = True
            groups.clusters.append(ClusterInfo(c.index, c.size, [ids[m] for m in members],
                                               [rows[m][2] for m in members], c.similarity))
        out[int(level)] = groups
        if log:
            log(f"level {level}: {len(where)} critiques, k={result.k} ({result.chosen_by}"
                + (f", silhouette {result.silhouette:.3f}" if result.silhouette is not None else "") + ")")
    seconds["cluster"] = time.perf_counter() - started
    started = time.perf_counter()
    coords, used = project_2d(x, projection, seed=seed)
    seconds["project"] = time.perf_counter() - started
    if log:
        log(f"critique map: {used} of {len(rows)} critiques; "
            + ", ".join(f"{stage} {secs:.1f} s" for stage, secs in seconds.items()))
    with session_scope() as session:
        session.execute(update(Critique), [
            {"id": ids[i], "cluster": int(cluster_of[i]), "representative": bool(rep[i]),
             "x": float(coords[i, 0]), "y": float(coords[i, 1])} for i in range(len(rows))])
        session.execute(delete(CritiqueMap).where(CritiqueMap.job_id == job_id))
        session.add(CritiqueMap(job_id=job_id, embedder=embedder, dimensions=int(x.shape[1]), method=used,
                                pca_components=min(PCA_COMPONENTS, x.shape[1]) if used in ("tsne", "umap") else None,
                                points=len(rows), seconds={k: round(v, 3) for k, v in seconds.items()}))
    return Grouping(out, used, embedder, ids, seconds)
