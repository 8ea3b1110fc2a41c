"""app_user may not move a sequence (migration 0017), on real PostgreSQL 15.

Every tenant's bookings take their ids from one sequence. UPDATE on it allows setval(), so a
migration's `GRANT ALL ON ALL SEQUENCES IN SCHEMA app TO app_user` let one tenant's request
(SQL injection, say) stop every tenant's inserts: the negative control at version 16 shows it,
unseen by every audit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap
from tests.fixture_bootstrap import trigger_off
from tests.fixture_postgres import PostgresServer, bootstrapped_database
from tests.fixture_tenants import TENANT_A, TENANT_B, Conn, committed, connect_as

BEFORE_0017 = 16
SEQUENCE = "app.bookings_id_seq"
GRANT_ALL = "GRANT ALL ON ALL SEQUENCES IN SCHEMA app TO app_user"  # a common migration idiom
HELD = (f"{SEQUENCE}: app_user holds UPDATE, which lets it setval() a sequence every tenant's "
        "inserts share: one call fails them all. Grant app_user only USAGE on sequences")
REVOKED = f"UPDATE on {SEQUENCE} revoked from app_user and PUBLIC"
INSERT = ("INSERT INTO app.bookings (resource, starts_at, ends_at) "
          "VALUES ('room-1', now(), now() + interval '1 hour') RETURNING id")
TO_THE_END = f"SELECT setval('{SEQUENCE}', 9223372036854775807)"


def test_negative_control_before_0017_one_tenant_stops_every_tenants_inserts(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    database = bootstrapped_database(postgres, role_passwords, target_version=BEFORE_0017)
    owner = connect_as(postgres, role_passwords, database, "boom_owner")
    app = connect_as(postgres, role_passwords, database, "app_user")
    try:
        owner.run(GRANT_ALL)
        assert owner.run("SELECT * FROM app.audit_tenant_privileges()") == []  # unseen
        committed(app, TENANT_A, TO_THE_END)  # tenant A's request...
        with pytest.raises(pg8000.native.DatabaseError, match="reached maximum value"):
            committed(app, TENANT_B, INSERT)  # ...and tenant B can no longer insert
    finally:
        app.close()
        owner.close()


@pytest.mark.parametrize("grant", [
    GRANT_ALL, f"GRANT UPDATE ON SEQUENCE {SEQUENCE} TO app_user",
    f"GRANT UPDATE ON SEQUENCE {SEQUENCE} TO PUBLIC"])
def test_a_grant_of_update_on_a_sequence_is_refused_at_once(
        postgres: PostgresServer, role_passwords: dict[str, str], new_db: str,
        new_db_owner: Conn, grant: str) -> None:
    with pytest.raises(pg8000.native.DatabaseError, match=re.escape(HELD)):
        new_db_owner.run(grant)
    # USAGE, what nextval() needs, may still be granted; inserts go on, setval() is refused
    new_db_owner.run(f"GRANT USAGE, SELECT ON SEQUENCE {SEQUENCE} TO app_user")
    app = connect_as(postgres, role_passwords, new_db, "app_user")
    try:
        assert committed(app, TENANT_B, INSERT)
        with pytest.raises(pg8000.native.DatabaseError, match="permission denied"):
            committed(app, TENANT_A, TO_THE_END)
    finally:
        app.close()


def test_one_granted_while_the_trigger_was_off_is_found_then_revoked_by_the_next_run(
        postgres: PostgresServer, role_passwords: dict[str, str], new_db: str,
        new_db_owner: Conn) -> None:
    admin = postgres.connect(new_db, tls=True)
    try:
        with trigger_off(admin):
            new_db_owner.run(GRANT_ALL)
        assert bootstrap.check(admin).findings == (f"would restore: {REVOKED}",)
        assert bootstrap.apply(admin).repaired == (REVOKED,)
        assert new_db_owner.run("SELECT * FROM app.audit_tenant_privileges()") == []
        app = connect_as(postgres, role_passwords, new_db, "app_user")
        try:
            with pytest.raises(pg8000.native.DatabaseError, match="permission denied"):
                committed(app, TENANT_A, TO_THE_END)
            assert committed(app, TENANT_B, INSERT)  # USAGE stays
        finally:
            app.close()
    finally:
        admin.close()


@contextmanager
def granting_update_on_new_sequences(owner: Conn) -> Iterator[None]:
    """Default privileges in app that give app_user UPDATE on every new sequence."""
    owner.run("ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT ALL ON SEQUENCES TO app_user")
    try:
        yield
    finally:
        owner.run("ALTER DEFAULT PRIVILEGES IN SCHEMA app "
                  "REVOKE UPDATE ON SEQUENCES FROM app_user")


@pytest.mark.parametrize("ddl", [
    "CREATE TABLE app.invoices (id bigint GENERATED ALWAYS AS IDENTITY, "
    "tenant_id uuid NOT NULL, PRIMARY KEY (tenant_id, id))",
    "CREATE TABLE app.currencies (id serial PRIMARY KEY, code text)",  # no tenant_id either
    "ALTER TABLE app.bookings ADD COLUMN line bigint GENERATED ALWAYS AS IDENTITY"])
def test_a_table_whose_sequence_default_privileges_let_app_user_move_is_refused(
        new_db_owner: Conn, ddl: str) -> None:
    refused = r"app\.[a-z_]+_seq: app_user holds UPDATE, which lets it"
    with granting_update_on_new_sequences(new_db_owner), \
            pytest.raises(pg8000.native.DatabaseError, match=refused):
        new_db_owner.run(ddl)
    new_db_owner.run(ddl)  # without such default privileges it goes through


def test_a_create_sequence_under_such_default_privileges_is_revoked_by_the_run(
        postgres: PostgresServer, new_db: str, new_db_owner: Conn) -> None:
    # The event trigger does not watch CREATE SEQUENCE: the check and the run catch it
    with granting_update_on_new_sequences(new_db_owner):
        new_db_owner.run("CREATE SEQUENCE app.invoice_numbers")
    revoked = "UPDATE on app.invoice_numbers revoked from app_user and PUBLIC"
    admin = postgres.connect(new_db, tls=True)
    try:
        assert bootstrap.check(admin).findings == (f"would restore: {revoked}",)
        assert bootstrap.apply(admin).repaired == (revoked,)
    finally:
        admin.close()


def test_update_through_a_role_app_user_may_become_makes_the_run_refuse_naming_it(
        postgres: PostgresServer, new_db: str, new_db_owner: Conn) -> None:
    # Roles are cluster-wide: this one is dropped again whatever happens.
    admin = postgres.connect(new_db, tls=True)
    admin.run("CREATE ROLE boom_sequence_role NOLOGIN")
    try:
        new_db_owner.run("GRANT USAGE ON SCHEMA app TO boom_sequence_role")
        new_db_owner.run(f"GRANT UPDATE ON SEQUENCE {SEQUENCE} TO boom_sequence_role")
        admin.run("GRANT boom_sequence_role TO app_user")  # no event trigger sees it
        problem = (f"{SEQUENCE}: app_user holds UPDATE through boom_sequence_role (role "
                   "membership), which lets it setval()")
        assert any(finding.startswith(f"would refuse: {problem}")
                   for finding in bootstrap.check(admin).findings)
        with pytest.raises(bootstrap.BootstrapError, match=re.escape(problem)):
            bootstrap.apply(admin)
    finally:
        admin.run("REVOKE boom_sequence_role FROM app_user")
        new_db_owner.run(f"REVOKE ALL ON SEQUENCE {SEQUENCE} FROM boom_sequence_role")
        new_db_owner.run("REVOKE ALL ON SCHEMA app FROM boom_sequence_role")
        admin.run("DROP ROLE boom_sequence_role")
        admin.close()


def test_an_upgrade_from_version_16_revokes_a_grant_made_before(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    database = bootstrapped_database(postgres, role_passwords, target_version=BEFORE_0017)
    owner = connect_as(postgres, role_passwords, database, "boom_owner")
    admin = postgres.connect(database, tls=True)
    try:
        owner.run(GRANT_ALL)
        result = bootstrap.apply(admin)
        assert result.applied == tuple(range(BEFORE_0017 + 1, bootstrap.LATEST_VERSION + 1))
        assert REVOKED in result.repaired
        assert owner.run(f"SELECT has_sequence_privilege('app_user', '{SEQUENCE}', 'UPDATE'), "
                         f"has_sequence_privilege('app_user', '{SEQUENCE}', 'USAGE')") == \
            [[False, True]]
    finally:
        owner.close()
        admin.close()
