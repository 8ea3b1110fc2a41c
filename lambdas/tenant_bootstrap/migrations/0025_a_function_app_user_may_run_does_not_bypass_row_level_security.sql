-- 0025: a function app_user may run does not run as a role that bypasses row level security,
-- nor is it LEAKPROOF, nor reaches such a view or function, from the moment it is made.
--
-- 0023 reports a SECURITY DEFINER function of a role with SUPERUSER or BYPASSRLS that
-- app_user (or a role acting for it) may execute or fire by a trigger, and a LEAKPROOF one it
-- may call; 0024 the views and functions a bound role's SECURITY DEFINER function lets
-- app_user reach. But the event trigger did not watch CREATE FUNCTION: PostgreSQL makes a
-- new function executable by PUBLIC, and refusing the CREATE would have come before the
-- REVOKE the documentation has follow it. Until the next check (15 minutes) or run, app_user
-- could call it. At version 24 (test_tenant_definer_functions.py), with nothing refused: an
-- operator's SECURITY DEFINER function counting app.bookings, made as the superuser, gave
-- tenant B every tenant's count at once; a trigger on app.bookings running such a function
-- did the same in tenant B's insert; and boom_owner's SECURITY DEFINER function reading an
-- operator's bypassing view granted to boom_owner (allowed while no definer function made
-- boom_owner act for app_user) showed tenant B both tenants.
--
-- Now the event trigger also fires on CREATE and ALTER FUNCTION, PROCEDURE and ROUTINE, and
-- CREATE TRIGGER, and app.tenant_findings_through_routine() names the findings a function
-- makes: itself (0023's function findings), and, if SECURITY DEFINER, what its owner may run
-- or reach (0024's, through its owner). Then:
-- - a new function or procedure that would make one loses PUBLIC's EXECUTE as it is made, and
--   a NOTICE says so and why: PUBLIC's EXECUTE on a new function is PostgreSQL's default, not
--   anyone's choice, and revoking it at once is what "Writing SECURITY DEFINER Functions
--   Safely" in the documentation does in the CREATE's transaction, whose REVOKE and GRANTs
--   to other roles go on working. A CREATE OR REPLACE counts as new. A run does not revoke
--   it later from one made while the trigger was off (by then it may be someone's choice):
--   the check reports it and every run refuses, as before;
-- - a function, procedure or trigger command after which its function still makes one
--   (EXECUTE for app_user by a GRANT or default privileges, a trigger on a table app_user
--   writes, ALTER ... SECURITY DEFINER, LEAKPROOF or OWNER TO) is refused, naming it, with
--   nothing changed;
-- - a GRANT while any function finding stands is refused, as one is while a view finding
--   does (0023).
-- Only the command's own function is looked at, so mending one finding (ALTER FUNCTION ...
-- SECURITY INVOKER, NOT LEAKPROOF) is not refused while another stands.

-- The findings a function makes (kind: function, view, rule, materialized view), for the
-- event trigger.
CREATE FUNCTION app.tenant_findings_through_routine(routine oid)
RETURNS TABLE (finding text, kind text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH acting AS (
    -- Its owner, if it is SECURITY DEFINER: app_user, if it may run it, acts as the owner
    -- (0024's acting roles), and the audits report what the owner reaches as app_user's.
    SELECT o.oid, o.rolname
    FROM pg_proc p
    JOIN pg_roles o ON o.oid = p.proowner
    WHERE p.oid = routine AND p.prosecdef
  )
  SELECT *
  FROM (SELECT a.table_name || ': ' || a.problem, 'function'
        FROM app.audit_tenant_functions() a
        -- The function itself; or one its owner may run, or fire by a trigger.
        WHERE a.table_name = 'function ' || routine::regprocedure::text
           OR a.table_name IN (
             SELECT 'function ' || q.oid::regprocedure::text
             FROM acting g, pg_proc q
             WHERE has_function_privilege(g.oid, q.oid, 'EXECUTE')
                OR EXISTS (SELECT FROM pg_trigger t WHERE t.tgfoid = q.oid
                           AND has_table_privilege(g.oid, t.tgrelid,
                                                   'INSERT, UPDATE, DELETE, TRUNCATE')))
        UNION ALL
        -- A view, rule or materialized view its owner reaches.
        SELECT a.table_name || ': ' || a.problem,
               CASE WHEN starts_with(a.problem, 'rule ') THEN 'rule'
                    WHEN starts_with(a.problem, 'reaches materialized view ')
                      THEN 'materialized view'
                    ELSE 'view' END
        FROM app.audit_tenant_views() a
        WHERE a.table_name IN (SELECT b.via::text
                               FROM app.tenant_rows_read_as_bypassing() b, acting g
                               WHERE b.by_definer = g.rolname)) f (finding, kind)
  ORDER BY kind, finding
$$;
-- EXECUTE stays with PUBLIC: the event trigger runs it as whichever role runs the command.

-- 0024's function, and the function, procedure and trigger commands above.
CREATE OR REPLACE FUNCTION app.protect_new_tenant_tables() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  command record;
  relation text;
  problem_prefix text;
  refused text;
  hint text;
  view_hint constant text := 'A view app_user reads must run as a role row level security '
                             'binds, or as its reader.';
  rule_hint constant text := 'A rule runs as the owner of its table or view: one that '
                             'app_user''s writes fire must belong to a role row level '
                             'security binds.';
  stored_hint constant text := 'A materialized view has no row level security: keep it from '
                               'every role app_user reaches it as.';
  function_hint constant text := 'GRANT EXECUTE on such a function only to the roles that need '
                                 'it, never to app_user or a role it acts as (a new one''s '
                                 'EXECUTE is revoked from PUBLIC as it is made; default '
                                 'privileges may grant it: ALTER DEFAULT PRIVILEGES ... REVOKE '
                                 'EXECUTE ON FUNCTIONS FROM app_user).';
  routine oid;
  watched boolean;
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
    -- (0023, 0024) A view or rule that would show app_user every tenant's rows.
    SELECT a.table_name || ': ' || a.problem,
           CASE WHEN starts_with(a.problem, 'rule ') THEN rule_hint
                WHEN starts_with(a.problem, 'reaches materialized view ') THEN stored_hint
                ELSE view_hint END
      INTO refused, hint FROM app.audit_tenant_views() a LIMIT 1;
    IF refused IS NOT NULL THEN
      RAISE EXCEPTION '%', refused
        USING HINT = hint;
    END IF;
    -- (0025) A function app_user would run as a role that bypasses row level security.
    SELECT a.table_name || ': ' || a.problem INTO refused
      FROM app.audit_tenant_functions() a LIMIT 1;
    IF refused IS NOT NULL THEN
      RAISE EXCEPTION '%', refused
        USING HINT = function_hint;
    END IF;
  END IF;
  FOR command IN SELECT * FROM pg_event_trigger_ddl_commands()
                 WHERE object_type IN ('table', 'table column', 'materialized view', 'policy',
                                       'sequence', 'view', 'rule', 'function', 'procedure',
                                       'trigger')
                   AND objid IS NOT NULL
  LOOP
    -- (0025) A function or procedure made or altered, or a trigger made: its function, if
    -- SECURITY DEFINER or LEAKPROOF (no other kind is a finding, nor makes one).
    IF command.object_type IN ('function', 'procedure', 'trigger') THEN
      SELECT p.oid, p.prosecdef OR p.proleakproof INTO routine, watched
        FROM pg_proc p
        WHERE p.oid = CASE command.object_type
                        WHEN 'trigger' THEN (SELECT t.tgfoid FROM pg_trigger t
                                             WHERE t.oid = command.objid)
                        ELSE command.objid END;
      IF NOT coalesce(watched, false) THEN
        CONTINUE;
      END IF;
      -- A new function is executable by PUBLIC, PostgreSQL's default rather than anyone's
      -- choice, until the REVOKE the documentation has follow its CREATE: revoked here, at
      -- once, from one that would be a finding or make one.
      IF command.command_tag IN ('CREATE FUNCTION', 'CREATE PROCEDURE')
         AND has_function_privilege('public', routine, 'EXECUTE') THEN
        SELECT f.finding INTO refused FROM app.tenant_findings_through_routine(routine) f
          LIMIT 1;
        IF refused IS NOT NULL THEN
          EXECUTE format('REVOKE EXECUTE ON ROUTINE %s FROM PUBLIC', routine::regprocedure);
          RAISE NOTICE 'revoked EXECUTE on % from PUBLIC, which PostgreSQL gives a new '
                       'function: otherwise %', routine::regprocedure, refused
            USING HINT = 'GRANT EXECUTE on it to the roles that need it, not app_user.';
        END IF;
      END IF;
      SELECT f.finding, CASE f.kind WHEN 'function' THEN function_hint WHEN 'rule' THEN rule_hint
                                    WHEN 'materialized view' THEN stored_hint
                                    ELSE view_hint END
        INTO refused, hint FROM app.tenant_findings_through_routine(routine) f LIMIT 1;
      IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%', refused
          USING HINT = hint;
      END IF;
      CONTINUE;
    END IF;
    -- (0023) A view made, replaced or given another owner; (0024) a view app_user reaches
    -- through it or it through, a rule, a table a rule belongs to (its owner changed) or
    -- one that views or rules now read as a tenant table (tenant_id added).
    IF command.object_type IN ('table', 'table column', 'view', 'rule') THEN
      SELECT a.table_name || ': ' || a.problem,
           CASE WHEN starts_with(a.problem, 'rule ') THEN rule_hint
                WHEN starts_with(a.problem, 'reaches materialized view ') THEN stored_hint
                ELSE view_hint END
        INTO refused, hint FROM app.audit_tenant_views() a
        WHERE a.table_name IN (
          SELECT b.via::text FROM app.tenant_rows_read_as_bypassing() b
          WHERE CASE command.object_type
                  WHEN 'rule' THEN command.objid IN (b.entry_rule, b.via_rule)
                  ELSE command.objid IN (b.entry, b.via, b.tenant_table) END) LIMIT 1;
      IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%', refused
          USING HINT = hint;
      END IF;
    END IF;
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
    IF command.object_type IN ('view', 'rule') THEN
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
-- The trigger now runs the function audit as whichever role runs the command, as it runs the
-- view audit (0023 kept this one from PUBLIC). Granted while no event trigger exists: under
-- one, a GRANT runs the privilege audit, and a database upgraded from before 0008 or 0017 may
-- still hold a grant that the run revokes only at its end (shown by the upgrade tests).
GRANT EXECUTE ON FUNCTION app.audit_tenant_functions() TO PUBLIC;
CREATE EVENT TRIGGER boom_protect_tenant_tables ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE',
               'CREATE MATERIALIZED VIEW', 'CREATE POLICY', 'ALTER POLICY', 'GRANT',
               'CREATE VIEW', 'ALTER VIEW', 'CREATE RULE', 'CREATE FUNCTION',
               'ALTER FUNCTION', 'CREATE PROCEDURE', 'ALTER PROCEDURE', 'ALTER ROUTINE',
               'CREATE TRIGGER')
  EXECUTE FUNCTION app.protect_new_tenant_tables();

-- A function the bootstrap ships (0012).
INSERT INTO boom_meta.shipped_functions (signature)
  VALUES ('app.tenant_findings_through_routine(oid)');
