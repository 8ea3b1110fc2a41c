"""app_user gets only what row level security covers on tenant tables (migration 0008), on
real PostgreSQL 15.

TRUNCATE ignores row level security: it empties the whole table. A migration's
`GRANT ALL ON ... TO app_user` (or on ALL TABLES IN SCHEMA app, or through default privileges)
handed it over, and any request running as app_user (SQL injection, say) could empty every
tenant's bookings: the negative control at version 7 shows it. So could a role app_user
belongs to: NOINHERIT does not stop SET ROLE.
"""

from __future__ import annotations

import re
import uuid

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap
from tests.fixture_bootstrap import trigger_off
from tests.fixture_postgres import PostgresServer, bootstrapped_database
from tests.fixture_tenants import (
    ROWS_PER_TENANT,
    TENANT_A,
    TENANT_B,
    Conn,
    committed,
    connect_as,
    in_tenant,
    rolled_back,
    seed_two_tenants,
)

BEFORE_0008 = 7
UNCOVERED = "row level security does not cover"


def bookings_of(owner: Conn, tenant: uuid.UUID) -> int:
    return int(in_tenant(owner, tenant, "SELECT count(*) FROM app.bookings")[0][0])


def test_negative_control_before_0008_a_grant_all_lets_one_tenant_empty_every_tenant(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    database = bootstrapped_database(postgres, role_passwords, target_version=BEFORE_0008)
    seed_two_tenants(postgres, role_passwords, database)
    owner = connect_as(postgres, role_passwords, database, "boom_owner")
    owner.run("GRANT ALL ON ALL TABLES IN SCHEMA app TO app_user")  # a common migration idiom
    assert owner.run("SELECT count(*) FROM app.audit_tenant_tables()") == [[0]]  # unseen
    app = connect_as(postgres, role_passwords, database, "app_user")
    committed(app, TENANT_A, "TRUNCATE app.bookings")  # tenant A's request...
    app.close()
    assert bookings_of(owner, TENANT_B) == 0  # ...emptied tenant B's bookings too
    owner.close()


@pytest.mark.parametrize("grant", [
    "GRANT ALL ON app.bookings TO app_user",
    "GRANT ALL ON ALL TABLES IN SCHEMA app TO app_user",
    "GRANT TRUNCATE ON app.bookings TO PUBLIC",
    "GRANT TRIGGER ON app.bookings TO app_user",
    "GRANT REFERENCES (id) ON app.bookings TO app_user",
])
def test_a_grant_of_what_rls_does_not_cover_is_refused_at_once(
        postgres: PostgresServer, role_passwords: dict[str, str], new_db: str, new_db_owner: Conn,
        grant: str) -> None:
    with pytest.raises(pg8000.native.DatabaseError, match=f"app.bookings: app_user holds "
                                                          f"[A-Z]+, which {UNCOVERED}"):
        new_db_owner.run(grant)
    app = connect_as(postgres, role_passwords, new_db, "app_user")
    with pytest.raises(pg8000.native.DatabaseError, match="permission denied"):
        committed(app, TENANT_A, "TRUNCATE app.bookings")
    app.close()
    assert bookings_of(new_db_owner, TENANT_B) == ROWS_PER_TENANT
    # What RLS covers may still be granted, and grants elsewhere are untouched
    new_db_owner.run("GRANT SELECT, INSERT, UPDATE, DELETE ON app.bookings TO app_user")
    new_db_owner.run("CREATE TABLE app.resources (name text PRIMARY KEY)")  # no tenant_id
    new_db_owner.run("GRANT ALL ON app.resources TO app_user")


def test_a_tenant_table_created_with_such_default_privileges_is_refused(new_db_owner: Conn) -> None:
    new_db_owner.run("ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT ALL ON TABLES TO app_user")
    try:
        with pytest.raises(pg8000.native.DatabaseError,
                           match=f"app.invoices: app_user holds [A-Z]+, which {UNCOVERED}"):
            new_db_owner.run("CREATE TABLE app.invoices (id bigint, tenant_id uuid)")
        new_db_owner.run("CREATE TABLE app.currencies (code text)")  # not a tenant table: allowed
    finally:
        new_db_owner.run("ALTER DEFAULT PRIVILEGES IN SCHEMA app "
                         "REVOKE ALL ON TABLES FROM app_user")
        new_db_owner.run("ALTER DEFAULT PRIVILEGES IN SCHEMA app "
                         "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO app_user")


def test_one_granted_while_the_trigger_was_off_is_found_then_revoked_by_the_next_run(
        postgres: PostgresServer, role_passwords: dict[str, str], new_db: str,
        new_db_owner: Conn) -> None:
    admin = postgres.connect(new_db, tls=True)
    with trigger_off(admin):
        new_db_owner.run("GRANT ALL ON ALL TABLES IN SCHEMA app TO app_user")
    # Until it is revoked, any GRANT is refused, naming it
    with pytest.raises(pg8000.native.DatabaseError,
                       match=f"app.bookings: app_user holds REFERENCES, which {UNCOVERED}"):
        new_db_owner.run("GRANT SELECT ON app.bookings TO app_user")
    restored = "REFERENCES, TRIGGER, TRUNCATE on app.bookings revoked from app_user and PUBLIC"
    assert bootstrap.check(admin).findings == (f"would restore: {restored}",)
    assert bootstrap.apply(admin).repaired == (restored,)
    assert new_db_owner.run("SELECT * FROM app.audit_tenant_privileges()") == []
    app = connect_as(postgres, role_passwords, new_db, "app_user")
    with pytest.raises(pg8000.native.DatabaseError, match="permission denied"):
        committed(app, TENANT_A, "TRUNCATE app.bookings")
    # What RLS covers stays granted
    assert committed(app, TENANT_A, "SELECT count(*) FROM app.bookings") == [[ROWS_PER_TENANT]]
    app.close()
    admin.close()


@pytest.mark.parametrize(("role", "problem"), [
    ("NOLOGIN", "app_user holds TRUNCATE through boom_test_role (role membership), which "
                f"{UNCOVERED}"),
    ("NOLOGIN BYPASSRLS", "app_user can act as boom_test_role (role membership), which "
                          "bypasses row level security (SUPERUSER or BYPASSRLS)"),
])
def test_a_role_app_user_may_become_is_audited_and_makes_the_run_refuse_naming_it(
        postgres: PostgresServer, role_passwords: dict[str, str], new_db: str, new_db_owner: Conn,
        role: str, problem: str) -> None:
    # app_user is NOINHERIT, but may SET ROLE to any role it is a member of. Roles are
    # cluster-wide: this one is dropped again whatever happens.
    admin = postgres.connect(new_db, tls=True)
    admin.run(f"CREATE ROLE boom_test_role {role}")
    try:
        new_db_owner.run("GRANT USAGE ON SCHEMA app TO boom_test_role")
        new_db_owner.run("GRANT TRUNCATE ON app.bookings TO boom_test_role")  # not app_user's, yet
        admin.run("GRANT boom_test_role TO app_user")  # cluster-wide: no event trigger sees it
        app = connect_as(postgres, role_passwords, new_db, "app_user")
        with rolled_back(app):  # what the audit guards against
            app.run("SET LOCAL ROLE boom_test_role")
            app.run("TRUNCATE app.bookings")
        app.close()
        assert f"would refuse: app.bookings: {problem}" in bootstrap.check(admin).findings
        before = new_db_owner.run("SELECT count(*) FROM app.audit_tenant_privileges()")
        with pytest.raises(bootstrap.BootstrapError, match=re.escape(
                f"gaps the bootstrap will not override: app.bookings: {problem}")):
            bootstrap.apply(admin)
        assert new_db_owner.run("SELECT count(*) FROM app.audit_tenant_privileges()") == before
    finally:
        admin.run("REVOKE boom_test_role FROM app_user")
        new_db_owner.run("REVOKE ALL ON app.bookings FROM boom_test_role")
        new_db_owner.run("REVOKE ALL ON SCHEMA app FROM boom_test_role")
        admin.run("DROP ROLE boom_test_role")
        admin.close()


def test_an_upgrade_from_version_7_revokes_a_grant_made_before(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    database = bootstrapped_database(postgres, role_passwords, target_version=BEFORE_0008)
    owner = connect_as(postgres, role_passwords, database, "boom_owner")
    owner.run("GRANT ALL ON app.bookings TO app_user")
    admin = postgres.connect(database, tls=True)
    result = bootstrap.apply(admin)
    assert result.applied == tuple(range(BEFORE_0008 + 1, bootstrap.LATEST_VERSION + 1))
    assert "REFERENCES, TRIGGER, TRUNCATE on app.bookings revoked from app_user and PUBLIC" \
        in result.repaired
    assert owner.run("SELECT has_table_privilege('app_user', 'app.bookings', 'TRUNCATE')") == \
        [[False]]
    owner.close()
    admin.close()
