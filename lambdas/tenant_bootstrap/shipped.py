"""The functions the bootstrap ships (boom_meta.shipped_functions, 0012), kept exactly as the
migrations define them. 0012 gave them to the bootstrap's user, so no migration can redefine
one; but that user can, and did nothing to notice: an operator's "quick fix" to
app.current_tenant_id() (the textbook body without the stamp) would let a session-level SET
leak tenants through the pooler again, and every audit would still pass. Every run and check
now compares each function with its latest definition in the migrations, and puts it back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

import pg8000.native

from .errors import BootstrapError, reason

# One function's CREATE statement in a migration: every one is written `AS $$ ... $$;`.
_DEFINITION = re.compile(r"^CREATE (?:OR REPLACE )?FUNCTION (app\.[a-z_]+)\(.*?\$\$.*?\$\$;",
                         re.MULTILINE | re.DOTALL)
# What 0012 fingerprints: the body, SECURITY DEFINER, and the SET clauses.
_FINGERPRINT = ("SELECT md5(concat_ws('|', p.prosrc, p.prosecdef, p.proconfig::text)) "
                "FROM pg_proc p WHERE p.oid = to_regprocedure(:s)")
_SAVEPOINT = "boom_shipped_function"


class _Migration(Protocol):
    @property
    def version(self) -> int: ...

    @property
    def sql(self) -> str: ...


class Definition(NamedTuple):
    version: int  # of the latest migration that defines the function
    sql: str  # its CREATE OR REPLACE FUNCTION statement


def definitions(migrations: Sequence[_Migration]) -> dict[str, Definition]:
    """Each function's latest definition among `migrations`, by qualified name."""
    found = {}
    for migration in migrations:
        for statement in _DEFINITION.finditer(migration.sql):
            create = re.sub(r"^CREATE (?:OR REPLACE )?FUNCTION", "CREATE OR REPLACE FUNCTION",
                            statement[0])
            found[statement[1]] = Definition(migration.version, create)
    return found


def restore_functions(conn: pg8000.native.Connection,
                      functions: Mapping[str, Definition]) -> list[str]:
    """Each shipped function whose body, SECURITY DEFINER or SET clauses differ from its
    latest definition is defined so again, and named. PostgreSQL's own reading of the
    definition is the reference: it runs in a savepoint and is kept only if it changes the
    fingerprint. A missing function is the audit's to report (its privileges would not come
    back with it). One that cannot be replaced in place (re-created with other argument
    names or another return type) is BootstrapError: the caller rolls back."""
    restored = []
    for signature, definition in _shipped(conn, functions):
        before = conn.run(_FINGERPRINT, s=signature)[0][0]
        conn.run(f"SAVEPOINT {_SAVEPOINT}")
        try:
            conn.execute_simple(definition.sql)
        except pg8000.native.DatabaseError as err:
            conn.run(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            raise BootstrapError(
                f"function {signature} is not as migration {definition.version:04d} defines "
                f"it, and cannot be put back in place: {reason(err)}. As the bootstrap's user, "
                f"DROP FUNCTION {signature} and create it as that migration does (with its "
                "REVOKE), then run again; nothing was changed") from None
        if conn.run(_FINGERPRINT, s=signature)[0][0] == before:
            conn.run(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        else:
            restored.append(f"function {signature} put back as migration "
                            f"{definition.version:04d} defines it (its body, SECURITY DEFINER "
                            "or SET clauses had changed)")
        conn.run(f"RELEASE SAVEPOINT {_SAVEPOINT}")
    return restored


def _shipped(conn: pg8000.native.Connection,
             functions: Mapping[str, Definition]) -> list[tuple[str, Definition]]:
    """The shipped functions that exist, each with its definition."""
    if not conn.run("SELECT to_regclass('boom_meta.shipped_functions') IS NOT NULL")[0][0]:
        return []
    rows = conn.run("SELECT signature FROM boom_meta.shipped_functions "
                    "WHERE to_regprocedure(signature) IS NOT NULL ORDER BY 1")
    return [(signature, functions[name]) for (signature,) in rows
            if (name := signature.split("(")[0]) in functions]
