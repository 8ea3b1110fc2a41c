"""A statement PgBouncer prepared for its clients cannot be replaced by one of a client's
(migration 0020), through real PgBouncer 1.24.1 in transaction mode on real PostgreSQL 15.

PgBouncer prepares a client's protocol-level statement once per server connection, as
PGBOUNCER_<n>, and executes that name there for every client that uses the statement. A
client may DEALLOCATE it and PREPARE its own under the same name in SQL. The replacement then
ran in the next clients' transactions, bound to their tenants: the negative control, at
version 19, shows tenant B's read replaced by a DELETE of all of B's bookings.

Both databases get a pool of one server connection, so consecutive clients share it; the
tests check they did (same backend pid).
"""

from __future__ import annotations

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
)
from tests.fixture_tenants import (
    PREPARED_READ,
    ROWS_PER_TENANT,
    TENANT_A,
    TENANT_B,
    Conn,
    connect_as,
    prepared_read,
    seed_two_tenants,
    server_warnings,
)

EARLIER_VERSION = 19  # before 0020
LATEST, EARLIER = "latest", "version_19"
# What replaces it: the same shape (one text parameter, one count), so the victim cannot tell.
REPLACEMENT = ("({types}) AS WITH gone AS (DELETE FROM app.bookings WHERE $1 IS NOT NULL "
               "RETURNING 1) SELECT count(*) FROM gone")
SET_TENANT = "SELECT app.set_tenant(:t)"
Connect = Callable[[str], Conn]
LEAK = "(uuid) AS SELECT pg_catalog.set_config('application_name', $1::text, false)"


@pytest.fixture(scope="module")
def databases(postgres: PostgresServer, role_passwords: dict[str, str]) -> dict[str, str]:
    """Pool name -> a database at EARLIER_VERSION and one at the latest (`seeded` gives a test
    their rows). The latest runs last: roles are cluster-wide and each run puts back its own
    settings."""
    earlier = bootstrapped_database(postgres, role_passwords, target_version=EARLIER_VERSION)
    latest = bootstrapped_database(postgres, role_passwords)
    return {EARLIER: earlier, LATEST: latest}


@pytest.fixture
def seeded(postgres: PostgresServer, role_passwords: dict[str, str],
           databases: dict[str, str]) -> Iterator[dict[str, str]]:
    """Each test starts with both tenants' rows, whatever the one before it deleted."""
    for database in databases.values():
        admin = postgres.connect(database)
        admin.run("TRUNCATE app.bookings")
        admin.close()
        seed_two_tenants(postgres, role_passwords, database)
    yield databases


@pytest.fixture(scope="module")
def pgbouncer(postgres: PostgresServer, role_passwords: dict[str, str],
              databases: dict[str, str]) -> Iterator[PgBouncer]:
    with pgbouncer_with_pools_of_one(postgres, role_passwords, databases[LATEST],
                                     databases) as bouncer:
        yield bouncer


@pytest.fixture
def connect(pgbouncer: PgBouncer, role_passwords: dict[str, str]) -> Iterator[Connect]:
    with pooled_clients(pgbouncer, role_passwords["app_user"]) as (new, _):
        yield new


def replace_pgbouncers_statement(conn: Conn, text: str, replacement: str, *,
                                 inside_do: bool = False) -> str:
    """Code running as app_user: DEALLOCATE PgBouncer's statement for `text` and PREPARE
    `replacement` under its name, outside any transaction of its own, in SQL or from a DO
    block's dynamic SQL; the name."""
    [(name, types)] = conn.run("SELECT name, parameter_types::text FROM pg_prepared_statements "
                               "WHERE statement = :s", s=text)
    prepare = f'PREPARE "{name}"' + replacement.format(types=types.strip("{}"))
    if inside_do:
        conn.run(f"DO $do$ BEGIN EXECUTE 'DEALLOCATE \"{name}\"'; "
                 f"EXECUTE $q${prepare}$q$; END $do$")
    else:
        conn.run(f'DEALLOCATE "{name}"')
        conn.run(prepare)
    return str(name)


def bookings_of(postgres: PostgresServer, database: str, tenant: object) -> int:
    admin = postgres.connect(database)
    count = int(admin.run("SELECT count(*) FROM app.bookings WHERE tenant_id = CAST(:t AS uuid)",
                          t=str(tenant))[0][0])
    admin.close()
    return count



@pytest.mark.parametrize("inside_do", [False, True], ids=["sql", "inside-do"])
def test_set_tenant_ends_a_server_connection_where_a_statement_was_replaced(
        postgres: PostgresServer, seeded: dict[str, str], connect: Connect,
        inside_do: bool) -> None:
    database = seeded[LATEST]
    a, b = connect(LATEST), connect(LATEST)
    # Given PgBouncer prepared the read on the pool's one server connection for tenant A, and
    # A's code replaced it with a DELETE under PgBouncer's name
    count, pid = prepared_read(a, TENANT_A)
    assert count == ROWS_PER_TENANT
    name = replace_pgbouncers_statement(a, PREPARED_READ.replace(":r", "$1"), REPLACEMENT,
                                        inside_do=inside_do)
    # When tenant B's next transaction on that connection binds its tenant
    log_start = postgres.log_size()
    b.run("BEGIN")
    with pytest.raises(pg8000.native.InterfaceError, match="network error"):
        b.run("SELECT app.set_tenant(:t)", t=TENANT_B)
    # Then set_tenant said why, to B and in the server log, in the line PooledConnectionAlarm
    # counts, and ended the server connection before the read could run: B's bookings are
    # all there
    why = (f"{POOLED_CONNECTION_ENDED_LOG}: PgBouncer's statement \"{name}\" was replaced "
           "on it")
    assert [w for w in server_warnings(b) if w.startswith(why)]
    assert f"WARNING:  {why}" in postgres.log_since(log_start, why)
    watcher = postgres.connect(database)
    assert backend_ended(watcher, pid, within=5)
    watcher.close()
    assert bookings_of(postgres, database, TENANT_B) == ROWS_PER_TENANT
    # and B's retry runs PgBouncer's own statement on a new connection
    count, retry_pid = prepared_read(connect(LATEST), TENANT_B)
    assert (count, retry_pid != pid) == (ROWS_PER_TENANT, True)


def test_a_clients_own_sql_prepare_is_left_alone(seeded: dict[str, str],
                                                 connect: Connect) -> None:
    # A statement under a name PgBouncer does not use is executed for no one else: the next
    # client's transaction runs on the same connection, without a warning
    a, b = connect(LATEST), connect(LATEST)
    _, pid = prepared_read(a, TENANT_A)
    a.run("PREPARE mine AS SELECT 1")
    assert prepared_read(b, TENANT_B) == (ROWS_PER_TENANT, pid)
    assert server_warnings(b) == []
    b.run("DEALLOCATE mine")


def test_a_prepared_set_tenant_hands_its_tenant_to_a_replacement_and_fails_closed(
        postgres: PostgresServer, role_passwords: dict[str, str], databases: dict[str, str],
        connect: Connect) -> None:
    # The limit the contract covers by sending set_tenant unnamed: a client that prepares it
    a, b = connect(LATEST), connect(LATEST)
    a.run("BEGIN")
    a.prepare(SET_TENANT).run(t=TENANT_A)
    a.run("COMMIT")
    replace_pgbouncers_statement(a, SET_TENANT.replace(":t", "$1"), LEAK)
    # When B's prepared set_tenant runs the replacement, which never calls set_tenant
    b.run("BEGIN")
    b.prepare(SET_TENANT).run(t=TENANT_B)
    # Then B's tenant id has been handed to the replacement, which put it where every app_user
    # session can read it while the transaction runs (pg_stat_activity's application_name)
    pid = b.run("SELECT pg_backend_pid()")[0][0]
    other = connect_as(postgres, role_passwords, databases[LATEST], "app_user")
    assert other.run("SELECT application_name FROM pg_stat_activity WHERE pid = :p",
                     p=pid) == [[str(TENANT_B)]]
    other.close()
    # but B's transaction has no tenant: it reads nothing and cannot write
    assert b.run("SELECT count(*) FROM app.bookings") == [[0]]
    with pytest.raises(pg8000.native.DatabaseError, match="null value|row-level security"):
        b.run("INSERT INTO app.bookings (resource, starts_at, ends_at) "
              "VALUES ('room', now(), now() + interval '1 hour')")
    b.run("ROLLBACK")
    # The next transaction that sends set_tenant unnamed ends that connection (as above)
    b.run("BEGIN")
    with pytest.raises(pg8000.native.InterfaceError, match="network error"):
        b.run("SELECT app.set_tenant(:t)", t=TENANT_B)


def test_control_at_version_19_the_replacement_runs_in_the_next_tenants_transaction(
        postgres: PostgresServer, seeded: dict[str, str], connect: Connect) -> None:
    database = seeded[EARLIER]
    a, b = connect(EARLIER), connect(EARLIER)
    _, pid = prepared_read(a, TENANT_A)
    replace_pgbouncers_statement(a, PREPARED_READ.replace(":r", "$1"), REPLACEMENT)
    # B's transaction runs on the same connection, and its "read" deletes all of B's bookings,
    # returning a count as the read would have
    assert prepared_read(b, TENANT_B) == (ROWS_PER_TENANT, pid)
    assert bookings_of(postgres, database, TENANT_B) == 0
    assert bookings_of(postgres, database, TENANT_A) == ROWS_PER_TENANT


def test_the_next_client_reads_the_text_of_pgbouncers_statements_with_parameters_only(
        connect: Connect) -> None:
    # What PgBouncer prepared for tenant A's client stays on the server connection, and any
    # later client there lists it: the statement's text, so with bind parameters no value of
    # A's (the contract's rule, as for pg_stat_activity)
    a, b = connect(LATEST), connect(LATEST)
    secret = "alice@example.com"
    a.run("BEGIN")
    a.run("SELECT app.set_tenant(:t)", t=TENANT_A)
    a.prepare("SELECT count(*) FROM app.bookings WHERE resource = :r").run(r=secret)
    a.run("COMMIT")
    texts = [text for (text,) in b.run("SELECT statement FROM pg_prepared_statements")]
    assert "SELECT count(*) FROM app.bookings WHERE resource = $1" in texts
    assert not [text for text in texts if secret in text]
    # whereas a value written into the text (the contract forbids it) is there for B to read
    a.run("BEGIN")
    a.run("SELECT app.set_tenant(:t)", t=TENANT_A)
    a.prepare(f"SELECT count(*) FROM app.bookings WHERE resource = '{secret}'").run()
    a.run("COMMIT")
    texts = [text for (text,) in b.run("SELECT statement FROM pg_prepared_statements")]
    assert [text for text in texts if secret in text]
