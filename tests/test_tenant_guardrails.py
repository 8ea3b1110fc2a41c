"""Guardrails for schema changes on real PostgreSQL 15: tenant tables created later are protected,
and what would open tenants to each other (a widening policy, a materialized view of tenant
rows, an app_user that can act as the owner) is refused when made or named by the audit."""

from __future__ import annotations

import contextlib
import re

import pg8000.native
import pytest

from tests.fixture_postgres import PostgresServer, bootstrapped_database, role_of_its_own
from tests.fixture_tenants import (
    ACTS_AS_OWNER,
    MATVIEW_OF_BOOKINGS,
    ROWS_PER_TENANT,
    TENANT_A,
    TENANT_B,
    Conn,
    committed,
    connect_as,
    in_tenant,
    rolled_back,
    widening,
)


def test_tables_created_later_are_protected_automatically(owner: Conn, app_user: Conn) -> None:
    # Given the application's migration adds a tenant table after bootstrap
    owner.run("CREATE TABLE IF NOT EXISTS app.invoices (id serial PRIMARY KEY, "
              "tenant_id uuid NOT NULL DEFAULT app.current_tenant_id(), total numeric)")
    owner.run("CREATE TABLE IF NOT EXISTS app.plain (id int)")
    owner.run("ALTER TABLE app.plain ADD COLUMN IF NOT EXISTS tenant_id uuid")
    in_tenant(owner, TENANT_B, "INSERT INTO app.invoices (total) VALUES (10) RETURNING id")
    owner.run("BEGIN")
    owner.run("SELECT app.set_tenant(:t)", t=TENANT_B)
    owner.run("INSERT INTO app.invoices (total) VALUES (10)")
    owner.run("COMMIT")
    # Then RLS is on, forced, with the tenant policy, and the audit is clean
    assert owner.run("SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
                     "WHERE relname IN ('invoices', 'plain') ORDER BY 1") == \
        [["invoices", True, True], ["plain", True, True]]
    assert in_tenant(app_user, TENANT_A, "SELECT count(*) FROM app.invoices") == [[0]]
    assert in_tenant(app_user, TENANT_B, "SELECT count(*) FROM app.invoices") == [[1]]
    assert owner.run("SELECT * FROM app.audit_tenant_tables()") == []


def test_audit_reports_tables_without_the_guarantees(admin: Conn) -> None:
    with rolled_back(admin):
        # Un-forcing is undone at once by the event trigger ...
        admin.run("ALTER TABLE app.bookings NO FORCE ROW LEVEL SECURITY")
        forced = admin.run("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'bookings'")
        # ... so a gap needs the trigger off: the audit then names every missing guarantee.
        admin.run("ALTER EVENT TRIGGER boom_protect_tenant_tables DISABLE")
        admin.run("CREATE TABLE app.unguarded (tenant_id uuid)")
        admin.run("CREATE POLICY everyone ON app.bookings USING (true)")
        problems = admin.run("SELECT * FROM app.audit_tenant_tables()")
    assert forced == [[True]]
    assert problems == [
        ["app.bookings", widening("everyone")],
        ["app.unguarded", "no policy checks tenant_id = current_tenant_id() in USING and WITH "
                          "CHECK"],
        ["app.unguarded", "owned by postgres, not boom_owner"],
        ["app.unguarded", "row level security is not enabled"],
        ["app.unguarded", "row level security is not forced"],
    ]


@pytest.mark.parametrize("source", [
    "SELECT tenant_id, resource FROM app.bookings",
    "SELECT resource FROM app.bookings",  # no tenant_id column: still tenant rows
    "SELECT resource FROM app.bookings_view",  # through a plain view
], ids=["direct", "without-tenant-id", "through-a-view"])
def test_materialized_views_of_tenant_rows_are_refused(owner: Conn, source: str) -> None:
    # A materialized view has no RLS: made inside A's transaction it would hold A's rows for
    # every tenant (the control test below shows that leak). The event trigger refuses it.
    with rolled_back(owner):
        owner.run("SELECT app.set_tenant(:t)", t=TENANT_A)
        owner.run("CREATE VIEW app.bookings_view AS SELECT * FROM app.bookings")
        with pytest.raises(pg8000.native.DatabaseError,
                           match=re.escape(f"app.booked: {MATVIEW_OF_BOOKINGS}")):
            owner.run(f"CREATE MATERIALIZED VIEW app.booked AS {source}")


def test_a_materialized_view_app_user_can_read_leaks_and_the_audit_names_it(admin: Conn) -> None:
    with rolled_back(admin):
        # Given a materialized view of A's rows made while the trigger was off (the control:
        # B reads A's rows through it, so the tests can see this leak) ...
        admin.run("ALTER EVENT TRIGGER boom_protect_tenant_tables DISABLE")
        admin.run("SET ROLE boom_owner")
        admin.run("SELECT app.set_tenant(:t)", t=TENANT_A)
        admin.run("CREATE MATERIALIZED VIEW app.booked AS SELECT tenant_id FROM app.bookings")
        admin.run("RESET ROLE")
        admin.run("SELECT app.set_tenant(:t)", t=TENANT_B)
        admin.run("SET LOCAL ROLE app_user")
        seen_by_b = admin.run("SELECT DISTINCT tenant_id FROM app.booked")
        admin.run("RESET ROLE")
        # ... then the audit names it
        problems = admin.run("SELECT * FROM app.audit_tenant_tables()")
    assert seen_by_b == [[TENANT_A]]
    assert problems == [["app.booked", MATVIEW_OF_BOOKINGS]]


def test_a_materialized_view_out_of_app_users_reach_is_allowed(admin: Conn) -> None:
    with rolled_back(admin):
        admin.run("CREATE SCHEMA reports AUTHORIZATION boom_owner")
        admin.run("SET ROLE boom_owner")
        admin.run("SELECT app.set_tenant(:t)", t=TENANT_A)
        admin.run("CREATE MATERIALIZED VIEW reports.booked AS SELECT tenant_id FROM app.bookings")
        admin.run("RESET ROLE")
        allowed = admin.run("SELECT count(*) FROM reports.booked")
        clean = admin.run("SELECT * FROM app.audit_tenant_tables()")
        # Granting it to app_user later is what the audit then reports
        admin.run("GRANT USAGE ON SCHEMA reports TO app_user")
        admin.run("GRANT SELECT ON reports.booked TO app_user")
        granted = admin.run("SELECT table_name FROM app.audit_tenant_tables()")
    assert allowed == [[ROWS_PER_TENANT]] and clean == []
    assert granted == [["reports.booked"]]


# An audit trigger of the application's: each booking's row, as JSON, into a history table.
HISTORY_FUNCTION = """
CREATE FUNCTION app.record_booking() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO app.booking_history ({columns}) VALUES ({values});
  RETURN NEW;
END $$"""
HISTORY_TRIGGER = ("CREATE TRIGGER record_booking AFTER INSERT ON app.bookings "
                   "FOR EACH ROW EXECUTE FUNCTION app.record_booking()")


@pytest.mark.parametrize(("table", "columns", "values", "seen_by_b"), [
    # Negative control: no tenant_id, so no policy, and every tenant reads every history row
    ("booking_history (row_data text NOT NULL)", "row_data", "row_to_json(NEW)::text", 1),
    # The contract: the copy keeps tenant_id, so the event trigger makes it a tenant table
    ("booking_history (tenant_id uuid NOT NULL, row_data text NOT NULL)",
     "tenant_id, row_data", "NEW.tenant_id, row_to_json(NEW)::text", 0),
], ids=["without-tenant-id", "with-tenant-id"])
def test_a_table_a_trigger_fills_from_tenant_rows_is_protected_only_with_tenant_id(
        admin: Conn, table: str, columns: str, values: str, seen_by_b: int) -> None:
    with rolled_back(admin):
        # Given the application's migration adds a history table and a trigger filling it
        admin.run("SET ROLE boom_owner")
        admin.run(f"CREATE TABLE app.{table}")
        admin.run(HISTORY_FUNCTION.format(columns=columns, values=values))
        admin.run(HISTORY_TRIGGER)
        admin.run("RESET ROLE")
        # When tenant A books as app_user, the trigger (running as app_user) records it
        admin.run("SET LOCAL ROLE app_user")
        admin.run("SELECT app.set_tenant(:t)", t=TENANT_A)
        admin.run("INSERT INTO app.bookings (resource, starts_at, ends_at) "
                  "VALUES ('room-secret', now(), now() + interval '1 hour')")
        seen_by_a = admin.run("SELECT row_data FROM app.booking_history")
        # Then tenant B reads A's booking through the history table unless it has tenant_id
        admin.run("SELECT app.set_tenant(:t)", t=TENANT_B)
        read_by_b = admin.run("SELECT row_data FROM app.booking_history")
        admin.run("RESET ROLE")
    assert len(seen_by_a) == 1 and "room-secret" in seen_by_a[0][0]
    assert len(read_by_b) == seen_by_b
    assert all("room-secret" in row[0] for row in read_by_b)


def test_a_tenant_registry_keyed_by_tenant_id_shows_each_tenant_only_itself(
        admin: Conn) -> None:
    # The contract's registry: keyed by tenant_id, so a tenant table, and no tenant can list
    # the others' ids, which are what set_tenant() takes.
    with rolled_back(admin):
        admin.run("SET ROLE boom_owner")
        admin.run("CREATE TABLE app.tenants (tenant_id uuid PRIMARY KEY "
                  "DEFAULT app.current_tenant_id(), name text NOT NULL)")
        admin.run("RESET ROLE")
        admin.run("SET LOCAL ROLE app_user")
        for tenant, name in ((TENANT_A, "Alpha Dental"), (TENANT_B, "Beta Yoga")):
            admin.run("SELECT app.set_tenant(:t)", t=tenant)
            admin.run("INSERT INTO app.tenants (name) VALUES (:n)", n=name)
        listed_by_b = admin.run("SELECT tenant_id, name FROM app.tenants")
        admin.run("RESET ROLE")
        everyone = admin.run("SELECT count(*) FROM app.tenants")
    assert listed_by_b == [[TENANT_B, "Beta Yoga"]]
    assert everyone == [[2]]  # both rows are there: the superuser sees them


@pytest.mark.parametrize(("widen", "policy"), [
    ("CREATE POLICY everyone ON app.bookings USING (true)", "everyone"),
    ("ALTER POLICY tenant_bookings_isolation ON app.bookings "
     "USING (tenant_id = (SELECT app.current_tenant_id()) OR true)", "tenant_bookings_isolation"),
    ("CREATE POLICY writes_anywhere ON app.bookings FOR INSERT WITH CHECK (true)",
     "writes_anywhere"),
], ids=["using-true", "tenant-policy-or-true", "insert-anywhere"])
def test_a_widening_policy_is_refused_when_it_is_made(owner: Conn, widen: str,
                                                      policy: str) -> None:
    # A migration (run as the owner) that widens a tenant table's access fails at once.
    with rolled_back(owner), pytest.raises(
            pg8000.native.DatabaseError, match=re.escape(f"app.bookings: {widening(policy)}")):
        owner.run(widen)


@pytest.mark.parametrize(("grant", "problem"), [
    ("GRANT boom_owner TO app_user", ACTS_AS_OWNER),
    # Indirect: through a role that is itself a member of the owner.
    ("CREATE ROLE go_between; GRANT boom_owner TO go_between; GRANT go_between TO app_user",
     ACTS_AS_OWNER),
    ("ALTER ROLE app_user BYPASSRLS",
     "app_user bypasses row level security (SUPERUSER or BYPASSRLS)"),
], ids=["member-of-owner", "indirect-member", "bypassrls"])
def test_the_audit_reports_an_app_user_that_can_get_around_rls(admin: Conn, grant: str,
                                                               problem: str) -> None:
    audit = "SELECT * FROM app.audit_tenant_tables() WHERE table_name = 'app.bookings'"
    with rolled_back(admin):  # roles are cluster-wide: the rollback keeps them for other tests
        clean = admin.run(audit)
        admin.run(grant)
        problems = admin.run(audit)
    assert clean == []
    assert problems == [["app.bookings", problem]]


def test_a_partitioned_tenant_table_is_protected_partition_by_partition(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    # A query on a partition itself uses the partition's own row level security, not the
    # parent's: every partition, made with the parent or attached later, needs its own.
    database = bootstrapped_database(postgres, role_passwords)
    owner = connect_as(postgres, role_passwords, database, "boom_owner")
    owner.run("CREATE TABLE app.visits (tenant_id uuid NOT NULL DEFAULT app.current_tenant_id(),"
              " at date NOT NULL) PARTITION BY RANGE (at)")
    owner.run("CREATE TABLE app.visits_2026 PARTITION OF app.visits "
              "FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
    owner.run("CREATE TABLE app.visits_2027 (LIKE app.visits)")
    owner.run("ALTER TABLE app.visits ATTACH PARTITION app.visits_2027 "
              "FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
    for tenant in (TENANT_A, TENANT_B):
        committed(owner, tenant, "INSERT INTO app.visits (at) VALUES ('2026-05-01'), "
                                 "('2027-05-01')")
    assert owner.run(
        "SELECT c.relname, c.relforcerowsecurity, count(p.oid), a.attstattarget "
        "FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' "
        "LEFT JOIN pg_policy p ON p.polrelid = c.oid WHERE c.relname LIKE 'visits%' "
        "GROUP BY 1, 2, 4 ORDER BY 1") == [["visits", True, 1, 0], ["visits_2026", True, 1, 0],
                                           ["visits_2027", True, 1, 0]]
    assert owner.run("SELECT * FROM app.audit_tenant_tables()") == []
    owner.close()
    app = connect_as(postgres, role_passwords, database, "app_user")
    for table, rows in (("app.visits", 2), ("app.visits_2026", 1), ("app.visits_2027", 1)):
        assert in_tenant(app, TENANT_A, f"SELECT count(*) FROM {table}") == [[rows]]
    app.close()


@pytest.mark.parametrize(("version", "told"), [(22, False), (None, True)], ids=["v22", "now"])
def test_a_role_that_may_not_use_schema_app_is_told_what_the_trigger_needs(
        postgres: PostgresServer, role_passwords: dict[str, str], version: int | None,
        told: bool) -> None:
    # A monitoring agent's role making a table in a schema of its own (0023 names the fix;
    # before, PostgreSQL's "permission denied for schema app" came from inside the trigger).
    database = bootstrapped_database(postgres, role_passwords, target_version=version)
    with role_of_its_own(postgres, database, "monitor") as (user, password), \
            contextlib.closing(postgres.connect(database)) as admin:
        admin.run(f"CREATE SCHEMA mon AUTHORIZATION {user}")
        agent = postgres.connect(database, user=user, password=password)
        with contextlib.closing(agent), pytest.raises(pg8000.native.DatabaseError) as refused:
            agent.run("CREATE TABLE mon.samples (at timestamptz)")
        error = refused.value.args[0]
        if not told:
            assert error["M"] == "permission denied for schema app"
            return
        assert error["M"] == (
            "the tenant guarantees' event trigger checks every CREATE TABLE in this database "
            f"with functions in schema app, and {user} may not use that schema")
        assert error["H"] == (f"GRANT USAGE ON SCHEMA app TO {user} (USAGE shows no table's "
                              "rows: each table needs its own privileges), or run it as "
                              "boom_owner.")
        # Granted as the hint says, the table is made
        admin.run(f"GRANT USAGE ON SCHEMA app TO {user}")
        with contextlib.closing(postgres.connect(database, user=user, password=password)) as again:
            again.run("CREATE TABLE mon.samples (at timestamptz)")
