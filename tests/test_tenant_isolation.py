"""Row-level security as app_user and the owner, on real PostgreSQL 15: what a tenant can see,
write and not escape. The guardrails for schema changes are in test_tenant_guardrails.py."""

from __future__ import annotations

import io
import uuid

import pg8000.native
import pytest

from tests.fixture_postgres import PostgresServer, bootstrapped_database
from tests.fixture_tenants import (
    ROWS_PER_TENANT,
    TENANT_A,
    TENANT_B,
    Conn,
    fails,
    in_tenant,
    rolled_back,
    seed_two_tenants,
)


def test_tenant_sees_only_its_rows(app_user: Conn) -> None:
    rows = in_tenant(app_user, TENANT_A, "SELECT DISTINCT tenant_id FROM app.bookings")
    assert rows == [[TENANT_A]]
    assert in_tenant(app_user, TENANT_A, "SELECT count(*) FROM app.bookings") == [[ROWS_PER_TENANT]]


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


# Any role may SET these for its own transaction; on a large table the planner picks such a
# plan by itself. force_parallel_mode (PostgreSQL 15's name) plans even this small table for
# workers, and without the leader's participation the workers read every row.
PARALLEL_PLAN = ("parallel_setup_cost = 0", "parallel_tuple_cost = 0",
                 "min_parallel_table_scan_size = 0", "max_parallel_workers_per_gather = 2",
                 "force_parallel_mode = on", "parallel_leader_participation = off",
                 "enable_indexscan = off", "enable_bitmapscan = off")


def in_parallel_workers(conn: Conn, tenant: uuid.UUID | None,
                        sql: str) -> tuple[list[list], int]:
    """`sql`'s rows as app_user bound to `tenant` (None: none), every table row read by
    parallel workers, and how many workers its plan launched (EXPLAIN ANALYZE)."""
    with rolled_back(conn):
        if tenant is not None:
            conn.run("SELECT app.set_tenant(CAST(:t AS uuid))", t=str(tenant))
        for setting in PARALLEL_PLAN:
            conn.run(f"SET LOCAL {setting}")
        rows = conn.run(sql)
        plan = conn.run(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")[0][0][0]["Plan"]
    return rows, _workers_launched(plan)


def _workers_launched(plan: dict) -> int:
    return plan.get("Workers Launched", 0) + sum(
        _workers_launched(child) for child in plan.get("Plans", ()))


@pytest.mark.parametrize("sql", [
    # The policy's (SELECT app.current_tenant_id()) is an InitPlan: the leader evaluates it
    # once and hands the workers its value.
    "SELECT tenant_id, count(*) FROM app.bookings GROUP BY tenant_id",
    # A direct call is PARALLEL SAFE, so each worker evaluates it, with the setting and the
    # transaction start the leader hands it: a worker that saw no tenant would return a
    # silent part of the answer, and one that saw another tenant would leak.
    "SELECT app.current_tenant_id(), count(*) FROM app.bookings "
    "WHERE tenant_id = app.current_tenant_id() GROUP BY 1",
], ids=["policy", "direct-call"])
def test_parallel_workers_see_the_tenant_the_transaction_bound(app_user: Conn,
                                                               sql: str) -> None:
    for tenant in (TENANT_A, TENANT_B):
        rows, workers = in_parallel_workers(app_user, tenant, sql)
        assert workers >= 1
        assert rows == [[tenant, ROWS_PER_TENANT]]
    rows, workers = in_parallel_workers(app_user, None, sql)
    assert workers >= 1 and rows == []


def test_copy_exports_the_bound_tenant_and_bulk_loads_take_insert(app_user: Conn,
                                                                   owner: Conn) -> None:
    # COPY ... TO runs the policy: an export holds the bound tenant's rows only
    exported = io.StringIO()
    with rolled_back(app_user):
        app_user.run("SELECT app.set_tenant(CAST(:t AS uuid))", t=str(TENANT_A))
        app_user.run("COPY app.bookings (tenant_id) TO STDOUT", stream=exported)
    assert exported.getvalue().splitlines() == [str(TENANT_A)] * ROWS_PER_TENANT
    # COPY ... FROM is PostgreSQL's refusal for a table whose policy binds the role, and
    # FORCE binds the owner (the application's migrations) too
    for conn in (app_user, owner):
        with pytest.raises(pg8000.native.DatabaseError,
                           match="COPY FROM not supported with row-level security"), \
                rolled_back(conn):
            conn.run("SELECT app.set_tenant(CAST(:t AS uuid))", t=str(TENANT_A))
            conn.run("COPY app.bookings (resource, starts_at, ends_at) FROM STDIN",
                     stream=io.StringIO("bulk\t2026-12-01 10:00\t2026-12-01 11:00\n"))
    # The contract's bulk load: one INSERT of arrays, the tenant from set_tenant()
    with rolled_back(app_user):
        app_user.run("SELECT app.set_tenant(CAST(:t AS uuid))", t=str(TENANT_B))
        loaded = app_user.run(
            "INSERT INTO app.bookings (resource, starts_at, ends_at) "
            "SELECT * FROM unnest(CAST(:r AS text[]), CAST(:s AS timestamptz[]), "
            "CAST(:e AS timestamptz[])) RETURNING tenant_id",
            r=["bulk"] * 500, s=["2026-12-01 10:00"] * 500, e=["2026-12-01 11:00"] * 500)
        counted = app_user.run("SELECT count(*) FROM app.bookings")
    assert loaded == [[TENANT_B]] * 500 and counted == [[ROWS_PER_TENANT + 500]]


def test_session_level_setting_fails_closed(app_user: Conn) -> None:
    # The classic pooling mistake: a session SET of the tenant. It must not grant anything.
    app_user.run(f"SET boom.tenant_id = '{TENANT_A}'")
    app_user.run(f"SET boom.tenant_tx = '{TENANT_A}'")
    assert in_tenant(app_user, None, "SELECT app.current_tenant_id(), count(*) "
                     "FROM app.bookings") == [[None, 0]]
    app_user.run("SELECT set_config('boom.tenant_id', :t, false)", t=str(TENANT_B))
    assert in_tenant(app_user, None, "SELECT count(*) FROM app.bookings") == [[0]]


def copy_the_stamp_into_the_session(conn: Conn) -> None:
    """The mistake the stamp exists to catch, made as faithfully as a caller can: what
    set_tenant() wrote in one transaction, set again for the whole session."""
    conn.run("BEGIN")
    conn.run("SELECT app.set_tenant(:t)", t=TENANT_A)
    tenant, stamp = conn.run("SELECT current_setting('boom.tenant_id'), "
                             "current_setting('boom.tenant_tx')")[0]
    conn.run("COMMIT")
    conn.run("SELECT set_config('boom.tenant_id', :t, false), "
             "set_config('boom.tenant_tx', :s, false)", t=tenant, s=stamp)


@pytest.mark.parametrize("float_digits", [-15, 0, 3])
def test_a_stamp_copied_into_the_session_fails_closed_whatever_its_settings(
        app_user: Conn, float_digits: int) -> None:
    # extra_float_digits, DateStyle and TimeZone are the session's to set (and a pooled server
    # connection keeps them for its next client); none may make a stamp match a later
    # transaction. Until 0005 the stamp was float8 text: at -15 every stamp read '2e+09'.
    app_user.run(f"SET extra_float_digits = {float_digits}")
    app_user.run("SET DateStyle = 'SQL, DMY'")
    app_user.run("SET TimeZone = 'America/St_Johns'")
    copy_the_stamp_into_the_session(app_user)
    assert in_tenant(app_user, None, "SELECT app.current_tenant_id(), count(*) "
                     "FROM app.bookings") == [[None, 0]]
    # The copy is a real stamp: inside its own transaction, set_tenant's value counts.
    assert in_tenant(app_user, TENANT_A, "SELECT count(*) FROM app.bookings") == [
        [ROWS_PER_TENANT]]


def test_before_0005_a_copied_stamp_leaked_under_a_short_float_format(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    # Negative control: the same steps on a database at version 4 leak tenant A's rows into a
    # later transaction that set no tenant, so the test above can see a leak.
    database = bootstrapped_database(postgres, role_passwords, target_version=4)
    seed_two_tenants(postgres, role_passwords, database)
    conn = postgres.connect(database, user="app_user", password=role_passwords["app_user"])
    try:
        conn.run("SET extra_float_digits = -15")
        copy_the_stamp_into_the_session(conn)
        assert in_tenant(conn, None, "SELECT app.current_tenant_id(), count(*) "
                         "FROM app.bookings") == [[TENANT_A, ROWS_PER_TENANT]]
    finally:
        conn.close()


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
            [TENANT_A, ROWS_PER_TENANT]]
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
                     "FROM app.bookings") == [[TENANT_B, ROWS_PER_TENANT]]


def test_shadowing_names_in_the_session_cannot_forge_a_tenant(owner: Conn) -> None:
    # The tenant functions carry no SET search_path (speed, see 0003); every name in them is
    # pg_catalog-qualified, so temporary types named like theirs change nothing. Since 0005
    # only boom_owner (bound too, FORCE) may create temporary objects, so it tries.
    owner.run("SET search_path = pg_temp, app, pg_catalog")
    owner.run("CREATE TEMP TABLE text (forged int)")
    owner.run("CREATE TEMP TABLE uuid (forged int)")
    try:
        assert in_tenant(owner, TENANT_A, "SELECT app.current_tenant_id()") == [[TENANT_A]]
        assert in_tenant(owner, None, "SELECT app.current_tenant_id(), count(*) "
                         "FROM app.bookings") == [[None, 0]]
    finally:
        owner.run("DROP TABLE pg_temp.text, pg_temp.uuid")
        owner.run("RESET search_path")


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
    # Session state that would outlive a pooled transaction (0005; the leak is shown through
    # PgBouncer in test_pgbouncer_session_state.py).
    ("CREATE TEMP TABLE copy AS SELECT resource FROM app.bookings",
     "permission denied to create temporary tables"),
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
    assert in_tenant(app_user, TENANT_A, "SELECT app.count_all()") == [[ROWS_PER_TENANT]]
    assert in_tenant(app_user, None, "SELECT app.count_all()") == [[0]]


def test_the_owner_is_bound_too(owner: Conn) -> None:
    assert in_tenant(owner, None, "SELECT count(*) FROM app.bookings") == [[0]]
    assert in_tenant(owner, TENANT_B, "SELECT DISTINCT tenant_id FROM app.bookings") == \
        [[TENANT_B]]
