"""Unique and foreign keys never span tenants (migration 0006), on real PostgreSQL 15.

A UNIQUE key on a tenant table without tenant_id is checked against every tenant's rows, and
a foreign key's check bypasses row level security: the negative controls at version 5 show
tenant B learning that tenant A has a value or a row (and being unable to use the value, or
able to point at the row).
"""

from __future__ import annotations

import uuid

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap
from tests.fixture_postgres import PostgresServer, bootstrapped_database
from tests.fixture_tenants import TENANT_A, TENANT_B, Conn, committed, connect_as, database_with

BEFORE_0006 = 5
EMAIL = "ann@example.com"
SPANS = "does not include tenant_id"

CUSTOMERS_SPANNING = ("CREATE TABLE app.customers (id bigint GENERATED ALWAYS AS IDENTITY "
                      "PRIMARY KEY, tenant_id uuid NOT NULL DEFAULT app.current_tenant_id(), "
                      "email text NOT NULL UNIQUE)")


def test_negative_control_before_0006_a_key_across_tenants_tells_one_of_another(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    database = database_with(postgres, role_passwords, CUSTOMERS_SPANNING, version=BEFORE_0006)
    app = connect_as(postgres, role_passwords, database, "app_user")
    committed(app, TENANT_A, "INSERT INTO app.customers (email) VALUES (:e)", e=EMAIL)
    # Tenant B sees no customer at all, yet
    assert committed(app, TENANT_B, "SELECT * FROM app.customers WHERE email = :e",
                     e=EMAIL) == []
    # its insert fails on A's value, and ON CONFLICT quietly inserts nothing
    with pytest.raises(pg8000.native.DatabaseError, match="duplicate key value"):
        committed(app, TENANT_B, "INSERT INTO app.customers (email) VALUES (:e)", e=EMAIL)
    assert committed(app, TENANT_B, "INSERT INTO app.customers (email) VALUES (:e) "
                                    "ON CONFLICT DO NOTHING RETURNING 1", e=EMAIL) == []
    app.close()


@pytest.mark.parametrize(("ddl", "key"), [
    (CUSTOMERS_SPANNING, "app.customers_email_key"),
    ("ALTER TABLE app.bookings ADD CONSTRAINT one_per_resource UNIQUE (resource)",
     "app.one_per_resource"),
    # tenant_id only INCLUDEd: the key that must be unique is still email alone
    ("CREATE TABLE app.customers (tenant_id uuid NOT NULL, email text NOT NULL, "
     "UNIQUE (email) INCLUDE (tenant_id))", "app.customers_email_tenant_id_key"),
    ("CREATE TABLE app.customers (tenant_id uuid NOT NULL, email text PRIMARY KEY)",
     "app.customers_pkey"),
], ids=["create-table", "alter-table", "tenant-only-included", "primary-key"])
def test_a_key_that_spans_tenants_is_refused_when_made(
        postgres: PostgresServer, role_passwords: dict[str, str], ddl: str, key: str) -> None:
    database = bootstrapped_database(postgres, role_passwords)
    owner = connect_as(postgres, role_passwords, database, "boom_owner")
    with pytest.raises(pg8000.native.DatabaseError,
                       match=f"unique key {key} {SPANS}: it spans all tenants"):
        owner.run(ddl)
    assert owner.run("SELECT to_regclass('app.customers') IS NULL") == [[True]]
    owner.close()


def test_a_no_double_booking_constraint_must_be_per_tenant(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    # A booking platform's exclusion constraint: across tenants, tenant B could not book a
    # "room-1" at a time tenant A had booked its own "room-1", and would learn that it had.
    database = bootstrapped_database(postgres, role_passwords)
    admin = postgres.connect(database)
    admin.run("CREATE EXTENSION btree_gist")
    admin.close()
    owner = connect_as(postgres, role_passwords, database, "boom_owner")
    overlap = "resource WITH =, tstzrange(starts_at, ends_at) WITH &&"
    with pytest.raises(pg8000.native.DatabaseError,
                       match=f"unique key app.no_double_booking {SPANS}"):
        owner.run(f"ALTER TABLE app.bookings ADD CONSTRAINT no_double_booking "
                  f"EXCLUDE USING gist ({overlap})")
    owner.run(f"ALTER TABLE app.bookings ADD CONSTRAINT no_double_booking "
              f"EXCLUDE USING gist (tenant_id WITH =, {overlap})")
    owner.close()
    app = connect_as(postgres, role_passwords, database, "app_user")
    booking = ("INSERT INTO app.bookings (resource, starts_at, ends_at) VALUES "
               "('room-1', '2026-12-01 10:00+00', '2026-12-01 11:00+00') RETURNING 1")
    for tenant in (TENANT_A, TENANT_B):
        assert committed(app, tenant, booking) == [[1]]
    with pytest.raises(pg8000.native.DatabaseError, match="conflicting key value"):
        committed(app, TENANT_A, booking)  # still no double booking within a tenant
    app.close()


def test_keys_with_tenant_id_or_database_generated_values_are_allowed(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    database = bootstrapped_database(postgres, role_passwords)
    owner = connect_as(postgres, role_passwords, database, "boom_owner")
    owner.run("CREATE TABLE app.customers ("
              "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
              "public_id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE, "
              "number bigserial UNIQUE, "
              "tenant_id uuid NOT NULL DEFAULT app.current_tenant_id(), "
              "email text NOT NULL, UNIQUE (tenant_id, email))")
    owner.run("CREATE UNIQUE INDEX customers_email_ci ON app.customers (tenant_id, lower(email))")
    assert owner.run("SELECT * FROM app.audit_tenant_keys()") == []
    owner.close()
    # and two tenants may both have the same e-mail address
    app = connect_as(postgres, role_passwords, database, "app_user")
    for tenant in (TENANT_A, TENANT_B):
        assert committed(app, tenant, "INSERT INTO app.customers (email) VALUES (:e) "
                         "ON CONFLICT (tenant_id, email) DO NOTHING RETURNING 1",
                         e=EMAIL) == [[1]]
    app.close()


def test_a_unique_index_made_by_hand_stops_the_next_bootstrap_run(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    # Given a unique index across tenants made with CREATE UNIQUE INDEX, which the event
    # trigger does not see (an expression key, so not a generated column either)
    database = bootstrapped_database(postgres, role_passwords)
    owner = connect_as(postgres, role_passwords, database, "boom_owner")
    owner.run("CREATE UNIQUE INDEX bookings_resource_ci ON app.bookings (lower(resource))")
    owner.close()
    admin = postgres.connect(database, tls=True)
    assert admin.run("SELECT table_name FROM app.audit_tenant_keys()") == [["app.bookings"]]
    # When the bootstrap runs, Then it refuses, naming the key and the fix
    with pytest.raises(bootstrap.BootstrapError, match=(
            rf"app\.bookings: unique key app\.bookings_resource_ci {SPANS}.*Make tenant_id "
            r"part of it.*nothing was changed")):
        bootstrap.apply(admin)
    # and once the key includes tenant_id, the run completes
    admin.run("DROP INDEX app.bookings_resource_ci")
    admin.run("CREATE UNIQUE INDEX bookings_resource_ci ON app.bookings "
              "(tenant_id, lower(resource))")
    assert bootstrap.apply(admin).applied == ()
    admin.close()


def test_an_upgrade_refuses_while_a_key_spans_tenants(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    database = database_with(postgres, role_passwords, CUSTOMERS_SPANNING, version=BEFORE_0006)
    admin = postgres.connect(database, tls=True)
    with pytest.raises(bootstrap.BootstrapError, match=(
            rf"nothing was changed: app\.customers: unique key app\.customers_email_key "
            rf"{SPANS}")):
        bootstrap.apply(admin)
    assert bootstrap.current_version(admin) == BEFORE_0006
    admin.close()


INVOICES = ("CREATE TABLE app.invoices (tenant_id uuid NOT NULL DEFAULT app.current_tenant_id(), "
            "booking_id bigint NOT NULL, amount int NOT NULL, {reference})")
BY_ID = "FOREIGN KEY (booking_id) REFERENCES app.bookings (id)"
BY_TENANT_AND_ID = "FOREIGN KEY (tenant_id, booking_id) REFERENCES app.bookings (tenant_id, id)"


def book(app: Conn, tenant: uuid.UUID) -> int:
    """A booking of `tenant`'s; its id."""
    [[booking]] = committed(app, tenant, "INSERT INTO app.bookings (resource, starts_at, "
                            "ends_at) VALUES ('room-1', now(), now() + interval '1 hour') "
                            "RETURNING id")
    return int(booking)


def invoice(app: Conn, tenant: uuid.UUID, booking: int) -> int:
    """Invoices `booking` as `tenant`; the number of invoices made."""
    return len(committed(app, tenant, "INSERT INTO app.invoices (booking_id, amount) "
                                      "VALUES (:b, 100) RETURNING 1", b=booking))


def test_negative_control_before_0006_a_foreign_key_by_id_crosses_tenants(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    database = database_with(postgres, role_passwords, INVOICES.format(reference=BY_ID),
                             version=BEFORE_0006)
    app = connect_as(postgres, role_passwords, database, "app_user")
    theirs = book(app, TENANT_A)
    # Tenant B cannot see A's booking, yet may invoice it
    assert committed(app, TENANT_B, "SELECT FROM app.bookings WHERE id = :b", b=theirs) == []
    assert invoice(app, TENANT_B, theirs) == 1
    # and an id with no booking fails: the insert tells B which ids exist
    with pytest.raises(pg8000.native.DatabaseError, match="violates foreign key constraint"):
        invoice(app, TENANT_B, theirs + 1000)
    app.close()


def test_a_foreign_key_must_pair_tenant_id_with_tenant_id(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    database = bootstrapped_database(postgres, role_passwords)
    owner = connect_as(postgres, role_passwords, database, "boom_owner")
    with pytest.raises(pg8000.native.DatabaseError, match=(
            r"foreign key invoices_booking_id_fkey to app\.bookings does not pair tenant_id "
            r"with tenant_id")):
        owner.run(INVOICES.format(reference=BY_ID))
    # A table without tenant_id may not point at tenant rows at all (its own rows have no
    # policy)
    with pytest.raises(pg8000.native.DatabaseError,
                       match=r"app\.audit_log: foreign key .* does not pair tenant_id"):
        owner.run("CREATE TABLE app.audit_log (note text, booking_id bigint "
                  "REFERENCES app.bookings (id))")
    owner.run("ALTER TABLE app.bookings ADD UNIQUE (tenant_id, id)")
    # The referenced tenant_id paired with another column than the row's own is no better
    with pytest.raises(pg8000.native.DatabaseError, match="does not pair tenant_id"):
        owner.run("CREATE TABLE app.transfers (tenant_id uuid NOT NULL, to_tenant uuid NOT NULL, "
                  "booking_id bigint NOT NULL, FOREIGN KEY (to_tenant, booking_id) "
                  "REFERENCES app.bookings (tenant_id, id))")
    owner.run(INVOICES.format(reference=BY_TENANT_AND_ID))
    owner.close()
    app = connect_as(postgres, role_passwords, database, "app_user")
    theirs, ours = book(app, TENANT_A), book(app, TENANT_B)
    # B invoices its own booking; A's is, to B's insert, as absent as an id never used
    assert invoice(app, TENANT_B, ours) == 1
    for booking in (theirs, theirs + 1000):
        with pytest.raises(pg8000.native.DatabaseError, match="violates foreign key constraint"):
            invoice(app, TENANT_B, booking)
    app.close()


def test_a_foreign_key_added_while_the_trigger_was_gone_stops_the_bootstrap(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    # Given a protected tenant table that got a foreign key by id while the trigger was dropped
    database = database_with(postgres, role_passwords,
                             INVOICES.format(reference="CHECK (amount > 0)"))
    admin = postgres.connect(database, tls=True)
    admin.run("DROP EVENT TRIGGER boom_protect_tenant_tables")
    admin.run(f"ALTER TABLE app.invoices ADD {BY_ID}")
    # When the bootstrap runs, Then the audit names it and the fix, and nothing is changed
    with pytest.raises(bootstrap.BootstrapError, match=(
            r"app\.invoices: foreign key invoices_booking_id_fkey to app\.bookings does not "
            r"pair tenant_id with tenant_id.*Reference \(tenant_id, \.\.\.\).*nothing was "
            r"changed")):
        bootstrap.apply(admin)
    assert admin.run("SELECT count(*) FROM pg_event_trigger "
                     "WHERE evtname = 'boom_protect_tenant_tables'") == [[0]]  # not re-created
    admin.close()
