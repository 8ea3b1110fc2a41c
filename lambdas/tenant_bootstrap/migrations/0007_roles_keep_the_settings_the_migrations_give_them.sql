-- 0007: app_user and boom_owner keep the role settings the migrations give them.
-- Any role may change its own defaults: ALTER ROLE app_user SET ..., or IN DATABASE ... SET.
-- app_user, say through SQL injection, could give every later session of its own
-- default_transaction_read_only = on or statement_timeout = 1, and each server connection
-- PgBouncer opened after that would fail the application until someone noticed (shown in
-- test_tenant_role_settings.py). No tenant leaks that way (search_path reaches no object
-- app_user can make, and a tenant set as a default fails closed: no stamp), but the outage
-- lasts. Now app.declared_role_settings() lists what the migrations give the two roles (0001's
-- search_path); app.audit_role_settings() reports any difference, role-wide or in this
-- database, and every bootstrap run restores them with app.restore_role_settings() and says
-- which settings it changed (names only: a value could be anything). A migration that wants,
-- say, a statement_timeout for app_user sets it and redefines declared_role_settings() with
-- it; one set by hand is undone by the next run.
-- The password is the other thing a role may change of itself: on RDS the parameter group's
-- rds.restrict_password_commands stops that, and every run sets it from the secret.

CREATE OR REPLACE FUNCTION app.declared_role_settings()
RETURNS TABLE (role_name text, setting text)
LANGUAGE sql IMMUTABLE
AS $$
  VALUES ('app_user', 'search_path=app'), ('boom_owner', 'search_path=app')
$$;

-- Role-wide settings of app_user and boom_owner other than the declared ones, declared ones
-- missing, and any setting of theirs for this database alone.
CREATE OR REPLACE FUNCTION app.audit_role_settings()
RETURNS TABLE (role_name text, setting_name text, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH actual AS (
    SELECT r.rolname::text AS role_name, s.setdatabase <> 0 AS here_only, c.setting
    FROM pg_db_role_setting s
    JOIN pg_roles r ON r.oid = s.setrole
    CROSS JOIN LATERAL unnest(s.setconfig) AS c(setting)
    WHERE r.rolname IN ('app_user', 'boom_owner')
      AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
  )
  SELECT a.role_name, split_part(a.setting, '=', 1), 'has ' || split_part(a.setting, '=', 1)
         || CASE WHEN a.here_only THEN ' set for this database' ELSE ' set' END
         || ', which no migration gives it: every new session of it starts with that'
  FROM actual a
  WHERE a.here_only OR NOT EXISTS (
    SELECT FROM app.declared_role_settings() d
    WHERE d.role_name = a.role_name AND d.setting = a.setting)
  UNION ALL
  SELECT d.role_name, split_part(d.setting, '=', 1),
         'lacks ' || split_part(d.setting, '=', 1) || ' as a migration sets it'
  FROM app.declared_role_settings() d
  WHERE NOT EXISTS (SELECT FROM actual a WHERE NOT a.here_only AND a.role_name = d.role_name
                    AND a.setting = d.setting)
  ORDER BY 1, 2, 3
$$;

-- Back to exactly the declared settings; needs CREATEROLE (the master user has it).
CREATE OR REPLACE FUNCTION app.restore_role_settings() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  role_name text;
  declared record;
BEGIN
  FOREACH role_name IN ARRAY ARRAY['app_user', 'boom_owner'] LOOP
    EXECUTE format('ALTER ROLE %I RESET ALL', role_name);
    EXECUTE format('ALTER ROLE %I IN DATABASE %I RESET ALL', role_name, current_database());
  END LOOP;
  FOR declared IN SELECT * FROM app.declared_role_settings() LOOP
    EXECUTE format('ALTER ROLE %I SET %I TO %L', declared.role_name,
                   split_part(declared.setting, '=', 1),
                   substr(declared.setting, strpos(declared.setting, '=') + 1));
  END LOOP;
END
$$;

ALTER FUNCTION app.declared_role_settings() OWNER TO boom_owner;
ALTER FUNCTION app.audit_role_settings() OWNER TO boom_owner;
REVOKE ALL ON FUNCTION app.declared_role_settings(), app.audit_role_settings(),
  app.restore_role_settings() FROM PUBLIC;
