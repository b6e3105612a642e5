"""AppTest of the whole app with someone logged in: every page but login needs a session.

    from apptest_login import app_as
    at = app_as("lead")                          # Home (Review for annotators)
    at = app_as("lead", page="judgeeye_app/views/sample.py")  # then switch page
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from judgeeye.store import Annotator, session_scope
from review_data import password_hash

REPO = Path(__file__).resolve().parents[1]
SESSION_KEY = "judgeeye_user"  # judgeeye_app/ui/access.py


def login_as(role: str = "admin", name: str | None = None) -> dict[str, object]:
    """The session entry of a user with this role (created with the test password if missing)."""
    name = name or f"test-{role}"
    with session_scope() as session:
        user = session.scalar(select(Annotator).where(Annotator.name == name))
        if user is None:
            user = Annotator(name=name, role=role, password_hash=password_hash(), active=True)
            session.add(user)
            session.flush()
        return {"id": user.id, "name": user.name, "role": user.role}


def app_as(role: str = "admin", name: str | None = None, *, page: str | None = None, timeout: float = 60) -> AppTest:
    """app.py run once as a logged-in user of ``role``; then on ``page`` when given."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=timeout)
    at.session_state[SESSION_KEY] = login_as(role, name)
    at.run()
    if page is not None:
        at.switch_page(page).run()
    return at
