-- 0004: the audit compares each policy's expressions exactly, not by substring.
-- 0001's audit accepted any policy whose text contained the tenant check. So the tenant policy
-- altered to USING (tenant_id = (SELECT app.current_tenant_id()) OR true), or a second
-- permissive policy USING (<the tenant check>) WITH CHECK (true), passed the audit (and the
-- bootstrap's check at the end of every run) while opening tenants to each other.
-- Now every permissive policy on a tenant table must use exactly the tenant check in each
-- expression it has, compared as PostgreSQL deparses it with search_path = pg_catalog (this
-- function's). Should a future major version deparse it differently, the audit reports every
-- tenant table and the bootstrap stops: it fails loudly, never silently.

CREATE OR REPLACE FUNCTION app.audit_tenant_tables()
RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH tenant_check(expr) AS (
    VALUES ('(tenant_id = ( SELECT app.current_tenant_id() AS current_tenant_id))'::text)
  ), tenant_tables AS (
    SELECT c.oid, c.oid::regclass::text AS name, c.relrowsecurity, c.relforcerowsecurity,
           pg_get_userbyid(c.relowner) AS owner
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  ), permissive AS (
    SELECT t.name, p.polname, p.polcmd,
           pg_get_expr(p.polqual, p.polrelid) AS using_expr,
           pg_get_expr(p.polwithcheck, p.polrelid) AS check_expr
    FROM tenant_tables t JOIN pg_policy p ON p.polrelid = t.oid
    WHERE p.polpermissive
  )
  SELECT name, 'row level security is not enabled' FROM tenant_tables WHERE NOT relrowsecurity
  UNION ALL
  SELECT name, 'row level security is not forced' FROM tenant_tables
    WHERE NOT relforcerowsecurity
  UNION ALL
  SELECT t.name, 'no policy checks tenant_id = current_tenant_id() in USING and WITH CHECK'
    FROM tenant_tables t
    WHERE NOT EXISTS (
      SELECT FROM permissive p, tenant_check c
      WHERE p.name = t.name AND p.polcmd = '*' AND p.using_expr = c.expr
        AND p.check_expr = c.expr)
  UNION ALL
  SELECT p.name, 'policy ' || quote_ident(p.polname) || ' widens access: its USING and WITH '
                 'CHECK must be exactly tenant_id = (SELECT app.current_tenant_id())'
    FROM permissive p, tenant_check c
    WHERE p.using_expr IS DISTINCT FROM c.expr AND p.using_expr IS NOT NULL
       OR p.check_expr IS DISTINCT FROM c.expr AND p.check_expr IS NOT NULL
       OR p.using_expr IS NULL AND p.check_expr IS NULL
  UNION ALL
  SELECT name, 'owned by ' || owner || ', not boom_owner' FROM tenant_tables
    WHERE owner <> 'boom_owner'
  ORDER BY 1, 2
$$;
-- CREATE OR REPLACE keeps 0001's owner (boom_owner) and privileges.
