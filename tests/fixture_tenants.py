"""Two tenants' rows in the shared tenant database, and helpers to act as one of them.

The fixtures that use these (`seeded`, `app_user`, `owner`) are in conftest.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pg8000.native
import pytest

from tests.fixture_postgres import PostgresServer

TENANT_A, TENANT_B = uuid.uuid4(), uuid.uuid4()
ROWS_PER_TENANT = 3
Conn = pg8000.native.Connection


def seed_two_tenants(postgres: PostgresServer, passwords: dict[str, str], database: str) -> None:
    owner = postgres.connect(database, user="boom_owner", password=passwords["boom_owner"])
    for tenant in (TENANT_A, TENANT_B):
        owner.run("BEGIN")
        owner.run("SELECT app.set_tenant(:t)", t=tenant)
        for n in range(ROWS_PER_TENANT):
            owner.run("INSERT INTO app.bookings (resource, starts_at, ends_at) VALUES "
                      "(:r, now(), now() + interval '1 hour')", r=f"room-{n}")
        owner.run("COMMIT")
    owner.close()


def login(postgres: PostgresServer, passwords: dict[str, str], database: str,
          role: str) -> Iterator[Conn]:
    conn = postgres.connect(database, user=role, password=passwords[role])
    yield conn
    conn.close()


def in_tenant(conn: Conn, tenant: uuid.UUID | None, sql: str, **params: object) -> list[list]:
    """`sql` in a transaction bound to `tenant` (None: no tenant), rolled back afterwards."""
    conn.run("BEGIN")
    try:
        if tenant is not None:
            conn.run("SELECT app.set_tenant(:t)", t=tenant)
        return conn.run(sql, **params)
    finally:
        conn.run("ROLLBACK")


def fails(conn: Conn, tenant: uuid.UUID | None, sql: str, match: str, **params: object) -> None:
    with pytest.raises(pg8000.native.DatabaseError, match=match):
        in_tenant(conn, tenant, sql, **params)
