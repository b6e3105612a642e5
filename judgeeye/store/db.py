"""Engines, sessions and schema upgrades; where the store lives.

One store per user by default: a SQLite file in the user's data folder (platformdirs, e.g.
``~/.local/share/judgeeye/judgeeye.db`` on Linux), never in the current folder, so every command
sees the same projects wherever it is run. ``JUDGEEYE_DATA_DIR`` moves the folder, ``JUDGEEYE_DB``
names any SQLAlchemy URL. SQLite runs in WAL mode with a busy timeout so the app, CLI and job
workers can write side by side.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

APP_NAME = "judgeeye"
DATA_DIR_ENV = "JUDGEEYE_DATA_DIR"
DB_URL_ENV = "JUDGEEYE_DB"
STORE_FILE = "judgeeye.db"
#: the data folder's name in the current directory before the store moved to the user data dir
LEGACY_DATA_DIR = "judgeeye-data"
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: lowers (or raises) SQLite's busy timeout, e.g. for tests of a locked database
BUSY_TIMEOUT_ENV = "JUDGEEYE_DB_BUSY_TIMEOUT_MS"

_READONLY_OPTION = "judgeeye_readonly"
_engines: dict[str, Engine] = {}
_lock = threading.Lock()
#: whether opening a missing SQLite store creates it (see allow_store_creation)
_create_missing = True


class StoreNotFound(LookupError):
    """No store where JudgeEye looked, and what is running must not create one there."""

    def __init__(self, url: str) -> None:
        self.location = store_location(url)
        message = (f"no JudgeEye store at {self.location} ({store_source()}). Create one with "
                   "`judgeeye import FILE ...` or `judgeeye app` (it starts with the sample project), "
                   f"or set {DB_URL_ENV} or {DATA_DIR_ENV} to an existing store.")
        legacy = legacy_store()
        if legacy is not None:
            message += (f" A store of an earlier version is at {legacy}: "
                        f"set {DATA_DIR_ENV}={legacy.parent} to keep using it.")
        super().__init__(message)


def data_dir_path() -> Path:
    """Where the data folder is (``$JUDGEEYE_DATA_DIR``, else the user's data folder), without
    creating it: finding out where the store is must not make one."""
    configured = os.environ.get(DATA_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    return platformdirs.user_data_path(APP_NAME, appauthor=False)


def data_dir() -> Path:
    """Folder for the default database, job logs, uploads, caches and adapters, created for
    whoever is about to write there."""
    path = data_dir_path()
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    return os.environ.get(DB_URL_ENV) or f"sqlite:///{data_dir_path() / STORE_FILE}"


def sqlite_file(url: str | None = None) -> Path | None:
    """The SQLite file behind ``url`` (default: this process's store); None for other databases."""
    parsed = make_url(url or database_url())
    database = parsed.database
    if not parsed.drivername.startswith("sqlite") or not database or database == ":memory:" \
            or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def store_location(url: str | None = None) -> str:
    """Where the store lives, for people: the SQLite file's path, else the URL without password."""
    url = url or database_url()
    path = sqlite_file(url)
    return str(path) if path is not None else redact_url(url)


def store_source() -> str:
    """What chose the store: the variable that names it, or the per-user default."""
    if os.environ.get(DB_URL_ENV):
        return f"from {DB_URL_ENV}"
    if os.environ.get(DATA_DIR_ENV, "").strip():
        return f"from {DATA_DIR_ENV}"
    return "the default location"


def store_exists(url: str | None = None) -> bool:
    """Whether the store is there to open. A SQLite store is its file. A server database is
    created by whoever set ``JUDGEEYE_DB`` (the schema in it is created on first use), so it
    counts as there."""
    path = sqlite_file(url)
    return path is None or path.exists()


def legacy_store() -> Path | None:
    """A store left by an earlier version in ``./judgeeye-data`` of the current folder, when no
    variable chooses the store and the default store is missing (worth pointing out)."""
    if os.environ.get(DB_URL_ENV) or os.environ.get(DATA_DIR_ENV, "").strip() or store_exists():
        return None
    path = (Path.cwd() / LEGACY_DATA_DIR / STORE_FILE).resolve()
    return path if path.exists() else None


def allow_store_creation(allowed: bool) -> bool:
    """Decide whether opening a missing SQLite store in this process creates it (by default it
    does, as the app, job workers and library callers expect); returns the previous setting.
    The CLI lets only the commands that work on an empty store create one, so a read-only
    command run against the wrong place says where it looked instead of leaving a store there."""
    global _create_missing
    previous, _create_missing = _create_missing, allowed
    return previous


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
            path = sqlite_file(url)
            if path is not None and not path.exists():
                if not _create_missing:
                    raise StoreNotFound(url)
                path.parent.mkdir(parents=True, exist_ok=True)
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
