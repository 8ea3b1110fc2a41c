-- 0016: an app_user transaction holding a table lock that other sessions wait for is ended
-- within a minute, not after the 10-minute bound.
--
-- app_user may LOCK TABLE app.bookings IN ACCESS EXCLUSIVE MODE (its UPDATE and DELETE allow
-- that). One transaction doing so, and then running statement after statement, stalls every
-- tenant: their statements on the table wait until they fail after 30 s (0010). 0014 ends such
-- a transaction only once it is older than the bound (10 minutes by default), so every tenant
-- could be locked out of the table for up to 11 minutes.
--
-- app_user owns nothing (0013), so the only table locks it can take above ROW EXCLUSIVE (what
-- INSERT, UPDATE and DELETE take) are LOCK TABLE's: SHARE UPDATE EXCLUSIVE and stronger block
-- some or all of every other tenant's reads and writes, whatever rows they touch. Row locks
-- (UPDATE, SELECT ... FOR UPDATE) are left alone: RLS lets a transaction lock only its own
-- tenant's rows, so the sessions they hold up are its own tenant's.
--
-- Now app.end_stuck_app_user_backends() also ends every app_user backend in this database that
-- holds such a lock on a table while another session's statement has waited more than 5 s
-- for a lock on that table behind it (pg_blocking_pids). A lock held with nobody waiting, or
-- waited for only for a moment, stays. The contract forbids LOCK TABLE on tenant tables
-- (pg_advisory_xact_lock on a key of the tenant's serialises what it must). The rest of the
-- function is 0014's, unchanged; it keeps its owner, its settings and its privileges
-- (CREATE OR REPLACE by its owner, the bootstrap's user).

CREATE OR REPLACE FUNCTION app.end_stuck_app_user_backends()
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
    -- (0016) Table locks above ROW EXCLUSIVE, held by a backend that a statement waiting
    -- for a lock on the same table, for over 5 s, is queued behind.
    WITH table_waits AS (
      SELECT DISTINCT b.pid, held.mode, held.relation::regclass::text AS relation
      FROM pg_locks wanted
      JOIN pg_stat_activity w ON w.pid = wanted.pid
      CROSS JOIN LATERAL unnest(pg_blocking_pids(wanted.pid)) AS b (pid)
      JOIN pg_locks held ON held.pid = b.pid AND held.locktype = 'relation' AND held.granted
        AND held.database = wanted.database AND held.relation = wanted.relation
        AND held.mode IN ('ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock',
                          'ExclusiveLock', 'AccessExclusiveLock')
      WHERE wanted.locktype = 'relation' AND NOT wanted.granted
        AND w.query_start < clock_timestamp() - interval '5 seconds'
    )
    SELECT a.pid,
           CASE WHEN a.xact_start < clock_timestamp() - limit_
                THEN format('its transaction ran %s (bound %s)',
                            date_trunc('second', clock_timestamp() - a.xact_start), limit_)
                WHEN a.state = 'idle' AND a.pid = ANY (holders)
                THEN 'it held a session-level advisory lock between transactions'
                ELSE (SELECT format('it held %s on %s while others waited for it', t.mode,
                                    t.relation)
                      FROM table_waits t WHERE t.pid = a.pid ORDER BY t.relation LIMIT 1)
           END AS why
    FROM pg_stat_activity a
    WHERE a.usename = 'app_user' AND a.datname = current_database()
      AND (a.xact_start < clock_timestamp() - limit_
           OR (a.state = 'idle' AND a.pid = ANY (holders))
           OR a.pid IN (SELECT t.pid FROM table_waits t))
  LOOP
    IF pg_terminate_backend(found_.pid) THEN
      ended := ended + 1;
      RAISE LOG 'boom: ended app_user backend %: %', found_.pid, found_.why;
    END IF;
  END LOOP;
  RETURN ended;
END
$$;
