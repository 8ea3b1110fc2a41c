"""The tenant database keeps no settings of its own (migration 0019), on real PostgreSQL 15
started with the parameter group's keepalive values.

A setting made for the database (ALTER DATABASE ... SET) overrides the parameter group in
every new session of a role without a setting of its own for it. The check reports it and a
run resets it; the negative control shows that at version 18 the override held and nothing
reported it. A server of this module's own, started with the keepalive the parameter group
sets, which the session's shared server does not.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pg8000.native
import pytest

from boom_stacks.constructs.tenant_database import DEAD_CLIENT_KEEPALIVE
from lambdas.tenant_bootstrap import bootstrap, enforce
from tests.fixture_bootstrap import create_rds_like_master, hand_to_master
from tests.fixture_postgres import (
    PostgresServer,
    bootstrapped_database,
    new_role_passwords,
    running_postgres,
)
from tests.fixture_tenants import Conn, connect_as

EARLIER_VERSION = 18  # before 0019
# An operator's settings for the moment: app_user's sessions back on the kernel's two-hour
# keepalive, and a gigabyte per sort; and a value that must never reach a finding.
OVERRIDES = {"tcp_keepalives_idle": "0", "work_mem": "'1GB'",
             "application_name": "'reporting-f00dfeed'"}
NAMES = "application_name, tcp_keepalives_idle, work_mem"
# What a session with tcp_keepalives_idle 0 gets, and SHOWs: the kernel's (7200 s by default).
KERNEL_IDLE = Path("/proc/sys/net/ipv4/tcp_keepalive_time").read_text().strip()
PARAMETER_GROUP_IDLE = str(DEAD_CLIENT_KEEPALIVE["tcp_keepalives_idle"])
OVERRIDDEN = (KERNEL_IDLE, "1GB", "reporting-f00dfeed")


@dataclass(frozen=True)
class Server:
    postgres: PostgresServer
    passwords: dict[str, str]

    def database(self, **options: object) -> str:
        """A new bootstrapped database (latest version unless `target_version`), with the
        operator's OVERRIDES set for it."""
        name = bootstrapped_database(self.postgres, self.passwords, "settings", **options)
        admin = self.postgres.connect(name)
        try:
            for setting, value in OVERRIDES.items():
                admin.run(f"ALTER DATABASE {name} SET {setting} = {value}")
        finally:
            admin.close()
        return name

    def app_user(self, database: str) -> Conn:
        """A new app_user session, as a new pooled server connection would be."""
        return connect_as(self.postgres, self.passwords, database, "app_user")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_postgres({k: str(v) for k, v in DEAD_CLIENT_KEEPALIVE.items()}) as postgres:
        yield Server(postgres, new_role_passwords())


def new_session_settings(server: Server, database: str) -> tuple[str, str, str]:
    """tcp_keepalives_idle, work_mem and application_name in a new app_user session."""
    conn = server.app_user(database)
    try:
        [row] = conn.run("SELECT current_setting('tcp_keepalives_idle'), "
                         "current_setting('work_mem'), current_setting('application_name')")
    finally:
        conn.close()
    return row[0], row[1], row[2]


def database_settings(admin: Conn) -> list[list[str]]:
    return admin.run("SELECT setconfig FROM pg_db_role_setting WHERE setrole = 0 AND "
                     "setdatabase = (SELECT oid FROM pg_database "
                     "WHERE datname = current_database())")


def temporary_for_public(admin: Conn) -> bool:
    """Whether PUBLIC may create temporary tables in this database (0005 revokes it)."""
    [[granted]] = admin.run("SELECT has_database_privilege('public', current_database(), "
                            "'TEMPORARY')")
    return bool(granted)


def test_a_database_setting_is_the_checks_finding_and_the_runs_repair(server: Server) -> None:
    # Given an operator's settings for the database, which every new app_user session gets
    # over the parameter group's
    database = server.database()
    assert new_session_settings(server, database) == OVERRIDDEN
    assert PARAMETER_GROUP_IDLE != KERNEL_IDLE
    admin = server.postgres.connect(database, tls=True)
    # When the check looks, then the settings are its one finding, by name, not value
    expected = f"settings of database {database} reset to the parameter group's: {NAMES}"
    assert bootstrap.check(admin).findings == (f"would restore: {expected}",)
    assert len(database_settings(admin)) == 1  # the check changed nothing
    # When the bootstrap runs, then it resets them and says so
    assert bootstrap.apply(admin).repaired == (expected,)
    assert database_settings(admin) == []
    assert bootstrap.check(admin).findings == ()
    admin.close()
    # and new sessions have the parameter group's keepalive and the server's work_mem again
    assert new_session_settings(server, database) == (PARAMETER_GROUP_IDLE, "4MB", "")


def test_a_run_by_a_master_that_does_not_own_the_database_refuses_and_resets_nothing(
        server: Server) -> None:
    # Given a database with the operator's settings that RDS's master (RDS-like here: not a
    # superuser; it owns what it would have made) no longer owns: it was handed to another role
    database = server.database()
    master, password = create_rds_like_master(server.postgres)
    other = f"other_owner_{secrets.token_hex(4)}"
    admin = server.postgres.connect(database, tls=True)
    admin.run(f"CREATE ROLE {other} NOLOGIN")
    for migration in bootstrap.load_migrations():
        hand_to_master(admin, master, migration)
    admin.run(f"ALTER DATABASE {database} OWNER TO {other}")
    # and TEMPORARY back on PUBLIC (0005), the other thing only the owner may put right
    admin.run(f"GRANT TEMPORARY ON DATABASE {database} TO PUBLIC")
    conn = server.postgres.connect(database, user=master, password=password, tls=True)
    # When the master runs the bootstrap, then it refuses, naming the fix, and changed nothing
    with pytest.raises(bootstrap.BootstrapError) as refusal:
        bootstrap.apply(conn, role_passwords={})
    message = str(refusal.value)
    assert "nothing was changed" in message
    for name in NAMES.split(", "):
        assert f"ALTER DATABASE {database} RESET {name} as its owner" in message
    assert f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC, app_user as its owner" in (
        message)
    assert not any(value in message for value in ("f00dfeed", "1GB"))
    assert len(database_settings(admin)) == 1
    assert new_session_settings(server, database) == OVERRIDDEN
    assert temporary_for_public(admin)
    # When the database is the master's again (the control: the same run, as its owner), then
    # the run resets and revokes them
    admin.run(f"ALTER DATABASE {database} OWNER TO {master}")
    expected = f"settings of database {database} reset to the parameter group's: {NAMES}"
    assert set(bootstrap.apply(conn, role_passwords={}).repaired) == {
        expected, "TEMPORARY on the database revoked from PUBLIC and app_user"}
    assert database_settings(admin) == []
    assert not temporary_for_public(admin)
    conn.close()
    admin.close()


def test_a_setting_the_run_cannot_reset_is_a_gap_that_names_the_fix(server: Server) -> None:
    # The gap itself, read before the restore: no value in it. (Every run here is the
    # superuser's, which acts as every owner; the test above runs as a master that does not.)
    database = server.database()
    admin = server.postgres.connect(database, tls=True)
    gaps = [gap for gap in enforce.gaps(admin) if gap.startswith("database: ")]
    admin.close()
    assert [gap.split(" has ")[1].split(" ")[0] for gap in gaps] == NAMES.split(", ")
    assert all(f"ALTER DATABASE {database} RESET " in gap and "as its owner" in gap
               for gap in gaps)
    assert not any("f00dfeed" in gap or "1GB" in gap for gap in gaps)


def test_app_user_may_not_read_the_audit(server: Server) -> None:
    database = bootstrapped_database(server.postgres, server.passwords, "settings")
    app = server.app_user(database)
    with pytest.raises(pg8000.native.DatabaseError, match="permission denied"):
        app.run("SELECT * FROM app.audit_database_settings()")
    app.close()


def test_control_at_version_18_the_override_held_and_nothing_reported_it(
        server: Server) -> None:
    database = server.database(target_version=EARLIER_VERSION)
    admin = server.postgres.connect(database, tls=True)
    # The check's one finding is the migration to apply; a run at that version resets nothing
    [finding] = bootstrap.check(admin).findings
    assert finding.startswith(f"database at version {EARLIER_VERSION}, this bootstrap's latest")
    assert bootstrap.apply(admin, target_version=EARLIER_VERSION).repaired == ()
    admin.close()
    assert new_session_settings(server, database) == OVERRIDDEN
