"""Users (admins): add people, set roles, deactivate, reset passwords."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from judgeeye.auth import ROLES, AccessDenied, UserError, add_user, generate_password, list_users, set_active, set_password, set_role
from judgeeye.display import escape_markdown
from judgeeye.store import session_scope
from judgeeye_app.ui.access import require_permission

actor = require_permission("manage_users")
st.title("Users")
st.caption("annotator: reviews traces · author: also edits codebooks · lead: also data, sampling, rounds, "
           "dashboards and adjudication · admin: also users. With single sign-on, add people by the "
           "e-mail their provider reports.")


def attempt(action, *args) -> bool:  # type: ignore[no-untyped-def]
    try:
        with session_scope() as session:
            action(session, actor, *args)
        return True
    except (UserError, AccessDenied) as exc:
        st.error(str(exc))
        return False


with session_scope() as session:
    users = list_users(session)
st.dataframe(pd.DataFrame([{"Name": u.name, "Role": u.role, "Active": u.active, "Password": u.has_password}
                           for u in users]), hide_index=True, width="stretch")
if shown := st.session_state.pop("users_new_password", None):
    st.warning(f"Password for **{escape_markdown(shown[0])}**: `{shown[1]}` (shown once; pass it on securely)")

add_col, change_col = st.columns(2)
with add_col, st.form("users_add", clear_on_submit=True):
    st.markdown("**Add a user**")
    name = st.text_input("Name or e-mail", key="users_add_name")
    role = st.selectbox("Role", ROLES, key="users_add_role")
    password = st.text_input("Password (empty: generate one)", type="password", key="users_add_password")
    if st.form_submit_button("Add", type="primary"):
        try:
            with session_scope() as session:
                _, generated = add_user(session, actor, name, role, password or None)
            if generated:
                st.session_state["users_new_password"] = (name.strip(), generated)
            st.rerun()
        except (UserError, AccessDenied) as exc:
            st.error(str(exc))

with change_col:
    st.markdown("**Change a user**")
    names = [u.name for u in users]
    who = st.selectbox("User", names, key="users_pick")
    current = next(u for u in users if u.name == who)
    # keyed by the stored role too: when the role changes (here or by another admin), the box
    # starts afresh on it instead of keeping what was picked before
    new_role = st.selectbox("Role", ROLES, index=ROLES.index(current.role), key=f"users_role_{who}_{current.role}")
    cols = st.columns(3)
    if cols[0].button("Set role", key="users_set_role") and attempt(set_role, who, new_role):
        st.rerun()
    if cols[1].button("Deactivate" if current.active else "Activate", key="users_active") and \
            attempt(set_active, who, not current.active):
        st.rerun()
    if cols[2].button("New password", key="users_reset"):
        fresh = generate_password()
        if attempt(set_password, who, fresh):
            st.session_state["users_new_password"] = (who, fresh)
            st.rerun()
