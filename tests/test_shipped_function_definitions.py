"""Every run and check compares each shipped function (boom_meta.shipped_functions) with its
latest definition in the migrations, and a run puts it back (shipped.py). 0012 keeps
migrations from redefining them; this covers the bootstrap's own user, an operator's "quick
fix", which no audit noticed before. On real PostgreSQL 15.
"""

from __future__ import annotations

import pytest

from lambdas.tenant_bootstrap import bootstrap
from lambdas.tenant_bootstrap.errors import BootstrapError
from tests.fixture_bootstrap import trigger_off
from tests.fixture_tenants import TENANT_A, TEXTBOOK, Conn

PUT_BACK = "(its body, SECURITY DEFINER or SET clauses had changed)"


def put_back(signature: str, migration: str) -> str:
    return f"function {signature} put back as migration {migration} defines it {PUT_BACK}"


def source(conn: Conn, signature: str) -> str:
    return str(conn.run("SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure(:s)",
                        s=signature)[0][0])


def test_a_quick_fix_to_the_tenant_check_is_reported_and_put_back(
        new_db_admin: Conn, new_db_app_user: Conn) -> None:
    # Given the bootstrap's user (it owns the function) "simplifies" the tenant check
    new_db_admin.run(TEXTBOOK)
    # then a tenant set for the session, as one pooled client leaves it, reaches a later
    # transaction that sets none: the leak the stamp is there to stop
    new_db_app_user.run(f"SET boom.tenant_id = '{TENANT_A}'")
    assert new_db_app_user.run("SELECT DISTINCT tenant_id FROM bookings") == [[TENANT_A]]
    # The check says what a run would put back, and changes nothing
    restored = put_back("app.current_tenant_id()", "0005")
    assert bootstrap.check(new_db_admin).findings == (f"would restore: {restored}",)
    assert "current_setting('boom.tenant_id', true)::uuid" in source(
        new_db_admin, "app.current_tenant_id()")
    # A run puts it back, and says so; the session's tenant reaches nothing any more
    assert bootstrap.apply(new_db_admin).repaired == (restored,)
    assert new_db_app_user.run("SELECT count(*) FROM bookings") == [[0]]
    assert bootstrap.check(new_db_admin).findings == ()


@pytest.mark.parametrize(("drift", "signature", "migration"), [
    ("ALTER FUNCTION app.set_tenant(uuid) SECURITY DEFINER", "app.set_tenant(uuid)", "0020"),
    ("ALTER FUNCTION app.audit_tenant_tables() SET search_path = public",
     "app.audit_tenant_tables()", "0004"),
    ("CREATE OR REPLACE FUNCTION app.audit_tenant_keys() RETURNS TABLE (table_name text, "
     "problem text) LANGUAGE sql STABLE AS $$ SELECT NULL::text, NULL::text WHERE false $$",
     "app.audit_tenant_keys()", "0006"),
], ids=["security-definer", "search-path", "audit-that-reports-nothing"])
def test_a_changed_body_definer_or_setting_is_put_back(
        new_db_admin: Conn, drift: str, signature: str, migration: str) -> None:
    with trigger_off(new_db_admin):  # since 0025 it refuses SECURITY DEFINER (app_user runs it)
        new_db_admin.run(drift)
    assert bootstrap.apply(new_db_admin).repaired == (put_back(signature, migration),)
    assert bootstrap.check(new_db_admin).findings == ()


def test_a_run_with_nothing_changed_rewrites_no_function(new_db_admin: Conn) -> None:
    rows = "SELECT oid, xmin::text FROM pg_proc WHERE pronamespace = 'app'::regnamespace"
    before = sorted(new_db_admin.run(rows))
    assert bootstrap.apply(new_db_admin).repaired == ()
    assert sorted(new_db_admin.run(rows)) == before  # compared in a savepoint, not replaced


@pytest.mark.parametrize("new_db", [14], indirect=True)
def test_a_database_at_an_earlier_version_gets_that_version_s_definition(
        new_db_admin: Conn) -> None:
    new_db_admin.run("CREATE OR REPLACE FUNCTION app.end_stuck_app_user_backends() RETURNS "
                     "integer LANGUAGE sql AS $$ SELECT 0 $$")
    result = bootstrap.apply(new_db_admin, target_version=14)
    assert result.repaired == (put_back("app.end_stuck_app_user_backends()", "0014"),)
    assert "table_waits" not in source(new_db_admin, "app.end_stuck_app_user_backends()")
    assert "holders" in source(new_db_admin, "app.end_stuck_app_user_backends()")


def test_a_database_newer_than_this_code_keeps_its_functions(new_db_admin: Conn) -> None:
    # As after a deploy rolled back to older code: this code cannot know the newer
    # definitions, so it leaves every function as it finds it.
    newer = bootstrap.LATEST_VERSION + 1
    new_db_admin.run("INSERT INTO boom_meta.schema_versions (version, name, checksum) "
                     "VALUES (:v, 'from_newer_code', 'unknown')", v=newer)
    new_db_admin.run(TEXTBOOK)
    result = bootstrap.apply(new_db_admin, keep_newer=True)
    assert (result.version, result.repaired) == (newer, ())
    assert "current_setting('boom.tenant_id', true)::uuid" in source(
        new_db_admin, "app.current_tenant_id()")


def test_a_function_that_cannot_be_put_back_in_place_makes_the_run_refuse(
        new_db_admin: Conn) -> None:
    # Re-created by the bootstrap's user with another argument name: CREATE OR REPLACE
    # cannot rename an argument, so the run cannot put it back without dropping it.
    new_db_admin.run("DROP FUNCTION app.set_tenant(uuid)")
    new_db_admin.run("CREATE FUNCTION app.set_tenant(t uuid) RETURNS uuid LANGUAGE sql AS "
                     "$$ SELECT set_config('boom.tenant_id', t::text, true)::uuid $$")
    for attempt in (lambda: bootstrap.apply(new_db_admin), lambda: bootstrap.check(new_db_admin)):
        with pytest.raises(BootstrapError) as refused:
            attempt()
        assert ("function app.set_tenant(uuid) is not as migration 0020 defines it, and cannot "
                "be put back in place: cannot change name of input parameter") in str(
            refused.value)
        assert "DROP FUNCTION app.set_tenant(uuid)" in str(refused.value)
    assert "set_config('boom.tenant_id', t::text, true)" in source(
        new_db_admin, "app.set_tenant(uuid)")
