"""The database logs slow and failed statements without their bind values, which are
tenants' data: the parameter group's settings (test_data.py checks the template carries
them), on real PostgreSQL 15. The negative control shows PostgreSQL's default writing a slow
statement's value into the log. And app_user cannot keep the lines the alarms count out of
the log.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pg8000.native
import pytest

from boom_stacks.constructs.tenant_database import (
    ALARMED_MESSAGES_LOGGED,
    SLOW_STATEMENT_VALUES_UNLOGGED,
)
from tests.fixture_postgres import PostgresServer


@pytest.fixture
def logged(postgres: PostgresServer) -> Iterator[pg8000.native.Connection]:
    """A superuser session that logs every statement as slow, as a 500 ms one would be."""
    conn = postgres.connect()
    conn.run("SET log_min_duration_statement = 0")
    yield conn
    conn.close()


def run_with_secret(postgres: PostgresServer, conn: pg8000.native.Connection,
                    settings: dict[str, str]) -> tuple[str, str]:
    """A slow and a failing statement, each with a tenant's value as a bind parameter; the
    value and the log written meanwhile."""
    for name, value in settings.items():
        conn.run(f"SET {name} = {value}")
    value = f"alice-{secrets.token_hex(6)}@example.com"
    tag = secrets.token_hex(6)
    start = postgres.log_size()
    conn.run(f"SELECT :email::text AS slow_{tag}", email=value)
    with pytest.raises(pg8000.native.DatabaseError, match="division by zero"):
        conn.run(f"SELECT 1 / 0 AS failing_{tag} WHERE :email::text IS NOT NULL", email=value)
    return value, postgres.log_since(start, f"failing_{tag}")


def test_slow_and_failed_statements_are_logged_without_their_values(
        postgres: PostgresServer, logged: pg8000.native.Connection) -> None:
    value, log = run_with_secret(postgres, logged, SLOW_STATEMENT_VALUES_UNLOGGED)
    assert "duration:" in log and "slow_" in log and "failing_" in log  # both were logged
    assert value not in log


def test_control_postgresql_default_logs_a_slow_statements_value(
        postgres: PostgresServer, logged: pg8000.native.Connection) -> None:
    value, log = run_with_secret(postgres, logged, {"log_parameter_max_length": "-1"})
    assert value in log


@pytest.mark.parametrize("statement", [
    "SET log_min_messages = error",
    "SELECT set_config('log_min_messages', 'error', false)",
    "ALTER ROLE app_user SET log_min_messages = error",
])
def test_app_user_cannot_keep_warnings_out_of_the_log(
        postgres: PostgresServer, app_user: pg8000.native.Connection, statement: str) -> None:
    # The pinned level is the server's (PostgreSQL's default, which the tests' server keeps)
    [(setting, level)] = ALARMED_MESSAGES_LOGGED.items()
    assert app_user.run(f"SHOW {setting}") == [[level]]
    # Code running as app_user, say the code that replaced a PgBouncer statement, cannot raise
    # the level for its sessions: set_tenant's WARNING about it still reaches the log
    with pytest.raises(pg8000.native.DatabaseError, match="permission denied"):
        app_user.run(statement)
    tag = secrets.token_hex(6)
    start = postgres.log_size()
    app_user.run(f"DO $$ BEGIN RAISE WARNING 'boom test {tag}'; END $$")
    assert f"WARNING:  boom test {tag}" in postgres.log_since(start, tag)
