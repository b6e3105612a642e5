"""The Refine page (critique map, refinement jobs) and the Codebooks page's side-by-side editor,
history and stale-save refusal, in AppTest against a real store. Refinements run through a real
loopback HTTP server with a scripted model (tests/chat_server.py), embeddings are real."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from apptest_login import SESSION_KEY, login_as
from chat_server import chat_server
from judgeeye.auth import Actor
from judgeeye.codebook import current_version, list_versions, to_spec
from judgeeye.engines import EngineConfig
from judgeeye.jobs import run_job
from judgeeye.refine import RefineSettings
from judgeeye.refine.runner import launch_refinement
from judgeeye.store import Critique, session_scope
from refine_data import make_project, save_as_another_author, scripted_reply, trace_for

REPO = Path(__file__).resolve().parents[1]


def _open(page: str, project_id: int, role: str = "admin", **state: object) -> AppTest:
    """The app on ``page``, logged in as a user of ``role``."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.session_state[SESSION_KEY] = login_as(role)
    at.session_state["project_id"] = project_id
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _refined_project(tmp_path) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    project_id = make_project(tmp_path, per_level=3, test_per_level=0)
    with chat_server(scripted_reply) as (url, _):
        engine = EngineConfig(kind="openai", model="scripted", base_url=url, max_retries=0)
        job_id = launch_refinement(project_id, RefineSettings(mode="both", engine=engine, n_inst=2, n_rubric=3,
                                                              k_max=3), actor=Actor.system(), start=False)
        assert run_job(job_id) == "succeeded"
    return project_id, job_id


def test_critique_map_lists_clusters_and_opens_a_trace(store_url: str, tmp_path, monkeypatch) -> None:
    project_id, job_id = _refined_project(tmp_path)

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the page must read the stored map, not compute one")

    from judgeeye.refine import embed, project2d, representatives

    for module, name in ((project2d, "project_2d"), (representatives, "project_2d"), (embed, "embed_texts"),
                         (representatives, "embed_texts"), (representatives, "cluster_level")):
        monkeypatch.setattr(module, name, never)
    at = _open("judgeeye_app/views/refine.py", project_id, rf_tab="Critique map")
    assert not at.error, [e.value for e in at.error]
    assert at.get("plotly_chart"), "the map is drawn"
    assert any(c.value.startswith("45 critiques · t-SNE of 50 PCA components · embeddings: all-MiniLM-L6-v2")
               for c in at.caption)
    labels = [e.label for e in at.expander]
    assert {f"Level {lv}: 9 critiques" for lv in range(1, 6)} <= {lab.split(",")[0] for lab in labels}
    tables = [d.value for d in at.dataframe if "representative" in d.value.columns]
    assert len(tables) == 5 and all(t["size"].sum() == 9 for t in tables)
    with session_scope() as s:
        rep = s.scalars(select(Critique).where(Critique.job_id == job_id, Critique.representative.is_(True),
                                               Critique.level == 4)).first()
        rep_id, rep_text = rep.id, rep.text
    assert any(rep_text in " | ".join(t["representative"]) for t in tables)
    at.selectbox(key="cm_pick").set_value(rep_id).run()
    assert not at.exception
    shown = [t.value for t in at.text]
    assert rep_text in shown
    assert any(v.startswith(trace_for(4, 0)[:20]) or v in {trace_for(4, i) for i in range(3)} for v in shown)

    at.session_state["rf_tab"] = "Refine"
    at.run()
    assert not at.exception
    assert any("Wrote codebook version 2" in s.value for s in at.success)


def test_refine_form_reads_the_chosen_runs(store_url: str, tmp_path) -> None:
    """The Refine tab lists the project's sampling runs; the refinement started there reads only
    the chosen one and records it on the version it writes."""
    import time

    from judgeeye.store import Job
    from refine_data import SECOND_RUN, add_run

    project_id = make_project(tmp_path, per_level=2, test_per_level=0)
    second = add_run(project_id)
    with chat_server(scripted_reply) as (url, prompts):
        at = _open("judgeeye_app/views/refine.py", project_id, role="author", rf_tab="Refine")
        runs = at.multiselect(key="rf_runs")
        assert len(runs.options) == 2 and runs.value == []
        assert any("other-model · k=1 · 10 accepted" in o for o in runs.options)
        assert at.selectbox(key="rf_embedder").value == "embedded-onnx"
        at.selectbox(key="rf_mode").set_value("instruction")
        at.radio(key="rf_engine").set_value("openai").run()
        at.text_input(key="rf_openai_base_url").set_value(url)
        at.text_input(key="rf_openai_model").set_value("scripted").run()
        at.multiselect(key="rf_runs").set_value([second]).run()
        at.button(key="rf_start").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            with session_scope() as s:
                job = s.scalars(select(Job).where(Job.kind == "refine")).one()
                if job.status not in ("queued", "running"):
                    break
            time.sleep(0.5)
    with session_scope() as s:
        job = s.scalars(select(Job).where(Job.kind == "refine")).one()
        assert job.status == "succeeded", job.error
        record = list_versions(s, project_id)[-1].inputs["refinement"]
    assert record["runs"] == [second] and record["runs_used"] == [second]
    analyses = next(p for p in prompts if "<analysis>" in p).split("\nAnalysis ")[1:]
    assert analyses and all(SECOND_RUN in a for a in analyses)


def test_editor_saves_refuses_a_stale_save_and_history_makes_current(store_url: str, tmp_path) -> None:
    project_id, _ = _refined_project(tmp_path)
    with session_scope() as s:
        v2 = to_spec(list_versions(s, project_id)[1])
    at = _open("judgeeye_app/views/codebooks.py", project_id, role="author")
    assert at.selectbox(key="ed_left").value == 1 and at.selectbox(key="ed_right").value == 2
    instr = at.text_area(key=f"ed_{project_id}_2_instr")
    assert instr.value == v2.instructions
    instr.set_value(v2.instructions + "\nStep 4: check the ending twice.").run()
    assert any("<ins " in h.proto.body and "twice" in h.proto.body for h in at.html), "the live diff shows the edit"
    at.text_input(key="ed_note").set_value("clearer last step").run()
    at.button(key="ed_save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    with session_scope() as s:
        versions = list_versions(s, project_id)
        v3 = versions[-1]
        assert v3.version == 3 and v3.origin == "edited" and v3.parent_id == versions[1].id
        assert v3.note == "clearer last step" and v3.author == "test-author"
        assert current_version(s, project_id).version == 3
    assert any("Saved as version 3" in m.value for m in at.success)
    assert at.selectbox(key="ed_right").value == 3

    # someone else saves while this editor is open on version 3
    save_as_another_author(project_id, 3, 5, "Masterfully layered.")
    at.text_area(key=f"ed_{project_id}_3_lvl_1").set_value("Nothing happens; no characters.").run()
    at.button(key="ed_save").click().run()
    assert not at.exception
    assert any("Not saved: someone saved version 4" in e.value for e in at.error)
    assert any("Masterfully" in h.proto.body for h in at.html), "the diff of what changed meanwhile is shown"
    with session_scope() as s:
        assert [v.version for v in list_versions(s, project_id)] == [1, 2, 3, 4]
        assert to_spec(current_version(s, project_id)).level_text(5) == "Masterfully layered."
    at.button(key="ed_rebase").click().run()
    at.button(key="ed_save").click().run()
    assert not at.exception and not at.error
    with session_scope() as s:
        versions = list_versions(s, project_id)
        assert versions[-1].version == 5 and to_spec(versions[-1]).level_text(1) == "Nothing happens; no characters."

    make = next(box for box in at.selectbox if box.label == "Make a version current")
    make.set_value(1).run()
    next(b for b in at.button if b.label == "Make current").click().run()
    assert not at.exception
    with session_scope() as s:
        assert current_version(s, project_id).version == 1
    assert next(box for box in at.selectbox if box.label == "Make a version current").value == 1


def test_history_names_parents_and_starts_on_the_current_version(store_url: str, tmp_path) -> None:
    """After a save makes v3 current, "make current" offers v3 (not v1, current when the page
    first ran), and the history names each version's parent (never "None")."""
    project_id, _ = _refined_project(tmp_path)
    at = _open("judgeeye_app/views/codebooks.py", project_id, role="author")
    assert next(box for box in at.selectbox if box.label == "Make a version current").value == 1
    with session_scope() as s:
        v2 = to_spec(list_versions(s, project_id)[1])
    at.text_area(key=f"ed_{project_id}_2_instr").set_value(v2.instructions + "\nStep 4: read twice.").run()
    at.button(key="ed_save").click().run()
    assert not at.exception and not at.error
    assert next(box for box in at.selectbox if box.label == "Make a version current").value == 3
    history = at.dataframe[-1].value
    assert list(history["Version"]) == ["v1", "v2", "v3"]
    assert list(history["Derived from"]) == ["— (first version)", "v1", "v2"]
    assert list(history["Origin"]) == ["original", "refined instructions and rubric", "edited"]
    assert list(history["Current"]) == ["", "", "current"]
    assert not any("None" in str(v) for v in history.to_numpy().ravel())


def test_codebook_view_fills_placeholders_and_diffs_show_words_not_markup(store_url: str, tmp_path) -> None:
    """The View tab shows the output format as the rater reads it ({scale_min} filled in), and the
    Diff tab shows deleted and inserted words as words: user text with Markdown or HTML in it is
    shown literally, never rendered."""
    project_id, _ = _refined_project(tmp_path)
    save_as_another_author(project_id, 1, 2, "The story is *very* simple ~~yes~~ <b>bold</b> with few elements.")
    at = _open("judgeeye_app/views/codebooks.py", project_id, role="author")
    texts = [t.value for t in at.text]
    assert any("an integer from 1 to 5" in t for t in texts)
    assert not any("{scale_" in t for t in texts) and not any("{scale_" in m.value for m in at.markdown)
    at.selectbox(key="cb_diff_a").set_value(1).run()
    diff = next(h.proto.body for h in at.html if "simple" in h.proto.body)
    assert "<del " in diff and "<ins " in diff
    assert "~~yes~~" in diff and "&lt;b&gt;bold&lt;/b&gt;" in diff and "<b>" not in diff  # shown, not rendered
    assert re.search(r"<del [^>]*>[^<]*somewhat", diff) and re.search(r"<ins [^>]*>[^<]*\*very\*", diff)
    assert not any("~~" in m.value for m in at.markdown)  # no Markdown strike-through anywhere


def test_compare_tab_rates_both_versions_and_shows_the_tests(store_url: str, tmp_path) -> None:
    import time

    from judgeeye.store import Job, RaterRun

    project_id = make_project(tmp_path, per_level=2, test_per_level=2)
    with chat_server(scripted_reply) as (url, _):
        engine = EngineConfig(kind="openai", model="scripted", base_url=url, max_retries=0)
        assert run_job(launch_refinement(project_id, RefineSettings(mode="instruction", engine=engine, n_inst=1),
                                         actor=Actor.system(), start=False)) == "succeeded"
        at = _open("judgeeye_app/views/refine.py", project_id, rf_tab="Compare versions")
        assert at.selectbox(key="cv_a").value == 1 and at.selectbox(key="cv_b").value == 2
        at.text_area(key="cv_raters").set_value(f"openai:rater-a@{url},max_tokens=32\n"
                                                f"openai:rater-b@{url},max_tokens=32").run()
        at.button(key="cv_go").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with session_scope() as s:
                jobs = s.scalars(select(Job).where(Job.kind == "evaluate")).all()
                if len(jobs) == 4 and all(j.status not in ("queued", "running") for j in jobs):
                    break
            time.sleep(0.5)
        with session_scope() as s:
            assert {j.status for j in s.scalars(select(Job).where(Job.kind == "evaluate")).all()} == {"succeeded"}
            assert {r.split for r in s.scalars(select(RaterRun)).all()} == {"test"}
        at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    frames = [d.value for d in at.dataframe]
    per_rater = next(f for f in frames if "tau A" in f.columns)
    tests = next(f for f in frames if "metric" in f.columns and "p" in f.columns)
    assert len(per_rater) == 2 and (per_rater["mse B"] == 0).all() and (per_rater["mse A"] > 0).all()
    assert list(tests["metric"]) == ["tau", "icc3", "mse", "inter-rater icc3"]


def test_refine_page_on_its_own_asks_for_a_login_and_is_closed_to_annotators(store_url: str, tmp_path) -> None:
    at = AppTest.from_file(str(REPO / "judgeeye_app" / "views" / "refine.py"), default_timeout=30).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Log in first."]
    assert not at.button and not at.text_input
    project_id = make_project(tmp_path, per_level=1, test_per_level=0)
    at = AppTest.from_file(str(REPO / "judgeeye_app" / "views" / "refine.py"), default_timeout=30)
    at.session_state[SESSION_KEY] = login_as("annotator")
    at.session_state["project_id"] = project_id
    at.run()
    assert not at.exception and at.error and not at.button  # refinement is for authors and up
    at = AppTest.from_file(str(REPO / "judgeeye_app" / "views" / "refine.py"), default_timeout=30)
    at.session_state[SESSION_KEY] = login_as("author")  # guideline authors refine codebooks
    at.session_state["project_id"] = project_id
    at.run()
    assert not at.exception and not at.error
