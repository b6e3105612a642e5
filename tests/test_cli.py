"""The `judgeeye` command on a real SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from conftest import SHARED_DATA
from judgeeye.cli import app
from judgeeye.projects import SAMPLE_FILE
from judgeeye.store import Codebook, Item, Project, session_scope

DATA = Path(__file__).parent / "data"
runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def _counts() -> tuple[int, int, int]:
    with session_scope() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (Project, Item, Codebook))  # type: ignore[return-value]


def test_console_script_lists_the_commands() -> None:
    exe = Path(sys.executable).with_name("judgeeye")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("import", "projects", "codebook", "app"):
        assert command in out


def test_import_builtin_loader_and_list_projects(store_url: str) -> None:
    result = run("import", "--loader", "hanna", SAMPLE_FILE, "--dimension", "complexity", "--project", "hx")
    assert result.exit_code == 0, result.output
    assert "imported project 'hx'" in result.output
    frame = pd.read_csv(SAMPLE_FILE)
    ratings = frame[[f"rater{i}_complexity" for i in (1, 2, 3)]]
    kept = ratings.std(axis=1, ddof=1) <= 1.0
    assert f"gold {int(kept.sum())}, dropped {int((~kept).sum())}" in result.output
    listing = run("projects")
    assert listing.exit_code == 0 and "hx" in listing.output and "complexity" in listing.output


def test_import_sample_gives_the_apps_sample_project_headless(store_url: str) -> None:
    from judgeeye.projects import SAMPLE_PROJECT, ensure_sample_project

    result = run("import", "--sample")
    assert result.exit_code == 0, result.output
    assert f"imported project {SAMPLE_PROJECT!r} (id 1)" in result.output
    assert ensure_sample_project() is None  # the app would not import it a second time
    refused = run("import", "--sample", str(SAMPLE_FILE))
    assert refused.exit_code == 2 and "give no file" in refused.output
    assert run("import").exit_code == 2
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Project)) == 1


def test_generic_import_with_column_mapping(store_url: str) -> None:
    result = run("import", DATA / "generic_ratings.csv", "--id-column", "id", "--text", "story=text",
                 "--rater", "r1", "--rater", "r2", "--rater", "r3", "--scale", "1-5",
                 "--dimension", "coherence", "--generation-type", "story", "--project", "g")
    assert result.exit_code == 0, result.output
    with session_scope() as s:
        items = {i.external_id: i for i in s.scalars(select(Item)).all()}
    assert items["a"].fields == {"story": "A short story about a cat."}
    assert items["a"].gold == 3 and items["d"].gold_status == "dropped_disagreement"
    assert items["e"].ratings == {"r1": 4, "r3": 4}


def test_malformed_file_exits_nonzero_and_changes_nothing(store_url: str) -> None:
    run("import", "--loader", "hanna", SAMPLE_FILE, "--dimension", "complexity")
    before = _counts()
    result = run("import", DATA / "generic_ratings_bad.csv", "--id-column", "id", "--text", "text",
                 "--rater", "r1", "--rater", "r2", "--rater", "r3", "--scale", "1-5", "--project", "bad")
    assert result.exit_code == 2
    assert "generic_ratings_bad.csv" in result.output
    assert "row 3" in result.output and "'r2'" in result.output
    assert "row 4" in result.output and "outside the scale" in result.output
    assert _counts() == before


def test_duplicate_project_name_is_refused(store_url: str) -> None:
    assert run("import", "--loader", "hanna", SAMPLE_FILE, "--dimension", "complexity", "--project", "p").exit_code == 0
    before = _counts()
    result = run("import", "--loader", "hanna", SAMPLE_FILE, "--dimension", "engagement", "--project", "p")
    assert result.exit_code == 2 and "project" in result.output
    assert _counts() == before


def test_codebook_show_export_import_diff(store_url: str, tmp_path: Path) -> None:
    assert run("import", "--loader", "hanna", SAMPLE_FILE, "--dimension", "complexity", "--project", "cb").exit_code == 0
    shown = run("codebook", "show", "--project", "cb")
    assert shown.exit_code == 0 and "<rating>" in shown.output
    out = tmp_path / "cb.json"
    assert run("codebook", "export", "--project", "cb", "-o", out).exit_code == 0
    spec = json.loads(out.read_text())
    spec["rubric"][2]["text"] = "The story shows some complexity: several elements, loosely connected."
    out.write_text(json.dumps(spec))
    imported = run("codebook", "import", "--project", "cb", out, "--note", "clearer level 3", "--author", "ana")
    assert imported.exit_code == 0, imported.output
    assert "version 2 is now current" in imported.output
    diff = run("codebook", "diff", "--project", "cb", "1", "2")
    assert diff.exit_code == 0 and "loosely connected" in diff.output
    history = run("codebook", "list", "--project", "cb")
    assert "clearer level 3" in history.output and "ana" in history.output
    md = run("codebook", "export", "--project", "cb", "--version", "1", "--format", "md")
    assert md.exit_code == 0 and "#" in md.output


def test_codebook_import_names_the_bad_field(store_url: str, tmp_path: Path) -> None:
    assert run("import", "--loader", "hanna", SAMPLE_FILE, "--dimension", "complexity", "--project", "cb").exit_code == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "task": "t", "dimension": "d", "scale_min": 1, "scale_max": 5,
                               "instructions": "Rate it.", "rubric": []}))
    result = run("codebook", "import", "--project", "cb", bad)
    assert result.exit_code == 2 and "bad.json" in result.output and "rubric" in result.output
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Codebook)) == 1


def test_unknown_project_lists_known_ones(store_url: str) -> None:
    run("import", "--loader", "hanna", SAMPLE_FILE, "--dimension", "complexity", "--project", "known")
    result = run("codebook", "show", "--project", "nope")
    assert result.exit_code == 2 and "'known'" in result.output


@pytest.mark.shared
def test_full_hanna_import_follows_the_papers_gold_rule(store_url: str) -> None:
    """The issue's acceptance command, checked against an independent pandas computation."""
    path = SHARED_DATA / "hanna" / "hanna_reconstructed_per_annotator.csv"
    env = {**os.environ}
    exe = Path(sys.executable).with_name("judgeeye")
    proc = subprocess.run([str(exe), "import", "--loader", "hanna", str(path), "--dimension", "complexity"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_csv(path)
    ratings = frame[[f"rater{i}_complexity" for i in (1, 2, 3)]]
    std = ratings.std(axis=1, ddof=1)
    kept = std <= 1.0
    expected_gold = dict(zip(frame["story_id"].astype(str)[kept], ratings[kept].median(axis=1)))
    with session_scope() as s:
        items = s.scalars(select(Item)).all()
    assert len(items) == len(frame) == 1056
    gold = {i.external_id: i.gold for i in items if i.gold_status == "gold"}
    assert gold == expected_gold
    assert sum(i.gold_status == "dropped_disagreement" for i in items) == int((~kept).sum())
    assert f"dropped {int((~kept).sum())}" in proc.stdout
