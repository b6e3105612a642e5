"""API keys for OpenAI-compatible servers: from the environment or Streamlit secrets, never stored.

A run's engine config keeps only the NAME of a variable (``api_key_env``). The key itself comes
from this process's environment, or from ``.streamlit/secrets.toml`` (at the top level, or under
``[api_keys]``): a secret is put into this process's environment under its name, and the job
worker, a subprocess, inherits it from there. So a key never goes through a command line, a
job's params, the store, a log or an export.
"""

from __future__ import annotations

import os

import streamlit as st

from judgeeye.engines.base import check_api_key_env

SECRETS_SECTION = "api_keys"


def _secret(name: str) -> str | None:
    try:
        value = st.secrets.get(name)
        if not isinstance(value, str):
            section = st.secrets.get(SECRETS_SECTION)
            value = section.get(name) if section is not None else None
    except Exception:  # no secrets file at all
        return None
    return value.strip() if isinstance(value, str) and value.strip() else None


def provide_api_key(name: str) -> str | None:
    """Make the key named ``name`` available to workers; returns where it came from, or None."""
    secret = _secret(name)
    if secret is not None and not os.environ.get(name):
        os.environ[name] = secret  # the worker inherits it (jobs.start_job passes os.environ)
    if not os.environ.get(name):
        return None
    return "Streamlit secrets" if secret is not None and os.environ[name] == secret else "the environment"


def api_key_field(typed: str) -> tuple[bool, str | None]:
    """Check what was typed in an "API key variable" box: (usable, the variable's name or None).

    A value that is not a variable name (a pasted key) is refused without being shown or kept."""
    try:
        name = check_api_key_env(typed)
    except ValueError as exc:
        st.error(str(exc))
        return False, None
    if name is not None:
        source = provide_api_key(name)
        if source:
            st.caption(f"API key `{name}` found in {source}; the worker gets it through its environment "
                       "and it is never stored.")
        else:
            st.warning(f"No environment variable or Streamlit secret named `{name}` is set: requests "
                       "to the server will fail. Set it, or add it to `.streamlit/secrets.toml`.")
    return True, name
