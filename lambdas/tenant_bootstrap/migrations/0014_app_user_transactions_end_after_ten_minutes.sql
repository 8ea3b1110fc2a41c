-- 0014: an app_user transaction ends after ten minutes (a bound the deploy may change).
--
-- 0010 bounds each statement of app_user's (30 s) and PgBouncer cuts off a client idle in a
-- transaction (60 s), but nothing bounded a transaction that keeps running statement after
-- statement: a worker looping inside one transaction, a batch that never commits, or
-- injected SQL that takes LOCK TABLE app.bookings IN ACCESS EXCLUSIVE MODE (its UPDATE and
-- DELETE allow that) and keeps going. Such a transaction holds its locks, one of the pool's
-- server connections, and the oldest snapshot that VACUUM must respect, for as long as it
-- runs; every tenant's statement on the locked table waits and fails after 30 s. PostgreSQL
-- 15 has no transaction_timeout (17 has).
--
-- Now app.end_long_app_user_transactions() ends (pg_terminate_backend) every backend of
-- app_user's in this database whose transaction began longer ago than the bound in
-- boom_meta.app_user_transaction_bound, and logs each by pid and age, never its statement.
-- pg_cron runs it every minute, so a transaction ends between the bound and a minute later;
-- its client gets a broken connection, which the contract's retry rule covers, and PgBouncer
-- opens a new server connection. Only app_user's: boom_owner's migrations run under the
-- bootstrap's own deadline. The job is not made here: pg_cron is only there where the
-- parameter group loads it for this database, so every bootstrap run schedules or restores
-- the job where it can (enforce.py), and the check reports a job that is missing or altered.
--
-- The bound is a row, not a literal in the job, so a run sets it from the deploy's config
-- without rescheduling anything, and the function reads it at each run. Both belong to the
-- bootstrap's user; EXECUTE is its own: app_user must not end other sessions' transactions.

CREATE TABLE boom_meta.app_user_transaction_bound (
  bound interval NOT NULL CHECK (bound >= interval '1 second'),
  one_row boolean PRIMARY KEY DEFAULT true CHECK (one_row)
);
INSERT INTO boom_meta.app_user_transaction_bound (bound) VALUES (interval '10 minutes');

CREATE FUNCTION app.end_long_app_user_transactions()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  limit_ interval := (SELECT bound FROM boom_meta.app_user_transaction_bound);
  ended integer := 0;
  found_ record;
BEGIN
  FOR found_ IN
    SELECT a.pid, clock_timestamp() - a.xact_start AS age
    FROM pg_stat_activity a
    WHERE a.usename = 'app_user' AND a.datname = current_database()
      AND a.xact_start < clock_timestamp() - limit_
  LOOP
    IF pg_terminate_backend(found_.pid) THEN
      ended := ended + 1;
      RAISE LOG 'boom: ended the transaction of app_user backend % after % (bound %)',
        found_.pid, date_trunc('second', found_.age), limit_;
    END IF;
  END LOOP;
  RETURN ended;
END
$$;
REVOKE ALL ON FUNCTION app.end_long_app_user_transactions() FROM PUBLIC;

-- A function the bootstrap ships (0012).
INSERT INTO boom_meta.shipped_functions (signature)
VALUES ('app.end_long_app_user_transactions()');
