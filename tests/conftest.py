"""Test fixtures: every test gets its own real SQLite file and data folder; no hub access."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "judgeeye-data"
    monkeypatch.setenv("JUDGEEYE_DATA_DIR", str(path))
    return path


@pytest.fixture
def store_url(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh database (JUDGEEYE_DB, else SQLite in tmp) that the library uses by default."""
    from judgeeye.store import dispose_engines

    base = os.environ.get("JUDGEEYE_TEST_DB")  # e.g. a PostgreSQL server URL for a second CI pass
    url = base or f"sqlite:///{data_dir / 'test.db'}"
    monkeypatch.setenv("JUDGEEYE_DB", url)
    dispose_engines()
    yield url
    dispose_engines()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SHARED_DATA.exists():
        return
    skip = pytest.mark.skip(reason="../shared/data is not present")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)
