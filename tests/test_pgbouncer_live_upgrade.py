"""A deploy's upgrade under live traffic: through real PgBouncer, clients of several tenants
keep running transactions (simple and prepared statements) while the bootstrap upgrades the
database from version 5, which drops and re-creates bookings' tenant policy (0006). No client
sees an error or another tenant's row, and the upgrade goes through."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from lambdas.tenant_bootstrap import bootstrap
from tests.fixture_postgres import (
    PgBouncer,
    PostgresServer,
    app_user_userlist,
    bootstrapped_database,
    local_pgbouncer_ini,
    pooler_connection,
    run_clients,
    running_pgbouncer,
)
from tests.fixture_tenants import seed_two_tenants

BEFORE_0006 = 5
CLIENTS, TENANTS = 20, 5
WAITING = 60.0  # seconds for every client to commit once, before and after the upgrade


@pytest.fixture
def at_version_5(postgres: PostgresServer,
                 role_passwords: dict[str, str]) -> Iterator[tuple[PgBouncer, str]]:
    database = bootstrapped_database(postgres, role_passwords, "live",
                                     target_version=BEFORE_0006)
    seed_two_tenants(postgres, role_passwords, database)
    admin = postgres.connect(database)
    admin.run("ANALYZE app.bookings")  # so 0006 must drop tenant_id's statistics: the lock
    admin.close()
    userlist = app_user_userlist(role_passwords["app_user"])
    with running_pgbouncer(local_pgbouncer_ini(postgres, database), userlist,
                           client_ca=postgres.ca_file) as bouncer:
        yield bouncer, database


def test_an_upgrade_under_live_traffic_keeps_tenants_apart_and_clients_served(
        at_version_5: tuple[PgBouncer, str], postgres: PostgresServer,
        role_passwords: dict[str, str]) -> None:
    bouncer, database = at_version_5
    tenants = [uuid.uuid4() for _ in range(TENANTS)]
    stop = threading.Event()
    upgraded_at: list[float] = []
    foreign_rows: list[tuple[uuid.UUID, object]] = []
    finished: list[tuple[int, float]] = []  # (client, when its transaction committed)

    def client(index: int) -> None:
        conn = pooler_connection(bouncer, database, role_passwords["app_user"])
        prepared = index % 2 == 1  # half the clients prepare, as drivers with a cache do
        bind = conn.prepare("SELECT app.set_tenant(CAST(:t AS uuid))") if prepared else None
        read = conn.prepare("SELECT DISTINCT tenant_id FROM app.bookings") if prepared else None
        n = 0
        while not stop.is_set():
            tenant = tenants[(index + n) % TENANTS]
            n += 1
            conn.run("BEGIN")
            if bind is not None and read is not None:
                bind.run(t=str(tenant))
                seen = read.run()
            else:
                conn.run("SELECT app.set_tenant(:t)", t=tenant)
                seen = conn.run("SELECT DISTINCT tenant_id FROM app.bookings")
            conn.run("INSERT INTO app.bookings (resource, starts_at, ends_at) VALUES "
                     "('live', now(), now() + interval '5 minutes')")
            foreign_rows.extend((tenant, row[0]) for row in seen if row[0] != tenant)
            conn.run("COMMIT")
            finished.append((index, time.monotonic()))
        conn.close()

    def every_client_committed(since: float) -> None:
        deadline = time.monotonic() + WAITING
        while {index for index, when in list(finished) if when > since} != set(range(CLIENTS)):
            if time.monotonic() > deadline:
                return  # the assertions below say which clients did not
            time.sleep(0.05)

    def upgrade_then_stop() -> None:
        try:
            every_client_committed(since=0)  # all of them running, then the upgrade
            time.sleep(0.3)
            conn = postgres.connect(database, tls=True)
            try:
                result = bootstrap.apply(conn, role_passwords=role_passwords)
            finally:
                conn.close()
            assert result.applied == tuple(range(BEFORE_0006 + 1, bootstrap.LATEST_VERSION + 1))
            upgraded_at.append(time.monotonic())
            every_client_committed(since=upgraded_at[0])  # all of them on the new version
        finally:
            stop.set()

    upgrader = threading.Thread(target=upgrade_then_stop)
    upgrader.start()
    errors = run_clients(CLIENTS, client)
    upgrader.join(timeout=120)
    # Then the upgrade went through, every client ran before and after it without an error,
    # and no transaction saw another tenant's row
    assert upgraded_at, "the upgrade did not complete"
    assert errors == []
    assert foreign_rows == []
    assert {index for index, when in finished if when < upgraded_at[0]} == set(range(CLIENTS))
    assert {index for index, when in finished if when > upgraded_at[0]} == set(range(CLIENTS))
    admin = postgres.connect(database)
    try:
        assert admin.run("SELECT attstattarget FROM pg_attribute WHERE attrelid = "
                         "'app.bookings'::regclass AND attname = 'tenant_id'") == [[0]]
        assert admin.run("SELECT count(*) FROM app.audit_tenant_tables()") == [[0]]
    finally:
        admin.close()
