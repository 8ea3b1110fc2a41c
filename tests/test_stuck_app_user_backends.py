"""0014: pg_cron's job ends the app_user backends that hold up the others: a transaction older
than the bound (10 minutes by default), or a session-level advisory lock held between
transactions (as a pooled server connection keeps one). On a server that loads pg_cron for
the tenant database (fixture_cron), and on the session's shared server, which does not.
"""

from __future__ import annotations

import contextlib
import re
import time

import pg8000.native
import pytest

from lambdas.tenant_bootstrap import bootstrap
from lambdas.tenant_bootstrap.__main__ import main
from lambdas.tenant_bootstrap.cron import (
    CRON_JOBS,
    HISTORY_JOB,
    STUCK_BACKEND_LOG,
    STUCK_JOB,
)
from tests.fixture_bootstrap import FreshDatabase
from tests.fixture_cron import DATABASE, SHIPPED, apply, bound, check, jobs
from tests.fixture_postgres import (
    PostgresServer,
    backend_alive,
    backend_ended,
    pgbouncer_with_pools_of_one,
    pooler_connection,
)
from tests.fixture_tenants import (
    ROWS_PER_TENANT,
    TENANT_A,
    Conn,
    connect_as,
    left_open,
    seed_two_tenants,
)

ENDED = (pg8000.native.DatabaseError, pg8000.native.InterfaceError)


def finished_run(conn: Conn, within: float = 15) -> tuple[str, str]:
    """Status and message of the stuck job's latest run once pg_cron has recorded its end
    (the run is still 'running' for a moment after it has ended a backend)."""
    until = time.monotonic() + within
    while True:
        [[status, message]] = conn.run(
            "SELECT d.status, d.return_message FROM cron.job_run_details d "
            "JOIN cron.job j USING (jobid) WHERE j.jobname = :n ORDER BY d.runid DESC LIMIT 1",
            n=STUCK_JOB)
        if status not in ("starting", "running") or time.monotonic() > until:
            return str(status), str(message)
        time.sleep(0.1)


def in_long_transaction(server: PostgresServer, cron_passwords: dict[str, str], database: str,
                        role: str = "app_user") -> tuple[Conn, int]:
    """A session of `role` inside a transaction that has read tenant A's bookings."""
    conn = connect_as(server, cron_passwords, database, role)
    left_open(conn, TENANT_A, "SELECT count(*) FROM app.bookings")
    return conn, int(conn.run("SELECT pg_backend_pid()")[0][0])


def test_a_run_installs_pg_cron_and_schedules_the_job_as_its_own_user(
        cron_server: PostgresServer, cron_admin: Conn) -> None:
    assert cron_admin.run(
        "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron')")[0][0]
    assert jobs(cron_admin) == SHIPPED
    assert bound(cron_admin) == "00:10:00"
    assert check(cron_server, DATABASE) == ()


def test_pg_cron_ends_an_app_user_transaction_older_than_the_bound(
        cron_server: PostgresServer, cron_passwords: dict[str, str], cron_admin: Conn) -> None:
    cron_admin.run("UPDATE boom_meta.app_user_transaction_bound SET bound = interval '1 second'")
    long_, long_pid = in_long_transaction(cron_server, cron_passwords, DATABASE)
    # Left alone: boom_owner's transaction (migrations have their own deadline), and an
    # app_user session between transactions, as PgBouncer's idle server connections are.
    owners, owners_pid = in_long_transaction(cron_server, cron_passwords, DATABASE, "boom_owner")
    idle = connect_as(cron_server, cron_passwords, DATABASE, "app_user")
    idle_pid = int(idle.run("SELECT pg_backend_pid()")[0][0])
    try:
        # pg_cron starts the job at the top of each minute.
        assert backend_ended(cron_admin, long_pid, within=75), "pg_cron's job did not end it"
        with pytest.raises(ENDED):
            long_.run("SELECT count(*) FROM app.bookings")
        assert backend_alive(cron_admin, owners_pid) and backend_alive(cron_admin, idle_pid)
        assert idle.run("SELECT 1") == [[1]]
        status, message = finished_run(cron_admin)
        assert status == "succeeded", message
        # The server log names the backend and the transaction's age, never its statements.
        log = (cron_server.root / "postgres.log").read_text()
        ran = re.search(rf"{STUCK_BACKEND_LOG} {long_pid}: its transaction ran "
                        r"00:(\d\d):(\d\d) \(bound 00:00:01\)", log)
        assert ran, log[-2000:]
        # Begun within the bound before a minute's top, it is ended at the next: up to 61 s.
        assert 1 <= int(ran[1]) * 60 + int(ran[2]) <= 75
    finally:
        for conn in (owners, idle):
            conn.close()


def test_the_job_ends_only_app_user_transactions_older_than_the_bound_in_its_database(
        cron_server: PostgresServer, cron_passwords: dict[str, str], cron_admin: Conn) -> None:
    # Another database of the same server, as an operator's scratch copy would be: its
    # sessions are not this job's, and a run there schedules nothing (pg_cron is not its).
    other = cron_server.create_database("other")
    apply(cron_server, other)
    seed_two_tenants(cron_server, cron_passwords, other)
    young, young_pid = in_long_transaction(cron_server, cron_passwords, DATABASE)
    elsewhere, elsewhere_pid = in_long_transaction(cron_server, cron_passwords, other)
    owners, owners_pid = in_long_transaction(cron_server, cron_passwords, DATABASE, "boom_owner")
    # pg_cron's own run of the job paused, so that only the calls below end transactions.
    cron_admin.run("UPDATE cron.job SET active = false WHERE jobname = :n", n=STUCK_JOB)
    try:
        assert cron_admin.run("SELECT app.end_stuck_app_user_backends()") == [[0]]
        old, old_pid = in_long_transaction(cron_server, cron_passwords, DATABASE)
        time.sleep(1.2)
        cron_admin.run(
            "UPDATE boom_meta.app_user_transaction_bound SET bound = interval '1 second'")
        young.run("COMMIT")  # its next transaction starts now, within the bound
        left_open(young, TENANT_A, "SELECT 1")
        assert cron_admin.run("SELECT app.end_stuck_app_user_backends()") == [[1]]
        assert backend_ended(cron_admin, old_pid, within=5)
        for pid in (young_pid, elsewhere_pid, owners_pid):
            assert backend_alive(cron_admin, pid)
        with pytest.raises(ENDED):
            old.run("SELECT 1")
        young.run("ROLLBACK")
    finally:
        for conn in (young, elsewhere, owners):
            conn.close()
    conn = cron_server.connect(other)
    try:
        assert conn.run("SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'") == [[0]]
    finally:
        conn.close()
    assert check(cron_server, other) == ()


def test_the_job_ends_an_idle_backend_holding_a_session_advisory_lock(
        cron_server: PostgresServer, cron_passwords: dict[str, str], cron_admin: Conn) -> None:
    def session(role: str = "app_user") -> tuple[Conn, int]:
        conn = connect_as(cron_server, cron_passwords, DATABASE, role)
        return conn, int(conn.run("SELECT pg_backend_pid()")[0][0])

    holder, holder_pid = session()
    holder.run("SELECT pg_advisory_lock(7)")  # session-level, then idle between transactions
    idle, idle_pid = session()  # no lock
    working, working_pid = session()  # a transaction's own advisory lock, in its transaction
    working.run("BEGIN")
    working.run("SELECT pg_advisory_xact_lock(8)")
    owners, owners_pid = session("boom_owner")  # not app_user: left alone
    owners.run("SELECT pg_advisory_lock(9)")
    cron_admin.run("UPDATE cron.job SET active = false WHERE jobname = :n", n=STUCK_JOB)
    try:
        assert cron_admin.run("SELECT app.end_stuck_app_user_backends()") == [[1]]
        assert backend_ended(cron_admin, holder_pid, within=5)
        for pid in (idle_pid, working_pid, owners_pid):
            assert backend_alive(cron_admin, pid)
        assert cron_admin.run("SELECT pg_try_advisory_lock(7)") == [[True]]  # released with it
        working.run("COMMIT")
    finally:
        for conn in (idle, working, owners):
            conn.close()


def test_a_session_advisory_lock_left_on_a_pooled_connection_is_released(
        postgres: PostgresServer, role_passwords: dict[str, str], new_db: str,
        new_db_admin: Conn) -> None:
    """Through real PgBouncer (a pool of one server connection): a client's session-level lock
    stays on the server connection after the client has gone. Other connections wait for it,
    the next client of that connection takes it too, and only the job's run releases it."""
    with pgbouncer_with_pools_of_one(postgres, role_passwords, new_db,
                                     {"single": new_db}) as bouncer:
        def client() -> tuple[Conn, int]:
            conn = pooler_connection(bouncer, "single", role_passwords["app_user"])
            return conn, int(conn.run("SELECT pg_backend_pid()")[0][0])

        first, pooled_pid = client()
        first.run("SELECT pg_advisory_lock(7)")
        first.close()
        elsewhere = connect_as(postgres, role_passwords, new_db, "app_user")
        try:
            assert elsewhere.run("SELECT pg_try_advisory_lock(7)") == [[False]]
            second, second_pid = client()
            # The same server connection, and so the same lock, for another client: the
            # exclusion the lock was for is gone.
            assert second_pid == pooled_pid
            assert second.run("SELECT pg_try_advisory_lock(7)") == [[True]]
            second.close()
            # The function pg_cron runs each minute (pg_cron is not loaded on this server).
            assert new_db_admin.run("SELECT app.end_stuck_app_user_backends()") == [[1]]
            assert backend_ended(new_db_admin, pooled_pid, within=5)
            assert elsewhere.run("SELECT pg_try_advisory_lock(7)") == [[True]]
            third, third_pid = client()  # PgBouncer opened a new server connection
            assert third_pid != pooled_pid and third.run("SELECT 1") == [[1]]
            third.close()
        finally:
            elsewhere.close()


def test_a_long_transaction_through_pgbouncer_fails_and_the_next_client_is_served(
        postgres: PostgresServer, role_passwords: dict[str, str], new_db: str,
        new_db_admin: Conn) -> None:
    """What a client sees when the job ends its transaction through PgBouncer: an error on its
    next statement, and the pool serves the next client on a new server connection."""
    with pgbouncer_with_pools_of_one(postgres, role_passwords, new_db,
                                     {"single": new_db}) as bouncer:
        slow = pooler_connection(bouncer, "single", role_passwords["app_user"])
        left_open(slow, TENANT_A, "SELECT 1")
        pooled_pid = int(slow.run("SELECT pg_backend_pid()")[0][0])
        time.sleep(1.2)
        new_db_admin.run("UPDATE boom_meta.app_user_transaction_bound "
                         "SET bound = interval '1 second'")
        assert new_db_admin.run("SELECT app.end_stuck_app_user_backends()") == [[1]]
        assert backend_ended(new_db_admin, pooled_pid, within=5)
        with pytest.raises(ENDED):
            slow.run("SELECT count(*) FROM app.bookings")
        with contextlib.suppress(*ENDED):
            slow.close()
        following = pooler_connection(bouncer, "single", role_passwords["app_user"])
        try:
            assert left_open(following, TENANT_A,
                             "SELECT count(*) FROM app.bookings") == [[ROWS_PER_TENANT]]
            assert int(following.run("SELECT pg_backend_pid()")[0][0]) != pooled_pid
            following.run("COMMIT")
        finally:
            following.close()


@pytest.mark.parametrize("role", ["app_user", "boom_owner"])
@pytest.mark.parametrize("statement", [
    "SELECT app.end_stuck_app_user_backends()",
    "UPDATE boom_meta.app_user_transaction_bound SET bound = interval '10 years'",
    f"SELECT cron.unschedule('{STUCK_JOB}')",
    "UPDATE cron.job SET active = false",
    "SELECT cron.schedule('mine', '* * * * *', 'LOCK TABLE app.bookings')",
], ids=["end-others", "lift-bound", "unschedule", "pause", "own-job"])
def test_the_application_and_its_migrations_cannot_end_others_or_lift_the_bound(
        cron_server: PostgresServer, cron_passwords: dict[str, str], cron_admin: Conn,
        role: str, statement: str) -> None:
    conn = connect_as(cron_server, cron_passwords, DATABASE, role)
    try:
        with pytest.raises(pg8000.native.DatabaseError, match="permission denied"):
            conn.run(statement)
    finally:
        conn.close()
    assert jobs(cron_admin) == SHIPPED
    assert bound(cron_admin) == "00:10:00"


def test_pg_cron_keeps_a_week_of_run_history(cron_server: PostgresServer, cron_admin: Conn) -> None:
    # A row a minute, which pg_cron never deletes: the nightly job keeps 7 days of them.
    [[job]] = cron_admin.run("SELECT jobid FROM cron.job WHERE jobname = :n", n=STUCK_JOB)
    cron_admin.run("INSERT INTO cron.job_run_details (jobid, runid, database, username, command, "
              "status, start_time, end_time) SELECT :j, nextval('cron.runid_seq'), "
              "current_database(), current_user, 'SELECT 1', 'succeeded', at, at "
              "FROM unnest(ARRAY[now() - interval '8 days', now() - interval '6 days']) at",
              j=job)
    cron_admin.run(CRON_JOBS[HISTORY_JOB].command)
    assert cron_admin.run("SELECT count(*) FROM cron.job_run_details "
                     "WHERE end_time < now() - interval '7 days'") == [[0]]
    assert cron_admin.run("SELECT count(*) FROM cron.job_run_details "
                     "WHERE end_time < now() - interval '5 days'") == [[1]]


def test_the_check_reports_a_job_whose_latest_run_failed(cron_server: PostgresServer,
                                                          cron_admin: Conn) -> None:
    # As on an RDS where the bootstrap's user could not end app_user's backends: the job
    # fails every minute and nothing else would say so. Run ids above pg_cron's own, so that
    # its real runs meanwhile are not the latest.
    [[job]] = cron_admin.run("SELECT jobid FROM cron.job WHERE jobname = :n", n=STUCK_JOB)

    def latest_run(status: str, message: str) -> None:
        cron_admin.run("INSERT INTO cron.job_run_details (jobid, runid, database, username, "
                  "command, status, return_message, start_time, end_time) SELECT :j, "
                  "coalesce(max(runid), 0) + 1000000, current_database(), current_user, "
                  "'SELECT app.end_stuck_app_user_backends()', :s, :m, now(), now() "
                  "FROM cron.job_run_details", j=job, s=status, m=message)

    latest_run("failed", "ERROR:  must be a member of the role whose process is being "
                         "terminated or member of pg_signal_backend")
    findings = check(cron_server, DATABASE)
    [failed] = [f for f in findings if f.startswith(f"pg_cron job {STUCK_JOB} failed")]
    assert "member of pg_signal_backend" in failed and "next run clears this" in failed
    latest_run("succeeded", "SELECT 1")
    assert check(cron_server, DATABASE) == ()


@pytest.mark.parametrize(("undo", "restored"), [
    (f"SELECT cron.unschedule('{STUCK_JOB}')", "scheduled"),
    (f"UPDATE cron.job SET active = false WHERE jobname = '{STUCK_JOB}'",
     "restored as shipped"),
    (f"UPDATE cron.job SET schedule = '0 3 * * *' WHERE jobname = '{STUCK_JOB}'",
     "restored as shipped"),
    (f"UPDATE cron.job SET command = 'SELECT 1' WHERE jobname = '{STUCK_JOB}'",
     "restored as shipped"),
    ("DROP EXTENSION pg_cron", "scheduled"),
], ids=["unscheduled", "paused", "nightly", "other-command", "extension-dropped"])
def test_the_check_reports_and_a_run_restores_the_job(
        cron_server: PostgresServer, cron_admin: Conn, undo: str, restored: str) -> None:
    cron_admin.run(undo)
    findings = check(cron_server, DATABASE)
    assert findings and all(f.startswith("would restore:") for f in findings), findings
    assert any(f"pg_cron job {STUCK_JOB} {restored}" in f for f in findings), findings
    assert jobs(cron_admin) != SHIPPED  # the check changed nothing
    result = apply(cron_server, DATABASE)
    assert any(f"pg_cron job {STUCK_JOB} {restored}" in r for r in result.repaired)
    assert jobs(cron_admin) == SHIPPED
    assert check(cron_server, DATABASE) == ()


def test_a_run_sets_the_bound_it_is_given_and_keeps_it_otherwise(
        cron_server: PostgresServer, cron_admin: Conn) -> None:
    apply(cron_server, DATABASE, app_user_transaction_minutes=25)
    assert bound(cron_admin) == "00:25:00"
    apply(cron_server, DATABASE)
    assert bound(cron_admin) == "00:25:00"


def test_without_pg_cron_a_run_schedules_nothing_and_the_check_reports_nothing(
        postgres: PostgresServer, new_db_admin: Conn, new_db: str) -> None:
    # The session's shared server does not load pg_cron, as a developer's would not.
    assert new_db_admin.run("SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'") \
        == [[0]]
    assert bound(new_db_admin) == "00:10:00"  # the default, there for when pg_cron comes
    assert check(postgres, new_db) == ()


@pytest.mark.parametrize("minutes", [0, 1441, True, "10"])
def test_a_bad_bound_is_refused_before_anything_changes(fresh: FreshDatabase,
                                                         minutes: object) -> None:
    with pytest.raises(bootstrap.BootstrapError, match="transaction minutes .*from 1 to 1440"):
        bootstrap.apply(fresh.conn, app_user_transaction_minutes=minutes)  # type: ignore[arg-type]
    assert bootstrap.current_version(fresh.conn) == 0


@pytest.mark.parametrize(("minutes", "interval"), [(1, "00:01:00"), (1440, "24:00:00")])
def test_a_bound_at_either_end_of_its_range_is_taken(fresh: FreshDatabase, minutes: int,
                                                     interval: str) -> None:
    bootstrap.apply(fresh.conn, app_user_transaction_minutes=minutes)
    assert bound(fresh.conn) == interval


def test_a_bound_for_a_version_without_one_is_refused_and_changes_nothing(
        fresh: FreshDatabase) -> None:
    with pytest.raises(bootstrap.BootstrapError, match="needs schema version 14 .*nothing was"):
        bootstrap.apply(fresh.conn, target_version=13, app_user_transaction_minutes=5)
    assert bootstrap.current_version(fresh.conn) == 0


def test_cli_sets_the_bound(postgres: PostgresServer) -> None:
    database = postgres.create_database()
    assert main(["--dsn", postgres.dsn(database), "--app-user-transaction-minutes", "30"],
                environ={}) == 0
    conn = postgres.connect(database)
    try:
        assert bound(conn) == "00:30:00"
    finally:
        conn.close()
