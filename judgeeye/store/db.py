"""Engines, sessions and schema upgrades.

SQLite (a file under ``./judgeeye-data/``) by default, in WAL mode with a busy timeout so the
app, CLI and job workers can write side by side; any SQLAlchemy URL through ``JUDGEEYE_DB``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

DATA_DIR_ENV = "JUDGEEYE_DATA_DIR"
DB_URL_ENV = "JUDGEEYE_DB"
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: lowers (or raises) SQLite's busy timeout, e.g. for tests of a locked database
BUSY_TIMEOUT_ENV = "JUDGEEYE_DB_BUSY_TIMEOUT_MS"

_READONLY_OPTION = "judgeeye_readonly"
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def data_dir() -> Path:
    """Folder for the default database, job logs, caches and adapters."""
    path = Path(os.environ.get(DATA_DIR_ENV, "judgeeye-data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    return os.environ.get(DB_URL_ENV) or f"sqlite:///{data_dir() / 'judgeeye.db'}"


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def busy_timeout_ms() -> int:
    """How long a SQLite writer waits for the write lock before "database is locked"."""
    return int(os.environ.get(BUSY_TIMEOUT_ENV, SQLITE_BUSY_TIMEOUT_MS))


def _configure_sqlite(engine: Engine) -> None:
    timeout_ms = busy_timeout_ms()

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy issue BEGIN itself so that BEGIN IMMEDIATE below works.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={timeout_ms}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:  # type: ignore[no-untyped-def]
        # Writers take the write lock at the start of a transaction, so concurrent writers wait
        # on busy_timeout instead of failing with "database is locked" on lock upgrade. Readers
        # (read_scope) begin deferred: in WAL mode they take no lock and never wait on a writer.
        readonly = conn.get_execution_options().get(_READONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def get_engine(url: str | None = None, *, upgrade: bool = True) -> Engine:
    """One engine per URL per process, upgraded to the newest schema on first use."""
    url = url or database_url()
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            is_sqlite = url.startswith("sqlite")
            database = make_url(url).database
            if is_sqlite and database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                url,
                pool_pre_ping=not is_sqlite,
                connect_args={"timeout": busy_timeout_ms() / 1000} if is_sqlite else {},
            )
            if is_sqlite:
                _configure_sqlite(engine)
            if upgrade:
                upgrade_schema(engine)
            _engines[url] = engine
    return engine


def dispose_engines() -> None:
    """Forget cached engines (tests switch databases; forked workers must not share pools)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


#: PostgreSQL advisory lock key held while the schema is upgraded ("JudgeEye" in ASCII)
_UPGRADE_LOCK_KEY = 0x4A75646765457965


def upgrade_schema(engine: Engine) -> None:
    """Bring the database to the newest Alembic revision, in place.

    Several app replicas and job workers may start at once against one PostgreSQL database: a
    transaction-scoped advisory lock lets one of them migrate while the others wait, then find
    nothing left to do (SQLite's BEGIN IMMEDIATE serialises them already)."""
    from alembic import command
    from alembic.config import Config

    here = Path(__file__).parent
    cfg = Config()
    cfg.set_main_option("script_location", str(here / "migrations"))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")  # branches (one per feature) merge by applying all heads


def schema_revision(engine: Engine) -> str | None:
    """The applied revision(s), comma-separated when several feature branches are applied."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    return ",".join(sorted(heads)) or None


def has_table(engine: Engine, name: str) -> bool:
    return inspect(engine).has_table(name)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A short transaction: commit on success, roll back on any error."""
    factory = sessionmaker(bind=get_engine(url), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_scope(url: str | None = None) -> Iterator[Session]:
    """A read-only transaction for pages and reports: it never takes SQLite's write lock, so it
    neither waits on running jobs nor blocks them, and may be opened inside a session_scope.
    Anything written through it is rolled back; objects read stay usable afterwards, as after
    a session_scope (detached with what was loaded)."""
    engine = get_engine(url).execution_options(**{_READONLY_OPTION: True})
    session = sessionmaker(bind=engine, expire_on_commit=False)()
    try:
        yield session
    finally:
        session.expunge_all()  # a rollback would expire them
        session.rollback()
        session.close()
