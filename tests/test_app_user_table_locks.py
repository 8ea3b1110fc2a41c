"""0016: an app_user transaction holding a table lock above ROW EXCLUSIVE (only LOCK TABLE takes
one for app_user) is ended by pg_cron's job once another session's statement has waited more
than 5 s for that table behind it; not after the 10-minute bound. Row locks, locks nobody
waits for, brief waits and other roles' locks are left alone.

The function pg_cron runs each minute is called directly here, on the session's shared server
(pg_cron's own run of it: test_stuck_app_user_backends.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pg8000.native
import pytest

from lambdas.tenant_bootstrap.cron import STUCK_BACKEND_LOG
from tests.fixture_postgres import PostgresServer, backend_alive, backend_ended
from tests.fixture_tenants import (
    ROWS_PER_TENANT,
    TENANT_A,
    TENANT_B,
    Conn,
    connect_as,
    database_with,
    left_open,
    seed_two_tenants,
)

ENDED = (pg8000.native.DatabaseError, pg8000.native.InterfaceError)
END = "SELECT app.end_stuck_app_user_backends()"
WAITED = 5  # seconds a statement waits before the lock holder counts as holding others up
# Two more tenant tables, made as a migration would.
MORE_TABLES = tuple(f"CREATE TABLE app.{name} (id bigint NOT NULL, tenant_id uuid NOT NULL "
                    "DEFAULT app.current_tenant_id(), PRIMARY KEY (tenant_id, id))"
                    for name in ("rooms", "desks"))


@pytest.fixture
def new_db(postgres: PostgresServer, role_passwords: dict[str, str]) -> str:
    """conftest's new_db (so new_db_admin is the bootstrap's user on it, as pg_cron runs the
    job), with two more tenant tables."""
    name = database_with(postgres, role_passwords, *MORE_TABLES)
    seed_two_tenants(postgres, role_passwords, name)
    return name


@pytest.fixture
def sessions(postgres: PostgresServer, role_passwords: dict[str, str],
             new_db: str) -> Iterator[Callable[[str], tuple[Conn, int]]]:
    """Opens sessions of a role (and their pids); closes those still open after the test."""
    opened: list[Conn] = []

    def session(role: str = "app_user") -> tuple[Conn, int]:
        conn = connect_as(postgres, role_passwords, new_db, role)
        opened.append(conn)
        return conn, int(conn.run("SELECT pg_backend_pid()")[0][0])

    yield session
    for conn in opened:
        with contextlib.suppress(*ENDED, OSError):
            conn.close()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def blocked(pool: ThreadPoolExecutor, conn: Conn, tenant: object, sql: str,
            watcher: Conn, pid: int) -> Future[list[list]]:
    """`sql` in a transaction bound to `tenant`, run on `conn` in a thread, once its backend
    `pid` waits for a lock (its result when the lock comes)."""
    waiting = pool.submit(left_open, conn, tenant, sql)  # type: ignore[arg-type]
    until = time.monotonic() + 5
    while watcher.run("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p",
                      p=pid) != [["Lock"]]:
        assert time.monotonic() < until and not waiting.done(), "it did not wait"
        time.sleep(0.01)
    return waiting


@pytest.mark.parametrize(("mode", "role", "wanting"), [
    ("ACCESS EXCLUSIVE", "app_user", "SELECT count(*) FROM app.bookings"),
    ("SHARE", "app_user", "UPDATE app.bookings SET resource = resource"),
    ("EXCLUSIVE", "app_user", "SELECT count(*) FROM (SELECT FROM app.bookings FOR UPDATE) l"),
    # Blocks no tenant's reads or writes, but a migration's CREATE INDEX, ALTER TABLE, ...
    ("SHARE UPDATE EXCLUSIVE", "boom_owner", "LOCK TABLE app.bookings IN SHARE MODE"),
], ids=["access-exclusive", "share", "exclusive", "share-update-exclusive"])
def test_an_app_user_table_lock_others_wait_for_is_ended(
        postgres: PostgresServer, new_db_admin: Conn, sessions: Callable[[str], tuple[Conn, int]],
        pool: ThreadPoolExecutor, mode: str, role: str, wanting: str) -> None:
    holder, holder_pid = sessions("app_user")
    left_open(holder, TENANT_A, f"LOCK TABLE app.bookings IN {mode} MODE")
    waiter, waiter_pid = sessions(role)
    waiting = blocked(pool, waiter, TENANT_B, wanting, new_db_admin, waiter_pid)
    assert new_db_admin.run(END) == [[0]]  # a moment's wait: left alone
    time.sleep(WAITED + 0.5)
    assert new_db_admin.run(END) == [[1]]
    assert backend_ended(new_db_admin, holder_pid, within=5)
    with pytest.raises(ENDED):
        holder.run("SELECT 1")
    waiting.result(timeout=10)  # the lock came
    if wanting.startswith("SELECT count(*) FROM app.bookings"):
        assert waiting.result() == [[ROWS_PER_TENANT]]  # tenant B's rows, and only those
    log = (postgres.root / "postgres.log").read_text()
    lock = mode.title().replace(" ", "") + "Lock"
    # The line the Data stack's metric filter counts (StuckBackendAlarm).
    assert (f"{STUCK_BACKEND_LOG} {holder_pid}: it held {lock} on app.bookings while others "
            "waited for it") in log


def test_what_the_function_leaves_alone(
        new_db_admin: Conn, sessions: Callable[[str], tuple[Conn, int]],
        pool: ThreadPoolExecutor) -> None:
    # A row lock another session of the same tenant waits for: the tenant's own business.
    row_holder, row_holder_pid = sessions("app_user")
    left_open(row_holder, TENANT_A, "UPDATE app.bookings SET resource = resource "
                                    "WHERE id = (SELECT min(id) FROM app.bookings)")
    row_waiter, row_waiter_pid = sessions("app_user")
    row_waiting = blocked(pool, row_waiter, TENANT_A,
                          "UPDATE app.bookings SET resource = resource "
                          "WHERE id = (SELECT min(id) FROM app.bookings)", new_db_admin,
                          row_waiter_pid)
    # Only ROW EXCLUSIVE on the table (what writes take), which a migration's ALTER TABLE
    # waits for: the migration's lock_timeout is its own to keep.
    migration, migration_pid = sessions("boom_owner")
    migration_waiting = pool.submit(migration.run, "BEGIN; LOCK TABLE app.bookings IN ACCESS "
                                                   "EXCLUSIVE MODE")
    # A table lock nobody waits for.
    idle_lock, idle_lock_pid = sessions("app_user")
    left_open(idle_lock, TENANT_A, "LOCK TABLE app.rooms IN ACCESS EXCLUSIVE MODE")
    # boom_owner's table lock that app_user waits for: a migration, under the bootstrap's
    # deadline; not app_user's.
    owner, owner_pid = sessions("boom_owner")
    owner.run("BEGIN")
    owner.run("LOCK TABLE app.desks IN SHARE MODE")
    queued, queued_pid = sessions("app_user")
    queued_waiting = blocked(pool, queued, TENANT_B, "INSERT INTO app.desks (id) VALUES (1)",
                             new_db_admin, queued_pid)
    time.sleep(WAITED + 0.5)
    assert new_db_admin.run("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p",
                     p=migration_pid) == [["Lock"]]
    assert new_db_admin.run(END) == [[0]]
    for pid in (row_holder_pid, row_waiter_pid, migration_pid, idle_lock_pid, owner_pid,
                queued_pid):
        assert backend_alive(new_db_admin, pid)
    for conn in (row_holder, idle_lock, owner):
        conn.run("ROLLBACK")
    row_waiting.result(timeout=10)
    queued_waiting.result(timeout=10)
    row_waiter.run("ROLLBACK")
    migration_waiting.result(timeout=10)
    migration.run("ROLLBACK")
