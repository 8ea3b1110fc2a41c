-- 0014: an app_user backend that holds up everyone else is ended: a transaction older than the
-- bound (10 minutes unless the deploy says otherwise), or a pooled server connection left
-- holding a session-level advisory lock.
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
-- And a session-level advisory lock (pg_advisory_lock) outlives the client's transaction on
-- PgBouncer's server connection, for up to server_lifetime (an hour): every other server
-- connection's pg_advisory_lock on that key waits, while the next clients the holding
-- connection serves take it at once (advisory locks belong to the session), and the client
-- that took it, whose pg_advisory_unlock lands on another server connection, cannot release
-- it (shown through real PgBouncer, test_stuck_app_user_backends.py). Such a connection,
-- idle between transactions, has nothing a client is waiting for.
--
-- Now app.end_stuck_app_user_backends() ends (pg_terminate_backend) every backend of
-- app_user's in this database whose transaction began longer ago than the bound in
-- boom_meta.app_user_transaction_bound, or that holds an advisory lock outside a transaction,
-- and logs each by pid and reason, never its statements. pg_cron runs it every minute, so
-- such a backend ends within a minute (after the bound, for a transaction); a client in the
-- middle of the transaction sees a broken connection, which the contract's retry rule covers,
-- and PgBouncer opens a new server connection. Only app_user's: boom_owner's migrations run
-- under the bootstrap's own deadline. The job is not made here: pg_cron is only there where
-- the parameter group loads it for this database, so every bootstrap run schedules or
-- restores the job where it can (enforce.py), and the check reports a job that is missing or
-- altered.
--
-- The bound is a row, not a literal in the job, so a run sets it from the deploy's config
-- without rescheduling anything, and the function reads it at each run. Both belong to the
-- bootstrap's user; EXECUTE is its own: app_user must not end other sessions.

CREATE TABLE boom_meta.app_user_transaction_bound (
  bound interval NOT NULL CHECK (bound >= interval '1 second'),
  one_row boolean PRIMARY KEY DEFAULT true CHECK (one_row)
);
INSERT INTO boom_meta.app_user_transaction_bound (bound) VALUES (interval '10 minutes');

CREATE FUNCTION app.end_stuck_app_user_backends()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  limit_ interval := (SELECT bound FROM boom_meta.app_user_transaction_bound);
  -- Read before the sessions' states: a backend that holds an advisory lock here and is
  -- idle below held a session-level one (a transaction's own end with the transaction). In
  -- the other order, a lock taken by a transaction that began in between would count.
  holders integer[] := ARRAY(SELECT DISTINCT l.pid FROM pg_locks l
                             WHERE l.locktype = 'advisory' AND l.granted);
  ended integer := 0;
  found_ record;
BEGIN
  FOR found_ IN
    SELECT a.pid,
           CASE WHEN a.xact_start < clock_timestamp() - limit_
                THEN format('its transaction ran %s (bound %s)',
                            date_trunc('second', clock_timestamp() - a.xact_start), limit_)
                ELSE 'it held a session-level advisory lock between transactions' END AS why
    FROM pg_stat_activity a
    WHERE a.usename = 'app_user' AND a.datname = current_database()
      AND (a.xact_start < clock_timestamp() - limit_
           OR (a.state = 'idle' AND a.pid = ANY (holders)))
  LOOP
    IF pg_terminate_backend(found_.pid) THEN
      ended := ended + 1;
      RAISE LOG 'boom: ended app_user backend %: %', found_.pid, found_.why;
    END IF;
  END LOOP;
  RETURN ended;
END
$$;
REVOKE ALL ON FUNCTION app.end_stuck_app_user_backends() FROM PUBLIC;

-- A function the bootstrap ships (0012).
INSERT INTO boom_meta.shipped_functions (signature) VALUES ('app.end_stuck_app_user_backends()');
