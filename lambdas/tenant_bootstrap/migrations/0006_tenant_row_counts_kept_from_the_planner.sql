-- 0006: no tenant learns another tenant's row count from the planner's estimates.
-- ANALYZE keeps statistics of the whole table, every tenant's rows together: the most common
-- tenant_id values and how often each occurs. Row level security hides rows, not these. The
-- planner reads them for any operator marked leakproof, as uuid's = is, so as app_user bound
-- to tenant A, EXPLAIN SELECT * FROM app.bookings WHERE tenant_id = '<B>' estimated exactly
-- B's number of bookings (test_tenant_statistics.py, at version 5). pg_stats itself shows
-- app_user nothing; EXPLAIN was the way round it.
-- Now tenant_id of every tenant table has no statistics (SET STATISTICS 0): the planner
-- estimates every tenant alike (it never knows which tenant a policy's initplan will bind, so
-- only the number of distinct tenants changes, to PostgreSQL's default of 200).
-- Statistics ANALYZE took before stay after SET STATISTICS 0; only setting the column's type
-- again drops them, and PostgreSQL refuses that while a policy or view uses the column. So
-- for a table analyzed before, protect_tenant_table() drops the tenant policy, sets the same
-- type, and creates the policy again, all in the caller's transaction (no moment without
-- it). Another policy or a view on tenant_id stops it with a message naming the fix.
-- The statistics of the other columns still show values common across tenants; see the
-- README's contract for columns whose values are themselves secret.

CREATE OR REPLACE FUNCTION app.protect_tenant_table(tbl regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  -- to_regclass: NULL, not an error, while app.bookings does not exist (before 0002).
  policy_name text := CASE WHEN tbl = to_regclass('app.bookings') THEN
                        'tenant_bookings_isolation' ELSE 'tenant_isolation' END;
  tenant_type text;
  stat_target integer;
BEGIN
  SELECT format_type(a.atttypid, a.atttypmod), a.attstattarget INTO tenant_type, stat_target
    FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = 'tenant_id'
     AND NOT a.attisdropped;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
  EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
  IF stat_target <> 0 THEN
    EXECUTE format('ALTER TABLE %s ALTER COLUMN tenant_id SET STATISTICS 0', tbl);
    -- reltuples is -1 until the first ANALYZE or VACUUM: only then can statistics exist.
    IF (SELECT c.reltuples >= 0 FROM pg_class c WHERE c.oid = tbl) THEN
      EXECUTE format('DROP POLICY IF EXISTS %I ON %s', policy_name, tbl);
      BEGIN
        EXECUTE format('ALTER TABLE %s ALTER COLUMN tenant_id TYPE %s', tbl, tenant_type);
      EXCEPTION WHEN feature_not_supported THEN
        RAISE EXCEPTION '%: its tenant_id statistics (every tenant''s row count, which EXPLAIN '
                        'shows app_user) cannot be dropped: %', tbl, SQLERRM
          USING HINT = 'Drop what uses tenant_id there (in a migration), let the bootstrap '
                       'run, then create it again.';
      END;
    END IF;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_policy WHERE polrelid = tbl AND polname = policy_name) THEN
    EXECUTE format(
      'CREATE POLICY %I ON %s AS PERMISSIVE FOR ALL TO PUBLIC '
      'USING (tenant_id = (SELECT app.current_tenant_id())) '
      'WITH CHECK (tenant_id = (SELECT app.current_tenant_id()))', policy_name, tbl);
  END IF;
END
$$;

-- Tenant tables whose tenant_id has statistics again (a SET STATISTICS while the event
-- trigger was dropped, as RDS asks before a major upgrade); every bootstrap run repairs them.
CREATE OR REPLACE FUNCTION app.audit_tenant_statistics()
RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT c.oid::regclass::text,
         'tenant_id has planner statistics: EXPLAIN shows app_user every tenant''s row count'
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
  WHERE c.relkind IN ('r', 'p') AND a.attstattarget <> 0
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  ORDER BY 1
$$;
ALTER FUNCTION app.audit_tenant_statistics() OWNER TO boom_owner;
REVOKE ALL ON FUNCTION app.audit_tenant_statistics() FROM PUBLIC;

SET LOCAL ROLE boom_owner;
SELECT app.protect_tenant_table(t.table_name::regclass) FROM app.audit_tenant_statistics() t;
RESET ROLE;
