"""Writes that survive a busy or briefly unavailable database.

Jobs write small units of work (a candidate, a prediction, a step's metrics, progress). When
SQLite is locked past its busy timeout, or PostgreSQL drops the connection (a restart,
``pg_terminate_backend``) or aborts a transaction for a serialization failure or deadlock,
:func:`write_with_retry` rolls the unit back and runs it again in a fresh transaction, a bounded
number of times with exponential backoff, and tells the job's log each time
("database busy, retrying in 0.4 s ..."). When the tries run out it raises
:class:`StoreBusyError`, whose message says that nothing of that unit was saved and that the job
resumes from what the store holds.

Contract: a unit given to :func:`write_with_retry` must be idempotent. A dropped connection can
lose the acknowledgement of a commit that did happen, so the unit may run again after it was
saved; job writes therefore insert with :func:`insert_or_ignore` (or upsert) on their unique key,
and resuming a job skips what is already there.

Settings (environment): ``JUDGEEYE_DB_RETRIES`` (default 5 retries after the first try),
``JUDGEEYE_DB_RETRY_SECONDS`` (first backoff, default 0.5; doubles up to 8 s).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

from judgeeye.store.db import session_scope

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRIES_ENV = "JUDGEEYE_DB_RETRIES"
RETRY_SECONDS_ENV = "JUDGEEYE_DB_RETRY_SECONDS"
BACKOFF_MAX = 8.0
#: PostgreSQL SQLSTATEs worth a retry: serialization failure, deadlock, admin/crash shutdown,
#: cannot connect now, and the connection-exception class (08xxx)
_PG_TRANSIENT = {"40001", "40P01", "57P01", "57P02", "57P03"}
_SQLITE_TRANSIENT = ("database is locked", "database is busy", "database table is locked")


class StoreBusyError(RuntimeError):
    """The database stayed locked or unreachable through every retry; nothing of the unit was saved."""


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same transaction again later may succeed."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state and (state in _PG_TRANSIENT or str(state).startswith("08")):
        return True
    if isinstance(exc, OperationalError):
        text = str(orig).lower()
        if any(s in text for s in _SQLITE_TRANSIENT):
            return True
        if state is None and ("server closed the connection" in text or "connection" in text and "closed" in text):
            return True
    return False


def retry_settings() -> tuple[int, float]:
    """(retries, first backoff in seconds) from the environment."""
    return int(os.environ.get(RETRIES_ENV, "5")), float(os.environ.get(RETRY_SECONDS_ENV, "0.5"))


def busy_message(exc: BaseException) -> str:
    """One line naming the database error, without parameters or SQL."""
    orig = getattr(exc, "orig", None) or exc
    return " ".join(str(orig).split())[:200] or exc.__class__.__name__


def write_with_retry(
    unit: Callable[[Session], T],
    *,
    log_fn: Callable[[str], None] | None = None,
    what: str = "write",
    retries: int | None = None,
    url: str | None = None,
) -> T:
    """Run ``unit(session)`` in its own transaction; on a transient database error roll back and
    run it again (``retries`` times at most, backoff doubling from ``JUDGEEYE_DB_RETRY_SECONDS``).
    ``unit`` must be idempotent (see the module docstring)."""
    default_retries, base = retry_settings()
    retries = default_retries if retries is None else retries
    say = log_fn or log.warning
    started = time.monotonic()
    for attempt in range(retries + 1):
        try:
            with session_scope(url) as session:
                return unit(session)
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            if attempt == retries:
                raise StoreBusyError(
                    f"the database stayed busy or unreachable for {time.monotonic() - started:.1f} s "
                    f"({retries + 1} tries; last error: {busy_message(exc)}); not saved: {what}. "
                    "Nothing already written is lost: resume the job to continue.") from exc
            delay = min(BACKOFF_MAX, base * 2 ** attempt) * random.uniform(0.75, 1.0)
            say(f"database busy, retrying in {delay:.1f} s ({attempt + 1}/{retries}; {what}): {busy_message(exc)}")
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def insert_or_ignore(session: Session, model: Any, rows: Sequence[dict], keys: Sequence[str]) -> None:
    """Insert ``rows``; a row whose unique ``keys`` already exist is left as it was (so a retried
    or resumed write never duplicates and never fails on what an earlier try saved)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        ignoring: Executable
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert
            ignoring = sqlite_insert(model).on_conflict_do_nothing(index_elements=list(keys))
        else:
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert
            ignoring = postgresql_insert(model).on_conflict_do_nothing(index_elements=list(keys))
        session.execute(ignoring, list(rows))
        return
    for row in rows:  # other databases: look before inserting (one writer per run, see jobs.other_running_job)
        exists = session.query(model).filter_by(**{k: row[k] for k in keys}).first()
        if exists is None:
            session.execute(insert(model), [row])


__all__ = ["StoreBusyError", "busy_message", "insert_or_ignore", "is_transient", "retry_settings", "write_with_retry"]
