"""Critique clustering on the CPU, stage by stage: embed, k-means per rating level with k chosen by
silhouette, 2-D projection for the critique map; then the whole store-backed step the refinement
job runs and the Refine page's map tab on what it stored. Medians of ``--repeats``.

Side by side in one run:

* **embedders**: the bundled all-MiniLM-L6-v2 in PyTorch (the reference), as ONNX int8
  (onnxruntime) and as static embeddings distilled with model2vec: speed, and how close each
  comes to the reference's clusters (adjusted Rand index and NMI per level at the reference's k,
  weighted by level size; the share of each critique's 10 nearest neighbours that are the
  reference's, and of the reference's representatives picked again);
* **clustering**: KMeans against MiniBatchKMeans (speed, agreement at the same k), and the
  silhouette on a sample of 1,000 points against all of them;
* **projection**: scikit-learn's t-SNE on all dimensions (the old map) against PCA to 50
  dimensions + openTSNE (UMAP too when umap-learn is installed);
* **total**: embed + cluster + project with the defaults, and ``group_critiques`` (read, embed,
  cluster, project, write back to a SQLite store), and the map tab rendered by AppTest.

Critiques are real when ``../shared/data/prometheus_tract`` is there: the sentences of GPT-4's
written feedback on MT-Bench and Vicuna-Bench answers, each at the score (1-5) that feedback gave;
else template sentences (``--source synthetic``). Wall and CPU seconds are printed (the CPU time
of this process, all its threads): on a shared machine the CPU time is the steadier figure.

    OMP_NUM_THREADS=2 .venv/bin/python bench/critique_clustering.py --critiques 5000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "prometheus_tract"

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


def synthetic_critiques(n: int, seed: int = 0) -> list[tuple[int, str]]:
    """``n`` distinct (level, sentence) pairs from templates, levels spread evenly."""
    rng = random.Random(seed)
    pool = [(lv, f"{s} {p}{q}.") for lv, ps in PREDICATES.items() for s in SUBJECTS for p in ps for q in QUALIFIERS]
    if n > len(pool):
        raise SystemExit(f"at most {len(pool)} distinct synthetic critiques; asked for {n}")
    rng.shuffle(pool)
    return pool[:n]


def real_critiques(n: int, seed: int = 0) -> list[tuple[int, str]]:
    """Sentences of GPT-4's feedback (MT-Bench, Vicuna-Bench), each at its feedback's score."""
    import re

    seen: set[str] = set()
    pool: list[tuple[int, str]] = []
    for name in ("mt_bench_eval.json", "vicuna_eval.json"):
        for row in json.loads((SHARED / name).read_text()):
            for score, feedback in zip(row["gpt4_score"], row["gpt4_feedback"]):
                for sentence in re.split(r"(?<=[.!?])\s+", feedback):
                    sentence = " ".join(sentence.split())
                    if len(sentence.split()) >= 5 and sentence.lower() not in seen:
                        seen.add(sentence.lower())
                        pool.append((int(score), sentence))
    random.Random(seed).shuffle(pool)
    if n > len(pool):
        raise SystemExit(f"only {len(pool)} distinct real critiques; asked for {n}")
    return pool[:n]


def timed(name: str, fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """(median wall s, median CPU s, last result); prints every repeat."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    print(f"  {name}: " + ", ".join(f"{w:.2f} s (CPU {c:.2f})" for w, c in zip(walls, cpus)), flush=True)
    return statistics.median(walls), statistics.median(cpus), out


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:  # noqa: C901 - one linear script
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--critiques", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--k-max", type=int, default=8)
    ap.add_argument("--source", choices=["auto", "real", "synthetic"], default="auto")
    ap.add_argument("--embedders", default="embedded,embedded-onnx,embedded-static",
                    help="the first is the reference the others are compared with")
    ap.add_argument("--skip-old", action="store_true", help="skip scikit-learn's t-SNE on all dimensions (slow)")
    ap.add_argument("--reference-repeats", type=int, default=1,
                    help="repeats of the reference embedder (the slow one; its median is the 'before')")
    ap.add_argument("--store-repeats", type=int, default=3)
    ap.add_argument("--page-repeats", type=int, default=5)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="je-bench-critiques-"))
    os.environ["JUDGEEYE_DATA_DIR"] = str(folder)
    os.environ["JUDGEEYE_DB"] = f"sqlite:///{folder / 'bench.db'}"

    import numpy as np
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from judgeeye.refine import cluster as clustering
    from judgeeye.refine.embed import DEFAULT_EMBEDDER, describe, embed_texts, ensure_built, load_embedder
    from judgeeye.refine.project2d import PCA_COMPONENTS, project_2d, reduce_pca, umap_available

    source = args.source if args.source != "auto" else ("real" if SHARED.is_dir() else "synthetic")
    data = (real_critiques if source == "real" else synthetic_critiques)(args.critiques)
    texts = [t for _, t in data]
    levels = np.array([lv for lv, _ in data])
    per_level = {int(lv): int((levels == lv).sum()) for lv in sorted(set(levels.tolist()))}
    print(f"{len(texts)} {source} critiques, per level {per_level}; CPUs {os.cpu_count()}, "
          f"OMP_NUM_THREADS {os.environ.get('OMP_NUM_THREADS', '-')}; repeats {args.repeats} (medians); "
          f"load average {load()}")
    rows: list[tuple[str, float, float]] = []

    # ------------------------------------------------------------------ embedders
    names = [n.strip() for n in args.embedders.split(",") if n.strip()]
    vectors: dict[str, np.ndarray] = {}
    embed_s: dict[str, tuple[float, float]] = {}
    for name in names:
        if name != "embedded":
            wall, cpu, _ = timed(f"build {name} (once, then cached)", lambda n=name: ensure_built(n), 1)
        wall, cpu, _ = timed(f"load {name}", lambda n=name: load_embedder(n), 1)
        repeats = args.reference_repeats if name == names[0] else args.repeats
        wall, cpu, vectors[name] = timed(f"embed {name}", lambda n=name: embed_texts(texts, n), repeats)
        embed_s[name] = (wall, cpu)
        rows.append((f"embed: {describe(name)}", wall, cpu))

    # ------------------------------------------------------------------ clustering
    def cluster_all(x: np.ndarray, algorithm: str = "kmeans", k: int | None = None) -> dict[int, Any]:
        return {lv: clustering.cluster_level(x[levels == lv], k, k_max=args.k_max, algorithm=algorithm)
                for lv in per_level}

    reference = names[0]
    x_ref = vectors[reference]
    for algorithm in clustering.ALGORITHMS:
        wall, cpu, result = timed(f"{algorithm}, k by silhouette", lambda a=algorithm: cluster_all(x_ref, a),
                                  args.repeats)
        rows.append((f"k-means per level, k by silhouette ({algorithm})", wall, cpu))
        if algorithm == "kmeans":
            ref_clusters = result
        else:
            mb_clusters = result
    ks = {lv: c.k for lv, c in ref_clusters.items()}
    print(f"\nk chosen per level by silhouette (2..{args.k_max}), {reference}: {ks}; "
          f"minibatch: { {lv: c.k for lv, c in mb_clusters.items()} }")
    # MiniBatchKMeans at the reference's k: the same partition?
    mb_fixed = {lv: clustering._kmeans(x_ref[levels == lv], ks[lv], 0, "minibatch") for lv in per_level}
    mb_ari = np.average([adjusted_rand_score(ref_clusters[lv].labels, mb_fixed[lv]) for lv in per_level],
                        weights=list(per_level.values()))
    # silhouette on a sample of 1,000 against all points (levels larger than the sample only)
    big = [lv for lv, n in per_level.items() if n > clustering.SILHOUETTE_SAMPLE]
    if big:
        saved = clustering.SILHOUETTE_SAMPLE
        clustering.SILHOUETTE_SAMPLE = 10**9
        full = timed("silhouette on all points", lambda: cluster_all(x_ref), 1)
        clustering.SILHOUETTE_SAMPLE = saved
        same_k = sum(full[2][lv].k == ks[lv] for lv in big)
        print(f"silhouette on {saved} sampled points chose the same k as on all points in {same_k}/{len(big)} "
              f"levels with more than {saved} critiques")

    # ------------------------------------------------------------------ quality against the reference
    def knn(x: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
        sims = x[queries] @ x.T
        sims[np.arange(len(queries)), queries] = -np.inf
        return np.argsort(-sims, axis=1)[:, :k]

    # the floor: k-means on the reference's own vectors from another seed agrees this well with itself
    reseeded = {lv: clustering.cluster_level(x_ref[levels == lv], ks[lv], seed=1) for lv in per_level}
    floor = (np.average([adjusted_rand_score(ref_clusters[lv].labels, reseeded[lv].labels) for lv in per_level],
                        weights=list(per_level.values())),
             np.average([normalized_mutual_info_score(ref_clusters[lv].labels, reseeded[lv].labels)
                         for lv in per_level], weights=list(per_level.values())))
    queries = np.random.default_rng(0).choice(len(texts), size=min(1000, len(texts)), replace=False)
    ref_knn = knn(x_ref, queries)
    ref_reps = {lv: {r for c in ref_clusters[lv].clusters for r in c.representatives} for lv in per_level}
    quality = {}
    for name in names[1:]:
        x = vectors[name]
        same_k = {lv: clustering.cluster_level(x[levels == lv], ks[lv]) for lv in per_level}
        weights = list(per_level.values())
        ari = np.average([adjusted_rand_score(ref_clusters[lv].labels, same_k[lv].labels) for lv in per_level],
                         weights=weights)
        nmi = np.average([normalized_mutual_info_score(ref_clusters[lv].labels, same_k[lv].labels)
                          for lv in per_level], weights=weights)
        overlap = np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(ref_knn, knn(x, queries))])
        reps = sum(len(ref_reps[lv] & {r for c in same_k[lv].clusters for r in c.representatives})
                   for lv in per_level) / sum(len(v) for v in ref_reps.values())
        own_k = {lv: clustering.cluster_level(x[levels == lv], k_max=args.k_max).k for lv in per_level}
        quality[name] = (ari, nmi, overlap, reps, own_k)

    # ------------------------------------------------------------------ projection
    x_def = vectors.get(DEFAULT_EMBEDDER, x_ref)
    pca_wall, pca_cpu, _ = timed(f"PCA to {PCA_COMPONENTS}", lambda: reduce_pca(x_def, PCA_COMPONENTS), args.repeats)
    rows.append((f"PCA to {PCA_COMPONENTS} dimensions (part of the next)", pca_wall, pca_cpu))
    methods = ["tsne"] + (["umap"] if umap_available() else [])
    proj: dict[str, tuple[float, float]] = {}
    for method in methods:
        wall, cpu, _ = timed(f"projection {method}", lambda m=method: project_2d(x_def, m), args.repeats)
        proj[method] = (wall, cpu)
        rows.append((f"projection: PCA {PCA_COMPONENTS} + {'openTSNE' if method == 'tsne' else 'UMAP'}", wall, cpu))
    if not args.skip_old:
        from sklearn.manifold import TSNE

        wall, cpu, _ = timed("old: scikit-learn t-SNE on all dimensions",
                             lambda: TSNE(2, perplexity=30, init="pca", random_state=0).fit_transform(x_def), 1)
        rows.append(("projection: scikit-learn t-SNE, all dimensions (before)", wall, cpu))

    # ------------------------------------------------------------------ the job's step on a store, and the page
    from judgeeye.auth import Actor
    from judgeeye.codebook import load_builtin
    from judgeeye.refine.representatives import group_critiques
    from judgeeye.store import Critique, Job, Project, session_scope

    with session_scope() as s:
        project = Project(name="bench", task="bench", dimension="quality", generation_type="answer",
                          scale_min=1, scale_max=5)
        s.add(project)
        s.flush()
        project_id = project.id
    from judgeeye.codebook import create_version

    with session_scope() as s:
        spec = load_builtin("hanna_complexity")
        create_version(s, project_id, spec.model_copy(update={"task": "bench", "dimension": "quality"}))

    def store_step() -> str:
        with session_scope() as s:
            job = Job(kind="refine", params={}, status="succeeded", project_id=project_id)
            s.add(job)
            s.flush()
            s.add_all([Critique(job_id=job.id, level=int(lv), text=t) for lv, t in data])
            job_id = job.id
        return group_critiques(job_id, k_max=args.k_max).projection

    store_wall, store_cpu, used = timed("store step (group_critiques)", store_step, args.store_repeats)
    rows.append((f"store step: read, embed, cluster, project ({used}), write", store_wall, store_cpu))

    from streamlit.testing.v1 import AppTest

    from judgeeye.store import Annotator

    with session_scope() as s:
        author = Annotator(name="bench-author", role="author", active=True)
        s.add(author)
        s.flush()
        user = {"id": author.id, "name": author.name, "role": author.role}

    def fresh(tab: str) -> AppTest:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
        at.session_state["judgeeye_user"] = user
        at.session_state["project_id"] = project_id
        at.session_state["rf_tab"] = tab
        at.switch_page("judgeeye_app/views/refine.py")
        return at

    def view(at: AppTest) -> AppTest:
        at.run()
        assert not at.exception, at.exception
        return at

    view(fresh("Compare versions"))  # warm-up: the app's imports and a first session
    first_wall, first_cpu, at = timed("map tab, first view (fresh session, nothing cached)",
                                      lambda: view(fresh("Critique map")), 1)
    assert at.get("plotly_chart"), "the map is drawn"
    page_wall, page_cpu, _ = timed("map tab, later views", lambda: view(at), args.page_repeats)
    rows.append(("Refine page, map tab, first view of the stored map", first_wall, first_cpu))
    rows.append(("Refine page, map tab, later views", page_wall, page_cpu))

    # ------------------------------------------------------------------ report
    width = max(len(r[0]) for r in rows)
    print(f"\nload average at the end: {load()}\n\n{'stage':<{width}}  median s  CPU s")
    for name, wall, cpu in rows:
        print(f"{name:<{width}}  {wall:8.2f}  {cpu:5.2f}")
    print(f"\nagreement with {describe(reference)} ({len(texts)} {source} critiques; clusters at its k per level)")
    print(f"{'embedder':<{width}}  ARI    NMI    10-NN overlap  representatives  embed speed-up  k by silhouette")
    for name, (ari, nmi, overlap, reps, own_k) in quality.items():
        speed = embed_s[reference][0] / embed_s[name][0]
        print(f"{describe(name):<{width}}  {ari:.3f}  {nmi:.3f}  {overlap:13.3f}  {reps:15.3f}  {speed:13.1f}x  {own_k}")
    print(f"{'(k-means on the reference, another seed)':<{width}}  {floor[0]:.3f}  {floor[1]:.3f}")
    print(f"MiniBatchKMeans against KMeans at the same k: ARI {mb_ari:.3f}")
    method = "umap" if umap_available() else "tsne"
    total = embed_s.get(DEFAULT_EMBEDDER, embed_s[reference])[0] + dict((r[0], r[1]) for r in rows)[
        "k-means per level, k by silhouette (kmeans)"] + proj[method][0]
    before = embed_s[reference][0] + dict((r[0], r[1]) for r in rows)["k-means per level, k by silhouette (kmeans)"]
    print(f"\ndefault pipeline: embed ({DEFAULT_EMBEDDER}) + k-means (silhouette) + projection ({method}): "
          f"{total:.2f} s; store step {store_wall:.2f} s; map tab {page_wall:.2f} s (first view {first_wall:.2f} s)")
    print(f"for comparison, PyTorch MiniLM embedding + the same clustering: {before:.2f} s before any projection")


if __name__ == "__main__":
    main()
