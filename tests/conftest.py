"""Test fixtures: every test gets its own real SQLite file and data folder; no hub access."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The suite runs on two xdist workers (pyproject addopts); torch with more threads than its share
# of cores slows down many times over, so each worker and every worker job it starts uses one.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's own data folder: no test reads or writes the user's store (the default one
    lives in the user's data folder, see judgeeye/store/db.py)."""
    path = tmp_path / "judgeeye-data"
    monkeypatch.setenv("JUDGEEYE_DATA_DIR", str(path))
    monkeypatch.delenv("JUDGEEYE_DB", raising=False)  # store_url sets it for the tests that want one
    return path


@pytest.fixture
def store_url(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh, empty database that the library uses by default (via JUDGEEYE_DB).

    SQLite in tmp unless JUDGEEYE_TEST_PG names a PostgreSQL server (e.g.
    ``postgresql+psycopg://postgres@127.0.0.1/postgres``): then each test gets its own database.
    """
    from judgeeye.store import dispose_engines

    server = os.environ.get("JUDGEEYE_TEST_PG")
    if server:
        url, drop = _postgres_database(server)
    else:
        url, drop = f"sqlite:///{data_dir / 'test.db'}", None
    monkeypatch.setenv("JUDGEEYE_DB", url)
    dispose_engines()
    yield url
    dispose_engines()
    if drop:
        drop()


def _postgres_database(server: str):  # type: ignore[no-untyped-def]
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"je_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        from sqlalchemy.exc import ProgrammingError

        # FORCE ends the test's own leftover connections; it may not end a server process such as
        # an autovacuum worker that just started on the database (InsufficientPrivilege), which
        # is gone a moment later
        for attempt in range(10):
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except ProgrammingError as exc:
                if "must be a member of the role" not in str(exc) or attempt == 9:
                    raise
                time.sleep(0.5)
        admin.dispose()

    return make_url(server).set(database=name).render_as_string(hide_password=False), drop


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SHARED_DATA.exists():
        return
    skip = pytest.mark.skip(reason="../shared/data is not present")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)
