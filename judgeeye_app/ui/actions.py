"""Running a library action from a widget callback.

Pages run their actions as callbacks, before the script reads the store, so that what the page
shows next is the state the action left. A callback runs outside the page's busy-store guard
(``common.store_busy_notice``), so refusals and a store that stayed busy come back here as a
message for the page to show, never as a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from judgeeye.auth import AccessDenied
from judgeeye.store.retry import StoreBusyError
from judgeeye_app.ui.common import busy_text

T = TypeVar("T")
#: what the library raises to refuse an action with a message for the user (UserError and
#: ReviewError are ValueErrors; a missing run or project is a LookupError)
REFUSALS = (AccessDenied, LookupError, ValueError)


def attempt(action: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T | None, str | None]:
    """(the action's result, None), or (None, why it was refused or could not be saved)."""
    try:
        return action(*args, **kwargs), None
    except REFUSALS as exc:
        return None, str(exc)
    except (DBAPIError, StoreBusyError) as exc:
        return None, busy_text(exc)
