"""pg_cron's jobs (migration 0014): scheduling them as shipped where the server runs pg_cron for
this database, and the run history's failures, for the check. The job ends the app_user
backends that hold up the others (app.end_stuck_app_user_backends()); PostgreSQL 15 has no
transaction_timeout, and nothing else runs in the database on a schedule.
"""

from __future__ import annotations

import pg8000.native

# (0014) pg_cron's jobs, by name: (schedule, command). The first ends, every minute, app_user
# backends that hold up the others (a transaction older than the bound, a session-level
# advisory lock between transactions); the second keeps pg_cron's run history (a row a
# minute, which pg_cron never deletes) to a week.
STUCK_JOB = "boom-end-stuck-app-user-backends"
STUCK_FUNCTION = "app.end_stuck_app_user_backends()"
# How the server log line of each backend the job ends begins (0014's RAISE LOG), which the
# Data stack's metric filter counts.
STUCK_BACKEND_LOG = "boom: ended app_user backend"
HISTORY_JOB = "boom-purge-cron-run-details"
CRON_JOBS = {
    STUCK_JOB: ("* * * * *", f"SELECT {STUCK_FUNCTION}"),
    HISTORY_JOB: ("17 3 * * *", "DELETE FROM cron.job_run_details "
                                "WHERE end_time < now() - interval '7 days'"),
}


def schedule_jobs(conn: pg8000.native.Connection) -> list[str]:
    """(0014) pg_cron's jobs (CRON_JOBS), each scheduled once as this user in this database,
    active, exactly as shipped; pg_cron installed first. Only where the server loads pg_cron
    for this database (the parameter group's cron.database_name): elsewhere (a local
    database, say) there is nothing to schedule with, and nothing is reported."""
    if not conn.run("SELECT to_regprocedure(:f) IS NOT NULL", f=STUCK_FUNCTION)[0][0] \
            or not pg_cron_loaded(conn):
        return []
    done = []
    if not conn.run("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron')")[0][0]:
        conn.run("CREATE EXTENSION pg_cron")
        done.append("pg_cron installed")
    for name, (schedule, command) in CRON_JOBS.items():
        jobs = conn.run("SELECT jobid, schedule, command, active, "
                        "database = current_database() FROM cron.job "
                        "WHERE jobname = :n AND username = current_user", n=name)
        if len(jobs) == 1 and jobs[0][1:] == [schedule, command, True, True]:
            continue
        for [job, *_] in jobs:  # altered or paused: made again as shipped
            conn.run("SELECT cron.unschedule(CAST(:j AS bigint))", j=job)
        conn.run("SELECT cron.schedule(:n, :s, :c)", n=name, s=schedule, c=command)
        done.append(f"pg_cron job {name} " + (f"restored as shipped ({schedule}, active, this "
                                              "database)" if jobs else "scheduled"))
    return done


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


def pg_cron_loaded(conn: pg8000.native.Connection) -> bool:
    """Whether the server runs pg_cron for this database (shared_preload_libraries and
    cron.database_name, both read at the server's start)."""
    return bool(conn.run("SELECT coalesce(current_setting('cron.database_name', true) = "
                         "current_database(), false)")[0][0])
