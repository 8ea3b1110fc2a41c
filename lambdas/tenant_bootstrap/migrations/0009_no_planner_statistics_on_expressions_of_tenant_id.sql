-- 0009: no planner statistics on expressions of tenant_id.
--
-- 0006 keeps no statistics on tenant_id, so EXPLAIN estimates every tenant alike. But ANALYZE
-- also keeps statistics on each expression an index is built on, and on each expression of an
-- extended statistics object (CREATE STATISTICS ... ON (expression)), with their own targets.
-- An index on (tenant_id::text), or on lower(tenant_id::text), brought per-tenant statistics
-- back: as app_user bound to one tenant, EXPLAIN ... WHERE tenant_id::text = '<B>' estimated
-- the tenant with most bookings above the others (test_tenant_statistics.py, at version 8).
-- Extended statistics on plain columns that include tenant_id are not the way in: ANALYZE
-- builds none while a column has no statistics (the test checks that too).
--
-- Now app.audit_tenant_expression_statistics() reports an index or an extended statistics
-- object of a tenant table with an expression that uses tenant_id, so the guarantee check
-- finds it and every bootstrap run refuses to finish until it is dropped. Like a unique index
-- made with CREATE INDEX (0006), it is not refused when made: the event trigger does not run
-- for CREATE INDEX, which may be CONCURRENTLY (an error at its end could leave an invalid
-- index behind). Index tenant_id itself (plain columns keep no index statistics) instead.

CREATE OR REPLACE FUNCTION app.audit_tenant_expression_statistics()
RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH tenant_tables AS (SELECT relid AS oid, name FROM app.tenant_tables())
  SELECT t.name, 'index ' || i.indexrelid::regclass::text || ' keeps planner statistics on '
                 'an expression of tenant_id, which tell one tenant of the others: drop it'
    FROM tenant_tables t JOIN pg_index i ON i.indrelid = t.oid
    WHERE i.indexprs IS NOT NULL
      AND EXISTS (SELECT FROM generate_series(1, i.indnkeyatts) AS k(n)
                  WHERE i.indkey[k.n - 1] = 0
                    AND pg_get_indexdef(i.indexrelid, k.n, true) ~ '\mtenant_id\M')
  UNION ALL
  SELECT t.name, 'statistics object ' || quote_ident(n.nspname) || '.' || quote_ident(s.stxname)
                 || ' keeps planner statistics on an expression of tenant_id, which tell one '
                 'tenant of the others: drop it'
    FROM tenant_tables t
    JOIN pg_statistic_ext s ON s.stxrelid = t.oid
    JOIN pg_namespace n ON n.oid = s.stxnamespace
    WHERE s.stxexprs IS NOT NULL
      AND EXISTS (SELECT FROM unnest(pg_get_statisticsobjdef_expressions(s.oid)) AS e(expr)
                  WHERE e.expr ~ '\mtenant_id\M')
  ORDER BY 1, 2
$$;
ALTER FUNCTION app.audit_tenant_expression_statistics() OWNER TO boom_owner;
REVOKE ALL ON FUNCTION app.audit_tenant_expression_statistics() FROM PUBLIC;
