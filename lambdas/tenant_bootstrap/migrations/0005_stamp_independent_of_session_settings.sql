-- 0005: the tenant stamp no longer depends on the session's settings.
-- 0003 wrote the stamp as date_part('epoch', ...)::text, a float8 printed under the session's
-- extra_float_digits. A session at -15 (a value any role may SET, and one that a pooled server
-- connection keeps for its next client) prints every stamp as '2e+09'. A stamp copied into
-- the session with set_config(..., false) then matched every later transaction, and the
-- tenant beside it leaked into them: the mistake the stamp exists to catch.
-- Now the stamp is the transaction's start in whole microseconds since the epoch, an int8,
-- whose text no setting changes. Rounding the product cannot merge two microseconds: the
-- float8 is off by at most a quarter of one at today's dates. Cost: the same as 0003's within
-- a few nanoseconds (benchmarks/ANALYSIS.md).

CREATE OR REPLACE FUNCTION app.set_tenant(tenant uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
  IF tenant IS NULL THEN
    RAISE EXCEPTION 'app.set_tenant: tenant must not be NULL';
  END IF;
  PERFORM pg_catalog.set_config('boom.tenant_id', tenant::pg_catalog.text, true),
          pg_catalog.set_config('boom.tenant_tx', (pg_catalog.date_part(
            'epoch', pg_catalog.transaction_timestamp()) OPERATOR(pg_catalog.*)
            1000000::pg_catalog.float8)::pg_catalog.int8::pg_catalog.text, true);
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
         (pg_catalog.date_part('epoch', pg_catalog.transaction_timestamp())
          OPERATOR(pg_catalog.*) 1000000::pg_catalog.float8)::pg_catalog.int8::pg_catalog.text
  THEN
    RETURN tenant::pg_catalog.uuid;
  END IF;
  RETURN NULL;
END
$$;

-- CREATE OR REPLACE keeps 0001's owner (boom_owner) and grants (EXECUTE for app_user only).
