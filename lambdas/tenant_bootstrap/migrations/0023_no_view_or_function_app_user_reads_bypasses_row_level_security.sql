-- 0023: no view or function app_user reads through runs as a role that bypasses row level
-- security.
--
-- A view reads its tables as its owner, and a SECURITY DEFINER function runs as its owner.
-- boom_owner is bound by FORCE ROW LEVEL SECURITY, so the application's own show each tenant
-- its own rows. One made by an operator as a role that bypasses row level security (a
-- superuser, or a BYPASSRLS role: RDS's master, if it has BYPASSRLS, see the README's
-- real-deploy table) reads every tenant's rows. Granted to app_user (a support screen, a
-- report), a view of app.bookings showed tenant B tenant A's bookings; a SECURITY DEFINER
-- function counting bookings, executable by PUBLIC as every new function is, gave tenant B
-- everyone's count; and no audit said anything (shown at version 22,
-- test_tenant_bypassing_owners.py).
--
-- Now app.audit_tenant_views() reports a view outside the system schemas that reads tenant
-- tables (directly or through other views), is owned by a role with SUPERUSER or BYPASSRLS,
-- is not security_invoker (which reads as whoever queries it), and that app_user may read,
-- itself or through a role it may SET ROLE to (a column's grant counts; its schema's USAGE
-- is needed). The event trigger refuses such a view when it is created, replaced or given
-- to such an owner (it now fires on CREATE VIEW and ALTER VIEW too), and a GRANT while one
-- exists. app.audit_tenant_functions() reports a SECURITY DEFINER function or procedure of
-- such a role, outside the system schemas and not an extension's, that app_user may execute
-- in the same sense, or that a trigger runs on a table app_user writes (a trigger's function
-- runs in the writes that fire it, whoever may EXECUTE it: at version 22 one counted every
-- tenant's bookings inside tenant B's insert): no catalog says what its body reads, so any
-- such function may read any tenant's rows. It is only reported, not refused when made: a
-- new function is executable by PUBLIC until the REVOKE that follows its CREATE. It also
-- reports a LEAKPROOF one app_user may call (only a superuser can mark one, for speed):
-- PostgreSQL may then run it on rows before the tenant policy has filtered them, and a
-- notice it raised showed tenant B tenant A's bookings (at version 22). The check reports
-- any of these (made while the trigger was off, or whose owner got BYPASSRLS later, which no
-- event trigger sees), and every run refuses until it is mended as the finding says. The
-- rest of the trigger's function is 0021's, but for one thing: a role that may not use
-- schema app (a monitoring agent making a table in a schema of its own) is told that the
-- trigger needs it and how to grant it, instead of PostgreSQL's bare "permission denied for
-- schema app" from inside the trigger.

CREATE FUNCTION app.audit_tenant_views() RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH readers AS (
    -- app_user and every role it may SET ROLE to (0008).
    SELECT r.oid FROM pg_roles r WHERE pg_has_role('app_user', r.oid, 'MEMBER')
  ), bypassing_views AS (
    SELECT c.oid, o.rolname AS owner
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_roles o ON o.oid = c.relowner
    WHERE c.relkind = 'v' AND (o.rolsuper OR o.rolbypassrls)
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
      AND NOT coalesce((SELECT option_value::boolean FROM pg_options_to_table(c.reloptions)
                        WHERE option_name = 'security_invoker'), false)
      AND EXISTS (SELECT FROM readers r
                  WHERE has_any_column_privilege(r.oid, c.oid, 'SELECT')
                    AND has_schema_privilege(r.oid, n.oid, 'USAGE'))
  )
  SELECT v.oid::regclass::text,
         'a view app_user may read, run as ' || quote_ident(v.owner) || ', who bypasses row '
         || 'level security (SUPERUSER or BYPASSRLS): it shows every tenant''s rows of '
         || string_agg(t::text, ', ' ORDER BY t::text) || '. ALTER VIEW '
         || v.oid::regclass::text || ' SET (security_invoker = on), or ALTER VIEW '
         || v.oid::regclass::text || ' OWNER TO boom_owner'
  FROM bypassing_views v
  CROSS JOIN LATERAL app.tenant_tables_behind(v.oid::regclass) t
  GROUP BY v.oid, v.owner
  ORDER BY 1
$$;
-- EXECUTE stays with PUBLIC, as on app.audit_tenant_columns() (0021): the event trigger runs
-- it as whichever role runs the command.

CREATE FUNCTION app.audit_tenant_functions() RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH readers AS (
    SELECT r.oid FROM pg_roles r WHERE pg_has_role('app_user', r.oid, 'MEMBER')
  ), callable AS (
    -- Functions and procedures app_user may run, outside the system schemas, not an
    -- extension's (whose code the extension vouches for).
    SELECT p.oid, p.oid::regprocedure::text AS signature, p.prosecdef, p.proleakproof,
           o.rolname AS owner, o.rolsuper OR o.rolbypassrls AS bypasses
    FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    JOIN pg_roles o ON o.oid = p.proowner
    WHERE (p.prosecdef OR p.proleakproof)
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype = 'e')
      AND EXISTS (SELECT FROM readers r
                  WHERE has_function_privilege(r.oid, p.oid, 'EXECUTE')
                    AND has_schema_privilege(r.oid, n.oid, 'USAGE')
                  -- A trigger's function runs in the writes that fire it, EXECUTE or not.
                  OR EXISTS (SELECT FROM pg_trigger t WHERE t.tgfoid = p.oid
                             AND has_table_privilege(r.oid, t.tgrelid,
                                                     'INSERT, UPDATE, DELETE, TRUNCATE')))
  )
  SELECT 'function ' || signature,
         'app_user may run it (a call, or a trigger of a table it writes) as '
         || quote_ident(owner) || ', who bypasses row level security (SUPERUSER or '
         || 'BYPASSRLS) and is SECURITY DEFINER: whatever it reads of tenant tables, it reads '
         || 'for every tenant. ALTER FUNCTION ' || signature || ' SECURITY INVOKER, or keep '
         || 'it from app_user (REVOKE EXECUTE ON FUNCTION ' || signature
         || ' FROM PUBLIC, app_user; a trigger''s: DROP TRIGGER)'
  FROM callable WHERE prosecdef AND bypasses
  UNION ALL
  SELECT 'function ' || signature,
         'it is LEAKPROOF and app_user may call it, so PostgreSQL may run it on every '
         || 'tenant''s rows before the tenant policy filters them: what it shows of its '
         || 'arguments (an error, a notice) shows other tenants'' rows. ALTER FUNCTION '
         || signature || ' NOT LEAKPROOF'
  FROM callable WHERE proleakproof
  ORDER BY 1, 2
$$;
REVOKE ALL ON FUNCTION app.audit_tenant_functions() FROM PUBLIC;

-- 0021's function, plus views, and a role that may not use schema app told so: a monitoring
-- agent's CREATE TABLE in a schema of its own failed inside the trigger with "permission
-- denied for schema app", naming neither the trigger nor the fix (since 0001).
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
  -- The checks below call functions in app, as whoever runs the command.
  IF NOT has_schema_privilege('app', 'USAGE') THEN
    RAISE EXCEPTION 'the tenant guarantees'' event trigger checks every % in this database '
                    'with functions in schema app, and % may not use that schema', TG_TAG,
                    quote_ident(current_user)
      USING HINT = 'GRANT USAGE ON SCHEMA app TO ' || quote_ident(current_user) || ' (USAGE '
                   'shows no table''s rows: each table needs its own privileges), or run it '
                   'as boom_owner.';
  END IF;
  IF TG_TAG = 'GRANT' THEN
    -- A GRANT names no single object here (ALL TABLES IN SCHEMA, several tables): all of them.
    SELECT a.table_name || ': ' || a.problem INTO refused
      FROM app.audit_tenant_privileges() a LIMIT 1;
    IF refused IS NOT NULL THEN
      RAISE EXCEPTION '%', refused
        USING HINT = 'Grant app_user only SELECT, INSERT, UPDATE and DELETE on tenant tables, '
                     'and only USAGE (and SELECT) on sequences.';
    END IF;
    -- (0023) A view that would show app_user every tenant's rows.
    SELECT a.table_name || ': ' || a.problem INTO refused FROM app.audit_tenant_views() a LIMIT 1;
    IF refused IS NOT NULL THEN
      RAISE EXCEPTION '%', refused USING HINT = 'A view app_user reads must run as a role row '
                                                'level security binds, or as its reader.';
    END IF;
  END IF;
  FOR command IN SELECT * FROM pg_event_trigger_ddl_commands()
                 WHERE object_type IN ('table', 'table column', 'materialized view', 'policy',
                                       'sequence', 'view')
                   AND objid IS NOT NULL
  LOOP
    IF command.object_type IN ('table', 'table column', 'sequence') THEN
      -- (0017) A sequence here is one the CREATE or ALTER TABLE made (identity, serial).
      PERFORM app.protect_tenant_table(command.objid::regclass)
        FROM pg_class c WHERE c.oid = command.objid AND c.relkind IN ('r', 'p');
      SELECT a.table_name || ': ' || a.problem INTO refused
        FROM app.audit_tenant_privileges() a
        WHERE a.table_name = command.objid::regclass::text LIMIT 1;
      IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%', refused
          USING HINT = 'Default privileges of the schema grant it: ALTER DEFAULT PRIVILEGES '
                       '... REVOKE ' || CASE command.object_type
                         WHEN 'sequence' THEN 'UPDATE ON SEQUENCES'
                         ELSE 'TRUNCATE, TRIGGER, REFERENCES ON TABLES' END
                       || ' FROM app_user.';
      END IF;
      -- (0021) A tenant_id column renamed: the guarantees would no longer see the table.
      SELECT a.table_name || ': ' || a.problem INTO refused
        FROM app.audit_tenant_columns() a
        WHERE a.table_name = command.objid::regclass::text LIMIT 1;
      IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%', refused
          USING HINT = 'Keep the name tenant_id; code that wants another name can map it (an '
                       'ORM''s column name, a plain view''s alias).';
      END IF;
      CONTINUE;
    END IF;
    IF command.object_type = 'view' THEN
      -- (0023) Made, replaced or given another owner.
      SELECT a.table_name || ': ' || a.problem INTO refused FROM app.audit_tenant_views() a
        WHERE a.table_name = command.objid::regclass::text LIMIT 1;
      IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%', refused USING HINT = 'A view app_user reads must run as a role '
                                                  'row level security binds, or as its reader.';
      END IF;
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
               'CREATE MATERIALIZED VIEW', 'CREATE POLICY', 'ALTER POLICY', 'GRANT',
               'CREATE VIEW', 'ALTER VIEW')
  EXECUTE FUNCTION app.protect_new_tenant_tables();

-- A function the bootstrap ships (0012).
INSERT INTO boom_meta.shipped_functions (signature) VALUES ('app.audit_tenant_views()'),
  ('app.audit_tenant_functions()');
