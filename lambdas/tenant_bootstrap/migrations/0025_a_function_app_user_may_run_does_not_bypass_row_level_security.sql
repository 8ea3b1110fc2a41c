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
-- boom_owner act for app_user) showed tenant B both tenants. And no audit saw an aggregate:
-- PostgreSQL checks an aggregate's parts (transition, final ... functions) against the
-- aggregate's owner, not its caller, so a superuser's aggregate over a SECURITY DEFINER
-- transition function kept from PUBLIC counted every tenant's bookings for tenant B.
--
-- Now the function audit and the acting roles count a part of an aggregate an acting role
-- may call, whose owner may execute it (app.aggregates_running()); a LEAKPROOF part is no
-- finding (it runs on rows the policy let through). The event trigger also fires on CREATE
-- and ALTER FUNCTION, PROCEDURE, ROUTINE and AGGREGATE, and CREATE TRIGGER, and
-- app.tenant_findings_through_routine() names the findings a function (an aggregate: its
-- parts, app.routine_parts()) makes: itself (0023's function findings), and, if SECURITY
-- DEFINER, what its owner may run or reach (0024's, through its owner). Then:
-- - a new function, procedure or aggregate that would make one loses PUBLIC's EXECUTE as it
--   is made, and a NOTICE says so and why: PUBLIC's EXECUTE on a new function is
--   PostgreSQL's default, not anyone's choice, and revoking it at once is what "Writing
--   SECURITY DEFINER Functions Safely" in the documentation does in the CREATE's
--   transaction, whose REVOKE and GRANTs to other roles go on working. A CREATE OR REPLACE
--   counts as new. A run does not revoke it later from one made while the trigger was off
--   (by then it may be someone's choice): the check reports it and every run refuses;
-- - a function, procedure, aggregate or trigger command after which its function still makes
--   one (EXECUTE for app_user by a GRANT or default privileges, a trigger on a table app_user
--   writes, ALTER ... SECURITY DEFINER, LEAKPROOF or OWNER TO) is refused, naming it, with
--   nothing changed;
-- - a GRANT while any function finding stands is refused, as one is while a view finding
--   does (0023).
-- Only the command's own function is looked at, so mending one finding (ALTER FUNCTION ...
-- SECURITY INVOKER, NOT LEAKPROOF) is not refused while another stands.
--
-- app.tenant_finding_hint() gives a view or function finding its hint, in one place (0024's
-- trigger chose it from the message's first words twice). The estimate of
-- roles_acting_for_app_user() is now 10 rows: with the default 1000, the function audit's
-- plan passed jit_above_cost and each call spent about 600 ms compiling.

-- (0025) The aggregates a function is a part of (transition, final, combine, serial, moving
-- ones), where the aggregate's owner may execute it: PostgreSQL checks an aggregate's parts
-- against its owner, not against whoever calls it. At version 24 a superuser's aggregate over
-- a SECURITY DEFINER transition function, kept from PUBLIC, counted every tenant's bookings
-- for tenant B, and no audit saw it.
CREATE FUNCTION app.aggregates_running(routine oid) RETURNS TABLE (aggregate oid)
LANGUAGE sql STABLE ROWS 1
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT g.aggfnoid::oid
  FROM pg_aggregate g
  JOIN pg_proc a ON a.oid = g.aggfnoid
  WHERE routine IN (g.aggtransfn, g.aggfinalfn, g.aggcombinefn, g.aggserialfn,
                    g.aggdeserialfn, g.aggmtransfn, g.aggminvtransfn, g.aggmfinalfn)
    AND has_function_privilege(a.proowner, routine, 'EXECUTE')
$$;
-- EXECUTE stays with PUBLIC: the event trigger runs it as whichever role runs the command.

-- A function, and, if it is an aggregate, its parts: what runs when it is called.
CREATE FUNCTION app.routine_parts(routine oid) RETURNS TABLE (part oid)
LANGUAGE sql STABLE ROWS 2
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT routine
  UNION
  SELECT p.part
  FROM pg_aggregate g,
       unnest(ARRAY[g.aggtransfn, g.aggfinalfn, g.aggcombinefn, g.aggserialfn, g.aggdeserialfn,
                    g.aggmtransfn, g.aggminvtransfn, g.aggmfinalfn]::oid[]) AS p (part)
  WHERE g.aggfnoid = routine AND p.part <> 0
$$;
-- EXECUTE stays with PUBLIC: the event trigger runs it as whichever role runs the command.

-- 0024's, and a part of an aggregate an acting role may call. ROWS 10: with the default
-- estimate (1000 rows) the function audit's plan cost passed jit_above_cost, and each call
-- spent about 600 ms compiling itself (measured here; JIT is on by default).
CREATE OR REPLACE FUNCTION app.roles_acting_for_app_user() RETURNS TABLE (role oid, definer name)
LANGUAGE sql STABLE ROWS 10
SET search_path = pg_catalog, pg_temp
AS $$
  WITH RECURSIVE acting (role, definer) AS (
    -- app_user and every role it may SET ROLE to (0008).
    SELECT r.oid, NULL::name FROM pg_roles r WHERE pg_has_role('app_user', r.oid, 'MEMBER')
    UNION
    -- The owner of a SECURITY DEFINER function an acting role may run (a call, a trigger of
    -- a table it writes, or, since 0025, an aggregate it may call), outside the system
    -- schemas and not an extension's: its body acts as that owner, and no catalog says what
    -- it reads. Not one that bypasses row level security: its function is
    -- app.audit_tenant_functions()'s finding already.
    SELECT o.oid, o.rolname
    FROM acting a
    JOIN pg_proc p ON p.prosecdef
    JOIN pg_namespace n ON n.oid = p.pronamespace
    JOIN pg_roles o ON o.oid = p.proowner
    WHERE NOT (o.rolsuper OR o.rolbypassrls) AND NOT pg_has_role('app_user', o.oid, 'MEMBER')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype = 'e')
      AND (has_function_privilege(a.role, p.oid, 'EXECUTE')
           OR EXISTS (SELECT FROM pg_trigger t WHERE t.tgfoid = p.oid
                      AND has_table_privilege(a.role, t.tgrelid,
                                              'INSERT, UPDATE, DELETE, TRUNCATE'))
           -- (0025) A part of an aggregate it may call (its transition, final, combine ...
           -- function), which PostgreSQL lets the aggregate's owner execute for it.
           OR EXISTS (SELECT FROM app.aggregates_running(p.oid) g
                      WHERE has_function_privilege(a.role, g.aggregate, 'EXECUTE')))
  )
  SELECT DISTINCT role, definer FROM acting
$$;

-- 0024's, and a SECURITY DEFINER part of an aggregate an acting role may call (not a LEAKPROOF
-- one: it runs on rows the policy let through), naming the aggregate to keep from whom.
CREATE OR REPLACE FUNCTION app.audit_tenant_functions()
RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH candidates AS MATERIALIZED (
    -- SECURITY DEFINER and LEAKPROOF functions and procedures outside the system schemas
    -- (which hold hundreds of LEAKPROOF ones), not an extension's (whose code the extension
    -- vouches for): the few the rest looks at.
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
  ), callable AS (
    -- Those app_user may run, itself or as the owner of a definer function it may run.
    SELECT c.oid, c.signature, c.prosecdef, c.proleakproof, c.owner, c.bypasses,
           bool_or(a.definer IS NULL AND w.aggregate IS NULL) AS directly,
           string_agg(DISTINCT quote_ident(a.definer::text), ', '
                      ORDER BY quote_ident(a.definer::text))
             FILTER (WHERE w.aggregate IS NULL) AS definers,
           string_agg(DISTINCT w.aggregate::regprocedure::text, ', '
                      ORDER BY w.aggregate::regprocedure::text) AS aggregates,
           string_agg(DISTINCT w.aggregate::regprocedure::text || coalesce(
                        ' in SECURITY DEFINER functions of ' || quote_ident(a.definer::text), ''),
                      ', ' ORDER BY w.aggregate::regprocedure::text || coalesce(
                        ' in SECURITY DEFINER functions of ' || quote_ident(a.definer::text), ''))
             AS aggregate_routes,
           string_agg(DISTINCT coalesce(quote_ident(a.definer::text), 'app_user'), ', '
                      ORDER BY coalesce(quote_ident(a.definer::text), 'app_user'))
             AS aggregate_holders  -- read only when every way in is an aggregate
    FROM candidates c
    CROSS JOIN app.roles_acting_for_app_user() a
    JOIN LATERAL (
      -- A call; a trigger's function runs in the writes that fire it, EXECUTE or not.
      SELECT NULL::oid AS aggregate
      WHERE has_function_privilege(a.role, c.oid, 'EXECUTE')
         OR EXISTS (SELECT FROM pg_trigger t WHERE t.tgfoid = c.oid
                    AND has_table_privilege(a.role, t.tgrelid, 'INSERT, UPDATE, DELETE, TRUNCATE'))
      UNION ALL
      -- (0025) A part of an aggregate it may call.
      SELECT g.aggregate FROM app.aggregates_running(c.oid) g
      WHERE has_function_privilege(a.role, g.aggregate, 'EXECUTE')) w ON true
    GROUP BY c.oid, c.signature, c.prosecdef, c.proleakproof, c.owner, c.bypasses
  )
  SELECT 'function ' || signature,
         'app_user may run it ' || CASE WHEN directly
           THEN '(a call, or a trigger of a table it writes)'
           WHEN definers IS NOT NULL THEN 'through SECURITY DEFINER functions of ' || definers
           ELSE 'through aggregate ' || aggregate_routes END
         || ' as ' || quote_ident(owner) || ', who bypasses row level security (SUPERUSER or '
         || 'BYPASSRLS) and is SECURITY DEFINER: whatever it reads of tenant tables, it reads '
         || 'for every tenant. ALTER FUNCTION ' || signature || ' SECURITY INVOKER, or keep '
         || CASE WHEN directly OR definers IS NOT NULL
              THEN 'it from ' || CASE WHEN directly THEN 'app_user' ELSE definers END
                   || ' (REVOKE EXECUTE ON FUNCTION ' || signature || ' FROM PUBLIC, '
                   || CASE WHEN directly THEN 'app_user' ELSE definers END
                   || '; a trigger''s: DROP TRIGGER)'
              ELSE 'the aggregate from ' || aggregate_holders || ' (REVOKE EXECUTE ON FUNCTION '
                   || aggregates || ' FROM PUBLIC, ' || aggregate_holders || ')' END
  FROM callable WHERE prosecdef AND bypasses
  UNION ALL
  SELECT 'function ' || signature,
         'it is LEAKPROOF and app_user may call it' || CASE WHEN directly THEN ''
           ELSE ' through SECURITY DEFINER functions of ' || definers END
         || ', so PostgreSQL may run it on every '
         || 'tenant''s rows before the tenant policy filters them: what it shows of its '
         || 'arguments (an error, a notice) shows other tenants'' rows. ALTER FUNCTION '
         || signature || ' NOT LEAKPROOF'
  -- An aggregate's parts run on the rows the policy has let through.
  FROM callable WHERE proleakproof AND (directly OR definers IS NOT NULL)
  ORDER BY 1, 2
$$;

-- The event trigger's hint for a finding of the view or function audit, by its kind: 0024
-- chose it from the message's first words in two places of the trigger, and 0025 needs it in
-- two more.
CREATE FUNCTION app.tenant_finding_hint(subject text, problem text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE
    WHEN starts_with(subject, 'function ')
      THEN 'GRANT EXECUTE on such a function only to the roles that need it, never to app_user '
           'or a role it acts as (a new one''s EXECUTE is revoked from PUBLIC as it is made; '
           'default privileges may grant it: ALTER DEFAULT PRIVILEGES ... REVOKE EXECUTE ON '
           'FUNCTIONS FROM app_user).'
    WHEN starts_with(problem, 'rule ')
      THEN 'A rule runs as the owner of its table or view: one that app_user''s writes fire '
           'must belong to a role row level security binds.'
    WHEN starts_with(problem, 'reaches materialized view ')
      THEN 'A materialized view has no row level security: keep it from every role app_user '
           'reaches it as.'
    ELSE 'A view app_user reads must run as a role row level security binds, or as its '
         'reader.' END
$$;
-- EXECUTE stays with PUBLIC: the event trigger runs it as whichever role runs the command.

-- The findings a function makes, with their hints, for the event trigger.
CREATE FUNCTION app.tenant_findings_through_routine(routine oid)
RETURNS TABLE (finding text, hint text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH acting AS (
    -- Its owner (an aggregate's: its parts' owners), if SECURITY DEFINER: app_user, if it
    -- may run it, acts as the owner (0024's acting roles), and the audits report what the
    -- owner reaches as app_user's.
    SELECT o.oid, o.rolname
    FROM app.routine_parts(routine) r
    JOIN pg_proc p ON p.oid = r.part
    JOIN pg_roles o ON o.oid = p.proowner
    WHERE p.prosecdef
  )
  SELECT f.finding, f.hint
  FROM (SELECT a.table_name || ': ' || a.problem,
               app.tenant_finding_hint(a.table_name, a.problem)
        FROM app.audit_tenant_functions() a
        -- The function itself (an aggregate's parts); or one its owner may run, fire by a
        -- trigger or call through an aggregate (the finding names it: 'function ' || its
        -- signature).
        WHERE a.table_name IN (SELECT 'function ' || r.part::regprocedure::text
                               FROM app.routine_parts(routine) r)
           OR EXISTS (
             SELECT FROM acting g, to_regprocedure(substr(a.table_name, 10)) q (oid)
             WHERE has_function_privilege(g.oid, q.oid, 'EXECUTE')
                OR EXISTS (SELECT FROM pg_trigger t WHERE t.tgfoid = q.oid
                           AND has_table_privilege(g.oid, t.tgrelid,
                                                   'INSERT, UPDATE, DELETE, TRUNCATE'))
                OR EXISTS (SELECT FROM app.aggregates_running(q.oid) x
                           WHERE has_function_privilege(g.oid, x.aggregate, 'EXECUTE')))
        UNION ALL
        -- A view, rule or materialized view its owner reaches.
        SELECT a.table_name || ': ' || a.problem,
               app.tenant_finding_hint(a.table_name, a.problem)
        FROM app.audit_tenant_views() a
        WHERE a.table_name IN (SELECT b.via::text
                               FROM app.tenant_rows_read_as_bypassing() b, acting g
                               WHERE b.by_definer = g.rolname)) f (finding, hint)
  ORDER BY f.finding
$$;
-- EXECUTE stays with PUBLIC: the event trigger runs it as whichever role runs the command.

-- 0024's function, and the function, procedure, aggregate and trigger commands above.
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
    SELECT a.table_name || ': ' || a.problem, app.tenant_finding_hint(a.table_name, a.problem)
      INTO refused, hint FROM app.audit_tenant_views() a LIMIT 1;
    IF refused IS NOT NULL THEN
      RAISE EXCEPTION '%', refused
        USING HINT = hint;
    END IF;
    -- (0025) A function app_user would run as a role that bypasses row level security.
    SELECT a.table_name || ': ' || a.problem, app.tenant_finding_hint(a.table_name, a.problem)
      INTO refused, hint FROM app.audit_tenant_functions() a LIMIT 1;
    IF refused IS NOT NULL THEN
      RAISE EXCEPTION '%', refused
        USING HINT = hint;
    END IF;
  END IF;
  FOR command IN SELECT * FROM pg_event_trigger_ddl_commands()
                 WHERE object_type IN ('table', 'table column', 'materialized view', 'policy',
                                       'sequence', 'view', 'rule', 'function', 'procedure',
                                       'aggregate', 'trigger')
                   AND objid IS NOT NULL
  LOOP
    -- (0025) A function, procedure or aggregate made or altered, or a trigger made: its
    -- function, if it (or an aggregate's part) is SECURITY DEFINER or LEAKPROOF (no other
    -- kind is a finding, nor makes one).
    IF command.object_type IN ('function', 'procedure', 'aggregate', 'trigger') THEN
      routine := CASE command.object_type
                   WHEN 'trigger' THEN (SELECT t.tgfoid FROM pg_trigger t
                                        WHERE t.oid = command.objid)
                   ELSE command.objid END;
      SELECT bool_or(p.prosecdef OR p.proleakproof) INTO watched
        FROM app.routine_parts(routine) r JOIN pg_proc p ON p.oid = r.part;
      IF NOT coalesce(watched, false) THEN
        CONTINUE;
      END IF;
      -- A new function is executable by PUBLIC, PostgreSQL's default rather than anyone's
      -- choice, until the REVOKE the documentation has follow its CREATE: revoked here, at
      -- once, from one that would be a finding or make one.
      IF command.command_tag IN ('CREATE FUNCTION', 'CREATE PROCEDURE', 'CREATE AGGREGATE')
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
      SELECT f.finding, f.hint
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
      SELECT a.table_name || ': ' || a.problem, app.tenant_finding_hint(a.table_name, a.problem)
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
               'CREATE AGGREGATE', 'ALTER AGGREGATE', 'CREATE TRIGGER')
  EXECUTE FUNCTION app.protect_new_tenant_tables();

-- A function the bootstrap ships (0012).
INSERT INTO boom_meta.shipped_functions (signature)
  VALUES ('app.aggregates_running(oid)'), ('app.routine_parts(oid)'),
         ('app.tenant_finding_hint(text,text)'), ('app.tenant_findings_through_routine(oid)');
