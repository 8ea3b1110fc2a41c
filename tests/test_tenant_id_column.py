"""A tenant table's tenant_id column, on real PostgreSQL 15: it keeps its name (migration 0021),
one that is not a uuid is refused by name (0022), and it is not dropped (0026).

The guarantees find tenant tables by a column named tenant_id. Renamed, the column kept its
policy, so each tenant still read only its own rows, but the table lost every guard: the
negative control at version 20 shows a later DISABLE ROW LEVEL SECURITY going through and
tenant B reading tenant A's bookings, with no audit reporting anything. Dropped (CASCADE), it
took the policy and which tenant each row was: the negative control at version 25 shows the
same DISABLE then giving tenant B every tenant's bookings.
"""

from __future__ import annotations

import contextlib

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap, enforce
from tests.fixture_bootstrap import event_trigger, trigger_off
from tests.fixture_postgres import PostgresServer, role_of_its_own
from tests.fixture_secrets import refused_by_check_and_run, state
from tests.fixture_tenants import TENANT_A, TENANT_B, Conn, committed, in_tenant

BEFORE_0021 = 20
BEFORE_0022 = 21
BEFORE_0026 = 25
DROP = "ALTER TABLE {table} DROP COLUMN tenant_id CASCADE"
KEEPER = "boom_keep_tenant_id_columns"
DISABLE = "ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"
RENAME = "ALTER TABLE {table} RENAME COLUMN tenant_id TO account_id"
VISITS = ("CREATE TABLE app.visits (tenant_id uuid NOT NULL DEFAULT app.current_tenant_id(), "
          "at date NOT NULL) PARTITION BY RANGE (at)",
          "CREATE TABLE app.visits_2026 PARTITION OF app.visits "
          "FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
DOMAIN = "CREATE DOMAIN app.tenant AS uuid"
NOTES_OF_THE_DOMAIN = ("CREATE TABLE app.notes (tenant_id app.tenant NOT NULL "
                       "DEFAULT app.current_tenant_id(), body text)")


def renamed(table: str, policy: str, column: str = "account_id") -> str:
    return (f"{table}: its tenant_id column is now named {column}, which policy {policy} reads: "
            "the tenant guarantees follow the column named tenant_id, so none covers this "
            "table any more (forced row level security, the exact policy, the refusals, the "
            f"audits). Rename it back: ALTER TABLE {table} RENAME COLUMN {column} TO tenant_id")


def row_security(conn: Conn, table: str) -> list[bool]:
    [flags] = conn.run("SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
                       "WHERE oid = CAST(:t AS regclass)", t=table)
    return list(flags)


def refused_changing_nothing(postgres: PostgresServer, database: str, owner: Conn,
                             statement: str) -> dict[str, str]:
    """`statement`, run by the owner, is refused and changes nothing; returns the error's
    fields (M, the message; H, the hint)."""
    before = state(postgres, database)
    with pytest.raises(pg8000.native.DatabaseError) as refused:
        owner.run(statement)
    assert state(postgres, database) == before
    error: dict[str, str] = refused.value.args[0]
    return error


def b_reads_only_its_own(app_user: Conn) -> bool:
    return in_tenant(app_user, TENANT_B, "SELECT DISTINCT tenant_id FROM app.bookings"
                     ) == [[TENANT_B]]


KEEP_IT = ("To retire the table, DROP TABLE it. To make shared data of some of its rows, create "
           "a new table without tenant_id and copy in only rows every tenant may read.")


@pytest.mark.parametrize("new_db", [BEFORE_0021], indirect=True)
def test_negative_control_before_0021_a_renamed_tenant_id_loses_every_guard(
        new_db_owner: Conn, new_db_app_user: Conn, new_db_admin: Conn) -> None:
    table = "app.bookings"
    # On a tenant table the event trigger undoes a migration's DISABLE at once...
    new_db_owner.run(DISABLE.format(table=table))
    assert row_security(new_db_owner, table) == [True, True]
    # ...and the tenant policy follows a renamed column: each tenant still reads only its own
    new_db_owner.run(RENAME.format(table=table))
    read = "SELECT DISTINCT account_id FROM app.bookings"
    assert in_tenant(new_db_app_user, TENANT_B, read) == [[TENANT_B]]
    # but a widening policy, which the trigger refuses on a tenant table, now goes through
    new_db_owner.run("CREATE POLICY everyone ON app.bookings USING (true)")
    assert len(in_tenant(new_db_app_user, TENANT_B, read)) == 2
    new_db_owner.run("DROP POLICY everyone ON app.bookings")
    # and so does the same DISABLE, and tenant B reads tenant A's bookings
    new_db_owner.run(DISABLE.format(table=table))
    assert row_security(new_db_owner, table) == [False, True]
    assert sorted(map(str, sum(in_tenant(new_db_app_user, TENANT_B, read), []))) == sorted(
        map(str, (TENANT_A, TENANT_B)))
    assert enforce.gaps(new_db_admin) == []  # and no audit of version 20 reports anything


@pytest.mark.parametrize(("setup", "table", "policy"), [
    ((), "app.bookings", "tenant_bookings_isolation"),
    # A rename on a partitioned table renames every partition's column too.
    (VISITS, "app.visits", "tenant_isolation"),
])
def test_renaming_a_tenant_tables_tenant_id_is_refused_and_changes_nothing(
        postgres: PostgresServer, new_db: str, new_db_owner: Conn, new_db_app_user: Conn,
        setup: tuple[str, ...], table: str, policy: str) -> None:
    for statement in setup:
        new_db_owner.run(statement)
    error = refused_changing_nothing(postgres, new_db, new_db_owner, RENAME.format(table=table))
    assert error["M"] == renamed(table, policy)
    assert error["H"].startswith("Keep the name tenant_id")
    assert b_reads_only_its_own(new_db_app_user)


def test_a_rename_made_while_the_trigger_was_off_is_found_and_every_run_refuses(
        postgres: PostgresServer, new_db: str, new_db_owner: Conn, new_db_admin: Conn) -> None:
    with trigger_off(new_db_admin):
        new_db_owner.run('ALTER TABLE app.bookings RENAME COLUMN tenant_id TO "Account Id"')
    found = renamed("app.bookings", "tenant_bookings_isolation", '"Account Id"')
    refused_by_check_and_run(postgres, new_db, new_db_admin, found)
    # Renamed back as the finding says, the check is clean and a run goes through.
    new_db_owner.run('ALTER TABLE app.bookings RENAME COLUMN "Account Id" TO tenant_id')
    assert bootstrap.check(new_db_admin).findings == ()
    assert bootstrap.apply(new_db_admin).repaired == ()


@pytest.mark.parametrize("new_db", [BEFORE_0026], indirect=True)
def test_negative_control_before_0026_a_dropped_tenant_id_gives_every_row_to_everyone(
        new_db_owner: Conn, new_db_app_user: Conn, new_db_admin: Conn) -> None:
    # Both tenants' bookings (the bootstrap's user, a superuser here, bypasses the policy)
    assert sorted(str(tenant) for [tenant] in new_db_admin.run(
        "SELECT DISTINCT tenant_id FROM app.bookings")) == sorted(map(str, (TENANT_A, TENANT_B)))
    # The drop went through (CASCADE: the tenant policy reads the column) and took the policy;
    # row level security, still forced with no policy left, showed the rows to no one...
    new_db_owner.run(DROP.format(table="app.bookings"))
    assert row_security(new_db_owner, "app.bookings") == [True, True]
    count = "SELECT count(*) FROM app.bookings"
    for conn, tenant in ((new_db_app_user, TENANT_A), (new_db_app_user, TENANT_B),
                         (new_db_owner, TENANT_A)):
        assert in_tenant(conn, tenant, count) == [[0]]
    # ...but no guard covered the table any more: a DISABLE went through and tenant B read
    # every tenant's bookings, with no audit of version 25 reporting anything.
    new_db_owner.run(DISABLE.format(table="app.bookings"))
    assert row_security(new_db_owner, "app.bookings") == [False, True]
    [[total]] = new_db_admin.run(count)
    assert total > 1 and in_tenant(new_db_app_user, TENANT_B, count) == [[total]]
    assert enforce.gaps(new_db_admin) == []


def dropped(table: str) -> str:
    return (f"{table}: dropping its tenant_id column leaves its rows with no tenant: the tenant "
            "policy goes with the column, nothing guards the table any more, and which tenant "
            "each row belonged to cannot be recovered")


@pytest.mark.parametrize(("setup", "drop", "table"), [
    ((), DROP.format(table="app.bookings"), "app.bookings"),
    ((), "ALTER TABLE app.bookings DROP COLUMN IF EXISTS tenant_id CASCADE", "app.bookings"),
    # One subcommand among others: the whole ALTER TABLE rolls back, the new column too.
    ((), "ALTER TABLE app.bookings ADD COLUMN note text, DROP COLUMN tenant_id CASCADE",
     "app.bookings"),
    # On a partitioned table, the drop takes every partition's column; the first is named.
    (VISITS, DROP.format(table="app.visits"), "app.visits"),
], ids=["cascade", "if-exists", "among-subcommands", "partitioned"])
def test_dropping_a_tenant_tables_tenant_id_is_refused_and_changes_nothing(
        postgres: PostgresServer, new_db: str, new_db_owner: Conn, new_db_app_user: Conn,
        setup: tuple[str, ...], drop: str, table: str) -> None:
    for statement in setup:
        new_db_owner.run(statement)
    error = refused_changing_nothing(postgres, new_db, new_db_owner, drop)
    assert (error["M"], error["H"]) == (dropped(table), KEEP_IT)
    assert b_reads_only_its_own(new_db_app_user)


def test_a_domain_dropped_with_cascade_may_not_take_a_tenant_id_with_it(
        postgres: PostgresServer, new_db: str, new_db_owner: Conn, new_db_app_user: Conn,
        new_db_admin: Conn) -> None:
    # Not only ALTER TABLE drops a column: DROP DOMAIN ... CASCADE drops the columns of that
    # type. A domain-typed tenant_id is refused since 0022; one made before 0022, or while
    # boom_protect_tenant_tables was off, as here, is still this trigger's to keep.
    new_db_owner.run(DOMAIN)
    with trigger_off(new_db_admin):  # boom_protect_tenant_tables only
        new_db_owner.run(NOTES_OF_THE_DOMAIN)
    error = refused_changing_nothing(postgres, new_db, new_db_owner,
                                     "DROP DOMAIN app.tenant CASCADE")
    assert (error["M"], error["H"]) == (dropped("app.notes"), KEEP_IT)
    assert b_reads_only_its_own(new_db_app_user)


def test_what_drops_no_tenant_id_from_a_table_that_stays_goes_through(
        new_db_owner: Conn, new_db_admin: Conn) -> None:
    # Another column of a tenant table; a whole tenant table, its rows with it; a temporary
    # table's tenant_id (not a tenant table: the guarantees leave pg_temp alone).
    new_db_owner.run("ALTER TABLE app.bookings ADD COLUMN note text")
    new_db_owner.run("ALTER TABLE app.bookings DROP COLUMN note")
    new_db_owner.run(VISITS[0])
    new_db_owner.run(VISITS[1])
    new_db_owner.run("DROP TABLE app.visits")
    new_db_owner.run("CREATE TEMPORARY TABLE scratch (tenant_id uuid, n int)")
    new_db_owner.run("ALTER TABLE scratch DROP COLUMN tenant_id CASCADE")
    assert new_db_admin.run("SELECT to_regclass('app.visits') IS NULL, "
                            "to_regclass('app.visits_2026') IS NULL") == [[True, True]]
    assert bootstrap.check(new_db_admin).findings == ()


def test_a_role_that_may_not_use_schema_app_still_drops_what_it_made(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn) -> None:
    # The trigger fires on every DROP in the database, including a monitoring agent's in a
    # schema of its own. Its function names nothing in schema app, so, unlike
    # boom_protect_tenant_tables' checks, it asks for no USAGE there.
    with role_of_its_own(postgres, new_db, "monitor") as (user, password):
        new_db_admin.run(f"CREATE SCHEMA mon AUTHORIZATION {user}")
        assert new_db_admin.run("SELECT has_schema_privilege(:u, 'app', 'USAGE')",
                                u=user) == [[False]]
        with contextlib.closing(postgres.connect(new_db, user=user, password=password)) as agent:
            agent.run("CREATE SEQUENCE mon.samples_seq")
            agent.run("DROP SEQUENCE mon.samples_seq")
            assert agent.run("SELECT to_regclass('mon.samples_seq')") == [[None]]
        new_db_admin.run("DROP SCHEMA mon")


@pytest.mark.parametrize(("remove", "repair"), [
    (f"DROP EVENT TRIGGER {KEEPER}", "re-created"),
    (f"ALTER EVENT TRIGGER {KEEPER} DISABLE", "re-enabled"),
], ids=["dropped", "disabled"])
def test_the_check_reports_the_trigger_gone_and_a_run_puts_it_back(
        new_db_owner: Conn, new_db_admin: Conn, remove: str, repair: str) -> None:
    migrated = event_trigger(new_db_admin, KEEPER)
    assert migrated == [["sql_drop", None, "app.keep_tenant_id_columns", "O"]]
    new_db_admin.run(remove)
    # Meanwhile a drop goes through, and cannot be found afterwards: the trigger's absence is
    # what the check reports.
    new_db_owner.run("CREATE TABLE app.notes (tenant_id uuid NOT NULL, body text)")
    new_db_owner.run(DROP.format(table="app.notes"))
    assert bootstrap.check(new_db_admin).findings == (
        f"would restore: event trigger {KEEPER} {repair}",)
    assert bootstrap.apply(new_db_admin).repaired == (f"event trigger {KEEPER} {repair}",)
    assert event_trigger(new_db_admin, KEEPER) == migrated  # as the migration made it
    with pytest.raises(pg8000.native.DatabaseError, match="dropping its tenant_id column"):
        new_db_owner.run(DROP.format(table="app.bookings"))


def test_a_policy_of_the_applications_own_on_other_columns_is_not_taken_for_a_rename(
        new_db_owner: Conn, new_db_admin: Conn) -> None:
    # An invitation between two tenants: its own design, not a renamed tenant_id.
    new_db_owner.run("CREATE TABLE app.invitations (inviting uuid NOT NULL, invited uuid NOT NULL)")
    new_db_owner.run("ALTER TABLE app.invitations ENABLE ROW LEVEL SECURITY")
    new_db_owner.run("CREATE POLICY either_side ON app.invitations "
                     "USING (inviting = (SELECT app.current_tenant_id()) "
                     "OR invited = (SELECT app.current_tenant_id()))")
    new_db_owner.run("CREATE POLICY sender ON app.invitations FOR INSERT "
                     "WITH CHECK (inviting = (SELECT app.current_tenant_id()))")
    assert new_db_admin.run("SELECT * FROM app.audit_tenant_columns()") == []


@pytest.mark.parametrize("new_db", [BEFORE_0022], indirect=True)
def test_negative_control_before_0022_text_was_refused_in_postgresqls_words_a_domain_taken(
        new_db_owner: Conn, new_db_app_user: Conn, new_db_admin: Conn) -> None:
    with pytest.raises(pg8000.native.DatabaseError) as refused:
        new_db_owner.run("CREATE TABLE app.notes (tenant_id text NOT NULL, body text)")
    assert refused.value.args[0]["M"] == "operator does not exist: text = uuid"
    assert "explicit type casts" in refused.value.args[0]["H"]  # a cast it cannot add
    # A domain over uuid was taken, and its rows isolated...
    new_db_owner.run(DOMAIN)
    new_db_owner.run(NOTES_OF_THE_DOMAIN)
    new_db_owner.run("GRANT SELECT, INSERT ON app.notes TO app_user")
    for tenant in (TENANT_A, TENANT_B):
        committed(new_db_app_user, tenant, "INSERT INTO app.notes (body) VALUES ('n')")
    assert in_tenant(new_db_app_user, TENANT_B, "SELECT tenant_id FROM app.notes") == [
        [TENANT_B]]
    # ...but its policy deparses with a cast, so the audit took it for none: every run refused
    assert "app.notes: no policy checks tenant_id = current_tenant_id() in USING and WITH " \
           "CHECK" in enforce.gaps(new_db_admin)


@pytest.mark.parametrize(("create", "table", "shown"), [
    ("CREATE TABLE app.notes (tenant_id text NOT NULL, body text)", "app.notes", "text"),
    ("CREATE TABLE app.notes (tenant_id bigint, body text)", "app.notes", "bigint"),
    ("CREATE TABLE app.notes (tenant_id varchar(36), body text)", "app.notes",
     "character varying(36)"),
    (NOTES_OF_THE_DOMAIN, "app.notes", "app.tenant"),
    # A column added to a table that had none is the same case.
    ("ALTER TABLE app.bookings_archive ADD COLUMN tenant_id text", "app.bookings_archive",
     "text"),
])
def test_a_tenant_id_that_is_not_a_uuid_is_refused_naming_the_declaration(
        postgres: PostgresServer, new_db: str, new_db_owner: Conn, create: str, table: str,
        shown: str) -> None:
    new_db_owner.run("CREATE TABLE app.bookings_archive (id bigint)")
    new_db_owner.run(DOMAIN)
    error = refused_changing_nothing(postgres, new_db, new_db_owner, create)
    assert error["M"] == (
        f"{table}: tenant_id is {shown}, not uuid: the tenant policy compares it with the uuid "
        "app.current_tenant_id() returns")
    assert error["H"] == (
        "Declare it as app.bookings does: tenant_id uuid NOT NULL DEFAULT "
        "app.current_tenant_id(). Ids kept as text convert with ALTER COLUMN tenant_id TYPE "
        "uuid USING tenant_id::uuid.")
