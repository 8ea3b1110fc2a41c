"""What every bootstrap run does at its end, in the migrations' transaction: restore the tenant
guarantees an operator or a role may have undone, then refuse to finish while an audit still
reports a gap no bootstrap should paper over. Audits that later migrations added run only
where the database has them.
"""

from __future__ import annotations

from collections.abc import Mapping

import pg8000.native

from .cron import schedule_jobs
from .errors import BootstrapError
from .shipped import Definition, restore_functions

# The event trigger that protects tenant tables and refuses what would weaken them as DDL runs
# (0001); 0026 adds boom_keep_tenant_id_columns. restore() puts back each the migrations make.
EVENT_TRIGGER = "boom_protect_tenant_tables"
# Audits of tenant tables, (table_name, problem) each, by the migration that added them.
TABLE_AUDITS = ("app.audit_tenant_tables()",  # 0001, exact since 0004
                "app.audit_tenant_statistics()", "app.audit_tenant_keys()",  # 0006
                "app.audit_tenant_privileges()",  # 0008; sequences since 0017
                "app.audit_tenant_expression_statistics()",  # 0009
                "app.audit_tenant_columns()",  # 0021
                "app.audit_tenant_views()", "app.audit_tenant_functions()")  # 0023



def enforce(conn: pg8000.native.Connection, create_event_triggers: Mapping[str, str],
            functions: Mapping[str, Definition]) -> tuple[str, ...]:
    """The guarantees in place, or BootstrapError (the caller rolls back). Returns what it
    restored, for the resource's `Repaired` and the CLI's `repaired:` lines."""
    repaired = restore(conn, create_event_triggers, functions)
    remaining = gaps(conn)
    if remaining:
        raise BootstrapError(f"the tenant guarantees have gaps the bootstrap will not "
                             f"override: {'; '.join(remaining)}. Fix them in a migration (owner "
                             "boom_owner, only the tenant policy) or as the message says, then "
                             "run again; nothing was changed")
    return repaired


def restore(conn: pg8000.native.Connection, create_event_triggers: Mapping[str, str],
            functions: Mapping[str, Definition]) -> tuple[str, ...]:
    """Puts back what an operator or a role may have undone; says what it put back. The
    shipped functions first (shipped.py), `functions` being their definitions at the
    database's version: the restores after them call some. `create_event_triggers`: each
    event trigger the database's version has, by name, with its CREATE EVENT TRIGGER."""
    return (*restore_functions(conn, functions),
            *(item for name, create in create_event_triggers.items()
              for item in _event_trigger(conn, name, create)), *_tenant_tables(conn),
            *_privileges(conn), *_role_settings(conn), *_database_settings(conn),
            *_temporary(conn), *_creation_rights(conn), *schedule_jobs(conn))


def gaps(conn: pg8000.native.Connection) -> list[str]:
    """What the audits report that no bootstrap should paper over ("subject: problem")."""
    problems = [(subject, problem) for audit in TABLE_AUDITS if _exists(conn, audit)
                for subject, problem in conn.run(f"SELECT table_name, problem FROM {audit}")]
    if _exists(conn, "app.audit_database()"):  # 0005
        problems += conn.run("SELECT 'database', problem FROM app.audit_database()")
    if _exists(conn, "app.audit_database_settings()"):  # 0019
        problems += conn.run("SELECT 'database', problem FROM app.audit_database_settings()")
    if _exists(conn, "app.audit_shipped_functions()"):  # 0012
        problems += conn.run("SELECT 'function ' || function_name, problem "
                             "FROM app.audit_shipped_functions()")
    if _exists(conn, "app.audit_app_user_creations()"):  # 0013
        problems += conn.run("SELECT subject, problem FROM app.audit_app_user_creations()")
    return [f"{subject}: {problem}" for subject, problem in problems]


def _event_trigger(conn: pg8000.native.Connection, name: str, create: str) -> list[str]:
    """RDS asks for event triggers to be dropped before a major version upgrade."""
    state = conn.run("SELECT evtenabled FROM pg_event_trigger WHERE evtname = :n", n=name)
    if not state:
        conn.run(create)
        return [f"event trigger {name} re-created"]
    if state[0][0] == "D":
        conn.run(f"ALTER EVENT TRIGGER {name} ENABLE")
        return [f"event trigger {name} re-enabled"]
    return []


def tables_to_protect(conn: pg8000.native.Connection) -> list[str]:
    """Tables made while the trigger was gone, and (0006) tables whose tenant_id got planner
    statistics back: protecting them alters them, which takes their ACCESS EXCLUSIVE lock.
    Reads the catalogs only."""
    statistics = ("SELECT table_name FROM app.audit_tenant_statistics() UNION "
                  if _exists(conn, "app.audit_tenant_statistics()") else "")
    return [str(table) for (table,) in conn.run(
        f"{statistics}SELECT table_name FROM app.audit_tenant_tables() "
        "WHERE problem LIKE 'row level security%' OR problem LIKE 'no policy%' ORDER BY 1")]


def _tenant_tables(conn: pg8000.native.Connection) -> list[str]:
    """protect_tenant_table() gives each table to protect RLS, the policy, no statistics."""
    tables = tables_to_protect(conn)
    for table in tables:
        conn.run("SELECT app.protect_tenant_table(CAST(:t AS regclass))", t=table)
    return [f"{table} protected" for table in tables]


def _privileges(conn: pg8000.native.Connection) -> list[str]:
    """(0008) TRUNCATE, TRIGGER or REFERENCES on a tenant table, which row level security does
    not cover, and (0017) UPDATE on a sequence, given to app_user or PUBLIC while the event
    trigger was off (or, for a sequence, by default privileges): revoked (as the owner,
    boom_owner, whose member this user is; REVOKE ... ON TABLE names sequences too). One
    app_user holds through another role stays, and the audit makes the run refuse, naming
    it."""
    if not _exists(conn, "app.audit_tenant_privileges()"):
        return []
    # Held directly or through PUBLIC: "app_user holds TRUNCATE, which ..." (not "... through
    # <role> (role membership)")
    found = conn.run("SELECT table_name, string_agg(substring(problem FROM "
                     "'^app_user holds ([A-Z]+), which'), ', ' ORDER BY problem) "
                     "FROM app.audit_tenant_privileges() "
                     "WHERE problem ~ '^app_user holds [A-Z]+, which' GROUP BY 1 ORDER BY 1")
    for table, privileges in found:
        conn.run(f"REVOKE {privileges} ON TABLE {table} FROM app_user, PUBLIC")
    return [f"{privileges} on {table} revoked from app_user and PUBLIC"
            for table, privileges in found]


def _role_settings(conn: pg8000.native.Connection) -> list[str]:
    """(0007) A role's own ALTER ROLE ... SET, undone; settings named, values never shown."""
    if not _exists(conn, "app.audit_role_settings()"):
        return []
    changed = conn.run("SELECT role_name, string_agg(DISTINCT setting_name, ', ') "
                       "FROM app.audit_role_settings() GROUP BY 1 ORDER BY 1")
    if changed:
        conn.run("SELECT app.restore_role_settings()")
    return [f"role settings of {role} restored to the migrations': {names}"
            for role, names in changed]


def _database_settings(conn: pg8000.native.Connection) -> list[str]:
    """(0019) Settings made for the database (ALTER DATABASE ... SET), reset, if this user acts
    as its owner (only the owner may); otherwise app.audit_database_settings() makes the run
    refuse, naming the fix. Settings named, values never shown."""
    if not _exists(conn, "app.audit_database_settings()"):
        return []
    [[names]] = conn.run("SELECT string_agg(setting_name, ', ' ORDER BY setting_name) "
                         "FROM app.audit_database_settings()")
    database, owner = _database_and_owner(conn)
    if not (names and owner):
        return []
    conn.run(f"ALTER DATABASE {pg8000.native.identifier(database)} RESET ALL")
    return [f"settings of database {database} reset to the parameter group's: {names}"]


def _temporary(conn: pg8000.native.Connection) -> list[str]:
    """(0005) TEMPORARY back on PUBLIC: a logical restore into a new database has it, as CREATE
    DATABASE grants it. Taken back as 0005 did, if this user acts as the database's owner
    (only the owner may); otherwise app.audit_database() makes the run refuse, naming the fix.
    """
    if not _exists(conn, "app.audit_database()"):
        return []
    [[gap]] = conn.run("SELECT EXISTS (SELECT FROM app.audit_database())")
    database, owner = _database_and_owner(conn)
    if not (gap and owner):
        return []
    conn.run(f"REVOKE TEMPORARY ON DATABASE {pg8000.native.identifier(database)} "
             "FROM PUBLIC, app_user")
    return ["TEMPORARY on the database revoked from PUBLIC and app_user"]


def _creation_rights(conn: pg8000.native.Connection) -> list[str]:
    """(0013) CREATE on a schema or on the database, granted to app_user or PUBLIC: revoked
    where this user acts as the owner, as the audit's run_revokes says. A grant it cannot
    reach, one through a role membership, and objects app_user already made stay, and the
    audit makes the run refuse."""
    if not _exists(conn, "app.audit_app_user_creations()"):
        return []
    found = conn.run("SELECT subject, run_revokes FROM app.audit_app_user_creations() "
                     "WHERE run_revokes IS NOT NULL ORDER BY 1")
    for _, revoke in found:
        conn.run(revoke)
    return [f"CREATE on {subject} revoked from PUBLIC and app_user" for subject, _ in found]


def _database_and_owner(conn: pg8000.native.Connection) -> tuple[str, bool]:
    """This database's name, and whether this user acts as its owner (the owner, a member of
    the owner's role, or a superuser): only the owner may grant or set for the database."""
    [[database, owner]] = conn.run("SELECT datname, pg_has_role(datdba, 'USAGE') FROM pg_database "
                                   "WHERE datname = current_database()")
    return str(database), bool(owner)


def _exists(conn: pg8000.native.Connection, function: str) -> bool:
    """Whether the database has `function` (a signature): migrations add audits over time."""
    return bool(conn.run("SELECT to_regprocedure(:f) IS NOT NULL", f=function)[0][0])
