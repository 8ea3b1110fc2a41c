"""app_user's statements end after 30 s unless their transaction raises the bound (migration
0010), through real PgBouncer in transaction mode on real PostgreSQL 15.

The pool has one server connection, so consecutive clients share it; the tests check they did
(same backend pid). Waiting out 30 s would prove PostgreSQL's timer, not this project: the
tests read the bound each new session and each transaction starts with, and make a statement
run into a lowered one to show what the pool does after.
"""

from __future__ import annotations

from collections.abc import Iterator

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap
from tests.fixture_postgres import (
    PgBouncer,
    PostgresServer,
    bootstrapped_database,
    pgbouncer_with_pools_of_one,
    pooler_connection,
)
from tests.fixture_tenants import TENANT_A, Conn, committed, connect_as

POOL = "bounded"
BOUND = "30s"
BACKEND = "SELECT pg_backend_pid()"


@pytest.fixture(scope="module")
def database(postgres: PostgresServer, role_passwords: dict[str, str]) -> str:
    # Its own database: a run at the latest version declares the bound (roles are
    # cluster-wide, and a run at an older version puts back that version's settings).
    return bootstrapped_database(postgres, role_passwords)


@pytest.fixture(scope="module")
def pgbouncer(postgres: PostgresServer, role_passwords: dict[str, str],
              database: str) -> Iterator[PgBouncer]:
    with pgbouncer_with_pools_of_one(postgres, role_passwords, database,
                                     {POOL: database}) as bouncer:
        yield bouncer


@pytest.fixture
def client(pgbouncer: PgBouncer, role_passwords: dict[str, str]) -> Iterator[Conn]:
    conn = pooler_connection(pgbouncer, POOL, role_passwords["app_user"])
    yield conn
    conn.close()


def test_a_pooled_app_user_session_starts_with_the_bound(client: Conn) -> None:
    assert committed(client, TENANT_A, "SHOW statement_timeout") == [[BOUND]]


def test_a_transaction_raises_the_bound_for_itself_alone(
        pgbouncer: PgBouncer, role_passwords: dict[str, str], client: Conn) -> None:
    # Given a transaction that raised the bound for a slow report
    raised = committed(client, TENANT_A,
                       f"SELECT current_setting('statement_timeout'), ({BACKEND})",
                       local_settings={"statement_timeout": "5min"})
    assert raised[0][0] == "5min"
    # Then the next transaction on that server connection, another client's, has the bound
    other = pooler_connection(pgbouncer, POOL, role_passwords["app_user"])
    try:
        after = committed(other, TENANT_A,
                          f"SELECT current_setting('statement_timeout'), ({BACKEND})")
    finally:
        other.close()
    assert after == [[BOUND, raised[0][1]]]


def test_a_statement_over_the_bound_fails_and_the_pool_serves_the_next_client(
        pgbouncer: PgBouncer, role_passwords: dict[str, str], client: Conn) -> None:
    # Given a statement that runs past the bound (lowered here, so the test need not wait 30 s)
    backend = committed(client, TENANT_A, BACKEND)[0][0]
    with pytest.raises(pg8000.native.DatabaseError, match="statement timeout") as cancelled:
        committed(client, TENANT_A, "SELECT pg_sleep(5)",
                  local_settings={"statement_timeout": "200ms"})
    assert cancelled.value.args[0]["C"] == "57014"
    # Then the server connection is back in the pool, serving the next client with the bound
    other = pooler_connection(pgbouncer, POOL, role_passwords["app_user"])
    try:
        assert committed(other, TENANT_A, f"SELECT current_setting('statement_timeout'), "
                         f"({BACKEND})") == [[BOUND, backend]]
    finally:
        other.close()


def test_a_client_cannot_drop_the_bound_when_it_connects(
        pgbouncer: PgBouncer, role_passwords: dict[str, str]) -> None:
    # libpq's options=-c ... reaches PgBouncer as the startup parameter "options", which it
    # ignores (ignore_startup_parameters): the session has the bound anyway
    unbound = pooler_connection(pgbouncer, POOL, role_passwords["app_user"],
                                startup_params={"options": "-c statement_timeout=0"})
    try:
        assert committed(unbound, TENANT_A, "SHOW statement_timeout") == [[BOUND]]
    finally:
        unbound.close()
    # and a setting sent as its own startup parameter (node-postgres sends these) is refused
    for setting in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"):
        with pytest.raises(pg8000.native.DatabaseError,
                           match=f"unsupported startup parameter.*{setting}"):
            pooler_connection(pgbouncer, POOL, role_passwords["app_user"],
                              startup_params={setting: "0"})


def test_migrations_and_the_bootstrap_are_not_bound(
        postgres: PostgresServer, role_passwords: dict[str, str], database: str) -> None:
    # boom_owner's migrations run under the bootstrap's deadline, not the application's bound
    owner = connect_as(postgres, role_passwords, database, "boom_owner")
    master = postgres.connect(database, tls=True)
    try:
        assert owner.run("SHOW statement_timeout") == [["0"]]
        assert master.run("SHOW statement_timeout") == [["0"]]
    finally:
        owner.close()
        master.close()


def test_a_bound_app_user_removes_from_itself_is_back_after_the_next_run(
        postgres: PostgresServer, role_passwords: dict[str, str], database: str) -> None:
    # Given app_user removed its own bound (any role may ALTER ROLE itself)
    app = connect_as(postgres, role_passwords, database, "app_user")
    try:
        app.run("ALTER ROLE app_user RESET statement_timeout")
    finally:
        app.close()
    admin = postgres.connect(database, tls=True)
    try:
        # Then the audit names what is missing, and the next run puts it back
        assert admin.run("SELECT * FROM app.audit_role_settings()") == [
            ["app_user", "statement_timeout",
             "lacks statement_timeout as a migration sets it"]]
        assert bootstrap.apply(admin).repaired == (
            "role settings of app_user restored to the migrations': statement_timeout",)
    finally:
        admin.close()
    app = connect_as(postgres, role_passwords, database, "app_user")
    try:
        assert app.run("SHOW statement_timeout") == [[BOUND]]
    finally:
        app.close()
