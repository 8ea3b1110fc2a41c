"""One client can make PgBouncer's pooled prepared statements fail for every later client of
its server connection; the server connection's lifetime is what ends it.

PgBouncer (1.21+, `max_prepared_statements`) prepares a client's protocol-level statement
once per server connection, as `PGBOUNCER_<n>`, and remembers that it did. SQL-level
`DEALLOCATE` goes straight to PostgreSQL: PgBouncer notices only a command that completes as
`DEALLOCATE ALL` or `DISCARD ALL`. A client that deallocates `PGBOUNCER_<n>` by name (the
names are in `pg_prepared_statements`), or runs `DEALLOCATE ALL` inside a `DO` block (which
completes as `DO`), leaves a server connection on which every later client's use of that
statement fails with 26000, rolled back or not, until PgBouncer closes the connection
(`server_lifetime`, `config.pgbouncer.server_lifetime_seconds`).

Real PostgreSQL 15 and real PgBouncer 1.24.1 on the rendered ini, its pool cut to one server
connection so that consecutive clients share it (the tests check: same backend pid), and the
lifetime cut from the product's 300 s to 2 s. The negative control keeps the product's
lifetime: the connection is still poisoned when the bounded one has been replaced.

RemovedStatementAlarm counts the failures' lines in the PostgreSQL log. The real server's log
here shows that its regular expression matches each failure's line, which carries the
poisoned backend's pid, and no other line, though every parse, bind and execute of PgBouncer's
statements is logged too (the database logs every statement's duration), nor a driver's
failed DEALLOCATE of a name of its own; and that ending that backend, as the alarm's
description says, heals the pool at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pg8000.native
import pytest

from boom_stacks.config import ENVIRONMENT_CONFIGS
from boom_stacks.constructs.removed_statement_alarm import REMOVED_STATEMENT_PATTERN
from boom_stacks.constructs.tenant_database import SLOW_STATEMENT_VALUES_UNLOGGED
from tests.fixture_postgres import (
    PgBouncer,
    PostgresServer,
    app_user_userlist,
    backend_ended,
    bootstrapped_database,
    local_pgbouncer_ini,
    one_server_connection,
    pooler_connection,
    running_pgbouncer,
)
from tests.fixture_tenants import (
    ROWS_PER_TENANT,
    TENANT_A,
    TENANT_B,
    Conn,
    prepared_read,
    seed_two_tenants,
)

PRODUCT_LIFETIME = ENVIRONMENT_CONFIGS["prod"].pgbouncer.server_lifetime_seconds
TEST_LIFETIME = 2
# Longer than TEST_LIFETIME, with room for PgBouncer's janitor (it looks about once a second).
WAIT = TEST_LIFETIME + 3
UNDEFINED_PREPARED_STATEMENT = "26000"

# Ways a client can remove PgBouncer's statements from its server connection. `tracked`:
# PgBouncer sees the command complete as DEALLOCATE ALL and forgets them too (1.22+).
DEALLOCATE = {
    "by-name": lambda conn: [conn.run(f'DEALLOCATE "{name}"') for (name,) in conn.run(
        "SELECT name FROM pg_prepared_statements WHERE name LIKE 'PGBOUNCER%'")],
    "all-inside-do": lambda conn: conn.run("DO $$ BEGIN EXECUTE 'DEALLOCATE ALL'; END $$"),
    "tracked": lambda conn: conn.run("DEALLOCATE ALL"),
}


@pytest.fixture(scope="module")
def database(postgres: PostgresServer, role_passwords: dict[str, str]) -> str:
    name = bootstrapped_database(postgres, role_passwords, "prepared")
    seed_two_tenants(postgres, role_passwords, name)
    # Every statement's duration logged, as the parameter group's log_min_duration_statement
    # does for slow ones (and without their values, as it has them): the lines that name
    # PgBouncer's statements without any failure
    admin = postgres.connect(name)
    for setting, value in {"log_min_duration_statement": "0",
                           **SLOW_STATEMENT_VALUES_UNLOGGED}.items():
        admin.run(f"ALTER DATABASE {name} SET {setting} = {value}")
    admin.close()
    return name


@pytest.fixture(params=[TEST_LIFETIME, PRODUCT_LIFETIME],
                ids=[f"lifetime-{TEST_LIFETIME}s", "product-lifetime"])
def bouncer(request: pytest.FixtureRequest, postgres: PostgresServer,
            role_passwords: dict[str, str], database: str) -> Iterator[tuple[PgBouncer, int]]:
    pool = one_server_connection(server_lifetime_seconds=request.param)
    ini = local_pgbouncer_ini(postgres, database, pool=pool)
    assert f"server_lifetime = {request.param}\n" in ini
    with running_pgbouncer(ini, app_user_userlist(role_passwords["app_user"]),
                           client_ca=postgres.ca_file) as running:
        yield running, request.param


def poison(bouncer: PgBouncer, database: str, password: str, way: str) -> int:
    """Tenant A's client prepares the read (PgBouncer prepares PGBOUNCER_<n> on the server),
    then removes PgBouncer's statements `way`; the backend pid of that server connection."""
    a = pooler_connection(bouncer, database, password)
    _, pid = prepared_read(a, TENANT_A)
    assert a.run("SELECT count(*) FROM pg_prepared_statements "
                 "WHERE name LIKE 'PGBOUNCER%'") == [[1]]
    DEALLOCATE[way](a)
    assert a.run("SELECT count(*) FROM pg_prepared_statements") == [[0]]
    a.close()
    return pid


def fails_as_undefined(conn: Conn, tenant: object) -> bool:
    try:
        prepared_read(conn, tenant)
    except pg8000.native.DatabaseError as error:
        assert error.args[0]["C"] == UNDEFINED_PREPARED_STATEMENT, error
        assert "PGBOUNCER_" in error.args[0]["M"]
        return True
    return False


@pytest.mark.parametrize("way", ["by-name", "all-inside-do"])
def test_an_untracked_deallocate_fails_the_next_clients_until_the_lifetime_ends(
        bouncer: tuple[PgBouncer, int], database: str, role_passwords: dict[str, str],
        way: str) -> None:
    running, lifetime = bouncer
    password = role_passwords["app_user"]
    # Given tenant A's client removed PgBouncer's statement from the pool's one server
    # connection behind PgBouncer's back
    poisoned = poison(running, database, password, way)
    b = pooler_connection(running, database, password)
    # Then tenant B's prepared read fails on that connection, and again after the rollback:
    # the connection stays in the pool, poisoned
    assert fails_as_undefined(b, TENANT_B)
    assert fails_as_undefined(b, TENANT_B)
    assert b.run("SELECT pg_backend_pid()") == [[poisoned]]
    time.sleep(WAIT)
    if lifetime == PRODUCT_LIFETIME:
        # Negative control: within the product's lifetime, still the same poisoned connection
        assert fails_as_undefined(b, TENANT_B)
        assert b.run("SELECT pg_backend_pid()") == [[poisoned]]
    else:
        # When the server connection has outlived server_lifetime, PgBouncer has closed it:
        # B's read runs on a new one and sees B's rows
        count, pid = prepared_read(b, TENANT_B)
        assert pid != poisoned
        assert count == ROWS_PER_TENANT
    b.close()


def test_a_deallocate_all_pgbouncer_sees_harms_no_one(
        bouncer: tuple[PgBouncer, int], database: str, role_passwords: dict[str, str]) -> None:
    # The victim path works when PgBouncer knows: it prepares the statement again on the same
    # server connection (the control that the failures above come from the untracked forms)
    running, _ = bouncer
    password = role_passwords["app_user"]
    poisoned = poison(running, database, password, "tracked")
    b = pooler_connection(running, database, password)
    count, pid = prepared_read(b, TENANT_B)
    assert pid == poisoned and count == ROWS_PER_TENANT
    b.close()


def alarmed_lines(log: str) -> list[str]:
    """The lines RemovedStatementAlarm's filter counts: its regular expression (between the %
    signs, of syntax Python reads alike) found anywhere in the line."""
    expression = re.compile(REMOVED_STATEMENT_PATTERN.strip("%"))
    return [line for line in log.splitlines() if expression.search(line)]


@pytest.mark.parametrize("bouncer", [PRODUCT_LIFETIME], ids=["product-lifetime"],
                         indirect=True)
@pytest.mark.parametrize("way", ["by-name", "all-inside-do", "tracked"])
def test_the_alarm_counts_each_failure_and_its_pid_is_the_connection_to_end(
        bouncer: tuple[PgBouncer, int], postgres: PostgresServer, database: str,
        role_passwords: dict[str, str], way: str) -> None:
    running, _ = bouncer
    password = role_passwords["app_user"]
    log_start = postgres.log_size()
    # Given tenant A's client removed PgBouncer's statement from the pool's one server
    # connection (or, the control, did so where PgBouncer sees it)
    poisoned = poison(running, database, password, way)
    b = pooler_connection(running, database, password)
    failures = sum(fails_as_undefined(b, TENANT_B) for _ in range(2))
    log = postgres.log_since(log_start, "does not exist" if failures else "COMMIT")
    # Then each failure is one line the alarm's filter counts, with the poisoned backend's pid
    # (RDS's log_line_prefix has [%p] too), and nothing else is: not the durations logged for
    # every parse, bind and execute of PgBouncer's statement
    alarmed = alarmed_lines(log)
    assert len(alarmed) == failures == (0 if way == "tracked" else 2)
    assert all(f"[{poisoned}]" in line and "ERROR:" in line for line in alarmed)
    named = [line for line in log.splitlines() if "PGBOUNCER_" in line]
    assert any("execute PGBOUNCER_" in line for line in named)
    assert [line for line in named if "does not exist" in line] == alarmed
    # When an operator ends that backend, as the alarm's description says
    admin = postgres.connect(database)
    admin.run("SELECT pg_terminate_backend(:p)", p=poisoned)
    assert backend_ended(admin, poisoned, within=5)
    admin.close()
    # Then B's next read runs on a new server connection, long before the 5-minute lifetime
    count, pid = prepared_read(b, TENANT_B)
    assert (count, pid != poisoned) == (ROWS_PER_TENANT, True)
    b.close()


def test_a_driver_deallocating_its_own_statement_raises_no_alarm(
        postgres: PostgresServer, role_passwords: dict[str, str], database: str) -> None:
    # Drivers that deallocate their own statements by SQL (Rails' a1, a2, ...; PHP PDO's
    # pdo_stmt_...) fail under PgBouncer with the same message (the statement was prepared
    # under PgBouncer's name; pgbouncer/pgbouncer#991, #1041), harming no one else: the
    # alarm's expression names PgBouncer's prefix, so those lines are not counted
    pool = one_server_connection()
    with running_pgbouncer(local_pgbouncer_ini(postgres, database, pool=pool),
                           app_user_userlist(role_passwords["app_user"]),
                           client_ca=postgres.ca_file) as running:
        conn = pooler_connection(running, database, role_passwords["app_user"])
        log_start = postgres.log_size()
        with pytest.raises(pg8000.native.DatabaseError) as failure:
            conn.run("DEALLOCATE a1")
        assert failure.value.args[0]["C"] == UNDEFINED_PREPARED_STATEMENT
        log = postgres.log_since(log_start, 'prepared statement "a1" does not exist')
        conn.close()
    assert 'ERROR:  prepared statement "a1" does not exist' in log
    assert alarmed_lines(log) == []
