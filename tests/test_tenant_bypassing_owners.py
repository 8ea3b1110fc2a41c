"""No view or function app_user reads through runs as a role that bypasses row level security
(migration 0023), nor is LEAKPROOF, on real PostgreSQL 15.

A view reads its tables as its owner, a SECURITY DEFINER function runs as its owner. The tests'
superuser stands in for an operator's role that bypasses row level security (RDS's master, if
it has BYPASSRLS): the negative controls at version 22 show its view, granted to app_user, its
function, executable by PUBLIC as every new function is, and a LEAKPROOF function (which only a
superuser can mark) each handing tenant B tenant A's bookings, with no audit reporting anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap, enforce
from tests.fixture_bootstrap import trigger_off
from tests.fixture_postgres import PostgresServer, role_of_its_own
from tests.fixture_secrets import refused_by_check_and_run, state
from tests.fixture_tenants import (
    BYPASSING_VIEW_HINT,
    COPY_COUNT,
    COPY_COUNT_INSERT,
    COPY_COUNT_TRIGGER,
    TENANT_A,
    TENANT_B,
    Conn,
    bypassing_view,
    committed,
    every_tenants_count,
    in_tenant,
    runs_for_everyone,
    user_of,
)

BEFORE_0023 = 22
VIEW = "CREATE VIEW app.support_bookings AS SELECT * FROM app.bookings"
GRANT = "GRANT SELECT ON app.support_bookings TO app_user"
TENANTS_SEEN = "SELECT count(DISTINCT tenant_id) FROM {view}"


@pytest.mark.parametrize("new_db", [BEFORE_0023], indirect=True)
def test_negative_control_before_0023_a_superusers_view_shows_every_tenant(
        new_db_admin: Conn, new_db_app_user: Conn) -> None:
    new_db_admin.run(VIEW)
    new_db_admin.run(GRANT)
    view = "app.support_bookings"
    assert in_tenant(new_db_app_user, TENANT_B, TENANTS_SEEN.format(view=view)) == [[2]]
    assert in_tenant(new_db_app_user, TENANT_B, f"SELECT DISTINCT tenant_id FROM {view} "
                     "WHERE tenant_id = :a", a=TENANT_A) == [[TENANT_A]]
    assert enforce.gaps(new_db_admin) == []  # no audit of version 22 reports it


@pytest.mark.parametrize(("before", "refused"), [
    ((VIEW,), GRANT),  # a grant to app_user
    ((VIEW,), "GRANT SELECT (resource) ON app.support_bookings TO app_user"),  # of one column
    # default privileges of the operator's role make its new views readable at once
    (("ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO app_user",), VIEW),
    # an invoker's view, granted, then made to run as its owner
    (("CREATE VIEW app.support_bookings WITH (security_invoker = on) AS "
      "SELECT * FROM app.bookings", GRANT),
     "ALTER VIEW app.support_bookings RESET (security_invoker)"),
], ids=["grant", "column-grant", "default-privileges", "invoker-reset"])
def test_a_view_that_would_show_app_user_every_tenant_is_refused_and_changes_nothing(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_app_user: Conn,
        before: tuple[str, ...], refused: str) -> None:
    for statement in before:
        new_db_admin.run(statement)
    unchanged = state(postgres, new_db)
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        new_db_admin.run(refused)
    assert failure.value.args[0]["M"] == bypassing_view("app.support_bookings",
                                                        user_of(new_db_admin))
    assert failure.value.args[0]["H"] == BYPASSING_VIEW_HINT
    assert state(postgres, new_db) == unchanged


def test_an_applications_view_given_to_such_an_owner_is_refused(
        new_db_owner: Conn, new_db_admin: Conn, new_db_app_user: Conn) -> None:
    # boom_owner's view, which default privileges let app_user read: bound (FORCE)...
    new_db_owner.run("CREATE VIEW app.recent AS SELECT * FROM app.bookings")
    assert in_tenant(new_db_app_user, TENANT_B, TENANTS_SEEN.format(view="app.recent")) == [[1]]
    # ...until it would run as the superuser
    for change in ("ALTER VIEW app.recent OWNER TO {owner}",
                   "ALTER TABLE app.recent OWNER TO {owner}"):
        with pytest.raises(pg8000.native.DatabaseError) as failure:
            new_db_admin.run(change.format(owner=user_of(new_db_admin)))
        assert failure.value.args[0]["M"] == bypassing_view("app.recent", user_of(new_db_admin))
    assert in_tenant(new_db_app_user, TENANT_B, TENANTS_SEEN.format(view="app.recent")) == [[1]]


def test_an_invoker_view_of_such_an_owner_reads_as_app_user(
        new_db_admin: Conn, new_db_app_user: Conn) -> None:
    new_db_admin.run("CREATE VIEW app.support_bookings WITH (security_invoker = on) AS "
                     "SELECT * FROM app.bookings")
    new_db_admin.run(GRANT)
    assert in_tenant(new_db_app_user, TENANT_B, TENANTS_SEEN.format(
        view="app.support_bookings")) == [[1]]
    assert new_db_admin.run("SELECT * FROM app.audit_tenant_views()") == []


def test_one_made_while_the_trigger_was_off_is_found_and_every_run_refuses(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn,
        role_app_user_may_become: str) -> None:
    # Readable by a role app_user may switch to, not by app_user itself.
    with trigger_off(new_db_admin):
        new_db_admin.run(VIEW)
        new_db_admin.run(f"GRANT USAGE ON SCHEMA app TO {role_app_user_may_become}")
        new_db_admin.run(f"GRANT SELECT ON app.support_bookings TO {role_app_user_may_become}")
    found = bypassing_view("app.support_bookings", user_of(new_db_admin))
    refused_by_check_and_run(postgres, new_db, new_db_admin, found)
    # Mended as the finding says, the check is clean and a run goes through.
    new_db_admin.run("ALTER VIEW app.support_bookings SET (security_invoker = on)")
    assert bootstrap.check(new_db_admin).findings == ()
    assert bootstrap.apply(new_db_admin).repaired == ()


@pytest.fixture
def view_owner(postgres: PostgresServer, new_db: str, new_db_admin: Conn) -> Iterator[str]:
    """A role row level security binds, that may read app.bookings and owns nothing yet."""
    with role_of_its_own(postgres, new_db, "boom_reports", "NOBYPASSRLS") as (role, _):
        new_db_admin.run(f"GRANT USAGE ON SCHEMA app TO {role}")
        new_db_admin.run(f"GRANT SELECT ON app.bookings TO {role}")
        yield role


def test_a_view_whose_owner_is_given_bypassrls_later_is_found(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_app_user: Conn,
        view_owner: str) -> None:
    new_db_admin.run(VIEW)
    new_db_admin.run(f"ALTER VIEW app.support_bookings OWNER TO {view_owner}")
    new_db_admin.run(GRANT)  # allowed: row level security binds its owner
    view = TENANTS_SEEN.format(view="app.support_bookings")
    assert in_tenant(new_db_app_user, TENANT_B, view) == [[1]]
    # A role attribute, which no event trigger sees
    new_db_admin.run(f"ALTER ROLE {view_owner} BYPASSRLS")
    assert in_tenant(new_db_app_user, TENANT_B, view) == [[2]]
    refused_by_check_and_run(postgres, new_db, new_db_admin,
                             bypassing_view("app.support_bookings", view_owner))

COUNT_ALL = ("CREATE FUNCTION {schema}.count_all() RETURNS bigint LANGUAGE sql SECURITY DEFINER "
             "AS 'SELECT count(*) FROM app.bookings'")


@pytest.mark.parametrize("new_db", [BEFORE_0023], indirect=True)
def test_negative_control_before_0023_a_superusers_definer_function_counts_every_tenant(
        new_db_admin: Conn, new_db_app_user: Conn) -> None:
    new_db_admin.run(COUNT_ALL.format(schema="app"))  # executable by PUBLIC, as made
    own = in_tenant(new_db_app_user, TENANT_B, "SELECT count(*) FROM app.bookings")[0][0]
    counted = in_tenant(new_db_app_user, TENANT_B, "SELECT app.count_all()")[0][0]
    assert counted == every_tenants_count(new_db_admin) > own
    assert enforce.gaps(new_db_admin) == []


@pytest.mark.parametrize(("mend", "owns_count"), [
    ("ALTER FUNCTION app.count_all() SECURITY INVOKER", True),
    ("REVOKE EXECUTE ON FUNCTION app.count_all() FROM PUBLIC, app_user", False),
], ids=["invoker", "revoked"])
def test_a_definer_function_app_user_may_run_as_such_a_role_is_found_and_every_run_refuses(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_app_user: Conn,
        mend: str, owns_count: bool) -> None:
    with trigger_off(new_db_admin):  # since 0025 it would lose PUBLIC's EXECUTE as made
        new_db_admin.run(COUNT_ALL.format(schema="app"))
    found = runs_for_everyone("app.count_all()", user_of(new_db_admin))
    refused_by_check_and_run(postgres, new_db, new_db_admin, found)
    # Mended as the finding says: the check is clean, a run goes through
    new_db_admin.run(mend)
    assert bootstrap.check(new_db_admin).findings == ()
    assert bootstrap.apply(new_db_admin).repaired == ()
    if owns_count:  # and, run as app_user, the function counts tenant B's bookings only
        assert in_tenant(new_db_app_user, TENANT_B, "SELECT app.count_all()") == in_tenant(
            new_db_app_user, TENANT_B, "SELECT count(*) FROM app.bookings")


def test_only_a_definer_function_app_user_can_reach_is_reported(
        new_db_admin: Conn, new_db_owner: Conn, role_app_user_may_become: str) -> None:
    audit = "SELECT table_name FROM app.audit_tenant_functions()"
    # What the audit sees, with the trigger off (since 0025 it refuses or mends the first and
    # the last as they are made: test_tenant_definer_functions.py).
    with trigger_off(new_db_admin):
        # EXECUTE kept from PUBLIC reaches no one (USAGE on its schema would be no bar: see
        # test_tenant_rewrite_rules.py)
        new_db_admin.run(COUNT_ALL.format(schema="app"))
        new_db_admin.run("REVOKE EXECUTE ON FUNCTION app.count_all() FROM PUBLIC")
        # boom_owner's own is bound (FORCE), as test_tenant_isolation.py shows
        new_db_owner.run(COUNT_ALL.format(schema="app").replace("count_all", "count_mine"))
        assert new_db_admin.run(audit) == []
        # An extension's is the extension's (made here one of plpgsql's, which every database
        # has)
        new_db_admin.run(COUNT_ALL.format(schema="app").replace("count_all", "count_vendor"))
        new_db_admin.run("ALTER EXTENSION plpgsql ADD FUNCTION app.count_vendor()")
        assert new_db_admin.run(audit) == []
        # A role app_user may SET ROLE to, given EXECUTE, reaches it
        new_db_admin.run(
            f"GRANT EXECUTE ON FUNCTION app.count_all() TO {role_app_user_may_become}")
        assert new_db_admin.run(audit) == [["function app.count_all()"]]


# Only a superuser may mark a function LEAKPROOF; made cheap, the planner runs it first.
PEEK = ("CREATE FUNCTION app.peek(text) RETURNS boolean LANGUAGE plpgsql LEAKPROOF "
        "COST 0.000001 AS $$ BEGIN RAISE NOTICE 'saw %', $1; RETURN true; END $$")
SECRET = ("INSERT INTO app.bookings (resource, starts_at, ends_at) "
          "VALUES ('secret-of-a', now(), now() + interval '1 hour')")


def what_peek_saw(app_user: Conn, tenant: uuid.UUID) -> list[str]:
    """The values app.peek() was run on while `tenant`'s query, a sequential scan (settings
    any session may make), asked for its bookings."""
    query = "SELECT resource FROM app.bookings WHERE app.peek(resource)"
    plan = in_tenant(app_user, tenant, f"EXPLAIN {query}")
    assert plan[0][0].startswith("Seq Scan on bookings"), plan  # every row, filtered
    app_user.notices.clear()
    in_tenant(app_user, tenant, query)
    return sorted(notice[b"M"].decode() for notice in app_user.notices
                  if notice[b"M"].startswith(b"saw "))


@pytest.fixture
def sequential_scans(new_db_app_user: Conn) -> None:
    new_db_app_user.run("SET enable_indexscan = off")
    new_db_app_user.run("SET enable_bitmapscan = off")


@pytest.mark.usefixtures("sequential_scans")
@pytest.mark.parametrize("new_db", [BEFORE_0023], indirect=True)
def test_negative_control_before_0023_a_leakproof_function_shows_other_tenants_rows(
        new_db_admin: Conn, new_db_owner: Conn, new_db_app_user: Conn) -> None:
    committed(new_db_owner, TENANT_A, SECRET)
    new_db_admin.run(PEEK)
    assert "saw secret-of-a" in what_peek_saw(new_db_app_user, TENANT_B)
    assert enforce.gaps(new_db_admin) == []


@pytest.mark.usefixtures("sequential_scans")
def test_a_leakproof_function_app_user_may_call_is_found_until_it_is_not_leakproof(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_owner: Conn,
        new_db_app_user: Conn) -> None:
    committed(new_db_owner, TENANT_A, SECRET)
    with trigger_off(new_db_admin):  # since 0025 it would lose PUBLIC's EXECUTE as made
        new_db_admin.run(PEEK)
    refused_by_check_and_run(postgres, new_db, new_db_admin, (
        "function app.peek(text): it is LEAKPROOF and app_user may call it, so PostgreSQL may "
        "run it on every tenant's rows before the tenant policy filters them: what it shows of "
        "its arguments (an error, a notice) shows other tenants' rows. ALTER FUNCTION "
        "app.peek(text) NOT LEAKPROOF"))
    new_db_admin.run("ALTER FUNCTION app.peek(text) NOT LEAKPROOF")
    assert bootstrap.check(new_db_admin).findings == ()
    # Not leakproof, it runs after the policy: on tenant B's rows only
    own = in_tenant(new_db_app_user, TENANT_B, "SELECT resource FROM app.bookings")
    assert what_peek_saw(new_db_app_user, TENANT_B) == sorted(f"saw {r}" for [r] in own)


@pytest.mark.parametrize("new_db", [BEFORE_0023], indirect=True)
def test_negative_control_before_0023_a_superusers_trigger_counts_every_tenant_for_b(
        new_db_admin: Conn, new_db_app_user: Conn) -> None:
    new_db_admin.run(COPY_COUNT)
    new_db_admin.run("REVOKE ALL ON FUNCTION app.copy_count() FROM PUBLIC")  # no one may call it
    new_db_admin.run(COPY_COUNT_TRIGGER)
    before = every_tenants_count(new_db_admin)
    [[written]] = committed(new_db_app_user, TENANT_B, COPY_COUNT_INSERT)
    assert int(written) == before > every_tenants_count(new_db_admin) // 2  # all tenants'
    assert enforce.gaps(new_db_admin) == []


def test_a_definer_trigger_function_of_such_a_role_is_found_though_no_one_may_call_it(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn) -> None:
    new_db_admin.run(COPY_COUNT)
    new_db_admin.run("REVOKE ALL ON FUNCTION app.copy_count() FROM PUBLIC")
    assert new_db_admin.run("SELECT * FROM app.audit_tenant_functions()") == []  # not yet used
    with trigger_off(new_db_admin):  # since 0025 refused when made
        new_db_admin.run(COPY_COUNT_TRIGGER)
    refused_by_check_and_run(postgres, new_db, new_db_admin,
                             runs_for_everyone("app.copy_count()", user_of(new_db_admin)))
    new_db_admin.run("ALTER FUNCTION app.copy_count() SECURITY INVOKER")
    assert bootstrap.check(new_db_admin).findings == ()
