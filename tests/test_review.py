"""Select-and-validate on a real SQLite store: users and roles, rounds, leases, actions with
their event log and undo, agreement, adjudication, and the D_reason export in every format."""

from __future__ import annotations

import csv
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from judgeeye.auth import (
    AccessDenied,
    Actor,
    UserError,
    add_user,
    authenticate,
    ensure_first_admin,
    hash_password,
    refresh_actor,
    set_active,
    set_role,
    user_for_identity,
    verify_password,
)
from judgeeye.cli import app
from judgeeye.review import (
    ReviewError,
    adjudicate,
    annotator_progress,
    choice_agreement,
    choose,
    disagreements,
    display_order,
    export_reasoning,
    get_round,
    my_progress,
    next_item,
    none_fits,
    open_round,
    previous_item,
    reason_rows,
    round_progress,
    save_edit,
    shown_candidates,
    skip,
    undo,
)
from judgeeye.review.queue import now_utc
from judgeeye.store import Annotator, Codebook, Project, ReviewTask, Selection, SelectionEvent, session_scope
from review_data import SYSTEM, make_project, make_users

runner = CliRunner()


@pytest.fixture
def team(store_url: str) -> dict[str, Actor]:
    return make_users(("ann", "annotator"), ("bob", "annotator"), ("cat", "annotator"),
                      ("lea", "lead"), ("aut", "author"), ("adm", "admin"))


def _open(run_id: int, names: list[str], **kw) -> int:  # type: ignore[no-untyped-def]
    with session_scope() as s:
        return open_round(s, SYSTEM, run_id, names, **kw).id


def _next(actor: Actor, round_id: int, **kw) -> int | None:  # type: ignore[no-untyped-def]
    with session_scope() as s:
        return next_item(s, actor, round_id, **kw)


def _shown(round_id: int, item_id: int) -> list[int]:
    with session_scope() as s:
        return [c.id for c in shown_candidates(s, get_round(s, round_id), item_id)]


def _selection(actor: Actor, item_id: int) -> Selection:
    with session_scope() as s:
        return s.scalar(select(Selection).where(Selection.item_id == item_id, Selection.annotator_id == actor.id))


# --------------------------------------------------------------------------- users and access


def test_passwords_are_hashed_with_argon2_and_verified(store_url: str) -> None:
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$") and "correct horse" not in hashed
    assert verify_password(hashed, "correct horse") and not verify_password(hashed, "wrong horse")
    assert not verify_password(None, "anything") and not verify_password("garbage", "anything")
    with session_scope() as s:
        user, generated = add_user(s, SYSTEM, "zoe", "annotator")
        assert generated and len(generated) >= 12 and user.password_hash != generated
        assert verify_password(user.password_hash, generated)
        assert authenticate(s, "zoe", generated) == Actor(user.id, "zoe", "annotator")
        assert authenticate(s, "zoe", "not it") is None and authenticate(s, "nobody", generated) is None
        with pytest.raises(UserError, match="8 characters"):
            add_user(s, SYSTEM, "short", "annotator", password="abc")
        with pytest.raises(UserError, match="unknown role"):
            add_user(s, SYSTEM, "eve", "superuser", password="long enough")
        with pytest.raises(UserError, match="exists already"):
            add_user(s, SYSTEM, "zoe", "annotator", password="long enough")
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Annotator)) == 1  # the bad ones wrote nothing


def test_first_admin_is_created_once_and_deactivated_users_are_out(store_url: str) -> None:
    with session_scope() as s:
        password = ensure_first_admin(s)
    assert password
    with session_scope() as s:
        assert ensure_first_admin(s) is None
        admin = authenticate(s, "admin", password)
        assert admin is not None and admin.role == "admin"
        with pytest.raises(UserError, match="last active admin"):
            set_role(s, admin, "admin", "lead")
        user, _ = add_user(s, admin, "kim", "annotator", password="kim-password")
        kim = Actor(user.id, "kim", "annotator")
        set_active(s, admin, "kim", False)
        assert authenticate(s, "kim", "kim-password") is None
        assert refresh_actor(s, kim) is None  # a session of a deactivated user ends
        set_active(s, admin, "kim", True)
        set_role(s, admin, "kim", "lead")
        assert refresh_actor(s, kim) == Actor(user.id, "kim", "lead")  # a new role applies at once
        assert user_for_identity(s, "KIM", None) == Actor(user.id, "kim", "lead")
        assert user_for_identity(s, "stranger@example.org", "stranger") is None


def test_roles_are_enforced_by_the_actions_themselves(team: dict[str, Actor]) -> None:
    project_id, run_id = make_project(4)
    ann, aut, lea = team["ann"], team["aut"], team["lea"]
    with session_scope() as s:
        for actor in (ann, aut):
            with pytest.raises(AccessDenied):
                open_round(s, actor, run_id, ["ann"])
            with pytest.raises(AccessDenied):
                add_user(s, actor, "mallory", "admin", password="password-m")
            with pytest.raises(AccessDenied):
                set_role(s, actor, "ann", "admin")
        with pytest.raises(AccessDenied):
            add_user(s, lea, "mallory", "admin", password="password-m")
        round_id = open_round(s, lea, run_id, ["ann"]).id  # a lead may
    item = _next(ann, round_id)
    cand = _shown(round_id, item)[0]
    with session_scope() as s:
        with pytest.raises(AccessDenied):
            adjudicate(s, ann, item, verdict="chosen", candidate_id=cand)
        with pytest.raises(AccessDenied):
            export_reasoning(s, ann, project_id, "/nonexistent/never-written")
        with pytest.raises(AccessDenied, match="not an annotator of review round"):
            next_item(s, team["bob"], round_id)  # not a member of the round
        with pytest.raises(AccessDenied):
            choose(s, team["bob"], round_id, item, cand)
        with pytest.raises(AccessDenied):
            choose(s, None, round_id, item, cand)  # type: ignore[arg-type]
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(SelectionEvent).where(SelectionEvent.action != "assign")) == 0


# --------------------------------------------------------------------------- rounds and the queue


def test_open_round_picks_items_overlap_and_validates(team: dict[str, Actor]) -> None:
    _, run_id = make_project(10, unaccepted_every=5)  # items 0 and 5 have no accepted candidate
    with session_scope() as s:
        rnd = open_round(s, SYSTEM, run_id, ["ann", "bob", "cat"], overlap=1, high_overlap=3,
                         high_overlap_share=0.5, seed=1)
        tasks = s.scalars(select(ReviewTask).where(ReviewTask.round_id == rnd.id)).all()
        assert len(tasks) == 8 and sorted(t.required for t in tasks) == [1] * 4 + [3] * 4
        with_all = open_round(s, SYSTEM, run_id, ["ann"], include_unaccepted=True)
        assert s.scalar(select(func.count()).select_from(ReviewTask).where(ReviewTask.round_id == with_all.id)) == 10
        item_without = min(t.item_id for t in s.scalars(select(ReviewTask).where(ReviewTask.round_id == with_all.id)))
        assert len(shown_candidates(s, with_all, item_without)) == 3  # all candidates when none accepted
        for kwargs, message in [
            ({"overlap": 3}, "needs at least 3 annotators"),
            ({"overlap": 0}, "at least 1"),
            ({"high_overlap_share": 1.5}, "between 0 and 1"),
            ({"max_shown": 12}, "between 1 and 9"),
        ]:
            with pytest.raises(ReviewError, match=message):
                open_round(s, SYSTEM, run_id, ["ann", "bob"], **kwargs)
        with pytest.raises(ReviewError, match="no user 'nobody'"):
            open_round(s, SYSTEM, run_id, ["ann", "nobody"])
        with pytest.raises(ReviewError, match="no sampling run 999"):
            open_round(s, SYSTEM, 999, ["ann"])


def test_leases_keep_items_apart_until_they_expire(team: dict[str, Actor]) -> None:
    _, run_id = make_project(3)
    ann, bob, cat = team["ann"], team["bob"], team["cat"]
    round_id = _open(run_id, ["ann", "bob", "cat"], lease_minutes=10)
    first = _next(ann, round_id)
    assert _next(ann, round_id) == first  # a reload gives the same item back
    second = _next(bob, round_id)
    third = _next(cat, round_id)
    assert len({first, second, third}) == 3
    assert _next(cat, round_id) == third
    with session_scope() as s:
        cat_choice = shown_candidates(s, get_round(s, round_id), third)[0].id
        choose(s, cat, round_id, third, cat_choice)
    assert _next(cat, round_id) is None  # every item is leased or done
    later = now_utc() + timedelta(minutes=11)
    assert _next(cat, round_id, now=later) == first  # ann's lease ran out: cat may take it
    with session_scope() as s:  # ann comes back late and still saves: nothing is lost
        choose(s, ann, round_id, first, _shown(round_id, first)[0])
    with session_scope() as s:
        assert round_progress(s, round_id).reviews_submitted == 2


def test_overlap_hands_an_item_to_as_many_people_as_it_needs(team: dict[str, Actor]) -> None:
    _, run_id = make_project(2)
    round_id = _open(run_id, ["ann", "bob", "cat"], overlap=2)
    ann_item, bob_item, cat_item = (_next(team[n], round_id) for n in ("ann", "bob", "cat"))
    assert ann_item == bob_item and cat_item != ann_item
    for name, item in (("ann", ann_item), ("bob", bob_item)):
        with session_scope() as s:
            choose(s, team[name], round_id, item, _shown(round_id, item)[0])
    with session_scope() as s:
        progress = round_progress(s, round_id)
    assert progress.done == 1 and progress.reviews_submitted == 2 and progress.reviews_required == 4
    assert _next(team["ann"], round_id) == cat_item  # the second item still needs one more
    assert _next(team["bob"], round_id) is None


# --------------------------------------------------------------------------- actions, events, undo


def test_actions_states_events_and_codebook_version(team: dict[str, Actor]) -> None:
    project_id, run_id = make_project(4)
    ann, bob = team["ann"], team["bob"]
    round_id = _open(run_id, ["ann", "bob"])
    with session_scope() as s:  # a newer codebook version is in force when the reviews happen
        project = s.get(Project, project_id)
        current = s.get(Codebook, project.current_codebook_id)
        newer = Codebook(project_id=project_id, version=2, parent_id=current.id, name="v2",
                         instructions="Rate it.", rubric=current.rubric, output_format=current.output_format)
        s.add(newer)
        s.flush()
        project.current_codebook_id = newer.id
        newer_id = newer.id
    items = []
    item = _next(ann, round_id)
    shown = _shown(round_id, item)
    with session_scope() as s:
        choose(s, ann, round_id, item, shown[1])
        with pytest.raises(ReviewError, match="not one of the traces shown"):
            choose(s, ann, round_id, item, 10_000)
    sel = _selection(ann, item)
    assert (sel.state, sel.verdict, sel.candidate_id, sel.codebook_id) == ("submitted", "chosen", shown[1], newer_id)
    items.append(item)

    item = _next(ann, round_id)
    with session_scope() as s:
        none_fits(s, ann, round_id, item)
    assert (_selection(ann, item).state, _selection(ann, item).verdict) == ("submitted", "none_fits")
    items.append(item)

    item = _next(ann, round_id)
    source = _shown(round_id, item)[0]
    with session_scope() as s:
        save_edit(s, ann, round_id, item, source, "The plot is simple, but the twist at the end is not.")
    draft = _selection(ann, item)
    assert draft.state == "draft" and draft.candidate_id == source
    assert _next(ann, round_id) == item  # a draft stays the current item (a refresh loses nothing)
    with session_scope() as s:
        with pytest.raises(ReviewError, match="cannot be empty"):
            save_edit(s, ann, round_id, item, source, "   ")
        save_edit(s, ann, round_id, item, source, "The plot is simple, but the twist at the end is clever.",
                  submit=True)
    edited = _selection(ann, item)
    assert edited.state == "submitted" and edited.verdict == "edited"
    ops = edited.edit_diff
    assert "".join(o["b"] for o in ops) == edited.edited_text  # the diff rebuilds the edit ...
    with session_scope() as s:
        from judgeeye.store import Candidate
        assert "".join(o["a"] for o in ops) == s.get(Candidate, source).reasoning  # ... and its source
    assert any(o["op"] != "equal" for o in ops)
    items.append(item)

    item = _next(ann, round_id)
    with session_scope() as s:
        skip(s, ann, round_id, item)
    assert _selection(ann, item).state == "skipped"
    assert _next(ann, round_id) is None  # a skipped item is not handed back to the same person
    bob_items = {_next(bob, round_id)}
    assert item in bob_items  # ... but goes to someone else at once
    with session_scope() as s:
        with pytest.raises(ReviewError, match="was not handed to you"):
            choose(s, bob, round_id, items[0], _shown(round_id, items[0])[0])
        actions = [e.action for e in s.scalars(select(SelectionEvent).where(
            SelectionEvent.annotator_id == ann.id).order_by(SelectionEvent.id)).all()]
    assert actions == ["assign", "choose", "assign", "none_fits", "assign", "edit_draft", "edit_submit",
                       "assign", "skip"]


def test_undo_walks_back_through_the_event_log(team: dict[str, Actor]) -> None:
    _, run_id = make_project(3)
    ann = team["ann"]
    round_id = _open(run_id, ["ann"])
    a = _next(ann, round_id)
    with session_scope() as s:
        choose(s, ann, round_id, a, _shown(round_id, a)[0])
    b = _next(ann, round_id)
    with session_scope() as s:
        choose(s, ann, round_id, b, _shown(round_id, b)[0])
    with session_scope() as s:
        choose(s, ann, round_id, b, _shown(round_id, b)[1])  # changed their mind on b
    with session_scope() as s:
        assert undo(s, ann, round_id) == b
    assert _selection(ann, b).candidate_id == _shown(round_id, b)[0]
    with session_scope() as s:
        assert undo(s, ann, round_id) == b
    assert _selection(ann, b).state == "pending" and _selection(ann, b).candidate_id is None
    assert _next(ann, round_id) == b  # the undone item is the current one again
    with session_scope() as s:
        assert undo(s, ann, round_id) == a
    assert _selection(ann, a).state == "pending"
    with session_scope() as s:
        assert undo(s, ann, round_id) is None  # hand-outs are not undone
        events = s.scalars(select(SelectionEvent).order_by(SelectionEvent.id)).all()
    assert [e.action for e in events].count("undo") == 3
    assert all(e.payload["after"] is not None for e in events)  # each event holds the state after it
    with session_scope() as s:
        previous = previous_item(s, ann, round_id, b)
    assert previous == a


def test_display_order_is_stable_per_annotator_and_shuffled_between_them(team: dict[str, Actor]) -> None:
    _, run_id = make_project(1, k=9)
    with session_scope() as s:
        from judgeeye.store import Candidate
        s.execute(Candidate.__table__.update().values(accepted=True))
    round_id = _open(run_id, ["ann"])
    item = _next(team["ann"], round_id)
    with session_scope() as s:
        cands = shown_candidates(s, get_round(s, round_id), item)
        orders = {a: [c.id for c in display_order(cands, a, item)] for a in range(1, 9)}
        again = [c.id for c in display_order(cands, 1, item)]
    assert again == orders[1] and sorted(orders[1]) == [c.id for c in cands]
    assert len({tuple(o) for o in orders.values()}) > 1


# --------------------------------------------------------------------------- agreement and adjudication


def _review_all(team: dict[str, Actor], round_id: int, plan: dict[str, list[int | None]]) -> list[int]:
    """Each annotator reviews every item in hand-out order: a trace position (1-based, canonical)
    or None for 'none fits'."""
    items: list[int] = []
    for name, choices in plan.items():
        for choice in choices:
            item = _next(team[name], round_id)
            assert item is not None
            if item not in items:
                items.append(item)
            with session_scope() as s:
                if choice is None:
                    none_fits(s, team[name], round_id, item)
                else:
                    choose(s, team[name], round_id, item, _shown(round_id, item)[choice - 1])
    return items


def test_agreement_fleiss_and_none_fits_rates(team: dict[str, Actor]) -> None:
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    project_id, run_id = make_project(4)
    round_id = _open(run_id, ["ann", "bob", "cat"], overlap=3)
    plan = {"ann": [1, 1, 2, None], "bob": [1, 2, 2, None], "cat": [1, 1, None, 2]}
    _review_all(team, round_id, plan)
    with session_scope() as s:
        result = choice_agreement(s, project_id)
    labels = list(zip(*plan.values()))
    cats = [1, 2, None]
    table = [[row.count(c) for c in cats] for row in labels]
    expected_pa = sum(sum(n * (n - 1) for n in r) / 6 for r in table) / 4
    assert result["n_items"] == 4 and result["raters_per_item"] == 3 and result["fleiss_items"] == 4
    assert result["percent_agreement"] == pytest.approx(expected_pa)
    assert result["fleiss_kappa"] == pytest.approx(sm_fleiss(table, method="fleiss"))
    assert result["none_fits_rate"] == pytest.approx({"ann": 0.25, "bob": 0.25, "cat": 0.25})
    assert "same candidate set" in result["note"]
    with session_scope() as s:
        table = annotator_progress(s, project_id)
    assert {"annotator", "assigned", "submitted", "skipped", "none_fits", "today"} <= set(table.columns)
    row = table.set_index("annotator").loc["bob"]
    assert (row["assigned"], row["submitted"], row["none_fits"], row["today"]) == (4, 4, 1, 4)
    assert row["pace_per_hour"] > 0


def test_disagreements_are_settled_by_a_lead_and_export_uses_it(team: dict[str, Actor], tmp_path) -> None:  # type: ignore[no-untyped-def]
    project_id, run_id = make_project(3)
    round_id = _open(run_id, ["ann", "bob"], overlap=2)
    items = _review_all(team, round_id, {"ann": [1, 1, None], "bob": [1, 2, None]})
    with session_scope() as s:
        found = disagreements(s, project_id)
    assert [d.item_id for d in found] == [items[1]]
    assert sorted(c.position for c in found[0].choices) == [1, 2]
    settled_candidate = _shown(round_id, items[1])[1]
    with session_scope() as s:
        adjudicate(s, team["lea"], items[1], verdict="chosen", candidate_id=settled_candidate, round_id=round_id)
        with pytest.raises(ReviewError, match="not a trace of item"):
            adjudicate(s, team["lea"], items[0], verdict="chosen", candidate_id=settled_candidate)
    with session_scope() as s:
        assert disagreements(s, project_id) == []
        assert len(disagreements(s, project_id, include_settled=True)) == 1
        rows, summary = reason_rows(s, project_id)
    by_item = {r["item_id"]: r for r in rows}
    assert by_item[items[1]]["provenance"] == "adjudicated" and by_item[items[1]]["candidate_id"] == settled_candidate
    assert by_item[items[0]]["provenance"] == "human-selected"
    assert items[2] not in by_item and summary.rejected == 1  # both said none fits


def test_my_progress_counts_what_the_review_page_shows(team: dict[str, Actor]) -> None:
    _, run_id = make_project(5)
    ann = team["ann"]
    round_id = _open(run_id, ["ann", "bob"])
    for _ in range(2):
        item = _next(ann, round_id)
        with session_scope() as s:
            choose(s, ann, round_id, item, _shown(round_id, item)[0])
    item = _next(ann, round_id)
    with session_scope() as s:
        skip(s, ann, round_id, item)
    _next(team["bob"], round_id)  # bob holds one
    _next(ann, round_id)  # ann holds one
    with session_scope() as s:
        p = my_progress(s, ann.id, round_id)
    assert (p.submitted, p.skipped, p.open, p.today) == (2, 1, 1, 2)
    assert p.available == 1  # five items: 2 done, 1 with ann, 1 with bob, the skipped one is ann's no more
    assert p.assigned == 4 and p.pace_per_hour > 0


# --------------------------------------------------------------------------- export


def test_export_writes_jsonl_parquet_hf_and_a_safe_csv(team: dict[str, Actor], tmp_path) -> None:  # type: ignore[no-untyped-def]
    import datasets
    import pandas as pd

    project_id, run_id = make_project(5, unaccepted_every=4, text="=HYPERLINK(\"http://x\",\"click\")")
    round_id = _open(run_id, ["ann"])
    ann = team["ann"]
    first = _next(ann, round_id)
    with session_scope() as s:
        choose(s, ann, round_id, first, _shown(round_id, first)[1])
    second = _next(ann, round_id)
    with session_scope() as s:
        save_edit(s, ann, round_id, second, _shown(round_id, second)[0], "-1 point: edited trace", submit=True)
    result = runner.invoke(app, ["review", "export", "--project", str(project_id), "--out", str(tmp_path / "out"),
                                 "--format", "jsonl,parquet,hf,csv"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    jsonl = [json.loads(line) for line in (out / "d_reason.jsonl").read_text().splitlines()]
    # items 0 and 4 have no accepted candidate and no review: left out
    assert len(jsonl) == 3 and "left out: 0 settled as none fits, 2 without a trace" in result.output
    by_item = {r["item_id"]: r for r in jsonl}
    assert by_item[first]["provenance"] == "human-selected" and by_item[first]["reviewers"] == ["ann"]
    assert by_item[second]["provenance"] == "human-edited" and by_item[second]["trace"] == "-1 point: edited trace"
    assert by_item[second]["answer"].startswith("<rating>")
    rest = [r for r in jsonl if r["item_id"] not in (first, second)]
    assert [r["provenance"] for r in rest] == ["first-accepted"]
    for r in jsonl:
        assert r["codebook_version"] == 1 and r["gold"] in (1.0, 2.0, 3.0, 4.0, 5.0)
        assert set(r["fields"]) == {"story"} and len(r["ratings"]) == 3
    parquet = pd.read_parquet(out / "d_reason.parquet")
    assert parquet["item_id"].tolist() == [r["item_id"] for r in jsonl]
    assert parquet["trace"].tolist() == [r["trace"] for r in jsonl]
    hf = datasets.load_from_disk(str(out / "d_reason_hf"))
    assert hf.num_rows == 3 and hf["provenance"] == [r["provenance"] for r in jsonl]
    assert hf[0]["fields"]["story"].startswith("=HYPERLINK")
    with (out / "d_reason.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["field:story"].startswith("'=HYPERLINK")  # a spreadsheet shows it as text
    assert [r for r in rows if r["item_id"] == str(second)][0]["trace"] == "'-1 point: edited trace"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == 3 and manifest["provenance"]["human-edited"] == 1
    bad = runner.invoke(app, ["review", "export", "--project", str(project_id), "--out", str(tmp_path / "x"),
                              "--format", "xlsx"])
    assert bad.exit_code == 2 and "unknown export format" in bad.output and not (tmp_path / "x").exists()


def test_post_hoc_traces_keep_their_provenance(team: dict[str, Actor]) -> None:
    project_id, _ = make_project(2, post_hoc=True)
    with session_scope() as s:
        rows, summary = reason_rows(s, project_id)
    assert [r["provenance"] for r in rows] == ["post-hoc", "post-hoc"] and summary.rows == 2


# --------------------------------------------------------------------------- CLI


def test_users_and_review_cli(store_url: str) -> None:
    result = runner.invoke(app, ["users", "add", "ann", "--role", "annotator"])
    assert result.exit_code == 0 and "password: " in result.output, result.output
    password = result.output.split("password: ")[1].split()[0]
    with session_scope() as s:
        assert authenticate(s, "ann", password) is not None
    assert runner.invoke(app, ["users", "add", "lea", "--role", "lead", "--password", "lea-password"]).exit_code == 0
    bad = runner.invoke(app, ["users", "add", "x", "--role", "boss"])
    assert bad.exit_code == 2 and "unknown role" in bad.output
    listing = runner.invoke(app, ["users", "list"])
    assert "ann" in listing.output and "lead" in listing.output
    _, run_id = make_project(4)
    opened = runner.invoke(app, ["review", "open-round", "--run", str(run_id), "--annotator", "ann",
                                 "--annotator", "lea", "--overlap", "2", "--name", "pilot"])
    assert opened.exit_code == 0 and "4 items, 8 reviews needed" in opened.output, opened.output
    rounds = runner.invoke(app, ["review", "rounds"])
    assert "pilot" in rounds.output and "0/8" in rounds.output
    bad = runner.invoke(app, ["review", "open-round", "--run", str(run_id), "--annotator", "ghost"])
    assert bad.exit_code == 2 and "no user 'ghost'" in bad.output
    progress = runner.invoke(app, ["review", "progress", "--project", "review test"])
    assert progress.exit_code == 0 and "percent agreement n/a" in progress.output, progress.output


def test_a_trace_without_thinking_tokens_is_split_from_its_final_answer() -> None:
    from judgeeye.review.traces import split_trace
    from judgeeye.store import Candidate

    inline = Candidate(reasoning="", answer="The plot is thin and the ending abrupt.\n<rating>2</rating>")
    assert split_trace(inline, (1, 5)) == ("The plot is thin and the ending abrupt.", "<rating>2</rating>")
    thinking = Candidate(reasoning=" Thought. ", answer="<rating>4</rating>")
    assert split_trace(thinking, (1, 5)) == ("Thought.", "<rating>4</rating>")
    # a trace that wrote no rating (forced cue rates it after the answer cue) is all trace: its
    # final answer is empty, not the whole text a second time
    unrated = Candidate(reasoning="", answer="The story has two characters and one")
    assert split_trace(unrated, (1, 5)) == ("The story has two characters and one", "")
    only_rating = Candidate(reasoning="", answer="<rating>3</rating>")
    assert split_trace(only_rating, (1, 5)) == ("", "<rating>3</rating>")
