-- 0012: the bootstrap's functions belong to the bootstrap, not to the role migrations run as.
--
-- Until now boom_owner owned most of the functions in app that the guarantees rest on, and
-- application migrations run as boom_owner. So one of them could CREATE OR REPLACE
-- app.current_tenant_id() with the "simpler" textbook body, current_setting('boom.tenant_id'),
-- and the stamp check that keeps a session-level SET from leaking through the pooler was
-- gone: every policy still read tenant_id = (SELECT app.current_tenant_id()), so every audit
-- passed (shown at version 11, test_tenant_shipped_functions.py). Or it could redefine an audit
-- to report nothing.
-- Now the user that runs the bootstrap (the RDS master) owns every function it ships; a
-- redefinition by boom_owner fails with "must be owner of function". boom_owner, as the app
-- schema's owner, may still DROP one and create its own, so app.audit_shipped_functions()
-- reports a shipped function that is missing, owned by a role boom_owner or app_user can act
-- as, or shadowed by a function of the same name with other arguments (a call with an untyped
-- literal, SELECT app.set_tenant('...'), may resolve to a text overload instead), and every
-- bootstrap run refuses to finish while it does: the bootstrap cannot tell a re-created
-- function from its own.
-- The list is a table in boom_meta, which the bootstrap's user owns: a migration that ships a
-- new function adds a row (INSERT), and test_tenant_shipped_functions.py fails while a
-- function in app is not listed there.

CREATE TABLE boom_meta.shipped_functions (signature text PRIMARY KEY);
INSERT INTO boom_meta.shipped_functions (signature) VALUES
  ('app.audit_database()'), ('app.audit_role_settings()'), ('app.audit_shipped_functions()'),
  ('app.audit_tenant_expression_statistics()'), ('app.audit_tenant_keys()'),
  ('app.audit_tenant_privileges()'), ('app.audit_tenant_statistics()'),
  ('app.audit_tenant_tables()'), ('app.cross_tenant_keys(regclass)'),
  ('app.cross_tenant_references(regclass)'), ('app.current_tenant_id()'),
  ('app.declared_role_settings()'), ('app.protect_new_tenant_tables()'),
  ('app.protect_tenant_table(regclass)'), ('app.restore_role_settings()'),
  ('app.set_tenant(uuid)'), ('app.tenant_tables()'), ('app.tenant_tables_behind(regclass)');

CREATE OR REPLACE FUNCTION app.audit_shipped_functions()
RETURNS TABLE (function_name text, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH shipped AS (
    SELECT s.signature, to_regprocedure(s.signature) AS proc,
           substring(s.signature FROM '^app\.([a-z_]+)\(') AS name
    FROM boom_meta.shipped_functions s
  )
  SELECT s.signature, 'is missing: a migration dropped it, and with it what it keeps. Create '
         || 'it again, as the bootstrap''s user, as the latest migration in '
         || 'lambdas/tenant_bootstrap/migrations that defines it does'
  FROM shipped s WHERE s.proc IS NULL
  UNION ALL
  SELECT s.signature, 'is owned by ' || quote_ident(r.rolname)
         || CASE WHEN r.rolname = 'boom_owner' THEN ', as whom migrations run'
                 WHEN r.rolname = 'app_user' THEN ', the application''s role'
                 WHEN pg_has_role('app_user', p.proowner, 'MEMBER')
                   THEN ', which app_user can act as'
                 ELSE ', which boom_owner can act as' END
         || ': a migration may have re-created it. Compare it with the latest '
         || 'migration in lambdas/tenant_bootstrap/migrations that defines it, then, as the '
         || 'bootstrap''s user, ALTER FUNCTION ' || s.signature || ' OWNER TO CURRENT_USER'
  FROM shipped s JOIN pg_proc p ON p.oid = s.proc JOIN pg_roles r ON r.oid = p.proowner
  WHERE pg_has_role('boom_owner', p.proowner, 'MEMBER')
     OR pg_has_role('app_user', p.proowner, 'MEMBER')
  UNION ALL
  SELECT p.oid::regprocedure::text, 'has the name of the bootstrap''s '
         || (SELECT min(s.signature) FROM shipped s WHERE s.name = p.proname)
         || ' with other arguments: a call with an untyped literal may resolve to it instead. '
         || 'Drop or rename it'
  FROM pg_proc p
  WHERE p.pronamespace = 'app'::regnamespace
    AND p.proname IN (SELECT s.name FROM shipped s)
    AND p.oid NOT IN (SELECT s.proc FROM shipped s WHERE s.proc IS NOT NULL)
  ORDER BY 1, 2
$$;

REVOKE ALL ON FUNCTION app.audit_shipped_functions() FROM PUBLIC;

-- Before taking them over, make sure no migration redefined one already: the fingerprint of
-- each function boom_owner owned (body, SECURITY DEFINER, SET clauses) as the migration named
-- beside it left it. Taking over a redefined one would make it look shipped.
DO $$
DECLARE
  redefined text;
BEGIN
  SELECT string_agg(format('%s (differs from what migration %s gave it)', e.signature,
                           e.migration), ', ' ORDER BY e.signature)
  INTO redefined
  FROM (VALUES
    ('app.audit_database()', '0005', 'a34592b307b1b3eae7c818820f90be0b'),
    ('app.audit_role_settings()', '0007', 'f71b3066d4c9063ea0b4c759fb3b63bc'),
    ('app.audit_tenant_expression_statistics()', '0009', 'fd318f4bc3b3db937ab79f91a7b6545a'),
    ('app.audit_tenant_keys()', '0006', 'cf082fb2bcfd999a887b978279b13988'),
    ('app.audit_tenant_privileges()', '0008', '1fef30b7c96b5f88be2e355d5428bfb3'),
    ('app.audit_tenant_statistics()', '0006', 'e0ae31c76642a4f561d273790edc0ba6'),
    ('app.audit_tenant_tables()', '0004', '6f9f4468be2c6f3f1c5c54567652f1fc'),
    ('app.cross_tenant_keys(regclass)', '0006', '6fac29072307387e3bd8730c7a3edd44'),
    ('app.cross_tenant_references(regclass)', '0006', 'f32ae90ece0794755cb1be1f0d32bab4'),
    ('app.current_tenant_id()', '0005', '091389e23a0fcf0b1a508b99476ebfea'),
    ('app.declared_role_settings()', '0011', 'f7d8470fb6d349887095c476abd668d2'),
    ('app.set_tenant(uuid)', '0011', '0c1839499a4b113ebc548b1a7ecc728e'),
    ('app.tenant_tables()', '0008', '8f11505ddc27105b023918b8159a0502'),
    ('app.tenant_tables_behind(regclass)', '0004', '12887149482d70d56c71fb406548038b')
  ) AS e (signature, migration, fingerprint)
  LEFT JOIN pg_proc p ON p.oid = to_regprocedure(e.signature)
  WHERE p.oid IS NULL
     OR md5(concat_ws('|', p.prosrc, p.prosecdef, p.proconfig::text)) <> e.fingerprint;
  IF redefined IS NOT NULL THEN
    RAISE EXCEPTION 'functions the guarantees rest on were redefined or dropped, most likely by '
                    'an application migration run as boom_owner: %. Put back what those '
                    'migrations in lambdas/tenant_bootstrap/migrations define, as the '
                    'bootstrap''s user, then run again', redefined;
  END IF;
END
$$;

-- boom_owner keeps EXECUTE on what it owned: its own statements on tenant tables run the
-- policies' app.current_tenant_id(), and a data migration binds tenants with set_tenant().
-- Those GRANTs go past the event trigger: 0008 refuses any GRANT while a tenant table still
-- has a privilege a run revokes at its end (an upgrade from before 0008 may find one). Other
-- sessions never see it disabled: this runs in the bootstrap's transaction, and the trigger
-- is left as it was found (a run ends by re-creating or enabling it, enforce.py).
DO $$
DECLARE
  signature text;
  was_boom_owners boolean;
  trigger_on boolean := EXISTS (SELECT FROM pg_event_trigger
                                WHERE evtname = 'boom_protect_tenant_tables'
                                  AND evtenabled <> 'D');
BEGIN
  IF trigger_on THEN
    ALTER EVENT TRIGGER boom_protect_tenant_tables DISABLE;
  END IF;
  FOR signature IN SELECT s.signature FROM boom_meta.shipped_functions s LOOP
    was_boom_owners := (SELECT proowner FROM pg_proc WHERE oid = signature::regprocedure)
                       = 'boom_owner'::regrole;
    EXECUTE format('ALTER FUNCTION %s OWNER TO CURRENT_USER', signature);
    IF was_boom_owners THEN  -- after the transfer, which merges the old owner's rights
      EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO boom_owner', signature);
    END IF;
  END LOOP;
  IF trigger_on THEN
    ALTER EVENT TRIGGER boom_protect_tenant_tables ENABLE;
  END IF;
END
$$;
