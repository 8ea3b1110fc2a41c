"""Two tenants' rows in the shared tenant database, and helpers to act as one of them.

The fixtures that use these (`seeded`, `app_user`, `owner`) are in conftest.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pg8000.native
import pytest
from pg8000.native import Connection as Conn

from tests.fixture_postgres import PostgresServer, bootstrapped_database

TENANT_A, TENANT_B = uuid.uuid4(), uuid.uuid4()
ROWS_PER_TENANT = 3
# The textbook tenant check, without 0003/0005's stamp: a session-level SET passes it.
TEXTBOOK = ("CREATE OR REPLACE FUNCTION app.current_tenant_id() RETURNS uuid LANGUAGE sql "
            "STABLE AS $$ SELECT current_setting('boom.tenant_id', true)::uuid $$")

# What app.audit_tenant_tables() says (migration 0004), for the tests that expect it.
WIDENS = ("widens access: its USING and WITH CHECK must be exactly "
          "tenant_id = (SELECT app.current_tenant_id())")
MATVIEW_OF_BOOKINGS = ("materialized view of app.bookings readable by app_user: it has no row "
                       "level security, so every tenant sees the rows it holds")
ACTS_AS_OWNER = ("app_user can act as its owner boom_owner (role membership), who may drop the "
                 "table, empty it or change its policies")


# A tenant's read as drivers send it after a few executions: a named prepared statement, which
# PgBouncer prepares on each server connection as PGBOUNCER_<n> (the text it shows is $1's).
PREPARED_READ = "SELECT count(*) FROM app.bookings WHERE resource <> :r"


def prepared_read(conn: Conn, tenant: object) -> tuple[int, int]:
    """One transaction as the contract has it (set_tenant unnamed, first), then PREPARED_READ:
    (the tenant's booking count, the server connection's backend pid). A failure is rolled
    back, as a client's pool would, and raised."""
    conn.run("BEGIN")
    try:
        pid = int(conn.run("SELECT pg_backend_pid() FROM app.set_tenant(:t)", t=tenant)[0][0])
        count = int(conn.prepare(PREPARED_READ).run(r="none")[0][0])
    except pg8000.native.DatabaseError:
        conn.run("ROLLBACK")
        raise
    conn.run("COMMIT")
    return count, pid


def server_warnings(conn: Conn) -> list[str]:
    """The WARNING messages the server sent this connection (pg8000 keys them in bytes)."""
    return [notice[b"M"].decode() for notice in conn.notices if notice.get(b"S") == b"WARNING"]


def app_user_connection_limit(postgres: PostgresServer) -> int:
    """app_user's CONNECTION LIMIT (-1: none), which the bootstrap may set."""
    conn = postgres.connect()
    try:
        return int(conn.run("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'app_user'")[0][0])
    finally:
        conn.close()


def widening(policy: str) -> str:
    return f"policy {policy} {WIDENS}"


def user_of(conn: Conn) -> str:
    return str(conn.run("SELECT current_user")[0][0])


def schema_version(admin: Conn) -> int:
    """The version the test's database is at (boom_meta.schema_versions)."""
    return int(admin.run("SELECT max(version) FROM boom_meta.schema_versions")[0][0])


def every_tenants_count(admin: Conn) -> int:
    """How many bookings all tenants have, as a superuser (the tests' admin) counts them."""
    return int(admin.run("SELECT count(*) FROM app.bookings")[0][0])


# What the event trigger and the view audit say of a view that shows app_user every tenant's
# bookings as a role bypassing row level security (0023; `through`: what it is reached
# through, 0024).
BYPASSING_VIEW_HINT = ("A view app_user reads must run as a role row level security binds, or "
                       "as its reader.")
# And its hints for a rule and a materialized view such a role reaches (0024).
RULE_HINT = ("A rule runs as the owner of its table or view: one that app_user's writes fire "
             "must belong to a role row level security binds.")
STORED_HINT = ("A materialized view has no row level security: keep it from every role app_user "
               "reaches it as.")


def bypassing_view(view: str, owner: str, through: str | None = None) -> str:
    reach = f"reaches through {through}" if through else "may read"
    return (f"{view}: a view app_user {reach}, run as {owner}, who bypasses row level security "
            "(SUPERUSER or BYPASSRLS): it shows every tenant's rows of app.bookings. ALTER VIEW "
            f"{view} SET (security_invoker = on), or ALTER VIEW {view} OWNER TO boom_owner")


# What the event trigger and the function audit say of a SECURITY DEFINER function app_user
# may run as such a role (0023; 0024: the roles app_user acts as, `reach` for app_user), and
# the trigger's hint (0025).
FUNCTION_HINT = ("GRANT EXECUTE on such a function only to the roles that need it, never to "
                 "app_user or a role it acts as (a new one's EXECUTE is revoked from PUBLIC as it "
                 "is made; default privileges may grant it: ALTER DEFAULT PRIVILEGES ... REVOKE "
                 "EXECUTE ON FUNCTIONS FROM app_user).")


def runs_for_everyone(function: str, owner: str) -> str:
    return (f"function {function}: app_user may run it (a call, or a trigger of a table it "
            f"writes) as {owner}, who bypasses row level security (SUPERUSER or BYPASSRLS) and "
            "is SECURITY DEFINER: whatever it reads of tenant tables, it reads for every "
            f"tenant. ALTER FUNCTION {function} SECURITY INVOKER, or keep it from app_user "
            f"(REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC, app_user; a trigger's: DROP "
            "TRIGGER)")


# A superuser's SECURITY DEFINER trigger function: a trigger's function runs in the writes
# that fire it, whoever may EXECUTE it; the trigger, and tenant B's insert that fires it.
COPY_COUNT = ("CREATE FUNCTION app.copy_count() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
              "AS $$ BEGIN NEW.resource := (SELECT count(*) FROM app.bookings)::text; "
              "RETURN NEW; END $$")
COPY_COUNT_TRIGGER = ("CREATE TRIGGER count_on_insert BEFORE INSERT ON app.bookings FOR EACH ROW "
                      "EXECUTE FUNCTION app.copy_count()")
COPY_COUNT_INSERT = ("INSERT INTO app.bookings (resource, starts_at, ends_at) "
                     "VALUES ('n', now(), now() + interval '1 hour') RETURNING resource")


def seed_two_tenants(postgres: PostgresServer, passwords: dict[str, str], database: str) -> None:
    owner = connect_as(postgres, passwords, database, "boom_owner")
    for tenant in (TENANT_A, TENANT_B):
        committed(owner, tenant, "INSERT INTO app.bookings (resource, starts_at, ends_at) "
                  "SELECT 'room-' || n, now(), now() + interval '1 hour' "
                  "FROM generate_series(0, :last) n", last=ROWS_PER_TENANT - 1)
    owner.close()


def connect_as(postgres: PostgresServer, passwords: dict[str, str], database: str,
               role: str) -> Conn:
    """A new session of `role` (app_user or boom_owner) on `database`."""
    return postgres.connect(database, user=role, password=passwords[role])


def login(postgres: PostgresServer, passwords: dict[str, str], database: str,
          role: str) -> Iterator[Conn]:
    conn = connect_as(postgres, passwords, database, role)
    yield conn
    conn.close()


@contextmanager
def rolled_back(conn: Conn) -> Iterator[Conn]:
    """A transaction on `conn`, rolled back whatever happens (also roles: they are cluster-wide
    and other tests share them)."""
    conn.run("BEGIN")
    try:
        yield conn
    finally:
        conn.run("ROLLBACK")


def in_tenant(conn: Conn, tenant: uuid.UUID | None, sql: str, **params: object) -> list[list]:
    """`sql` in a transaction bound to `tenant` (None: no tenant), rolled back afterwards."""
    with rolled_back(conn):
        if tenant is not None:
            conn.run("SELECT app.set_tenant(:t)", t=tenant)
        return conn.run(sql, **params)


def committed(conn: Conn, tenant: uuid.UUID, sql: str, *,
              local_settings: Mapping[str, str] | None = None, **params: object) -> list[list]:
    """`sql` in a transaction bound to `tenant`, committed (rolled back if it fails);
    `local_settings` are set for the transaction first, as SET LOCAL does."""
    conn.run("BEGIN")
    try:
        conn.run("SELECT app.set_tenant(:t)", t=tenant)
        for name, value in (local_settings or {}).items():
            conn.run("SELECT set_config(:name, :value, true)", name=name, value=value)
        rows = conn.run(sql, **params)
        conn.run("COMMIT")
    except pg8000.native.DatabaseError:
        conn.run("ROLLBACK")
        raise
    return rows


def fails(conn: Conn, tenant: uuid.UUID | None, sql: str, match: str, **params: object) -> None:
    with pytest.raises(pg8000.native.DatabaseError, match=match):
        in_tenant(conn, tenant, sql, **params)


def left_open(conn: Conn, tenant: uuid.UUID, sql: str, **params: object) -> list[list]:
    """`sql` in a transaction bound to `tenant`, left open: the transaction keeps the locks
    `sql` took until the caller ends it (a client that stopped mid-transaction)."""
    conn.run("BEGIN")
    conn.run("SELECT app.set_tenant(CAST(:t AS uuid))", t=str(tenant))
    return conn.run(sql, **params)


def database_with(postgres: PostgresServer, passwords: dict[str, str], *ddl: str,
                  version: int | None = None) -> str:
    """A new database bootstrapped to `version` (default: latest) where boom_owner ran `ddl`."""
    database = bootstrapped_database(postgres, passwords, target_version=version)
    owner = connect_as(postgres, passwords, database, "boom_owner")
    for statement in ddl:
        owner.run(statement)
    owner.close()
    return database
