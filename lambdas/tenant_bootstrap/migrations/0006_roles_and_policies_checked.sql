-- 0006: app_user must not be able to act as a table owner, and widening policies are refused
-- when they are created.
-- - app_user, if it may SET ROLE to a tenant table's owner (GRANT boom_owner TO app_user,
--   directly or through another role), can drop that table, truncate it or change its
--   policies: the audit now reports it, and an app_user with SUPERUSER or BYPASSRLS (which a
--   superuser could grant it later) too.
-- - CREATE POLICY and ALTER POLICY on a tenant table now fail at once when the policy widens
--   access (0004's rule), instead of waiting for the next audit or bootstrap run.

CREATE OR REPLACE FUNCTION app.protect_new_tenant_tables() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  command record;
  behind text;
  policy record;
BEGIN
  -- protect_tenant_table() runs ALTER TABLE itself: do not recurse into it.
  IF current_setting('boom.protecting', true) = 'on' THEN
    RETURN;
  END IF;
  PERFORM set_config('boom.protecting', 'on', true);
  FOR command IN SELECT * FROM pg_event_trigger_ddl_commands()
                 WHERE object_type IN ('table', 'table column', 'materialized view', 'policy')
  LOOP
    IF command.object_type = 'policy' THEN
      SELECT p.polname, p.polrelid::regclass AS rel INTO policy
        FROM pg_policy p WHERE p.oid = command.objid;
      IF EXISTS (SELECT FROM app.audit_tenant_tables() a
                 WHERE a.table_name = policy.rel::text
                   AND starts_with(a.problem, 'policy ' || quote_ident(policy.polname) ||
                                   ' widens access')) THEN
        RAISE EXCEPTION 'policy % on tenant table % widens access', policy.polname, policy.rel
          USING DETAIL = 'Every permissive policy on a tenant table must use exactly '
                         'tenant_id = (SELECT app.current_tenant_id()) in USING and WITH CHECK.',
                HINT = 'Narrow access with a RESTRICTIVE policy instead, or leave the tenant '
                       'policy as it is.';
      END IF;
      CONTINUE;
    END IF;
    IF command.object_type = 'materialized view' THEN
      SELECT string_agg(t::text, ', ' ORDER BY t::text) INTO behind
        FROM app.tenant_tables_behind(command.objid::regclass) t;
      IF behind IS NOT NULL AND has_table_privilege('app_user', command.objid, 'SELECT') THEN
        RAISE EXCEPTION 'materialized view % reads tenant table(s) % and app_user can read it',
                        command.objid::regclass, behind
          USING DETAIL = 'A materialized view has no row level security: every tenant would '
                         'see the rows it holds.',
                HINT = 'Use a plain view (it keeps the tables'' policies), or create the '
                       'materialized view outside app_user''s reach.';
      END IF;
      CONTINUE;
    END IF;
    PERFORM app.protect_tenant_table(command.objid::regclass)
      FROM pg_class c WHERE c.oid = command.objid AND c.relkind IN ('r', 'p');
  END LOOP;
  PERFORM set_config('boom.protecting', 'off', true);
END
$$;

DROP EVENT TRIGGER IF EXISTS boom_protect_tenant_tables;
CREATE EVENT TRIGGER boom_protect_tenant_tables ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE',
               'CREATE MATERIALIZED VIEW', 'CREATE POLICY', 'ALTER POLICY')
  EXECUTE FUNCTION app.protect_new_tenant_tables();

-- 0005's audit, plus what app_user's role lets it do to the tables.
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
