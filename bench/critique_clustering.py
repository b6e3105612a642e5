"""Clustering 5,000 critiques on the CPU: embed (all-MiniLM-L6-v2), k-means per rating level with
k chosen by silhouette, 2-D projection for the critique map; stage by stage, with medians.

Side by side in one run: the projections (PCA, t-SNE, UMAP when umap-learn is installed), the
silhouette search against a fixed k, and the whole store-backed step the refinement job runs
(``judgeeye.refine.representatives.group_critiques``: read, embed, cluster, project, write back).

    .venv/bin/python bench/critique_clustering.py --critiques 5000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SUBJECTS = ["The plot", "The main character", "The setting", "The dialogue", "The ending", "The opening",
            "The pacing", "The world-building", "The central theme", "The narrator", "The conflict",
            "The supporting cast", "The twist", "The imagery", "The structure", "The backstory", "The tone",
            "The humour", "The symbolism", "The climax", "The point of view", "The description"]
PREDICATES = {
    1: ["is missing entirely", "does not exist in any form", "is absent", "never appears"],
    2: ["is thin and undeveloped", "is mentioned but left flat", "is predictable", "is barely sketched"],
    3: ["is introduced but lacks depth", "shows some promise but stays shallow", "is uneven",
        "is present but loosely connected"],
    4: ["is well developed with minor gaps", "is mostly convincing", "adds real depth", "is clear and purposeful"],
    5: ["is rich and layered", "is masterfully woven into everything", "is original and fully realised",
        "gives the story remarkable depth"],
}
QUALIFIERS = ["", " throughout", " in the middle section", " for a story of this length", " at the start",
              " by the end", " compared with the prompt", " in most scenes", " despite the short length",
              " from the first line", " in the final paragraph", " overall"]


def critiques(n: int, seed: int = 0) -> list[tuple[int, str]]:
    """``n`` distinct (level, sentence) pairs, levels spread evenly."""
    import random

    rng = random.Random(seed)
    pool = [(lv, f"{s} {p}{q}.") for lv, ps in PREDICATES.items() for s in SUBJECTS for p in ps for q in QUALIFIERS]
    if n > len(pool):
        raise SystemExit(f"at most {len(pool)} distinct critiques; asked for {n}")
    rng.shuffle(pool)
    return pool[:n]


def timed(name: str, fn, repeats: int):  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    print(f"  {name}: " + ", ".join(f"{t:.2f}" for t in times) + " s", flush=True)
    return statistics.median(times), times, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--critiques", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--k-max", type=int, default=8)
    ap.add_argument("--fixed-k", type=int, default=4)
    ap.add_argument("--store-repeats", type=int, default=1, help="repeats of the store-backed step (slow)")
    args = ap.parse_args()
    os.environ["JUDGEEYE_DATA_DIR"] = tempfile.mkdtemp(prefix="je-bench-")
    os.environ.pop("JUDGEEYE_DB", None)

    import numpy as np
    import torch

    from judgeeye.refine.cluster import cluster_level
    from judgeeye.refine.embed import embed_texts, load_embedder
    from judgeeye.refine.project2d import project_2d, umap_available

    data = critiques(args.critiques)
    texts = [t for _, t in data]
    levels = np.array([lv for lv, _ in data])
    print(f"{len(texts)} critiques, {len(set(levels.tolist()))} levels; torch threads {torch.get_num_threads()}, "
          f"CPUs {os.cpu_count()}; repeats {args.repeats} (medians)")
    load_s, _, _ = timed("load embedder", lambda: load_embedder(), 1)
    print(f"load embedder: {load_s:.2f} s (once)")
    results: dict[str, float] = {}

    results["embed"], _, x = timed("embed", lambda: embed_texts(texts), args.repeats)

    def cluster_all(k: int | None) -> list[int]:
        return [cluster_level(x[levels == lv], k, k_max=args.k_max).k for lv in sorted(set(levels.tolist()))]

    results["k-means, k by silhouette"], _, ks = timed("silhouette", lambda: cluster_all(None), args.repeats)
    results[f"k-means, k={args.fixed_k}"], _, _ = timed("fixed k", lambda: cluster_all(args.fixed_k), args.repeats)
    methods = ["pca", "tsne"] + (["umap"] if umap_available() else [])
    for method in methods:
        results[f"projection {method}"], _, _ = timed(method, lambda m=method: project_2d(x, m)[0], args.repeats)

    # the job's whole step on a store: read, embed, cluster, project, write back
    from judgeeye.refine.representatives import group_critiques
    from judgeeye.store import Critique, Job, session_scope

    def store_step() -> str:
        with session_scope() as s:
            job = Job(kind="refine", params={}, status="running")
            s.add(job)
            s.flush()
            s.add_all([Critique(job_id=job.id, level=int(lv), text=t) for lv, t in data])
            job_id = job.id
        return group_critiques(job_id, k_max=args.k_max).projection

    results["store step (group_critiques)"], _, used = timed("store step", store_step, args.store_repeats)

    print(f"\nk chosen per level by silhouette (2..{args.k_max}): {ks}")
    width = max(map(len, results))
    print(f"\n{'stage':<{width}}  median s  critiques/s")
    for name, secs in results.items():
        print(f"{name:<{width}}  {secs:8.2f}  {len(texts) / secs:11.0f}")
    best = min((results[f"projection {m}"], m) for m in methods)
    auto = "umap" if umap_available() else "tsne"
    pipeline = results["embed"] + results["k-means, k by silhouette"] + results[f"projection {auto}"]
    print(f"\nembed + k-means (silhouette) + projection ({auto}, the default): {pipeline:.2f} s")
    print(f"store step with projection {used}: {results['store step (group_critiques)']:.2f} s")
    print(f"silhouette search / fixed k: {results['k-means, k by silhouette'] / results[f'k-means, k={args.fixed_k}']:.1f}x; "
          f"{auto} / {best[1]} projection: {results[f'projection {auto}'] / best[0]:.1f}x")


if __name__ == "__main__":
    main()
