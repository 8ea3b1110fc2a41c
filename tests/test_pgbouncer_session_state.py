"""Session state that outlives a transaction, through real PgBouncer in transaction mode: a
temporary table, a WITH HOLD cursor or a LISTEN made in tenant A's transaction must not reach
the next client of that server connection (migration 0005). Each case runs against a
database at version 4, before it, too, where the leak shows (the negative controls).

Both databases get a pool of one server connection, so consecutive clients share it; every
test checks they did (same backend pid)."""

from __future__ import annotations

from collections.abc import Iterator

import pg8000.native
import pytest

from tests.fixture_postgres import (
    PgBouncer,
    PostgresServer,
    bootstrapped_database,
    pgbouncer_with_pools_of_one,
    pooler_connection,
)
from tests.fixture_tenants import (
    ROWS_PER_TENANT,
    TENANT_A,
    TENANT_B,
    Conn,
    seed_two_tenants,
    server_warnings,
)

EARLIER_VERSION = 4  # before 0005
LATEST, EARLIER = "latest", "version_4"
HELD_CURSOR = "DECLARE page CURSOR WITH HOLD FOR SELECT tenant_id FROM app.bookings"


@pytest.fixture(scope="module")
def earlier_database(postgres: PostgresServer, role_passwords: dict[str, str]) -> str:
    """A database at EARLIER_VERSION with fixture_tenants' two tenants' rows."""
    database = bootstrapped_database(postgres, role_passwords, target_version=EARLIER_VERSION)
    seed_two_tenants(postgres, role_passwords, database)
    return database


@pytest.fixture(scope="module")
def pgbouncer(postgres: PostgresServer, role_passwords: dict[str, str], seeded: str,
              earlier_database: str) -> Iterator[PgBouncer]:
    with pgbouncer_with_pools_of_one(postgres, role_passwords, seeded,
                                     {LATEST: seeded, EARLIER: earlier_database}) as bouncer:
        yield bouncer


@pytest.fixture
def clients(pgbouncer: PgBouncer, role_passwords: dict[str, str],
            request: pytest.FixtureRequest) -> Iterator[tuple[Conn, Conn]]:
    """Two application connections to the pool named by the test's parameter."""
    a, b = (pooler_connection(pgbouncer, request.param, role_passwords["app_user"])
            for _ in range(2))
    yield a, b
    a.close()
    b.close()


def begin(conn: Conn, tenant: object) -> int:
    """BEGIN, bind `tenant`; the server connection's backend pid."""
    conn.run("BEGIN")
    return int(conn.run("SELECT pg_backend_pid() FROM app.set_tenant(:t)", t=tenant)[0][0])


def hand_over(a: Conn, b: Conn, statement: str) -> int:
    """Tenant A's transaction runs `statement` and commits; then client B begins and binds
    tenant B on the same server connection (asserted). That connection's backend pid."""
    pid = begin(a, TENANT_A)
    a.run(statement)
    a.run("COMMIT")
    assert begin(b, TENANT_B) == pid
    return pid



@pytest.mark.parametrize("clients", [LATEST], indirect=True)
def test_app_user_cannot_copy_rows_into_a_temporary_table(clients: tuple[Conn, Conn]) -> None:
    a, _ = clients
    begin(a, TENANT_A)
    with pytest.raises(pg8000.native.DatabaseError,
                       match="permission denied to create temporary tables"):
        a.run("CREATE TEMP TABLE copy AS SELECT resource FROM app.bookings")
    a.run("ROLLBACK")


@pytest.mark.parametrize("clients", [EARLIER], indirect=True)
def test_control_at_version_4_a_temporary_copy_reaches_the_next_tenant(
        clients: tuple[Conn, Conn]) -> None:
    a, b = clients
    hand_over(a, b, "CREATE TEMP TABLE copy AS SELECT resource FROM app.bookings")
    assert b.run("SELECT count(*) FROM copy") == [[ROWS_PER_TENANT]]  # A's rows, read by B
    b.run("ROLLBACK")


@pytest.mark.parametrize("clients", [LATEST], indirect=True)
def test_the_next_set_tenant_closes_a_held_cursor(clients: tuple[Conn, Conn]) -> None:
    a, b = clients
    # Given tenant A's transaction leaves a WITH HOLD cursor over its rows, When the next
    # client binds tenant B on the same server connection
    hand_over(a, b, HELD_CURSOR)
    # Then the cursor is gone, and set_tenant said so
    assert any("closed cursor page held from an earlier transaction" in message
               for message in server_warnings(b))
    with pytest.raises(pg8000.native.DatabaseError, match='cursor "page" does not exist'):
        b.run("FETCH ALL FROM page")
    b.run("ROLLBACK")


@pytest.mark.parametrize("clients", [EARLIER], indirect=True)
def test_control_at_version_4_a_held_cursor_hands_tenant_a_rows_to_b(
        clients: tuple[Conn, Conn]) -> None:
    a, b = clients
    hand_over(a, b, HELD_CURSOR)
    assert b.run("FETCH ALL FROM page") == [[TENANT_A]] * ROWS_PER_TENANT
    b.run("ROLLBACK")


@pytest.mark.parametrize("clients", [LATEST], indirect=True)
def test_cursors_of_the_current_transaction_stay_open(clients: tuple[Conn, Conn]) -> None:
    a, _ = clients
    a.run("BEGIN")
    a.run("DECLARE early CURSOR WITH HOLD FOR SELECT 1")  # before set_tenant, same transaction
    a.run("SELECT app.set_tenant(:t)", t=TENANT_A)
    a.run("DECLARE late CURSOR WITH HOLD FOR SELECT tenant_id FROM app.bookings")
    a.run("SELECT app.set_tenant(:t)", t=TENANT_A)  # binding again closes neither
    assert a.run("FETCH ALL FROM early") == [[1]]
    assert a.run("FETCH ALL FROM late") == [[TENANT_A]] * ROWS_PER_TENANT
    assert server_warnings(a) == []
    a.run("CLOSE ALL")
    a.run("COMMIT")


@pytest.mark.parametrize("clients", [LATEST], indirect=True)
def test_a_statement_prepared_by_one_tenant_reads_only_the_next_tenants_rows(
        clients: tuple[Conn, Conn]) -> None:
    # An SQL PREPARE is session state too, but it holds a plan, not rows: the tenant check is
    # evaluated when it runs, under whoever runs it. Run often enough that PostgreSQL switches
    # to its cached generic plan (after 5 custom ones).
    a, b = clients
    pid = begin(a, TENANT_A)
    a.run("PREPARE page AS SELECT DISTINCT tenant_id FROM app.bookings")
    for _ in range(7):
        assert a.run("EXECUTE page") == [[TENANT_A]]
    a.run("COMMIT")
    assert begin(b, TENANT_B) == pid
    assert b.run("SELECT generic_plans > 0 FROM pg_prepared_statements "
                 "WHERE name = 'page'") == [[True]]
    assert b.run("EXECUTE page") == [[TENANT_B]]
    b.run("COMMIT")
    b.run("DEALLOCATE page")


def notify(postgres: PostgresServer, database: str, payload: str) -> None:
    """A NOTIFY on channel `bookings` from outside the pool, as another service would send."""
    conn = postgres.connect(database)
    try:
        conn.run(f"NOTIFY bookings, {pg8000.native.literal(payload)}")
    finally:
        conn.close()


@pytest.mark.parametrize("clients", [LATEST], indirect=True)
def test_the_next_set_tenant_stops_a_leftover_listen(
        clients: tuple[Conn, Conn], postgres: PostgresServer, seeded: str) -> None:
    a, b = clients
    # Given tenant A's transaction leaves a LISTEN on the server connection, When the next
    # client binds tenant B there, and a notification for A's listener arrives
    pid = hand_over(a, b, "LISTEN bookings")
    assert any("stopped listening on channel bookings left by an earlier transaction" in m
               for m in server_warnings(b))
    notify(postgres, seeded, "for tenant A's listener")
    b.run("COMMIT")
    # Then B's COMMIT does not hand it over, and the connection listens no more
    assert list(b.notifications) == []
    assert int(b.run("SELECT pg_backend_pid()")[0][0]) == pid
    assert b.run("SELECT count(*) FROM pg_listening_channels()") == [[0]]


@pytest.mark.parametrize("clients", [LATEST], indirect=True)
def test_a_listen_of_the_current_transaction_is_kept(clients: tuple[Conn, Conn]) -> None:
    a, _ = clients
    begin(a, TENANT_A)
    a.run("LISTEN bookings")
    a.run("SELECT app.set_tenant(:t)", t=TENANT_A)  # binding again keeps it
    a.run("COMMIT")
    assert a.run("SELECT pg_listening_channels()") == [["bookings"]]
    assert server_warnings(a) == []
    a.run("UNLISTEN *")


@pytest.mark.parametrize("clients", [EARLIER], indirect=True)
def test_control_at_version_4_a_leftover_listen_hands_a_notification_to_b(
        clients: tuple[Conn, Conn], postgres: PostgresServer, earlier_database: str) -> None:
    a, b = clients
    hand_over(a, b, "LISTEN bookings")
    notify(postgres, earlier_database, "for tenant A's listener")
    b.run("COMMIT")
    assert [n[2] for n in b.notifications] == ["for tenant A's listener"]
    b.run("UNLISTEN *")
