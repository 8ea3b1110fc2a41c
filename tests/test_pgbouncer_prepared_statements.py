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
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pg8000.native
import pytest

from boom_stacks.config import ENVIRONMENT_CONFIGS
from tests.fixture_postgres import (
    PgBouncer,
    PostgresServer,
    app_user_userlist,
    bootstrapped_database,
    local_pgbouncer_ini,
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
    return name


@pytest.fixture(params=[TEST_LIFETIME, PRODUCT_LIFETIME],
                ids=[f"lifetime-{TEST_LIFETIME}s", "product-lifetime"])
def bouncer(request: pytest.FixtureRequest, postgres: PostgresServer,
            role_passwords: dict[str, str], database: str) -> Iterator[tuple[PgBouncer, int]]:
    pool = replace(ENVIRONMENT_CONFIGS["prod"].pgbouncer, default_pool_size=1,
                   reserve_pool_size=0, server_lifetime_seconds=request.param)
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
