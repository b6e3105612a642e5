"""Users: creating and changing them (admins only), logging in, the first admin, OIDC mapping."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from judgeeye.auth.passwords import generate_password, hash_password, needs_rehash, verify_password
from judgeeye.auth.roles import Actor, check_role, require
from judgeeye.store import Annotator

FIRST_ADMIN = "admin"


class UserError(ValueError):
    """Bad input for a user (unknown name, duplicate, bad role): nothing was changed."""


@dataclass
class UserInfo:
    id: int
    name: str
    role: str
    active: bool
    has_password: bool


def actor_of(user: Annotator) -> Actor:
    return Actor(id=user.id, name=user.name, role=user.role)


def find_user(session: Session, name: str) -> Annotator:
    user = session.scalar(select(Annotator).where(Annotator.name == name))
    if user is None:
        raise UserError(f"no user {name!r}")
    return user


def list_users(session: Session) -> list[UserInfo]:
    return [
        UserInfo(u.id, u.name, u.role, u.active, bool(u.password_hash))
        for u in session.scalars(select(Annotator).order_by(Annotator.id)).all()
    ]


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise UserError("a user name must have 1 to 200 characters")
    return name


def add_user(
    session: Session, actor: Actor, name: str, role: str = "annotator", password: str | None = None
) -> tuple[Annotator, str | None]:
    """Create a user; returns it and the generated password when none was given (shown once)."""
    require(actor, "manage_users")
    name = _clean_name(name)
    try:
        check_role(role)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if session.scalar(select(Annotator.id).where(Annotator.name == name)) is not None:
        raise UserError(f"user {name!r} exists already")
    generated = None
    if password is None:
        password = generated = generate_password()
    try:
        hashed = hash_password(password)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    user = Annotator(name=name, role=role, password_hash=hashed, active=True)
    session.add(user)
    session.flush()
    return user, generated


def set_password(session: Session, actor: Actor, name: str, password: str) -> None:
    """Admins set anyone's password; every user may set their own."""
    user = find_user(session, name)
    if actor.id != user.id:
        require(actor, "manage_users")
    try:
        user.password_hash = hash_password(password)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def set_role(session: Session, actor: Actor, name: str, role: str) -> None:
    require(actor, "manage_users")
    user = find_user(session, name)
    try:
        check_role(role)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if user.role == "admin" and role != "admin":
        _keep_an_admin(session, user)
    user.role = role


def set_active(session: Session, actor: Actor, name: str, active: bool) -> None:
    require(actor, "manage_users")
    user = find_user(session, name)
    if not active and user.role == "admin":
        _keep_an_admin(session, user)
    user.active = active


def _keep_an_admin(session: Session, leaving: Annotator) -> None:
    others = session.scalar(
        select(func.count()).select_from(Annotator).where(
            Annotator.role == "admin", Annotator.active.is_(True), Annotator.id != leaving.id)
    )
    if not others:
        raise UserError(f"{leaving.name!r} is the last active admin; make someone else admin first")


def authenticate(session: Session, name: str, password: str) -> Actor | None:
    """The user, when the name exists, is active and the password matches; None otherwise."""
    user = session.scalar(select(Annotator).where(Annotator.name == (name or "").strip()))
    stored = user.password_hash if user is not None and user.active else None
    if not verify_password(stored, password or ""):
        return None
    assert user is not None and stored is not None
    if needs_rehash(stored):
        user.password_hash = hash_password(password)
    return actor_of(user)


def refresh_actor(session: Session, actor: Actor) -> Actor | None:
    """The actor as the store knows them now: a changed role applies at once, a deactivated or
    deleted user is logged out on their next click."""
    if actor.id is None:
        return None
    user = session.get(Annotator, actor.id)
    if user is None or not user.active:
        return None
    return actor_of(user)


def user_for_identity(session: Session, email: str | None, name: str | None) -> Actor | None:
    """Map an OIDC identity (``st.user``) to a stored, active user: by e-mail, then by name."""
    for key in (email, name):
        if key:
            user = session.scalar(select(Annotator).where(func.lower(Annotator.name) == key.strip().lower()))
            if user is not None and user.active:
                return actor_of(user)
    return None


def ensure_first_admin(session: Session) -> str | None:
    """On a store without users, create ``admin`` with a generated password and return it (for
    the caller to print once); None when users exist already. Safe against two first starts."""
    if session.scalar(select(func.count()).select_from(Annotator)):
        return None
    password = generate_password()
    try:
        with session.begin_nested():
            session.add(Annotator(name=FIRST_ADMIN, role="admin", password_hash=hash_password(password)))
    except IntegrityError:
        return None
    return password
