-- 0007: a LISTEN left on a pooled connection no longer hands notifications to the next
-- client, and set_tenant() looks at the session in one statement.
-- LISTEN is session state like 0006's: a channel one client listens on stays on the server
-- connection, and PostgreSQL delivers its notifications when the transaction running there
-- ends, whoever's it is. Through PgBouncer, tenant B's COMMIT returned the payload of a
-- NOTIFY meant for tenant A's listener (test_pgbouncer_session_state.py shows it at
-- version 6). Now app.set_tenant() stops listening on every channel an earlier transaction
-- left, with a WARNING naming it; the UNLISTEN takes effect at COMMIT, before delivery, so
-- the transaction that binds a tenant receives none of them. A LISTEN of the current
-- transaction is kept, as 0006 keeps its cursors.
-- One statement reads both what 0006 looked for and what this adds while it sets the tenant:
-- one look at the session instead of two, so no dearer than 0006's (benchmarks/ANALYSIS.md).

CREATE OR REPLACE FUNCTION app.set_tenant(tenant uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  held boolean;
  listening boolean;
  leftover pg_catalog.text;
BEGIN
  IF tenant IS NULL THEN
    RAISE EXCEPTION 'app.set_tenant: tenant must not be NULL';
  END IF;
  SELECT EXISTS (SELECT FROM pg_catalog.pg_cursor() c WHERE c.is_holdable),
         EXISTS (SELECT FROM pg_catalog.pg_listening_channels()),
         pg_catalog.set_config('boom.tenant_id', tenant::pg_catalog.text, true),
         pg_catalog.set_config('boom.tenant_tx', (pg_catalog.date_part(
           'epoch', pg_catalog.transaction_timestamp()) OPERATOR(pg_catalog.*)
           1000000::pg_catalog.float8)::pg_catalog.int8::pg_catalog.text, true)
    INTO held, listening;
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
