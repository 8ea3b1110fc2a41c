"""The bootstrap tests' database (empty, one per test) and what they read back from it: its
schema and recorded versions; and runs started in the background, for the tests that get in
their way."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pg8000.native

from lambdas.tenant_bootstrap.migration_files import Migration
from tests.fixture_postgres import PG_BIN, PostgresServer, new_login_role


def schema_dump(postgres: PostgresServer, database: str) -> str:
    """`pg_dump --schema-only` of `database`, for before/after comparisons."""
    result = subprocess.run(
        [str(PG_BIN / "pg_dump"), "--schema-only", "-h", "127.0.0.1", "-p", str(postgres.port),
         "-U", "postgres", database], env={"PGPASSWORD": postgres.password},
        capture_output=True, text=True, check=True)
    # pg_dump 15.14+ brackets its output with a random \restrict key: not schema.
    return "\n".join(line for line in result.stdout.splitlines()
                     if not line.startswith(("\\restrict", "\\unrestrict")))


def versions(conn: pg8000.native.Connection) -> list[list[object]]:
    """The migrations recorded as applied: version, name, checksum."""
    return conn.run("SELECT version, name, checksum FROM boom_meta.schema_versions ORDER BY 1")


@dataclass(frozen=True)
class FreshDatabase:
    """An empty database and a TLS connection to it as the superuser, as the bootstrap runs."""
    name: str
    conn: pg8000.native.Connection


@contextmanager
def bootstrap_run_in_progress(postgres: PostgresServer, database: str, *,
                              ends_after: float | None = None) -> Iterator[None]:
    """Another bootstrap run, as far as the database can tell: a session holding the
    bootstrap's advisory lock in an open transaction, until the block ends, or for
    `ends_after` seconds if that is sooner."""
    from lambdas.tenant_bootstrap import bootstrap

    other = postgres.connect(database)
    other.run("BEGIN")
    other.run("SELECT pg_advisory_xact_lock(:key)", key=bootstrap.ADVISORY_LOCK)
    ending = threading.Timer(ends_after, other.run, ["ROLLBACK"]) if ends_after else None
    if ending:
        ending.start()
    try:
        yield
    finally:
        if ending:
            ending.join()
        other.run("ROLLBACK")
        other.close()


def event_trigger(conn: pg8000.native.Connection, name: str) -> list[list[object]]:
    """The event trigger `name` as pg_event_trigger has it: its event, tags, function and
    state ([] when there is none)."""
    return conn.run("SELECT evtevent, evttags, evtfoid::regproc::text, evtenabled "
                    "FROM pg_event_trigger WHERE evtname = :n", n=name)


@contextmanager
def trigger_off(conn: pg8000.native.Connection) -> Iterator[None]:
    """boom_protect_tenant_tables disabled (by `conn`, a superuser's) for the block, as an
    operator may leave it: what is done meanwhile, on any connection, goes unchecked by it.
    0026's boom_keep_tenant_id_columns stays on (test_tenant_id_column.py disables it itself)."""
    conn.run("ALTER EVENT TRIGGER boom_protect_tenant_tables DISABLE")
    try:
        yield
    finally:
        conn.run("ALTER EVENT TRIGGER boom_protect_tenant_tables ENABLE")


def bookings_needing_a_locking_repair(conn: pg8000.native.Connection) -> None:
    """FORCE row level security switched off on app.bookings while the event trigger was: the
    next bootstrap run (or check) repairs it, which takes the table's ACCESS EXCLUSIVE lock."""
    with trigger_off(conn):
        conn.run("ALTER TABLE app.bookings NO FORCE ROW LEVEL SECURITY")


# What a run restores after a_tenant_table_made_while_the_trigger_is_off, as it names it,
# and what a check reports of it.
LATE_TABLE_RESTORED = ["event trigger boom_protect_tenant_tables re-enabled",
                       "app.late protected"]
LATE_TABLE_FOUND = [f"would restore: {item}" for item in LATE_TABLE_RESTORED]


def late_table_drift(postgres: PostgresServer, database: str) -> None:
    """a_tenant_table_made_while_the_trigger_is_off in `database`, as its superuser."""
    admin = postgres.connect(database)
    try:
        a_tenant_table_made_while_the_trigger_is_off(admin)
    finally:
        admin.close()


def a_tenant_table_made_while_the_trigger_is_off(conn: pg8000.native.Connection) -> None:
    """The event trigger left disabled (as RDS asks before a major upgrade) and a tenant table,
    app.late, made by boom_owner meanwhile: it has no row level security. A run re-enables the
    trigger and protects the table (`conn`: a superuser's)."""
    conn.run("ALTER EVENT TRIGGER boom_protect_tenant_tables DISABLE")
    conn.run("SET ROLE boom_owner")
    conn.run("CREATE TABLE app.late (id int, tenant_id uuid)")
    conn.run("RESET ROLE")


def create_rds_like_master(postgres: PostgresServer) -> tuple[str, str]:
    """A new master user shaped like RDS's: LOGIN, CREATEROLE, CREATEDB, not a superuser. Its
    name and password."""
    return new_login_role(postgres, "rds_like_master", "CREATEROLE CREATEDB")


def hand_to_master(admin: pg8000.native.Connection, master: str, migration: Migration) -> None:
    """What an RDS-like `master` would own had it applied `migration` itself, when a superuser
    applied it instead, standing in for RDS's allowance to create event triggers: handed to
    it (`admin`, the superuser, on the migrated database)."""
    if migration.version == 1:
        admin.run(f"ALTER SCHEMA boom_meta OWNER TO {master}")
        admin.run(f"ALTER TABLE boom_meta.schema_versions OWNER TO {master}")
        admin.run(f"ALTER FUNCTION app.protect_new_tenant_tables() OWNER TO {master}")
        admin.run(f"ALTER FUNCTION app.protect_tenant_table(regclass) OWNER TO {master}")
        admin.run(f"GRANT boom_owner TO {master}")  # 0001's GRANT ... TO CURRENT_USER
    if "CREATE TABLE boom_meta.shipped_functions" in migration.sql:  # 0012: CURRENT_USER's
        admin.run(f"ALTER TABLE boom_meta.shipped_functions OWNER TO {master}")
    if admin.run("SELECT to_regclass('boom_meta.shipped_functions') IS NOT NULL")[0][0]:
        # Since 0012 the bootstrap's user owns what it ships, a later migration's new ones too
        # (0023's audit, in a migration the master may not run for its event trigger).
        for (function,) in admin.run("SELECT signature FROM boom_meta.shipped_functions"):
            admin.run(f"ALTER FUNCTION {function} OWNER TO {master}")


WAITING = 10.0  # seconds a step may take before the test calls it stuck


def in_background(work: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    """`work` started in a thread (a run the test then gets in the way of); once the thread
    has ended, the outcome holds its "result" or the exception as "error"."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except Exception as err:  # noqa: BLE001 - handed to the test, which asserts on it
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def eventually(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds, failing the test after WAITING seconds."""
    deadline = time.monotonic() + WAITING
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)
