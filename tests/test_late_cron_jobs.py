"""0015: the check reports a pg_cron job that has stopped running (scheduled exactly as
shipped, yet no run started for longer than its period allows), so the bound on app_user's
transactions cannot lapse unseen. On a server that loads pg_cron for the tenant database
(fixture_cron), whose scheduler runs the jobs every minute meanwhile.

A job is late after minutes (5 for the minute job); the tests shorten that to seconds
(`quick`), and rewrite the job's run history where a real one would take that long to make.
pg_cron starts the minute job at the top of each minute: tests that rewrite its history do so
between two such starts (`between_ticks`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from lambdas.tenant_bootstrap.cron import (
    CRON_JOBS,
    HISTORY_JOB,
    STUCK_JOB,
    CronJob,
    in_words,
    overdue_jobs,
)
from tests.fixture_cron import DATABASE, apply, check
from tests.fixture_postgres import PostgresServer
from tests.fixture_tenants import Conn

LATE = f"pg_cron job {STUCK_JOB} (* * * * *) has started no run for over"


def quick(seconds: float = 2) -> dict[str, CronJob]:
    """The minute job, late after `seconds` instead of minutes."""
    return {STUCK_JOB: CRON_JOBS[STUCK_JOB]._replace(late_after=timedelta(seconds=seconds))}


def between_ticks() -> None:
    """Returns at least 3 s after pg_cron's start of the minute and 10 s before the next."""
    second = time.time() % 60
    if not 3 <= second <= 50:
        time.sleep((63 - second) % 60)


def job_id(conn: Conn) -> int:
    return int(conn.run("SELECT jobid FROM cron.job WHERE jobname = :n", n=STUCK_JOB)[0][0])


def recorded(conn: Conn) -> dict[str, tuple[int, object]]:
    return {name: (job, at) for name, job, at in conn.run(
        "SELECT jobname, jobid, scheduled_at FROM boom_meta.cron_jobs_scheduled")}


def scheduled_ago(conn: Conn, span: str) -> None:
    conn.run("UPDATE boom_meta.cron_jobs_scheduled SET scheduled_at = now() - CAST(:s AS "
             "interval) WHERE jobname = :n", s=span, n=STUCK_JOB)


def history_of_one_run(conn: Conn, status: str, started: str | None) -> None:
    """The minute job's run history, rewritten: one run, `status`, started `started` ago (or
    not started: NULL, as pg_cron leaves a run it could not start a worker for)."""
    job = job_id(conn)
    conn.run("DELETE FROM cron.job_run_details WHERE jobid = :j", j=job)
    conn.run("INSERT INTO cron.job_run_details (jobid, runid, job_pid, database, username, "
             "command, status, start_time) SELECT :j, nextval('cron.runid_seq'), 4242, "
             "current_database(), current_user, command, :s, now() - CAST(:a AS interval) "
             "FROM cron.job WHERE jobid = :j", j=job, s=status, a=started)


@pytest.fixture
def late_in(cron_server: PostgresServer, cron_admin: Conn) -> Iterator[Conn]:
    """cron_admin, between ticks, on a server up for longer than `quick` allows (a job is
    not late before that); the job's history and record rewritten by the test are dropped
    with the job by the run after it (cron_admin's), which schedules it anew."""
    [[up]] = cron_admin.run("SELECT extract(epoch FROM now() - pg_postmaster_start_time())")
    time.sleep(max(0.0, 5 - float(up)))
    between_ticks()
    yield cron_admin
    cron_admin.run("SELECT cron.unschedule(:n)", n=STUCK_JOB)


def test_a_run_records_each_job_it_makes_and_leaves_the_record_while_the_job_stays(
        cron_server: PostgresServer, cron_admin: Conn) -> None:
    first = recorded(cron_admin)
    assert first.keys() == CRON_JOBS.keys()
    assert first[STUCK_JOB][0] == job_id(cron_admin)
    apply(cron_server, DATABASE)  # finds both as shipped
    assert recorded(cron_admin) == first
    cron_admin.run("UPDATE cron.job SET active = false WHERE jobname = :n", n=STUCK_JOB)
    apply(cron_server, DATABASE)  # makes it again: a new job, a new time
    again = recorded(cron_admin)
    assert again[STUCK_JOB][0] == job_id(cron_admin) != first[STUCK_JOB][0]
    assert again[STUCK_JOB][1] > first[STUCK_JOB][1]  # type: ignore[operator]


def test_a_job_made_before_the_record_is_recorded_by_the_next_run(
        cron_server: PostgresServer, cron_admin: Conn) -> None:
    # As a database upgraded from version 14, whose jobs 0014's run made.
    cron_admin.run("DELETE FROM boom_meta.cron_jobs_scheduled")
    assert check(cron_server, DATABASE) == ()  # judged from its latest run: a minute ago
    job = job_id(cron_admin)
    result = apply(cron_server, DATABASE)
    assert result.repaired == ()  # recording is not a repair
    assert recorded(cron_admin)[STUCK_JOB][0] == job


def test_a_job_just_scheduled_is_not_late(cron_server: PostgresServer,
                                          cron_admin: Conn) -> None:
    # Right after a deploy or a repair has made it, a job has no run yet; the check that
    # follows (every 15 minutes, the first perhaps seconds later) must not call it late.
    between_ticks()  # so that pg_cron does not run it before the count below
    cron_admin.run("SELECT cron.unschedule(:n)", n=STUCK_JOB)
    apply(cron_server, DATABASE)
    assert cron_admin.run("SELECT count(*) FROM cron.job_run_details WHERE jobid = :j",
                          j=job_id(cron_admin)) == [[0]]
    assert check(cron_server, DATABASE) == ()


def test_the_check_reports_a_job_whose_run_hangs(cron_server: PostgresServer,
                                                 cron_admin: Conn) -> None:
    """A real run that never ends: pg_cron starts no other run of the job meanwhile, so no
    app_user transaction is bounded. Here the run waits for a lock on the bound's table."""
    blocker = cron_server.connect(DATABASE)
    try:
        blocker.run("BEGIN")
        blocker.run("LOCK TABLE boom_meta.app_user_transaction_bound IN ACCESS EXCLUSIVE MODE")
        locked_at = blocker.run("SELECT clock_timestamp()")[0][0]
        until = time.monotonic() + 75  # pg_cron starts the job at the top of the minute
        while not (hung := cron_admin.run(
                "SELECT job_pid FROM cron.job_run_details WHERE jobid = :j "
                "AND status = 'running' AND start_time > :t", j=job_id(cron_admin),
                t=locked_at)):
            assert time.monotonic() < until, "pg_cron did not start the job"
            time.sleep(0.2)
        [[pid]] = hung
        time.sleep(2.5)
        assert check(cron_server, DATABASE) == ()  # late after minutes, not seconds
        [late] = overdue_jobs(cron_admin, quick())
        assert late.startswith(f"{LATE} 2 seconds: its latest run started ")
        assert f"That run is still running (pid {pid})" in late
        assert "app_user transactions are not bounded" in late
    finally:
        blocker.close()  # the run goes on, and ends


@pytest.mark.parametrize(("status", "started", "why"), [
    ("succeeded", "1 minute", "pg_cron's scheduler is not starting it"),
    ("failed", "1 minute", "pg_cron's scheduler is not starting it"),
    ("starting", None, "That run is still starting (pid 4242)"),
], ids=["ran-then-stopped", "failed-then-stopped", "never-got-a-worker"])
def test_the_check_reports_a_job_pg_cron_has_stopped_starting(
        late_in: Conn, status: str, started: str | None, why: str) -> None:
    scheduled_ago(late_in, "1 hour")
    history_of_one_run(late_in, status, started)
    [late] = overdue_jobs(late_in, quick())
    assert why in late
    # The run's own date, as the server prints it: "1 minute" ago is yesterday just after
    # midnight (the test once failed then, comparing with today's date).
    [[day]] = late_in.run("SELECT to_char(max(start_time), 'YYYY-MM-DD') "
                          "FROM cron.job_run_details WHERE jobid = :j", j=job_id(late_in))
    assert (f"its latest run started {day}" in late if started
            else "no run is recorded since it was scheduled" in late)


def test_the_check_lists_a_late_job_among_its_findings(
        cron_server: PostgresServer, late_in: Conn, monkeypatch: pytest.MonkeyPatch) -> None:
    scheduled_ago(late_in, "1 hour")
    late_in.run("DELETE FROM cron.job_run_details WHERE jobid = :j", j=job_id(late_in))
    monkeypatch.setitem(CRON_JOBS, STUCK_JOB, quick()[STUCK_JOB])
    [finding] = check(cron_server, DATABASE)
    assert finding.startswith(f"{LATE} 2 seconds: no run is recorded since it was scheduled")


def test_a_late_job_is_judged_only_once_scheduled_and_the_server_up_that_long(
        late_in: Conn) -> None:
    late_in.run("DELETE FROM cron.job_run_details WHERE jobid = :j", j=job_id(late_in))
    scheduled_ago(late_in, "10 seconds")
    assert overdue_jobs(late_in, quick(30)) == []  # scheduled 10 s ago: not yet
    assert len(overdue_jobs(late_in, quick(5))) == 1
    # Scheduled long ago, but the server has been up for less than the job's allowance:
    # a restart, after which pg_cron runs the job within a minute.
    scheduled_ago(late_in, "10 days")
    [[up]] = late_in.run("SELECT extract(epoch FROM now() - pg_postmaster_start_time())")
    assert overdue_jobs(late_in, quick(float(up) + 30)) == []
    assert len(overdue_jobs(late_in, quick(float(up) - 1))) == 1
    # Made again by someone else since the record (another job id), with no run since: when
    # it was made is not known, so it is not late. The next run records it.
    late_in.run("UPDATE boom_meta.cron_jobs_scheduled SET jobid = jobid + 1000 "
                "WHERE jobname = :n", n=STUCK_JOB)
    assert overdue_jobs(late_in, quick()) == []


@pytest.mark.parametrize(("late_after", "said"), [
    (timedelta(seconds=1), "1 second"), (timedelta(seconds=90), "90 seconds"),
    (timedelta(minutes=1), "1 minute"), (CRON_JOBS[STUCK_JOB].late_after, "5 minutes"),
    (timedelta(hours=1), "1 hour"), (CRON_JOBS[HISTORY_JOB].late_after, "26 hours"),
])
def test_a_jobs_allowance_is_said_in_its_largest_whole_unit(late_after: timedelta,
                                                            said: str) -> None:
    # As the finding says it: "has started no run for over 26 hours", not "93600 seconds".
    assert in_words(late_after) == said


def test_a_paused_or_altered_job_is_for_a_run_to_restore_not_late(late_in: Conn) -> None:
    scheduled_ago(late_in, "1 hour")
    history_of_one_run(late_in, "succeeded", "1 hour")
    assert len(overdue_jobs(late_in, quick())) == 1
    late_in.run("UPDATE cron.job SET active = false WHERE jobname = :n", n=STUCK_JOB)
    assert overdue_jobs(late_in, quick()) == []
    late_in.run("UPDATE cron.job SET active = true, schedule = '0 3 * * *' "
                "WHERE jobname = :n", n=STUCK_JOB)
    assert overdue_jobs(late_in, quick()) == []
