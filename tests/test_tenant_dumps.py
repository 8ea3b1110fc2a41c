"""A logical dump (pg_dump) of tenant rows, on real PostgreSQL 15: row-level security applies
to whoever dumps, so only a role that bypasses it dumps every tenant's rows.

RDS's master is not a superuser; whether it has BYPASSRLS is for a real deploy to show (see
the README's "What only a real deploy can confirm"). Without it, the dump fails loudly, and
pg_dump's --enable-row-security, the way out its error suggests, dumps no tenant's row
without a word. The Data stack's backups are RDS snapshots (AWS Backup), which RLS does not
touch; this is for a logical dump, such as a later backup issue may add.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.fixture_bootstrap import create_rds_like_master
from tests.fixture_postgres import PG_BIN, PostgresServer
from tests.fixture_tenants import ROWS_PER_TENANT, TENANT_A, TENANT_B

TENANTS = (TENANT_A, TENANT_B)


def dump_bookings(postgres: PostgresServer, database: str, user: str, password: str,
                  *options: str) -> subprocess.CompletedProcess[str]:
    """`pg_dump --data-only` of app.bookings as `user`."""
    return subprocess.run(
        [str(PG_BIN / "pg_dump"), "--data-only", "--table", "app.bookings", *options,
         "-h", "127.0.0.1", "-p", str(postgres.port), "-U", user, database],
        env={"PGPASSWORD": password, "PGSSLMODE": "require"}, capture_output=True, text=True,
        timeout=60, check=False)


def dumped_rows(dump: str) -> list[str]:
    """The rows of the dump's COPY block for app.bookings."""
    lines = dump.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("COPY app.bookings "))
    return lines[start + 1:lines.index("\\.", start)]


@pytest.fixture
def rds_like_master(postgres: PostgresServer, seeded: str) -> Iterator[tuple[str, str]]:
    """A master shaped like RDS's, a member of boom_owner as the bootstrap makes its user
    (0001): it may read the tenant tables, under their policy. Dropped afterwards: roles
    are cluster-wide."""
    user, password = create_rds_like_master(postgres)
    admin = postgres.connect(seeded)
    try:
        admin.run(f"GRANT boom_owner TO {user}")
        yield user, password
    finally:
        admin.run(f"REVOKE boom_owner FROM {user}")
        admin.run(f"DROP ROLE {user}")
        admin.close()


def test_a_superuser_dumps_every_tenants_rows(postgres: PostgresServer, seeded: str) -> None:
    # Stands in for a master with BYPASSRLS: every row, whatever tenant
    result = dump_bookings(postgres, seeded, "postgres", postgres.password)
    assert result.returncode == 0, result.stderr
    rows = dumped_rows(result.stdout)
    # Other tests of the session add rows to this database: count them as the superuser
    admin = postgres.connect(seeded)
    try:
        [[total]] = admin.run("SELECT count(*) FROM app.bookings")
    finally:
        admin.close()
    assert len(rows) == total >= ROWS_PER_TENANT * len(TENANTS)
    assert {tenant for tenant in map(str, TENANTS) if any(tenant in row for row in rows)} == \
        set(map(str, TENANTS))


def test_a_master_without_bypassrls_gets_an_error_not_a_partial_dump(
        postgres: PostgresServer, seeded: str, rds_like_master: tuple[str, str]) -> None:
    user, password = rds_like_master
    result = dump_bookings(postgres, seeded, user, password)
    assert result.returncode != 0
    assert 'query would be affected by row-level security policy for table "bookings"' in \
        result.stderr
    # It stopped at the table's COPY header: no row, and no end of data that a restore
    # could take for a complete table
    assert "\\." not in result.stdout.splitlines()
    assert not any(str(tenant) in result.stdout for tenant in TENANTS)


def test_enable_row_security_dumps_no_tenants_rows_and_succeeds(
        postgres: PostgresServer, seeded: str, rds_like_master: tuple[str, str]) -> None:
    # The trap: pg_dump's way around the error exits 0 with an empty table, as no tenant is
    # bound in its session. A backup made so restores an empty app.bookings.
    user, password = rds_like_master
    result = dump_bookings(postgres, seeded, user, password, "--enable-row-security")
    assert result.returncode == 0, result.stderr
    assert dumped_rows(result.stdout) == []
