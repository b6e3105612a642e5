"""Where the store lives: one per user (platformdirs) unless JUDGEEYE_DB / JUDGEEYE_DATA_DIR say
otherwise, the same from every folder; the CLI says where it is, and a command that reads never
creates a store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest
from typer.testing import CliRunner

from judgeeye.cli import app
from judgeeye.store import database_url, dispose_engines, store_location

DATA = Path(__file__).parent / "data"
runner = CliRunner()

#: commands that only read, or work on a project, run or job that must exist: none may create a store
NEEDS_A_STORE = [
    ["projects"],
    ["runs"],
    ["runs", "show", "1"],
    ["evaluate", "--list"],
    ["evaluate", "--list", "--project", "1"],
    ["codebook", "show", "--project", "1"],
    ["codebook", "list", "--project", "1"],
    ["codebook", "export", "--project", "1", "-o", "out.json"],
    ["codebook", "diff", "--project", "1", "1", "2"],
    ["jobs", "list"],
    ["jobs", "show", "1"],
    ["review", "rounds"],
    ["review", "progress", "--project", "1"],
    ["users", "list"],
    ["train", "list"],
    ["refine", "show", "1"],
    ["sample", "--project", "1", "--k", "2", "--limit", "1"],
]


@pytest.fixture
def user_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No JUDGEEYE_* variable, the user's data folder inside tmp (XDG_DATA_HOME), and an empty
    current folder; returns the path the default store must have."""
    monkeypatch.delenv("JUDGEEYE_DB", raising=False)
    monkeypatch.delenv("JUDGEEYE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("COLUMNS", "400")  # the help's store line on one line
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    dispose_engines()
    yield platformdirs.user_data_path("judgeeye", appauthor=False) / "judgeeye.db"
    dispose_engines()


def _everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_the_default_store_is_the_users_wherever_a_command_runs(user_default: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert user_default.is_relative_to(tmp_path / "xdg")
    urls = set()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        urls.add(database_url())
        assert store_location() == str(user_default)
    assert urls == {f"sqlite:///{user_default}"}
    assert not (tmp_path / "xdg").exists()  # finding out where the store is creates nothing


@pytest.mark.parametrize("args", NEEDS_A_STORE, ids=" ".join)
def test_a_command_that_needs_a_store_never_creates_one(user_default: Path, tmp_path: Path, args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"no JudgeEye store at {user_default}" in result.output
    assert "judgeeye import" in result.output and "judgeeye app" in result.output
    assert "Traceback" not in result.output
    assert _everything_under(tmp_path) == ["work"], "a file or folder appeared"


def test_a_store_made_in_one_folder_is_found_from_another(user_default: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case: a project imported from one folder, listed from another."""
    result = runner.invoke(app, ["import", str(DATA / "generic_ratings.csv"), "--id-column", "id", "--text", "text",
                                 "--rater", "r1", "--rater", "r2", "--rater", "r3", "--scale", "1-5",
                                 "--project", "anywhere"])
    assert result.exit_code == 0, result.output
    assert user_default.exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    listing = runner.invoke(app, ["projects"])
    assert listing.exit_code == 0, listing.output
    assert f"store: {user_default}" in listing.output and "anywhere" in listing.output
    rater_runs = runner.invoke(app, ["evaluate", "--list", "--project", "1"])
    assert rater_runs.exit_code == 0, rater_runs.output
    assert _everything_under(elsewhere) == [] and _everything_under(tmp_path / "work") == []


def test_an_unknown_project_names_the_store_it_looked_in(user_default: Path) -> None:
    runner.invoke(app, ["import", str(DATA / "generic_ratings.csv"), "--id-column", "id", "--text", "text",
                        "--rater", "r1", "--scale", "1-5", "--project", "known"])
    result = runner.invoke(app, ["codebook", "show", "--project", "nope"])
    assert result.exit_code == 2
    assert "no project 'nope'" in result.output and f"store: {user_default}" in result.output


def test_help_says_where_the_store_is(user_default: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert f"Store: {user_default} (the default location;" in result.output and "not created yet" in result.output
    other = tmp_path / "team"
    monkeypatch.setenv("JUDGEEYE_DATA_DIR", str(other))
    result = runner.invoke(app, ["--help"])  # computed when shown, not when the module was imported
    assert f"Store: {other / 'judgeeye.db'} (from JUDGEEYE_DATA_DIR;" in result.output
    assert not other.exists()


def test_variables_choose_the_store(user_default: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGEEYE_DATA_DIR", str(tmp_path / "data"))
    assert store_location() == str(tmp_path / "data" / "judgeeye.db")
    monkeypatch.setenv("JUDGEEYE_DB", "postgresql+psycopg://judgeeye:secret@db.internal/judgeeye")
    assert store_location() == "postgresql+psycopg://judgeeye:***@db.internal/judgeeye"


def test_a_store_left_in_the_current_folder_by_an_earlier_version_is_pointed_out(user_default: Path) -> None:
    legacy = Path.cwd() / "judgeeye-data"
    legacy.mkdir()
    (legacy / "judgeeye.db").write_bytes(b"")
    result = runner.invoke(app, ["projects"])
    assert result.exit_code == 2
    assert f"set JUDGEEYE_DATA_DIR={legacy} to keep using it" in result.output
    assert not user_default.parent.exists()


def test_the_console_command_from_another_folder(user_default: Path, tmp_path: Path) -> None:
    """The installed command as a user runs it, in its own process: a clear error, exit 2,
    nothing created."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUDGEEYE_")}
    result = subprocess.run([sys.executable, "-m", "judgeeye.cli", "evaluate", "--list", "--project", "1"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"no JudgeEye store at {user_default}" in result.stderr
    assert _everything_under(tmp_path) == ["work"]
