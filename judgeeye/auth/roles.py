"""Roles, what each may do, and the check every mutating library action makes.

The app hides pages a role may not use, but that is only convenience: the library functions
that change the store take the acting user and call :func:`require`, so a forged request or a
script cannot do more than the role allows.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES: tuple[str, ...] = ("annotator", "author", "lead", "admin")

#: permission -> roles that hold it
PERMISSIONS: dict[str, frozenset[str]] = {
    "view": frozenset(ROLES),
    "review": frozenset(ROLES),
    "edit_codebook": frozenset({"author", "lead", "admin"}),
    "manage_data": frozenset({"lead", "admin"}),
    "sample": frozenset({"lead", "admin"}),
    "see_dashboards": frozenset({"lead", "admin"}),
    "manage_rounds": frozenset({"lead", "admin"}),
    "adjudicate": frozenset({"lead", "admin"}),
    "export": frozenset({"lead", "admin"}),
    "evaluate": frozenset({"lead", "admin"}),  # start, resume or cancel rater runs
    "train": frozenset({"lead", "admin"}),  # start, stop or resume fine-tuning
    "experiment": frozenset({"lead", "admin"}),  # start, stop or resume experiments (all of the above)
    "manage_users": frozenset({"admin"}),
}

#: job kind -> permission needed to start, resume or cancel such a job; a kind not listed
#: (a new one) is the admin's until someone decides otherwise
JOB_PERMISSIONS: dict[str, str] = {
    "sample": "sample",
    "evaluate": "evaluate",
    "train": "train",
    "refine": "edit_codebook",
    "experiment": "experiment",
}
DEFAULT_JOB_PERMISSION = "manage_users"

#: page url path -> permission needed to see it; pages not listed need "see_dashboards"
#: (new pages are closed to annotators and authors until someone decides otherwise)
PAGE_PERMISSIONS: dict[str, str] = {
    "": "view",
    "home": "view",
    "review": "review",
    "codebooks": "edit_codebook",
    "refine": "edit_codebook",  # guideline authors refine the codebook from the traces
    "data": "manage_data",
    "sample": "sample",
    "train": "train",
    "assignments": "manage_rounds",
    "agreement": "see_dashboards",
    "experiments": "experiment",
    "users": "manage_users",
}
DEFAULT_PAGE_PERMISSION = "see_dashboards"


class AccessDenied(PermissionError):
    """The acting user's role does not allow this action."""


@dataclass(frozen=True)
class Actor:
    """Who is acting: a stored user (``id``), or the local operator of the CLI (``id`` None)."""

    id: int | None
    name: str
    role: str

    @classmethod
    def system(cls) -> Actor:
        """The CLI's operator: whoever can open the database already has every right to it."""
        return cls(id=None, name="system", role="admin")

    @property
    def is_system(self) -> bool:
        return self.id is None

    def can(self, permission: str) -> bool:
        return has_permission(self.role, permission)

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "role": self.role}


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return role


def has_permission(role: str, permission: str) -> bool:
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    return role in PERMISSIONS[permission]


def require(actor: Actor | None, permission: str) -> Actor:
    """The actor, if their role holds ``permission``; :class:`AccessDenied` otherwise."""
    if actor is None:
        raise AccessDenied(f"log in first: {permission!r} needs a user")
    if not has_permission(actor.role, permission):
        allowed = ", ".join(r for r in ROLES if r in PERMISSIONS[permission])
        raise AccessDenied(f"{actor.name} ({actor.role}) may not {permission.replace('_', ' ')}; "
                           f"that needs one of: {allowed}")
    return actor


def job_permission(kind: str) -> str:
    """The permission that starts, resumes or cancels a job of this kind."""
    return JOB_PERMISSIONS.get(kind, DEFAULT_JOB_PERMISSION)


def page_permission(url_path: str) -> str:
    return PAGE_PERMISSIONS.get(url_path.strip("/"), DEFAULT_PAGE_PERMISSION)


def can_see_page(role: str, url_path: str) -> bool:
    return has_permission(role, page_permission(url_path))
