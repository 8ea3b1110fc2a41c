-- 0010: a statement of app_user's ends after 30 seconds, unless its transaction says otherwise.
--
-- Until now no statement of the application's had a bound (PostgreSQL's default is none). A
-- runaway query (a missing index, a join without its condition, a LIKE over every booking)
-- holds one of the pooled server connections until it ends: 25 of them at once and PgBouncer
-- serves no tenant, and a statement queued behind another's lock waits as long as that lock
-- is held. The seed's target is 50 ms per query on average; 600 times that is long past
-- anyone waiting for a booking page. Now app_user's sessions start with
-- statement_timeout = 30s: such a statement fails (SQLSTATE 57014) and its server connection
-- returns to the pool.
--
-- It is app_user's default, not a cap: a transaction that knows it is slow (an export, a
-- report) raises it for itself alone with SET LOCAL statement_timeout = '5min' (a session-level
-- SET would stay on the pooled server connection for other clients: the contract forbids it).
-- boom_owner has none: migrations run under the bootstrap's own deadline.
--
-- The setting is declared (0007): the audit reports it changed or missing, and every bootstrap
-- run puts it back.

ALTER ROLE app_user SET statement_timeout = '30s';

CREATE OR REPLACE FUNCTION app.declared_role_settings()
RETURNS TABLE (role_name text, setting text)
LANGUAGE sql IMMUTABLE
AS $$
  VALUES ('app_user', 'search_path=app'), ('app_user', 'statement_timeout=30s'),
         ('boom_owner', 'search_path=app')
$$;
