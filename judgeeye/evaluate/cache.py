"""A store-backed cache for aggregates that are too slow to recompute on every page view.

At the paper's scale a sampling run has 320,000 candidates and a rater run's intervals need
1,000 bootstrap resamples; the agreement page must still render in under a second, in a fresh
server process too. So such results are kept in ``stats_cache`` under a key, with a fingerprint of
the rows they came from (e.g. count and highest id of a run's predictions, which are append-only).
A reader that sees another fingerprint recomputes and overwrites; nothing is ever invalidated by
hand. NaN is stored as null (JSON has no NaN).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from judgeeye.store import StatsCache

T = TypeVar("T")


def to_json(value: Any) -> Any:
    """Plain JSON: NaN/inf become None, tuples become lists, numpy scalars become numbers."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def nan(value: Any) -> float:
    """A stored number back as float (None → NaN)."""
    return math.nan if value is None else float(value)


def read(session: Session, key: str, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The payload stored under ``key`` if it was computed from the same rows, else None."""
    row = session.execute(select(StatsCache.fingerprint, StatsCache.payload).where(StatsCache.key == key)).first()
    if row is None or row[0] != to_json(fingerprint):
        return None
    return row[1]


def write(session: Session, key: str, fingerprint: dict[str, Any], payload: dict[str, Any]) -> None:
    """Store (or replace) a payload; two writers racing on one key both succeed (last one wins)."""
    values = {"key": key, "fingerprint": to_json(fingerprint), "payload": to_json(payload),
              "updated_at": datetime.now(UTC)}
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        module = sqlite if dialect == "sqlite" else postgresql
        stmt = module.insert(StatsCache).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={
            "fingerprint": stmt.excluded.fingerprint, "payload": stmt.excluded.payload,
            "updated_at": stmt.excluded.updated_at})
        session.execute(stmt)
    else:  # pragma: no cover - other databases: plain merge
        session.merge(StatsCache(**values))


def cached(
    session: Session,
    key: str,
    fingerprint: dict[str, Any],
    compute: Callable[[], T],
    encode: Callable[[T], dict[str, Any]],
    decode: Callable[[dict[str, Any]], T],
) -> T:
    """``decode(payload)`` when the cache holds this fingerprint, else compute, store, return."""
    payload = read(session, key, fingerprint)
    if payload is not None:
        try:
            return decode(payload)
        except (KeyError, TypeError, ValueError):
            pass  # an older layout: recompute
    value = compute()
    write(session, key, fingerprint, encode(value))
    return value


def drop(session: Session, prefix: str) -> int:
    """Forget every entry whose key starts with ``prefix`` (tests, benchmarks' cold runs)."""
    from sqlalchemy import delete

    result = cast(CursorResult, session.execute(delete(StatsCache).where(StatsCache.key.like(f"{prefix}%"))))
    return result.rowcount or 0
