"""Acceptance modes and seeds without a model: the migration of existing rows, statistics per mode
(acceptance per level, utilization vs k), the D_reason export per run and mode, the settings'
single source (CLI and presets) and seeds reaching an OpenAI-compatible server, on a real SQLite
store and a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from chat_server import chat_server
from judgeeye.cli import app
from judgeeye.engines import EngineConfig
from judgeeye.review import reason_rows
from judgeeye.review.errors import ReviewError
from judgeeye.sampling import PRESETS, RunStats, SamplingSettings, preset_settings, run_stats
from judgeeye.sampling.launch import cli_command
from judgeeye.sampling.runs import create_run
from judgeeye.store import Candidate, Item, SamplingRun, dispose_engines, get_engine, session_scope
from review_data import make_project

runner = CliRunner()


def _add_run(project_id: int, settings: SamplingSettings, rows: list[tuple[int, int, float | None, str | None]]) -> int:
    """A run with candidates (item index, sample index, rating, acceptance mode), written the way
    the sampler writes them."""
    with session_scope() as s:
        run = create_run(s, project_id, EngineConfig(), settings)
        items = s.scalars(select(Item).where(Item.project_id == project_id).order_by(Item.id)).all()
        for i, j, rating, mode in rows:
            item = items[i]
            s.add(Candidate(run_id=run.id, item_id=item.id, sample_index=j, target="gold", target_label=item.gold,
                            reasoning=f"trace {j}", answer=f"<rating>{rating}</rating>" if mode == "written" else "…",
                            predicted=rating, parse_ok=mode == "written", acceptance_mode=mode,
                            score_dist={"1": 0.2, "2": 0.2, "3": 0.2, "4": 0.2, "5": 0.2} if mode == "forced_cue" else None,
                            accepted=rating is not None and rating == item.gold, completion_tokens=10,
                            finish_reason="stop" if mode == "written" else "length"))
        return run.id


# ------------------------------------------------------------------------------ migration
def test_existing_candidates_and_runs_get_the_mode_that_rated_them(store_url: str) -> None:
    """Rows written before the column existed: parse_ok -> written, a rating without a parse (the
    read-out argmax the sampler used silently) -> forced cue, none -> NULL; runs get the setting
    that continues what they did."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from judgeeye.store.db import upgrade_schema

    project_id, run_id = make_project(n_items=3, k=3)
    with session_scope() as s:
        run = s.get(SamplingRun, run_id)
        run.settings = {"k": 3, "readout": True}  # an old run: no acceptance, no seed
        run.engine = {"kind": "transformers", "model": "embedded"}
        cands = s.scalars(select(Candidate).where(Candidate.run_id == run_id).order_by(Candidate.id)).all()
        cands[0].parse_ok, cands[0].predicted = True, 2.0
        cands[1].parse_ok, cands[1].predicted = False, 3.0
        cands[2].parse_ok, cands[2].predicted = False, None
        ids = [c.id for c in cands[:3]]
        openai_run = SamplingRun(project_id=project_id, codebook_id=run.codebook_id, k=1,
                                 engine={"kind": "openai", "model": "m", "base_url": "http://x/v1"},
                                 settings={"k": 1, "readout": True})
        s.add(openai_run)
        s.flush()
        openai_id = openai_run.id
    engine = get_engine(store_url)
    cfg = Config()
    cfg.set_main_option("script_location", "judgeeye/store/migrations")
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    with engine.connect() as conn:
        columns = [r[1] for r in conn.execute(text("PRAGMA table_info(candidate)"))] if engine.dialect.name == "sqlite" \
            else list(conn.execute(text("SELECT * FROM candidate LIMIT 0")).keys())
        assert "acceptance_mode" not in columns
    upgrade_schema(engine)
    dispose_engines()
    with session_scope() as s:
        modes = {c.id: c.acceptance_mode for c in s.scalars(select(Candidate).where(Candidate.id.in_(ids)))}
        assert [modes[i] for i in ids] == ["written", "forced_cue", None]
        assert s.get(SamplingRun, run_id).settings["acceptance"] == "forced_cue"
        assert s.get(SamplingRun, openai_id).settings["acceptance"] == "written"  # no read-out from a server


# ------------------------------------------------------------------------------ statistics
def test_statistics_keep_the_modes_apart(store_url: str) -> None:
    project_id, _ = make_project(n_items=4, k=1)  # golds 1, 2, 3, 4
    run_id = _add_run(project_id, SamplingSettings(k=3, acceptance="forced_cue", seed=1), [
        (0, 0, 1.0, "written"), (0, 1, 5.0, "forced_cue"), (0, 2, None, None),   # item 1: written at j=1
        (1, 0, 5.0, "written"), (1, 1, 2.0, "forced_cue"), (1, 2, 2.0, "written"),  # forced at 2, written at 3
        (2, 0, None, None), (2, 1, 3.0, "forced_cue"), (2, 2, 1.0, "forced_cue"),   # forced only, at j=2
        (3, 0, 1.0, "written"), (3, 1, None, None), (3, 2, None, None),          # nothing accepted
    ])
    with session_scope() as s:
        st = run_stats(s, run_id)
    assert st.acceptance == "forced_cue" and st.seed == 1
    assert (st.n_candidates, st.n_accepted, st.items_with_accepted) == (12, 4, 3)
    written, forced = st.by_mode["written"], st.by_mode["forced_cue"]
    assert (written.rated, written.accepted, written.items_with_accepted) == (4, 2, 2)
    assert (forced.rated, forced.accepted, forced.items_with_accepted) == (4, 2, 2)
    assert st.readout_ratings == 4 and st.parse_failures == 8
    # the paper's curve counts written ratings only; the forced cue's is its own; "either" is the run's
    assert written.utilization == pytest.approx([1 / 4, 1 / 4, 2 / 4])
    assert forced.utilization == pytest.approx([0, 2 / 4, 2 / 4])
    assert st.utilization == pytest.approx([1 / 4, 3 / 4, 3 / 4])
    by_level = {lv.level: (lv.accepted, lv.candidates) for lv in written.per_level}
    assert by_level == {1.0: (1, 3), 2.0: (1, 3), 3.0: (0, 3), 4.0: (0, 3)}
    assert {lv.level: lv.accepted for lv in forced.per_level} == {1.0: 0, 2.0: 1, 3.0: 1, 4.0: 0}
    for a, b, total in zip(written.per_level, forced.per_level, st.per_level):
        assert a.rate + b.rate == pytest.approx(total.rate)  # the modes' rates add up to the run's
    assert RunStats.from_payload(json.loads(json.dumps(st.to_payload()))) == st  # the agreement page's cache


# ------------------------------------------------------------------------------ export per run
def test_export_names_run_and_mode_and_filters_runs(store_url: str, tmp_path: Path) -> None:
    project_id, first = make_project(n_items=3, k=2)  # run 1: every item accepted at j=0 (written)
    second = _add_run(project_id, SamplingSettings(k=1, acceptance="forced_cue", seed=3),
                      [(0, 0, 1.0, "forced_cue"), (1, 0, 2.0, "written"), (2, 0, 1.0, "forced_cue")])
    with session_scope() as s:
        rows, summary = reason_rows(s, project_id)
        assert {r["run_id"] for r in rows} == {first} and summary.runs is None  # earliest run first
        rows, summary = reason_rows(s, project_id, runs=[second])
        assert [(r["run_id"], r["acceptance_mode"]) for r in rows] == [(second, "forced_cue"), (second, "written")]
        assert summary.runs == [second] and summary.no_trace == 1 and summary.acceptance_modes == {
            "forced_cue": 1, "written": 1}
        with pytest.raises(ReviewError, match="no sampling run 999"):
            reason_rows(s, project_id, runs=[999])
    out = tmp_path / "export"
    result = runner.invoke(app, ["review", "export", "--project", str(project_id), "--out", str(out),
                                 "--format", "jsonl,csv,parquet", "--run", str(second)])
    assert result.exit_code == 0, result.output
    assert f"from sampling run(s) {second}" in result.output and "forced cue 1" in result.output
    lines = [json.loads(x) for x in (out / "d_reason.jsonl").read_text().splitlines()]
    assert [(r["run_id"], r["acceptance_mode"]) for r in lines] == [(second, "forced_cue"), (second, "written")]
    header = (out / "d_reason.csv").read_text().splitlines()[0].split(",")
    assert "run_id" in header and "acceptance_mode" in header
    table = pq.read_table(out / "d_reason.parquet")
    assert table.column("acceptance_mode").to_pylist() == ["forced_cue", "written"]


def test_a_review_of_another_run_does_not_leak_into_a_per_run_export(store_url: str) -> None:
    from judgeeye.review import choose, next_item, open_round
    from review_data import make_users

    project_id, first = make_project(n_items=2, k=2)
    second = _add_run(project_id, SamplingSettings(k=1, seed=4), [(0, 0, 1.0, "written"), (1, 0, 2.0, "written")])
    users = make_users(("lead", "lead"), ("ann", "annotator"))
    with session_scope() as s:
        round_id = open_round(s, users["lead"], first, ["ann"]).id
    with session_scope() as s:
        item_id = next_item(s, users["ann"], round_id)
        picked = s.scalars(select(Candidate.id).where(Candidate.run_id == first, Candidate.item_id == item_id,
                                                      Candidate.sample_index == 1)).one()
        choose(s, users["ann"], round_id, item_id, picked)
    with session_scope() as s:
        row = next(r for r in reason_rows(s, project_id)[0] if r["item_id"] == item_id)
        assert row["provenance"] == "human-selected" and row["candidate_id"] == picked
        row = next(r for r in reason_rows(s, project_id, runs=[second])[0] if r["item_id"] == item_id)
        assert row["provenance"] == "first-accepted" and row["run_id"] == second


# ------------------------------------------------------------------------------ one source
def test_presets_and_page_command_come_from_the_model() -> None:
    assert preset_settings("paper") == SamplingSettings()  # the paper's protocol is the model's defaults
    paper = SamplingSettings()
    assert (paper.k, paper.temperature, paper.acceptance) == (16, 1.0, "written")
    demo = preset_settings("embedded demo")
    assert demo.acceptance == "forced_cue" and demo.limit and demo.k < paper.k
    assert set(PRESETS) == {"paper", "embedded demo"}
    # the command shown on the Sample page starts the same settings
    cmd = cli_command("p", EngineConfig(), demo.model_copy(update={"limit": None, "seed": 5}), None, "embedded demo")
    assert "--preset embedded-demo" in cmd and "--limit 0" in cmd and "--seed 5" in cmd and "--k" not in cmd


def test_cli_defaults_and_seed_reach_an_openai_server(store_url: str) -> None:
    """`judgeeye sample` with no settings uses the library's defaults (max tokens 1,024, not the
    CLI's old 512); the seed is recorded and sent per request, derived from the run's seed, the
    item and the sample index, so two runs with --seed 7 send the same seeds."""
    project_id, _ = make_project(n_items=2, k=1, name="seeds")
    bodies: list[dict] = []
    lock = threading.Lock()

    def reply(prompt: str, body: dict) -> tuple[str, str]:
        with lock:
            if not any(b is body for b in bodies):  # called once per choice of a request
                bodies.append(body)
        return "Plain and short.\n<rating>3</rating>", "stop"

    with chat_server(reply) as (url, _prompts):
        runs = []
        for seed in ("7", "7", "8"):
            result = runner.invoke(app, ["sample", "--project", str(project_id), "--engine", f"openai:m@{url}",
                                         "--k", "2", "--seed", seed, "--concurrency", "1"])
            assert result.exit_code == 0, result.output
            assert f"seed {seed}" in result.output and "acceptance written" in result.output
            with session_scope() as s:
                runs.append(s.scalars(select(SamplingRun).order_by(SamplingRun.id.desc())).first())
    defaults = SamplingSettings.model_fields
    for run in runs:
        assert run.max_tokens == defaults["max_tokens"].default == 1024
        assert run.temperature == defaults["temperature"].default and run.settings["acceptance"] == "written"
    assert [r.settings["seed"] for r in runs] == [7, 7, 8]
    assert all(b["max_tokens"] == 1024 for b in bodies) and len(bodies) == 3 * 2
    seeds = [sorted(b["seed"] for b in bodies[i * 2:(i + 1) * 2]) for i in range(3)]
    assert seeds[0] == seeds[1] and seeds[0] != seeds[2] and len(set(seeds[0])) == 2  # one per item
    listing = runner.invoke(app, ["runs", "show", str(runs[0].id)])
    assert "seed 7" in listing.output and "acceptance written" in listing.output


# ------------------------------------------------------------------------------ review view
def test_review_traces_carry_the_mode_of_their_rating(store_url: str) -> None:
    from judgeeye.review import next_item, open_round
    from judgeeye.review.view import item_view
    from review_data import make_users

    project_id, _ = make_project(n_items=1, k=1)
    run_id = _add_run(project_id, SamplingSettings(k=3, acceptance="forced_cue", seed=2),
                      [(0, 0, 1.0, "written"), (0, 1, 1.0, "forced_cue"), (0, 2, None, None)])
    users = make_users(("lead", "lead"), ("ann", "annotator"))
    with session_scope() as s:
        round_id = open_round(s, users["lead"], run_id, ["ann"], include_unaccepted=True).id
    with session_scope() as s:
        item_id = next_item(s, users["ann"], round_id)
        view = item_view(s, users["ann"], round_id, item_id)
        modes = {s.get(Candidate, t.candidate_id).sample_index: t.acceptance_mode for t in view.traces}
    assert modes == {0: "written", 1: "forced_cue"}  # an item with accepted traces shows those
