-- 0011: a setting one client leaves on a pooled server connection does not reach the next.
--
-- Any session may SET a setting for the rest of the session. Under transaction pooling the
-- session is PgBouncer's server connection, which serves another client (another tenant) as
-- soon as the transaction ends, and keeps the setting until it is closed (server_lifetime, an
-- hour). PgBouncer restores only the settings it tracks per client (client_encoding, DateStyle,
-- TimeZone, standard_conforming_strings, application_name). Shown through real PgBouncer at
-- version 10 (test_pgbouncer_session_settings.py): after one client's
-- SET default_transaction_read_only = on, the next client on that server connection could not
-- write, and after SET statement_timeout = 0 its statements ran without 0010's bound. A
-- request that does this by mistake, or through SQL injection, fails or unbounds other
-- tenants' transactions at random for as long as the connection lives (0007 closed the
-- role-wide version of the same outage).
--
-- Now app_user's sessions start with declared values for every setting that makes a later
-- statement fail or lifts the bound on it, and app.set_tenant(), the first statement of every
-- transaction, puts back any that differ, each with a WARNING naming it. Declared, so the
-- value set_tenant expects is the value a new session gets whatever the parameter group says,
-- and 0007's audit keeps the role there:
-- - statement_timeout (0010) and search_path (0001), declared before;
-- - lock_timeout = 0: a tiny one fails every statement that waits for a lock;
-- - row_security = on: 'off' fails every statement on a tenant table (RLS still applies to
--   app_user; PostgreSQL raises an error rather than bypass it);
-- - default_transaction_isolation = 'read committed': a stricter level fails transactions
--   with serialization errors that read committed would run;
-- - default_transaction_read_only = off: 'on' fails every write.
-- The first four settings act per statement: set_tenant RESETs them and the transaction
-- runs as declared. The last two act when a transaction begins, before set_tenant runs. A stricter
-- isolation level still gives correct results, so set_tenant RESETs it for the transactions
-- after this one. A read-only transaction cannot be made to write, and if it fails and rolls
-- back, a RESET would roll back with it and leave the setting for the next client: so
-- set_tenant ends the server connection instead (pg_terminate_backend of its own backend),
-- and the setting with it. The client gets a broken connection, which the contract's retry
-- rule covers, and PgBouncer opens a new server connection.
-- Not pinned: idle_in_transaction_session_timeout (a tiny one ends the server connection, and
-- the setting with it, at the first pause: one transaction, which the retry rule covers),
-- settings that change how fast a statement runs or how values print (enable_*, ...; the
-- pinned statement bound caps the first), and work_mem, which teams tune in the parameter
-- group: pinning it here would override that. The contract still forbids session-level SET.
--
-- Cost: six current_setting() comparisons in the statement that sets the tenant, about 3 us
-- of CPU per transaction (benchmarks/ANALYSIS.md); the rest runs only when something differs.
-- The check cannot tell a session-level SET from a SET LOCAL made earlier in the same
-- transaction, so SET LOCAL comes after set_tenant(), as the contract already says.

ALTER ROLE app_user SET lock_timeout = 0;
ALTER ROLE app_user SET default_transaction_read_only = off;
ALTER ROLE app_user SET default_transaction_isolation = 'read committed';
ALTER ROLE app_user SET row_security = on;

CREATE OR REPLACE FUNCTION app.declared_role_settings()
RETURNS TABLE (role_name text, setting text)
LANGUAGE sql IMMUTABLE
AS $$
  VALUES ('app_user', 'search_path=app'), ('app_user', 'statement_timeout=30s'),
         ('app_user', 'lock_timeout=0'), ('app_user', 'default_transaction_read_only=off'),
         ('app_user', 'default_transaction_isolation=read committed'),
         ('app_user', 'row_security=on'),
         ('boom_owner', 'search_path=app')
$$;

-- 0005's function, plus `drifted` and its loop. The values below are app_user's declared
-- settings as SHOW prints them; test_pgbouncer_session_settings.py walks
-- declared_role_settings() so that one added there and not here fails. Only app_user's
-- sessions are checked: boom_owner (a data migration binding a tenant) has its own settings.
CREATE OR REPLACE FUNCTION app.set_tenant(tenant uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  held boolean;
  listening boolean;
  drifted boolean;
  leftover pg_catalog.text;
BEGIN
  IF tenant IS NULL THEN
    RAISE EXCEPTION 'app.set_tenant: tenant must not be NULL';
  END IF;
  SELECT EXISTS (SELECT FROM pg_catalog.pg_cursor() c WHERE c.is_holdable),
         EXISTS (SELECT FROM pg_catalog.pg_listening_channels()),
         pg_catalog.current_user() OPERATOR(pg_catalog.=) 'app_user' AND (
           pg_catalog.current_setting('statement_timeout') OPERATOR(pg_catalog.<>) '30s'
           OR pg_catalog.current_setting('search_path') OPERATOR(pg_catalog.<>) 'app'
           OR pg_catalog.current_setting('lock_timeout') OPERATOR(pg_catalog.<>) '0'
           OR pg_catalog.current_setting('default_transaction_read_only')
              OPERATOR(pg_catalog.<>) 'off'
           OR pg_catalog.current_setting('default_transaction_isolation')
              OPERATOR(pg_catalog.<>) 'read committed'
           OR pg_catalog.current_setting('row_security') OPERATOR(pg_catalog.<>) 'on'),
         pg_catalog.set_config('boom.tenant_id', tenant::pg_catalog.text, true),
         pg_catalog.set_config('boom.tenant_tx', (pg_catalog.date_part(
           'epoch', pg_catalog.transaction_timestamp()) OPERATOR(pg_catalog.*)
           1000000::pg_catalog.float8)::pg_catalog.int8::pg_catalog.text, true)
    INTO held, listening, drifted;
  IF drifted THEN
    IF pg_catalog.current_setting('default_transaction_read_only') OPERATOR(pg_catalog.<>) 'off'
    THEN
      RAISE WARNING 'app.set_tenant ends this server connection: default_transaction_read_only '
                    'was changed on it before the transaction began, so the transaction '
                    'cannot write'
        USING HINT = 'Retry the transaction on a new connection. Through a transaction pooler '
                     'a session-level SET stays on the server connection for whichever client '
                     'it serves next.';
      PERFORM pg_catalog.pg_terminate_backend(pg_catalog.pg_backend_pid());
    END IF;
    FOR leftover IN SELECT s.name FROM (VALUES
                      ('statement_timeout', '30s'), ('search_path', 'app'),
                      ('lock_timeout', '0'), ('row_security', 'on'),
                      ('default_transaction_isolation', 'read committed')) AS s (name, value)
                    WHERE pg_catalog.current_setting(s.name) OPERATOR(pg_catalog.<>) s.value
    LOOP
      -- RESET: back to the session's default, the declared role setting.
      EXECUTE pg_catalog.format('RESET %I', leftover);
      RAISE WARNING 'app.set_tenant reset % to app_user''s default: it was changed on this '
                    'connection before the transaction set its tenant',
                    pg_catalog.quote_ident(leftover)
        USING HINT = 'Through a transaction pooler a session-level SET stays on the server '
                     'connection for whichever client it serves next: use SET LOCAL, after '
                     'app.set_tenant().';
    END LOOP;
  END IF;
  IF held THEN
    FOR leftover IN SELECT c.name FROM pg_catalog.pg_cursor() c
                    WHERE c.is_holdable AND c.creation_time OPERATOR(pg_catalog.<)
                          pg_catalog.transaction_timestamp()
    LOOP
      EXECUTE pg_catalog.format('CLOSE %I', leftover);
      RAISE WARNING 'app.set_tenant closed cursor % held from an earlier transaction on this '
                    'connection', pg_catalog.quote_ident(leftover)
        USING HINT = 'Through a transaction pooler a WITH HOLD cursor reaches whichever '
                     'client the connection serves next: close it before COMMIT.';
    END LOOP;
  END IF;
  IF listening THEN
    -- pg_listening_channels() lists what earlier transactions committed, not this one's.
    FOR leftover IN SELECT channel FROM pg_catalog.pg_listening_channels() AS channel LOOP
      EXECUTE pg_catalog.format('UNLISTEN %I', leftover);
      RAISE WARNING 'app.set_tenant stopped listening on channel % left by an earlier '
                    'transaction on this connection', pg_catalog.quote_ident(leftover)
        USING HINT = 'Through a transaction pooler a LISTEN hands notifications to whichever '
                     'client the connection serves: listen on a direct connection instead.';
    END LOOP;
  END IF;
  RETURN tenant;
END
$$;

-- CREATE OR REPLACE keeps 0001's owner (boom_owner) and grants (EXECUTE for app_user only).
