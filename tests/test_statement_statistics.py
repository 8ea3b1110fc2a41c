"""pg_stat_statements keeps no tenant's literals, nor the master's password, for others to
read: the parameter group's `pg_stat_statements.track_utility = 0` (test_data.py checks the
template carries it), on the server that loads what the parameter group loads (fixture_cron).

The extension's view exists once someone creates it in the tenant database, as monitoring
agents do; each test creates it as the superuser, who stands in for the RDS master. The
negative controls run PostgreSQL's default (on), which a parameter group without the line
would give: tenant A's COPY, DECLARE and EXPLAIN are kept as sent, and tenant B's session
reads them; the master's `ALTER ROLE ... PASSWORD` is kept with the password in clear.
"""

from __future__ import annotations

import io
import secrets

import pytest

from boom_stacks.constructs.tenant_database import UTILITY_STATEMENTS_UNTRACKED
from tests.fixture_postgres import PostgresServer, bootstrapped_database
from tests.fixture_tenants import TENANT_A, TENANT_B, Conn, connect_as

TRACK_UTILITY = "pg_stat_statements.track_utility"
# The texts kept for statements run in this database, as the view shows them to its reader.
KEPT = ("SELECT query FROM public.pg_stat_statements WHERE dbid = "
        "(SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())")


@pytest.fixture
def statistics_db(cron_server: PostgresServer, cron_passwords: dict[str, str]) -> str:
    """A tenant database with pg_stat_statements created in it."""
    database = bootstrapped_database(cron_server, cron_passwords, prefix="statistics")
    admin = cron_server.connect(database)
    try:
        admin.run("CREATE EXTENSION pg_stat_statements")
    finally:
        admin.close()
    return database


def set_for_new_sessions(server: PostgresServer, database: str, value: str) -> None:
    admin = server.connect(database)
    try:
        admin.run(f"ALTER DATABASE {database} SET {TRACK_UTILITY} = {value}")
    finally:
        admin.close()


def tenant_a_runs_literals(server: PostgresServer, passwords: dict[str, str],
                           database: str) -> dict[str, str]:
    """Tenant A's transaction with a literal (a customer's address, say) in a COPY, which
    takes no bind parameters, a DECLARE, an EXPLAIN ANALYZE and a SELECT; the literals."""
    literals = {kind: f"{kind}-{secrets.token_hex(6)}@tenant-a.example"
                for kind in ("copy", "declare", "explain", "select")}
    conn = connect_as(server, passwords, database, "app_user")
    try:
        conn.run("BEGIN")
        conn.run("SELECT app.set_tenant(:t)", t=TENANT_A)
        query = "SELECT id FROM app.bookings WHERE resource = '{}'"
        conn.run(f"COPY ({query.format(literals['copy'])}) TO STDOUT", stream=io.BytesIO())
        conn.run(f"DECLARE c CURSOR FOR {query.format(literals['declare'])}")
        conn.run("FETCH ALL FROM c")
        conn.run("CLOSE c")
        conn.run(f"EXPLAIN ANALYZE {query.format(literals['explain'])}")
        conn.run(query.format(literals["select"]))
        conn.run("COMMIT")
    finally:
        conn.close()
    return literals


def kept_for_tenant_b(server: PostgresServer, passwords: dict[str, str], database: str) -> str:
    """Every text the view shows a session of tenant B's, joined."""
    conn = connect_as(server, passwords, database, "app_user")
    try:
        conn.run("BEGIN")
        conn.run("SELECT app.set_tenant(:t)", t=TENANT_B)
        texts = [row[0] or "" for row in conn.run(KEPT)]
        conn.run("COMMIT")
    finally:
        conn.close()
    return "\n".join(texts)


def test_another_tenant_reads_no_literal_and_the_statistics_stay(
        cron_server: PostgresServer, cron_passwords: dict[str, str],
        statistics_db: str) -> None:
    admin = cron_server.connect(statistics_db)
    try:  # the server runs the parameter group's value, not PostgreSQL's default
        assert admin.run(f"SHOW {TRACK_UTILITY}") == [["off"]]
        assert UTILITY_STATEMENTS_UNTRACKED == {TRACK_UTILITY: "0"}
    finally:
        admin.close()
    literals = tenant_a_runs_literals(cron_server, cron_passwords, statistics_db)
    kept = kept_for_tenant_b(cron_server, cron_passwords, statistics_db)
    assert [kind for kind, literal in literals.items() if literal in kept] == []
    # Monitoring keeps its numbers: the query inside the COPY is counted, normalized (the
    # cursor's, EXPLAIN ANALYZE's and the SELECT are the same query, counted in one entry
    # under the text it was first seen with).
    assert "COPY (SELECT id FROM app.bookings WHERE resource = $1) TO STDOUT" in kept


def test_negative_control_postgresqls_default_keeps_them_for_every_tenant(
        cron_server: PostgresServer, cron_passwords: dict[str, str],
        statistics_db: str) -> None:
    set_for_new_sessions(cron_server, statistics_db, "on")
    literals = tenant_a_runs_literals(cron_server, cron_passwords, statistics_db)
    kept = kept_for_tenant_b(cron_server, cron_passwords, statistics_db)
    assert [kind for kind, literal in literals.items() if literal in kept] == [
        "copy", "declare", "explain"]


def master_sets_a_password(server: PostgresServer, database: str,
                           track_utility: str | None) -> tuple[str, str]:
    """ALTER ROLE ... PASSWORD with the password in clear, as AWS's rotation function for
    the master secret sends it; the password and every text the view then shows the master."""
    role = f"statistics_probe_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    admin: Conn = server.connect(database)
    try:
        if track_utility is not None:
            admin.run(f"SET {TRACK_UTILITY} = {track_utility}")
        admin.run(f"SELECT 1 AS {role}")  # a query the view shows either way
        admin.run(f"CREATE ROLE {role}")
        admin.run(f"ALTER ROLE {role} PASSWORD '{password}'")
        kept = "\n".join(row[0] or "" for row in admin.run(KEPT))
        admin.run(f"DROP ROLE {role}")
    finally:
        admin.close()
    return password, kept


def test_the_masters_password_is_not_kept(cron_server: PostgresServer,
                                          statistics_db: str) -> None:
    password, kept = master_sets_a_password(cron_server, statistics_db, None)
    assert "AS statistics_probe_" in kept  # the view does show the master's statements
    assert password not in kept


def test_negative_control_the_default_keeps_the_masters_password(
        cron_server: PostgresServer, statistics_db: str) -> None:
    password, kept = master_sets_a_password(cron_server, statistics_db, "on")
    assert password in kept
