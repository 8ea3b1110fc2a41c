-- 0013: app_user owns nothing and can create nothing, and a run keeps it so.
--
-- 0001 gave app_user USAGE on app and no CREATE anywhere, and 0005 took TEMPORARY away: a
-- table of app_user's own has no row level security, so what one tenant's transaction copies
-- into it, the next tenant's reads. Nothing checked that this stayed so. A migration's
-- GRANT ALL ON SCHEMA app TO app_user (a common idiom), GRANT CREATE ON SCHEMA public TO
-- PUBLIC (PostgreSQL's default before 15), or CREATE on the database (a schema of its own)
-- gave app_user such a table again, permanent this time: shown at version 12
-- (test_tenant_creation_rights.py), tenant A's transaction copied its bookings into
-- app.stash with CREATE TABLE ... AS, tenant B's read them, and every audit passed.
--
-- Now app.audit_app_user_creations() reports CREATE on any schema of the database or on the
-- database itself that app_user holds (granted to it or to PUBLIC, or through a role it may
-- SET ROLE to), and any object app_user owns. That includes large objects, which any role
-- may create without a privilege (lo_from_bytea()): tenant B's transaction read, by its
-- number, one that tenant A's had made. Creating them cannot be refused (the RDS master does
-- not own lo_create and its kin), so the contract forbids them and the audit reports one.
-- Every bootstrap run revokes CREATE from PUBLIC and app_user where it acts as the schema's
-- or database's owner, and says so; a grant it cannot reach, a role membership, or an object
-- app_user already made (it may hold several tenants' rows: someone must look) make the run
-- refuse, naming the fix.

-- run_revokes: the REVOKE a bootstrap run makes for the row (enforce.py), where it acts as
-- the owner and the grant is app_user's or PUBLIC's; NULL where only a person can fix it.
CREATE OR REPLACE FUNCTION app.audit_app_user_creations()
RETURNS TABLE (subject text, problem text, run_revokes text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH becomes AS (  -- app_user, and every role it may SET ROLE to (it is NOINHERIT)
    SELECT r.oid, r.rolname FROM pg_roles r WHERE pg_has_role('app_user', r.oid, 'MEMBER')
  ),
  creatable AS (  -- CREATE on a schema makes tables; on the database, schemas
    SELECT 'schema' AS kind, n.nspname AS name, n.nspowner AS owner, 'objects' AS what,
           b.rolname
    FROM pg_namespace n CROSS JOIN becomes b
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
      AND has_schema_privilege(b.oid, n.oid, 'CREATE')
    UNION ALL
    SELECT 'database', d.datname, d.datdba, 'schemas', b.rolname
    FROM pg_database d CROSS JOIN becomes b
    WHERE d.datname = current_database() AND has_database_privilege(b.oid, d.oid, 'CREATE')
  ),
  revocable AS (
    SELECT c.*, 'REVOKE CREATE ON ' || upper(c.kind) || ' ' || quote_ident(c.name)
                || ' FROM PUBLIC, app_user' AS revoke
    FROM creatable c
  )
  SELECT c.kind || ' ' || quote_ident(c.name),
         'app_user may create ' || c.what || ' in it'
         || CASE WHEN c.rolname = 'app_user' THEN ' (granted to it or to PUBLIC)'
                 ELSE ' through ' || quote_ident(c.rolname) || ' (role membership)' END
         || ': a table of its own has no row level security: what one tenant''s transaction '
         || 'copies into it, the next tenant''s reads. '
         || CASE WHEN c.rolname = 'app_user'
                 THEN c.revoke || ' as its owner (a run does, where it can)'
                 ELSE 'REVOKE ' || quote_ident(c.rolname) || ' FROM app_user' END,
         CASE WHEN c.rolname = 'app_user' AND pg_has_role(c.owner, 'USAGE') THEN c.revoke END
  FROM revocable c
  UNION ALL
  SELECT owned.kind || ' ' || owned.name,
         CASE owned.kind
           WHEN 'large object' THEN 'app_user owns it, so every app_user session, whatever its '
             || 'tenant, may read it by its number: large objects have no row level security. '
             || 'Keep the contents in a tenant table (bytea) instead, then lo_unlink it'
           ELSE 'app_user owns it, which it cannot have made under these rules: it may hold '
             || 'several tenants'' rows. Look at it, then drop it, or ALTER ... OWNER TO '
             || 'boom_owner if it belongs to the application' END,
         NULL
  FROM (
    SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
                WHEN 'f' THEN 'foreign table' ELSE 'relation' END AS kind,
           c.oid::regclass::text AS name
    FROM pg_class c
    WHERE c.relowner = 'app_user'::regrole AND c.relkind NOT IN ('i', 'I', 't', 'c')
      AND c.relnamespace NOT IN (SELECT n.oid FROM pg_namespace n
                                 WHERE n.nspname LIKE 'pg_temp%' OR n.nspname LIKE 'pg_toast%')
    UNION ALL
    SELECT 'function', p.oid::regprocedure::text FROM pg_proc p
    WHERE p.proowner = 'app_user'::regrole
    UNION ALL
    SELECT 'schema', quote_ident(n.nspname) FROM pg_namespace n
    WHERE n.nspowner = 'app_user'::regrole
    UNION ALL
    SELECT 'type', t.oid::regtype::text FROM pg_type t
    WHERE t.typowner = 'app_user'::regrole AND t.typrelid = 0 AND t.typcategory <> 'A'
    UNION ALL
    SELECT 'large object', l.oid::text FROM pg_largeobject_metadata l
    WHERE l.lomowner = 'app_user'::regrole
  ) AS owned
  ORDER BY 1, 2
$$;
REVOKE ALL ON FUNCTION app.audit_app_user_creations() FROM PUBLIC;

-- A function the bootstrap ships (0012).
INSERT INTO boom_meta.shipped_functions (signature) VALUES ('app.audit_app_user_creations()');
