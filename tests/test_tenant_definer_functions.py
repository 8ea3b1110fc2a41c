"""A function app_user may run does not run as a role that bypasses row level security, nor is
it LEAKPROOF, from the moment it is made (migration 0025), on real PostgreSQL 15.

Until 0025 the event trigger did not watch CREATE FUNCTION: PostgreSQL makes a new function
executable by PUBLIC, and the check (every 15 minutes) or the next run reported such a
function only afterwards; and no audit saw an aggregate over one (PostgreSQL checks an
aggregate's parts against its owner, not its caller). The negative controls at version 24
show tenant B reading every tenant's count through each at once. The tests' superuser stands
in for an operator's role that bypasses row level security.
"""

from __future__ import annotations

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
    FUNCTION_HINT,
    RULE_HINT,
    STORED_HINT,
    TENANT_B,
    Conn,
    bypassing_view,
    committed,
    every_tenants_count,
    in_tenant,
    runs_for_everyone,
    schema_version,
    user_of,
)

BEFORE_0025 = 24
COUNT_ALL = ("CREATE FUNCTION app.count_all() RETURNS bigint LANGUAGE sql SECURITY DEFINER "
             "AS 'SELECT count(*) FROM app.bookings'")
CALL = "SELECT app.count_all()"
# The operator's view, given to boom_owner only, and boom_owner's SECURITY DEFINER function
# reading it (0024): app_user's call reads it as boom_owner.
VIEW = ("CREATE VIEW app.support_bookings AS SELECT * FROM app.bookings",
        "GRANT SELECT ON app.support_bookings TO boom_owner")
TENANTS_SEEN = ("CREATE FUNCTION app.tenants_seen() RETURNS bigint LANGUAGE sql SECURITY DEFINER "
                "AS 'SELECT count(DISTINCT tenant_id) FROM app.support_bookings'")
PEEK = ("CREATE FUNCTION app.peek(text) RETURNS boolean LANGUAGE plpgsql LEAKPROOF "
        "AS $$ BEGIN RAISE NOTICE 'saw %', $1; RETURN true; END $$")


def at_version_24(admin: Conn) -> bool:
    return schema_version(admin) == BEFORE_0025


def public_may_execute(admin: Conn, function: str) -> bool:
    return bool(admin.run("SELECT has_function_privilege('public', CAST(:f AS regprocedure), "
                          "'EXECUTE')", f=function)[0][0])


def refused(admin: Conn, statement: str) -> dict[str, str]:
    """The error `statement` raised, as the server sent it."""
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        admin.run(statement)
    return dict(failure.value.args[0])


def messages(conn: Conn) -> list[str]:
    """What the server has said to `conn` (notices, warnings), in order."""
    return [notice[b"M"].decode() for notice in conn.notices]


def notices(conn: Conn, statement: str) -> list[str]:
    conn.notices.clear()
    conn.run(statement)
    return messages(conn)


def revoked(function: str, otherwise: str) -> str:
    return (f"revoked EXECUTE on {function} from PUBLIC, which PostgreSQL gives a new function: "
            f"otherwise {otherwise}")


@pytest.mark.parametrize("new_db", [BEFORE_0025, None], indirect=True, ids=["24", "latest"])
def test_an_operators_new_definer_function_counts_every_tenant_only_before_0025(
        new_db_admin: Conn, new_db_app_user: Conn) -> None:
    said = notices(new_db_admin, COUNT_ALL)  # as the operator's migration would make it
    if at_version_24(new_db_admin):  # negative control: tenant B counts everyone's at once
        assert said == []
        everyone = every_tenants_count(new_db_admin)
        assert in_tenant(new_db_app_user, TENANT_B, CALL) == [[everyone]]
        return
    owner = user_of(new_db_admin)
    assert said == [revoked("app.count_all()", runs_for_everyone("app.count_all()", owner))]
    assert not public_may_execute(new_db_admin, "app.count_all()")
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        in_tenant(new_db_app_user, TENANT_B, CALL)
    assert failure.value.args[0]["M"] == "permission denied for function count_all"
    assert bootstrap.check(new_db_admin).findings == ()


@pytest.mark.parametrize("new_db", [BEFORE_0025, None], indirect=True, ids=["24", "latest"])
def test_a_trigger_running_such_a_function_in_tenant_bs_insert_is_refused_from_0025(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn,
        new_db_app_user: Conn) -> None:
    new_db_admin.run(COPY_COUNT)
    new_db_admin.run("REVOKE ALL ON FUNCTION app.copy_count() FROM PUBLIC")  # no one may call it
    if at_version_24(new_db_admin):  # negative control: B's insert writes everyone's count
        new_db_admin.run(COPY_COUNT_TRIGGER)
        before = every_tenants_count(new_db_admin)
        [[written]] = committed(new_db_app_user, TENANT_B, COPY_COUNT_INSERT)
        assert int(written) == before
        return
    unchanged = state(postgres, new_db)
    error = refused(new_db_admin, COPY_COUNT_TRIGGER)
    assert error["M"] == runs_for_everyone("app.copy_count()", user_of(new_db_admin))
    assert error["H"] == FUNCTION_HINT
    assert state(postgres, new_db) == unchanged


@pytest.mark.parametrize("new_db", [BEFORE_0025, None], indirect=True, ids=["24", "latest"])
def test_boom_owners_definer_function_reading_such_a_view_is_kept_from_app_user_from_0025(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_owner: Conn,
        new_db_app_user: Conn) -> None:
    for statement in VIEW:  # allowed: no definer function of boom_owner's app_user may run
        new_db_admin.run(statement)
    said = notices(new_db_owner, TENANTS_SEEN)
    seen = "SELECT app.tenants_seen()"
    if at_version_24(new_db_admin):  # negative control: tenant B sees both tenants
        assert in_tenant(new_db_app_user, TENANT_B, seen) == [[2]]
        return
    view = bypassing_view("app.support_bookings", user_of(new_db_admin),
                          through="SECURITY DEFINER functions of boom_owner")
    assert said == [revoked("app.tenants_seen()", view)]
    with pytest.raises(pg8000.native.DatabaseError):
        in_tenant(new_db_app_user, TENANT_B, seen)
    # Given to app_user again: refused, naming the view to mend, nothing changed
    unchanged = state(postgres, new_db)
    error = refused(new_db_owner, "GRANT EXECUTE ON FUNCTION app.tenants_seen() TO app_user")
    assert (error["M"], error["H"]) == (view, BYPASSING_VIEW_HINT)
    assert state(postgres, new_db) == unchanged


def test_the_documented_idiom_still_works_and_the_roles_granted_may_run_it(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn) -> None:
    """PostgreSQL's "Writing SECURITY DEFINER Functions Safely": create, revoke from PUBLIC
    and grant to the roles that need it, in one transaction."""
    with role_of_its_own(postgres, new_db, "boom_support") as (support, password):
        new_db_admin.run(f"GRANT USAGE ON SCHEMA app TO {support}")
        new_db_admin.run("BEGIN")
        new_db_admin.run(COUNT_ALL)
        new_db_admin.run("REVOKE ALL ON FUNCTION app.count_all() FROM PUBLIC")
        new_db_admin.run(f"GRANT EXECUTE ON FUNCTION app.count_all() TO {support}")
        new_db_admin.run("COMMIT")
        conn = postgres.connect(new_db, user=support, password=password)
        try:
            assert conn.run(CALL) == [[every_tenants_count(new_db_admin)]]
        finally:
            conn.close()
        assert bootstrap.check(new_db_admin).findings == ()


@pytest.mark.parametrize("grant", [
    "GRANT EXECUTE ON FUNCTION app.count_all() TO app_user",
    "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA app TO app_user",
    "GRANT EXECUTE ON FUNCTION app.count_all() TO PUBLIC",
    "GRANT EXECUTE ON FUNCTION app.count_all() TO {role}",  # a role app_user may SET ROLE to
], ids=["app_user", "all-in-schema", "public", "role-app-user-may-become"])
def test_a_grant_that_would_let_app_user_run_it_is_refused_and_changes_nothing(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn,
        role_app_user_may_become: str, grant: str) -> None:
    new_db_admin.run(COUNT_ALL)
    unchanged = state(postgres, new_db)
    error = refused(new_db_admin, grant.format(role=role_app_user_may_become))
    assert error["M"] == runs_for_everyone("app.count_all()", user_of(new_db_admin))
    assert error["H"] == FUNCTION_HINT
    assert state(postgres, new_db) == unchanged


@pytest.mark.parametrize("public_too", [False, True], ids=["app_user", "not-public"])
def test_default_privileges_that_grant_app_user_execute_make_such_a_function_refused(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, public_too: bool) -> None:
    new_db_admin.run("ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT EXECUTE ON FUNCTIONS "
                     "TO app_user")
    if public_too:  # as careful operators set them: nothing to revoke, nothing said of it
        new_db_admin.run("ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC")
    unchanged = state(postgres, new_db)
    new_db_admin.notices.clear()
    error = refused(new_db_admin, COUNT_ALL)  # PUBLIC's EXECUTE revoked, app_user's stays
    found = runs_for_everyone("app.count_all()", user_of(new_db_admin))
    assert (error["M"], error["H"]) == (found, FUNCTION_HINT)
    assert messages(new_db_admin) == (
        [] if public_too else [revoked("app.count_all()", found)])
    assert state(postgres, new_db) == unchanged


INVOKER = ("CREATE FUNCTION app.count_all() RETURNS bigint LANGUAGE sql "
           "AS 'SELECT count(*) FROM app.bookings'")


@pytest.mark.parametrize(("made_by_owner", "before", "change"), [
    (False, INVOKER, "ALTER FUNCTION app.count_all() SECURITY DEFINER"),
    (False, INVOKER, "ALTER ROUTINE app.count_all() SECURITY DEFINER"),
    (False, "CREATE PROCEDURE app.count_all() LANGUAGE sql AS 'SELECT count(*) FROM app.bookings'",
     "ALTER PROCEDURE app.count_all() SECURITY DEFINER"),
    # boom_owner's, bound, given to the superuser
    (True, COUNT_ALL, "ALTER FUNCTION app.count_all() OWNER TO {admin}"),
    # a replacement that makes it one
    (False, INVOKER, COUNT_ALL.replace("CREATE", "CREATE OR REPLACE").replace(
        "SELECT count(*)", "SELECT count(*) + 0")),
], ids=["security-definer", "routine", "procedure", "owner", "replaced"])
def test_a_function_altered_into_one_app_user_may_run_is_refused(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_owner: Conn,
        made_by_owner: bool, before: str, change: str) -> None:
    (new_db_owner if made_by_owner else new_db_admin).run(before)  # PUBLIC may execute it
    assert public_may_execute(new_db_admin, "app.count_all()")
    unchanged = state(postgres, new_db)
    admin = user_of(new_db_admin)
    if change.startswith("CREATE OR REPLACE"):
        # Made again, it counts as new: PUBLIC's EXECUTE goes, and nothing is refused.
        new_db_admin.run(change)
        assert not public_may_execute(new_db_admin, "app.count_all()")
        return
    error = refused(new_db_admin, change.format(admin=admin))
    assert error["M"] == runs_for_everyone("app.count_all()", admin)
    assert error["H"] == FUNCTION_HINT
    assert state(postgres, new_db) == unchanged


def test_a_new_procedure_loses_publics_execute_too(new_db_admin: Conn,
                                                   new_db_app_user: Conn) -> None:
    new_db_admin.run("CREATE PROCEDURE app.tidy() LANGUAGE sql SECURITY DEFINER "
                     "AS 'DELETE FROM app.bookings WHERE false'")
    assert not public_may_execute(new_db_admin, "app.tidy()")
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        in_tenant(new_db_app_user, TENANT_B, "CALL app.tidy()")
    assert failure.value.args[0]["M"] == "permission denied for procedure tidy"


def test_a_new_leakproof_function_loses_publics_execute_and_marking_one_is_refused(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn) -> None:
    leakproof = ("function app.peek(text): it is LEAKPROOF and app_user may call it, so "
                 "PostgreSQL may run it on every tenant's rows before the tenant policy filters "
                 "them: what it shows of its arguments (an error, a notice) shows other tenants' "
                 "rows. ALTER FUNCTION app.peek(text) NOT LEAKPROOF")
    assert notices(new_db_admin, PEEK) == [revoked("app.peek(text)", leakproof)]
    assert not public_may_execute(new_db_admin, "app.peek(text)")
    # One PUBLIC may execute, marked LEAKPROOF later
    new_db_admin.run(PEEK.replace("peek", "glance").replace(" LEAKPROOF", ""))
    unchanged = state(postgres, new_db)
    error = refused(new_db_admin, "ALTER FUNCTION app.glance(text) LEAKPROOF")
    assert error["M"] == leakproof.replace("peek", "glance")
    assert state(postgres, new_db) == unchanged


# The superuser's definer function only boom_owner may execute (allowed: no definer function
# of boom_owner's app_user may run), and boom_owner's that calls it (0024).
CHAIN = (COUNT_ALL, "GRANT EXECUTE ON FUNCTION app.count_all() TO boom_owner")
CALLS_IT = ("CREATE FUNCTION app.counted() RETURNS bigint LANGUAGE sql SECURITY DEFINER "
            "AS 'SELECT app.count_all()'")


def test_boom_owners_definer_function_calling_such_a_function_is_kept_from_app_user(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_owner: Conn,
        new_db_app_user: Conn) -> None:
    for statement in CHAIN:
        new_db_admin.run(statement)
    through = (f"function app.count_all(): app_user may run it through SECURITY DEFINER "
               f"functions of boom_owner as {user_of(new_db_admin)}, who bypasses row level "
               "security (SUPERUSER or BYPASSRLS) and is SECURITY DEFINER: whatever it reads of "
               "tenant tables, it reads for every tenant. ALTER FUNCTION app.count_all() "
               "SECURITY INVOKER, or keep it from boom_owner (REVOKE EXECUTE ON FUNCTION "
               "app.count_all() FROM PUBLIC, boom_owner; a trigger's: DROP TRIGGER)")
    assert notices(new_db_owner, CALLS_IT) == [revoked("app.counted()", through)]
    with pytest.raises(pg8000.native.DatabaseError):
        in_tenant(new_db_app_user, TENANT_B, "SELECT app.counted()")
    unchanged = state(postgres, new_db)
    error = refused(new_db_owner, "GRANT EXECUTE ON FUNCTION app.counted() TO app_user")
    assert (error["M"], error["H"]) == (through, FUNCTION_HINT)
    assert state(postgres, new_db) == unchanged


def test_boom_owners_definer_trigger_reaching_such_a_view_is_refused(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_owner: Conn) -> None:
    for statement in VIEW:
        new_db_admin.run(statement)
    new_db_owner.run("CREATE FUNCTION app.stamp_tenants_seen() RETURNS trigger LANGUAGE plpgsql "
                     "SECURITY DEFINER AS $$ BEGIN NEW.resource := (SELECT count(DISTINCT "
                     "tenant_id) FROM app.support_bookings)::text; RETURN NEW; END $$")
    unchanged = state(postgres, new_db)
    error = refused(new_db_owner, "CREATE TRIGGER stamp BEFORE INSERT ON app.bookings "
                                  "FOR EACH ROW EXECUTE FUNCTION app.stamp_tenants_seen()")
    assert error["M"] == bypassing_view("app.support_bookings", user_of(new_db_admin),
                                        through="SECURITY DEFINER functions of boom_owner")
    assert error["H"] == BYPASSING_VIEW_HINT
    assert state(postgres, new_db) == unchanged


def test_functions_that_are_no_finding_keep_publics_execute(
        new_db_admin: Conn, new_db_owner: Conn) -> None:
    # An invoker's (reads as its caller), and boom_owner's definer function while boom_owner
    # reaches nothing that bypasses row level security: what applications make.
    assert notices(new_db_admin, INVOKER) == []
    assert notices(new_db_owner, TENANTS_SEEN.replace(
        "app.support_bookings", "app.bookings")) == []
    assert public_may_execute(new_db_admin, "app.count_all()")
    assert public_may_execute(new_db_admin, "app.tenants_seen()")
    assert bootstrap.check(new_db_admin).findings == ()


def test_mending_one_finding_is_not_refused_while_another_stands(
        new_db_admin: Conn) -> None:
    with trigger_off(new_db_admin):  # two made while the trigger was off, PUBLIC's
        new_db_admin.run(COUNT_ALL)
        new_db_admin.run(COUNT_ALL.replace("count_all", "count_more"))
    new_db_admin.run("ALTER FUNCTION app.count_all() SECURITY INVOKER")
    assert bootstrap.check(new_db_admin).findings == (
        "would refuse: " + runs_for_everyone("app.count_more()", user_of(new_db_admin)),)


def test_boom_owners_definer_function_app_user_may_not_run_is_allowed(
        new_db_admin: Conn, new_db_owner: Conn) -> None:
    """Only a function app_user may run makes its owner act for app_user."""
    for statement in CHAIN:  # boom_owner may run the superuser's definer function
        new_db_admin.run(statement)
    new_db_owner.run(CALLS_IT.replace(" SECURITY DEFINER", ""))
    new_db_owner.run("REVOKE EXECUTE ON FUNCTION app.counted() FROM PUBLIC")
    new_db_owner.run("ALTER FUNCTION app.counted() SECURITY DEFINER")  # no one may run it
    assert bootstrap.check(new_db_admin).findings == ()


def test_a_trigger_boom_owner_fires_counts_as_what_boom_owner_may_run(
        new_db_admin: Conn, new_db_owner: Conn) -> None:
    # The superuser's definer trigger function on a table only boom_owner writes: allowed
    # while no definer function of boom_owner's app_user may run.
    new_db_admin.run("CREATE TABLE app.notes (resource text)")
    new_db_admin.run("GRANT INSERT ON app.notes TO boom_owner")
    new_db_admin.run(COPY_COUNT)
    new_db_admin.run("CREATE TRIGGER count_on_insert BEFORE INSERT ON app.notes FOR EACH ROW "
                     "EXECUTE FUNCTION app.copy_count()")
    [said] = notices(new_db_owner, CALLS_IT.replace("app.count_all()", "1::bigint"))
    assert said.startswith("revoked EXECUTE on app.counted() from PUBLIC, which PostgreSQL gives "
                           "a new function: otherwise function app.copy_count(): app_user may "
                           "run it through SECURITY DEFINER functions of boom_owner as ")


# What boom_owner may reach as a role that bypasses row level security, made by the superuser
# while no definer function of boom_owner's app_user may run.
REACHES = {
    "view": (VIEW, BYPASSING_VIEW_HINT),
    "rule": (("CREATE TABLE app.requests (note text)", "CREATE TABLE app.request_log (n bigint)",
              "CREATE RULE count_them AS ON INSERT TO app.requests DO ALSO "
              "INSERT INTO app.request_log SELECT count(*) FROM app.bookings",
              "GRANT INSERT ON app.requests TO boom_owner"), RULE_HINT),
    "materialized-view": (
        ("CREATE MATERIALIZED VIEW app.all_bookings AS SELECT * FROM app.bookings",
         "GRANT SELECT ON app.all_bookings TO boom_owner"), STORED_HINT),
}


@pytest.mark.parametrize("reach", REACHES)
def test_boom_owners_function_made_security_definer_is_refused_with_the_reached_kinds_hint(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_owner: Conn,
        reach: str) -> None:
    statements, hint = REACHES[reach]
    for statement in statements:
        new_db_admin.run(statement)
    new_db_owner.run("CREATE FUNCTION app.mine() RETURNS bigint LANGUAGE sql AS 'SELECT 1::bigint'")
    with trigger_off(new_db_admin):  # what the audit says, to compare the refusal with
        new_db_owner.run("ALTER FUNCTION app.mine() SECURITY DEFINER")
        [[found]] = new_db_admin.run("SELECT table_name || ': ' || problem "
                                     "FROM app.audit_tenant_views()")
        new_db_owner.run("ALTER FUNCTION app.mine() SECURITY INVOKER")
    assert "through SECURITY DEFINER functions of boom_owner" in found
    unchanged = state(postgres, new_db)
    error = refused(new_db_owner, "ALTER FUNCTION app.mine() SECURITY DEFINER")
    assert (error["M"], error["H"]) == (found, hint)
    assert state(postgres, new_db) == unchanged


# A superuser's SECURITY DEFINER transition function, kept from PUBLIC, and its aggregate:
# PostgreSQL checks an aggregate's parts against the aggregate's owner, not its caller.
COUNT_STEP = ("CREATE FUNCTION app.count_step(bigint, integer) RETURNS bigint LANGUAGE plpgsql "
              "SECURITY DEFINER AS $$ BEGIN RETURN (SELECT count(*) FROM app.bookings); END $$")
AGGREGATE = ("CREATE AGGREGATE app.everyone(integer) (sfunc = app.count_step, stype = bigint, "
             "initcond = '0')")
EVERYONE = "SELECT app.everyone(1)"


def through_aggregate(owner: str, holder: str = "app_user") -> str:
    """The finding for app.count_step(), owned by `owner`, which app_user reaches through
    app.everyone(): itself, or as `holder`, whose SECURITY DEFINER functions may call it."""
    via = "" if holder == "app_user" else f" in SECURITY DEFINER functions of {holder}"
    return ("function app.count_step(bigint,integer): app_user may run it through aggregate "
            f"app.everyone(integer){via} as {owner}, who bypasses row level security "
            "(SUPERUSER or BYPASSRLS) and is SECURITY DEFINER: whatever it reads of tenant "
            "tables, it reads for every tenant. ALTER FUNCTION app.count_step(bigint,integer) "
            f"SECURITY INVOKER, or keep the aggregate from {holder} (REVOKE EXECUTE ON FUNCTION "
            f"app.everyone(integer) FROM PUBLIC, {holder})")


@pytest.mark.parametrize("new_db", [BEFORE_0025, None], indirect=True, ids=["24", "latest"])
def test_an_aggregate_over_such_a_function_counts_every_tenant_only_before_0025(
        new_db_admin: Conn, new_db_app_user: Conn) -> None:
    new_db_admin.run(COUNT_STEP)
    new_db_admin.run("REVOKE ALL ON FUNCTION app.count_step(bigint, integer) FROM PUBLIC")
    said = notices(new_db_admin, AGGREGATE)
    if at_version_24(new_db_admin):  # negative control: B counts everyone's, nothing reported
        assert in_tenant(new_db_app_user, TENANT_B, EVERYONE) == [
            [every_tenants_count(new_db_admin)]]
        assert enforce.gaps(new_db_admin) == []
        return
    assert said == [revoked("app.everyone(integer)", through_aggregate(user_of(new_db_admin)))]
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        in_tenant(new_db_app_user, TENANT_B, EVERYONE)
    assert failure.value.args[0]["M"] == "permission denied for aggregate everyone"
    assert bootstrap.check(new_db_admin).findings == ()


def test_such_an_aggregate_made_while_the_trigger_was_off_is_found_until_kept_from_app_user(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn,
        new_db_app_user: Conn) -> None:
    with trigger_off(new_db_admin):
        new_db_admin.run(COUNT_STEP)
        new_db_admin.run("REVOKE ALL ON FUNCTION app.count_step(bigint, integer) FROM PUBLIC")
        new_db_admin.run(AGGREGATE)
    found = through_aggregate(user_of(new_db_admin))
    refused_by_check_and_run(postgres, new_db, new_db_admin, found)
    # Given to app_user again: refused
    error = refused(new_db_admin, "GRANT EXECUTE ON FUNCTION app.everyone(integer) TO app_user")
    assert (error["M"], error["H"]) == (found, FUNCTION_HINT)
    new_db_admin.run("REVOKE EXECUTE ON FUNCTION app.everyone(integer) FROM PUBLIC")
    assert bootstrap.check(new_db_admin).findings == ()


def test_an_aggregate_given_to_an_owner_who_may_run_such_a_function_is_refused(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn) -> None:
    with trigger_off(new_db_admin):  # the aggregate is PUBLIC's, but its owner may not run
        new_db_admin.run(COUNT_STEP)  # the superuser's part, so its calls fail
        new_db_admin.run("REVOKE ALL ON FUNCTION app.count_step(bigint, integer) FROM PUBLIC")
        new_db_admin.run(AGGREGATE)
        new_db_admin.run("ALTER AGGREGATE app.everyone(integer) OWNER TO boom_owner")
    assert bootstrap.check(new_db_admin).findings == ()
    unchanged = state(postgres, new_db)
    admin = user_of(new_db_admin)
    error = refused(new_db_admin, f"ALTER AGGREGATE app.everyone(integer) OWNER TO {admin}")
    assert (error["M"], error["H"]) == (through_aggregate(admin), FUNCTION_HINT)
    assert state(postgres, new_db) == unchanged


def test_boom_owners_aggregate_over_its_definer_function_reaching_such_a_view(
        new_db_admin: Conn, new_db_owner: Conn) -> None:
    """The aggregate's part runs as boom_owner for app_user (it acts for app_user through it),
    and boom_owner may read the superuser's view."""
    for statement in VIEW:
        new_db_admin.run(statement)
    new_db_owner.run("CREATE FUNCTION app.seen_step(bigint, integer) RETURNS bigint "
                     "LANGUAGE sql SECURITY DEFINER "
                     "AS 'SELECT count(DISTINCT tenant_id) FROM app.support_bookings'")
    view = bypassing_view("app.support_bookings", user_of(new_db_admin),
                          through="SECURITY DEFINER functions of boom_owner")
    assert notices(new_db_owner, "CREATE AGGREGATE app.seen(integer) (sfunc = app.seen_step, "
                   "stype = bigint, initcond = '0')") == [revoked("app.seen(integer)", view)]


def test_boom_owners_definer_function_may_call_such_an_aggregate_is_kept_from_app_user(
        new_db_admin: Conn, new_db_owner: Conn) -> None:
    new_db_admin.run(COUNT_STEP)
    new_db_admin.run(AGGREGATE)  # loses PUBLIC's EXECUTE as it is made
    new_db_admin.run("GRANT EXECUTE ON FUNCTION app.everyone(integer) TO boom_owner")
    found = through_aggregate(user_of(new_db_admin), holder="boom_owner")
    assert notices(new_db_owner, CALLS_IT.replace("app.count_all()", "app.everyone(1)")) == [
        revoked("app.counted()", found)]


def test_a_leakproof_part_of_an_aggregate_is_no_finding(new_db_admin: Conn) -> None:
    """An aggregate's parts run on the rows the policy has let through: LEAKPROOF lets the
    planner run a function in a filter, before the policy's."""
    new_db_admin.run(COUNT_STEP.replace("SECURITY DEFINER", "LEAKPROOF"))  # kept from PUBLIC
    assert notices(new_db_admin, AGGREGATE) == []  # the aggregate stays PUBLIC's
    assert public_may_execute(new_db_admin, "app.everyone(integer)")
    assert bootstrap.check(new_db_admin).findings == ()
