"""A database restart or failover does not break pooled clients between transactions.

RDS Multi-AZ fails over by ending every connection and bringing the database back under the
same name. PgBouncer must drop its dead server connections and open fresh ones, so that an
application's pooled connections to PgBouncer keep working without reconnecting; only a
transaction in flight at that moment fails (the negative control shows the restart really cut
the server connections). Real PostgreSQL 15 (its own server: the restart would disturb the
shared one) and real PgBouncer with the rendered ini.
"""

from __future__ import annotations

from collections.abc import Iterator

import pg8000.native
import pytest

from tests.fixture_postgres import (
    PgBouncer,
    PostgresServer,
    app_user_userlist,
    bootstrapped_database,
    local_pgbouncer_ini,
    new_role_passwords,
    pooler_connection,
    restart_postgres,
    running_pgbouncer,
    running_postgres,
)
from tests.fixture_tenants import TENANT_A

CLIENTS = 5


@pytest.fixture(scope="module")
def pooled() -> Iterator[tuple[PostgresServer, PgBouncer, str, str]]:
    with running_postgres() as server:
        passwords = new_role_passwords()
        database = bootstrapped_database(server, passwords, "restart")
        userlist = app_user_userlist(passwords["app_user"])
        with running_pgbouncer(local_pgbouncer_ini(server, database), userlist,
                               client_ca=server.ca_file) as bouncer:
            yield server, bouncer, database, passwords["app_user"]


def tenant_transaction(conn: pg8000.native.Connection) -> int:
    conn.run("BEGIN")
    conn.run("SELECT app.set_tenant(CAST(:t AS uuid))", t=str(TENANT_A))
    conn.run("INSERT INTO app.bookings (resource, starts_at, ends_at) "
             "VALUES ('restart', now(), now() + interval '1 hour')")
    rows = conn.run("SELECT count(*) FROM app.bookings")
    conn.run("COMMIT")
    return int(rows[0][0])


def test_pooled_clients_carry_on_after_the_database_restarts(
        pooled: tuple[PostgresServer, PgBouncer, str, str]) -> None:
    server, bouncer, database, password = pooled
    # Given pooled clients that have each used a server connection, and one client caught
    # inside a transaction
    clients = [pooler_connection(bouncer, database, password) for _ in range(CLIENTS)]
    for client in clients:
        tenant_transaction(client)
    caught = pooler_connection(bouncer, database, password)
    caught.run("BEGIN")
    caught.run("SELECT app.set_tenant(CAST(:t AS uuid))", t=str(TENANT_A))
    # When the database restarts
    restart_postgres(server)
    # Then the transaction in flight is lost (the server connections really were cut)
    with pytest.raises(pg8000.native.Error):
        caught.run("SELECT count(*) FROM app.bookings")
    # while every client between transactions carries on over its same PgBouncer connection,
    # with the rows committed before the restart still there.
    counts = [tenant_transaction(client) for client in clients]
    assert counts == list(range(CLIENTS + 1, 2 * CLIENTS + 1))
