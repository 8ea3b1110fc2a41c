"""The one error the bootstrap raises, and how PostgreSQL's errors read in its messages."""

from __future__ import annotations

import pg8000.native


class BootstrapError(Exception):
    """A bootstrap that cannot proceed; nothing was changed."""


def sqlstate(err: BaseException) -> str | None:
    """The SQLSTATE of a PostgreSQL error pg8000 raised, else None."""
    if isinstance(err, pg8000.native.DatabaseError) and err.args \
            and isinstance(err.args[0], dict):
        return str(err.args[0].get("C"))
    return None


def reason(err: Exception) -> str:
    """PostgreSQL's message and SQLSTATE, or the error's own text."""
    if err.args and isinstance(err.args[0], dict):
        fields = err.args[0]
        return f"{fields.get('M', err)} (SQLSTATE {fields.get('C', '?')})"
    return str(err) or type(err).__name__
