-- 0008: app_user gets only what row level security covers on tenant tables: SELECT, INSERT,
-- UPDATE and DELETE, which default privileges give it (0001).
--
-- TRUNCATE ignores row level security: it empties the whole table, every tenant's rows. A
-- migration's GRANT ALL ON app.bookings TO app_user, or GRANT ALL ON ALL TABLES IN SCHEMA app
-- (a common idiom), or ALTER DEFAULT PRIVILEGES ... GRANT ALL ON TABLES, gave it to app_user,
-- so any request running as app_user (SQL injection, say) could empty every tenant's
-- bookings, and the audit saw nothing (test_tenant_privileges.py, at version 7). TRIGGER would
-- let app_user attach a trigger function to a tenant table, to run inside every tenant's
-- writes; REFERENCES would let a table of its own point at tenants' rows, checks that bypass
-- row level security. app_user needs none of the three.
--
-- Now app.audit_tenant_privileges() reports any of them app_user holds on a tenant table,
-- granted to it, to PUBLIC, or to a role it is a member of: app_user is NOINHERIT, but it may
-- SET ROLE to any such role at any time. It also reports a role app_user may become that
-- bypasses row level security (SUPERUSER or BYPASSRLS; 0004 checked app_user's own flags and
-- the tables' owner only). A GRANT that gives app_user one of the privileges, or a tenant
-- table created with one (default privileges), fails at once (the event trigger, now also on
-- GRANT); one given while the trigger was off is revoked from app_user and PUBLIC by the next
-- bootstrap run. Role memberships (GRANT role TO app_user) are cluster-wide, which event
-- triggers never see: the audit reports them, so the guarantee check alarms and every
-- bootstrap run refuses to finish, naming the role, until someone revokes it.

-- Every tenant table: a table or partitioned table with a tenant_id column, outside the
-- system schemas (the audits of 0001 to 0006 each spell this out; later ones call this).
CREATE OR REPLACE FUNCTION app.tenant_tables() RETURNS TABLE (relid oid, name text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT c.oid, c.oid::regclass::text
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
  WHERE c.relkind IN ('r', 'p')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
$$;
ALTER FUNCTION app.tenant_tables() OWNER TO boom_owner;

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
  ORDER BY 1, 2
$$;
ALTER FUNCTION app.audit_tenant_privileges() OWNER TO boom_owner;
-- EXECUTE on both stays with PUBLIC, as for 0001's audit_tenant_tables(): the event trigger
-- runs them as whoever issues the DDL, and they show no more than the catalogs and
-- has_table_privilege() show anyone.

-- 0004's function, plus: a GRANT, or a table created or altered, that leaves app_user a
-- privilege the audit above reports fails with the audit's words.
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
        USING HINT = 'Grant app_user only SELECT, INSERT, UPDATE and DELETE on tenant tables.';
    END IF;
  END IF;
  FOR command IN SELECT * FROM pg_event_trigger_ddl_commands()
                 WHERE object_type IN ('table', 'table column', 'materialized view', 'policy')
                   AND objid IS NOT NULL
  LOOP
    IF command.object_type IN ('table', 'table column') THEN
      PERFORM app.protect_tenant_table(command.objid::regclass)
        FROM pg_class c WHERE c.oid = command.objid AND c.relkind IN ('r', 'p');
      SELECT a.table_name || ': ' || a.problem INTO refused
        FROM app.audit_tenant_privileges() a
        WHERE a.table_name = command.objid::regclass::text LIMIT 1;
      IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%', refused
          USING HINT = 'Default privileges of the schema grant it: ALTER DEFAULT PRIVILEGES '
                       '... REVOKE TRUNCATE, TRIGGER, REFERENCES ON TABLES FROM app_user.';
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
               'CREATE MATERIALIZED VIEW', 'CREATE POLICY', 'ALTER POLICY', 'GRANT')
  EXECUTE FUNCTION app.protect_new_tenant_tables();
