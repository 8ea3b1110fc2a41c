-- 0019: the tenant database has no settings of its own.
--
-- The parameter group decides the server's settings, and the migrations decide each role's
-- (0007). A setting made for the database, ALTER DATABASE boom_booking SET ... (ALTER ROLE ALL
-- IN DATABASE writes the same), overrides the parameter group in every new session of every
-- role that has no setting of its own for it, and neither the guarantee check nor a run saw
-- it. Only the database's owner (the master) or a superuser can make one: an operator's fix
-- for the moment that stays. Shown at version 18 (test_database_settings.py): after
-- tcp_keepalives_idle = 0 every new app_user session is back on the kernel's two hours, so the
-- server connections of a PgBouncer whose node vanished count against app_user's connection
-- limit for hours instead of the parameter group's 90 s; after work_mem = '1GB' every
-- app_user sort may take a gigabyte before it spills; and the check reported nothing.
--
-- Now app.audit_database_settings() names each such setting (names only: a value could be
-- anything), the check reports them, and every bootstrap run resets them as the database's
-- owner (enforce.py), saying which. A run by a user that does not act as the owner refuses,
-- naming the fix. A setting a team wants belongs in the parameter group (config), where review
-- sees it. Settings for every role in every database (ALTER ROLE ALL SET) take a superuser,
-- which RDS gives no one, and are left out; a role's own are 0007's.

CREATE FUNCTION app.audit_database_settings() RETURNS TABLE (setting_name text, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT split_part(c.setting, '=', 1),
         'database ' || quote_ident(current_database()) || ' has ' || split_part(c.setting, '=', 1)
         || ' set for every session, over the parameter group (no migration sets one): '
         || 'ALTER DATABASE ' || quote_ident(current_database()) || ' RESET '
         || quote_ident(split_part(c.setting, '=', 1)) || ' as its owner, or run the bootstrap '
         || 'as its owner; a setting the database needs belongs in the parameter group'
  FROM pg_db_role_setting s
  CROSS JOIN LATERAL unnest(s.setconfig) AS c(setting)
  WHERE s.setrole = 0
    AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  ORDER BY 1
$$;
REVOKE ALL ON FUNCTION app.audit_database_settings() FROM PUBLIC;

-- A function the bootstrap ships (0012).
INSERT INTO boom_meta.shipped_functions (signature) VALUES ('app.audit_database_settings()');
