"""The functions the bootstrap ships belong to the user that runs it, not to boom_owner, as
whom application migrations run (migration 0012), on real PostgreSQL 15. The negative
controls show what a migration could do at version 11: redefine the tenant check so that a
session-level SET leaked again, or drop an audit, with every bootstrap run still content.
"""

from __future__ import annotations

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap
from lambdas.tenant_bootstrap.errors import BootstrapError
from tests.fixture_postgres import PostgresServer
from tests.fixture_tenants import TENANT_A, TEXTBOOK, Conn

EARLIER_VERSION = 11  # before 0012
# A unique key across tenants, which app.audit_tenant_keys() reports (0006).
CROSS_TENANT_KEY = "CREATE UNIQUE INDEX id_and_resource ON app.bookings (id, resource)"


def refusal(admin: Conn) -> str:
    """The reason the next bootstrap run refuses to finish (it must)."""
    with pytest.raises(BootstrapError) as refused:
        bootstrap.apply(admin)
    return str(refused.value)


def test_every_function_in_app_is_shipped_and_belongs_to_the_bootstrap(new_db_admin: Conn) -> None:
    in_app = {row[0] for row in new_db_admin.run(
        "SELECT oid::regprocedure::text FROM pg_proc WHERE pronamespace = 'app'::regnamespace")}
    assert in_app == {row[0] for row in new_db_admin.run(
        "SELECT signature FROM boom_meta.shipped_functions")}
    assert new_db_admin.run("SELECT DISTINCT proowner::regrole::text = current_user "
                            "FROM pg_proc WHERE pronamespace = 'app'::regnamespace") == [[True]]
    assert new_db_admin.run("SELECT * FROM app.audit_shipped_functions()") == []


def test_a_migration_cannot_redefine_the_tenant_check(new_db_owner: Conn) -> None:
    with pytest.raises(pg8000.native.DatabaseError,
                       match="must be owner of function current_tenant_id"):
        new_db_owner.run(TEXTBOOK)


@pytest.mark.parametrize("new_db", [EARLIER_VERSION], indirect=True)
def test_control_at_version_11_a_redefined_tenant_check_leaks_and_no_run_notices(
        new_db_owner: Conn, new_db_app_user: Conn, new_db_admin: Conn) -> None:
    # Given a migration "simplifies" the tenant check
    new_db_owner.run(TEXTBOOK)
    # Then a tenant set for the session (as one pooled client leaves it) reaches a later
    # transaction that sets none
    new_db_app_user.run(f"SET boom.tenant_id = '{TENANT_A}'")
    assert new_db_app_user.run("SELECT DISTINCT tenant_id FROM bookings") == [[TENANT_A]]
    # and a run at that version finds nothing to restore or refuse
    assert bootstrap.apply(new_db_admin, target_version=EARLIER_VERSION).repaired == ()
    # The upgrade to 0012 does not take the redefined function over: it refuses, naming it
    with pytest.raises(BootstrapError) as refused:
        bootstrap.apply(new_db_admin)
    assert "app.current_tenant_id() (differs from what migration 0005 gave it)" in str(
        refused.value)


@pytest.mark.parametrize("new_db", [EARLIER_VERSION], indirect=True)
def test_control_at_version_11_a_dropped_audit_is_not_missed(
        new_db_owner: Conn, new_db_admin: Conn) -> None:
    new_db_owner.run("DROP FUNCTION app.audit_tenant_keys()")
    new_db_owner.run(CROSS_TENANT_KEY)
    # the key across tenants goes unreported
    assert bootstrap.apply(new_db_admin, target_version=EARLIER_VERSION).repaired == ()


def test_a_re_created_function_makes_every_run_refuse_and_change_nothing(
        postgres: PostgresServer, tenant_db: str, new_db_owner: Conn, new_db_admin: Conn) -> None:
    # Given a migration drops set_tenant (boom_owner owns the schema, so it may) and creates
    # its own, and the event trigger has been disabled, which a run would restore
    new_db_owner.run("DROP FUNCTION app.set_tenant(uuid)")
    new_db_owner.run("CREATE FUNCTION app.set_tenant(tenant uuid) RETURNS uuid LANGUAGE sql AS "
                     "$$ SELECT set_config('boom.tenant_id', tenant::text, false)::uuid $$")
    new_db_admin.run("ALTER EVENT TRIGGER boom_protect_tenant_tables DISABLE")
    expected = ("function app.set_tenant(uuid): is owned by boom_owner, as whom migrations "
                "run: a migration may have re-created it")
    # Then the check says a run would refuse, and a run refuses, changing nothing
    assert [f for f in bootstrap.check(new_db_admin).findings
            if f.startswith(f"would refuse: {expected}")]
    assert expected in refusal(new_db_admin)
    assert new_db_admin.run("SELECT evtenabled FROM pg_event_trigger "
                            "WHERE evtname = 'boom_protect_tenant_tables'") == [["D"]]
    # until the bootstrap's user puts the shipped one back (as another database has it)
    new_db_owner.run("DROP FUNCTION app.set_tenant(uuid)")
    new_db_admin.run(shipped_definition(postgres, tenant_db, "app.set_tenant(uuid)"))
    assert ("event trigger boom_protect_tenant_tables re-enabled"
            in bootstrap.apply(new_db_admin).repaired)


def shipped_definition(postgres: PostgresServer, database: str, signature: str) -> str:
    """The CREATE statement PostgreSQL prints for `signature` in `database`."""
    conn = postgres.connect(database)
    try:
        return str(conn.run("SELECT pg_get_functiondef(CAST(:f AS regprocedure))",
                            f=signature)[0][0])
    finally:
        conn.close()


def test_a_dropped_audit_makes_every_run_refuse(new_db_owner: Conn, new_db_admin: Conn) -> None:
    new_db_owner.run("DROP FUNCTION app.audit_tenant_keys()")
    new_db_owner.run(CROSS_TENANT_KEY)
    assert ("function app.audit_tenant_keys(): is missing: a migration dropped it"
            in refusal(new_db_admin))


def test_an_overload_a_call_would_resolve_to_is_reported(
        new_db_owner: Conn, new_db_app_user: Conn, new_db_admin: Conn) -> None:
    # Given a migration adds set_tenant(text), which PUBLIC may execute by default
    new_db_owner.run("CREATE FUNCTION app.set_tenant(tenant text) RETURNS text LANGUAGE sql AS "
                     "$$ SELECT 'the overload' $$")
    # then the application's call with an untyped literal reaches it, not the bootstrap's
    assert new_db_app_user.run(f"SELECT app.set_tenant('{TENANT_A}')") == [["the overload"]]
    # and every run refuses, naming it
    assert ("function app.set_tenant(text): has the name of the bootstrap's "
            "app.set_tenant(uuid) with other arguments" in refusal(new_db_admin))
