"""Codebook refinement: prompts, traces, critiques, real embeddings and clustering, the whole
pipeline through a real HTTP server, bad answers, resume, stale saves, measured comparison, and
(slow) `judgeeye refine --mode both` with the embedded models."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from chat_server import chat_server
from judgeeye.auth import AccessDenied, Actor
from judgeeye.cli import app
from judgeeye.codebook import StaleVersionError, current_version, get_version, list_versions, load_builtin, to_spec
from judgeeye.codebook.editor import EditError, default_pair, edited_spec, save_edit
from judgeeye.engines import EngineConfig
from judgeeye.jobs import run_job
from judgeeye.refine import RefineSettings, TraceSourceError, load_trace_set, parse_critiques, select_per_level
from judgeeye.refine.cluster import cluster_level
from judgeeye.refine.embed import embed_texts
from judgeeye.refine.project2d import project_2d
from judgeeye.refine.prompts import CRITIQUE_PROMPT, INSTRUCTION_PROMPT, RUBRIC_PROMPT, critique_prompt, fill
from judgeeye.refine.runner import launch_refinement, resume_refinement, version_of_job
from judgeeye.refine.embed import DEFAULT_EMBEDDER
from judgeeye.store import Candidate, Critique, CritiqueMap, Item, Job, session_scope
from refine_data import SECOND_RUN, REFINED_MARKER, add_run, make_project, refined_instructions, scripted_reply

runner = CliRunner()
SYSTEM = Actor.system()
AUTHOR = Actor(None, "al", "author")


def _server_engine(url: str, model: str = "scripted") -> EngineConfig:
    return EngineConfig(kind="openai", model=model, base_url=url, max_retries=0, max_concurrency=4)


# ----------------------------------------------------------------------------- prompts, parsing
def test_prompts_are_appendix_d_verbatim_and_filled_in_one_pass() -> None:
    assert ("Your final annotation guidelines should be put into <codebook>...</codebook> tag."
            in INSTRUCTION_PROMPT.replace("Your\nfinal", "Your final"))
    assert "each on a new line, without bullet points" in CRITIQUE_PROMPT
    assert "Only modify the criterion part." in RUBRIC_PROMPT
    spec = load_builtin("hanna_complexity")
    text = critique_prompt(spec, "The plot {dimension} is thin. <analysis>")
    assert "The plot {dimension} is thin." in text  # a trace's braces are not placeholders
    assert "scoring the complexity of a story" in text
    with pytest.raises(KeyError, match="cot"):
        fill(CRITIQUE_PROMPT, {"dimension": "x", "generation_type": "y"})


def test_parse_critiques_one_sentence_per_line() -> None:
    text = ("Here are the critiques:\n- The plot is thin.\n2. Characters lack motives.\n\n"
            "• The plot is thin.\n<analysis>\nok\n\"The ending is abrupt and rushed.\"\nRating: <rating>2</rating>")
    assert parse_critiques(text) == ["The plot is thin.", "Characters lack motives.",
                                     "The ending is abrupt and rushed."]
    assert parse_critiques("") == []


def test_codebook_block_refuses_bad_answers_and_ends_loops() -> None:
    from judgeeye.refine.llm import BadAnswer, codebook_block

    assert codebook_block("ok <codebook>\nA\n</codebook> <codebook>\nB b\n</codebook>", "stop") == "\nB b\n"
    assert codebook_block("<codebook>\nSteps to follow.", "stop") == "\nSteps to follow."  # ended its turn
    for text, finish, reason in [("no tags here", "stop", "no <codebook>"),
                                 ("<codebook> \n </codebook>", "stop", "empty"),
                                 ("<codebook>\nStep 1: read the", "length", "cut off")]:
        with pytest.raises(BadAnswer, match=reason):
            codebook_block(text, finish)
    looping = "<codebook>\nRead the story twice.\nCount the characters now.\nRead the story twice.\nRead the"
    assert codebook_block(looping, "length") == "\nRead the story twice.\nCount the characters now."
    rubric = "<codebook>\nRating scale:\n1: None.\n2: Few.\n\nNote: rate the subj"
    with pytest.raises(BadAnswer, match="cut off"):
        codebook_block(rubric, "length")
    assert codebook_block(rubric, "length", whole_paragraphs=True) == "\nRating scale:\n1: None.\n2: Few."


# ----------------------------------------------------------------------------- traces
def test_trace_set_is_first_accepted_per_item_and_never_the_test_split(store_url: str, tmp_path) -> None:
    project_id = make_project(tmp_path, per_level=3, test_per_level=1)
    with session_scope() as s:
        traces = load_trace_set(s, project_id)
        accepted = dict(s.execute(select(Candidate.item_id, Candidate.id).where(Candidate.accepted.is_(True))).all())
        test_items = set(s.scalars(select(Item.id).where(Item.split == "test")).all())
    assert len(traces.rows) == 15 and traces.levels() == [1, 2, 3, 4, 5]
    assert all(r.candidate_id == accepted[r.item_id] for r in traces.rows)
    assert not {r.item_id for r in traces.rows} & test_items
    assert all("<rating>" in r.text for r in traces.rows)
    with pytest.raises(TraceSourceError, match="test split"):
        with session_scope() as s:
            load_trace_set(s, project_id, splits=["train", "test"])
    with pytest.raises(ValueError, match="test"):
        RefineSettings(splits=["test"])
    picked = select_per_level(traces.rows, 2, seed=1, purpose="x")
    assert {lv: len(v) for lv, v in picked.items()} == {lv: 2 for lv in range(1, 6)}
    assert picked == select_per_level(traces.rows, 2, seed=1, purpose="x")  # a resume draws the same
    assert all(len(v) == 3 for v in select_per_level(traces.rows, 50).values())


# ----------------------------------------------------------------------------- embeddings, clusters
TOPICS = {  # three unrelated topics: silhouette should find exactly three clusters
    "spelling": ["There are many spelling mistakes.", "The text is full of typos.",
                 "Grammar errors appear in every sentence.", "Punctuation is used incorrectly throughout.",
                 "Words are misspelled again and again."],
    "space": ["The story takes place on a spaceship.", "Astronauts travel between distant planets.",
              "A rocket launches toward Mars.", "The crew explores an alien galaxy.",
              "Stars and planets fill the sky of the space station."],
    "food": ["The characters cook a big dinner.", "A recipe for apple pie is described.",
             "The family eats soup and bread.", "The chef prepares a delicious meal.",
             "They bake cookies in the kitchen."],
}


def test_kmeans_with_silhouette_on_real_embeddings_finds_the_topics() -> None:
    texts = [t for group in TOPICS.values() for t in group]
    truth = np.repeat(np.arange(3), 5)
    x = embed_texts(texts, "embedded")
    assert x.shape == (15, 384) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-4)
    result = cluster_level(x, k_max=6, seed=0)
    assert result.chosen_by == "silhouette" and result.k == 3
    assert max(result.scores, key=result.scores.get) == 3 and set(result.scores) == {2, 3, 4, 5, 6}
    for c in result.clusters:  # every cluster is exactly one topic
        assert len(set(truth[c.members])) == 1 and c.size == 5
        centroid = x[c.members].mean(axis=0)
        sims = x[c.members] @ (centroid / np.linalg.norm(centroid))
        assert c.representatives == [c.members[int(np.argmax(sims))]]
    assert result.silhouette == pytest.approx(result.scores[3])
    two = cluster_level(x, 2, per_cluster=2)
    assert two.chosen_by == "given" and two.k == 2 and all(len(c.representatives) == 2 for c in two.clusters)
    assert cluster_level(x[:2]).k == 1 and cluster_level(x[:2]).chosen_by == "too few points"
    assert cluster_level(x[:4], 9).k == 4  # clipped to the points


def test_projection_methods() -> None:
    x = embed_texts([t for group in TOPICS.values() for t in group], "embedded")
    for method in ("pca", "tsne", "auto"):
        coords, used = project_2d(x, method, seed=0)
        assert coords.shape == (15, 2) and np.isfinite(coords).all()
        assert used in ("pca", "tsne", "umap")
    assert project_2d(x[:3], "tsne")[1] == "pca"  # too few points for t-SNE
    with pytest.raises(ValueError, match="unknown projection"):
        project_2d(x, "mds")


# ----------------------------------------------------------------------------- the pipeline
def test_refine_both_through_a_real_server_records_its_inputs(store_url: str, tmp_path) -> None:
    project_id = make_project(tmp_path)
    with chat_server(scripted_reply) as (url, prompts):
        settings = RefineSettings(mode="both", engine=_server_engine(url), n_inst=2, n_rubric=3, k_max=3,
                                  author="tester", note="first refinement")
        job_id = launch_refinement(project_id, settings, actor=SYSTEM, start=False)
        assert run_job(job_id) == "succeeded"
    with session_scope() as s:
        row = version_of_job(s, project_id, job_id)
        parent = get_version(s, project_id, 1)
        new, old = to_spec(row), to_spec(parent)
        critiques = s.scalars(select(Critique).where(Critique.job_id == job_id)).all()
        test_texts = [i.fields["story"] for i in s.scalars(select(Item).where(Item.split == "test")).all()]
        current = current_version(s, project_id).version
    assert row.version == 2 and row.parent_id == parent.id and row.origin == "refined_both"
    assert current == 1  # a refined version is not made current unless asked
    assert row.author == "tester" and row.note == "first refinement"
    assert new.instructions == refined_instructions() and new.instructions != old.instructions
    assert new.rubric != old.rubric and new.levels == old.levels
    record = row.inputs["refinement"]
    assert record["job_id"] == job_id and record["engine"]["base_url"] == url
    inst, rub = record["instruction"], record["rubric"]
    assert len(inst["trace_ids"]) == 10 and inst["per_level"] == {str(lv): 2 for lv in range(1, 6)}
    assert inst["prompt"].startswith("<instruction>\nYou will be given a list of analysis")
    assert len(rub["trace_ids"]) == 15 and sorted(rub["critique_ids"]) == sorted(c.id for c in critiques)
    assert rub["prompt"] in prompts and REFINED_MARKER in rub["prompt"]  # rubric refined after instructions
    assert set(rub["representative_ids"]) == {c.id for c in critiques if c.representative}
    levels = rub["clusters"]["levels"]
    assert set(levels) == {"1", "2", "3", "4", "5"} and all(1 <= lv["k"] <= 3 for lv in levels.values())
    assert all(c.embedding is not None and c.x is not None and c.cluster is not None for c in critiques)
    assert len(critiques) == 45  # three sentences from each of the 15 traces
    with session_scope() as s:  # the map is stored with how it was made: a page only reads it
        stored = s.scalars(select(CritiqueMap).where(CritiqueMap.job_id == job_id)).one()
        assert (stored.points, stored.method, stored.embedder) == (45, "tsne", DEFAULT_EMBEDDER)
        assert stored.pca_components == 50 and set(stored.seconds) == {"embed", "cluster", "project"}
    assert rub["clusters"]["embedder"] == DEFAULT_EMBEDDER
    assert not any(t in p for t in test_texts for p in prompts)  # the test split is never read
    assert sum("list all the critique" in p for p in prompts) == 15


def test_refinement_reads_the_chosen_sampling_runs_and_records_them(store_url: str, tmp_path) -> None:
    """Every run of the project by default; with ``--run`` (repeatable) only those runs, recorded
    on the refined version; a run of another project or none at all is refused before any job."""
    project_id = make_project(tmp_path, per_level=2, test_per_level=0)
    second = add_run(project_id)
    with session_scope() as s:
        first = s.scalar(select(Candidate.run_id).where(Candidate.run_id != second).limit(1))
        assert [r.run_id for r in load_trace_set(s, project_id).rows] == [first] * 10  # first accepted: run 1
        picked = load_trace_set(s, project_id, runs=[second])
        assert {r.run_id for r in picked.rows} == {second} and all(SECOND_RUN in r.text for r in picked.rows)
        assert picked.describe()["runs"] == [second] and picked.describe()["per_run"] == {str(second): 10}
    with chat_server(scripted_reply) as (url, prompts):
        result = runner.invoke(app, ["refine", "--project", str(project_id), "--mode", "instruction",
                                     "--engine", f"openai:scripted@{url}", "--run", str(second), "--n-inst", "2"])
        assert result.exit_code == 0, result.output
        analyses = next(p for p in prompts if "<analysis>" in p).split("\nAnalysis ")[1:]
        assert len(analyses) == 10 and all(SECOND_RUN in a for a in analyses)  # 2 per level, all from that run
        both = runner.invoke(app, ["refine", "--project", str(project_id), "--mode", "instruction",
                                   "--engine", f"openai:scripted@{url}", "--run", str(first), "--run", str(second)])
        assert both.exit_code == 0, both.output
        for bad in ("999", "0"):
            refused = runner.invoke(app, ["refine", "--project", str(project_id), "--engine",
                                          f"openai:scripted@{url}", "--run", bad])
            assert refused.exit_code == 2 and f"has no sampling run {bad}" in refused.output, refused.output
    with session_scope() as s:
        versions = list_versions(s, project_id)
        assert len(versions) == 3 and s.scalar(select(func.count()).select_from(Job)) == 2  # refused: no job
        one, two = (v.inputs["refinement"] for v in versions[1:])
    assert one["runs"] == [second] and one["runs_used"] == [second] and one["dataset"]["runs"] == [second]
    assert two["runs"] == sorted([first, second]) and two["runs_used"] == [first]  # first accepted wins per item
    assert "sampling run(s)" in one["dataset"]["source"]


def _bad(kind: str):  # type: ignore[no-untyped-def]
    def reply(prompt: str, body: dict) -> tuple[str, str]:
        if "list all the critique" in prompt:
            return scripted_reply(prompt)
        if kind == "no tags":
            return "The guidelines are fine as they are.", "stop"
        if kind == "empty":
            return "<codebook>\n  \n</codebook>", "stop"
        return "<codebook>\nStep 1: read the story and", "length"
    return reply


@pytest.mark.parametrize("kind, reason", [("no tags", "no <codebook>"), ("empty", "is empty"),
                                          ("cut off", "cut off at the token limit")])
def test_bad_answers_are_retried_then_reported_and_nothing_is_written(store_url: str, tmp_path, kind: str,
                                                                     reason: str) -> None:
    project_id = make_project(tmp_path, per_level=1, test_per_level=0)
    with chat_server(_bad(kind)) as (url, prompts):
        result = runner.invoke(app, ["refine", "--project", str(project_id), "--mode", "instruction",
                                     "--engine", f"openai:scripted@{url}", "--attempts", "3"])
    assert result.exit_code == 1, result.output
    error = next(line for line in result.output.splitlines() if line.startswith("error: refinement failed"))
    assert "instruction refinement: no usable answer after 3 attempt(s)" in error
    assert error.count(reason) == 3 and "no codebook version was written" in error
    assert len(prompts) == 3
    with session_scope() as s:
        assert len(list_versions(s, project_id)) == 1
        assert s.scalars(select(Job)).one().status == "failed"


def test_a_failed_rubric_step_resumes_without_extracting_again(store_url: str, tmp_path) -> None:
    project_id = make_project(tmp_path, per_level=2, test_per_level=0)

    def unchanged_rubric(prompt: str, body: dict) -> tuple[str, str]:
        if "<critiques>" in prompt:  # the original rubric back: not a refinement
            original = prompt.split("<original_codebook>\n", 1)[1].split("\n</original_codebook>")[0]
            return f"<codebook>\n{original}\n</codebook>", "stop"
        return scripted_reply(prompt)

    with chat_server(unchanged_rubric) as (url, _):
        settings = RefineSettings(mode="rubric", engine=_server_engine(url), n_rubric=2, attempts=2)
        first = launch_refinement(project_id, settings, actor=SYSTEM, start=False)
        assert run_job(first) == "failed"
    with session_scope() as s:
        assert "leaves the rubric unchanged" in s.get(Job, first).error
        kept = s.scalar(select(func.count()).select_from(Critique).where(Critique.job_id == first))
        assert len(list_versions(s, project_id)) == 1
    assert kept == 30
    with chat_server(scripted_reply) as (url, prompts):
        with session_scope() as s:  # the same settings, now pointing at a model that answers well
            job = s.get(Job, first)
            job.params = {**job.params, "settings": {**job.params["settings"],
                                                      "engine": _server_engine(url).model_dump(mode="json")}}
        second = resume_refinement(first, actor=SYSTEM, start=False)
        assert run_job(second) == "succeeded"
    assert not any("list all the critique" in p for p in prompts)  # critiques were adopted, not redone
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Critique).where(Critique.job_id == second)) == 30
        row = version_of_job(s, project_id, second)
        assert row.origin == "refined_rubric" and to_spec(row).instructions == to_spec(get_version(s, project_id, 1)).instructions


# ----------------------------------------------------------------------------- editor saves
def test_a_stale_save_is_refused_with_the_diff_and_nothing_is_overwritten(store_url: str, tmp_path) -> None:
    project_id = make_project(tmp_path, per_level=1, test_per_level=0)
    with session_scope() as s:
        base = to_spec(get_version(s, project_id, 1))
        seen = current_version(s, project_id).version
    mine = edited_spec(base, base.instructions + "\nRead twice.", {lv.level: lv.text for lv in base.rubric})
    theirs = edited_spec(base, base.instructions, {**{lv.level: lv.text for lv in base.rubric}, 3: "Some depth."})
    with session_scope() as s:  # someone else saves first
        save_edit(s, project_id, theirs, actor=Actor(None, "bea", "author"), edited_from=1, seen_current=seen,
                  note="level 3")
    with pytest.raises(StaleVersionError) as err:
        with session_scope() as s:
            save_edit(s, project_id, mine, actor=AUTHOR, edited_from=1, seen_current=seen, note="mine")
    assert err.value.current_version == 2 and err.value.diff.changed_sections == ["rubric:3"]
    with session_scope() as s:
        assert [v.version for v in list_versions(s, project_id)] == [1, 2]
        assert to_spec(current_version(s, project_id)).level_text(3) == "Some depth."
        row = save_edit(s, project_id, mine, actor=AUTHOR, edited_from=1, seen_current=2, note="mine, after review")
        assert (row.version, row.origin, row.author, row.parent_id) == (3, "edited", "al", get_version(s, project_id, 1).id)
        assert default_pair(s, project_id) == (1, 3)
    with pytest.raises(AccessDenied):  # annotators may not edit codebooks
        with session_scope() as s:
            save_edit(s, project_id, mine, actor=Actor(None, "ann", "annotator"), edited_from=3, seen_current=3)
    with pytest.raises(AccessDenied):
        launch_refinement(project_id, RefineSettings(), actor=Actor(None, "ann", "annotator"), start=False)
    with pytest.raises(EditError, match="instructions are empty"):
        edited_spec(base, "  ", {lv.level: lv.text for lv in base.rubric})
    with pytest.raises(EditError, match="level"):
        edited_spec(base, "x", {1: "a"})


# ----------------------------------------------------------------------------- measured comparison
def test_codebook_versions_compared_by_m_raters_on_the_test_split(store_url: str, tmp_path) -> None:
    from judgeeye.evaluate import RaterSpec
    from judgeeye.refine.compare import compare_versions, incomplete_runs, plan_comparison, rate_inline

    project_id = make_project(tmp_path, per_level=2, test_per_level=3)
    with chat_server(scripted_reply) as (url, prompts):
        job_id = launch_refinement(project_id, RefineSettings(mode="instruction", engine=_server_engine(url),
                                                              n_inst=1), actor=SYSTEM, start=False)
        assert run_job(job_id) == "succeeded"
        raters = [RaterSpec(engine=_server_engine(url, "rater-a"), max_tokens=32),
                  RaterSpec(engine=_server_engine(url, "rater-b"), max_tokens=32)]
        with session_scope() as s:
            plan = plan_comparison(s, project_id, 1, 2, raters, actor=Actor.system())
            assert plan.split == "test" and len(plan.run_ids) == 4 and incomplete_runs(s, plan) == plan.run_ids
        assert set(rate_inline(plan.run_ids, log=lambda _: None).values()) == {"completed"}
        with session_scope() as s:  # asking again reuses the completed runs
            assert plan_comparison(s, project_id, 1, 2, raters, actor=Actor.system()).run_ids == plan.run_ids
            result = compare_versions(s, plan, n_boot=200)
    rows = {r["rater"]: r for r in result.per_rater()}
    assert len(rows) == 2 and result.group.n_items == 15
    for r in rows.values():
        assert r["mse B"] == 0 and r["mse A"] > 0 and r["tau B"] > r["tau A"]
    tests = {t["metric"]: t for t in result.tests()}
    assert tests["mse"]["mean B"] < tests["mse"]["mean A"] and tests["mse"]["test"]
    assert "inter-rater icc3" in tests and tests["inter-rater icc3"]["mean B"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="different codebook versions"):
        with session_scope() as s:
            plan_comparison(s, project_id, 2, 2, raters, actor=Actor.system())


# ----------------------------------------------------------------------------- validation feedback
def test_feedback_round_keeps_a_revision_only_when_validation_tau_improves(store_url: str, tmp_path) -> None:
    from judgeeye.evaluate import RaterSpec
    from judgeeye.refine.feedback import feedback_round
    from judgeeye.store import RaterRun

    project_id = make_project(tmp_path, per_level=1, val_per_level=2, test_per_level=2)
    with chat_server(scripted_reply) as (url, prompts):
        rater = RaterSpec(engine=_server_engine(url, "rater-a"), max_tokens=32)
        kept = feedback_round(project_id, 1, rater, _server_engine(url, "reviser-good"), actor=AUTHOR,
                              log=lambda _: None)
        dropped = feedback_round(project_id, 1, rater, _server_engine(url, "reviser-same"), actor=AUTHOR,
                                 log=lambda _: None)
    assert kept.accepted and kept.tau_candidate > kept.tau_base and kept.cases == 2  # the two level-3 items
    assert not dropped.accepted and dropped.tau_candidate == pytest.approx(dropped.tau_base)
    assert dropped.base_run == kept.base_run  # the base codebook was rated once
    with session_scope() as s:
        rows = {v.version: v for v in list_versions(s, project_id)}
        assert rows[kept.candidate_version].origin == "refined_feedback"
        assert rows[dropped.candidate_version].origin == "rejected_feedback"
        assert "not kept" in rows[dropped.candidate_version].note
        assert rows[kept.candidate_version].inputs["feedback"]["split"] == "validation"
        assert current_version(s, project_id).version == 1
        assert {r.split for r in s.scalars(select(RaterRun)).all()} == {"validation"}
        test_texts = [i.fields["story"] for i in s.scalars(select(Item).where(Item.split == "test")).all()]
    assert not any(t in p for t in test_texts for p in prompts)  # the test split is never looked at
    revision = next(p for p in prompts if "<disagreements>" in p)
    assert "Gold rating: 3" in revision and "Rater's rating: 4" in revision


# ----------------------------------------------------------------------------- embedded models
@pytest.mark.slow
def test_cli_refine_both_with_the_embedded_models(store_url: str, tmp_path) -> None:
    project_id = make_project(tmp_path, per_level=1, test_per_level=0)
    result = runner.invoke(app, [
        "refine", "--project", str(project_id), "--mode", "both", "--n-inst", "1", "--n-rubric", "1",
        "--max-tokens", "200", "--critique-max-tokens", "40", "--batch-size", "8", "--attempts", "3",
        "--seed", "0"])
    assert result.exit_code == 0, result.output
    with session_scope() as s:
        versions = list_versions(s, project_id)
        new, parent = to_spec(versions[-1]), to_spec(versions[0])
        record = versions[-1].inputs["refinement"]
        n_crit = s.scalar(select(func.count()).select_from(Critique))
    assert len(versions) == 2 and versions[-1].origin == "refined_both"
    assert new.instructions != parent.instructions and new.rubric != parent.rubric
    assert record["engine"]["model"] == "embedded" and record["instruction"]["prefill"] == "<codebook>\n"
    assert len(record["rubric"]["trace_ids"]) == 5 and len(record["rubric"]["critique_ids"]) == n_crit > 0


def test_umap_projection_when_installed() -> None:
    pytest.importorskip("umap")
    x = embed_texts([t for group in TOPICS.values() for t in group], "embedded")
    coords, used = project_2d(x, "umap", seed=0)
    assert used == "umap" and coords.shape == (15, 2) and np.isfinite(coords).all()
