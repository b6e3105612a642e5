"""API keys come from the environment or Streamlit secrets only and never land anywhere else.

A key is planted in a variable; a sampling run (the library path the Sample page uses) and a
rater run (``judgeeye evaluate --background``) talk to an OpenAI-compatible server on loopback as
background jobs; then the review export and the Agreement HTML report are written. The key must
appear in no column of any table, no file under the data folder (job logs, exports, reports), no
job's params and no worker's command line, while the server did receive it (so the test cannot
pass by never using it) and the worker had it in its environment.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from apptest_login import SESSION_KEY, login_as
from chat_server import chat_server
from judgeeye.auth import Actor
from judgeeye.cli import app
from judgeeye.engines import EngineConfig
from judgeeye.engines.base import check_api_key_env
from judgeeye.store import Job, RaterRun, SamplingRun, session_scope
from judgeeye.store.db import get_engine
from training_data import make_tiny_project

REPO = Path(__file__).resolve().parents[1]
VAR = "JE_PLANTED_API_KEY"


def _reply(prompt: str, body: dict) -> tuple[str, str]:
    time.sleep(0.2)  # long enough to read the worker's command line and environment meanwhile
    return "The story has one plain action.\n\n<rating>2</rating>", "stop"


def _wait_job(job_id: int, seen: dict[str, bytes], timeout: float = 180) -> Job:
    """Wait for a job to finish; meanwhile keep the worker's /proc cmdline and environ."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as s:
            job = s.get(Job, job_id)
            s.expunge(job)
        if job.pid and "cmdline" not in seen:
            try:
                cmdline = Path(f"/proc/{job.pid}/cmdline").read_bytes()
                environ = Path(f"/proc/{job.pid}/environ").read_bytes()
            except OSError:
                cmdline = environ = b""
            if cmdline:  # empty once the worker has exited (a zombie until reaped)
                seen.update(cmdline=cmdline, environ=environ)
        if job.status not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def store_text() -> list[tuple[str, str, str]]:
    """(table, column, value as text) for every non-null cell of every table in the store."""
    engine = get_engine()
    meta = MetaData()
    meta.reflect(bind=engine)
    out = []
    with engine.connect() as conn:
        for name, table in meta.tables.items():
            for row in conn.execute(select(table)).mappings():
                out += [(name, col, str(value)) for col, value in row.items() if value is not None]
    return out


def assert_nowhere(key: str, data_dir: Path) -> None:
    leaks = [(t, c) for t, c, v in store_text() if key in v]
    assert not leaks, f"the key is stored in {leaks}"
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in files) and any("exports" in p.parts for p in files)
    leaked = [str(p) for p in files if key.encode() in p.read_bytes()]
    assert not leaked, f"the key is written in {leaked}"


def test_a_planted_key_reaches_the_server_and_nothing_else(store_url: str, data_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from judgeeye.evaluate.report import build_report
    from judgeeye.review import export_reasoning
    from judgeeye.review.export import default_export_dir
    from judgeeye.sampling import SamplingSettings
    from judgeeye.sampling.launch import cli_command, launch_run

    key = f"sk-planted-{uuid.uuid4().hex}"
    monkeypatch.setenv(VAR, key)
    project_id = make_tiny_project(tmp_path)
    headers: list[dict[str, str]] = []
    with chat_server(_reply, headers) as (url, prompts):
        engine = EngineConfig(kind="openai", model="scripted", base_url=url, api_key_env=VAR, max_retries=0)
        settings = SamplingSettings(k=2, splits=["train"], limit=3, max_tokens=32)
        assert VAR in cli_command("tiny", engine, settings, None) and key not in cli_command("tiny", engine, settings, None)
        run_id, job_id = launch_run(project_id, engine, settings, actor=Actor.system())
        sample_proc: dict[str, bytes] = {}
        job = _wait_job(job_id, sample_proc)
        assert job.status == "succeeded", job.error

        result = CliRunner().invoke(app, ["evaluate", "--project", "tiny", "--rater", f"openai:scripted@{url}",
                                          "--api-key-env", VAR, "--max-tokens", "32", "--background"])
        assert result.exit_code == 0, result.output
        with session_scope() as s:
            rater_job = s.scalars(select(RaterRun.job_id)).one()
        rate_proc: dict[str, bytes] = {}
        job = _wait_job(rater_job, rate_proc)
        assert job.status == "succeeded", job.error
        assert key not in result.output

    # the server got the key on every request, from workers that had it in their environment only
    assert len(headers) == len(prompts) >= 3 + 3
    assert all(h.get("Authorization") == f"Bearer {key}" for h in headers)
    for proc in (sample_proc, rate_proc):
        assert proc, "the worker's /proc entries were read while it ran"
        assert key.encode() not in proc["cmdline"] and b"jobs\x00run" in proc["cmdline"]
        assert f"{VAR}={key}".encode() in proc["environ"].split(b"\x00")

    with session_scope() as s:
        export_reasoning(s, Actor.system(), project_id, default_export_dir(project_id), ["jsonl", "csv", "parquet"])
        report = build_report(s, project_id)
        params = [j.params for j in s.scalars(select(Job)).all()]
        engines = [r.engine for r in s.scalars(select(SamplingRun)).all()]
    assert "Agreement report" in report and key not in report
    (data_dir / "reports").mkdir()
    (data_dir / "reports" / "agreement-report.html").write_text(report, encoding="utf-8")
    assert all(key not in str(p) for p in params) and engines[-1]["api_key_env"] == VAR
    assert_nowhere(key, data_dir)
    assert_nowhere(key[-12:], data_dir)  # not even a part of it


def test_a_key_from_streamlit_secrets_reaches_the_worker_by_its_environment(
        store_url: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Sample page with the key only in secrets.toml (here ``at.secrets``, under [api_keys]):
    the run starts, the server receives the key, and only the variable's name is stored."""
    key = f"sk-secret-{uuid.uuid4().hex}"
    name = "JE_SECRETS_ONLY_KEY"
    monkeypatch.delenv(name, raising=False)  # restored (removed) after the test
    project_id = make_tiny_project(tmp_path)
    headers: list[dict[str, str]] = []
    with chat_server(_reply, headers) as (url, _prompts):
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
        at.secrets["api_keys"] = {name: key}
        at.session_state[SESSION_KEY] = login_as("lead")
        at.run()
        at.switch_page("judgeeye_app/views/sample.py").run()
        at.radio(key="s_engine").set_value("openai").run()
        at.text_input(key="s_openai_base_url").set_value(url).run()
        at.text_input(key="s_openai_model").set_value("scripted").run()
        at.text_input(key="s_openai_api_key_env").set_value(name).run()
        assert not at.exception and not at.warning
        assert any("Streamlit secrets" in c.value for c in at.caption)
        at.number_input(key="s_k").set_value(1).run()
        at.number_input(key="s_limit").set_value(2).run()
        assert key not in at.code[0].value and name in at.code[0].value
        at.button(key="s_start").click().run()
        assert at.success and not at.exception
        with session_scope() as s:
            job_id = s.scalars(select(Job.id)).one()
        job = _wait_job(job_id, {})
        assert job.status == "succeeded", job.error
    assert headers and all(h.get("Authorization") == f"Bearer {key}" for h in headers)
    with session_scope() as s:
        run = s.scalars(select(SamplingRun).where(SamplingRun.project_id == project_id)
                        .order_by(SamplingRun.id.desc())).first()
        assert run.engine["api_key_env"] == name
    assert_nowhere_in_store(key)


def assert_nowhere_in_store(key: str) -> None:
    leaks = [(t, c) for t, c, v in store_text() if key in v]
    assert not leaks, f"the key is stored in {leaks}"


def test_a_key_typed_where_its_name_belongs_is_refused_unrepeated(store_url: str, tmp_path: Path) -> None:
    """Pasting the key into the "API key variable" box must not store it with the run."""
    key = "sk-proj-" + uuid.uuid4().hex
    hex_key = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    for typed in (key, hex_key, "OPENAI KEY", "x=y"):
        with pytest.raises(ValueError) as err:
            check_api_key_env(typed)
        assert typed not in str(err.value)
        with pytest.raises(ValueError) as err:
            EngineConfig(kind="openai", model="m", base_url="http://127.0.0.1:1/v1", api_key_env=typed)
        assert typed not in str(err.value)
    assert check_api_key_env(" OPENAI_API_KEY ") == "OPENAI_API_KEY" and check_api_key_env("") is None

    make_tiny_project(tmp_path)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.session_state[SESSION_KEY] = login_as("lead")
    at.run()
    at.switch_page("judgeeye_app/views/sample.py").run()
    at.radio(key="s_engine").set_value("openai").run()
    at.text_input(key="s_openai_model").set_value("scripted").run()
    at.text_input(key="s_openai_api_key_env").set_value(key).run()
    assert not at.exception
    assert at.error and all(key not in e.value for e in at.error)
    with pytest.raises(KeyError):  # no start button for a refused engine
        at.button(key="s_start")
    assert all(key not in c.value for c in at.code)
    assert_nowhere_in_store(key)

