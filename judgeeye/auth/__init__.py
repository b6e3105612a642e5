"""People and access: roles and permissions, password hashing, users, login."""

from judgeeye.auth.passwords import WeakPassword, generate_password, hash_password, verify_password
from judgeeye.auth.roles import (
    PERMISSIONS,
    ROLES,
    AccessDenied,
    Actor,
    can_see_page,
    has_permission,
    job_permission,
    page_permission,
    require,
)
from judgeeye.auth.users import (
    FIRST_ADMIN,
    UserError,
    UserInfo,
    actor_of,
    add_user,
    authenticate,
    ensure_first_admin,
    find_user,
    list_users,
    refresh_actor,
    set_active,
    set_password,
    set_role,
    user_for_identity,
)

__all__ = [
    "FIRST_ADMIN", "PERMISSIONS", "ROLES", "AccessDenied", "Actor", "UserError", "UserInfo",
    "WeakPassword", "actor_of", "add_user", "authenticate", "can_see_page", "ensure_first_admin",
    "find_user", "generate_password", "has_permission", "job_permission", "hash_password", "list_users",
    "page_permission", "refresh_actor", "require", "set_active", "set_password", "set_role",
    "user_for_identity", "verify_password",
]
