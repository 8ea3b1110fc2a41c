"""A client idle inside a transaction cannot hold a pooled server connection for ever.

Real PostgreSQL 15 and real PgBouncer on the rendered ini, its pool cut to one server
connection so that one stuck client is enough to stall everyone else, and
idle_transaction_timeout cut from the product's 60 s to 1 s. The negative control, the same
pool with the timeout off (0, PgBouncer's default and the seed's), shows the stall.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap
from lambdas.tenant_bootstrap.locks import LockWait
from tests.fixture_bootstrap import bookings_needing_a_locking_repair
from tests.fixture_postgres import (
    PgBouncer,
    PostgresServer,
    app_user_userlist,
    bootstrapped_database,
    local_pgbouncer_ini,
    one_server_connection,
    pooler_connection,
    running_pgbouncer,
)
from tests.fixture_tenants import TENANT_A, left_open


@pytest.fixture(params=[1, 0], ids=["timeout-1s", "timeout-off"])
def bouncer(request: pytest.FixtureRequest, postgres: PostgresServer,
            role_passwords: dict[str, str]) -> Iterator[tuple[PgBouncer, str, int]]:
    database = bootstrapped_database(postgres, role_passwords, "idle")
    userlist = app_user_userlist(role_passwords["app_user"])
    pool = one_server_connection(idle_transaction_timeout_seconds=request.param)
    ini = local_pgbouncer_ini(postgres, database, pool=pool)
    assert f"idle_transaction_timeout = {request.param}\n" in ini
    with running_pgbouncer(ini, userlist, client_ca=postgres.ca_file) as running:
        yield running, database, request.param


def book(conn: pg8000.native.Connection, resource: str) -> None:
    conn.run("SELECT app.set_tenant(CAST(:t AS uuid))", t=str(TENANT_A))
    conn.run("INSERT INTO app.bookings (resource, starts_at, ends_at) "
             "VALUES (:r, now(), now() + interval '1 hour')", r=resource)


def test_a_client_idle_in_a_transaction_is_cut_off_and_the_pool_serves_the_next(
        bouncer: tuple[PgBouncer, str, int], postgres: PostgresServer,
        role_passwords: dict[str, str]) -> None:
    running, database, timeout = bouncer
    password = role_passwords["app_user"]
    # Given a client that writes inside a transaction and then stops (a forgotten COMMIT),
    # holding the pool's one server connection
    stuck = pooler_connection(running, database, password)
    stuck.run("BEGIN")
    book(stuck, "never-committed")
    # When another client needs a server connection (waiting at most 5 s for one)
    waiting = pooler_connection(running, database, password, timeout=5)
    if timeout == 0:
        # Then, without the timeout, it is still waiting when it gives up (negative control)
        with pytest.raises((pg8000.native.InterfaceError, TimeoutError)):
            waiting.run("SELECT 1")
        stuck.run("ROLLBACK")
        stuck.close()
        return
    # Then, with it, PgBouncer cuts the idle client off and serves the waiting one
    waiting.run("BEGIN")
    book(waiting, "committed")
    waiting.run("COMMIT")
    waiting.close()
    # (its connection is gone: PgBouncer closed it, and pg8000 says so)
    with pytest.raises(pg8000.native.InterfaceError, match="network error"):
        stuck.run("COMMIT")
    with contextlib.suppress(pg8000.native.Error, OSError):
        stuck.close()
    # and the cut-off transaction was rolled back in PostgreSQL
    admin = postgres.connect(database)
    assert admin.run("SELECT resource FROM app.bookings ORDER BY 1") == [["committed"]]
    admin.close()


def test_a_client_idle_in_a_transaction_cannot_fail_a_deploy_that_alters_its_table(
        bouncer: tuple[PgBouncer, str, int], postgres: PostgresServer,
        role_passwords: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    # The deploy side of the same timeout (lambdas/tenant_bootstrap/locks.py): the bootstrap's
    # last lock attempt comes after PgBouncer has cut such a client off, as the product's
    # 74 s do after its 60 s (test_tenant_bootstrap_stack.py); here 5.6 s after 1 s.
    running, database, timeout = bouncer
    lock_wait = LockWait(timeout_ms=300, attempts=8, first_pause_seconds=0.5,
                         max_pause_seconds=0.5)
    assert lock_wait.last_attempt_after_seconds() == 5.6
    # Given bookings needing a repair that takes its ACCESS EXCLUSIVE lock (FORCE switched
    # off while the event trigger was)
    admin = postgres.connect(database, tls=True)
    bookings_needing_a_locking_repair(admin)
    # and a client through PgBouncer that read bookings inside a transaction and stopped
    stuck = pooler_connection(running, database, role_passwords["app_user"])
    left_open(stuck, TENANT_A, "SELECT count(*) FROM app.bookings")
    caplog.set_level(logging.WARNING, logger=bootstrap.__name__)
    try:
        if timeout == 0:
            # Then, without the timeout, the run gives up naming it (negative control)
            with pytest.raises(bootstrap.BootstrapError,
                               match=r"stayed in use \(8 attempts.* \(app_user\) idle in "):
                bootstrap.apply(admin, lock_wait=lock_wait)
            return
        # When the bootstrap runs, Then it waits out the stuck client and repairs bookings
        assert bootstrap.apply(admin, lock_wait=lock_wait).repaired == (
            "app.bookings protected",)
        assert any("waited 300 ms for a table lock" in r.getMessage() for r in caplog.records)
    finally:
        with contextlib.suppress(pg8000.native.Error, OSError):
            stuck.close()
        admin.close()
