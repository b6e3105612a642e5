"""Who is using the app: password sessions and OIDC (``st.login``), checked against the store on
every run. No business logic: roles and permissions live in ``judgeeye.auth``."""

from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

from judgeeye.display import escape_markdown
from judgeeye.auth import Actor, UserError, authenticate, page_permission, refresh_actor, set_password, user_for_identity
from judgeeye.store import read_scope, session_scope

SESSION_KEY = "judgeeye_user"


def require_page(url_path: str) -> Actor:
    """:func:`require_permission` with the permission app.py gives this page (by url path)."""
    return require_permission(page_permission(url_path))


def oidc_configured() -> bool:
    """True when ``.streamlit/secrets.toml`` has an ``[auth]`` section (see the README)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def _oidc_identity() -> tuple[str | None, str | None] | None:
    if not oidc_configured() or not st.user.is_logged_in:
        return None
    return st.user.get("email"), st.user.get("name")


def current_actor() -> Actor | None:
    """The logged-in user as the store knows them now (a new role applies at once; a
    deactivated user is logged out), or None."""
    data = st.session_state.get(SESSION_KEY)
    with read_scope() as session:  # every run of every page: never wait on a writing job
        if data:
            actor = refresh_actor(session, Actor(data["id"], data["name"], data["role"]))
        else:
            identity = _oidc_identity()
            actor = user_for_identity(session, *identity) if identity else None
    if actor is None:
        st.session_state.pop(SESSION_KEY, None)
    else:
        st.session_state[SESSION_KEY] = actor.to_dict()
    return actor


def log_in(name: str, password: str) -> Actor | None:
    with session_scope() as session:
        actor = authenticate(session, name, password)
    if actor is not None:
        st.session_state[SESSION_KEY] = actor.to_dict()
    return actor


def log_out() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    if _oidc_identity() is not None:
        st.logout()


def _to_login() -> None:
    """Send a visitor without a session to the login page.

    Streamlit runs a page file on its own, without app.py, when the app has a ``pages/`` folder
    and the first request a server process gets is a deep link (its multipage v1 mode lasts
    until app.py has called ``st.navigation`` once). Switching to the main script runs app.py,
    which shows the login page; under ``st.navigation`` that switch is refused and the page
    just stops.
    """
    try:
        st.switch_page("app.py")
    except StreamlitAPIException:
        pass


def require_permission(permission: str) -> Actor:
    """Stop the page unless the user may ``permission``. Every page calls this first: hiding
    pages by role in app.py is not enough (see :func:`_to_login`)."""
    actor = current_actor()
    if actor is None:
        _to_login()
        st.error("Log in first.")
        st.link_button("Log in", "/")
        st.stop()
    if not actor.can(permission):
        st.error(f"Your role ({actor.role}) does not give access to this page.")
        st.stop()
    return actor


def account_box(actor: Actor) -> None:
    """Sidebar: who is logged in, log out, change one's own password."""
    with st.sidebar:
        st.caption(f"Logged in as {escape_markdown(actor.name)} · {actor.role}")
        # one button a row, each as wide as the sidebar: side by side, half a default sidebar
        # cut the password button's label to "Pass…"
        if st.button("Log out", key="account_logout", icon=":material/logout:", width="stretch"):
            log_out()
            st.rerun()
        with st.popover("Change password", icon=":material/key:", width="stretch"):
            with st.form("account_password", clear_on_submit=True):
                new = st.text_input("New password", type="password", key="account_new_password")
                again = st.text_input("Again", type="password", key="account_new_password_again")
                if st.form_submit_button("Change"):
                    if new != again:
                        st.error("The two entries differ.")
                    else:
                        try:
                            with session_scope() as session:
                                set_password(session, actor, actor.name, new)
                            st.success("Password changed.")
                        except UserError as exc:
                            st.error(str(exc))
