"""The bootstrap on real PostgreSQL 15: idempotent, upgradable, all-or-nothing, and its CLI."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap
from lambdas.tenant_bootstrap.__main__ import main
from tests.fixture_postgres import PostgresServer, bootstrapped_database
from tests.fixture_synth import ROOT
from tests.fixture_tenants import (
    ACTS_AS_OWNER,
    MATVIEW_OF_BOOKINGS,
    app_user_connection_limit,
    widening,
)


def schema_dump(postgres: PostgresServer, database: str) -> str:
    from tests.fixture_postgres import PG_BIN
    result = subprocess.run(
        [str(PG_BIN / "pg_dump"), "--schema-only", "-h", "127.0.0.1", "-p", str(postgres.port),
         "-U", "postgres", database], env={"PGPASSWORD": postgres.password},
        capture_output=True, text=True, check=True)
    # pg_dump 15.14+ brackets its output with a random \restrict key: not schema.
    return "\n".join(line for line in result.stdout.splitlines()
                     if not line.startswith(("\\restrict", "\\unrestrict")))


def may_create_temporary(conn: pg8000.native.Connection, role: str) -> bool:
    return bool(conn.run("SELECT has_database_privilege(:r, current_database(), 'TEMPORARY')",
                         r=role)[0][0])


def versions(conn: pg8000.native.Connection) -> list[list[object]]:
    return conn.run("SELECT version, name, checksum FROM boom_meta.schema_versions ORDER BY 1")


def test_bootstrap_twice_changes_nothing(postgres: PostgresServer) -> None:
    database = postgres.create_database()
    conn = postgres.connect(database, tls=True)
    first = bootstrap.apply(conn)
    before, recorded = schema_dump(postgres, database), versions(conn)
    second = bootstrap.apply(conn)
    assert first.applied == tuple(range(1, bootstrap.LATEST_VERSION + 1))
    assert second.applied == () and second.version == bootstrap.LATEST_VERSION
    assert schema_dump(postgres, database) == before and versions(conn) == recorded
    conn.close()


def test_upgrade_from_the_previous_version(postgres: PostgresServer) -> None:
    database = postgres.create_database()
    conn = postgres.connect(database, tls=True)
    assert bootstrap.apply(conn, target_version=bootstrap.LATEST_VERSION - 1).version == \
        bootstrap.LATEST_VERSION - 1
    result = bootstrap.apply(conn)
    assert result.applied == (bootstrap.LATEST_VERSION,)
    assert [row[0] for row in versions(conn)] == list(range(1, bootstrap.LATEST_VERSION + 1))
    assert conn.run("SELECT count(*) FROM app.audit_tenant_tables()") == [[0]]
    conn.close()


def test_every_version_upgrades_step_by_step_to_the_same_schema(postgres: PostgresServer) -> None:
    # A database that saw each release in turn ends up like one bootstrapped in one go.
    stepwise, at_once = postgres.create_database(), postgres.create_database()
    conn = postgres.connect(stepwise, tls=True)
    for version in range(1, bootstrap.LATEST_VERSION + 1):
        assert bootstrap.apply(conn, target_version=version).applied == (version,)
    conn.close()
    conn = postgres.connect(at_once, tls=True)
    bootstrap.apply(conn)
    conn.close()
    assert schema_dump(postgres, stepwise).replace(stepwise, "db") == \
        schema_dump(postgres, at_once).replace(at_once, "db")


def test_a_failing_migration_changes_nothing(postgres: PostgresServer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a migration set whose last step fails half-way
    database = postgres.create_database()
    real = bootstrap.load_migrations()
    broken = [*real[:-1], bootstrap.Migration(real[-1].version, real[-1].name,
                                              real[-1].sql + "\nSELECT 1/0;")]
    monkeypatch.setattr(bootstrap, "load_migrations", lambda: broken)
    conn = postgres.connect(database, tls=True)
    before = schema_dump(postgres, database)
    # When it is applied, Then it fails clearly and the database is as it was
    with pytest.raises(bootstrap.BootstrapError, match="nothing was changed: division by zero"):
        bootstrap.apply(conn)
    assert schema_dump(postgres, database) == before
    conn.close()


def test_unknown_version_and_downgrade_are_refused(postgres: PostgresServer) -> None:
    database = postgres.create_database()
    conn = postgres.connect(database, tls=True)
    with pytest.raises(bootstrap.BootstrapError, match="unknown version 99"):
        bootstrap.apply(conn, target_version=99)
    bootstrap.apply(conn)
    with pytest.raises(bootstrap.BootstrapError, match="refusing to downgrade"):
        bootstrap.apply(conn, target_version=1)
    conn.close()


def test_role_passwords_are_set_as_scram_verifiers(postgres: PostgresServer,
                                                   role_passwords: dict[str, str]) -> None:
    # Roles are cluster-wide: set the session's own password, which other tests rely on.
    database = postgres.create_database()
    conn = postgres.connect(database, tls=True)
    password = role_passwords["app_user"]
    bootstrap.apply(conn, role_passwords={"app_user": password})
    stored = conn.run("SELECT rolpassword FROM pg_authid WHERE rolname = 'app_user'")[0][0]
    assert stored.startswith("SCRAM-SHA-256$4096:") and password not in stored
    app = postgres.connect(database, user="app_user", password=password)
    assert app.run("SELECT current_user") == [["app_user"]]
    app.close()
    conn.close()


def test_cli_applies_the_bootstrap(postgres: PostgresServer,
                                   role_passwords: dict[str, str]) -> None:
    database = postgres.create_database()
    dsn = (f"postgresql://postgres@127.0.0.1:{postgres.port}/{database}"
           f"?sslmode=verify-full&sslrootcert={postgres.ca_file}")
    result = subprocess.run([sys.executable, "-m", "lambdas.tenant_bootstrap", "--dsn", dsn],
                            cwd=ROOT, env={"PGPASSWORD": postgres.password,
                                           "BOOM_APP_USER_PASSWORD": role_passwords["app_user"]},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert f"at version {bootstrap.LATEST_VERSION}" in result.stdout
    assert "passwords set: app_user" in result.stdout
    assert role_passwords["app_user"] not in result.stdout + result.stderr


@pytest.mark.parametrize(("dsn", "message"), [
    ("mysql://x@h/db", "expected postgresql://"),
    ("postgresql://127.0.0.1:5432/db", "name the user and the database"),
    ("postgresql://u@127.0.0.1:notaport/db", "port is not a number"),
])
def test_cli_rejects_bad_dsns(dsn: str, message: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dsn", dsn], environ={}) == 1
    assert message in capsys.readouterr().err


def test_cli_fails_clearly_on_unreachable_host_and_bad_password(
        postgres: PostgresServer, capsys: pytest.CaptureFixture[str]) -> None:
    closed = "postgresql://postgres@127.0.0.1:1/postgres?sslmode=disable"
    assert main(["--dsn", closed], environ={}) == 1
    assert "cannot connect to postgres@127.0.0.1:1/postgres" in capsys.readouterr().err
    wrong = (f"postgresql://postgres:wrong-secret@127.0.0.1:{postgres.port}/postgres"
             f"?sslmode=require")
    assert main(["--dsn", wrong], environ={}) == 1
    err = capsys.readouterr().err
    assert "password authentication failed" in err and "wrong-secret" not in err


def test_cli_fails_clearly_without_privileges(postgres: PostgresServer,
                                              role_passwords: dict[str, str], tenant_db: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    dsn = (f"postgresql://app_user@127.0.0.1:{postgres.port}/{tenant_db}?sslmode=require")
    assert main(["--dsn", dsn], environ={"PGPASSWORD": role_passwords["app_user"]}) == 1
    assert "nothing was changed: permission denied" in capsys.readouterr().err


def test_verify_full_checks_host_names_and_strictly_everywhere(postgres: PostgresServer) -> None:
    # Python 3.13+ (the Lambda runtime) verifies strictly by default; 3.11 here must do the same.
    import ssl
    context = bootstrap.ssl_context_for(bootstrap.Connection(
        host="db", port=5432, database="d", user="u", password=None,
        ca_file=str(postgres.ca_file)))
    assert context is not None and context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.verify_flags & ssl.VERIFY_X509_STRICT
    with pytest.raises(bootstrap.BootstrapError, match="sslmode 'prefer'"):
        bootstrap.ssl_context_for(bootstrap.Connection(
            host="db", port=5432, database="d", user="u", password=None, sslmode="prefer"))


TRIGGER_DEFINITION = ("SELECT evtevent, evttags, evtfoid::regproc::text FROM pg_event_trigger "
                      "WHERE evtname = 'boom_protect_tenant_tables'")


def _audit(conn: pg8000.native.Connection) -> list[list[object]]:
    return conn.run("SELECT * FROM app.audit_tenant_tables()")


@pytest.mark.parametrize(("remove", "repair"), [
    ("DROP EVENT TRIGGER boom_protect_tenant_tables", "re-created"),
    ("ALTER EVENT TRIGGER boom_protect_tenant_tables DISABLE", "re-enabled"),
], ids=["dropped", "disabled"])
def test_a_run_restores_the_event_trigger_and_protects_what_it_missed(
        postgres: PostgresServer, remove: str, repair: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given the trigger removed (RDS wants that before a major upgrade) and a tenant table
    # created by the owner meanwhile, unprotected
    database = postgres.create_database()
    conn = postgres.connect(database, tls=True)
    bootstrap.apply(conn)
    migrated = conn.run(TRIGGER_DEFINITION)
    conn.run(remove)
    conn.run("SET ROLE boom_owner")
    conn.run("CREATE TABLE app.late (id int, tenant_id uuid)")
    conn.run("RESET ROLE")
    assert ["app.late", "row level security is not forced"] in _audit(conn)
    conn.close()
    # When the bootstrap runs again (here through the operators' CLI)
    dsn = (f"postgresql://postgres:{postgres.password}@127.0.0.1:{postgres.port}/{database}"
           f"?sslmode=verify-full&sslrootcert={postgres.ca_file}")
    assert main(["--dsn", dsn], environ={}) == 0
    out = capsys.readouterr().out
    # Then the trigger is back, the table is protected, and it says so
    assert f"repaired: event trigger boom_protect_tenant_tables {repair}" in out
    assert "repaired: app.late protected" in out
    assert postgres.password not in out
    conn = postgres.connect(database, tls=True)
    assert conn.run("SELECT evtenabled FROM pg_event_trigger "
                    "WHERE evtname = 'boom_protect_tenant_tables'") == [["O"]]
    assert conn.run(TRIGGER_DEFINITION) == migrated  # the same trigger the migrations make
    assert _audit(conn) == []
    assert bootstrap.apply(conn).repaired == ()
    conn.close()


@pytest.mark.parametrize(("widen", "problem"), [
    ("CREATE POLICY everyone ON app.bookings USING (true)",
     ["app.bookings", widening("everyone")]),
    # The two below contain the tenant check, which a substring audit (0001-0003) accepted.
    ("ALTER POLICY tenant_bookings_isolation ON app.bookings "
     "USING (tenant_id = (SELECT app.current_tenant_id()) OR true)",
     ["app.bookings", widening("tenant_bookings_isolation")]),
    ("CREATE POLICY writes_anywhere ON app.bookings "
     "USING (tenant_id = (SELECT app.current_tenant_id())) WITH CHECK (true)",
     ["app.bookings", widening("writes_anywhere")]),
    # Made by the master, which bypasses RLS here: it holds every tenant's rows (0004).
    ("CREATE MATERIALIZED VIEW app.booked AS SELECT resource FROM app.bookings; "
     "GRANT SELECT ON app.booked TO app_user",
     ["app.booked", MATVIEW_OF_BOOKINGS]),
], ids=["extra-policy", "tenant-policy-or-true", "tenant-using-any-check", "materialized-view"])
def test_a_gap_it_will_not_override_fails_the_run_and_changes_nothing(
        postgres: PostgresServer, widen: str, problem: list[str]) -> None:
    # Given a gap someone opened by hand while the trigger was dropped
    database = postgres.create_database()
    conn = postgres.connect(database, tls=True)
    bootstrap.apply(conn)
    conn.run("DROP EVENT TRIGGER boom_protect_tenant_tables")
    conn.run(widen)
    assert problem in _audit(conn)
    before = schema_dump(postgres, database)
    # When the bootstrap runs, Then it names the gap and the fix, and rolls everything back
    with pytest.raises(bootstrap.BootstrapError, match=r"will not override: .*" + re.escape(
            ": ".join(problem)) + r".*Fix them in a migration"):
        bootstrap.apply(conn)
    assert schema_dump(postgres, database) == before
    conn.close()


def test_a_run_refuses_to_finish_while_app_user_can_act_as_the_owner(
        postgres: PostgresServer) -> None:
    database = postgres.create_database()
    conn = postgres.connect(database, tls=True)
    bootstrap.apply(conn)
    before = schema_dump(postgres, database)
    conn.run("GRANT boom_owner TO app_user")  # cluster-wide: revoked below whatever happens
    try:
        with pytest.raises(bootstrap.BootstrapError, match=re.escape(
                f"app.bookings: {ACTS_AS_OWNER}")):
            bootstrap.apply(conn)
    finally:
        conn.run("REVOKE boom_owner FROM app_user")
    assert schema_dump(postgres, database) == before
    assert bootstrap.apply(conn).applied == ()  # and once revoked, the run completes
    conn.close()


def test_a_run_takes_temporary_back_from_app_user(postgres: PostgresServer) -> None:
    # 0006 takes TEMPORARY from app_user (a temporary table outlives a pooled transaction,
    # test_pgbouncer_session_state.py); boom_owner, the migrator, keeps it.
    database = postgres.create_database()
    conn = postgres.connect(database, tls=True)
    bootstrap.apply(conn)
    assert may_create_temporary(conn, "app_user") is False
    assert may_create_temporary(conn, "boom_owner") is True
    # Given PUBLIC has it again (as after a logical restore into a new database)
    conn.run(f"GRANT TEMPORARY ON DATABASE {database} TO PUBLIC")
    assert may_create_temporary(conn, "app_user") is True
    # When the bootstrap runs, Then it takes it back and says so
    result = bootstrap.apply(conn)
    assert result.applied == ()
    assert result.repaired == ("TEMPORARY on the database revoked from PUBLIC and app_user",)
    assert may_create_temporary(conn, "app_user") is False
    assert may_create_temporary(conn, "boom_owner") is True
    conn.close()


def test_a_run_that_cannot_take_temporary_back_refuses_and_changes_nothing(
        postgres: PostgresServer) -> None:
    # Given app_user holds TEMPORARY from a grantor other than the database's owner: the
    # owner's REVOKE (the bootstrap's repair) does not reach such a grant
    database = postgres.create_database()
    conn = postgres.connect(database, tls=True)
    bootstrap.apply(conn)
    grantor, password = f"grantor_{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    conn.run(f"CREATE ROLE {grantor} LOGIN PASSWORD {pg8000.native.literal(password)}")
    conn.run(f"GRANT TEMPORARY ON DATABASE {database} TO {grantor} WITH GRANT OPTION")
    other = postgres.connect(database, user=grantor, password=password, tls=True)
    other.run(f"GRANT TEMPORARY ON DATABASE {database} TO app_user")
    other.close()
    recorded = versions(conn)
    # When the bootstrap runs, Then it names the gap and the fix, and changes nothing
    with pytest.raises(bootstrap.BootstrapError, match=re.escape(
            f"database: app_user may create temporary tables in database {database}, ") +
            r".*REVOKE TEMPORARY ON DATABASE .* FROM PUBLIC, app_user, and from any role.*"
            r"nothing was changed"):
        bootstrap.apply(conn)
    assert may_create_temporary(conn, "app_user") is True and versions(conn) == recorded
    conn.run(f"REVOKE TEMPORARY ON DATABASE {database} FROM {grantor} CASCADE")
    assert bootstrap.apply(conn).repaired == ()  # and once that grant is gone, all is well
    conn.run(f"DROP OWNED BY {grantor}")
    conn.run(f"DROP ROLE {grantor}")
    conn.close()


def test_policies_that_only_narrow_pass_the_audit(postgres: PostgresServer) -> None:
    # Per-command policies with exactly the tenant check, and any restrictive policy, add
    # no access: the audit stays clean and the bootstrap completes.
    database = postgres.create_database()
    conn = postgres.connect(database, tls=True)
    bootstrap.apply(conn)
    conn.run("SET ROLE boom_owner")
    conn.run("CREATE POLICY reads ON app.bookings FOR SELECT "
             "USING (tenant_id = (SELECT app.current_tenant_id()))")
    conn.run("CREATE POLICY inserts ON app.bookings FOR INSERT "
             "WITH CHECK (tenant_id = (SELECT app.current_tenant_id()))")
    conn.run("CREATE POLICY future_only ON app.bookings AS RESTRICTIVE FOR INSERT "
             "WITH CHECK (starts_at > now() - interval '1 day')")
    conn.run("RESET ROLE")
    assert _audit(conn) == []
    assert bootstrap.apply(conn).repaired == ()
    conn.close()


@pytest.fixture(scope="module")
def rds_like_master(postgres: PostgresServer) -> tuple[str, str]:
    """A master user shaped like RDS's: LOGIN, CREATEROLE, CREATEDB, not a superuser."""
    name, password = "rds_like_master", secrets.token_urlsafe(16)
    conn = postgres.connect()
    conn.run(f"CREATE ROLE {name} LOGIN CREATEROLE CREATEDB PASSWORD "
             f"{pg8000.native.literal(password)}")
    conn.close()
    return name, password


def test_the_bootstrap_needs_no_superuser_beyond_what_rds_grants_its_master(
        postgres: PostgresServer, rds_like_master: tuple[str, str]) -> None:
    # Given a database owned by an RDS-like master, as RDS creates it
    user, password = rds_like_master
    database = f"rds_{secrets.token_hex(4)}"
    admin = postgres.connect()
    admin.run(f"CREATE DATABASE {database} OWNER {user}")
    admin.close()
    master = postgres.connect(database, user=user, password=password, tls=True)
    admin = postgres.connect(database, tls=True)
    # When the master applies each version in turn
    refused = []
    for migration in bootstrap.load_migrations():
        try:
            bootstrap.apply(master, target_version=migration.version, role_passwords={})
            continue
        except bootstrap.BootstrapError as err:
            # Then the only statements plain PostgreSQL refuses it are event-trigger ones,
            # which RDS lets its master run; everything else (roles, grants, schema) is within
            # its rights, and the refused run changed nothing.
            assert re.search("(permission denied to create|must be owner of) event trigger",
                             str(err)), err
            assert bootstrap.current_version(master) == migration.version - 1
            refused.append(migration.version)
        # A superuser applies that version instead (standing in for RDS's allowance) and hands
        # the master what it would have created itself.
        bootstrap.apply(admin, target_version=migration.version)
        if migration.version == 1:
            admin.run(f"ALTER SCHEMA boom_meta OWNER TO {user}")
            admin.run(f"ALTER TABLE boom_meta.schema_versions OWNER TO {user}")
            admin.run(f"ALTER FUNCTION app.protect_new_tenant_tables() OWNER TO {user}")
            admin.run(f"GRANT boom_owner TO {user}")  # 0001's GRANT ... TO CURRENT_USER
    admin.close()
    assert refused == [m.version for m in bootstrap.load_migrations() if "EVENT TRIGGER" in m.sql]
    assert bootstrap.current_version(master) == bootstrap.LATEST_VERSION
    assert master.run("SELECT count(*) FROM app.audit_tenant_tables()") == [[0]]
    master.close()


def test_0001_never_changes_superuser_or_bypassrls_which_rds_masters_cannot() -> None:
    first = bootstrap.load_migrations()[0].sql
    for statement in first.split(";"):
        if "ALTER ROLE" in statement.upper():
            assert not re.search(r"\b(NO)?(SUPERUSER|BYPASSRLS)\b", statement.upper()), statement


def test_tables_can_be_created_before_bookings_exists(postgres: PostgresServer) -> None:
    # The event trigger runs for every new table; at version 1 there is no app.bookings yet,
    # and naming it must not break everyone else's DDL.
    database = postgres.create_database()
    conn = postgres.connect(database, tls=True)
    bootstrap.apply(conn, target_version=1)
    conn.run("CREATE TABLE public.unrelated (id int)")
    conn.run("ALTER TABLE public.unrelated ADD COLUMN tenant_id uuid")
    assert conn.run("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'unrelated'") == \
        [[True]]
    conn.close()


@pytest.mark.usefixtures("unlimited_app_user_afterwards")
def test_postgres_caps_app_user_at_the_connection_limit(postgres: PostgresServer,
                                                       role_passwords: dict[str, str]) -> None:
    # Given the bootstrap run with a limit of 2 for app_user
    database = bootstrapped_database(postgres, role_passwords, app_user_connection_limit=2)
    assert app_user_connection_limit(postgres) == 2
    # When app_user opens a third connection, Then PostgreSQL refuses it
    held = [postgres.connect(database, user="app_user", password=role_passwords["app_user"])
            for _ in range(2)]
    try:
        with pytest.raises(pg8000.native.DatabaseError, match="too many connections for role"):
            postgres.connect(database, user="app_user", password=role_passwords["app_user"])
        # while the owner (migrations) still gets in.
        owner = postgres.connect(database, user="boom_owner",
                                 password=role_passwords["boom_owner"])
        owner.close()
    finally:
        for conn in held:
            conn.close()


@pytest.mark.parametrize("limit", [0, -1, True, "72"])
def test_a_bad_connection_limit_is_refused_before_anything_changes(
        postgres: PostgresServer, limit: object) -> None:
    database = postgres.create_database()
    conn = postgres.connect(database, tls=True)
    try:
        with pytest.raises(bootstrap.BootstrapError, match="connection limit .*at least 1"):
            bootstrap.apply(conn, app_user_connection_limit=limit)  # type: ignore[arg-type]
        assert bootstrap.current_version(conn) == 0
    finally:
        conn.close()
    assert app_user_connection_limit(postgres) == -1


@pytest.mark.usefixtures("unlimited_app_user_afterwards")
def test_cli_sets_the_connection_limit(postgres: PostgresServer) -> None:
    database = postgres.create_database()
    dsn = f"postgresql://postgres@127.0.0.1:{postgres.port}/{database}?sslmode=disable"
    assert main(["--dsn", dsn, "--app-user-connection-limit", "72"],
                environ={"PGPASSWORD": postgres.password}) == 0
    assert app_user_connection_limit(postgres) == 72
