-- 0022: a tenant_id that is not a uuid is refused by name.
--
-- A tenant table's tenant_id is compared with app.current_tenant_id(), a uuid. A migration
-- making one of another type (tenant_id text, an ORM's string ids; bigint) was refused, as it
-- must be, but in PostgreSQL's words from inside the event trigger: "operator does not exist:
-- text = uuid", with the hint "You might need to add explicit type casts", which sends the
-- migration's author to a cast they cannot add (the policy is the bootstrap's). And a domain
-- over uuid was taken: its rows were isolated, but the policy deparses with a cast, so the
-- audit reported the table unprotected and every bootstrap run refused, deploys included.
-- Now protect_tenant_table() refuses any tenant_id that is not plain uuid before it alters
-- anything, naming the table, the type and the declaration to use (each shown at version 21
-- and now, test_tenant_id_column.py). The rest of the function is 0006's, unchanged.

-- 0006's function, refusing a tenant_id that is not uuid.
CREATE OR REPLACE FUNCTION app.protect_tenant_table(tbl regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  -- to_regclass: NULL, not an error, while app.bookings does not exist (before 0002).
  policy_name text := CASE WHEN tbl = to_regclass('app.bookings') THEN
                        'tenant_bookings_isolation' ELSE 'tenant_isolation' END;
  tenant_type text;
  stat_target integer;
  spanning text;
BEGIN
  -- Any table, tenant_id or not: one without it may not reference a tenant table at all.
  SELECT string_agg(k, ', ') INTO spanning FROM app.cross_tenant_references(tbl) k;
  IF spanning IS NOT NULL THEN
    RAISE EXCEPTION '%: foreign key % does not pair tenant_id with tenant_id: a row could '
                    'point at another tenant''s row, and an insert that fails or not tells '
                    'whether that row exists (foreign keys bypass row level security)',
                    tbl, spanning
      USING HINT = 'Give the table tenant_id and reference (tenant_id, id) with FOREIGN KEY '
                   '(tenant_id, booking_id), after UNIQUE (tenant_id, id) on the referenced '
                   'table.';
  END IF;
  SELECT format_type(a.atttypid, a.atttypmod), a.attstattarget INTO tenant_type, stat_target
    FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = 'tenant_id'
     AND NOT a.attisdropped;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  -- (0022) Before anything is altered; the tenant policy compares tenant_id with a uuid.
  IF tenant_type <> 'uuid' THEN
    RAISE EXCEPTION '%: tenant_id is %, not uuid: the tenant policy compares it with the uuid '
                    'app.current_tenant_id() returns', tbl, tenant_type
      USING HINT = 'Declare it as app.bookings does: tenant_id uuid NOT NULL DEFAULT '
                   'app.current_tenant_id(). Ids kept as text convert with ALTER COLUMN '
                   'tenant_id TYPE uuid USING tenant_id::uuid.';
  END IF;
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
  EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
  IF stat_target <> 0 THEN
    EXECUTE format('ALTER TABLE %s ALTER COLUMN tenant_id SET STATISTICS 0', tbl);
    -- reltuples is -1 until the first ANALYZE or VACUUM: only then can statistics exist.
    IF (SELECT c.reltuples >= 0 FROM pg_class c WHERE c.oid = tbl) THEN
      EXECUTE format('DROP POLICY IF EXISTS %I ON %s', policy_name, tbl);
      BEGIN
        EXECUTE format('ALTER TABLE %s ALTER COLUMN tenant_id TYPE %s', tbl, tenant_type);
      EXCEPTION WHEN feature_not_supported THEN
        RAISE EXCEPTION '%: its tenant_id statistics (every tenant''s row count, which EXPLAIN '
                        'shows app_user) cannot be dropped: %', tbl, SQLERRM
          USING HINT = 'Drop what uses tenant_id there (in a migration), let the bootstrap '
                       'run, then create it again.';
      END;
    END IF;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_policy WHERE polrelid = tbl AND polname = policy_name) THEN
    EXECUTE format(
      'CREATE POLICY %I ON %s AS PERMISSIVE FOR ALL TO PUBLIC '
      'USING (tenant_id = (SELECT app.current_tenant_id())) '
      'WITH CHECK (tenant_id = (SELECT app.current_tenant_id()))', policy_name, tbl);
  END IF;
  SELECT string_agg(k, ', ') INTO spanning FROM app.cross_tenant_keys(tbl) k;
  IF spanning IS NOT NULL THEN
    RAISE EXCEPTION '%: unique key % does not include tenant_id: it spans all tenants, so one '
                    'tenant learns from a duplicate-key error (or ON CONFLICT) that another '
                    'has a value, and cannot use it', tbl, spanning
      USING HINT = 'Make tenant_id part of the key, e.g. UNIQUE (tenant_id, email).';
  END IF;
END
$$;
