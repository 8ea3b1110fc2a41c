"""No planner statistics on expressions of tenant_id (migration 0009), on real PostgreSQL 15.

0006 keeps no statistics on tenant_id itself, but ANALYZE keeps statistics on every
expression an index is built on, and on the expressions of extended statistics objects: an
index on (tenant_id::text) let EXPLAIN tell the tenant with most bookings from the others
(the negative control at version 8).
"""

from __future__ import annotations

import pytest

from lambdas.tenant_bootstrap import bootstrap
from lambdas.tenant_bootstrap.enforce import gaps
from tests.fixture_postgres import PostgresServer
from tests.fixture_statistics import VOLUMES, bound_app_user, estimate, seed_and_analyze
from tests.fixture_tenants import database_with

BEFORE_0009 = 8
KEEPS = "keeps planner statistics on an expression of tenant_id"
BY_TEXT = "tenant_id::text = :t"


def database_where_boom_owner_ran(postgres: PostgresServer, passwords: dict[str, str],
                                  ddl: str, version: int | None = None) -> str:
    """Bootstrapped to `version` (default: latest), `ddl` run by boom_owner, then seeded
    with tenants of very different volumes and analyzed."""
    database = database_with(postgres, passwords, ddl, version=version)
    seed_and_analyze(postgres, passwords, database)
    return database


def estimates_by_tenant(postgres: PostgresServer, passwords: dict[str, str], database: str,
                        where: str) -> dict[int, int]:
    """As app_user bound to one tenant: EXPLAIN's estimate for each tenant, by its volume."""
    app = bound_app_user(postgres, passwords, database)
    try:
        return {count: estimate(app, where, t=str(tenant)) for tenant, count in VOLUMES.items()}
    finally:
        app.close()


def test_negative_control_before_0009_an_expression_index_tells_the_biggest_tenant(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    plain = database_where_boom_owner_ran(postgres, role_passwords, "SELECT 1",
                                          version=BEFORE_0009)
    indexed = database_where_boom_owner_ran(
        postgres, role_passwords, "CREATE INDEX bookings_tenant_text ON app.bookings "
        "((tenant_id::text))", version=BEFORE_0009)
    # Without the index every tenant is estimated alike; with it, the biggest stands out
    assert len(set(estimates_by_tenant(postgres, role_passwords, plain, BY_TEXT).values())) == 1
    shown = estimates_by_tenant(postgres, role_passwords, indexed, BY_TEXT)
    biggest = max(VOLUMES.values())
    assert all(shown[biggest] > 5 * shown[other] for other in VOLUMES.values() if other != biggest)
    admin = postgres.connect(indexed, tls=True)
    assert gaps(admin) == []  # and no audit of version 8 saw it
    admin.close()


@pytest.mark.parametrize(("ddl", "problem"), [
    ("CREATE INDEX bookings_tenant_text ON app.bookings ((tenant_id::text))",
     f"index app.bookings_tenant_text {KEEPS}"),
    ("CREATE INDEX bookings_by_tenant_and_resource ON app.bookings "
     "(resource, (lower(tenant_id::text)))",
     f"index app.bookings_by_tenant_and_resource {KEEPS}"),
    ("CREATE STATISTICS app.bookings_tenant_text ON (tenant_id::text) FROM app.bookings",
     f"statistics object app.bookings_tenant_text {KEEPS}"),
])
def test_one_is_a_finding_and_the_run_refuses_until_it_is_dropped(
        postgres: PostgresServer, role_passwords: dict[str, str], ddl: str,
        problem: str) -> None:
    database = database_where_boom_owner_ran(postgres, role_passwords, ddl)
    admin = postgres.connect(database, tls=True)
    [finding] = bootstrap.check(admin).findings
    assert finding.startswith(f"would refuse: app.bookings: {problem}, which tell one tenant "
                              "of the others: drop it")
    with pytest.raises(bootstrap.BootstrapError, match="gaps the bootstrap will not override: "
                                                       f"app.bookings: {problem}"):
        bootstrap.apply(admin)
    name = problem.split()[-len(KEEPS.split()) - 1]
    kind = "STATISTICS" if problem.startswith("statistics") else "INDEX"
    admin.run(f"DROP {kind} {name}")
    assert bootstrap.apply(admin).version == bootstrap.LATEST_VERSION
    admin.close()


@pytest.mark.parametrize("ddl", [
    "CREATE INDEX bookings_lower_resource ON app.bookings ((lower(resource)))",
    "CREATE INDEX bookings_tenant_resource ON app.bookings (tenant_id, resource) "
    "WHERE tenant_id IS NOT NULL",
    "CREATE STATISTICS app.bookings_tenant_resource (mcv) ON tenant_id, resource "
    "FROM app.bookings",
])
def test_indexes_and_statistics_that_keep_none_of_tenant_id_pass(
        postgres: PostgresServer, role_passwords: dict[str, str], ddl: str) -> None:
    database = database_where_boom_owner_ran(postgres, role_passwords, ddl)
    admin = postgres.connect(database, tls=True)
    assert bootstrap.check(admin).findings == ()
    # Extended statistics on plain columns: ANALYZE builds none while tenant_id has none (0006)
    assert admin.run("SELECT count(*) FROM pg_statistic_ext s JOIN pg_statistic_ext_data d "
                     "ON d.stxoid = s.oid WHERE d.stxdmcv IS NOT NULL") == [[0]]
    admin.close()
    assert len(set(estimates_by_tenant(postgres, role_passwords, database,
                                       "tenant_id = CAST(:t AS uuid) AND resource <> ''")
                   .values())) == 1
