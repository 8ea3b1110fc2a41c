-- 0015: the check reports a pg_cron job that has stopped running.
--
-- 0014's job is what bounds app_user's transactions. The check already reports the job
-- missing, paused or altered, and a run that failed. A job that is scheduled exactly as
-- shipped and simply does not run went unseen: pg_cron's scheduler stopped, out of background
-- workers (its run stays 'starting'), its history turned off (cron.log_run), or one run that
-- never ends (pg_cron starts no other run of a job while one is running). Then no
-- transaction is bounded, and nothing says so.
--
-- Whether a job is late depends on how long it has been scheduled: right after a deploy it
-- has not run yet, and that is no finding. pg_cron does not record when a job was made, so
-- every bootstrap run records it here, by name and pg_cron's job id, when it schedules a job
-- or first finds it as shipped (cron.py); a job made again gets a new id and a new time. The
-- check (cron.overdue_jobs) then reports a job as shipped whose latest run started longer ago
-- than its period allows, once the job has been scheduled and the server up for that long.
--
-- The table belongs to the bootstrap's user, as boom_meta does; nobody else reads it.

CREATE TABLE boom_meta.cron_jobs_scheduled (
  jobname text PRIMARY KEY,
  jobid bigint NOT NULL,
  scheduled_at timestamptz NOT NULL DEFAULT now()
);
