-- 0003: the same tenant contract as 0001, cheaper per statement (benchmarks/RESULTS.md).
-- 0001's current_tenant_id() was a SQL function with a SET clause: PostgreSQL parses and plans
-- such a body on every call, and the SET clause switches search_path each time. In PL/pgSQL,
-- without the SET clause, the body is compiled once per session. Safety does not depend on
-- search_path: every function, operator and type below is qualified with pg_catalog, so
-- nothing a caller creates (temporary tables' types included) can stand in for them; both
-- functions run with the caller's rights (SECURITY INVOKER).
-- The stamp is date_part('epoch', ...) (float8 text) in both functions; each call compares it
-- with the current transaction's start, so a value that outlived its transaction fails closed.

CREATE OR REPLACE FUNCTION app.set_tenant(tenant uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
  IF tenant IS NULL THEN
    RAISE EXCEPTION 'app.set_tenant: tenant must not be NULL';
  END IF;
  PERFORM pg_catalog.set_config('boom.tenant_id', tenant::pg_catalog.text, true),
          pg_catalog.set_config('boom.tenant_tx', pg_catalog.date_part(
            'epoch', pg_catalog.transaction_timestamp())::pg_catalog.text, true);
  RETURN tenant;
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
         pg_catalog.date_part('epoch', pg_catalog.transaction_timestamp())::pg_catalog.text
  THEN
    RETURN tenant::pg_catalog.uuid;
  END IF;
  RETURN NULL;
END
$$;

-- CREATE OR REPLACE keeps 0001's owner (boom_owner) and grants (EXECUTE for app_user only).
