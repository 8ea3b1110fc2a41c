-- 0024: nothing app_user reaches through a view inside a view, a write through a view, a
-- rule, a schema it may not use, or a SECURITY DEFINER function of a bound role reads tenant
-- rows as a role that bypasses row level security, or from a materialized view.
--
-- 0023 looked at the views app_user may read itself, with USAGE on their schema. A view
-- reads and writes its tables as its owner (as its user if security_invoker), whoever uses
-- it, and so does a view inside it: app_user reads the outer view, the outer view's owner
-- reads the inner one, the inner one's owner reads the table. At version 23, with nothing
-- reported or refused (test_tenant_rewrite_rules.py):
-- - boom_owner's view (default privileges grant app_user SELECT on it) of an operator's
--   view of app.bookings, owned by a role that bypasses row level security and granted to
--   boom_owner only, showed tenant B tenant A's bookings;
-- - so did an operator's such view in a schema app_user may not use, granted to app_user,
--   through boom_owner's security_invoker view of it or boom_owner's SQL-standard function
--   body (BEGIN ATOMIC) reading it: PostgreSQL checks USAGE only where a query names an
--   object by its name, and a view or such a body was named by its maker. The same body
--   calling an operator's SECURITY DEFINER function there gave tenant B every tenant's
--   count (0023's function audit also required USAGE);
-- - given only DELETE (or UPDATE) on an operator's view of app.bookings (an auto-updatable
--   view writes its table as its owner), tenant B deleted every tenant's bookings;
-- - a rule (CREATE RULE ... ON INSERT ... DO ALSO ...) runs as the owner of its table or
--   view, even a security_invoker one: an operator's table that app_user may write, whose
--   rule copied count(*) of app.bookings into a table app_user reads, gave tenant B
--   everyone's count;
-- - a SECURITY DEFINER function of boom_owner's (bound, so not 0023's finding) reading an
--   operator's view granted to boom_owner: app_user's call read it as boom_owner, and the
--   view every tenant's rows; one calling an operator's SECURITY DEFINER function that only
--   boom_owner may execute (0023 asked only whether app_user may) counted every tenant's;
-- - boom_owner's view of an operator's materialized view of app.bookings, granted to
--   boom_owner: a materialized view has no row level security, and 0004 looked only at one
--   app_user may read by name.
--
-- app.roles_acting_for_app_user() lists the roles whose privileges app_user can use: its
-- own, a role it may SET ROLE to, and the owner of each SECURITY DEFINER function it may run,
-- or run through another. The function audit reports what any of them may execute.
-- app.tenant_rows_read_as_bypassing() follows what app_user reaches through the query rewrite
-- rules (a view is its ON SELECT rule): the views it, a role it may SET ROLE to, or the owner
-- of a SECURITY DEFINER function it may run (what the body reads, no catalog says) may read or
-- write, the other rules of tables and views it may write (the rule's event), and from each,
-- the views that rule names and its role may use, running as each view's owner (or, for a
-- security_invoker view, as app_user's session). It returns each tenant table a rule names, run
-- as a role with SUPERUSER or BYPASSRLS, and each materialized view of tenant tables a rule
-- names, run as a role that may read it, or that a role acting for app_user other than app_user
-- itself may read by name (0004 reports app_user's). The view audit now reports from it, naming
-- the view or the rule's table to mend and what app_user reaches it through; a view that reads
-- tenant tables only through views that run as their own bound owners, or as the reader, is no
-- longer reported (0023 reported every tenant table behind it, though app_user saw only its own
-- tenant's rows through it). The function audit no longer asks for USAGE. The event trigger
-- refuses a view, a rule, a table's new owner or its new tenant_id column, and a GRANT that
-- would make any of them so (it now fires on CREATE RULE too), and the check reports one made
-- while the trigger was off, whose owner got BYPASSRLS later, or that a new SECURITY DEFINER
-- function reaches (the trigger does not watch CREATE FUNCTION: a new function is executable by
-- PUBLIC until the REVOKE that follows it).
--
-- A function a view calls runs as the view's user, who needs EXECUTE on it: the function
-- audit covers a SECURITY DEFINER one. A trigger's function that a rule's write fires runs
-- as the session's user unless SECURITY DEFINER, which the function audit covers only for
-- tables app_user (or a role acting for it) may write itself.

CREATE FUNCTION app.roles_acting_for_app_user() RETURNS TABLE (role oid, definer name)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH RECURSIVE acting (role, definer) AS (
    -- app_user and every role it may SET ROLE to (0008).
    SELECT r.oid, NULL::name FROM pg_roles r WHERE pg_has_role('app_user', r.oid, 'MEMBER')
    UNION
    -- The owner of a SECURITY DEFINER function an acting role may run (a call, or a trigger
    -- of a table it writes), outside the system schemas and not an extension's: its body
    -- acts as that owner, and no catalog says what it reads. Not one that bypasses row level
    -- security: its function is app.audit_tenant_functions()'s finding already.
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
                                              'INSERT, UPDATE, DELETE, TRUNCATE')))
  )
  SELECT DISTINCT role, definer FROM acting
$$;
-- EXECUTE stays with PUBLIC: the event trigger runs it as whichever role runs the command.

CREATE FUNCTION app.tenant_rows_read_as_bypassing()
RETURNS TABLE (entry regclass, entry_rule oid, by_definer name, reads boolean, via regclass,
               via_rule oid, runs_as name, tenant_table regclass, stored boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH RECURSIVE acting (oid, definer) AS (
    -- app_user, a role it may SET ROLE to, the owner of a definer function it may run.
    SELECT role, definer FROM app.roles_acting_for_app_user()
  ), names AS (
    -- The relations each rule's action and condition name (a view's ON SELECT rule names the
    -- view too, which adds nothing below).
    SELECT DISTINCT w.oid AS rule, d.refobjid AS relation
    FROM pg_rewrite w
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
     AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'n'
  ), usable AS (
    -- The rules a role may set off, outside the system schemas: a view's ON SELECT rule, by
    -- reading or writing the view (an auto-updatable view writes its table as it reads it),
    -- run as the view's owner or, if security_invoker, as that role; another rule of a table
    -- or view, by its event (INSERT, UPDATE: a column's grant is enough; DELETE), run as the
    -- relation's owner, even on a security_invoker view. Not a disabled rule, nor one only
    -- replication fires (session_replication_role, which only a superuser may set).
    SELECT w.oid AS rule, c.oid AS relation, c.relowner AS owner, w.ev_type = '1' AS selects,
           w.ev_type = '1' AND coalesce((SELECT o.option_value::boolean
                                         FROM pg_options_to_table(c.reloptions) o
                                         WHERE o.option_name = 'security_invoker'), false)
             AS invoker,
           CASE w.ev_type WHEN '1' THEN 'SELECT, INSERT, UPDATE' WHEN '2' THEN 'UPDATE'
                          WHEN '3' THEN 'INSERT' END AS column_privileges,
           w.ev_type IN ('1', '4') AS deletes
    FROM pg_rewrite w
    JOIN pg_class c ON c.oid = w.ev_class
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE (w.ev_type = '1' AND c.relkind = 'v' OR w.ev_type <> '1' AND w.ev_enabled IN ('O', 'A'))
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  ), reached (entry_rule, definer, reads, rule, reader, runs_as) AS (
    -- What an acting role sets off itself. USAGE on the relation's schema is no bar: a view or
    -- a SQL-standard function body (BEGIN ATOMIC) made by a role with USAGE names it for
    -- app_user, which PostgreSQL then checks only for the privilege.
    SELECT u.rule, a.definer, u.selects AND has_any_column_privilege(a.oid, u.relation, 'SELECT'),
           u.rule, a.oid, CASE WHEN u.invoker THEN a.oid ELSE u.owner END
    FROM acting a
    JOIN usable u ON coalesce(has_any_column_privilege(a.oid, u.relation, u.column_privileges),
                              false)
                  OR u.deletes AND has_table_privilege(a.oid, u.relation, 'DELETE')
    UNION
    -- What a reached rule sets off, as the role it runs as, among the relations it names
    -- (app_user reads through a view only if every role on the way may read).
    SELECT r.entry_rule, r.definer,
           r.reads AND u.selects AND has_any_column_privilege(r.runs_as, u.relation, 'SELECT'),
           u.rule, r.reader, CASE WHEN u.invoker THEN r.reader ELSE u.owner END
    FROM reached r
    JOIN names f ON f.rule = r.rule
    JOIN usable u ON u.relation = f.relation
    WHERE coalesce(has_any_column_privilege(r.runs_as, u.relation, u.column_privileges), false)
       OR u.deletes AND has_table_privilege(r.runs_as, u.relation, 'DELETE')
  )
  SELECT e.ev_class::regclass, r.entry_rule, r.definer, r.reads, w.ev_class::regclass, r.rule,
         o.rolname, t.relid::regclass, false
  FROM reached r
  JOIN pg_roles o ON o.oid = r.runs_as AND (o.rolsuper OR o.rolbypassrls)
  JOIN names f ON f.rule = r.rule
  JOIN app.tenant_tables() t ON t.relid = f.relation
  JOIN pg_rewrite w ON w.oid = r.rule
  JOIN pg_rewrite e ON e.oid = r.entry_rule
  UNION
  -- A materialized view of tenant tables that a reached rule names and its role may read:
  -- it has no row level security, so whoever reads it reads every row it holds (0004
  -- reports one app_user may read by name).
  SELECT e.ev_class::regclass, r.entry_rule, r.definer, r.reads, w.ev_class::regclass, r.rule,
         o.rolname, m.oid::regclass, true
  FROM reached r
  JOIN pg_roles o ON o.oid = r.runs_as
  JOIN names f ON f.rule = r.rule
  JOIN pg_class m ON m.oid = f.relation AND m.relkind = 'm'
  JOIN pg_rewrite w ON w.oid = r.rule
  JOIN pg_rewrite e ON e.oid = r.entry_rule
  WHERE has_table_privilege(r.runs_as, m.oid, 'SELECT')
    AND EXISTS (SELECT FROM app.tenant_tables_behind(m.oid::regclass))
  UNION
  -- And one an acting role other than app_user may read by name (a role it may SET ROLE to,
  -- a definer function's owner): as its own entry and via.
  SELECT m.oid::regclass, w.oid, a.definer, true, m.oid::regclass, w.oid, o.rolname,
         m.oid::regclass, true
  FROM acting a
  JOIN pg_roles o ON o.oid = a.oid AND o.rolname <> 'app_user'
  JOIN pg_class m ON m.relkind = 'm'
  JOIN pg_rewrite w ON w.ev_class = m.oid AND w.ev_type = '1'
  WHERE has_table_privilege(a.oid, m.oid, 'SELECT')
    AND EXISTS (SELECT FROM app.tenant_tables_behind(m.oid::regclass))
$$;
-- EXECUTE stays with PUBLIC: the event trigger runs it as whichever role runs the command.

-- 0023's findings for the views app_user reads itself, unchanged; the rest from the function
-- above.
CREATE OR REPLACE FUNCTION app.audit_tenant_views() RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH found AS (
    SELECT b.via, b.via_rule, b.runs_as, b.stored,
           CASE WHEN b.stored THEN b.tenant_table END AS held,
           string_agg(DISTINCT b.tenant_table::text, ', '
                      ORDER BY b.tenant_table::text) AS tenant_tables,
           bool_or(b.entry_rule = b.via_rule AND b.by_definer IS NULL) AS read_itself,
           coalesce(bool_or(b.reads) FILTER (WHERE b.entry_rule = b.via_rule
                                             AND b.by_definer IS NULL), false) AS shows_itself,
           bool_or(b.reads) AS shows,
           string_agg(DISTINCT b.label, ', ' ORDER BY b.label)
             FILTER (WHERE b.entry_rule <> b.via_rule OR b.by_definer IS NOT NULL) AS through
    FROM (SELECT f.*, CASE
                 WHEN f.by_definer IS NULL THEN f.entry::text
                 WHEN f.entry_rule = f.via_rule
                   THEN 'SECURITY DEFINER functions of ' || quote_ident(f.by_definer::text)
                 ELSE f.entry::text || ' in SECURITY DEFINER functions of '
                      || quote_ident(f.by_definer::text) END AS label
          FROM app.tenant_rows_read_as_bypassing() f) b
    GROUP BY b.via, b.via_rule, b.runs_as, b.stored, CASE WHEN b.stored THEN b.tenant_table END
  )
  SELECT f.via::text,
         CASE WHEN f.stored THEN
           'reaches materialized view ' || f.held::text || ' as '
           || quote_ident(f.runs_as::text) || ' for app_user'
           || CASE WHEN f.through IS NULL THEN '' ELSE ' (through ' || f.through || ')' END
           || ': it has no row level security, so every tenant sees the rows it holds of '
           || (SELECT string_agg(t::text, ', ' ORDER BY t::text)
               FROM app.tenant_tables_behind(f.held) t)
           || '. REVOKE SELECT ON ' || f.held::text || ' FROM '
           || quote_ident(f.runs_as::text) || ', or read the tables through a plain view'
         WHEN w.ev_type = '1' THEN
           'a view app_user ' || CASE WHEN f.shows_itself THEN 'may read'
                                      WHEN f.read_itself THEN 'may write'
                                      ELSE 'reaches through ' || f.through END
           || ', run as ' || quote_ident(f.runs_as::text) || ', who bypasses row level '
           || 'security (SUPERUSER or BYPASSRLS): '
           || CASE WHEN f.shows THEN 'it shows every tenant''s rows of '
                   ELSE 'its writes reach every tenant''s rows of ' END || f.tenant_tables
           || '. ALTER VIEW ' || f.via::text
           || ' SET (security_invoker = on), or ALTER VIEW ' || f.via::text
           || ' OWNER TO boom_owner'
         ELSE
           'rule ' || quote_ident(w.rulename::text) || ' runs, when app_user '
           || CASE w.ev_type WHEN '2' THEN 'updates' WHEN '3' THEN 'inserts into'
                             ELSE 'deletes from' END || ' ' || f.via::text
           || CASE WHEN f.through IS NULL THEN '' ELSE ' through ' || f.through END
           || ', as ' || quote_ident(f.runs_as::text) || ', who bypasses row level security '
           || '(SUPERUSER or BYPASSRLS): its action reaches every tenant''s rows of '
           || f.tenant_tables
           || '. DROP RULE ' || quote_ident(w.rulename::text) || ' ON ' || f.via::text
           || ', or make boom_owner the owner of ' || f.via::text
         END
  FROM found f
  JOIN pg_rewrite w ON w.oid = f.via_rule
  ORDER BY 1, 2
$$;

-- 0023's, but for two ways round it, each shown at version 23: USAGE on the function's
-- schema is no bar (a SQL-standard body, BEGIN ATOMIC, of boom_owner's calling a superuser's
-- SECURITY DEFINER function in a schema app_user may not use gave tenant B every tenant's
-- count), and app_user acts as the owner of any SECURITY DEFINER function it may run (one of
-- boom_owner's calling a superuser's that only boom_owner may execute did the same). Such a
-- finding names the functions app_user reaches it through, and whom to revoke EXECUTE from.
CREATE OR REPLACE FUNCTION app.audit_tenant_functions()
RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH callable AS (
    -- Functions and procedures app_user may run, itself or as the owner of a definer function
    -- it may run, outside the system schemas, not an extension's (whose code the extension
    -- vouches for).
    SELECT p.oid, p.oid::regprocedure::text AS signature, p.prosecdef, p.proleakproof,
           o.rolname AS owner, o.rolsuper OR o.rolbypassrls AS bypasses,
           bool_or(a.definer IS NULL) AS directly,
           string_agg(DISTINCT quote_ident(a.definer::text), ', '
                      ORDER BY quote_ident(a.definer::text)) AS definers
    FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    JOIN pg_roles o ON o.oid = p.proowner
    JOIN app.roles_acting_for_app_user() a
      ON has_function_privilege(a.role, p.oid, 'EXECUTE')
      -- A trigger's function runs in the writes that fire it, EXECUTE or not.
      OR EXISTS (SELECT FROM pg_trigger t WHERE t.tgfoid = p.oid
                 AND has_table_privilege(a.role, t.tgrelid, 'INSERT, UPDATE, DELETE, TRUNCATE'))
    WHERE (p.prosecdef OR p.proleakproof)
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype = 'e')
    GROUP BY p.oid, o.rolname, o.rolsuper, o.rolbypassrls
  )
  SELECT 'function ' || signature,
         'app_user may run it ' || CASE WHEN directly
           THEN '(a call, or a trigger of a table it writes)'
           ELSE 'through SECURITY DEFINER functions of ' || definers END
         || ' as ' || quote_ident(owner) || ', who bypasses row level security (SUPERUSER or '
         || 'BYPASSRLS) and is SECURITY DEFINER: whatever it reads of tenant tables, it reads '
         || 'for every tenant. ALTER FUNCTION ' || signature || ' SECURITY INVOKER, or keep '
         || 'it from ' || CASE WHEN directly THEN 'app_user' ELSE definers END
         || ' (REVOKE EXECUTE ON FUNCTION ' || signature || ' FROM PUBLIC, '
         || CASE WHEN directly THEN 'app_user' ELSE definers END
         || '; a trigger''s: DROP TRIGGER)'
  FROM callable WHERE prosecdef AND bypasses
  UNION ALL
  SELECT 'function ' || signature,
         'it is LEAKPROOF and app_user may call it' || CASE WHEN directly THEN ''
           ELSE ' through SECURITY DEFINER functions of ' || definers END
         || ', so PostgreSQL may run it on every '
         || 'tenant''s rows before the tenant policy filters them: what it shows of its '
         || 'arguments (an error, a notice) shows other tenants'' rows. ALTER FUNCTION '
         || signature || ' NOT LEAKPROOF'
  FROM callable WHERE proleakproof
  ORDER BY 1, 2
$$;

-- 0023's function, and: a view whose finding names another view (the one app_user reads it
-- through, or the one it reads through), a rule, a table whose rule or tenant_id column
-- makes a finding, each refused with the finding and its kind's hint (view, rule,
-- materialized view).
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
  END IF;
  FOR command IN SELECT * FROM pg_event_trigger_ddl_commands()
                 WHERE object_type IN ('table', 'table column', 'materialized view', 'policy',
                                       'sequence', 'view', 'rule')
                   AND objid IS NOT NULL
  LOOP
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
CREATE EVENT TRIGGER boom_protect_tenant_tables ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE',
               'CREATE MATERIALIZED VIEW', 'CREATE POLICY', 'ALTER POLICY', 'GRANT',
               'CREATE VIEW', 'ALTER VIEW', 'CREATE RULE')
  EXECUTE FUNCTION app.protect_new_tenant_tables();

-- A function the bootstrap ships (0012).
INSERT INTO boom_meta.shipped_functions (signature)
  VALUES ('app.roles_acting_for_app_user()'), ('app.tenant_rows_read_as_bypassing()');
