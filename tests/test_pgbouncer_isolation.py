"""Through real PgBouncer in transaction mode, with the seed's pool settings rendered by
boom_stacks/k8s/pgbouncer_ini.py and TLS verified to PostgreSQL: no tenant ever sees another's
rows, while a session-level SET visibly leaks between clients (the negative control)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import pg8000.native
import pytest

from tests.fixture_postgres import (
    PgBouncer,
    PostgresServer,
    pgbouncer_with_pools_of_one,
    pooler_connection,
    run_clients,
)

CLIENTS, TENANTS, TRANSACTIONS_PER_CLIENT = 50, 10, 60


@pytest.fixture(scope="module")
def pgbouncer(postgres: PostgresServer, role_passwords: dict[str, str],
              tenant_db: str) -> Iterator[PgBouncer]:
    # One extra pool of a single server connection, so the control's clients must share it.
    with pgbouncer_with_pools_of_one(postgres, role_passwords, tenant_db,
                                     {"control": tenant_db}) as bouncer:
        yield bouncer


def connect(pgbouncer: PgBouncer, password: str, database: str) -> pg8000.native.Connection:
    return pooler_connection(pgbouncer, database, password)


def test_rendered_config_carries_the_seed_values(pgbouncer: PgBouncer) -> None:
    ini = pgbouncer.config.read_text()
    for line in ("pool_mode = transaction", "max_client_conn = 1000", "default_pool_size = 25",
                 "reserve_pool_size = 5", "max_db_connections = 100",
                 "server_tls_sslmode = verify-full"):
        assert line in ini.splitlines()


def test_pgbouncer_reaches_the_database_over_tls_as_rds_15_offers_it(
        pgbouncer: PgBouncer, tenant_db: str, role_passwords: dict[str, str]) -> None:
    # The server here offers TLS 1.2 only, as RDS for PostgreSQL 15 does; PgBouncer's server
    # connection negotiates it (certificate verified, verify-full), its client hop TLS 1.3.
    conn = connect(pgbouncer, role_passwords["app_user"], tenant_db)
    try:
        rows = conn.run("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        conn.close()
    assert rows == [[True, "TLSv1.2"]]


def test_concurrent_tenants_never_see_each_other(pgbouncer: PgBouncer, tenant_db: str,
                                                 role_passwords: dict[str, str]) -> None:
    # Given 50 clients over 10 tenants, each running transactions that set the tenant locally
    tenants = [uuid.uuid4() for _ in range(TENANTS)]
    foreign_rows: list[tuple[uuid.UUID, object]] = []
    saw_own_row: list[bool] = []
    tenants_by_backend: dict[int, set[uuid.UUID]] = {}
    backends_by_client: dict[int, set[int]] = {}

    def client(index: int) -> None:
        rng = random.Random(index)
        conn = connect(pgbouncer, role_passwords["app_user"], tenant_db)
        for _ in range(TRANSACTIONS_PER_CLIENT):
            tenant = rng.choice(tenants)
            conn.run("BEGIN")
            [[pid]] = conn.run("SELECT pg_backend_pid() FROM app.set_tenant(:t)", t=tenant)
            tenants_by_backend.setdefault(pid, set()).add(tenant)
            backends_by_client.setdefault(index, set()).add(pid)
            conn.run("INSERT INTO app.bookings (resource, starts_at, ends_at) VALUES "
                     "('load', now(), now() + interval '30 minutes')")
            seen = conn.run("SELECT DISTINCT tenant_id FROM app.bookings")
            foreign_rows.extend((tenant, row[0]) for row in seen if row[0] != tenant)
            saw_own_row.append([tenant] in seen)
            conn.run("COMMIT")
        conn.close()

    errors = run_clients(CLIENTS, client)
    # Then every transaction ran and read its own tenant's rows, and none saw another's ...
    assert errors == []
    assert len(saw_own_row) == CLIENTS * TRANSACTIONS_PER_CLIENT and all(saw_own_row)
    assert foreign_rows == []
    # ... while the pooler really moved clients between server connections, per transaction,
    # and server connections from tenant to tenant
    assert len(tenants_by_backend) <= 30  # default_pool_size 25 + reserve_pool_size 5
    assert any(len(used) > 1 for used in backends_by_client.values())
    assert any(len(served) > 1 for served in tenants_by_backend.values())


def test_negative_control_session_set_leaks_but_reads_fail_closed(
        pgbouncer: PgBouncer, tenant_db: str, role_passwords: dict[str, str]) -> None:
    password = role_passwords["app_user"]
    leaker, victim = (connect(pgbouncer, password, "control") for _ in range(2))
    tenant = uuid.uuid4()
    # Given one client sets the tenant for its session (outside a transaction)
    leaker.run(f"SET boom.tenant_id = '{tenant}'")
    # When another client runs its next transaction on the same pooled server connection
    victim.run("BEGIN")
    leaked = victim.run("SELECT current_setting('boom.tenant_id', true)")
    guarded = victim.run("SELECT app.current_tenant_id(), count(*) FROM app.bookings")
    victim.run("COMMIT")
    # Then the setting has leaked (the test can see a leak) ...
    assert leaked == [[str(tenant)]]
    # ... yet our tenant function refuses it: no tenant, no rows
    assert guarded == [[None, 0]]
    leaker.close()
    victim.close()


def test_prepared_statements_through_the_pooler_keep_tenants_apart(
        pgbouncer: PgBouncer, tenant_db: str, role_passwords: dict[str, str]) -> None:
    # Given clients that prepare their statements once (protocol-level, named, as drivers with a
    # statement cache do) and switch tenants per transaction: more clients than server
    # connections, so PgBouncer (1.24+) re-prepares them on whichever connection a client gets,
    # and more runs than PostgreSQL's 5 custom plans, so cached generic plans are reused.
    clients, transactions = 32, 12
    tenants = [uuid.uuid4() for _ in range(4)]
    foreign_rows: list[tuple[uuid.UUID, object]] = []
    own_rows: list[int] = []
    backends: dict[int, set[int]] = {}

    def client(index: int) -> None:
        conn = connect(pgbouncer, role_passwords["app_user"], tenant_db)
        bind = conn.prepare("SELECT app.set_tenant(CAST(:t AS uuid)), pg_backend_pid()")
        insert = conn.prepare("INSERT INTO app.bookings (resource, starts_at, ends_at) "
                              "VALUES ('prepared', now(), now() + interval '5 minutes')")
        read = conn.prepare("SELECT tenant_id FROM app.bookings WHERE resource = 'prepared'")
        for n in range(transactions):
            tenant = tenants[(index + n) % len(tenants)]
            conn.run("BEGIN")
            [[_, pid]] = bind.run(t=str(tenant))
            backends.setdefault(index, set()).add(pid)
            insert.run()
            seen = [row[0] for row in read.run()]
            foreign_rows.extend((tenant, other) for other in seen if other != tenant)
            own_rows.append(len(seen))
            conn.run("COMMIT")
        conn.close()

    errors = run_clients(clients, client)
    # Then every transaction ran, read its own tenant's rows and never another's ...
    assert errors == []
    assert len(own_rows) == clients * transactions and min(own_rows) >= 1
    assert foreign_rows == []
    # ... while the prepared statements really moved between server connections
    assert any(len(pids) > 1 for pids in backends.values())
