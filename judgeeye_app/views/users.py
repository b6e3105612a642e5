"""Users (admins): add people, set roles, deactivate, reset passwords.

Every action is a button callback bound to the user and the change shown on the button, so it
does what the admin saw even if they clicked during a rerun, and it runs before the page reads
the store, so the table shows its result at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from judgeeye.auth import ROLES, add_user, generate_password, list_users, set_active, set_password, set_role
from judgeeye.display import escape_markdown
from judgeeye.store import read_scope, session_scope
from judgeeye_app.ui.access import require_permission
from judgeeye_app.ui.actions import attempt

actor = require_permission("manage_users")
st.title("Users")
st.caption("annotator: reviews traces · author: also edits codebooks · lead: also data, sampling, rounds, "
           "dashboards and adjudication · admin: also users. With single sign-on, add people by the "
           "e-mail their provider reports.")
ERROR = "users_error"  # (form, message) of an action that was refused, shown once beside it
SHOWN_PASSWORD = "users_new_password"


def act(where: str, action: Callable[..., Any], *args: Any) -> Any:
    """Run a library action as the admin; a refusal is kept to be shown in ``where``."""
    def run() -> Any:
        with session_scope() as session:
            return action(session, actor, *args) or True
    done, error = attempt(run)
    if error:
        st.session_state[ERROR] = (where, error)
    return done


def refusal(where: str) -> None:
    if st.session_state.get(ERROR, ("",))[0] == where:
        st.error(st.session_state.pop(ERROR)[1])


def add() -> None:
    name = st.session_state["users_add_name"]
    added = act("add", add_user, name, st.session_state["users_add_role"],
                    st.session_state["users_add_password"] or None)
    if added and added[1]:  # (user, the password generated for them)
        st.session_state[SHOWN_PASSWORD] = (name.strip(), added[1])


def new_password(who: str) -> None:
    fresh = generate_password()
    if act("change", set_password, who, fresh):
        st.session_state[SHOWN_PASSWORD] = (who, fresh)


with read_scope() as session:
    users = list_users(session)
st.dataframe(pd.DataFrame([{"Name": u.name, "Role": u.role, "Active": u.active, "Password": u.has_password}
                           for u in users]), hide_index=True, width="stretch")
if shown := st.session_state.pop(SHOWN_PASSWORD, None):
    st.warning(f"Password for **{escape_markdown(shown[0])}**: `{shown[1]}` (shown once; pass it on securely)")

add_col, change_col = st.columns(2)
with add_col, st.form("users_add", clear_on_submit=True):
    st.markdown("**Add a user**")
    st.text_input("Name or e-mail", key="users_add_name")
    st.selectbox("Role", ROLES, key="users_add_role")
    st.text_input("Password (empty: generate one)", type="password", key="users_add_password")
    st.form_submit_button("Add", type="primary", on_click=add)
    refusal("add")

with change_col:
    st.markdown("**Change a user**")
    names = [u.name for u in users]
    who = st.selectbox("User", names, key="users_pick")
    current = next(u for u in users if u.name == who)
    # keyed by the stored role too: when the role changes (here or by another admin), the box
    # starts afresh on it instead of keeping what was picked before
    role_key = f"users_role_{who}_{current.role}"
    st.selectbox("Role", ROLES, index=ROLES.index(current.role), key=role_key)
    cols = st.columns(3)
    cols[0].button("Set role", key="users_set_role",
                   on_click=lambda who=who, key=role_key: act("change", set_role, who, st.session_state[key]))
    cols[1].button("Deactivate" if current.active else "Activate", key="users_active",
                   on_click=act, args=("change", set_active, who, not current.active))
    cols[2].button("New password", key="users_reset", on_click=new_password, args=(who,))
    refusal("change")
