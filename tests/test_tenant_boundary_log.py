"""A write row-level security refuses is one line in the PostgreSQL log, the line
TenantBoundaryAlarm counts, on real PostgreSQL 15: tenant A's transaction writing a row of
tenant B's (INSERT, UPDATE moving its own row, MERGE), and a write with no tenant bound. The
control: the same transactions' own-tenant writes and a read the boundary empties log no such
line. No tenant id reaches the log: a failed statement's bind values are not logged
(log_parameter_max_length_on_error 0, PostgreSQL's default, which the parameter group pins
and app_user keeps, 0018).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from boom_stacks.constructs.tenant_boundary_alarm import TENANT_WRITE_REFUSED_LOG
from tests.fixture_postgres import PostgresServer
from tests.fixture_tenants import TENANT_A, TENANT_B, Conn, fails, in_tenant, rolled_back

ROW = "(tenant_id, resource, starts_at, ends_at) VALUES (:t, :r, now(), now() + interval '1h')"


def insert_for_b(app: Conn) -> None:
    fails(app, TENANT_A, f"INSERT INTO app.bookings {ROW}", TENANT_WRITE_REFUSED_LOG,
          t=TENANT_B, r="room-for-b")


def move_own_row_to_b(app: Conn) -> None:
    fails(app, TENANT_A, "UPDATE app.bookings SET tenant_id = :t WHERE resource = 'room-0'",
          TENANT_WRITE_REFUSED_LOG, t=TENANT_B)


def merge_a_row_of_b(app: Conn) -> None:
    fails(app, TENANT_A, "MERGE INTO app.bookings b USING (SELECT CAST(:t AS uuid) AS t) s "
          "ON false WHEN NOT MATCHED THEN INSERT (tenant_id, resource, starts_at, ends_at) "
          "VALUES (s.t, 'room-merged', now(), now() + interval '1h')",
          TENANT_WRITE_REFUSED_LOG, t=TENANT_B)


def insert_with_no_tenant(app: Conn) -> None:
    fails(app, None, f"INSERT INTO app.bookings {ROW}", TENANT_WRITE_REFUSED_LOG,
          t=TENANT_A, r="room-unbound")


REFUSED: dict[str, Callable[[Conn], None]] = {
    "insert-for-another-tenant": insert_for_b, "update-to-another-tenant": move_own_row_to_b,
    "merge-for-another-tenant": merge_a_row_of_b, "insert-with-no-tenant": insert_with_no_tenant}


def refusals_in(log: str) -> list[str]:
    return [line for line in log.splitlines() if TENANT_WRITE_REFUSED_LOG in line]


@pytest.mark.parametrize("write", list(REFUSED))
def test_a_refused_write_is_one_alarmed_line_naming_the_table_and_no_tenant(
        postgres: PostgresServer, app_user: Conn, write: str) -> None:
    start = postgres.log_size()
    REFUSED[write](app_user)
    log = postgres.log_since(start, TENANT_WRITE_REFUSED_LOG)
    [line] = refusals_in(log)
    assert "ERROR:" in line and 'for table "bookings"' in line
    assert str(TENANT_B) not in log and str(TENANT_A) not in log


def test_control_writes_and_reads_within_the_boundary_log_no_refusal(
        postgres: PostgresServer, app_user: Conn) -> None:
    start = postgres.log_size()
    marker = f"boundary-control-{uuid.uuid4().hex}"
    # A's own insert and update, rolled back (the seeded rows are the isolation tests' too)
    with rolled_back(app_user):
        app_user.run("SELECT app.set_tenant(:t)", t=TENANT_A)
        app_user.run(f"INSERT INTO app.bookings {ROW}", t=TENANT_A, r=marker)
        assert app_user.run("UPDATE app.bookings SET resource = resource WHERE resource = :r "
                            "RETURNING tenant_id", r=marker) == [[TENANT_A]]
    # B's read of A's rows: none, and nothing to log
    assert in_tenant(app_user, TENANT_B, "SELECT count(*) FROM app.bookings "
                     "WHERE tenant_id = :t", t=TENANT_A) == [[0]]
    # A statement that fails for another reason, to find the end of what was logged
    with pytest.raises(Exception, match="division by zero"):
        in_tenant(app_user, TENANT_A, f"SELECT 1 / 0 AS {marker.replace('-', '_')}")
    log = postgres.log_since(start, marker.replace("-", "_"))
    assert "division by zero" in log
    assert refusals_in(log) == []
