"""What the user that runs the bootstrap, and so pg_cron's job, needs for the job to end stuck
app_user backends (0014, 0016): to see app_user's sessions (pg_read_all_stats), and to end
them (pg_signal_backend). Without the first, the job ends nothing and succeeds all the same;
without the second, the job fails at the first backend it would end (a failed run,
test_stuck_app_user_backends.py). The check reports either from the user's privileges, before
any backend is stuck, and the first also from sessions it cannot see. On the session's shared
server, with an operator role that has the superuser's objects (member of postgres) but not
its attribute, as RDS's master has rds_superuser's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap
from tests.fixture_postgres import PostgresServer, backend_alive
from tests.fixture_tenants import TENANT_A, Conn, connect_as, left_open

BLIND = "cannot see app_user's sessions"
UNENDING = "may not end app_user's backends"
END = "SELECT app.end_stuck_app_user_backends()"


@pytest.fixture
def operator(postgres: PostgresServer) -> Iterator[str]:
    """A role with the privileges of postgres's objects, not of a superuser; dropped after."""
    name = "boom_test_operator"
    admin = postgres.connect()
    admin.run(f"CREATE ROLE {name} NOLOGIN")
    admin.run(f"GRANT postgres TO {name}")
    try:
        yield name
    finally:
        admin.run(f"DROP ROLE {name}")
        admin.close()


def findings_as(conn: Conn, role: str) -> tuple[str, ...]:
    """The Data stack's check (its parameter group loads pg_cron), run as `role`."""
    conn.run(f"SET ROLE {role}")
    try:
        return bootstrap.check(conn, require_pg_cron=True).findings
    finally:
        conn.run("RESET ROLE")


def about_job_user(findings: tuple[str, ...], *phrases: str) -> list[str]:
    """The findings that say the job user cannot see (BLIND) or end (UNENDING) app_user's
    sessions, or only those with one of `phrases`."""
    return [f for f in findings if any(p in f for p in phrases or (BLIND, UNENDING))]


def test_a_job_user_that_cannot_see_app_user_sessions_is_a_finding(
        postgres: PostgresServer, role_passwords: dict[str, str], new_db: str,
        new_db_admin: Conn, operator: str) -> None:
    new_db_admin.run("UPDATE boom_meta.app_user_transaction_bound "
                     "SET bound = interval '1 second'")
    stuck = connect_as(postgres, role_passwords, new_db, "app_user")
    try:
        left_open(stuck, TENANT_A, "SELECT 1")
        [[pid]] = stuck.run("SELECT pg_backend_pid()")
        new_db_admin.run("SELECT pg_sleep(1.2)")
        # A user that sees app_user's sessions (here the superuser): nothing to say
        assert not about_job_user(bootstrap.check(new_db_admin, require_pg_cron=True).findings,
                                  BLIND)
        # One that does not: the job would end nothing, and succeed
        new_db_admin.run(f"SET ROLE {operator}")
        assert new_db_admin.run(END) == [[0]]
        new_db_admin.run("RESET ROLE")
        assert backend_alive(new_db_admin, pid)
        [blind] = about_job_user(findings_as(new_db_admin, operator), BLIND)
        assert "(1 show no state in pg_stat_activity)" in blind
        assert "GRANT pg_read_all_stats" in blind
        # Seeing them without pg_signal_backend: the job fails, as failed_jobs reports
        new_db_admin.run(f"GRANT pg_read_all_stats TO {operator}")
        assert not about_job_user(findings_as(new_db_admin, operator), BLIND)
        new_db_admin.run(f"SET ROLE {operator}")
        with pytest.raises(pg8000.native.DatabaseError, match="pg_signal_backend"):
            new_db_admin.run(END)
        new_db_admin.run("RESET ROLE")
        # With both, it ends the transaction
        new_db_admin.run(f"GRANT pg_signal_backend TO {operator}")
        new_db_admin.run(f"SET ROLE {operator}")
        assert new_db_admin.run(END) == [[1]]
        new_db_admin.run("RESET ROLE")
        assert not about_job_user(findings_as(new_db_admin, operator))
    finally:
        with contextlib.suppress(pg8000.native.InterfaceError, pg8000.native.DatabaseError,
                                 OSError):
            stuck.close()


def test_what_the_job_user_lacks_is_a_finding_before_any_backend_is_stuck(
        new_db_admin: Conn, operator: str) -> None:
    """No app_user session in the database: the privileges alone decide."""
    assert new_db_admin.run("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app_user' "
                            "AND datname = current_database()") == [[0]]
    assert not about_job_user(bootstrap.check(new_db_admin, require_pg_cron=True).findings)
    blind, unending = about_job_user(findings_as(new_db_admin, operator))
    assert BLIND in blind and "(it lacks the privileges of pg_read_all_stats)" in blind
    assert "GRANT pg_read_all_stats to it" in blind
    assert UNENDING in unending and "GRANT pg_signal_backend to it" in unending
    new_db_admin.run(f"GRANT pg_read_all_stats TO {operator}")
    assert about_job_user(findings_as(new_db_admin, operator)) == [unending]
    new_db_admin.run(f"GRANT pg_signal_backend TO {operator}")
    assert not about_job_user(findings_as(new_db_admin, operator))
    new_db_admin.run(f"REVOKE pg_read_all_stats, pg_signal_backend FROM {operator}")
    assert len(about_job_user(findings_as(new_db_admin, operator))) == 2
    # RDS's shape: its master's rds_superuser is a member of pg_monitor (which holds
    # pg_read_all_stats) and of pg_signal_backend
    new_db_admin.run(f"GRANT pg_monitor, pg_signal_backend TO {operator}")
    assert not about_job_user(findings_as(new_db_admin, operator))
    new_db_admin.run(f"REVOKE pg_monitor, pg_signal_backend FROM {operator}")
    assert len(about_job_user(findings_as(new_db_admin, operator))) == 2
    # A user with app_user's own privileges may see and end its sessions as well
    new_db_admin.run(f"GRANT app_user TO {operator}")
    assert not about_job_user(findings_as(new_db_admin, operator))
