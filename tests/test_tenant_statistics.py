"""No tenant learns another tenant's row count from the planner's estimates (migration 0006),
on real PostgreSQL 15.

ANALYZE keeps statistics of the whole table; row level security hides rows, not those, and
the planner reads them for leakproof operators such as uuid's =. So EXPLAIN, which app_user
may run on anything it may query, estimated other tenants' row counts exactly (the negative
control at version 5). Each test uses a database of its own: statistics are per table.
"""

from __future__ import annotations

import uuid

import pytest

from lambdas.tenant_bootstrap import bootstrap
from tests.fixture_postgres import PostgresServer, bootstrapped_database
from tests.fixture_statistics import (
    BIG,
    OWN,
    SECRET_RESOURCE,
    SMALL,
    VOLUMES,
    analyze,
    bound_app_user,
    estimate,
    seed_and_analyze,
)
from tests.fixture_tenants import Conn, committed, connect_as

BEFORE_0006 = 5
@pytest.fixture
def analyzed(postgres: PostgresServer, role_passwords: dict[str, str]) -> str:
    """A database at the latest version with VOLUMES analyzed."""
    database = bootstrapped_database(postgres, role_passwords)
    seed_and_analyze(postgres, role_passwords, database)
    return database


def assert_own_rows_and_no_other_counts(postgres: PostgresServer, passwords: dict[str, str],
                                        database: str) -> None:
    """As app_user bound to OWN: OWN's rows only (never otherwise), and every other tenant,
    big or small, estimated as one that does not exist."""
    app = bound_app_user(postgres, passwords, database)
    try:
        assert app.run("SELECT count(*) FROM app.bookings") == [[VOLUMES[OWN]]]
        big, small, absent = tenant_estimates(app)
        assert big == small == absent
    finally:
        app.close()


def statistics_back_while_the_trigger_was_gone(admin: Conn) -> None:
    """tenant_id statistics switched on and collected with the event trigger dropped (as RDS
    asks before a major upgrade)."""
    admin.run("DROP EVENT TRIGGER boom_protect_tenant_tables")
    admin.run("ALTER TABLE app.bookings ALTER COLUMN tenant_id SET STATISTICS 100")
    admin.run("ANALYZE app.bookings")


def tenant_estimates(conn: Conn) -> list[int]:
    """Estimates for BIG, SMALL and a tenant that does not exist."""
    return [estimate(conn, "tenant_id = CAST(:t AS uuid)", t=str(tenant))
            for tenant in (BIG, SMALL, uuid.uuid4())]


def test_explain_shows_no_other_tenants_row_count(
        postgres: PostgresServer, role_passwords: dict[str, str], analyzed: str) -> None:
    # The rows themselves were never visible, and the estimates say nothing either
    assert_own_rows_and_no_other_counts(postgres, role_passwords, analyzed)


def test_negative_control_before_0006_explain_shows_them(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    database = bootstrapped_database(postgres, role_passwords, target_version=BEFORE_0006)
    seed_and_analyze(postgres, role_passwords, database)
    app = bound_app_user(postgres, role_passwords, database)
    assert app.run("SELECT count(*) FROM app.bookings") == [[VOLUMES[OWN]]]
    big, small, _ = tenant_estimates(app)
    assert (big, small) == (VOLUMES[BIG], VOLUMES[SMALL])  # exact, to the row
    app.close()


def test_statistics_analyzed_before_the_upgrade_are_dropped_by_it(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    # Given a database at version 5 whose tenant_id statistics show every tenant's volume
    database = bootstrapped_database(postgres, role_passwords, target_version=BEFORE_0006)
    seed_and_analyze(postgres, role_passwords, database)
    # When it is upgraded (SET STATISTICS 0 alone would keep them)
    admin = postgres.connect(database, tls=True)
    storage = ("SELECT relname, relfilenode FROM pg_class WHERE relnamespace = 'app'::regnamespace "
               "AND relname LIKE 'bookings%' ORDER BY 1")
    before = admin.run(storage)
    assert bootstrap.apply(admin).applied[0] == BEFORE_0006 + 1
    # Then they are gone, the tenant policy is back, and no row was lost; the table and its
    # indexes were neither rewritten nor rebuilt (same files)
    assert admin.run(storage) == before and len(before) == 4  # table, sequence, two indexes
    assert admin.run("SELECT attname FROM pg_stats WHERE schemaname = 'app' "
                     "AND tablename = 'bookings' AND attname = 'tenant_id'") == []
    assert admin.run("SELECT count(*) FROM app.audit_tenant_tables()") == [[0]]
    assert admin.run("SELECT count(*) FROM app.bookings") == [[sum(VOLUMES.values())]]
    admin.close()
    assert_own_rows_and_no_other_counts(postgres, role_passwords, database)


def test_a_tenant_table_created_later_gets_no_tenant_statistics(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    database = bootstrapped_database(postgres, role_passwords)
    owner = connect_as(postgres, role_passwords, database, "boom_owner")
    owner.run("CREATE TABLE app.invoices (tenant_id uuid NOT NULL "
              "DEFAULT app.current_tenant_id(), amount int NOT NULL)")
    committed(owner, BIG, "INSERT INTO app.invoices (amount) SELECT 7 "
                          "FROM generate_series(1, 500)")
    owner.run("ANALYZE app.invoices")
    owner.close()
    admin = postgres.connect(database)
    assert admin.run("SELECT attname FROM pg_stats WHERE schemaname = 'app' "
                     "AND tablename = 'invoices'") == [["amount"]]
    admin.close()


def test_statistics_switched_back_on_are_switched_off_at_once(
        analyzed: str, postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    owner = connect_as(postgres, role_passwords, analyzed, "boom_owner")
    owner.run("ALTER TABLE app.bookings ALTER COLUMN tenant_id SET STATISTICS 100")
    assert owner.run("SELECT attstattarget FROM pg_attribute WHERE attname = 'tenant_id' "
                     "AND attrelid = 'app.bookings'::regclass") == [[0]]
    owner.close()
    analyze(postgres, analyzed)
    assert_own_rows_and_no_other_counts(postgres, role_passwords, analyzed)


def test_a_bootstrap_run_drops_statistics_switched_on_while_the_trigger_was_gone(
        analyzed: str, postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    # Given statistics switched on and collected while the event trigger was dropped
    admin = postgres.connect(analyzed, tls=True)
    statistics_back_while_the_trigger_was_gone(admin)
    assert [row[0] for row in admin.run("SELECT * FROM app.audit_tenant_statistics()")] == \
        ["app.bookings"]
    # When the bootstrap runs, Then it repairs the table and says so
    result = bootstrap.apply(admin)
    assert result.repaired == ("event trigger boom_protect_tenant_tables re-created",
                               "app.bookings protected")
    assert admin.run("SELECT * FROM app.audit_tenant_statistics()") == []
    admin.close()
    assert_own_rows_and_no_other_counts(postgres, role_passwords, analyzed)


def test_a_view_on_tenant_id_stops_the_repair_naming_the_fix(
        analyzed: str, postgres: PostgresServer) -> None:
    # Given statistics to drop and a view that uses tenant_id (PostgreSQL then refuses the
    # ALTER COLUMN ... TYPE that drops them)
    admin = postgres.connect(analyzed, tls=True)
    statistics_back_while_the_trigger_was_gone(admin)
    admin.run("CREATE VIEW app.per_tenant AS SELECT tenant_id, count(*) FROM app.bookings "
              "GROUP BY tenant_id")
    # When the bootstrap runs, Then it fails, names the table and the fix, and changes nothing
    with pytest.raises(bootstrap.BootstrapError, match=(
            r"nothing was changed: app\.bookings: its tenant_id statistics .* cannot be "
            r"dropped: cannot alter type of a column used by a view or rule")):
        bootstrap.apply(admin)
    assert admin.run("SELECT count(*) FROM pg_event_trigger "
                     "WHERE evtname = 'boom_protect_tenant_tables'") == [[0]]  # not re-created
    assert [row[0] for row in admin.run("SELECT * FROM app.audit_tenant_statistics()")] == \
        ["app.bookings"]
    admin.close()


def test_other_columns_show_values_common_across_tenants_unless_their_statistics_are_off(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    # The README's contract: a column whose values are secret gets SET STATISTICS 0 in the
    # migration that creates it. Shown here on bookings.resource, with a control.
    shown = bootstrapped_database(postgres, role_passwords)
    hidden = bootstrapped_database(postgres, role_passwords)
    owner = connect_as(postgres, role_passwords, hidden, "boom_owner")
    owner.run("ALTER TABLE app.bookings ALTER COLUMN resource SET STATISTICS 0")
    owner.close()
    estimates = {}
    for database in (shown, hidden):
        seed_and_analyze(postgres, role_passwords, database)
        app = bound_app_user(postgres, role_passwords, database)
        estimates[database] = [estimate(app, "resource = :r", r=resource)
                               for resource in (SECRET_RESOURCE, "no-such-resource")]
        app.close()
    secret, absent = estimates[shown]
    assert secret > 10 * absent  # the big tenant's resource shows to everyone
    assert estimates[hidden][0] == estimates[hidden][1]
