"""`judgeeye users add|list|set-password|set-role|deactivate|activate`.

The CLI acts as the store's operator (``Actor.system()``): whoever can open the database
already holds every right over it; roles restrict what people do through the app.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

from judgeeye.cli.common import echo_table, user_errors

T = TypeVar("T")
users_app = typer.Typer(help="People and roles: annotator, author, lead, admin.", no_args_is_help=True)


def _as_operator(action: Callable[..., T], *args: object) -> T:
    """Run a user action (``action(session, actor, *args)``) as the store's operator in one
    transaction; a refused one ends the command with its reason and exit status 2."""
    from judgeeye.auth import Actor, UserError
    from judgeeye.store import session_scope

    with user_errors(UserError), session_scope() as session:
        return action(session, Actor.system(), *args)


@users_app.command("add")
def add_cmd(
    name: Annotated[str, typer.Argument(help="Login name (or the e-mail an OIDC provider reports).")],
    role: Annotated[str, typer.Option(help="annotator, author, lead or admin.")] = "annotator",
    password: Annotated[str | None, typer.Option(help="Initial password (at least 8 characters); "
                                                    "default: generated and printed once. Shells keep "
                                                    "history: prefer the generated one.")] = None,
) -> None:
    """Add a user."""
    from judgeeye.auth import add_user

    user, generated = _as_operator(add_user, name, role, password)
    typer.echo(f"added {role} {name!r} (id {user.id})")
    if generated:
        typer.echo(f"password: {generated}   (shown once; change it after the first login)")


@users_app.command("list")
def list_cmd() -> None:
    """List users and their roles."""
    from judgeeye.auth import list_users
    from judgeeye.store import session_scope

    with session_scope() as session:
        rows = [{"id": u.id, "name": u.name, "role": u.role, "active": "yes" if u.active else "no",
                 "password": "set" if u.has_password else "-"} for u in list_users(session)]
    echo_table(rows)


@users_app.command("set-password")
def set_password_cmd(
    name: str,
    password: Annotated[str | None, typer.Option(help="New password; default: asked without echo.")] = None,
) -> None:
    """Set a user's password."""
    from judgeeye.auth import set_password

    if password is None:
        password = typer.prompt("new password", hide_input=True, confirmation_prompt=True)
    _as_operator(set_password, name, password)
    typer.echo(f"password of {name!r} changed")


@users_app.command("set-role")
def set_role_cmd(name: str, role: str) -> None:
    """Change a user's role."""
    from judgeeye.auth import set_role

    _as_operator(set_role, name, role)
    typer.echo(f"{name!r} is now {role}")


def _set_active(name: str, active: bool) -> None:
    from judgeeye.auth import set_active

    _as_operator(set_active, name, active)
    typer.echo(f"{name!r} {'activated' if active else 'deactivated'}")


@users_app.command("deactivate")
def deactivate_cmd(name: str) -> None:
    """Stop a user from logging in (their reviews stay)."""
    _set_active(name, False)


@users_app.command("activate")
def activate_cmd(name: str) -> None:
    _set_active(name, True)
