-- 0005: nothing a session keeps carries one tenant into the next pooled client's transaction.
-- Under transaction pooling a server connection serves another client (another tenant) as
-- soon as a transaction ends. Each kind of session state below did carry tenant A into the
-- next transaction, shown through real PgBouncer (tests at version 4: test_tenant_isolation,
-- test_pgbouncer_session_state):
-- - The stamp. 0003 wrote it as date_part('epoch', ...)::text, a float8 printed under the
--   session's extra_float_digits. At -15 (any role may SET it, and a pooled connection keeps
--   it) every stamp printed as '2e+09', so a stamp copied into the session with
--   set_config(..., false) matched every later transaction. Now it is the transaction's start
--   in whole microseconds, an int8, whose text no setting changes; rounding the product
--   cannot merge two microseconds (the float8 is off by at most a quarter of one).
-- - A temporary table. A copy without tenant_id has no policy (one with tenant_id is protected
--   by the event trigger), and the next client reads it by name. app_user may no longer create
--   temporary tables; boom_owner, the migrator, keeps the right: it logs in directly, not
--   through the application's pools. app.audit_database() reports the privilege granted back,
--   and every bootstrap run takes it back or refuses to finish.
-- - A WITH HOLD cursor. Its rows are computed at COMMIT under the declaring transaction's
--   tenant, and FETCH reads them in any later transaction.
-- - A LISTEN. PostgreSQL delivers a channel's notifications when the transaction on that
--   connection ends, whoever's it is.
-- app.set_tenant() closes every WITH HOLD cursor and stops every LISTEN that an earlier
-- transaction left on its connection, each with a WARNING naming it (the UNLISTEN takes effect
-- at COMMIT, before delivery); those of the current transaction stay. It reads both in the
-- statement that sets the tenant: one look at the session per call (benchmarks/ANALYSIS.md).

DO $$
BEGIN
  EXECUTE pg_catalog.format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, app_user',
                            pg_catalog.current_database());
  EXECUTE pg_catalog.format('GRANT TEMPORARY ON DATABASE %I TO boom_owner',
                            pg_catalog.current_database());
END
$$;

CREATE OR REPLACE FUNCTION app.audit_database() RETURNS TABLE (problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT 'app_user may create temporary tables in database ' || quote_ident(current_database())
         || ', which outlive a pooled transaction: the next client on that server connection '
         || '(another tenant) could read them. REVOKE TEMPORARY ON DATABASE '
         || quote_ident(current_database()) || ' FROM PUBLIC, app_user as its owner; a grant '
         || 'made by another role is revoked by that role, or from it with CASCADE'
  WHERE has_database_privilege('app_user', current_database(), 'TEMPORARY')
$$;
ALTER FUNCTION app.audit_database() OWNER TO boom_owner;
REVOKE ALL ON FUNCTION app.audit_database() FROM PUBLIC;

DO $$
BEGIN
  IF EXISTS (SELECT FROM app.audit_database()) THEN
    RAISE EXCEPTION '%', (SELECT problem FROM app.audit_database());
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION app.current_tenant_id() RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
  tenant pg_catalog.text := pg_catalog.current_setting('boom.tenant_id', true);
BEGIN
  IF tenant OPERATOR(pg_catalog.<>) ''
     AND pg_catalog.current_setting('boom.tenant_tx', true) OPERATOR(pg_catalog.=)
         (pg_catalog.date_part('epoch', pg_catalog.transaction_timestamp())
          OPERATOR(pg_catalog.*) 1000000::pg_catalog.float8)::pg_catalog.int8::pg_catalog.text
  THEN
    RETURN tenant::pg_catalog.uuid;
  END IF;
  RETURN NULL;
END
$$;

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
