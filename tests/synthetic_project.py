"""A synthetic project at real scale, for the agreement page's benchmark and tests.

The paper's largest sets have tens of thousands of items; the page must stay fast there. This
fills a store with one project of ``n_items`` items (three annotators, gold = median), two codebook
versions, one sampling run of k candidates per item, rater runs on the test split under both
versions (ratings that track gold with noise, the refined codebook a little closer, a few parse
failures) and, optionally, annotators' selections. Rows go in with bulk Core inserts in a few
transactions, so 20,000 items and 320,000 candidates take seconds, not minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from judgeeye.codebook import create_version, load_builtin
from judgeeye.engines import EngineConfig
from judgeeye.evaluate.raters import RaterSpec
from judgeeye.store import Annotator, Candidate, Item, Prediction, Project, RaterRun, SamplingRun, Selection

WORDS = ("the", "story", "plot", "character", "twist", "simple", "layered", "theme", "reader", "ending",
         "scene", "voice", "motif", "tension", "arc", "clear", "dense", "quiet", "sharp", "loose")
RATERS = ("model-a", "model-b", "model-c", "model-d")


@dataclass
class SyntheticProject:
    project_id: int
    codebook_ids: list[int]
    sampling_run_id: int
    rater_run_ids: dict[int, list[int]]  # codebook version -> runs (one per rater, same order)
    n_items: int
    n_candidates: int
    n_predictions: int


def _text(rng: np.random.Generator, n_words: int) -> str:
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n_words))


def _bulk(session: Session, model: type, rows: list[dict], size: int = 20_000) -> None:
    """Insert many rows with one executemany per chunk.

    On SQLite the values go straight to the driver after SQLAlchemy's own bind processors (JSON,
    datetimes), which is several times faster than a Core insert; columns the rows leave out get
    their model default. Other databases use a Core insert.
    """
    if not rows:
        return
    conn = session.connection()
    table = model.__table__  # type: ignore[attr-defined]
    if conn.dialect.name != "sqlite":
        for start in range(0, len(rows), size):
            conn.execute(table.insert(), rows[start:start + size])
        return
    keys = list(rows[0])
    extra = {}
    for column in table.columns:
        if column.key in keys or column.primary_key or column.default is None:
            continue
        arg = column.default.arg
        extra[column.key] = arg(None) if callable(arg) else arg
    columns = keys + list(extra)
    procs = [table.c[k].type._cached_bind_processor(conn.dialect) for k in columns]
    fixed = [None if p is None or v is None else p(v) for p, v in zip(procs[len(keys):], extra.values())]
    sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
           f"VALUES ({', '.join('?' * len(columns))})")
    data = list(map(itemgetter(*keys), rows)) if len(keys) > 1 else [(row[keys[0]],) for row in rows]
    live = [(i, p) for i, p in enumerate(procs[:len(keys)]) if p is not None]
    if live:  # e.g. JSON columns: serialise as SQLAlchemy would
        for n, values in enumerate(data):
            values = list(values)
            for i, p in live:
                if values[i] is not None:
                    values[i] = p(values[i])
            data[n] = tuple(values)
    tail = tuple(fixed)
    if tail:
        data = [values + tail for values in data]
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for start in range(0, len(data), size):
            cursor.executemany(sql, data[start:start + size])
    finally:
        cursor.close()


def fill_synthetic(
    session: Session,
    *,
    n_items: int = 20_000,
    k: int = 16,
    n_raters: int = 4,
    test_share: float = 0.2,
    reviews: bool = True,
    name: str = "synthetic",
    seed: int = 0,
) -> SyntheticProject:
    """Create the synthetic project in the caller's session (flushes; the caller commits)."""
    rng = np.random.default_rng(seed)
    now = datetime.now(timezone.utc)
    project = Project(name=name, task="story rating (synthetic)", dimension="complexity",
                      generation_type="story", scale_min=1, scale_max=5, text_fields=["story"],
                      source={"synthetic": True, "seed": seed}, gold_rule={"max_std": 1.0})
    session.add(project)
    session.flush()
    spec = load_builtin("hanna_complexity")
    v1 = create_version(session, project.id, spec, origin="original", author="synthetic")
    refined = spec.model_copy(update={"instructions": spec.instructions + "\n\nRate step by step."})
    v2 = create_version(session, project.id, refined, parent_id=v1.id, origin="refined_rubric", author="synthetic")

    # items: three annotators around a latent level; gold = median
    latent = rng.integers(1, 6, n_items)
    ratings = np.clip(latent[:, None] + rng.integers(-1, 2, (n_items, 3)), 1, 5)
    gold = np.median(ratings, axis=1)
    std = ratings.std(axis=1, ddof=1)
    split = np.where(rng.random(n_items) < test_share, "test",
                     np.where(rng.random(n_items) < 0.125, "validation", "train"))
    rows = [dict(project_id=project.id, external_id=f"syn-{i:06d}", fields={"story": _text(rng, 12)},
                 ratings={"ann1": int(r[0]), "ann2": int(r[1]), "ann3": int(r[2])}, gold=float(g),
                 rating_std=float(s), gold_status="gold", split=str(sp))
            for i, (r, g, s, sp) in enumerate(zip(ratings, gold, std, split))]
    _bulk(session, Item, rows)
    items = session.execute(select(Item.id, Item.gold, Item.split).where(Item.project_id == project.id)
                            .order_by(Item.id)).all()
    item_ids = np.array([r[0] for r in items], dtype=np.int64)
    item_gold = np.array([r[1] for r in items], dtype=float)
    test_idx = np.array([i for i, r in enumerate(items) if r[2] == "test"], dtype=np.int64)

    # one sampling run: k candidates per item, accepted when the rating equals gold
    engine = EngineConfig().model_dump(mode="json")
    srun = SamplingRun(project_id=project.id, codebook_id=v1.id, engine=engine, k=k, temperature=1.0,
                       top_p=1.0, max_tokens=512, splits=["train", "validation", "test"],
                       settings={"k": k, "splits": ["train", "validation", "test"]}, status="completed")
    session.add(srun)
    session.flush()
    predicted = np.clip(np.rint(item_gold[:, None] + rng.normal(0, 1.0, (len(items), k))), 1, 5)
    parse_ok = rng.random((len(items), k)) > 0.03
    reasoning = [_text(rng, 40) for _ in range(64)]
    cand_rows = []
    n_candidates = 0
    for i, item_id in enumerate(item_ids):
        g = float(item_gold[i])
        for j in range(k):
            ok = bool(parse_ok[i, j])
            p = float(predicted[i, j]) if ok else None
            cand_rows.append(dict(
                run_id=srun.id, item_id=int(item_id), target="gold", target_label=g, sample_index=j,
                kind="sampled", reasoning=reasoning[(i + j) % 64], answer=f"<rating>{int(predicted[i, j])}</rating>",
                predicted=p, parse_ok=ok, accepted=p is not None and p == g,
                prompt_tokens=300, completion_tokens=120, finish_reason="stop"))
        if len(cand_rows) >= 40_000:
            _bulk(session, Candidate, cand_rows)
            n_candidates += len(cand_rows)
            cand_rows = []
    if cand_rows:
        _bulk(session, Candidate, cand_rows)
        n_candidates += len(cand_rows)

    # rater runs on the test split: each rater under v1 and under v2 (v2 a little less noisy)
    runs: dict[int, list[int]] = {1: [], 2: []}
    n_predictions = 0
    for version, codebook, noise in ((1, v1, 1.0), (2, v2, 0.8)):
        for r in range(n_raters):
            label = RATERS[r % len(RATERS)] + ("" if r < len(RATERS) else f"-{r}")
            spec = RaterSpec(engine=EngineConfig(kind="openai", model=label, base_url="http://127.0.0.1:8000/v1"))
            run = RaterRun(project_id=project.id, codebook_id=codebook.id, split="test", status="completed",
                           name=f"{label} · codebook v{version}", rater=spec.model_dump(mode="json"))
            session.add(run)
            session.flush()
            runs[version].append(run.id)
            bias = rng.normal(0, 0.3)
            raw = item_gold[test_idx] + bias + rng.normal(0, noise + 0.1 * r, len(test_idx))
            values = np.clip(np.rint(raw), 1, 5)
            ok = rng.random(len(test_idx)) > 0.02
            pred_rows = [dict(rater_run_id=run.id, item_id=int(item_ids[t]), reasoning=reasoning[(t + r) % 64],
                              answer=f"<rating>{int(v)}</rating>" if o else "no rating here",
                              rating=float(v) if o else None, parse_ok=bool(o),
                              completion_tokens=150)
                         for t, v, o in zip(test_idx, values, ok)]
            _bulk(session, Prediction, pred_rows)
            n_predictions += len(pred_rows)

    if reviews:
        _fill_reviews(session, rng, srun.id, item_ids[: min(len(item_ids), 3000)], now)
    session.flush()
    return SyntheticProject(project_id=project.id, codebook_ids=[v1.id, v2.id], sampling_run_id=srun.id,
                            rater_run_ids=runs, n_items=len(items), n_candidates=n_candidates,
                            n_predictions=n_predictions)


def _fill_reviews(session: Session, rng: np.random.Generator, run_id: int, item_ids: np.ndarray,
                  now: datetime) -> None:
    """Three annotators' selections on the first items: mostly an accepted candidate, some rejects."""
    names = [f"synthetic-annotator-{i}" for i in range(1, 4)]
    existing = set(session.scalars(select(Annotator.name).where(Annotator.name.in_(names))).all())
    for name in names:
        if name not in existing:
            session.add(Annotator(name=name, role="annotator"))
    session.flush()
    annotators = session.scalars(select(Annotator.id).where(Annotator.name.in_(names))).all()
    accepted = dict(session.execute(
        select(Candidate.item_id, Candidate.id).where(Candidate.run_id == run_id, Candidate.accepted.is_(True),
                                                      Candidate.item_id.in_([int(i) for i in item_ids]))
        .order_by(Candidate.id.desc())).all())  # ends on the first accepted candidate of each item
    rows = []
    for a_index, annotator_id in enumerate(annotators):
        done = int(len(item_ids) * (0.9 - 0.25 * a_index))
        for item_id in item_ids[:done]:
            cand = accepted.get(int(item_id))
            reject = cand is None or rng.random() < 0.08
            rows.append(dict(item_id=int(item_id), annotator_id=annotator_id, candidate_id=None if reject else cand,
                             edited_text=None, state="submitted", codebook_id=None, updated_at=now))
    _bulk(session, Selection, rows)
