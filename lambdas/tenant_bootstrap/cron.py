"""pg_cron's jobs (migrations 0014, 0015): scheduling them as shipped where the server runs
pg_cron for this database, and, for the check, the jobs whose latest run failed or that have
stopped running. The job ends the app_user backends that hold up the others
(app.end_stuck_app_user_backends()); PostgreSQL 15 has no transaction_timeout, and nothing
else runs in the database on a schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import NamedTuple

import pg8000.native


class CronJob(NamedTuple):
    schedule: str
    command: str
    # (0015) How long after its latest run started the job is late: its period and a margin
    # for a busy scheduler. The check reports a job as shipped that is late.
    late_after: timedelta


# (0014) pg_cron's jobs, by name. The first ends, every minute, app_user backends that hold up
# the others (a transaction older than the bound, a session-level advisory lock between
# transactions); the second keeps pg_cron's run history (a row a minute, which pg_cron never
# deletes) to a week.
STUCK_JOB = "boom-end-stuck-app-user-backends"
STUCK_FUNCTION = "app.end_stuck_app_user_backends()"
# How the server log line of each backend the job ends begins (0014's RAISE LOG), which the
# Data stack's metric filter counts.
STUCK_BACKEND_LOG = "boom: ended app_user backend"
HISTORY_JOB = "boom-purge-cron-run-details"
CRON_JOBS = {
    STUCK_JOB: CronJob("* * * * *", f"SELECT {STUCK_FUNCTION}", timedelta(minutes=5)),
    HISTORY_JOB: CronJob("17 3 * * *", "DELETE FROM cron.job_run_details "
                                       "WHERE end_time < now() - interval '7 days'",
                         timedelta(hours=26)),
}
_SCHEDULED = "boom_meta.cron_jobs_scheduled"  # (0015) when each job was made, by job id


def schedule_jobs(conn: pg8000.native.Connection) -> list[str]:
    """(0014) pg_cron's jobs (CRON_JOBS), each scheduled once as this user in this database,
    active, exactly as shipped; pg_cron installed first. Only where the server loads pg_cron
    for this database (the parameter group's cron.database_name): elsewhere (a local
    database, say) there is nothing to schedule with, and nothing is reported. (0015) Records
    when each job was made, or first found as shipped, for overdue_jobs()."""
    if not conn.run("SELECT to_regprocedure(:f) IS NOT NULL", f=STUCK_FUNCTION)[0][0] \
            or not pg_cron_loaded(conn):
        return []
    done = []
    if not conn.run("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron')")[0][0]:
        conn.run("CREATE EXTENSION pg_cron")
        done.append("pg_cron installed")
    for name, (schedule, command, _) in CRON_JOBS.items():
        jobs = conn.run("SELECT jobid, schedule, command, active, "
                        "database = current_database() FROM cron.job "
                        "WHERE jobname = :n AND username = current_user", n=name)
        if not (len(jobs) == 1 and jobs[0][1:] == [schedule, command, True, True]):
            for [job, *_] in jobs:  # altered or paused: made again as shipped
                conn.run("SELECT cron.unschedule(CAST(:j AS bigint))", j=job)
            conn.run("SELECT cron.schedule(:n, :s, :c)", n=name, s=schedule, c=command)
            done.append(f"pg_cron job {name} " + (
                f"restored as shipped ({schedule}, active, this database)" if jobs
                else "scheduled"))
        _record_scheduled(conn, name)
    return done


def _record_scheduled(conn: pg8000.native.Connection, name: str) -> None:
    """(0015) The job's id, and now if it is not the id recorded (a job made anew)."""
    if conn.run("SELECT to_regclass(:t) IS NOT NULL", t=_SCHEDULED)[0][0]:
        conn.run(f"INSERT INTO {_SCHEDULED} AS s (jobname, jobid) "
                 "SELECT jobname, jobid FROM cron.job "
                 "WHERE jobname = :n AND username = current_user "
                 "ON CONFLICT (jobname) DO UPDATE SET jobid = excluded.jobid, scheduled_at = now() "
                 "WHERE s.jobid <> excluded.jobid", n=name)


def failed_jobs(conn: pg8000.native.Connection) -> list[str]:
    """(0014) A shipped pg_cron job whose latest run failed: what no run can restore, and what
    nothing else would say (the job fails every minute, quietly). Needs pg_cron's run history
    (cron.log_run, on by default)."""
    if not pg_cron_loaded(conn) or not conn.run(
            "SELECT to_regclass('cron.job_run_details') IS NOT NULL")[0][0]:
        return []
    failed = conn.run(
        "SELECT j.jobname, to_char(r.end_time, 'YYYY-MM-DD HH24:MI:SS TZ'), "
        "left(r.return_message, 300) "
        "FROM cron.job j CROSS JOIN LATERAL (SELECT d.status, d.end_time, d.return_message "
        "  FROM cron.job_run_details d WHERE d.jobid = j.jobid ORDER BY d.runid DESC LIMIT 1) r "
        "WHERE j.jobname = ANY(CAST(:names AS text[])) AND j.username = current_user "
        "AND r.status = 'failed' ORDER BY 1", names=list(CRON_JOBS))
    return [f"pg_cron job {name} failed its latest run ({ended}): {message}. It runs as the "
            "bootstrap's user: give that user what the message asks (on RDS, rds_superuser "
            "has pg_signal_backend), and the next run clears this"
            for name, ended, message in failed]


def overdue_jobs(conn: pg8000.native.Connection,
                 jobs: Mapping[str, CronJob] = CRON_JOBS) -> list[str]:
    """(0015) A job as shipped (active, this database, its schedule and command) that has not
    started a run for longer than its `late_after`, although it has been scheduled, and the
    server up, for that long: pg_cron has stopped running it. A job that is missing or
    altered is not late but restored (schedule_jobs); one made before this bootstrap recorded
    it is judged from its latest run alone."""
    if not pg_cron_loaded(conn) or not conn.run(
            "SELECT to_regclass('cron.job_run_details') IS NOT NULL "
            "AND to_regclass(:t) IS NOT NULL", t=_SCHEDULED)[0][0]:
        return []
    late = conn.run(
        "SELECT j.jobname, to_char(r.started, 'YYYY-MM-DD HH24:MI:SS TZ'), "
        "to_char(s.scheduled_at, 'YYYY-MM-DD HH24:MI:SS TZ'), l.status, l.job_pid "
        "FROM unnest(CAST(:names AS text[]), CAST(:schedules AS text[]), "
        "            CAST(:commands AS text[]), CAST(:late AS interval[])) "
        "  AS shipped (jobname, schedule, command, late_after) "
        "JOIN cron.job j ON j.jobname = shipped.jobname AND j.schedule = shipped.schedule "
        "  AND j.command = shipped.command AND j.active AND j.database = current_database() "
        "  AND j.username = current_user "
        f"LEFT JOIN {_SCHEDULED} s ON s.jobname = j.jobname AND s.jobid = j.jobid "
        "CROSS JOIN LATERAL (SELECT max(d.start_time) AS started "
        "  FROM cron.job_run_details d WHERE d.jobid = j.jobid) r "
        "LEFT JOIN LATERAL (SELECT d.status, d.job_pid FROM cron.job_run_details d "
        "  WHERE d.jobid = j.jobid ORDER BY d.runid DESC LIMIT 1) l ON true "
        "WHERE coalesce(r.started, '-infinity') < now() - shipped.late_after "
        # Known to have been scheduled, and the server up, for longer than that.
        "AND coalesce(s.scheduled_at, r.started) IS NOT NULL "
        "AND greatest(s.scheduled_at, r.started, pg_postmaster_start_time()) "
        "    < now() - shipped.late_after "
        "ORDER BY 1",
        names=list(jobs), schedules=[job.schedule for job in jobs.values()],
        commands=[job.command for job in jobs.values()],
        late=[f"{job.late_after.total_seconds():.0f} seconds" for job in jobs.values()])
    return [_late(name, started, scheduled, status, pid, jobs[name])
            for name, started, scheduled, status, pid in late]


def _late(name: str, started: str | None, scheduled: str | None, status: str | None,
          pid: int | None, job: CronJob) -> str:
    since = (f"its latest run started {started}" if started
             else f"no run is recorded since it was scheduled ({scheduled})")
    if status in ("starting", "running"):
        why = (f"That run is still {status}" + (f" (pid {pid})" if pid else "")
               + ", and pg_cron starts no other run of a job until it ends: look at what "
               "it waits for (pg_stat_activity), and end it with pg_cancel_backend")
    else:
        why = ("pg_cron's scheduler is not starting it: see pg_cron's lines in the "
               "PostgreSQL log (no free background worker: max_worker_processes, "
               "cron.max_running_jobs; run history turned off: cron.log_run), and reboot "
               "at a quiet moment if the scheduler has stopped")
    what = ("app_user transactions are not bounded" if name == STUCK_JOB
            else "its work is not being done")
    return (f"pg_cron job {name} ({job.schedule}) has started no run for over "
            f"{in_words(job.late_after)}: {since}, so {what}. {why}")


def in_words(span: timedelta) -> str:
    """`span` in its largest whole unit, as a finding says it: "26 hours", "5 minutes"."""
    seconds = int(span.total_seconds())
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}" + ("s" if count != 1 else "")
    raise AssertionError("unreachable")


def job_user_gaps(conn: pg8000.native.Connection) -> list[str]:
    """(0014) What this user, as whom pg_cron runs the job, lacks to end stuck app_user
    backends. Judged from its privileges, so said before any backend is stuck:
    - to see their sessions (pg_read_all_stats). A session it may not see (pg_stat_activity
      then shows no state, no transaction start) is one the job can never end, and the job
      succeeds all the same: nothing else would say so. Such sessions there are now are
      counted too, in case a server hides them some other way;
    - to end them (pg_signal_backend). A failed run says so too, but only once the job has
      one to end.
    On RDS the master has both: rds_superuser is a member of pg_monitor (which holds
    pg_read_all_stats) and of pg_signal_backend."""
    if not conn.run("SELECT to_regprocedure(:f) IS NOT NULL", f=STUCK_FUNCTION)[0][0]:
        return []
    # PostgreSQL 15 lets a role that has app_user's privileges see and end its sessions too.
    [[sees, ends, unseen]] = conn.run(
        "SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') OR own, "
        "pg_has_role(current_user, 'pg_signal_backend', 'USAGE') OR own, "
        "(SELECT count(*) FROM pg_stat_activity WHERE usename = 'app_user' "
        " AND datname = current_database() AND state IS NULL) "
        "FROM (SELECT coalesce(pg_has_role(current_user, to_regrole('app_user'), 'USAGE'), "
        "                      false) AS own) o")
    job_user = f"the bootstrap's user, as whom pg_cron runs {STUCK_JOB},"
    missing = []
    if unseen or not sees:
        why = (f"{unseen} show no state in pg_stat_activity" if unseen
               else "it lacks the privileges of pg_read_all_stats")
        missing.append(f"{job_user} cannot see app_user's sessions ({why}), so the job ends "
                       "none of them and still succeeds: GRANT pg_read_all_stats to it, or "
                       "run the bootstrap as a user that has it")
    if not ends:
        missing.append(f"{job_user} may not end app_user's backends (it lacks the privileges "
                       "of pg_signal_backend), so the job fails at the first stuck one and "
                       "leaves it running: GRANT pg_signal_backend to it, or run the bootstrap "
                       "as a user that has it")
    return missing


def pg_cron_loaded(conn: pg8000.native.Connection) -> bool:
    """Whether the server runs pg_cron for this database (shared_preload_libraries and
    cron.database_name, both read at the server's start)."""
    return bool(conn.run("SELECT coalesce(current_setting('cron.database_name', true) = "
                         "current_database(), false)")[0][0])
