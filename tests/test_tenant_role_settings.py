"""app_user and boom_owner keep the role settings the migrations give them (migration 0007),
on real PostgreSQL 15.

Any role may ALTER ROLE itself SET ...: app_user can make every later session of its own
read-only, an outage that outlives the session that caused it. Every bootstrap run puts the
declared settings back. Roles are cluster-wide, so each test leaves them as declared.
"""

from __future__ import annotations

from collections.abc import Iterator

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap
from tests.fixture_postgres import PostgresServer, bootstrapped_database
from tests.fixture_tenants import TENANT_A, Conn, committed, connect_as

DECLARED = [["app_user", ["search_path=app", "statement_timeout=30s", "lock_timeout=0",
                          "default_transaction_read_only=off",
                          "default_transaction_isolation=read committed", "row_security=on",
                          "log_parameter_max_length_on_error=0", "synchronous_commit=on"]],
            ["boom_owner", ["search_path=app"]]]


def role_settings(conn: Conn) -> list[list[object]]:
    """Role-wide and this database's settings of the two roles."""
    return conn.run(
        "SELECT r.rolname::text, s.setconfig FROM pg_db_role_setting s "
        "JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname IN ('app_user', 'boom_owner') "
        "AND s.setdatabase IN (0, (SELECT oid FROM pg_database "
        "WHERE datname = current_database())) ORDER BY 1, s.setdatabase")


@pytest.fixture
def database(postgres: PostgresServer, role_passwords: dict[str, str]) -> Iterator[str]:
    name = bootstrapped_database(postgres, role_passwords)
    yield name
    admin = postgres.connect(name)  # whatever the test did, the roles leave as declared
    admin.run("SELECT app.restore_role_settings()")
    assert role_settings(admin) == DECLARED
    admin.close()


def book(postgres: PostgresServer, passwords: dict[str, str], database: str) -> None:
    """A booking written by a new app_user session, as a new pooled server connection."""
    app = connect_as(postgres, passwords, database, "app_user")
    try:
        committed(app, TENANT_A, "INSERT INTO bookings (resource, starts_at, ends_at) "
                  "VALUES ('room', now(), now() + interval '1 hour')")  # search_path = app
    finally:
        app.close()


def test_settings_app_user_gives_itself_are_undone_by_the_next_run(
        postgres: PostgresServer, role_passwords: dict[str, str], database: str) -> None:
    # Given app_user made every new session of its own read-only, changed its search_path and
    # set a statement_timeout for this database, and boom_owner a lock_timeout
    app = connect_as(postgres, role_passwords, database, "app_user")
    app.run("ALTER ROLE app_user SET default_transaction_read_only = on")
    app.run("ALTER ROLE app_user SET search_path = public")
    app.run(f"ALTER ROLE app_user IN DATABASE {database} SET statement_timeout = 1")
    app.close()
    owner = connect_as(postgres, role_passwords, database, "boom_owner")
    owner.run("ALTER ROLE boom_owner SET lock_timeout = 1")
    owner.close()
    # then the application's new sessions fail (the outage the bootstrap must end), on
    # whichever of the three settings bites first
    outage = "statement timeout|read-only transaction|relation \"bookings\" does not exist"
    with pytest.raises(pg8000.native.DatabaseError, match=outage):
        book(postgres, role_passwords, database)
    admin = postgres.connect(database, tls=True)
    assert [row[0] for row in admin.run("SELECT * FROM app.audit_role_settings()")] == \
        ["app_user"] * 5 + ["boom_owner"]  # has and lacks: read_only, search_path
    # When the bootstrap runs
    result = bootstrap.apply(admin)
    # Then the roles have exactly the declared settings again, it says which it changed
    # (names, not values), and the application writes
    assert role_settings(admin) == DECLARED
    assert admin.run("SELECT * FROM app.audit_role_settings()") == []
    assert result.repaired == (
        "role settings of app_user restored to the migrations': default_transaction_read_only, "
        "search_path, statement_timeout",
        "role settings of boom_owner restored to the migrations': lock_timeout")
    admin.close()
    book(postgres, role_passwords, database)


def test_a_run_with_the_declared_settings_changes_none(
        postgres: PostgresServer, database: str) -> None:
    admin = postgres.connect(database, tls=True)
    assert role_settings(admin) == DECLARED
    assert bootstrap.apply(admin).repaired == ()
    admin.close()


def test_app_user_may_not_restore_or_read_the_declared_settings(
        postgres: PostgresServer, role_passwords: dict[str, str], database: str) -> None:
    app = connect_as(postgres, role_passwords, database, "app_user")
    for function in ("restore_role_settings", "audit_role_settings", "declared_role_settings"):
        with pytest.raises(pg8000.native.DatabaseError, match="permission denied"):
            app.run(f"SELECT app.{function}()")
    app.close()
