"""The one error the bootstrap raises, how PostgreSQL's errors read in its messages, how
long a message may be, and how it names a field it does not know."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import pg8000.native


class BootstrapError(Exception):
    """A bootstrap that cannot proceed; nothing was changed."""


class BootstrapRunning(BootstrapError):
    """A check found a bootstrap run in progress (its advisory lock held) and checked nothing:
    the run ends with the guarantees restored or refused, and the next check looks again."""


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


# CloudFormation refuses a custom resource's response over 4096 bytes, and then reports
# "Response object is too long" instead of the reason. A gap list or a repair list over many
# tables can be longer: what goes back is cut to this, the whole of it is logged.
MAX_REPORTED_CHARS = 1500


def bounded(text: str) -> str:
    """`text`, cut to what a CloudFormation response holds, saying where the rest is."""
    if len(text) <= MAX_REPORTED_CHARS:
        return text
    return (f"{text[:MAX_REPORTED_CHARS]} ... ({len(text) - MAX_REPORTED_CHARS} more "
            "characters in the function's log)")


def unknown_names(given: Iterable[object], known: Iterable[str]) -> list[str]:
    """Each of `given` that is not `known`, quoted, with the known name it resembles
    ("'AppUserSecretARN' (did you mean AppUserSecretArn?)"), sorted."""
    choices = sorted(known)
    named = []
    for name in sorted(set(given) - set(choices), key=str):
        close_to = difflib.get_close_matches(str(name), choices, n=1)
        named.append(f"{name!r} (did you mean {close_to[0]}?)" if close_to else repr(name))
    return named
