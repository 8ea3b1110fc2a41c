"""app_user owns nothing and can create nothing (migration 0013), on real PostgreSQL 15: a
table of its own has no row level security, so it would carry one tenant's rows to the next.
The negative control shows it did at version 12, after a migration's GRANT ALL ON SCHEMA.
Roles are cluster-wide: a test that makes one drops it.
"""

from __future__ import annotations

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap
from lambdas.tenant_bootstrap.errors import BootstrapError
from tests.fixture_postgres import PostgresServer
from tests.fixture_tenants import (
    ROWS_PER_TENANT,
    TENANT_A,
    TENANT_B,
    Conn,
    committed,
)

EARLIER_VERSION = 12  # before 0013
STASH = "CREATE TABLE app.stash AS SELECT resource FROM bookings"  # no tenant_id: no policy


def may_create_in_app(admin: Conn) -> bool:
    return bool(admin.run("SELECT has_schema_privilege('app_user', 'app', 'CREATE')")[0][0])


@pytest.mark.parametrize("new_db", [EARLIER_VERSION], indirect=True)
def test_control_at_version_12_a_table_of_app_users_carries_a_tenants_rows_to_the_next(
        new_db_owner: Conn, new_db_app_user: Conn, new_db_admin: Conn) -> None:
    # Given a migration's GRANT ALL ON SCHEMA app TO app_user
    new_db_owner.run("GRANT ALL ON SCHEMA app TO app_user")
    # When tenant A's transaction copies its bookings into a table of app_user's own
    committed(new_db_app_user, TENANT_A, STASH)
    # Then tenant B's transaction reads them, and a run at that version sees nothing wrong
    assert committed(new_db_app_user, TENANT_B,
                     "SELECT count(*) FROM app.stash") == [[ROWS_PER_TENANT]]
    assert bootstrap.apply(new_db_admin, target_version=EARLIER_VERSION).repaired == ()


def test_app_user_may_create_nothing_after_a_bootstrap(new_db_admin: Conn,
                                                       new_db_app_user: Conn) -> None:
    assert new_db_admin.run("SELECT * FROM app.audit_app_user_creations()") == []
    for statement in (STASH, "CREATE TABLE public.stash (resource text)", "CREATE SCHEMA mine"):
        with pytest.raises(pg8000.native.DatabaseError, match="permission denied"):
            committed(new_db_app_user, TENANT_A, statement)


@pytest.mark.parametrize("grant", [
    "GRANT ALL ON SCHEMA app TO app_user",
    "GRANT CREATE ON SCHEMA public TO PUBLIC",
])
def test_a_run_revokes_create_on_a_schema(
        new_db_owner: Conn, new_db_admin: Conn, new_db_app_user: Conn, grant: str) -> None:
    schema = grant.split(" ON SCHEMA ")[1].split()[0]
    (new_db_admin if schema == "public" else new_db_owner).run(grant)
    expected = f"CREATE on schema {schema} revoked from PUBLIC and app_user"
    assert f"would restore: {expected}" in bootstrap.check(new_db_admin).findings
    assert expected in bootstrap.apply(new_db_admin).repaired
    with pytest.raises(pg8000.native.DatabaseError, match=f"permission denied for schema {schema}"):
        committed(new_db_app_user, TENANT_A, f"CREATE TABLE {schema}.stash (resource text)")
    assert new_db_admin.run("SELECT * FROM app.audit_app_user_creations()") == []


def test_a_run_revokes_create_on_the_database(new_db_admin: Conn, new_db_app_user: Conn,
                                              new_db: str) -> None:
    new_db_admin.run(f"GRANT CREATE ON DATABASE {new_db} TO app_user")
    assert (f"CREATE on database {new_db} revoked from PUBLIC and app_user"
            in bootstrap.apply(new_db_admin).repaired)
    with pytest.raises(pg8000.native.DatabaseError, match="permission denied for database"):
        new_db_app_user.run("CREATE SCHEMA mine")


def test_a_table_app_user_already_made_makes_the_run_refuse_and_change_nothing(
        new_db_owner: Conn, new_db_admin: Conn, new_db_app_user: Conn) -> None:
    # Given app_user could create, and did, before any run noticed
    new_db_owner.run("GRANT ALL ON SCHEMA app TO app_user")
    committed(new_db_app_user, TENANT_A, STASH)
    # Then the run refuses, naming the table, and leaves even the grant it would revoke
    with pytest.raises(BootstrapError, match="table app.stash: app_user owns it"):
        bootstrap.apply(new_db_admin)
    assert may_create_in_app(new_db_admin)
    # until someone has looked at the table and dropped it
    new_db_admin.run("DROP TABLE app.stash")
    assert "CREATE on schema app revoked from PUBLIC and app_user" in bootstrap.apply(
        new_db_admin).repaired
    assert not may_create_in_app(new_db_admin)


def test_a_large_object_of_app_users_is_readable_by_every_tenant_and_makes_the_run_refuse(
        new_db_admin: Conn, new_db_app_user: Conn) -> None:
    # Any role may create a large object; every session of its owner may read it, whatever
    # the tenant: shown, then reported.
    [[number]] = committed(new_db_app_user, TENANT_A,
                           "SELECT lo_from_bytea(0, convert_to('tenant A only', 'UTF8'))")
    assert committed(new_db_app_user, TENANT_B, "SELECT convert_from(lo_get(:n), 'UTF8')",
                     n=number) == [["tenant A only"]]
    with pytest.raises(BootstrapError, match=f"large object {number}: app_user owns it"):
        bootstrap.apply(new_db_admin)
    new_db_admin.run("SELECT lo_unlink(:n)", n=number)
    assert bootstrap.apply(new_db_admin).repaired == ()


def test_create_through_a_role_app_user_may_become_makes_the_run_refuse(
        postgres: PostgresServer, new_db_admin: Conn, new_db: str) -> None:
    role = f"creator_{new_db}"
    new_db_admin.run(f"CREATE ROLE {role}")
    try:
        new_db_admin.run(f"GRANT CREATE ON SCHEMA app TO {role}")
        new_db_admin.run(f"GRANT {role} TO app_user")
        with pytest.raises(BootstrapError) as refused:
            bootstrap.apply(new_db_admin)
        assert (f"schema app: app_user may create objects in it through {role} (role "
                f"membership)") in str(refused.value)
        assert f"REVOKE {role} FROM app_user" in str(refused.value)
    finally:
        new_db_admin.run(f"REVOKE CREATE ON SCHEMA app FROM {role}")
        new_db_admin.run(f"DROP ROLE {role}")
