"""What every bootstrap run enforces at its end, on real PostgreSQL 15: it restores what it
may (the event trigger, tenant tables' protection, TEMPORARY taken from app_user) and refuses
to finish, changing nothing, while a gap it will not paper over remains."""

from __future__ import annotations

import re
import secrets

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap
from lambdas.tenant_bootstrap.__main__ import main
from tests.fixture_bootstrap import FreshDatabase, event_trigger, schema_dump, versions
from tests.fixture_postgres import PostgresServer
from tests.fixture_tenants import ACTS_AS_OWNER, MATVIEW_OF_BOOKINGS, widening

PROTECT = "boom_protect_tenant_tables"


def may_create_temporary(conn: pg8000.native.Connection, role: str) -> bool:
    """Whether `role` may create temporary tables in the connection's database."""
    return bool(conn.run("SELECT has_database_privilege(:r, current_database(), 'TEMPORARY')",
                         r=role)[0][0])


def _audit(conn: pg8000.native.Connection) -> list[list[object]]:
    return conn.run("SELECT * FROM app.audit_tenant_tables()")


@pytest.mark.parametrize(("remove", "repair"), [
    ("DROP EVENT TRIGGER boom_protect_tenant_tables", "re-created"),
    ("ALTER EVENT TRIGGER boom_protect_tenant_tables DISABLE", "re-enabled"),
], ids=["dropped", "disabled"])
def test_a_run_restores_the_event_trigger_and_protects_what_it_missed(
        postgres: PostgresServer, fresh: FreshDatabase, remove: str, repair: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given the trigger removed (RDS wants that before a major upgrade) and a tenant table
    # created by the owner meanwhile, unprotected
    database, conn = fresh.name, fresh.conn
    bootstrap.apply(conn)
    migrated = event_trigger(conn, PROTECT)
    conn.run(remove)
    conn.run("SET ROLE boom_owner")
    conn.run("CREATE TABLE app.late (id int, tenant_id uuid)")
    conn.run("RESET ROLE")
    assert ["app.late", "row level security is not forced"] in _audit(conn)
    # When the bootstrap runs again (here through the operators' CLI)
    dsn = (f"postgresql://postgres:{postgres.password}@127.0.0.1:{postgres.port}/{database}"
           f"?sslmode=verify-full&sslrootcert={postgres.ca_file}")
    assert main(["--dsn", dsn], environ={}) == 0
    out = capsys.readouterr().out
    # Then the trigger is back, the table is protected, and it says so
    assert f"repaired: event trigger boom_protect_tenant_tables {repair}" in out
    assert "repaired: app.late protected" in out
    assert postgres.password not in out
    assert conn.run("SELECT evtenabled FROM pg_event_trigger "
                    "WHERE evtname = 'boom_protect_tenant_tables'") == [["O"]]
    assert event_trigger(conn, PROTECT) == migrated  # the same trigger the migrations make
    assert _audit(conn) == []
    assert bootstrap.apply(conn).repaired == ()


def test_a_run_at_an_earlier_version_restores_the_triggers_that_version_has(
        fresh: FreshDatabase) -> None:
    # At version 20: a run re-creates boom_protect_tenant_tables as the newest migration (0025)
    # makes it, its function ignoring the tags it predates, and does not make 0026's
    # boom_keep_tenant_id_columns, whose function does not exist yet.
    conn = fresh.conn
    bootstrap.apply(conn, target_version=20)
    conn.run("DROP EVENT TRIGGER boom_protect_tenant_tables")
    assert bootstrap.apply(conn, target_version=20).repaired == (
        "event trigger boom_protect_tenant_tables re-created",)
    restored = event_trigger(conn, PROTECT)
    assert conn.run("SELECT evtname FROM pg_event_trigger") == [["boom_protect_tenant_tables"]]
    # At the latest version, both; the one above was already the latest's.
    bootstrap.apply(conn)
    assert event_trigger(conn, PROTECT) == restored
    conn.run("DROP EVENT TRIGGER boom_protect_tenant_tables")
    conn.run("DROP EVENT TRIGGER boom_keep_tenant_id_columns")
    assert bootstrap.apply(conn).repaired == (
        "event trigger boom_protect_tenant_tables re-created",
        "event trigger boom_keep_tenant_id_columns re-created")


@pytest.mark.parametrize(("widen", "problem"), [
    ("CREATE POLICY everyone ON app.bookings USING (true)",
     ["app.bookings", widening("everyone")]),
    # The two below contain the tenant check, which a substring audit (0001-0003) accepted.
    ("ALTER POLICY tenant_bookings_isolation ON app.bookings "
     "USING (tenant_id = (SELECT app.current_tenant_id()) OR true)",
     ["app.bookings", widening("tenant_bookings_isolation")]),
    ("CREATE POLICY writes_anywhere ON app.bookings "
     "USING (tenant_id = (SELECT app.current_tenant_id())) WITH CHECK (true)",
     ["app.bookings", widening("writes_anywhere")]),
    # Made by the master, which bypasses RLS here: it holds every tenant's rows (0004).
    ("CREATE MATERIALIZED VIEW app.booked AS SELECT resource FROM app.bookings; "
     "GRANT SELECT ON app.booked TO app_user",
     ["app.booked", MATVIEW_OF_BOOKINGS]),
], ids=["extra-policy", "tenant-policy-or-true", "tenant-using-any-check", "materialized-view"])
def test_a_gap_it_will_not_override_fails_the_run_and_changes_nothing(
        postgres: PostgresServer, fresh: FreshDatabase, widen: str, problem: list[str]) -> None:
    # Given a gap someone opened by hand while the trigger was dropped
    database, conn = fresh.name, fresh.conn
    bootstrap.apply(conn)
    conn.run("DROP EVENT TRIGGER boom_protect_tenant_tables")
    conn.run(widen)
    assert problem in _audit(conn)
    before = schema_dump(postgres, database)
    # When the bootstrap runs, Then it names the gap and the fix, and rolls everything back
    with pytest.raises(bootstrap.BootstrapError, match=r"will not override: .*" + re.escape(
            ": ".join(problem)) + r".*Fix them in a migration"):
        bootstrap.apply(conn)
    assert schema_dump(postgres, database) == before


def test_a_run_refuses_to_finish_while_app_user_can_act_as_the_owner(
        postgres: PostgresServer, fresh: FreshDatabase) -> None:
    database, conn = fresh.name, fresh.conn
    bootstrap.apply(conn)
    before = schema_dump(postgres, database)
    conn.run("GRANT boom_owner TO app_user")  # cluster-wide: revoked below whatever happens
    try:
        with pytest.raises(bootstrap.BootstrapError, match=re.escape(
                f"app.bookings: {ACTS_AS_OWNER}")):
            bootstrap.apply(conn)
    finally:
        conn.run("REVOKE boom_owner FROM app_user")
    assert schema_dump(postgres, database) == before
    assert bootstrap.apply(conn).applied == ()  # and once revoked, the run completes


def test_a_run_takes_temporary_back_from_app_user(fresh: FreshDatabase) -> None:
    # 0005 takes TEMPORARY from app_user (a temporary table outlives a pooled transaction,
    # test_pgbouncer_session_state.py); boom_owner, the migrator, keeps it.
    database, conn = fresh.name, fresh.conn
    bootstrap.apply(conn)
    assert may_create_temporary(conn, "app_user") is False
    assert may_create_temporary(conn, "boom_owner") is True
    # Given PUBLIC has it again (as after a logical restore into a new database)
    conn.run(f"GRANT TEMPORARY ON DATABASE {database} TO PUBLIC")
    assert may_create_temporary(conn, "app_user") is True
    # When the bootstrap runs, Then it takes it back and says so
    result = bootstrap.apply(conn)
    assert result.applied == ()
    assert result.repaired == ("TEMPORARY on the database revoked from PUBLIC and app_user",)
    assert may_create_temporary(conn, "app_user") is False
    assert may_create_temporary(conn, "boom_owner") is True


def test_a_run_that_cannot_take_temporary_back_refuses_and_changes_nothing(
        postgres: PostgresServer, fresh: FreshDatabase) -> None:
    # Given app_user holds TEMPORARY from a grantor other than the database's owner: the
    # owner's REVOKE (the bootstrap's repair) does not reach such a grant
    database, conn = fresh.name, fresh.conn
    bootstrap.apply(conn)
    grantor, password = f"grantor_{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    conn.run(f"CREATE ROLE {grantor} LOGIN PASSWORD {pg8000.native.literal(password)}")
    conn.run(f"GRANT TEMPORARY ON DATABASE {database} TO {grantor} WITH GRANT OPTION")
    other = postgres.connect(database, user=grantor, password=password, tls=True)
    other.run(f"GRANT TEMPORARY ON DATABASE {database} TO app_user")
    other.close()
    recorded = versions(conn)
    # When the bootstrap runs, Then it names the gap and the fix, and changes nothing
    with pytest.raises(bootstrap.BootstrapError, match=re.escape(
            f"database: app_user may create temporary tables in database {database}, ") +
            r".*REVOKE TEMPORARY ON DATABASE .* FROM PUBLIC, app_user as its owner; a grant "
            r"made by another role is revoked by that role, or from it with CASCADE.*"
            r"nothing was changed"):
        bootstrap.apply(conn)
    assert may_create_temporary(conn, "app_user") is True and versions(conn) == recorded
    conn.run(f"REVOKE TEMPORARY ON DATABASE {database} FROM {grantor} CASCADE")
    assert bootstrap.apply(conn).repaired == ()  # and once that grant is gone, all is well
    conn.run(f"DROP OWNED BY {grantor}")
    conn.run(f"DROP ROLE {grantor}")


def test_policies_that_only_narrow_pass_the_audit(fresh: FreshDatabase) -> None:
    # Per-command policies with exactly the tenant check, and any restrictive policy, add
    # no access: the audit stays clean and the bootstrap completes.
    conn = fresh.conn
    bootstrap.apply(conn)
    conn.run("SET ROLE boom_owner")
    conn.run("CREATE POLICY reads ON app.bookings FOR SELECT "
             "USING (tenant_id = (SELECT app.current_tenant_id()))")
    conn.run("CREATE POLICY inserts ON app.bookings FOR INSERT "
             "WITH CHECK (tenant_id = (SELECT app.current_tenant_id()))")
    conn.run("CREATE POLICY future_only ON app.bookings AS RESTRICTIVE FOR INSERT "
             "WITH CHECK (starts_at > now() - interval '1 day')")
    conn.run("RESET ROLE")
    assert _audit(conn) == []
    assert bootstrap.apply(conn).repaired == ()
