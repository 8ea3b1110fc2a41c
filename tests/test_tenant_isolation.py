"""Row-level security as app_user and the owner, on real PostgreSQL 15."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pg8000.native
import pytest

from tests.fixture_postgres import PostgresServer

TENANT_A, TENANT_B = uuid.uuid4(), uuid.uuid4()
Conn = pg8000.native.Connection


@pytest.fixture(scope="module")
def seeded(postgres: PostgresServer, role_passwords: dict[str, str], tenant_db: str) -> str:
    owner = postgres.connect(tenant_db, user="boom_owner", password=role_passwords["boom_owner"])
    for tenant in (TENANT_A, TENANT_B):
        owner.run("BEGIN")
        owner.run("SELECT app.set_tenant(:t)", t=tenant)
        for n in range(3):
            owner.run("INSERT INTO app.bookings (resource, starts_at, ends_at) VALUES "
                      "(:r, now(), now() + interval '1 hour')", r=f"room-{n}")
        owner.run("COMMIT")
    owner.close()
    return tenant_db


def _login(postgres: PostgresServer, passwords: dict[str, str], database: str,
           role: str) -> Iterator[Conn]:
    conn = postgres.connect(database, user=role, password=passwords[role])
    yield conn
    conn.close()


@pytest.fixture
def app_user(postgres: PostgresServer, role_passwords: dict[str, str],
             seeded: str) -> Iterator[Conn]:
    yield from _login(postgres, role_passwords, seeded, "app_user")


@pytest.fixture
def owner(postgres: PostgresServer, role_passwords: dict[str, str],
          seeded: str) -> Iterator[Conn]:
    yield from _login(postgres, role_passwords, seeded, "boom_owner")


def in_tenant(conn: Conn, tenant: uuid.UUID | None, sql: str, **params: object) -> list[list]:
    conn.run("BEGIN")
    try:
        if tenant is not None:
            conn.run("SELECT app.set_tenant(:t)", t=tenant)
        return conn.run(sql, **params)
    finally:
        conn.run("ROLLBACK")


def fails(conn: Conn, tenant: uuid.UUID | None, sql: str, match: str, **params: object) -> None:
    with pytest.raises(pg8000.native.DatabaseError, match=match):
        in_tenant(conn, tenant, sql, **params)


def test_tenant_sees_only_its_rows(app_user: Conn) -> None:
    rows = in_tenant(app_user, TENANT_A, "SELECT DISTINCT tenant_id FROM app.bookings")
    assert rows == [[TENANT_A]]
    assert in_tenant(app_user, TENANT_A, "SELECT count(*) FROM app.bookings") == [[3]]


def test_writes_into_another_tenant_are_rejected(app_user: Conn) -> None:
    fails(app_user, TENANT_A, "INSERT INTO app.bookings (tenant_id, resource, starts_at, "
          "ends_at) VALUES (:b, 'x', now(), now() + interval '1 hour')",
          "row-level security policy", b=TENANT_B)
    fails(app_user, TENANT_A, "UPDATE app.bookings SET tenant_id = :b",
          "row-level security policy", b=TENANT_B)
    # B's rows are invisible to A, so A's update and delete cannot reach them.
    assert in_tenant(app_user, TENANT_A,
                     "UPDATE app.bookings SET resource = 'x' WHERE tenant_id = :b "
                     "RETURNING id", b=TENANT_B) == []


def test_without_a_tenant_nothing_is_read_or_written(app_user: Conn) -> None:
    assert in_tenant(app_user, None, "SELECT count(*) FROM app.bookings") == [[0]]
    fails(app_user, None, "INSERT INTO app.bookings (resource, starts_at, ends_at) "
          "VALUES ('x', now(), now() + interval '1 hour')", "null value|row-level security")
    fails(app_user, None, "INSERT INTO app.bookings (tenant_id, resource, starts_at, ends_at) "
          "VALUES (:a, 'x', now(), now() + interval '1 hour')", "row-level security", a=TENANT_A)


def test_session_level_setting_fails_closed(app_user: Conn) -> None:
    # The classic pooling mistake: a session SET of the tenant. It must not grant anything.
    app_user.run(f"SET boom.tenant_id = '{TENANT_A}'")
    app_user.run(f"SET boom.tenant_tx = '{TENANT_A}'")
    assert in_tenant(app_user, None, "SELECT app.current_tenant_id(), count(*) "
                     "FROM app.bookings") == [[None, 0]]
    app_user.run("SELECT set_config('boom.tenant_id', :t, false)", t=str(TENANT_B))
    assert in_tenant(app_user, None, "SELECT count(*) FROM app.bookings") == [[0]]


def test_bare_set_local_selects_nothing(app_user: Conn) -> None:
    # The README's contract: only app.set_tenant() binds a tenant to the transaction. A bare
    # SET LOCAL looks the same to the policy as a leaked session SET, so it must not count.
    app_user.run("BEGIN")
    try:
        app_user.run(f"SET LOCAL boom.tenant_id = '{TENANT_A}'")
        assert app_user.run("SELECT app.current_tenant_id(), count(*) FROM app.bookings") == [
            [None, 0]]
        app_user.run("SELECT app.set_tenant(:t)", t=TENANT_A)  # the same tenant, stamped
        assert app_user.run("SELECT app.current_tenant_id(), count(*) FROM app.bookings") == [
            [TENANT_A, 3]]
    finally:
        app_user.run("ROLLBACK")


def test_set_tenant_binds_only_its_own_transaction(app_user: Conn) -> None:
    # A NULL tenant is a bug in the caller: refused, and nothing stays set.
    with pytest.raises(pg8000.native.DatabaseError, match="tenant must not be NULL"):
        in_tenant(app_user, None, "SELECT app.set_tenant(NULL)")
    # set_tenant() outside a transaction block binds its own one-statement transaction only.
    app_user.run("SELECT app.set_tenant(:t)", t=TENANT_A)
    assert in_tenant(app_user, None, "SELECT app.current_tenant_id(), count(*) "
                     "FROM app.bookings") == [[None, 0]]
    assert in_tenant(app_user, TENANT_B, "SELECT app.current_tenant_id(), count(*) "
                     "FROM app.bookings") == [[TENANT_B, 3]]


def test_shadowing_names_in_the_session_cannot_forge_a_tenant(app_user: Conn) -> None:
    # The tenant functions carry no SET search_path (speed, see 0003); every name in them is
    # pg_catalog-qualified, so temporary types named like theirs change nothing.
    app_user.run("SET search_path = pg_temp, app, pg_catalog")
    app_user.run("CREATE TEMP TABLE text (forged int)")
    app_user.run("CREATE TEMP TABLE uuid (forged int)")
    try:
        assert in_tenant(app_user, TENANT_A, "SELECT app.current_tenant_id()") == [[TENANT_A]]
        assert in_tenant(app_user, None, "SELECT app.current_tenant_id(), count(*) "
                         "FROM app.bookings") == [[None, 0]]
    finally:
        app_user.run("DROP TABLE pg_temp.text, pg_temp.uuid")
        app_user.run("RESET search_path")


@pytest.mark.parametrize(("sql", "match"), [
    ("ALTER TABLE app.bookings DISABLE ROW LEVEL SECURITY", "must be owner"),
    ("ALTER TABLE app.bookings NO FORCE ROW LEVEL SECURITY", "must be owner"),
    ("DROP POLICY tenant_bookings_isolation ON app.bookings", "must be owner"),
    ("SET ROLE boom_owner", "permission denied"),
    ("SET SESSION AUTHORIZATION boom_owner", "permission denied"),
    ("CREATE TABLE app.escape (tenant_id uuid)", "permission denied"),
    ("CREATE TABLE public.escape (tenant_id uuid)", "permission denied"),
    ("ALTER ROLE app_user BYPASSRLS", "must be superuser"),
    ("TRUNCATE app.bookings", "permission denied"),
])
def test_app_user_cannot_escape(app_user: Conn, sql: str, match: str) -> None:
    fails(app_user, TENANT_A, sql, match)


def test_views_and_definer_functions_do_not_bypass_rls(owner: Conn, app_user: Conn) -> None:
    # Given the owner publishes a view and a SECURITY DEFINER function over bookings
    owner.run("CREATE OR REPLACE VIEW app.all_bookings AS SELECT * FROM app.bookings")
    owner.run("CREATE OR REPLACE FUNCTION app.count_all() RETURNS bigint LANGUAGE sql "
              "SECURITY DEFINER AS 'SELECT count(*) FROM app.bookings'")
    owner.run("GRANT EXECUTE ON FUNCTION app.count_all() TO app_user")
    # Then app_user still sees only its tenant through both (RLS is FORCED on the owner)
    assert in_tenant(app_user, TENANT_A, "SELECT count(*), count(DISTINCT tenant_id) "
                     "FROM app.all_bookings") == [[3, 1]]
    assert in_tenant(app_user, TENANT_A, "SELECT app.count_all()") == [[3]]
    assert in_tenant(app_user, None, "SELECT app.count_all()") == [[0]]


def test_the_owner_is_bound_too(owner: Conn) -> None:
    assert in_tenant(owner, None, "SELECT count(*) FROM app.bookings") == [[0]]
    assert in_tenant(owner, TENANT_B, "SELECT DISTINCT tenant_id FROM app.bookings") == \
        [[TENANT_B]]


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


def test_audit_reports_tables_without_the_guarantees(postgres: PostgresServer,
                                                     seeded: str) -> None:
    admin = postgres.connect(seeded)
    admin.run("BEGIN")
    try:
        # Un-forcing is undone at once by the event trigger ...
        admin.run("ALTER TABLE app.bookings NO FORCE ROW LEVEL SECURITY")
        forced = admin.run("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'bookings'")
        # ... so a gap needs the trigger off: the audit then names every missing guarantee.
        admin.run("ALTER EVENT TRIGGER boom_protect_tenant_tables DISABLE")
        admin.run("CREATE TABLE app.unguarded (tenant_id uuid)")
        admin.run("CREATE POLICY everyone ON app.bookings USING (true)")
        problems = admin.run("SELECT * FROM app.audit_tenant_tables()")
    finally:
        admin.run("ROLLBACK")
        admin.close()
    assert forced == [[True]]
    assert problems == [
        ["app.bookings", "policy everyone widens access: its USING and WITH CHECK must be "
                         "exactly tenant_id = (SELECT app.current_tenant_id())"],
        ["app.unguarded", "no policy checks tenant_id = current_tenant_id() in USING and WITH "
                          "CHECK"],
        ["app.unguarded", "owned by postgres, not boom_owner"],
        ["app.unguarded", "row level security is not enabled"],
        ["app.unguarded", "row level security is not forced"],
    ]


MATVIEW_REFUSED = "materialized view app.booked reads tenant table\\(s\\) app.bookings"


@pytest.mark.parametrize("source", [
    "SELECT tenant_id, resource FROM app.bookings",
    "SELECT resource FROM app.bookings",  # no tenant_id column: still tenant rows
    "SELECT resource FROM app.bookings_view",  # through a plain view
], ids=["direct", "without-tenant-id", "through-a-view"])
def test_materialized_views_of_tenant_rows_are_refused(owner: Conn, source: str) -> None:
    # A materialized view has no RLS: made inside A's transaction it would hold A's rows for
    # every tenant (the control test below shows that leak). The event trigger refuses it.
    owner.run("BEGIN")
    try:
        owner.run("SELECT app.set_tenant(:t)", t=TENANT_A)
        owner.run("CREATE VIEW app.bookings_view AS SELECT * FROM app.bookings")
        with pytest.raises(pg8000.native.DatabaseError, match=MATVIEW_REFUSED):
            owner.run(f"CREATE MATERIALIZED VIEW app.booked AS {source}")
    finally:
        owner.run("ROLLBACK")


def test_a_materialized_view_app_user_can_read_leaks_and_the_audit_names_it(
        postgres: PostgresServer, seeded: str, owner: Conn, app_user: Conn) -> None:
    admin = postgres.connect(seeded)
    admin.run("BEGIN")
    try:
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
    finally:
        admin.run("ROLLBACK")
        admin.close()
    assert seen_by_b == [[TENANT_A]]
    assert problems == [["app.booked", "materialized view of app.bookings readable by app_user: "
                         "it has no row level security, so every tenant sees the rows it "
                         "holds"]]


def test_a_materialized_view_out_of_app_users_reach_is_allowed(
        postgres: PostgresServer, seeded: str) -> None:
    admin = postgres.connect(seeded)
    admin.run("BEGIN")
    try:
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
    finally:
        admin.run("ROLLBACK")
        admin.close()
    assert allowed == [[3]] and clean == []
    assert granted == [["reports.booked"]]


@pytest.mark.parametrize("widen", [
    "CREATE POLICY everyone ON app.bookings USING (true)",
    "ALTER POLICY tenant_bookings_isolation ON app.bookings "
    "USING (tenant_id = (SELECT app.current_tenant_id()) OR true)",
    "CREATE POLICY writes_anywhere ON app.bookings FOR INSERT WITH CHECK (true)",
], ids=["using-true", "tenant-policy-or-true", "insert-anywhere"])
def test_a_widening_policy_is_refused_when_it_is_made(owner: Conn, widen: str) -> None:
    # A migration (run as the owner) that widens a tenant table's access fails at once.
    owner.run("BEGIN")
    try:
        with pytest.raises(pg8000.native.DatabaseError,
                           match="on tenant table app.bookings widens access"):
            owner.run(widen)
    finally:
        owner.run("ROLLBACK")


@pytest.mark.parametrize(("grant", "problem"), [
    ("GRANT boom_owner TO app_user",
     "app_user can act as its owner boom_owner (role membership), who may drop the table, "
     "empty it or change its policies"),
    # Indirect: through a role that is itself a member of the owner.
    ("CREATE ROLE go_between; GRANT boom_owner TO go_between; GRANT go_between TO app_user",
     "app_user can act as its owner boom_owner (role membership), who may drop the table, "
     "empty it or change its policies"),
    ("ALTER ROLE app_user BYPASSRLS",
     "app_user bypasses row level security (SUPERUSER or BYPASSRLS)"),
], ids=["member-of-owner", "indirect-member", "bypassrls"])
def test_the_audit_reports_an_app_user_that_can_get_around_rls(
        postgres: PostgresServer, seeded: str, grant: str, problem: str) -> None:
    admin = postgres.connect(seeded)
    admin.run("BEGIN")  # roles are cluster-wide: the rollback keeps other tests' roles intact
    try:
        clean = admin.run("SELECT * FROM app.audit_tenant_tables() "
                          "WHERE table_name = 'app.bookings'")
        admin.run(grant)
        problems = admin.run("SELECT * FROM app.audit_tenant_tables() "
                             "WHERE table_name = 'app.bookings'")
    finally:
        admin.run("ROLLBACK")
        admin.close()
    assert clean == []
    assert problems == [["app.bookings", problem]]
