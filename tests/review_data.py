"""Building review fixtures fast: a project, a sampling run with stored candidates, users.

No model is loaded: candidates are written the way the sampler writes them, so the review code
is exercised on real rows in a real store.
"""

from __future__ import annotations

from sqlalchemy import select

from judgeeye.auth import Actor, hash_password
from judgeeye.auth.roles import check_role
from judgeeye.codebook import load_builtin
from judgeeye.codebook.versions import create_version
from judgeeye.store import Annotator, Candidate, Item, Project, SamplingRun, session_scope

SYSTEM = Actor.system()


def make_project(n_items: int = 6, k: int = 3, *, unaccepted_every: int = 0, post_hoc: bool = False,
                 name: str = "review test", text: str | None = None) -> tuple[int, int]:
    """A 1-5 project with ``n_items`` gold items and a run of ``k`` candidates each; sample 0 and 1
    are accepted (rating = gold) unless the item's index is a multiple of ``unaccepted_every``.
    Returns (project id, run id)."""
    with session_scope() as s:
        project = Project(name=name, task="rating", dimension="complexity", scale_min=1, scale_max=5,
                          text_fields=["story"])
        s.add(project)
        s.flush()
        codebook = create_version(s, project.id, load_builtin("hanna_complexity"))
        for i in range(n_items):
            gold = float(1 + i % 5)
            s.add(Item(project_id=project.id, external_id=f"s{i}", split="train", gold=gold, rating_std=0.0,
                       fields={"story": text if text is not None else f"Story number {i}. It was a dark night."},
                       ratings={"r1": gold, "r2": gold, "r3": gold}))
        s.flush()
        run = SamplingRun(project_id=project.id, codebook_id=codebook.id, k=k, status="succeeded")
        s.add(run)
        s.flush()
        items = s.scalars(select(Item).where(Item.project_id == project.id).order_by(Item.id)).all()
        for n, item in enumerate(items):
            none_ok = unaccepted_every and n % unaccepted_every == 0
            for j in range(k):
                accepted = j < 2 and not none_ok
                rating = item.gold if accepted else (item.gold % 5) + 1
                s.add(Candidate(run_id=run.id, item_id=item.id, sample_index=j, target="gold",
                                target_label=item.gold, kind="post_hoc" if post_hoc else "sampled",
                                reasoning=f"Item {item.external_id}, trace {j}: the plot is simple and the characters are flat.",
                                answer=f"<rating>{int(rating)}</rating>", predicted=rating, parse_ok=True,
                                accepted=accepted, completion_tokens=20, finish_reason="stop"))
        return project.id, run.id


PASSWORD = "test-password"
_hashes: list[str] = []


def password_hash() -> str:
    """One Argon2 hash of PASSWORD per test process (a hash takes ~0.5 s on a slow core)."""
    if not _hashes:
        _hashes.append(hash_password(PASSWORD))
    return _hashes[0]


def make_users(*specs: tuple[str, str]) -> dict[str, Actor]:
    """Users by (name, role), all with the password PASSWORD; returns their actors."""
    out = {}
    with session_scope() as s:
        for name, role in specs:
            check_role(role)
            user = Annotator(name=name, role=role, password_hash=password_hash(), active=True)
            s.add(user)
            s.flush()
            out[name] = Actor(user.id, user.name, user.role)
    return out


def user_id(name: str) -> int:
    with session_scope() as s:
        return s.scalar(select(Annotator.id).where(Annotator.name == name))
