"""What EXPLAIN ANALYZE tells one tenant about others' rows through an index, on real
PostgreSQL 15: the README's contract rule that an index on a tenant table begins with
tenant_id.

Row level security is a filter applied to the rows a scan fetches. An index on `email` alone
fetches every tenant's rows with that address, and EXPLAIN ANALYZE, which app_user may run on
any query it may run, counts the ones the policy then removed ("Rows Removed by Filter"): tenant
B learns how many of tenant A's customers have the address it asks about, without seeing a
row. With `(tenant_id, email)` the scan fetches tenant B's rows only, and the plan is the same
whether other tenants have the address or not.
"""

from __future__ import annotations

import re

from tests.fixture_postgres import PostgresServer
from tests.fixture_tenants import TENANT_A, TENANT_B, Conn, committed, connect_as, database_with

CUSTOMERS = ("CREATE TABLE app.customers (id bigint GENERATED ALWAYS AS IDENTITY, "
             "tenant_id uuid NOT NULL DEFAULT app.current_tenant_id(), email text NOT NULL, "
             "PRIMARY KEY (tenant_id, id))")
TAKEN, FREE = "bob@example.com", "nobody@example.com"
A_HAS_TAKEN = 2


def customers_database(postgres: PostgresServer, passwords: dict[str, str], index: str) -> str:
    """app.customers with `index`; tenant A has TAKEN twice among 3000 addresses, and tenant B
    3000 addresses of its own; analyzed."""
    database = database_with(postgres, passwords, CUSTOMERS, index)
    owner = connect_as(postgres, passwords, database, "boom_owner")
    try:
        for tenant, prefix in ((TENANT_A, "a"), (TENANT_B, "b")):
            committed(owner, tenant, "INSERT INTO app.customers (email) SELECT :p || n || "
                      "'@example.com' FROM generate_series(1, 3000) n", p=prefix)
        committed(owner, TENANT_A, "INSERT INTO app.customers (email) SELECT :e "
                  "FROM generate_series(1, :n)", e=TAKEN, n=A_HAS_TAKEN)
        owner.run("ANALYZE app.customers")
    finally:
        owner.close()
    return database


def plan_for_tenant_b(app: Conn, email: str) -> str:
    """EXPLAIN ANALYZE of tenant B's lookup of `email`, without timings."""
    app.run("BEGIN")
    try:
        app.run("SELECT app.set_tenant(:t)", t=TENANT_B)
        rows = app.run("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
                       f"SELECT id FROM app.customers WHERE email = '{email}'")
    finally:
        app.run("ROLLBACK")
    return "\n".join(row[0] for row in rows)


def plans(postgres: PostgresServer, passwords: dict[str, str], index: str) -> tuple[str, str]:
    database = customers_database(postgres, passwords, index)
    app = connect_as(postgres, passwords, database, "app_user")
    try:
        return plan_for_tenant_b(app, TAKEN), plan_for_tenant_b(app, FREE)
    finally:
        app.close()


def test_an_index_led_by_tenant_id_tells_nothing_of_other_tenants(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    taken, free = plans(postgres, role_passwords,
                        "CREATE INDEX customers_email ON app.customers (tenant_id, email)")
    assert "Index Cond: ((tenant_id = $0) AND (email =" in taken  # the index was used
    assert "Removed" not in taken
    assert taken.replace(TAKEN, FREE) == free  # the same plan, whoever has the address


def test_negative_control_an_index_on_email_alone_counts_another_tenants_rows(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    taken, free = plans(postgres, role_passwords,
                        "CREATE INDEX customers_email ON app.customers (email)")
    assert "actual rows=0" in taken  # tenant B sees none of tenant A's rows ...
    removed = re.search(r"Rows Removed by Filter: (\d+)", taken)
    assert removed and int(removed.group(1)) == A_HAS_TAKEN  # ... but counts them
    assert "Rows Removed" not in free
    assert taken.replace(TAKEN, FREE) != free
