"""Log in: the only page anyone can reach without a session."""

from __future__ import annotations

import streamlit as st

from judgeeye_app.ui.access import log_in, oidc_configured

st.title("JudgeEye")
st.caption("Log in to review traces, edit codebooks or lead the team.")

if oidc_configured():
    if st.user.is_logged_in:
        st.error(f"{st.user.get('email') or st.user.get('name')} has no JudgeEye account yet: "
                 "ask an admin to add it (Users page or `judgeeye users add EMAIL`).")
        if st.button("Log out of the identity provider"):
            st.logout()
    elif st.button("Log in with single sign-on", type="primary", icon=":material/badge:", key="login_sso"):
        st.login()
    st.divider()
    st.caption("Or with a JudgeEye password:")

with st.form("login", border=True):
    name = st.text_input("Name", key="login_name", autocomplete="username")
    password = st.text_input("Password", type="password", key="login_password", autocomplete="current-password")
    submitted = st.form_submit_button("Log in", type="primary")
if submitted:
    if log_in(name, password) is not None:
        st.rerun()
    st.error("Name or password is wrong, or the account is deactivated.")
st.caption("First start: the admin's password was printed once in the server's output. "
           "Forgot it? `judgeeye users set-password admin` on the server.")
