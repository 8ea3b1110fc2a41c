-- 0021: a tenant table keeps its tenant_id column.
--
-- The guarantees find tenant tables by a column named tenant_id: the event trigger, the
-- audits, the check and every run. ALTER TABLE app.bookings RENAME COLUMN tenant_id TO
-- account_id (a refactor, an ORM's naming convention) went through, and the table looked as
-- safe as before: the tenant policy follows the column, so each tenant still read only its
-- own rows. But nothing guarded the table any more. A later migration's DISABLE (or NO FORCE)
-- ROW LEVEL SECURITY, or a widening ALTER POLICY, which the event trigger undoes or refuses
-- on a tenant table, went through too, and tenant B read tenant A's bookings; neither the
-- audits nor the check reported anything (shown at version 20, test_tenant_id_column.py).
--
-- Now app.audit_tenant_columns() reports a table whose tenant policy, exactly the one
-- protect_tenant_table() makes, reads a column not named tenant_id: a rename. The event
-- trigger refuses such an ALTER TABLE with the audit's words, the check reports one made while
-- the trigger was off, and every run refuses to finish while it stays (renaming the column back
-- could break the application: that is the migration's to do). The rest of the trigger's
-- function is 0017's, unchanged.
-- Not refused: ALTER TABLE ... DROP COLUMN tenant_id CASCADE. It drops the tenant policy with
-- the column, and the table, still forcing row level security with no policy, shows its rows
-- to no one (tested). Disabling row level security on it afterwards shows every tenant all of
-- them, which is what making a table shared data means: only for rows every tenant may read.

CREATE FUNCTION app.audit_tenant_columns() RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH renamed AS (
    SELECT DISTINCT c.oid, a.attname, p.polname
    FROM pg_policy p
    JOIN pg_class c ON c.oid = p.polrelid AND c.relkind IN ('r', 'p')
    JOIN pg_depend d ON d.classid = 'pg_policy'::regclass AND d.objid = p.oid
     AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid AND d.refobjsubid > 0
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
     AND NOT a.attisdropped AND a.attname <> 'tenant_id'
    -- The tenant policy as protect_tenant_table() makes it, deparsed as 0004's audit compares
    -- it, on the renamed column.
    CROSS JOIN LATERAL (VALUES ('(' || quote_ident(a.attname)
                                || ' = ( SELECT app.current_tenant_id() AS current_tenant_id))'))
      AS tenant_check(expr)
    WHERE p.polpermissive
      AND pg_get_expr(p.polqual, p.polrelid) = tenant_check.expr
      AND pg_get_expr(p.polwithcheck, p.polrelid) = tenant_check.expr
  )
  SELECT oid::regclass::text,
         'its tenant_id column is now named ' || quote_ident(attname) || ', which policy '
         || quote_ident(polname) || ' reads: the tenant guarantees follow the column named '
         || 'tenant_id, so none covers this table any more (forced row level security, the '
         || 'exact policy, the refusals, the audits). Rename it back: ALTER TABLE '
         || oid::regclass::text || ' RENAME COLUMN ' || quote_ident(attname) || ' TO tenant_id'
  FROM renamed
  ORDER BY 1, 2
$$;
-- EXECUTE stays with PUBLIC, as on app.audit_tenant_privileges(): the event trigger runs it as
-- whichever role alters a table. It reads only the catalogs, which every role may read.

-- 0017's function, plus the refusal above.
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
  IF TG_TAG = 'GRANT' THEN
    -- A GRANT names no single object here (ALL TABLES IN SCHEMA, several tables): all of them.
    SELECT a.table_name || ': ' || a.problem INTO refused
      FROM app.audit_tenant_privileges() a LIMIT 1;
    IF refused IS NOT NULL THEN
      RAISE EXCEPTION '%', refused
        USING HINT = 'Grant app_user only SELECT, INSERT, UPDATE and DELETE on tenant tables, '
                     'and only USAGE (and SELECT) on sequences.';
    END IF;
  END IF;
  FOR command IN SELECT * FROM pg_event_trigger_ddl_commands()
                 WHERE object_type IN ('table', 'table column', 'materialized view', 'policy',
                                       'sequence')
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

-- A function the bootstrap ships (0012).
INSERT INTO boom_meta.shipped_functions (signature) VALUES ('app.audit_tenant_columns()');
