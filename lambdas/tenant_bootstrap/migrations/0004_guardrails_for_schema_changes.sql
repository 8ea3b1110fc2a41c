-- 0004: guardrails for schema changes. What could open tenants to each other is refused when
-- it is made (event trigger) or reported by the audit, which every bootstrap run ends with.
--
-- Policies compared exactly. 0001's audit accepted any policy whose text contained the tenant
-- check, so the tenant policy altered to USING (tenant_id = (SELECT app.current_tenant_id())
-- OR true), or a second permissive policy USING (<the tenant check>) WITH CHECK (true),
-- passed it. Now every permissive policy on a tenant table must use exactly the tenant check
-- in each expression it has, compared as PostgreSQL deparses it with search_path =
-- pg_catalog (the audit's). Should a future major version deparse it differently, the audit
-- reports every tenant table and the bootstrap stops: loud, never silent. A widening CREATE
-- POLICY or ALTER POLICY on a tenant table now fails at once.
--
-- Materialized views. One has no row level security: it shows every row it holds to whoever
-- may read it. Made or refreshed by boom_owner inside a tenant's transaction it holds that
-- tenant's rows, and app_user (default privileges grant it SELECT on the app schema's
-- tables, materialized views included) reads them as any other tenant. The event trigger
-- refuses such a view when it is created; the audit reports one made readable later (GRANT).
-- Plain views stay allowed: they run the table's policy at query time, as their owner, and
-- boom_owner is bound too (FORCE).
--
-- app_user's roles. If app_user may SET ROLE to a tenant table's owner (GRANT boom_owner TO
-- app_user, directly or through another role), it can drop that table, truncate it or change
-- its policies; the audit reports that, and an app_user with SUPERUSER or BYPASSRLS (which a
-- superuser could grant it later) too.

-- The tenant tables a view or materialized view reads, directly or through other views.
CREATE OR REPLACE FUNCTION app.tenant_tables_behind(rel regclass) RETURNS SETOF regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH RECURSIVE reads(oid) AS (
    SELECT d.refobjid FROM pg_rewrite r
      JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
       AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class
      WHERE r.ev_class = rel
    UNION
    SELECT d.refobjid FROM reads
      JOIN pg_class v ON v.oid = reads.oid AND v.relkind IN ('v', 'm')
      JOIN pg_rewrite r ON r.ev_class = v.oid
      JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
       AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class
  )
  SELECT DISTINCT c.oid::regclass FROM reads JOIN pg_class c ON c.oid = reads.oid
    WHERE c.relkind IN ('r', 'p')
      AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                  AND a.attname = 'tenant_id' AND NOT a.attisdropped)
$$;
ALTER FUNCTION app.tenant_tables_behind(regclass) OWNER TO boom_owner;

-- New tables are protected as in 0001. A new or altered policy, or a new materialized view,
-- that the audit below would report is refused with the audit's own words.
CREATE OR REPLACE FUNCTION app.protect_new_tenant_tables() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  command record;
  relation text;
  problem_prefix text;
  refused text;
BEGIN
  -- protect_tenant_table() runs ALTER TABLE itself: do not recurse into it.
  IF current_setting('boom.protecting', true) = 'on' THEN
    RETURN;
  END IF;
  PERFORM set_config('boom.protecting', 'on', true);
  FOR command IN SELECT * FROM pg_event_trigger_ddl_commands()
                 WHERE object_type IN ('table', 'table column', 'materialized view', 'policy')
  LOOP
    IF command.object_type IN ('table', 'table column') THEN
      PERFORM app.protect_tenant_table(command.objid::regclass)
        FROM pg_class c WHERE c.oid = command.objid AND c.relkind IN ('r', 'p');
      CONTINUE;
    END IF;
    IF command.object_type = 'policy' THEN
      SELECT p.polrelid::regclass::text, 'policy ' || quote_ident(p.polname) || ' widens'
        INTO relation, problem_prefix FROM pg_policy p WHERE p.oid = command.objid;
    ELSE
      relation := command.objid::regclass::text;
      problem_prefix := 'materialized view';
    END IF;
    SELECT a.problem INTO refused FROM app.audit_tenant_tables() a
      WHERE a.table_name = relation AND starts_with(a.problem, problem_prefix) LIMIT 1;
    IF refused IS NOT NULL THEN
      RAISE EXCEPTION '%: %', relation, refused
        USING HINT = CASE command.object_type
          WHEN 'policy' THEN 'Narrow access with a RESTRICTIVE policy instead, or leave the '
                             'tenant policy as it is.'
          ELSE 'Use a plain view (it keeps the tables'' policies), or create the materialized '
               'view outside app_user''s reach.' END;
    END IF;
  END LOOP;
  PERFORM set_config('boom.protecting', 'off', true);
END
$$;

DROP EVENT TRIGGER IF EXISTS boom_protect_tenant_tables;
CREATE EVENT TRIGGER boom_protect_tenant_tables ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE',
               'CREATE MATERIALIZED VIEW', 'CREATE POLICY', 'ALTER POLICY')
  EXECUTE FUNCTION app.protect_new_tenant_tables();

-- 0001's audit with exact policy comparison, materialized views and app_user's roles.
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
  ), readable_views AS (
    SELECT c.oid::regclass::text AS name,
           (SELECT string_agg(t::text, ', ' ORDER BY t::text)
              FROM app.tenant_tables_behind(c.oid::regclass) t) AS behind
    FROM pg_class c
    WHERE c.relkind = 'm' AND has_table_privilege('app_user', c.oid, 'SELECT')
  ), app_role AS (
    SELECT rolsuper OR rolbypassrls AS bypasses FROM pg_roles WHERE rolname = 'app_user'
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
  UNION ALL
  SELECT name, 'app_user can act as its owner ' || owner || ' (role membership), who may '
               'drop the table, empty it or change its policies'
    FROM tenant_tables WHERE owner <> 'app_user' AND pg_has_role('app_user', owner, 'MEMBER')
  UNION ALL
  SELECT name, 'app_user bypasses row level security (SUPERUSER or BYPASSRLS)'
    FROM tenant_tables, app_role WHERE app_role.bypasses
  UNION ALL
  SELECT name, 'materialized view of ' || behind || ' readable by app_user: it has no row '
               'level security, so every tenant sees the rows it holds'
    FROM readable_views WHERE behind IS NOT NULL
  ORDER BY 1, 2
$$;
-- CREATE OR REPLACE keeps 0001's owner (boom_owner) and privileges.
