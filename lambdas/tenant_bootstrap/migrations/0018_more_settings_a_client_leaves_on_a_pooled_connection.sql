-- 0018: more settings a client leaves on a pooled connection: the next client's failed
-- statements do not log their bind values, its commits stay synchronous, and its set_tenant()
-- cannot be made to fail.
--
-- Three settings any role may change for itself undo a promise for whoever comes after it on
-- a pooled server connection. 0011 pinned the settings that fail a later statement or lift
-- its bound; the first two fail nothing, so nobody would notice. Under transaction pooling a
-- session-level SET stays on PgBouncer's server connection for the clients it serves next,
-- whichever tenant's, until the connection closes (server_lifetime, an hour). All three shown
-- through real PgBouncer at version 10 (test_pgbouncer_session_settings.py):
-- - log_parameter_max_length_on_error. The parameter group logs a failed statement with its
--   text and without its bind values (0): the values are tenants' data, and CloudWatch Logs is
--   read by everyone who runs the platform. After one client's SET ... = -1, tenant B's
--   failing statement was logged with B's e-mail address in full.
-- - synchronous_commit. A COMMIT that returned has been written to disk: the booking a
--   customer was told about survives a crash or a failover. After one client's
--   SET synchronous_commit = off (common advice for bulk loads), the next tenant's
--   transactions committed without waiting for their WAL: acknowledged, then lost if the
--   instance failed within the next few hundred milliseconds (three times wal_writer_delay).
-- - plpgsql.extra_errors. 0011's set_tenant() reads five expressions into three variables
--   (the two set_config() calls are there for their effect), which PL/pgSQL's
--   strict_multi_assignment check refuses at run time. After one client's
--   SET plpgsql.extra_errors = 'all', every later set_tenant() on that server connection
--   failed (42804), so every transaction there did, for the connection's hour: 0011's reset
--   never ran, since the failing statement is the one that looks for drifted settings.
-- A role setting of app_user's own was undone by 0007's audit, but a database-wide one (0019)
-- or a session's was not.
--
-- Now app_user's sessions start with the first two declared (0 and on), whatever the database
-- or the parameter group says, and app.set_tenant() puts them back as it does 0011's per-statement
-- settings: a RESET, with a WARNING naming it. synchronous_commit is read at COMMIT, so the
-- RESET covers the very transaction that finds it. set_tenant() now reads each expression
-- into a variable of its own, so no extra_errors check has anything to refuse (tested with
-- 'all'); that setting is not pinned, as it fails only a function that assigns loosely, and
-- the application's own functions are the application's. 0011's function otherwise,
-- unchanged.
-- Not stopped: a client's SET LOCAL after set_tenant(), which affects its own transaction
-- only: logging its own values (the contract forbids it), or committing asynchronously (the
-- contract allows it for loads that can be replayed). The slow-statement log's bind values
-- only a superuser may switch on (log_parameter_max_length). The parameter group leaves
-- synchronous_commit at PostgreSQL's default, on; were a team to turn it off there,
-- app_user's role setting would keep it on.
-- Cost: two more current_setting() comparisons per transaction, under half a microsecond each
-- (0011's measurement, benchmarks/ANALYSIS.md).

ALTER ROLE app_user SET log_parameter_max_length_on_error = 0;
ALTER ROLE app_user SET synchronous_commit = on;

CREATE OR REPLACE FUNCTION app.declared_role_settings()
RETURNS TABLE (role_name text, setting text)
LANGUAGE sql IMMUTABLE
AS $$
  VALUES ('app_user', 'search_path=app'), ('app_user', 'statement_timeout=30s'),
         ('app_user', 'lock_timeout=0'), ('app_user', 'default_transaction_read_only=off'),
         ('app_user', 'default_transaction_isolation=read committed'),
         ('app_user', 'row_security=on'), ('app_user', 'log_parameter_max_length_on_error=0'),
         ('app_user', 'synchronous_commit=on'),
         ('boom_owner', 'search_path=app')
$$;

-- 0011's function with the two settings added to both lists, and a variable for each of
-- set_config()'s results. The values are app_user's
-- declared settings as SHOW prints them; test_pgbouncer_session_settings.py walks
-- declared_role_settings(), so that one added there and not here fails.
CREATE OR REPLACE FUNCTION app.set_tenant(tenant uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  held boolean;
  listening boolean;
  drifted boolean;
  tenant_set pg_catalog.text;  -- set_config()'s results: every expression has its variable
  stamp_set pg_catalog.text;
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
           OR pg_catalog.current_setting('row_security') OPERATOR(pg_catalog.<>) 'on'
           OR pg_catalog.current_setting('log_parameter_max_length_on_error')
              OPERATOR(pg_catalog.<>) '0'
           OR pg_catalog.current_setting('synchronous_commit') OPERATOR(pg_catalog.<>) 'on'),
         pg_catalog.set_config('boom.tenant_id', tenant::pg_catalog.text, true),
         pg_catalog.set_config('boom.tenant_tx', (pg_catalog.date_part(
           'epoch', pg_catalog.transaction_timestamp()) OPERATOR(pg_catalog.*)
           1000000::pg_catalog.float8)::pg_catalog.int8::pg_catalog.text, true)
    INTO held, listening, drifted, tenant_set, stamp_set;
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
                      ('default_transaction_isolation', 'read committed'),
                      ('log_parameter_max_length_on_error', '0'),
                      ('synchronous_commit', 'on')) AS s (name, value)
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

-- CREATE OR REPLACE by their owner, the bootstrap's user (0012), keeps both functions' owner and
-- grants (set_tenant: EXECUTE for app_user only).
