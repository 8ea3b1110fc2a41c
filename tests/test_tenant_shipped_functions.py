"""The functions the bootstrap ships belong to the user that runs it, not to boom_owner, as
whom application migrations run (migration 0012), on real PostgreSQL 15. The negative
controls show what a migration could do at version 11: redefine the tenant check so that a
session-level SET leaked again, or drop an audit, with every bootstrap run still content.
"""

from __future__ import annotations

from collections.abc import Iterator

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap
from lambdas.tenant_bootstrap.errors import BootstrapError
from tests.fixture_postgres import PostgresServer, bootstrapped_database
from tests.fixture_tenants import TENANT_A, Conn, connect_as, seed_two_tenants

EARLIER_VERSION = 11  # before 0012
# The textbook tenant check, without 0003/0005's stamp: a session-level SET passes it.
TEXTBOOK = ("CREATE OR REPLACE FUNCTION app.current_tenant_id() RETURNS uuid LANGUAGE sql "
            "STABLE AS $$ SELECT current_setting('boom.tenant_id', true)::uuid $$")
# A unique key across tenants, which app.audit_tenant_keys() reports (0006).
CROSS_TENANT_KEY = "CREATE UNIQUE INDEX id_and_resource ON app.bookings (id, resource)"


@pytest.fixture
def database(postgres: PostgresServer, role_passwords: dict[str, str],
             request: pytest.FixtureRequest) -> str:
    """A new database with two tenants' rows, at the version the test's parameter names
    (the latest without one)."""
    version = getattr(request, "param", None)
    name = bootstrapped_database(postgres, role_passwords, target_version=version)
    seed_two_tenants(postgres, role_passwords, name)
    return name


@pytest.fixture
def owner(postgres: PostgresServer, role_passwords: dict[str, str],
          database: str) -> Iterator[Conn]:
    """boom_owner, as an application migration runs."""
    conn = connect_as(postgres, role_passwords, database, "boom_owner")
    yield conn
    conn.close()


@pytest.fixture
def admin(postgres: PostgresServer, database: str) -> Iterator[Conn]:
    """The user that runs the bootstrap."""
    conn = postgres.connect(database, tls=True)
    yield conn
    conn.close()


def refusal(admin: Conn) -> str:
    """The reason the next bootstrap run refuses to finish (it must)."""
    with pytest.raises(BootstrapError) as refused:
        bootstrap.apply(admin)
    return str(refused.value)


def test_every_function_in_app_is_shipped_and_belongs_to_the_bootstrap(admin: Conn) -> None:
    in_app = {row[0] for row in admin.run(
        "SELECT oid::regprocedure::text FROM pg_proc WHERE pronamespace = 'app'::regnamespace")}
    assert in_app == {row[0] for row in admin.run("SELECT * FROM app.shipped_functions()")}
    assert admin.run("SELECT DISTINCT proowner::regrole::text = current_user FROM pg_proc "
                     "WHERE pronamespace = 'app'::regnamespace") == [[True]]
    assert admin.run("SELECT * FROM app.audit_shipped_functions()") == []


def test_a_migration_cannot_redefine_the_tenant_check(owner: Conn) -> None:
    with pytest.raises(pg8000.native.DatabaseError,
                       match="must be owner of function current_tenant_id"):
        owner.run(TEXTBOOK)


@pytest.mark.parametrize("database", [EARLIER_VERSION], indirect=True)
def test_control_at_version_11_a_redefined_tenant_check_leaks_and_no_run_notices(
        postgres: PostgresServer, role_passwords: dict[str, str], database: str, owner: Conn,
        admin: Conn) -> None:
    # Given a migration "simplifies" the tenant check
    owner.run(TEXTBOOK)
    # Then a tenant set for the session (as one pooled client leaves it) reaches a later
    # transaction that sets none
    app = connect_as(postgres, role_passwords, database, "app_user")
    app.run(f"SET boom.tenant_id = '{TENANT_A}'")
    assert app.run("SELECT DISTINCT tenant_id FROM bookings") == [[TENANT_A]]
    app.close()
    # and a run at that version finds nothing to restore or refuse
    assert bootstrap.apply(admin, target_version=EARLIER_VERSION).repaired == ()
    # The upgrade to 0012 does not take the redefined function over: it refuses, naming it
    with pytest.raises(BootstrapError) as refused:
        bootstrap.apply(admin)
    assert "app.current_tenant_id() (differs from what migration 0005 gave it)" in str(
        refused.value)


@pytest.mark.parametrize("database", [EARLIER_VERSION], indirect=True)
def test_control_at_version_11_a_dropped_audit_is_not_missed(owner: Conn, admin: Conn) -> None:
    owner.run("DROP FUNCTION app.audit_tenant_keys()")
    owner.run(CROSS_TENANT_KEY)
    # the key across tenants goes unreported
    assert bootstrap.apply(admin, target_version=EARLIER_VERSION).repaired == ()


def test_a_re_created_function_makes_every_run_refuse_and_change_nothing(
        postgres: PostgresServer, tenant_db: str, owner: Conn, admin: Conn) -> None:
    # Given a migration drops set_tenant (boom_owner owns the schema, so it may) and creates
    # its own, and the event trigger has been disabled, which a run would restore
    owner.run("DROP FUNCTION app.set_tenant(uuid)")
    owner.run("CREATE FUNCTION app.set_tenant(tenant uuid) RETURNS uuid LANGUAGE sql AS "
              "$$ SELECT set_config('boom.tenant_id', tenant::text, false)::uuid $$")
    admin.run("ALTER EVENT TRIGGER boom_protect_tenant_tables DISABLE")
    expected = ("function app.set_tenant(uuid): is owned by boom_owner, as whom migrations "
                "run: a migration may have re-created it")
    # Then the check says a run would refuse, and a run refuses, changing nothing
    assert [f for f in bootstrap.check(admin).findings if f.startswith(f"would refuse: {expected}")]
    assert expected in refusal(admin)
    assert admin.run("SELECT evtenabled FROM pg_event_trigger "
                     "WHERE evtname = 'boom_protect_tenant_tables'") == [["D"]]
    # until the bootstrap's user puts the shipped one back (as another database has it)
    owner.run("DROP FUNCTION app.set_tenant(uuid)")
    admin.run(shipped_definition(postgres, tenant_db, "app.set_tenant(uuid)"))
    assert "event trigger boom_protect_tenant_tables re-enabled" in bootstrap.apply(admin).repaired


def shipped_definition(postgres: PostgresServer, database: str, signature: str) -> str:
    """The CREATE statement PostgreSQL prints for `signature` in `database`."""
    conn = postgres.connect(database)
    try:
        return str(conn.run("SELECT pg_get_functiondef(CAST(:f AS regprocedure))",
                            f=signature)[0][0])
    finally:
        conn.close()


def test_a_dropped_audit_makes_every_run_refuse(owner: Conn, admin: Conn) -> None:
    owner.run("DROP FUNCTION app.audit_tenant_keys()")
    owner.run(CROSS_TENANT_KEY)
    assert ("function app.audit_tenant_keys(): is missing: a migration dropped it"
            in refusal(admin))


def test_an_overload_a_call_would_resolve_to_is_reported(
        postgres: PostgresServer, role_passwords: dict[str, str], database: str, owner: Conn,
        admin: Conn) -> None:
    # Given a migration adds set_tenant(text), which PUBLIC may execute by default
    owner.run("CREATE FUNCTION app.set_tenant(tenant text) RETURNS text LANGUAGE sql AS "
              "$$ SELECT 'the overload' $$")
    # then the application's call with an untyped literal reaches it, not the bootstrap's
    app = connect_as(postgres, role_passwords, database, "app_user")
    assert app.run(f"SELECT app.set_tenant('{TENANT_A}')") == [["the overload"]]
    app.close()
    # and every run refuses, naming it
    assert ("function app.set_tenant(text): has the name of the bootstrap's "
            "app.set_tenant(uuid) with other arguments" in refusal(admin))
