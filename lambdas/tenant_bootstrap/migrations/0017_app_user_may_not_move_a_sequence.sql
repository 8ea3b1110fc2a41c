-- 0017: app_user may not move a sequence.
--
-- A sequence has no tenant: app.bookings' ids come from one sequence every tenant's inserts
-- draw from. nextval() needs USAGE, which default privileges in app give app_user (0001).
-- UPDATE on a sequence also allows setval(): one call moving app.bookings_id_seq to its
-- maximum made every tenant's next insert fail ("nextval: reached maximum value of sequence"),
-- and one moving it back made every tenant's inserts collide with ids already taken, until
-- someone who owns the sequence put it right. A migration's GRANT ALL ON ALL SEQUENCES IN
-- SCHEMA app TO app_user (a common idiom beside GRANT ALL ON ALL TABLES), or default
-- privileges granting ALL ON SEQUENCES, gave it to app_user, so any request running as
-- app_user (SQL injection, say) could stop every tenant's writes, and no audit saw it
-- (test_tenant_sequences.py, at version 16).
--
-- Now app.audit_tenant_privileges() also reports UPDATE on any sequence outside the system
-- schemas that app_user holds, granted to it, to PUBLIC, or to a role it may SET ROLE to.
-- So, as for 0008's privileges: a GRANT that gives it fails at once (0008's event trigger
-- runs the audit on every GRANT), and so does a CREATE or ALTER TABLE whose identity or
-- serial column makes a sequence under default privileges that grant it (the event trigger's
-- function, below, now looks at the sequences such a command makes). The guarantee check
-- reports one given while the trigger was off, or with a CREATE SEQUENCE (which the trigger
-- does not watch), and the next bootstrap run revokes it from app_user and PUBLIC; one held
-- through a role membership makes the run refuse, naming the role. The rest of both
-- functions is 0008's, unchanged (the GRANT hint names sequences too); each keeps its owner,
-- its settings and its privileges (CREATE OR REPLACE by its owner, the bootstrap's user).

CREATE OR REPLACE FUNCTION app.audit_tenant_privileges()
RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH tenant_tables AS (
    SELECT relid AS oid, name FROM app.tenant_tables()
  ), becomes AS (
    -- app_user itself and every role it may SET ROLE to (app_user is NOINHERIT: it holds
    -- their privileges only once it has switched, which it may do at any time).
    SELECT r.oid, r.rolname, r.rolsuper OR r.rolbypassrls AS bypasses
    FROM pg_roles r WHERE pg_has_role('app_user', r.oid, 'MEMBER')
  ), held AS (
    SELECT DISTINCT ON (t.name, p.privilege) t.name, p.privilege, b.rolname
    FROM tenant_tables t
    CROSS JOIN (VALUES ('TRUNCATE'), ('TRIGGER'), ('REFERENCES')) AS p(privilege)
    JOIN becomes b ON CASE p.privilege
      WHEN 'REFERENCES' THEN has_any_column_privilege(b.oid, t.oid, 'REFERENCES')
      ELSE has_table_privilege(b.oid, t.oid, p.privilege) END
    ORDER BY t.name, p.privilege, b.rolname <> 'app_user', b.rolname
  ), sequences_held AS (
    SELECT DISTINCT ON (s.oid) s.oid::regclass::text AS name, b.rolname
    FROM pg_class s
    JOIN pg_namespace n ON n.oid = s.relnamespace
    JOIN becomes b ON has_sequence_privilege(b.oid, s.oid, 'UPDATE')
    WHERE s.relkind = 'S'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
    ORDER BY s.oid, b.rolname <> 'app_user', b.rolname
  )
  SELECT name, 'app_user holds ' || privilege
               || CASE WHEN rolname = 'app_user' THEN ''
                       ELSE ' through ' || quote_ident(rolname) || ' (role membership)' END
               || ', which row level security does not cover'
    FROM held
  UNION ALL
  SELECT t.name, 'app_user can act as ' || quote_ident(b.rolname) || ' (role membership), '
                 'which bypasses row level security (SUPERUSER or BYPASSRLS)'
    FROM tenant_tables t, becomes b WHERE b.bypasses AND b.rolname <> 'app_user'
  UNION ALL
  SELECT name, 'app_user holds UPDATE'
               || CASE WHEN rolname = 'app_user' THEN ''
                       ELSE ' through ' || quote_ident(rolname) || ' (role membership)' END
               || ', which lets it setval() a sequence every tenant''s inserts share: one call '
               || 'fails them all. Grant app_user only USAGE on sequences'
    FROM sequences_held
  ORDER BY 1, 2
$$;

-- 0008's function, plus the sequences a CREATE or ALTER TABLE makes.
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
