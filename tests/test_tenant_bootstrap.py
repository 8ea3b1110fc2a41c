"""The bootstrap on real PostgreSQL 15: idempotent, upgradable, all-or-nothing, and its CLI.
What each run enforces at its end is in test_tenant_bootstrap_enforce.py."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap, migration_files, passwords
from lambdas.tenant_bootstrap.__main__ import main, parse_dsn
from tests.fixture_bootstrap import (
    FreshDatabase,
    create_rds_like_master,
    hand_to_master,
    schema_dump,
    trigger_off,
    versions,
)
from tests.fixture_paths import ROOT
from tests.fixture_postgres import (
    PostgresServer,
    bootstrapped_database,
    logs_in,
    new_role_passwords,
)
from tests.fixture_synth import Synthesized
from tests.fixture_tenants import (
    app_user_connection_limit,
)


def test_bootstrap_twice_changes_nothing(postgres: PostgresServer, fresh: FreshDatabase) -> None:
    database, conn = fresh.name, fresh.conn
    first = bootstrap.apply(conn)
    before, recorded = schema_dump(postgres, database), versions(conn)
    second = bootstrap.apply(conn)
    assert first.applied == tuple(range(1, bootstrap.LATEST_VERSION + 1))
    assert second.applied == () and second.version == bootstrap.LATEST_VERSION
    assert schema_dump(postgres, database) == before and versions(conn) == recorded


def test_upgrade_from_the_previous_version(fresh: FreshDatabase) -> None:
    conn = fresh.conn
    assert bootstrap.apply(conn, target_version=bootstrap.LATEST_VERSION - 1).version == \
        bootstrap.LATEST_VERSION - 1
    result = bootstrap.apply(conn)
    assert result.applied == (bootstrap.LATEST_VERSION,)
    assert [row[0] for row in versions(conn)] == list(range(1, bootstrap.LATEST_VERSION + 1))
    assert conn.run("SELECT count(*) FROM app.audit_tenant_tables()") == [[0]]


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


def test_a_failing_migration_changes_nothing(postgres: PostgresServer, fresh: FreshDatabase,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a migration set whose last step fails half-way
    real = bootstrap.load_migrations()
    broken = [*real[:-1], migration_files.Migration(real[-1].version, real[-1].name,
                                              real[-1].sql + "\nSELECT 1/0;")]
    monkeypatch.setattr(bootstrap, "load_migrations", lambda: broken)
    before = schema_dump(postgres, fresh.name)
    # When it is applied, Then it fails clearly and the database is as it was
    with pytest.raises(bootstrap.BootstrapError, match="nothing was changed: division by zero"):
        bootstrap.apply(fresh.conn)
    assert schema_dump(postgres, fresh.name) == before


def test_unknown_version_and_downgrade_are_refused(fresh: FreshDatabase) -> None:
    conn = fresh.conn
    with pytest.raises(bootstrap.BootstrapError, match="unknown version 99"):
        bootstrap.apply(conn, target_version=99)
    bootstrap.apply(conn)
    with pytest.raises(bootstrap.BootstrapError, match="refusing to downgrade"):
        bootstrap.apply(conn, target_version=1)


def test_an_applied_migration_edited_afterwards_is_refused(
        postgres: PostgresServer, fresh: FreshDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    # Databases already past a migration would never run its new text: the fix is a new one.
    bootstrap.apply(fresh.conn, target_version=2)
    real = bootstrap.load_migrations()
    edited = [real[0], migration_files.Migration(2, real[1].name, real[1].sql + "\n-- tweak"),
              *real[2:]]
    monkeypatch.setattr(bootstrap, "load_migrations", lambda: edited)
    before = schema_dump(postgres, fresh.name)
    with pytest.raises(bootstrap.BootstrapError, match=(
            f"^migration 0002_{real[1].name} changed after it was "
            "applied; add a new migration instead")):
        bootstrap.apply(fresh.conn)
    assert schema_dump(postgres, fresh.name) == before
    assert [row[:2] for row in versions(fresh.conn)] == [[1, real[0].name], [2, real[1].name]]


@pytest.mark.parametrize(("name", "message"), [
    ("0002-no-underscore.sql", "migration files are named NNNN_name.sql"),
    ("0003_skips_two.sql", "numbered 0001, 0002, ... without gaps"),
])
def test_a_misnamed_or_missing_migration_file_is_refused_before_connecting(
        tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(bootstrap.BootstrapError, match=re.escape(message)):
        migration_files.load_migrations(tmp_path)


def test_passwords_for_unknown_roles_are_refused_before_anything_changes(
        postgres: PostgresServer, fresh: FreshDatabase) -> None:
    before = schema_dump(postgres, fresh.name)
    with pytest.raises(bootstrap.BootstrapError, match=re.escape(
            "passwords given for unknown roles ['postgres']; roles are app_user, boom_owner")):
        bootstrap.apply(fresh.conn, role_passwords={"postgres": "x" * 32})
    assert schema_dump(postgres, fresh.name) == before


def test_a_password_of_exactly_16_characters_is_long_enough() -> None:
    # The shortest a person's choice may be (the generated secrets have 32); 15 is refused
    # below, so the line is drawn between the two.
    passwords.check_role_passwords({"app_user": "p" * 16, "boom_owner": "q" * 16})
    assert passwords.long_enough("p" * 16) and not passwords.long_enough("p" * 15)


@pytest.mark.parametrize("password", ["", "short-pw-15char", None])
def test_a_short_or_empty_password_is_refused_before_anything_changes(
        postgres: PostgresServer, fresh: FreshDatabase, password: str | None,
        role_passwords: dict[str, str]) -> None:
    before = schema_dump(postgres, fresh.name)
    with pytest.raises(bootstrap.BootstrapError, match=re.escape(
            "the password given for boom_owner is shorter than 16 characters")) as refused:
        bootstrap.apply(fresh.conn, role_passwords={"app_user": role_passwords["app_user"],
                                                    "boom_owner": password})  # type: ignore
    assert schema_dump(postgres, fresh.name) == before
    assert not password or password not in str(refused.value)


def test_cli_refuses_an_empty_password_variable(capsys: pytest.CaptureFixture[str]) -> None:
    # An exported but empty BOOM_OWNER_PASSWORD: refused, not set as the empty password.
    # Port 1 refuses connections: the check comes first, it needs no database.
    assert main(["--dsn", "postgresql://u@127.0.0.1:1/db?sslmode=disable"],
                environ={"BOOM_OWNER_PASSWORD": ""}) == 1
    assert "password given for boom_owner is shorter than 16" in capsys.readouterr().err


@pytest.mark.parametrize("password", [
    "pasted-from-a-file-32-characters\r", "pasted-from-a-file-32-characters\n",
    "tab\tin-a-password-pw"])
def test_cli_refuses_a_password_variable_with_a_line_break(
        password: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Set as it is, the role would log in with that password, not its secret's.
    # Port 1 refuses connections: the check comes first, it needs no database.
    assert main(["--dsn", "postgresql://u@127.0.0.1:1/db?sslmode=disable"],
                environ={"BOOM_APP_USER_PASSWORD": password}) == 1
    err = capsys.readouterr().err
    assert "password given for app_user contains a line break or control character" in err
    assert password.strip() not in err and "cannot connect" not in err


def test_role_passwords_are_set_as_scram_verifiers(postgres: PostgresServer, fresh: FreshDatabase,
                                                   role_passwords: dict[str, str]) -> None:
    # Roles are cluster-wide: set the session's own password, which other tests rely on.
    database, conn = fresh.name, fresh.conn
    password = role_passwords["app_user"]
    bootstrap.apply(conn, role_passwords={"app_user": password})
    stored = conn.run("SELECT rolpassword FROM pg_authid WHERE rolname = 'app_user'")[0][0]
    assert stored.startswith("SCRAM-SHA-256$4096:") and password not in stored
    app = postgres.connect(database, user="app_user", password=password)
    assert app.run("SELECT current_user") == [["app_user"]]
    app.close()


def run_cli(dsn: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """`python -m lambdas.tenant_bootstrap --dsn DSN` as an operator runs it, with only
    `environ` for its environment."""
    return subprocess.run([sys.executable, "-m", "lambdas.tenant_bootstrap", "--dsn", dsn],
                          cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60,
                          check=False)


def test_cli_applies_the_bootstrap(postgres: PostgresServer,
                                   role_passwords: dict[str, str]) -> None:
    database = postgres.create_database()
    dsn = (f"postgresql://postgres@127.0.0.1:{postgres.port}/{database}"
           f"?sslmode=verify-full&sslrootcert={postgres.ca_file}")
    result = run_cli(dsn, PGPASSWORD=postgres.password,
                     BOOM_APP_USER_PASSWORD=role_passwords["app_user"])
    assert result.returncode == 0, result.stderr
    every = ", ".join(str(version) for version in range(1, bootstrap.LATEST_VERSION + 1))
    assert (f"tenant bootstrap: {database} at version {bootstrap.LATEST_VERSION} (was 0; "
            f"applied: {every}; passwords set: app_user)") in result.stdout
    assert role_passwords["app_user"] not in result.stdout + result.stderr
    again = run_cli(dsn, PGPASSWORD=postgres.password)
    assert again.returncode == 0, again.stderr
    assert (f"at version {bootstrap.LATEST_VERSION} (was {bootstrap.LATEST_VERSION}; applied: "
            "none; passwords set: none)") in again.stdout


def test_cli_applies_up_to_the_target_version_then_the_rest(
        postgres: PostgresServer, fresh: FreshDatabase,
        capsys: pytest.CaptureFixture[str]) -> None:
    dsn = postgres.dsn(fresh.name)
    assert main(["--dsn", dsn, "--target-version", "3"], environ={}) == 0
    assert f"{fresh.name} at version 3 (was 0; applied: 1, 2, 3;" in capsys.readouterr().out
    assert [row[0] for row in versions(fresh.conn)] == [1, 2, 3]
    assert main(["--dsn", dsn], environ={}) == 0
    rest = ", ".join(str(version) for version in range(4, bootstrap.LATEST_VERSION + 1))
    assert f"at version {bootstrap.LATEST_VERSION} (was 3; applied: {rest};" in \
        capsys.readouterr().out


@pytest.mark.usefixtures("role_passwords_back")
def test_cli_sets_the_passwords_the_environment_gives(
        postgres: PostgresServer, role_passwords: dict[str, str]) -> None:
    database = bootstrapped_database(postgres, role_passwords)
    new = new_role_passwords()
    assert main(["--dsn", postgres.dsn(database)], environ={
        "BOOM_APP_USER_PASSWORD": new["app_user"], "BOOM_OWNER_PASSWORD": new["boom_owner"]}) == 0
    for role in ("app_user", "boom_owner"):
        assert logs_in(postgres, database, role, new[role])
        assert not logs_in(postgres, database, role, role_passwords[role])


def test_cli_without_a_dsn_says_what_it_needs_and_how_to_call_it(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps help to the terminal's width
    with pytest.raises(SystemExit) as exited:
        main([], environ={})
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m lambdas.tenant_bootstrap [-h] --dsn DSN")
    assert "error: the following arguments are required: --dsn" in err
    with pytest.raises(SystemExit) as exited:
        main(["--help"], environ={})
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    # The module's first line, and each option with what it takes and what it does
    assert "Operators and local databases: `python -m lambdas.tenant_bootstrap" in shown
    for option, help_begins in [("--dsn DSN", "postgresql://user[:password]@host"),
                                ("--target-version N", "apply up to this version"),
                                ("--app-user-connection-limit N", "set app_user's CONNECTION"),
                                ("--app-user-transaction-minutes N", "end app_user transactions"),
                                ("--check", "change nothing")]:
        assert re.search(rf"^  {re.escape(option)}\s+{re.escape(help_begins)}", shown, re.M), \
            option


def test_a_dsn_names_an_ipv6_host_in_brackets() -> None:
    target = parse_dsn("postgresql://boom@[::1]:6543/boom_booking", environ={})
    assert (target.host, target.port, target.database) == ("::1", 6543, "boom_booking")


@pytest.mark.parametrize("port", [1, 65535])
def test_a_dsn_port_may_be_any_from_1_to_65535(port: int) -> None:
    assert parse_dsn(f"postgresql://boom@127.0.0.1:{port}/boom_booking", environ={}).port == port


def test_a_dsn_without_a_port_names_postgresqls_5432() -> None:
    assert parse_dsn("postgresql://boom@db.example.com/boom_booking", environ={}).port == 5432


def test_a_dsn_is_percent_decoded_as_libpq_decodes_it() -> None:
    target = parse_dsn("postgresql://boom%2Badmin:p%40ss@db.example.com:6543/boom%20booking"
                       "?sslrootcert=%2Ftmp%2Fca.pem", environ={})
    assert (target.user, target.password, target.host, target.port, target.database,
            target.ca_file) == ("boom+admin", "p@ss", "db.example.com", 6543, "boom booking",
                                "/tmp/ca.pem")


@pytest.mark.parametrize(("dsn", "message"), [
    ("mysql://x@h/db", "expected postgresql://"),
    ("postgresql://127.0.0.1:5432/db", "name the user and the database"),
    ("postgresql://u@127.0.0.1:notaport/db", "port is not a number from 1 to 65535"),
    ("postgresql://u@127.0.0.1:0/db", "port is not a number from 1 to 65535"),  # was 5432
    ("postgresql://u@127.0.0.1:70000/db", "port is not a number from 1 to 65535"),
    ("postgresql://u@127.0.0.1:65536/db", "port is not a number from 1 to 65535"),
    ("postgresql://u@127.0.0.1/db?sslmode=verify-full&sslrootcrt=ca.pem",
     "parameters sslrootcrt are not supported: use sslmode and sslrootcert"),
    # libpq verifies a given root certificate under require; this would not: refused
    ("postgresql://u@127.0.0.1/db?sslmode=require&sslrootcert=ca.pem",
     "sslrootcert is used with sslmode=verify-full only, not require"),
    ("postgresql://u@127.0.0.1/db?sslrootcert=", "sslrootcert is empty"),
    # urlsplit raised ValueError (a traceback) for these two
    ("postgresql://u@[::1/db", "a host in brackets is an IPv6 address"),
    ("postgresql://u@[db.example.com]/db", "a host in brackets is an IPv6 address"),
    # urlsplit dropped a line break, a fragment and the first of two values without a word
    ("postgresql://u@127.0.0.1/boom_booking\n", "contains a space, line break or control"),
    ("postgresql://u@127.0.0.1/boom_booking#x", "a DSN has no #fragment"),
    ("postgresql://u@127.0.0.1/db?sslmode=disable&sslmode=verify-full",
     "sslmode given more than once"),
])
def test_cli_rejects_bad_dsns(dsn: str, message: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dsn", dsn], environ={}) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("dsn", "message"), [
    ("postgresql://boom:S3cret-pw@127.0.0.1:notaport/db", "port is not a number"),
    ("postgresql://boom:S3cret-pw@/db", "expected postgresql://"),
    ("postgresql://:S3cret-pw@127.0.0.1/", "name the user and the database"),
    ("postgresql://boom:S3cret%40pw@127.0.0.1:x/db", "port is not a number"),  # percent-encoded
    # Not percent-encoded: the netloc ends at the '/' or '#', and the DSN was shown in full.
    ("postgresql://boom:S3cret/pw@127.0.0.1/db", "percent-encode '/', '?', '#' and '@'"),
    ("postgresql://boom:S3cret#pw@127.0.0.1/db", "percent-encode '/', '?', '#' and '@'"),
    ("postgresql://boom:S3cret?pw@127.0.0.1/db", "percent-encode '/', '?', '#' and '@'"),
    ("postgresql://boom:S3cret@[::1/db", "a host in brackets"),
    ("postgresql://boom:S3cret pw@127.0.0.1/db", "contains a space"),
    ("postgresql:///db?password=S3cret-pw", "expected postgresql://"),
    ("postgresql://boom@127.0.0.1/db?sslmode=require&password=S3cret&password=S3cret",
     "password given more than once"),
])
def test_a_password_in_a_bad_dsn_never_reaches_the_error(
        dsn: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dsn", dsn], environ={}) == 1
    err = capsys.readouterr().err
    assert message in err
    assert "S3cret" not in err and "pw" not in err.replace("--dsn", "")


@pytest.mark.parametrize(("args", "message"), [
    (["--target-version", "0"], "--target-version: '0': this bootstrap has versions 1 to"),
    (["--target-version", "99"], "--target-version: '99': this bootstrap has versions 1 to"),
    # str.isdigit() passes both; int() refuses the first and reads the second as 3
    (["--target-version", "²"], "--target-version: '²': this bootstrap has versions 1 to"),
    (["--app-user-connection-limit", "٣"], "--app-user-connection-limit: '٣': use a whole"),
    (["--app-user-connection-limit", "0"], "--app-user-connection-limit: '0': use a whole"),
    (["--app-user-connection-limit", "-5"], "--app-user-connection-limit: '-5': use a whole"),
    (["--app-user-transaction-minutes", "0"],
     "--app-user-transaction-minutes: '0': use a whole number from 1 to 1440 (minutes)"),
    (["--app-user-transaction-minutes", "2h"], "--app-user-transaction-minutes: '2h': use a"),
    (["--check", "--app-user-transaction-minutes", "5"], "--check takes only --dsn"),
])
def test_cli_refuses_bad_arguments_before_connecting(
        args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Port 1 refuses connections: a message about the connection would mean it tried first.
    with pytest.raises(SystemExit) as exited:
        main(["--dsn", "postgresql://u@127.0.0.1:1/db", *args], environ={})
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "cannot connect" not in err


def test_an_at_sign_in_the_ca_files_path_is_not_taken_for_a_password(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A home directory such as /home/jane@corp: the run goes on to load the file
    path = tmp_path / "jane@corp" / "ca.pem"
    assert main(["--dsn", f"postgresql://u@127.0.0.1:1/db?sslrootcert={path}"],
                environ={}) == 1
    err = capsys.readouterr().err
    assert f"sslrootcert '{path}': cannot load CA certificates from it" in err
    assert "percent-encode" not in err


@pytest.mark.parametrize(("ca_file", "reason"), [
    ("missing.pem", "No such file or directory"),
    ("", "Is a directory"),  # the test's directory itself
    ("not-a-certificate.pem", "NO_CERTIFICATE_OR_CRL_FOUND"),
])
def test_cli_names_an_unusable_ca_file_before_connecting(
        ca_file: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "not-a-certificate.pem").write_text("not a certificate\n")
    path = tmp_path / ca_file
    # Port 1 refuses connections: a message about the connection would mean it tried first.
    assert main(["--dsn", f"postgresql://u@127.0.0.1:1/db?sslrootcert={path}"],
                environ={}) == 1
    err = capsys.readouterr().err
    assert f"sslrootcert '{path}': cannot load CA certificates from it" in err
    assert reason in err and "Traceback" not in err and "cannot connect" not in err


def test_cli_fails_clearly_on_unreachable_host_and_bad_password(
        postgres: PostgresServer, capsys: pytest.CaptureFixture[str]) -> None:
    closed = "postgresql://postgres@127.0.0.1:1/postgres?sslmode=disable"
    assert main(["--dsn", closed], environ={}) == 1
    assert "cannot connect to postgres@127.0.0.1:1/postgres" in capsys.readouterr().err
    # An IPv6 host is shown in brackets, as the DSN gives it: "::1:1" would not say the port
    assert main(["--dsn", "postgresql://postgres@[::1]:1/postgres?sslmode=disable"],
                environ={}) == 1
    assert "cannot connect to postgres@[::1]:1/postgres" in capsys.readouterr().err
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


def test_cli_names_the_fix_when_the_user_may_not_create_the_first_runs_schemas(
        postgres: PostgresServer, rds_like_master: tuple[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a new database its would-be bootstrap user does not own (nor may create in)
    user, password = rds_like_master
    database = postgres.create_database("notowned")
    dsn = f"postgresql://{user}@127.0.0.1:{postgres.port}/{database}?sslmode=require"
    # When it runs the first bootstrap, then it fails saying what it may not do and the fix,
    # not PostgreSQL's bare "permission denied", and made nothing
    assert main(["--dsn", dsn], environ={"PGPASSWORD": password}) == 1
    err = capsys.readouterr().err
    assert f"{user} may not create schemas in database {database}" in err
    assert "run the bootstrap as the database's owner" in err and "nothing was changed" in err
    admin = postgres.connect(database)
    assert admin.run("SELECT to_regnamespace('boom_meta') IS NULL, "
                     "to_regnamespace('app') IS NULL") == [[True, True]]
    admin.close()


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


@pytest.fixture(scope="module")
def rds_like_master(postgres: PostgresServer) -> tuple[str, str]:
    return create_rds_like_master(postgres)


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
        hand_to_master(admin, user, migration)
    assert refused == [m.version for m in bootstrap.load_migrations() if "EVENT TRIGGER" in m.sql]
    assert bootstrap.current_version(master) == bootstrap.LATEST_VERSION
    assert master.run("SELECT count(*) FROM app.audit_tenant_tables()") == [[0]]
    # and its restore revokes, as the tables' owner's member, what RLS does not cover (0008)
    with trigger_off(admin):
        admin.run("GRANT ALL ON app.bookings TO app_user")
    admin.close()
    assert bootstrap.apply(master, role_passwords={}).repaired == (
        "REFERENCES, TRIGGER, TRUNCATE on app.bookings revoked from app_user and PUBLIC",)
    assert master.run("SELECT count(*) FROM app.audit_tenant_privileges()") == [[0]]
    master.close()


def test_0001_never_changes_superuser_or_bypassrls_which_rds_masters_cannot() -> None:
    first = bootstrap.load_migrations()[0].sql
    for statement in first.split(";"):
        if "ALTER ROLE" in statement.upper():
            assert not re.search(r"\b(NO)?(SUPERUSER|BYPASSRLS)\b", statement.upper()), statement


def test_tables_can_be_created_before_bookings_exists(fresh: FreshDatabase) -> None:
    # The event trigger runs for every new table; at version 1 there is no app.bookings yet,
    # and naming it must not break everyone else's DDL.
    conn = fresh.conn
    bootstrap.apply(conn, target_version=1)
    conn.run("CREATE TABLE public.unrelated (id int)")
    conn.run("ALTER TABLE public.unrelated ADD COLUMN tenant_id uuid")
    assert conn.run("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'unrelated'") == \
        [[True]]


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
        postgres: PostgresServer, fresh: FreshDatabase, limit: object) -> None:
    with pytest.raises(bootstrap.BootstrapError, match="connection limit .*at least 1"):
        bootstrap.apply(fresh.conn, app_user_connection_limit=limit)  # type: ignore[arg-type]
    assert bootstrap.current_version(fresh.conn) == 0
    assert app_user_connection_limit(postgres) == -1


@pytest.mark.usefixtures("unlimited_app_user_afterwards")
def test_the_least_connection_limit_one_is_taken(postgres: PostgresServer,
                                                 fresh: FreshDatabase) -> None:
    bootstrap.apply(fresh.conn, app_user_connection_limit=1)
    assert app_user_connection_limit(postgres) == 1


@pytest.mark.usefixtures("unlimited_app_user_afterwards")
def test_cli_sets_the_connection_limit(postgres: PostgresServer) -> None:
    database = postgres.create_database()
    assert main(["--dsn", postgres.dsn(database), "--app-user-connection-limit", "72"],
                environ={}) == 0
    assert app_user_connection_limit(postgres) == 72


def test_the_tests_run_the_postgresql_major_that_the_data_stack_deploys(
        postgres: PostgresServer, dev: Synthesized) -> None:
    # Every guarantee is proven on the local server, and some rest on its major's behaviour
    # (the audit compares policies as PostgreSQL 15 deparses them; statistics, event
    # triggers): an engine upgrade must move the tests (Makefile PG_BIN, fixture_postgres) too.
    template = dev.template("Data")
    [instance] = template.find_resources("AWS::RDS::DBInstance").values()
    [parameters] = template.find_resources("AWS::RDS::DBParameterGroup").values()
    conn = postgres.connect()
    try:
        local_major = int(conn.run("SHOW server_version_num")[0][0]) // 10000
    finally:
        conn.close()
    assert instance["Properties"]["EngineVersion"] == str(local_major)
    assert parameters["Properties"]["Family"] == f"postgres{local_major}"
