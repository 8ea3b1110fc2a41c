-- 0001: roles, the tenant schema, current_tenant_id(), automatic RLS for tenant tables.
-- Runs inside the bootstrap's transaction as the master user; must be safe on a database
-- where the roles already exist (another database of the same instance may have them).

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'boom_owner') THEN
    -- Owns the schema and every table; migrations run as it. LOGIN, password set afterwards.
    CREATE ROLE boom_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_user') THEN
    -- The application: owns nothing, never bypasses RLS, is no member of boom_owner.
    CREATE ROLE app_user LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
  END IF;
END
$$;
-- Roles that already existed must not bypass RLS. Only a superuser may change SUPERUSER or
-- BYPASSRLS, and the RDS master is not one: check instead, and stop with the fix.
DO $$
DECLARE
  bad text;
BEGIN
  SELECT string_agg(rolname, ', ' ORDER BY rolname) INTO bad FROM pg_roles
    WHERE rolname IN ('boom_owner', 'app_user') AND (rolsuper OR rolbypassrls);
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'roles % are SUPERUSER or BYPASSRLS: a superuser must drop or fix them', bad;
  END IF;
END
$$;
ALTER ROLE app_user NOCREATEDB NOCREATEROLE;
-- The master user administers the owner's objects (on RDS it is not a superuser).
GRANT boom_owner TO CURRENT_USER;

CREATE SCHEMA IF NOT EXISTS app AUTHORIZATION boom_owner;
REVOKE ALL ON SCHEMA app FROM PUBLIC;
GRANT USAGE ON SCHEMA app TO app_user;  -- USAGE only: app_user cannot create objects here
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
ALTER ROLE app_user SET search_path = app;
ALTER ROLE boom_owner SET search_path = app;

-- Tenant context. app.set_tenant() is the one way to set it: transaction-local
-- (set_config(..., true)) and stamped with the transaction's start time. A value that outlives
-- its transaction (a session-level SET, leaking through a pooled connection) has a stale stamp,
-- so current_tenant_id() returns NULL and every policy matches no row: it fails closed.
CREATE OR REPLACE FUNCTION app.set_tenant(tenant uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF tenant IS NULL THEN
    RAISE EXCEPTION 'app.set_tenant: tenant must not be NULL';
  END IF;
  PERFORM set_config('boom.tenant_id', tenant::text, true);
  PERFORM set_config('boom.tenant_tx', extract(epoch FROM transaction_timestamp())::text, true);
  RETURN tenant;
END
$$;

CREATE OR REPLACE FUNCTION app.current_tenant_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE
    WHEN current_setting('boom.tenant_tx', true)
         = extract(epoch FROM transaction_timestamp())::text
    THEN nullif(current_setting('boom.tenant_id', true), '')::uuid
  END
$$;
ALTER FUNCTION app.set_tenant(uuid) OWNER TO boom_owner;
ALTER FUNCTION app.current_tenant_id() OWNER TO boom_owner;
REVOKE ALL ON FUNCTION app.set_tenant(uuid), app.current_tenant_id() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.set_tenant(uuid), app.current_tenant_id() TO app_user;

-- The application's tables: created by boom_owner, read and written by app_user.
ALTER DEFAULT PRIVILEGES FOR ROLE boom_owner IN SCHEMA app
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO app_user;
ALTER DEFAULT PRIVILEGES FOR ROLE boom_owner IN SCHEMA app
  GRANT USAGE, SELECT ON SEQUENCES TO app_user;

-- Every table with a tenant_id column gets RLS enabled and forced, and a policy with USING and
-- WITH CHECK. Called by the event trigger below and by each migration.
CREATE OR REPLACE FUNCTION app.protect_tenant_table(tbl regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  -- to_regclass: NULL, not an error, while app.bookings does not exist (before 0002).
  policy_name text := CASE WHEN tbl = to_regclass('app.bookings') THEN
                        'tenant_bookings_isolation' ELSE 'tenant_isolation' END;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = tbl AND attname = 'tenant_id'
                 AND NOT attisdropped) THEN
    RETURN;
  END IF;
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
  EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
  IF NOT EXISTS (SELECT FROM pg_policy WHERE polrelid = tbl AND polname = policy_name) THEN
    EXECUTE format(
      'CREATE POLICY %I ON %s AS PERMISSIVE FOR ALL TO PUBLIC '
      'USING (tenant_id = (SELECT app.current_tenant_id())) '
      'WITH CHECK (tenant_id = (SELECT app.current_tenant_id()))', policy_name, tbl);
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION app.protect_new_tenant_tables() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  command record;
BEGIN
  -- protect_tenant_table() runs ALTER TABLE itself: do not recurse into it.
  IF current_setting('boom.protecting', true) = 'on' THEN
    RETURN;
  END IF;
  PERFORM set_config('boom.protecting', 'on', true);
  FOR command IN SELECT * FROM pg_event_trigger_ddl_commands()
                 WHERE object_type IN ('table', 'table column') LOOP
    PERFORM app.protect_tenant_table(command.objid::regclass)
      FROM pg_class c WHERE c.oid = command.objid AND c.relkind IN ('r', 'p');
  END LOOP;
  PERFORM set_config('boom.protecting', 'off', true);
END
$$;

DROP EVENT TRIGGER IF EXISTS boom_protect_tenant_tables;
CREATE EVENT TRIGGER boom_protect_tenant_tables ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE')
  EXECUTE FUNCTION app.protect_new_tenant_tables();

-- Lists every table with a tenant_id column that lacks a guarantee; empty means all is well.
CREATE OR REPLACE FUNCTION app.audit_tenant_tables()
RETURNS TABLE (table_name text, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH tenant_tables AS (
    SELECT c.oid, c.oid::regclass::text AS name, c.relrowsecurity, c.relforcerowsecurity,
           pg_get_userbyid(c.relowner) AS owner
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  )
  SELECT name, 'row level security is not enabled' FROM tenant_tables WHERE NOT relrowsecurity
  UNION ALL
  SELECT name, 'row level security is not forced' FROM tenant_tables
    WHERE NOT relforcerowsecurity
  UNION ALL
  SELECT t.name, 'no policy checks tenant_id = current_tenant_id() in USING and WITH CHECK'
    FROM tenant_tables t
    WHERE NOT EXISTS (
      SELECT FROM pg_policy p WHERE p.polrelid = t.oid AND p.polcmd = '*' AND p.polpermissive
        AND pg_get_expr(p.polqual, p.polrelid) LIKE '%tenant_id = ( SELECT app.current_tenant_id()%'
        AND pg_get_expr(p.polwithcheck, p.polrelid) LIKE
            '%tenant_id = ( SELECT app.current_tenant_id()%')
  UNION ALL
  SELECT t.name, 'a permissive policy other than the tenant policy widens access'
    FROM tenant_tables t JOIN pg_policy p ON p.polrelid = t.oid
    WHERE p.polpermissive AND coalesce(pg_get_expr(p.polqual, p.polrelid), '') NOT LIKE
          '%tenant_id = ( SELECT app.current_tenant_id()%'
  UNION ALL
  SELECT name, 'owned by ' || owner || ', not boom_owner' FROM tenant_tables
    WHERE owner <> 'boom_owner'
  ORDER BY 1, 2
$$;
ALTER FUNCTION app.audit_tenant_tables() OWNER TO boom_owner;
