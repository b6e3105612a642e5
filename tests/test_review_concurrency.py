"""Annotators writing at the same moment to one SQLite file, each in their own process.

8 processes x 200 selections (every item needs all 8 reviews): no write is lost, there is
exactly one selection per item and annotator, and the event log holds every hand-out and every
choice. A second test races 4 processes for items that need one review each: no item is handed
to two people.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from judgeeye.review import open_round
from judgeeye.store import Candidate, Selection, SelectionEvent, session_scope
from review_data import SYSTEM, make_project, make_users

WORKER = r"""
import os, sys, time
from pathlib import Path
from judgeeye.auth import Actor
from judgeeye.review import choose, get_round, next_item, shown_candidates
from judgeeye.store import session_scope, get_engine

url, user_id, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
round_id, limit, go = int(sys.argv[4]), int(sys.argv[5]), Path(sys.argv[6])
actor = Actor(user_id, name, "annotator")
get_engine(url)  # schema checked before the start signal
while not go.exists():
    time.sleep(0.01)
done = []
while len(done) < limit:
    with session_scope(url) as s:
        item = next_item(s, actor, round_id)
        if item is None:
            break
        shown = shown_candidates(s, get_round(s, round_id), item)
        choose(s, actor, round_id, item, shown[(user_id + item) % len(shown)].id)
    done.append(item)
print(" ".join(map(str, done)))
"""


def _race(store_url: str, tmp_path: Path, names: list[str], round_id: int, users: dict, limit: int) -> dict[str, list[int]]:  # type: ignore[type-arg]
    go = tmp_path / "go"
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", WORKER, store_url, str(users[name].id), name, str(round_id), str(limit), str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in names
    }
    time.sleep(0.5)
    go.touch()
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        out[name] = [int(v) for v in stdout.split()]
    return out


def test_eight_annotator_processes_lose_no_write(store_url: str, tmp_path: Path) -> None:
    if not store_url.startswith("sqlite"):
        import pytest
        pytest.skip("the SQLite file is what is under test")
    names = [f"a{i}" for i in range(8)]
    users = make_users(*[(n, "annotator") for n in names])
    _, run_id = make_project(200, k=2)
    with session_scope() as s:
        round_id = open_round(s, SYSTEM, run_id, names, overlap=8).id
    started = time.monotonic()
    done = _race(store_url, tmp_path, names, round_id, users, 200)
    elapsed = time.monotonic() - started
    print(f"8 processes x 200 selections in {elapsed:.1f} s")
    with session_scope() as s:
        selections = s.scalars(select(Selection)).all()
        events = s.scalars(select(SelectionEvent)).all()
        shown = {}
        for item_id, cid in s.execute(select(Candidate.item_id, Candidate.id).where(Candidate.accepted.is_(True))
                                      .order_by(Candidate.item_id, Candidate.sample_index)).all():
            shown.setdefault(item_id, []).append(cid)
    assert all(len(items) == 200 and len(set(items)) == 200 for items in done.values())
    assert len(selections) == 1600
    assert Counter((s.item_id, s.annotator_id) for s in selections).most_common(1)[0][1] == 1
    for sel in selections:  # every write is there, with the value its process wrote
        assert sel.state == "submitted"
        assert sel.candidate_id == shown[sel.item_id][(sel.annotator_id + sel.item_id) % 2]
    per_selection = Counter((e.selection_id, e.action) for e in events)
    assert len(events) == 3200
    assert all(per_selection[(sel.id, "assign")] == 1 and per_selection[(sel.id, "choose")] == 1 for sel in selections)
    assert {e.payload["after"]["candidate_id"] for e in events if e.action == "choose"} <= {c for v in shown.values() for c in v}


def test_racing_for_single_review_items_hands_each_out_once(store_url: str, tmp_path: Path) -> None:
    names = [f"b{i}" for i in range(4)]
    users = make_users(*[(n, "annotator") for n in names])
    _, run_id = make_project(80, k=2)
    with session_scope() as s:
        round_id = open_round(s, SYSTEM, run_id, names, overlap=1).id
    done = _race(store_url, tmp_path, names, round_id, users, 1000)
    everything = [item for items in done.values() for item in items]
    assert len(everything) == 80 and len(set(everything)) == 80  # each item exactly once
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Selection)) == 80
