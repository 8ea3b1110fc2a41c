"""Nothing app_user reaches through a view inside a view, by writing through a view, through a
rule, in a schema it may not use, or as the owner of a SECURITY DEFINER function it may run,
reaches tenant rows as a role that bypasses row level security (migration 0024), on real
PostgreSQL 15.

A view reads and writes its tables as its owner (as its user if security_invoker), and so does
each view inside it; a rule runs as the owner of its table; a definer function as its owner.
The tests' superuser stands in for an operator's role that bypasses row level security. At
version 23 the audits looked only at the views and functions app_user itself may use by name,
and the negative controls below each handed tenant B other tenants' rows (to read, count,
update or delete) with nothing reported.
"""

from __future__ import annotations

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap, enforce
from tests.fixture_bootstrap import trigger_off
from tests.fixture_postgres import PostgresServer
from tests.fixture_secrets import refused_by_check_and_run, state
from tests.fixture_tenants import (
    BYPASSING_VIEW_HINT,
    RULE_HINT,
    STORED_HINT,
    TENANT_B,
    Conn,
    bypassing_view,
    committed,
    every_tenants_count,
    in_tenant,
    schema_version,
    user_of,
)

BEFORE_0024 = 23
TENANTS_SEEN = "SELECT count(DISTINCT tenant_id) FROM {view}"

# The operator's view (the superuser's), given to boom_owner, and boom_owner's view of it,
# which boom_owner's default privileges let app_user read.
INNER = "CREATE VIEW app.support_bookings AS SELECT * FROM app.bookings"
INNER_TO_OWNER = "GRANT SELECT ON app.support_bookings TO boom_owner"
OUTER = "CREATE VIEW app.recent AS SELECT * FROM app.support_bookings"
# The operator's view in a schema app_user may not use, granted to it (0023 let it be), and
# what boom_owner makes of it (it needs USAGE to name the view, not afterwards): PostgreSQL
# checks USAGE only where a query names an object.
OPS = ("CREATE SCHEMA ops", "CREATE VIEW ops.all_bookings AS SELECT * FROM app.bookings")
OPS_GRANT = "GRANT SELECT ON ops.all_bookings TO app_user"
OPS_TO_OWNER = "GRANT USAGE ON SCHEMA ops TO boom_owner"
# Each way: the operator's statements, boom_owner's, and what tenant B then runs.
WAYS = {
    "outer-view": ((INNER, INNER_TO_OWNER), (OUTER,), TENANTS_SEEN.format(view="app.recent")),
    "invoker-view-no-usage": (
        (*OPS, OPS_GRANT, OPS_TO_OWNER),
        ("CREATE VIEW app.recent WITH (security_invoker = on) AS SELECT * FROM ops.all_bookings",),
        TENANTS_SEEN.format(view="app.recent")),
    "atomic-function-no-usage": (
        (*OPS, OPS_GRANT, OPS_TO_OWNER),
        ("CREATE FUNCTION app.tenants_seen() RETURNS bigint LANGUAGE sql "
         "BEGIN ATOMIC SELECT count(DISTINCT tenant_id) FROM ops.all_bookings; END",),
        "SELECT app.tenants_seen()"),
}


def own_count(app_user: Conn) -> int:
    """How many bookings tenant B has, as app_user sees them."""
    return int(in_tenant(app_user, TENANT_B, "SELECT count(*) FROM app.bookings")[0][0])


def before_0024(admin: Conn) -> bool:
    """Whether the test's database is at version 23, the negative control's."""
    return schema_version(admin) == BEFORE_0024


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("new_db", [BEFORE_0024], indirect=True)
def test_negative_control_before_0024_a_view_one_step_away_shows_every_tenant(
        new_db_admin: Conn, new_db_owner: Conn, new_db_app_user: Conn, way: str) -> None:
    operator, owner, query = WAYS[way]
    for statement in operator:
        new_db_admin.run(statement)
    for statement in owner:
        new_db_owner.run(statement)
    assert in_tenant(new_db_app_user, TENANT_B, query) == [[2]]
    assert enforce.gaps(new_db_admin) == []  # no audit of version 23 reports it


def test_a_view_app_user_would_reach_another_through_is_refused_and_changes_nothing(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_owner: Conn) -> None:
    new_db_admin.run(INNER)
    new_db_admin.run(INNER_TO_OWNER)
    unchanged = state(postgres, new_db)
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        new_db_owner.run(OUTER)
    assert failure.value.args[0]["M"] == bypassing_view(
        "app.support_bookings", user_of(new_db_admin), through="app.recent")
    assert failure.value.args[0]["H"] == BYPASSING_VIEW_HINT
    assert state(postgres, new_db) == unchanged


def test_a_view_in_a_schema_app_user_cannot_use_is_refused_when_granted(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn) -> None:
    # 0023 allowed it until a GRANT USAGE; the ways above reach it without one.
    for statement in OPS:
        new_db_admin.run(statement)
    unchanged = state(postgres, new_db)
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        new_db_admin.run(OPS_GRANT)
    assert failure.value.args[0]["M"] == bypassing_view("ops.all_bookings", user_of(new_db_admin))
    assert state(postgres, new_db) == unchanged


# boom_owner's SECURITY DEFINER function (executable by PUBLIC, as every new one is), reading
# the operator's view granted to boom_owner: app_user's call reads it as boom_owner.
DEFINER = ("CREATE FUNCTION app.tenants_seen() RETURNS bigint LANGUAGE sql SECURITY DEFINER "
           "AS 'SELECT count(DISTINCT tenant_id) FROM app.support_bookings'")
SEEN = "SELECT app.tenants_seen()"


@pytest.mark.parametrize("new_db", [BEFORE_0024], indirect=True)
def test_negative_control_before_0024_boom_owners_definer_function_reads_such_a_view(
        new_db_admin: Conn, new_db_owner: Conn, new_db_app_user: Conn) -> None:
    new_db_admin.run(INNER)
    new_db_admin.run(INNER_TO_OWNER)
    new_db_owner.run(DEFINER)
    assert in_tenant(new_db_app_user, TENANT_B, SEEN) == [[2]]
    assert enforce.gaps(new_db_admin) == []


def test_boom_owners_definer_function_makes_such_a_view_a_finding(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_owner: Conn,
        new_db_app_user: Conn) -> None:
    new_db_admin.run(INNER)
    new_db_admin.run(INNER_TO_OWNER)  # allowed: no function of boom_owner's app_user may run
    with trigger_off(new_db_admin):  # since 0025 refused when made
        new_db_owner.run(DEFINER)
    found = bypassing_view("app.support_bookings", user_of(new_db_admin),
                           through="SECURITY DEFINER functions of boom_owner")
    refused_by_check_and_run(postgres, new_db, new_db_admin, found)
    new_db_admin.run("ALTER VIEW app.support_bookings SET (security_invoker = on)")
    assert bootstrap.check(new_db_admin).findings == ()
    assert in_tenant(new_db_app_user, TENANT_B, SEEN) == [[1]]  # read as boom_owner: bound



def test_boom_owners_definer_trigger_function_makes_such_a_view_a_finding(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_owner: Conn) -> None:
    new_db_admin.run(INNER)
    new_db_admin.run(INNER_TO_OWNER)
    # Run by app_user's inserts, though no one may call it
    new_db_owner.run("CREATE FUNCTION app.stamp_tenants_seen() RETURNS trigger LANGUAGE plpgsql "
                     "SECURITY DEFINER AS $$ BEGIN NEW.resource := (SELECT count(DISTINCT "
                     "tenant_id) FROM app.support_bookings)::text; RETURN NEW; END $$")
    new_db_owner.run("REVOKE ALL ON FUNCTION app.stamp_tenants_seen() FROM PUBLIC, app_user")
    assert bootstrap.check(new_db_admin).findings == ()
    with trigger_off(new_db_admin):  # since 0025 refused when made
        new_db_owner.run("CREATE TRIGGER stamp BEFORE INSERT ON app.bookings "
                         "FOR EACH ROW EXECUTE FUNCTION app.stamp_tenants_seen()")
    refused_by_check_and_run(postgres, new_db, new_db_admin, bypassing_view(
        "app.support_bookings", user_of(new_db_admin),
        through="SECURITY DEFINER functions of boom_owner"))

def test_a_grant_that_would_let_such_a_function_read_such_a_view_is_refused(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_owner: Conn) -> None:
    new_db_admin.run(INNER)
    new_db_owner.run(DEFINER)  # it may not read the view yet
    unchanged = state(postgres, new_db)
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        new_db_admin.run(INNER_TO_OWNER)
    assert failure.value.args[0]["M"] == bypassing_view(
        "app.support_bookings", user_of(new_db_admin),
        through="SECURITY DEFINER functions of boom_owner")
    assert state(postgres, new_db) == unchanged

COUNT_ALL = ("CREATE FUNCTION ops.count_all() RETURNS bigint LANGUAGE sql SECURITY DEFINER "
             "AS 'SELECT count(*) FROM app.bookings'")
COUNTED = ("CREATE FUNCTION app.counted() RETURNS bigint LANGUAGE sql "
           "BEGIN ATOMIC SELECT ops.count_all(); END")


@pytest.mark.parametrize("new_db", [BEFORE_0024, None], indirect=True, ids=["23", "latest"])
def test_a_definer_function_in_a_schema_app_user_cannot_use_is_reported(
        new_db: str, new_db_admin: Conn, new_db_owner: Conn, new_db_app_user: Conn) -> None:
    with trigger_off(new_db_admin):  # executable by PUBLIC, as made (0025 revokes that)
        for statement in (OPS[0], COUNT_ALL, OPS_TO_OWNER):
            new_db_admin.run(statement)
    new_db_owner.run(COUNTED)
    new_db_admin.run("REVOKE USAGE ON SCHEMA ops FROM boom_owner")
    everyone = every_tenants_count(new_db_admin)
    assert in_tenant(new_db_app_user, TENANT_B, "SELECT app.counted()") == [[everyone]]
    reported = new_db_admin.run("SELECT table_name FROM app.audit_tenant_functions()")
    assert reported == ([] if before_0024(new_db_admin) else [["function ops.count_all()"]])


# The operator's view of app.bookings, which app_user may only write.
WRITES = {"DELETE": "WITH gone AS (DELETE FROM app.support_bookings RETURNING 1) "
                    "SELECT count(*) FROM gone",
          "UPDATE (resource)": "WITH moved AS (UPDATE app.support_bookings SET resource = 'x' "
                               "RETURNING 1) SELECT count(*) FROM moved"}


def writes_everyone(owner: str) -> str:
    return ("app.support_bookings: a view app_user may write, run as "
            f"{owner}, who bypasses row level security (SUPERUSER or BYPASSRLS): its writes reach "
            "every tenant's rows of app.bookings. ALTER VIEW app.support_bookings SET "
            "(security_invoker = on), or ALTER VIEW app.support_bookings OWNER TO boom_owner")


@pytest.mark.parametrize("privilege", WRITES)
@pytest.mark.parametrize("new_db", [BEFORE_0024], indirect=True)
def test_negative_control_before_0024_writing_through_a_view_reaches_every_tenant(
        new_db_admin: Conn, new_db_app_user: Conn, privilege: str) -> None:
    new_db_admin.run(INNER)
    new_db_admin.run(f"GRANT {privilege} ON app.support_bookings TO app_user")  # no SELECT
    everyone = every_tenants_count(new_db_admin)
    own = own_count(new_db_app_user)
    assert in_tenant(new_db_app_user, TENANT_B, WRITES[privilege]) == [[everyone]]
    assert everyone > own
    assert enforce.gaps(new_db_admin) == []


@pytest.mark.parametrize("privilege", [*WRITES, "INSERT"])
def test_a_view_app_user_may_only_write_is_refused_too(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, privilege: str) -> None:
    new_db_admin.run(INNER)
    unchanged = state(postgres, new_db)
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        new_db_admin.run(f"GRANT {privilege} ON app.support_bookings TO app_user")
    assert failure.value.args[0]["M"] == writes_everyone(user_of(new_db_admin))
    assert failure.value.args[0]["H"] == BYPASSING_VIEW_HINT
    assert state(postgres, new_db) == unchanged

@pytest.mark.parametrize("new_db", [BEFORE_0024, None], indirect=True, ids=["23", "latest"])
def test_a_view_boom_owner_may_only_write_is_followed_for_app_users_writes(
        new_db_admin: Conn, new_db_owner: Conn, new_db_app_user: Conn) -> None:
    new_db_admin.run(INNER)
    new_db_admin.run("GRANT DELETE ON app.support_bookings TO boom_owner")  # no SELECT
    if before_0024(new_db_admin):
        new_db_owner.run(OUTER)  # negative control: B deletes every tenant's bookings
        everyone = every_tenants_count(new_db_admin)
        assert in_tenant(new_db_app_user, TENANT_B, WRITES["DELETE"].replace(
            "app.support_bookings", "app.recent")) == [[everyone]]
        return
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        new_db_owner.run(OUTER)
    assert failure.value.args[0]["M"] == writes_everyone(user_of(new_db_admin)).replace(
        "may write", "reaches through app.recent")

def test_an_inner_view_made_to_run_as_its_owner_later_is_refused(
        new_db_admin: Conn, new_db_owner: Conn, new_db_app_user: Conn) -> None:
    new_db_admin.run(INNER.replace("AS", "WITH (security_invoker = on) AS", 1))
    new_db_admin.run(INNER_TO_OWNER)
    new_db_owner.run(OUTER)  # allowed: the inner view reads as app_user, whom the policy binds
    assert in_tenant(new_db_app_user, TENANT_B, TENANTS_SEEN.format(view="app.recent")) == [[1]]
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        new_db_admin.run("ALTER VIEW app.support_bookings RESET (security_invoker)")
    assert failure.value.args[0]["M"] == bypassing_view(
        "app.support_bookings", user_of(new_db_admin), through="app.recent")
    assert in_tenant(new_db_app_user, TENANT_B, TENANTS_SEEN.format(view="app.recent")) == [[1]]


def test_one_made_while_the_trigger_was_off_is_found_and_every_run_refuses(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_owner: Conn,
        new_db_app_user: Conn) -> None:
    with trigger_off(new_db_admin):
        new_db_admin.run(INNER)
        new_db_admin.run(INNER_TO_OWNER)
        new_db_owner.run(OUTER)
    assert in_tenant(new_db_app_user, TENANT_B, TENANTS_SEEN.format(view="app.recent")) == [[2]]
    refused_by_check_and_run(postgres, new_db, new_db_admin, bypassing_view(
        "app.support_bookings", user_of(new_db_admin), through="app.recent"))
    # Mended as the finding says: the check is clean, a run goes through, B sees only B.
    new_db_admin.run("ALTER VIEW app.support_bookings SET (security_invoker = on)")
    assert bootstrap.check(new_db_admin).findings == ()
    assert bootstrap.apply(new_db_admin).repaired == ()
    assert in_tenant(new_db_app_user, TENANT_B, TENANTS_SEEN.format(view="app.recent")) == [[1]]


@pytest.mark.parametrize("inner", [
    "CREATE VIEW app.own_bookings AS SELECT * FROM app.bookings",  # reads as boom_owner
    "CREATE VIEW app.own_bookings WITH (security_invoker = on) AS SELECT * FROM app.bookings",
], ids=["boom_owners", "invoker"])
def test_an_operators_view_of_views_that_read_as_bound_roles_is_allowed(
        new_db_admin: Conn, new_db_owner: Conn, new_db_app_user: Conn, inner: str) -> None:
    # Refused at version 23, which reported every tenant table behind a view
    new_db_owner.run(inner)
    new_db_admin.run("CREATE VIEW app.support_bookings AS SELECT * FROM app.own_bookings")
    new_db_admin.run("GRANT SELECT ON app.support_bookings TO app_user")
    assert in_tenant(new_db_app_user, TENANT_B, TENANTS_SEEN.format(
        view="app.support_bookings")) == [[1]]
    assert enforce.gaps(new_db_admin) == []


def test_a_function_a_view_calls_runs_as_the_views_reader(
        new_db_admin: Conn, new_db_owner: Conn, new_db_app_user: Conn) -> None:
    """Why the audit need not look into functions: PostgreSQL calls a view's functions as
    whoever queries the view, so app_user needs EXECUTE on them (a SECURITY DEFINER one it may
    execute is app.audit_tenant_functions()'s, 0023), and an invoker's reads as app_user."""
    new_db_admin.run("CREATE FUNCTION app.every_booking() RETURNS TABLE (tenant_id uuid) "
                     "LANGUAGE sql AS 'SELECT tenant_id FROM app.bookings'")
    new_db_admin.run("CREATE VIEW app.support_bookings AS SELECT * FROM app.every_booking()")
    new_db_admin.run("GRANT SELECT ON app.support_bookings TO app_user")  # it reads no table
    assert in_tenant(new_db_app_user, TENANT_B, TENANTS_SEEN.format(
        view="app.support_bookings")) == [[1]]
    # boom_owner's view of a definer function only boom_owner may execute
    new_db_admin.run("CREATE FUNCTION app.count_all() RETURNS bigint LANGUAGE sql "
                     "SECURITY DEFINER AS 'SELECT count(*) FROM app.bookings'")
    new_db_admin.run("REVOKE EXECUTE ON FUNCTION app.count_all() FROM PUBLIC")
    new_db_admin.run("GRANT EXECUTE ON FUNCTION app.count_all() TO boom_owner")
    new_db_owner.run("CREATE VIEW app.counted AS SELECT app.count_all() AS bookings")
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        in_tenant(new_db_app_user, TENANT_B, "SELECT bookings FROM app.counted")
    assert failure.value.args[0]["M"] == "permission denied for function count_all"
    assert enforce.gaps(new_db_admin) == []



# The superuser's SECURITY DEFINER function only boom_owner may execute, and boom_owner's
# that calls it: app_user's call runs the first as boom_owner, the second as the superuser.
CHAIN = ("CREATE FUNCTION app.count_all() RETURNS bigint LANGUAGE sql SECURITY DEFINER "
         "AS 'SELECT count(*) FROM app.bookings'",
         "REVOKE EXECUTE ON FUNCTION app.count_all() FROM PUBLIC",
         "GRANT EXECUTE ON FUNCTION app.count_all() TO boom_owner")
CALLS_IT = ("CREATE FUNCTION app.counted() RETURNS bigint LANGUAGE sql SECURITY DEFINER "
            "AS 'SELECT app.count_all()'")


@pytest.mark.parametrize("new_db", [BEFORE_0024, None], indirect=True, ids=["23", "latest"])
def test_a_definer_function_app_user_reaches_through_another_is_reported(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_owner: Conn,
        new_db_app_user: Conn) -> None:
    for statement in CHAIN:
        new_db_admin.run(statement)
    with trigger_off(new_db_admin):  # since 0025 refused when made
        new_db_owner.run(CALLS_IT)
    everyone = every_tenants_count(new_db_admin)
    assert in_tenant(new_db_app_user, TENANT_B, "SELECT app.counted()") == [[everyone]]
    if before_0024(new_db_admin):
        assert enforce.gaps(new_db_admin) == []  # negative control: nothing reported
        return
    owner = user_of(new_db_admin)
    refused_by_check_and_run(postgres, new_db, new_db_admin, (
        "function app.count_all(): app_user may run it through SECURITY DEFINER functions of "
        f"boom_owner as {owner}, who bypasses row level security (SUPERUSER or BYPASSRLS) and "
        "is SECURITY DEFINER: whatever it reads of tenant tables, it reads for every tenant. "
        "ALTER FUNCTION app.count_all() SECURITY INVOKER, or keep it from boom_owner (REVOKE "
        "EXECUTE ON FUNCTION app.count_all() FROM PUBLIC, boom_owner; a trigger's: DROP "
        "TRIGGER)"))
    new_db_admin.run("REVOKE EXECUTE ON FUNCTION app.count_all() FROM PUBLIC, boom_owner")
    assert bootstrap.check(new_db_admin).findings == ()


def test_a_leakproof_function_only_a_definer_functions_owner_may_call_is_reported(
        new_db_admin: Conn, new_db_owner: Conn) -> None:
    # boom_owner's definer functions may run it on rows the policy has not yet filtered.
    new_db_admin.run("CREATE FUNCTION app.peek(text) RETURNS boolean LANGUAGE plpgsql LEAKPROOF "
                     "AS $$ BEGIN RAISE NOTICE 'saw %', $1; RETURN true; END $$")
    new_db_admin.run("REVOKE EXECUTE ON FUNCTION app.peek(text) FROM PUBLIC")
    new_db_admin.run("GRANT EXECUTE ON FUNCTION app.peek(text) TO boom_owner")
    audit = "SELECT problem FROM app.audit_tenant_functions()"
    assert new_db_admin.run(audit) == []  # no definer function of boom_owner's yet
    with trigger_off(new_db_admin):  # since 0025 refused when made
        new_db_owner.run("CREATE FUNCTION app.mine() RETURNS bigint LANGUAGE sql "
                         "SECURITY DEFINER AS 'SELECT count(*) FROM app.bookings'")
    assert new_db_admin.run(audit) == [[
        "it is LEAKPROOF and app_user may call it through SECURITY DEFINER functions of "
        "boom_owner, so PostgreSQL may run it on every tenant's rows before the tenant policy "
        "filters them: what it shows of its arguments (an error, a notice) shows other "
        "tenants' rows. ALTER FUNCTION app.peek(text) NOT LEAKPROOF"]]

# An operator's table app_user may write, whose rule copies what it reads of app.bookings into
# a table app_user reads.
REQUESTS = ("CREATE TABLE app.requests (note text)", "CREATE TABLE app.request_log (n bigint)",
            "GRANT SELECT ON app.request_log TO app_user")
GRANT_INSERT = "GRANT INSERT ON app.requests TO app_user"
RULE = ("CREATE RULE count_them AS ON INSERT TO app.requests DO ALSO "
        "INSERT INTO app.request_log SELECT count(*) FROM app.bookings")
REQUEST = "INSERT INTO app.requests VALUES ('a request')"
LOGGED = "SELECT n FROM app.request_log"


def rule_reads_everyone(owner: str) -> str:
    return ("app.requests: rule count_them runs, when app_user inserts into app.requests, as "
            f"{owner}, who bypasses row level security (SUPERUSER or BYPASSRLS): its action "
            "reaches every tenant's rows of app.bookings. DROP RULE count_them ON app.requests, "
            "or make boom_owner the owner of app.requests")


@pytest.mark.parametrize("new_db", [BEFORE_0024], indirect=True)
def test_negative_control_before_0024_a_superusers_rule_counts_every_tenant_for_b(
        new_db_admin: Conn, new_db_app_user: Conn) -> None:
    for statement in (*REQUESTS, GRANT_INSERT, RULE):
        new_db_admin.run(statement)
    committed(new_db_app_user, TENANT_B, REQUEST)
    everyone = every_tenants_count(new_db_admin)
    assert in_tenant(new_db_app_user, TENANT_B, LOGGED) == [[everyone]]
    assert everyone > own_count(new_db_app_user)
    assert enforce.gaps(new_db_admin) == []


@pytest.mark.parametrize("order", [
    (GRANT_INSERT, RULE), (RULE, GRANT_INSERT),
    ("GRANT INSERT (note) ON app.requests TO app_user", RULE),  # one column's grant writes too
], ids=["rule-after-grant", "grant-after-rule", "rule-after-column-grant"])
def test_a_rule_app_users_writes_would_run_as_such_a_role_is_refused_and_changes_nothing(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn,
        order: tuple[str, str]) -> None:
    for statement in (*REQUESTS, order[0]):
        new_db_admin.run(statement)
    unchanged = state(postgres, new_db)
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        new_db_admin.run(order[1])
    assert failure.value.args[0]["M"] == rule_reads_everyone(user_of(new_db_admin))
    assert failure.value.args[0]["H"] == RULE_HINT
    assert state(postgres, new_db) == unchanged


def test_boom_owners_rule_is_bound_until_its_table_is_given_to_such_a_role(
        new_db_admin: Conn, new_db_owner: Conn, new_db_app_user: Conn) -> None:
    for statement in (*REQUESTS, GRANT_INSERT):
        new_db_admin.run(statement)
    for table in ("app.requests", "app.request_log"):
        new_db_admin.run(f"ALTER TABLE {table} OWNER TO boom_owner")
    new_db_owner.run(RULE)  # boom_owner's: FORCE binds it
    committed(new_db_app_user, TENANT_B, REQUEST)
    assert in_tenant(new_db_app_user, TENANT_B, LOGGED) == [[own_count(new_db_app_user)]]
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        new_db_admin.run(f"ALTER TABLE app.requests OWNER TO {user_of(new_db_admin)}")
    assert failure.value.args[0]["M"] == rule_reads_everyone(user_of(new_db_admin))


@pytest.mark.parametrize("mend", ["DROP RULE count_them ON app.requests",
                                  "ALTER TABLE app.requests DISABLE RULE count_them",
                                  "ALTER TABLE app.requests OWNER TO boom_owner"],
                         ids=["dropped", "disabled", "boom_owners"])
def test_a_rule_made_while_the_trigger_was_off_is_found_and_every_run_refuses(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_app_user: Conn,
        mend: str) -> None:
    with trigger_off(new_db_admin):
        for statement in (*REQUESTS, GRANT_INSERT, RULE):
            new_db_admin.run(statement)
    refused_by_check_and_run(postgres, new_db, new_db_admin,
                             rule_reads_everyone(user_of(new_db_admin)))
    new_db_admin.run(mend)
    assert bootstrap.check(new_db_admin).findings == ()
    assert bootstrap.apply(new_db_admin).repaired == ()
    if "OWNER" not in mend:  # the rule no longer fires
        committed(new_db_app_user, TENANT_B, REQUEST)
        assert in_tenant(new_db_app_user, TENANT_B, LOGGED) == []


# boom_owner may insert into the operator's table (app_user may not), and makes a view of it,
# which default privileges let app_user insert into: the insert reaches the table as
# boom_owner, and fires the operator's rule as the operator.
FORM = "CREATE VIEW app.request_form AS SELECT * FROM app.requests"


@pytest.mark.parametrize("new_db", [BEFORE_0024, None], indirect=True, ids=["23", "latest"])
def test_a_rule_reached_through_an_updatable_view(
        new_db: str, new_db_admin: Conn, new_db_owner: Conn, new_db_app_user: Conn) -> None:
    for statement in (*REQUESTS, "GRANT SELECT, INSERT ON app.requests TO boom_owner", RULE):
        new_db_admin.run(statement)
    if before_0024(new_db_admin):  # negative control: tenant B gets every tenant's count
        new_db_owner.run(FORM)
        committed(new_db_app_user, TENANT_B, REQUEST.replace("requests", "request_form"))
        everyone = every_tenants_count(new_db_admin)
        assert in_tenant(new_db_app_user, TENANT_B, LOGGED) == [[everyone]]
        assert enforce.gaps(new_db_admin) == []
        return
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        new_db_owner.run(FORM)
    assert failure.value.args[0]["M"] == rule_reads_everyone(user_of(new_db_admin)).replace(
        "inserts into app.requests,", "inserts into app.requests through app.request_form,")
    assert failure.value.args[0]["H"] == RULE_HINT

# The operator's materialized view of app.bookings (every tenant's rows, no row level
# security), given to boom_owner: 0004 reports one app_user may read by name.
MATERIALIZED = ("CREATE MATERIALIZED VIEW app.all_bookings AS SELECT * FROM app.bookings",
                "GRANT SELECT ON app.all_bookings TO boom_owner")
OVER_MATERIALIZED = "CREATE VIEW app.recent AS SELECT * FROM app.all_bookings"


@pytest.mark.parametrize("new_db", [BEFORE_0024, None], indirect=True, ids=["23", "latest"])
def test_a_materialized_view_reached_through_a_view(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_owner: Conn,
        new_db_app_user: Conn) -> None:
    for statement in MATERIALIZED:
        new_db_admin.run(statement)
    if before_0024(new_db_admin):  # negative control: tenant B reads both tenants' rows
        new_db_owner.run(OVER_MATERIALIZED)
        assert in_tenant(new_db_app_user, TENANT_B,
                         TENANTS_SEEN.format(view="app.recent")) == [[2]]
        assert enforce.gaps(new_db_admin) == []
        return
    unchanged = state(postgres, new_db)
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        new_db_owner.run(OVER_MATERIALIZED)
    assert failure.value.args[0]["M"] == (
        "app.recent: reaches materialized view app.all_bookings as boom_owner for app_user: it "
        "has no row level security, so every tenant sees the rows it holds of app.bookings. "
        "REVOKE SELECT ON app.all_bookings FROM boom_owner, or read the tables through a "
        "plain view")
    assert failure.value.args[0]["H"] == STORED_HINT
    assert state(postgres, new_db) == unchanged


@pytest.mark.parametrize("new_db", [BEFORE_0024, None], indirect=True, ids=["23", "latest"])
def test_a_materialized_view_a_definer_function_reads(
        postgres: PostgresServer, new_db: str, new_db_admin: Conn, new_db_owner: Conn,
        new_db_app_user: Conn) -> None:
    for statement in MATERIALIZED:
        new_db_admin.run(statement)
    with trigger_off(new_db_admin):  # since 0025 refused when made
        new_db_owner.run(DEFINER.replace("app.support_bookings", "app.all_bookings"))
    assert in_tenant(new_db_app_user, TENANT_B, SEEN) == [[2]]
    if before_0024(new_db_admin):  # negative control
        assert enforce.gaps(new_db_admin) == []
        return
    refused_by_check_and_run(postgres, new_db, new_db_admin, (
        "app.all_bookings: reaches materialized view app.all_bookings as boom_owner for "
        "app_user (through SECURITY DEFINER functions of boom_owner): it has no row level "
        "security, so every tenant sees the rows it holds of app.bookings. REVOKE SELECT ON "
        "app.all_bookings FROM boom_owner, or read the tables through a plain view"))


def test_a_materialized_view_of_no_tenant_table_is_not_a_finding(
        new_db_admin: Conn, new_db_owner: Conn) -> None:
    new_db_admin.run("CREATE MATERIALIZED VIEW app.calendar AS "
                     "SELECT generate_series(1, 12) AS month")
    new_db_admin.run("GRANT SELECT ON app.calendar TO boom_owner")
    new_db_owner.run("CREATE VIEW app.months AS SELECT * FROM app.calendar")
    assert enforce.gaps(new_db_admin) == []

def test_a_table_an_operators_view_reads_is_refused_a_tenant_id(
        new_db_admin: Conn, new_db_owner: Conn) -> None:
    new_db_owner.run("CREATE TABLE app.notes (note text)")
    new_db_admin.run("CREATE VIEW app.support_notes AS SELECT * FROM app.notes")
    new_db_admin.run("GRANT SELECT ON app.support_notes TO app_user")  # no tenant rows yet
    with pytest.raises(pg8000.native.DatabaseError) as failure:
        new_db_owner.run("ALTER TABLE app.notes "
                         "ADD COLUMN tenant_id uuid NOT NULL DEFAULT app.current_tenant_id()")
    assert failure.value.args[0]["M"].startswith(
        "app.support_notes: a view app_user may read, run as ")
    assert failure.value.args[0]["H"] == BYPASSING_VIEW_HINT
    assert new_db_admin.run("SELECT count(*) FROM app.tenant_tables() "
                            "WHERE name = 'app.notes'") == [[0]]
