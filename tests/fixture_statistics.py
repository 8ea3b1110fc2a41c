"""Tenants of very different volumes, analyzed, and what the planner estimates for one of
them: for the statistics tests (test_tenant_statistics.py, 0006; and
test_tenant_expression_statistics.py, 0009)."""

from __future__ import annotations

import json
import uuid

from tests.fixture_postgres import PostgresServer
from tests.fixture_tenants import Conn, committed, connect_as

# Tenants with very different volumes, so that an estimate that follows them shows.
VOLUMES = {uuid.uuid4(): 100, uuid.uuid4(): 3000, uuid.uuid4(): 20}
OWN, BIG, SMALL = VOLUMES
SECRET_RESOURCE = "suite-of-the-big-tenant"


def seed_and_analyze(postgres: PostgresServer, passwords: dict[str, str], database: str) -> None:
    """Each tenant's bookings, written as boom_owner (bound like everyone), then ANALYZE."""
    owner = connect_as(postgres, passwords, database, "boom_owner")
    for tenant, count in VOLUMES.items():
        committed(owner, tenant, "INSERT INTO app.bookings (resource, starts_at, ends_at) "
                  "SELECT :r, now(), now() + interval '1 hour' FROM generate_series(1, :n)",
                  r=SECRET_RESOURCE if tenant == BIG else f"room-{count}", n=count)
    owner.close()
    analyze(postgres, database)


def analyze(postgres: PostgresServer, database: str) -> None:
    admin = postgres.connect(database)
    admin.run("ANALYZE app.bookings")
    admin.close()


def bound_app_user(postgres: PostgresServer, passwords: dict[str, str], database: str) -> Conn:
    app = connect_as(postgres, passwords, database, "app_user")
    app.run("BEGIN")
    app.run("SELECT app.set_tenant(:t)", t=OWN)
    return app


def estimate(conn: Conn, where: str, **params: object) -> int:
    """The planner's row estimate for app.bookings WHERE `where`, as EXPLAIN shows it."""
    plan = conn.run(f"EXPLAIN (FORMAT JSON) SELECT * FROM app.bookings WHERE {where}",
                    **params)[0][0]
    plan = plan if isinstance(plan, list) else json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
