"""A setting one client SETs for the session must not reach the next client of the pooled
server connection (migration 0011), through real PgBouncer in transaction mode on real
PostgreSQL 15. Each poisoned setting would fail the next tenant's statements, lift their
bound, log their bind values, make their commits asynchronous, or make set_tenant() itself fail
(0018); the negative controls show it did at version 10.

Both databases get a pool of one server connection, so consecutive clients share it; the
tests check they did (same backend pid).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pg8000.native
import pytest

from boom_stacks.constructs.pooled_connection_alarm import POOLED_CONNECTION_ENDED_LOG
from tests.fixture_postgres import (
    PgBouncer,
    PostgresServer,
    backend_ended,
    bootstrapped_database,
    pgbouncer_with_pools_of_one,
    pooled_clients,
    pooler_connection,
)
from tests.fixture_tenants import (
    TENANT_A,
    TENANT_B,
    Conn,
    connect_as,
    seed_two_tenants,
    server_warnings,
)

EARLIER_VERSION = 10  # before 0011
LATEST, EARLIER = "latest", "version_10"
INSERT = ("INSERT INTO bookings (resource, starts_at, ends_at) "
          "VALUES ('room', now(), now() + interval '1 hour')")  # unqualified: search_path

# For each setting app_user's sessions are declared to start with, a session-level value
# that would hurt the next client: fail its statements, lift their bound (0), log their
# bind values in full (-1) when they fail, or acknowledge its commits before they are on disk.
POISON = {
    "statement_timeout": "0",
    "lock_timeout": "1ms",
    "search_path": "public",
    "row_security": "off",
    "default_transaction_isolation": "serializable",
    "default_transaction_read_only": "on",
    "log_parameter_max_length_on_error": "-1",
    "synchronous_commit": "off",
}
# Read per statement, or at COMMIT (synchronous_commit): a RESET by set_tenant covers the
# transaction that made it.
PER_STATEMENT = ["statement_timeout", "lock_timeout", "search_path", "row_security",
                 "log_parameter_max_length_on_error", "synchronous_commit"]
Connect = Callable[[str], Conn]


@pytest.fixture(scope="module")
def databases(postgres: PostgresServer, role_passwords: dict[str, str]) -> dict[str, str]:
    """Pool name -> a database with two tenants' rows, at EARLIER_VERSION and at the latest.
    Roles are cluster-wide and a run puts back its own version's role settings: the latest
    runs last, so app_user leaves with the declared ones."""
    earlier = bootstrapped_database(postgres, role_passwords, target_version=EARLIER_VERSION)
    latest = bootstrapped_database(postgres, role_passwords)
    for database in (earlier, latest):
        seed_two_tenants(postgres, role_passwords, database)
    return {LATEST: latest, EARLIER: earlier}


@pytest.fixture(scope="module")
def pgbouncer(postgres: PostgresServer, role_passwords: dict[str, str],
              databases: dict[str, str]) -> Iterator[PgBouncer]:
    with pgbouncer_with_pools_of_one(postgres, role_passwords, databases[LATEST],
                                     databases) as bouncer:
        yield bouncer


@pytest.fixture
def connect(pgbouncer: PgBouncer, role_passwords: dict[str, str]) -> Iterator[Connect]:
    """connect(pool) -> a new application connection; each pool's server connection is
    cleaned (RESET ALL) after the test, whatever the test left on it."""
    with pooled_clients(pgbouncer, role_passwords["app_user"]) as (new, pools):
        yield new
    for pool in pools:
        cleaner = pooler_connection(pgbouncer, pool, role_passwords["app_user"])
        cleaner.run("RESET ALL")
        cleaner.close()


def begin(conn: Conn, tenant: object) -> int:
    """BEGIN, bind `tenant`; the server connection's backend pid."""
    conn.run("BEGIN")
    return int(conn.run("SELECT pg_backend_pid() FROM app.set_tenant(:t)", t=tenant)[0][0])


def leave_behind(conn: Conn, setting: str, value: str | None = None) -> int:
    """Tenant A's transaction SETs `setting` for the session (to `value`, else POISON's) and
    commits, leaving it on the server connection; that connection's backend pid."""
    pid = begin(conn, TENANT_A)
    conn.run(f"SET {setting} = '{value or POISON[setting]}'")
    conn.run("COMMIT")
    return pid


def show(conn: Conn, setting: str) -> str:
    return str(conn.run(f"SHOW {setting}")[0][0])



def test_every_declared_setting_of_app_user_is_pinned_and_a_new_session_has_it(
        postgres: PostgresServer, databases: dict[str, str], connect: Connect) -> None:
    # The settings 0011 pins are app_user's declared role settings: one declared later and
    # missing here (or from set_tenant's list) fails this test or the ones below.
    admin = postgres.connect(databases[LATEST])
    declared = dict(row[0].split("=", 1) for row in admin.run(
        "SELECT setting FROM app.declared_role_settings() WHERE role_name = 'app_user'"))
    admin.close()
    assert set(declared) == set(POISON)
    client = connect(LATEST)
    begin(client, TENANT_A)
    for name, value in declared.items():
        assert show(client, name) == value
    client.run("COMMIT")
    assert server_warnings(client) == []  # a clean connection: set_tenant puts back nothing


@pytest.mark.parametrize("setting", PER_STATEMENT)
def test_the_next_set_tenant_puts_a_setting_back_for_the_next_client(
        connect: Connect, setting: str) -> None:
    a, b = connect(LATEST), connect(LATEST)
    # Given tenant A's client leaves a session-level setting on the server connection
    pid = leave_behind(a, setting)
    assert show(a, setting) == POISON[setting]  # outside a transaction: still on it
    # When the next client binds tenant B there
    assert begin(b, TENANT_B) == pid
    # Then set_tenant put it back, named it, and B's statements run as declared
    assert [w for w in server_warnings(b) if w.startswith(f"app.set_tenant reset {setting} ")]
    assert show(b, setting) != POISON[setting]
    b.run(INSERT)
    assert b.run("SELECT DISTINCT tenant_id FROM bookings") == [[TENANT_B]]
    b.run("COMMIT")
    # and the connection keeps the declared value after B's transaction
    assert show(a, setting) != POISON[setting]


def next_tenants_failure(postgres: PostgresServer, connect: Connect,
                         pool: str) -> tuple[str, str]:
    """Tenant A's client asks for failed statements' values in full, for the session; then
    tenant B's statement fails on that server connection, with an e-mail address as its bind
    value. The value, and the server log written meanwhile."""
    a, b = connect(pool), connect(pool)
    pid = leave_behind(a, "log_parameter_max_length_on_error")
    assert begin(b, TENANT_B) == pid
    value, tag = f"bob-{secrets.token_hex(6)}@example.com", secrets.token_hex(6)
    start = postgres.log_size()
    with pytest.raises(pg8000.native.DatabaseError, match="division by zero"):
        b.run(f"SELECT 1 / 0 AS failing_{tag} WHERE :email::text IS NOT NULL", email=value)
    b.run("ROLLBACK")
    log = postgres.log_since(start, f"failing_{tag}")
    assert f"failing_{tag}" in log  # the failure itself is logged, with its text
    return value, log


def test_the_next_tenants_failed_statement_is_logged_without_its_values(
        postgres: PostgresServer, connect: Connect) -> None:
    value, log = next_tenants_failure(postgres, connect, LATEST)
    assert value not in log


def test_the_next_set_tenant_works_under_strict_plpgsql_checks(connect: Connect) -> None:
    a, b = connect(LATEST), connect(LATEST)
    # Given tenant A's client switched on every extra check PL/pgSQL has, for the session
    pid = leave_behind(a, "plpgsql.extra_errors", "all")
    # When the next client binds tenant B on that server connection
    assert begin(b, TENANT_B) == pid
    # Then set_tenant() has nothing for them to refuse, and B works as B
    assert show(b, "plpgsql.extra_errors") == "all"  # not pinned: only loose functions fail
    b.run(INSERT)
    assert b.run("SELECT DISTINCT tenant_id FROM bookings") == [[TENANT_B]]
    b.run("COMMIT")


def test_a_stricter_isolation_level_is_put_back_for_the_transactions_after(
        connect: Connect) -> None:
    a, b = connect(LATEST), connect(LATEST)
    pid = leave_behind(a, "default_transaction_isolation")
    # B's transaction began serializable, before set_tenant ran: it stays so (correct
    # results; at worst a serialization failure, which the contract retries)
    assert begin(b, TENANT_B) == pid
    assert show(b, "transaction_isolation") == "serializable"
    assert [w for w in server_warnings(b)
            if w.startswith("app.set_tenant reset default_transaction_isolation ")]
    b.run(INSERT)
    b.run("COMMIT")
    # and every transaction after it on that connection is read committed again
    assert begin(a, TENANT_A) == pid
    assert show(a, "transaction_isolation") == "read committed"
    a.run("COMMIT")


def test_a_read_only_default_ends_the_server_connection_and_the_retry_writes(
        postgres: PostgresServer, databases: dict[str, str], connect: Connect) -> None:
    a, b = connect(LATEST), connect(LATEST)
    # Given tenant A's client left default_transaction_read_only = on on the connection
    pid = leave_behind(a, "default_transaction_read_only")
    # When the next client's transaction, read-only from its BEGIN, binds its tenant
    log_start = postgres.log_size()
    b.run("BEGIN")
    with pytest.raises(pg8000.native.InterfaceError, match="network error"):
        b.run("SELECT app.set_tenant(:t)", t=TENANT_B)
    # Then B's connection broke (the contract retries such a transaction), set_tenant said
    # why, to B and in the server log (the line PooledConnectionAlarm counts), and that server
    # connection ended, with the setting
    why = f"{POOLED_CONNECTION_ENDED_LOG}: default_transaction_read_only was changed on it"
    assert [w for w in server_warnings(b) if w.startswith(why)]
    assert f"WARNING:  {why}" in postgres.log_since(log_start, why)
    watcher = postgres.connect(databases[LATEST])
    assert backend_ended(watcher, pid, within=5)
    watcher.close()
    # and B's retry, on a new connection, writes
    retry = connect(LATEST)
    assert begin(retry, TENANT_B) != pid
    assert show(retry, "default_transaction_read_only") == "off"
    retry.run(INSERT)
    retry.run("COMMIT")
    assert server_warnings(retry) == []


def test_a_set_local_after_set_tenant_is_kept(connect: Connect) -> None:
    client = connect(LATEST)
    begin(client, TENANT_A)
    client.run("SET LOCAL statement_timeout = '5min'")
    assert show(client, "statement_timeout") == "5min"
    client.run("COMMIT")
    assert server_warnings(client) == []
    begin(client, TENANT_A)
    assert show(client, "statement_timeout") == "30s"  # it ended with its transaction
    client.run("COMMIT")


def test_boom_owner_keeps_its_own_settings(
        postgres: PostgresServer, role_passwords: dict[str, str],
        databases: dict[str, str]) -> None:
    # A data migration binds tenants as boom_owner, directly: its settings are its own (no
    # statement bound, say), and set_tenant leaves them be.
    owner = connect_as(postgres, role_passwords, databases[LATEST], "boom_owner")
    owner.run("SET lock_timeout = '5s'")
    begin(owner, TENANT_A)
    assert (show(owner, "statement_timeout"), show(owner, "lock_timeout")) == ("0", "5s")
    owner.run("COMMIT")
    assert server_warnings(owner) == []
    owner.close()


def test_control_at_version_10_a_read_only_default_fails_the_next_tenants_write(
        connect: Connect) -> None:
    a, b = connect(EARLIER), connect(EARLIER)
    pid = leave_behind(a, "default_transaction_read_only")
    assert begin(b, TENANT_B) == pid
    with pytest.raises(pg8000.native.DatabaseError, match="read-only transaction"):
        b.run(INSERT)
    b.run("ROLLBACK")


def test_control_at_version_10_the_next_tenant_runs_without_the_statement_bound(
        connect: Connect) -> None:
    a, b = connect(EARLIER), connect(EARLIER)
    pid = leave_behind(a, "statement_timeout")
    assert begin(b, TENANT_B) == pid
    assert show(b, "statement_timeout") == "0"
    b.run("COMMIT")


def test_control_at_version_10_the_next_tenants_failed_statement_is_logged_with_its_values(
        postgres: PostgresServer, connect: Connect) -> None:
    value, log = next_tenants_failure(postgres, connect, EARLIER)
    assert value in log


def test_control_at_version_10_the_next_tenant_commits_asynchronously(
        connect: Connect) -> None:
    a, b = connect(EARLIER), connect(EARLIER)
    pid = leave_behind(a, "synchronous_commit")
    assert begin(b, TENANT_B) == pid
    b.run(INSERT)
    assert show(b, "synchronous_commit") == "off"  # as B's COMMIT reads it
    b.run("COMMIT")


def test_control_at_version_10_strict_plpgsql_checks_fail_every_next_transaction(
        connect: Connect) -> None:
    a, b = connect(EARLIER), connect(EARLIER)
    pid = leave_behind(a, "plpgsql.extra_errors", "all")
    for _ in range(2):  # not once: every transaction on that connection, until it closes
        b.run("BEGIN")
        with pytest.raises(pg8000.native.DatabaseError,
                           match="number of source and target fields in assignment"):
            b.run("SELECT app.set_tenant(:t)", t=TENANT_B)
        b.run("ROLLBACK")
    assert int(b.run("SELECT pg_backend_pid()")[0][0]) == pid
