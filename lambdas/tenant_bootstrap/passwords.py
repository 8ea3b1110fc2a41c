"""The roles' passwords: which roles take one, how long one must be, and the SCRAM-SHA-256
verifier PostgreSQL stores instead of the password (which is never sent to the server)."""

from __future__ import annotations

import re
from base64 import b64encode
from collections.abc import Mapping
from typing import TypeGuard

from scramp import ScramMechanism

from .errors import BootstrapError

ROLES = ("app_user", "boom_owner")
MIN_PASSWORD_CHARS = 16  # the generated secrets have 32; a person's choice may be weaker
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def scram_verifier(password: str) -> str:
    """A SCRAM-SHA-256 verifier: the server stores it; the password itself is never sent."""
    salt, stored_key, server_key, iterations = ScramMechanism("SCRAM-SHA-256").make_auth_info(
        password, iteration_count=4096)

    def b64(raw: bytes) -> str:
        return b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def long_enough(password: object) -> TypeGuard[str]:
    """Whether `password` is a string of at least MIN_PASSWORD_CHARS characters."""
    return isinstance(password, str) and len(password) >= MIN_PASSWORD_CHARS


def check_role_passwords(role_passwords: Mapping[str, str]) -> None:
    """BootstrapError unless each password is for one of ROLES and long enough; it names
    roles, never values. Runs before anything connects or changes."""
    unknown_roles = set(role_passwords) - set(ROLES)
    if unknown_roles:
        raise BootstrapError(f"passwords given for unknown roles {sorted(unknown_roles)}; "
                             f"roles are {', '.join(ROLES)}")
    weak = sorted(role for role, password in role_passwords.items()
                  if not long_enough(password))
    if weak:
        raise BootstrapError(f"the password given for {', '.join(weak)} is shorter than "
                             f"{MIN_PASSWORD_CHARS} characters: generate one, e.g. python -c "
                             "'import secrets; print(secrets.token_urlsafe(24))'")
    # A generated password has none; a line break or carriage return is a copy from a file
    # (`read` of a CRLF line), and the role would no longer log in with its secret's password.
    copied = sorted(role for role, password in role_passwords.items()
                    if _CONTROL_CHARACTER.search(password))
    if copied:
        raise BootstrapError(f"the password given for {', '.join(copied)} contains a line "
                             "break or control character: remove it (a copy from a file?)")
