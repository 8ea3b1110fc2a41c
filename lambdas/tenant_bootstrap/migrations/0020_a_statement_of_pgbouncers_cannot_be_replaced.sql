-- 0020: a statement of PgBouncer's cannot be replaced by one of a client's.
--
-- PgBouncer (1.21+, max_prepared_statements) prepares each client's protocol-level statement
-- once per server connection, under a name of its own (PGBOUNCER_<n>, the same for every
-- client sending the same text), and from then on executes that name on that connection for
-- every client that uses the statement. SQL-level PREPARE and DEALLOCATE go straight to
-- PostgreSQL, and neither needs a privilege. So code running as app_user (SQL injection, say)
-- could DEALLOCATE "PGBOUNCER_<n>" (the names are in pg_prepared_statements) and PREPARE its
-- own statement under that name: the next clients of that server connection that used the
-- statement ran the replacement, inside their own transactions, bound to their own tenants,
-- until PgBouncer replaced the connection. Shown through real PgBouncer at version 19
-- (test_pgbouncer_statement_hijack.py): tenant B's prepared read, replaced by a DELETE that
-- counts what it removes, removed every booking of B's and returned a count. Such code can
-- already bind any tenant whose id it knows; this reached every tenant whose transactions
-- passed through, without knowing any.
--
-- Now app.set_tenant(), the first statement of every transaction, looks for a statement under
-- PgBouncer's prefix that SQL made (pg_prepared_statements.from_sql; PgBouncer's own are
-- protocol-level) and, finding one, ends the server connection as 0011 does for a read-only
-- default: the transaction fails before a replaced statement can run in it, with a broken
-- connection that the contract's retry rule covers, and PgBouncer forgets the connection and
-- what it prepared there. The retry runs on a new one. The WARNING names the statement, and
-- its line in the PostgreSQL log raises the Data stack's PooledConnectionAlarm: code running
-- as app_user did this on purpose. A client's own SQL-level PREPARE under another name is
-- left alone: PgBouncer never executes it for anyone else.
-- Not stopped:
-- - set_tenant's own statement, when a client sends it as a named prepared statement: its
--   replacement need not call set_tenant at all, and it receives the client's tenant id as
--   its parameter. The transaction then has no tenant and fails closed, but the id has been
--   handed to the replacement. So the contract has set_tenant sent unnamed (the extended
--   protocol's unnamed statement, or a driver's "do not prepare" for that one statement).
-- - DEALLOCATE alone, with no replacement: every later client that uses the statement on that
--   connection fails (26000) until PgBouncer replaces the connection (server_lifetime,
--   5 minutes; up to 10 for connections opened together), and nothing is left for
--   set_tenant to find.
-- Cost: pg_prepared_statement() lists every statement the connection holds, about 0.2 us
-- each: +2 us per transaction with 10 statements, +47 us with 200, PgBouncer's default cap
-- per server connection (one-off, benchmarks/ANALYSIS.md).

-- 0018's function, with the check added.
CREATE OR REPLACE FUNCTION app.set_tenant(tenant uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  held boolean;
  listening boolean;
  drifted boolean;
  replaced pg_catalog.text;  -- the name of a statement of PgBouncer's that SQL made
  tenant_set pg_catalog.text;  -- set_config()'s results: every expression has its variable
  stamp_set pg_catalog.text;
  leftover pg_catalog.text;
BEGIN
  IF tenant IS NULL THEN
    RAISE EXCEPTION 'app.set_tenant: tenant must not be NULL';
  END IF;
  SELECT (SELECT p.name FROM pg_catalog.pg_prepared_statement() p
          WHERE p.from_sql AND pg_catalog.starts_with(p.name, 'PGBOUNCER_') LIMIT 1),
         EXISTS (SELECT FROM pg_catalog.pg_cursor() c WHERE c.is_holdable),
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
    INTO replaced, held, listening, drifted, tenant_set, stamp_set;
  IF replaced IS NOT NULL THEN
    RAISE WARNING 'app.set_tenant ends this server connection: PgBouncer''s statement % was '
                  'replaced on it by SQL PREPARE, to run in place of PgBouncer''s for its '
                  'next clients', pg_catalog.quote_ident(replaced)
      USING HINT = 'Retry the transaction on a new connection. Never PREPARE or DEALLOCATE in '
                   'SQL through PgBouncer.';
    PERFORM pg_catalog.pg_terminate_backend(pg_catalog.pg_backend_pid());
  END IF;
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
