-- 0026: a tenant table's tenant_id column is not dropped.
--
-- 0021 refused renaming tenant_id but let ALTER TABLE app.bookings DROP COLUMN tenant_id
-- CASCADE through (PostgreSQL refuses the drop without CASCADE: the tenant policy reads the
-- column). CASCADE takes the policy, the tenant's indexes and keys with the column. The rows
-- stay, under forced row level security with no policy left, so no tenant sees them; but which
-- tenant each row was is gone for good, and the table is no longer a tenant table, so nothing
-- guards it: the next migration's DISABLE ROW LEVEL SECURITY (how one makes a table shared
-- data) went through, and tenant B read tenant A's bookings with no audit reporting anything
-- (shown at version 25, test_tenant_id_column.py).
--
-- Now a second event trigger, on sql_drop, refuses any command that drops a column named
-- tenant_id from a table that stays: ALTER TABLE ... DROP COLUMN (with CASCADE, IF EXISTS, on a
-- partitioned table and so on its partitions), or DROP DOMAIN ... CASCADE taking a column of
-- that domain. The whole command rolls back, nothing changed. Dropping the table itself is not
-- refused: the rows go with it, and no table is left to leak them.
-- A drop made while the trigger was disabled cannot be found afterwards (PostgreSQL keeps a
-- dropped column only as "........pg.dropped.N........"): the check reports the trigger
-- disabled or missing, and every run restores it, as it does boom_protect_tenant_tables.

CREATE FUNCTION app.keep_tenant_id_columns() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  dropped text;
BEGIN
  -- A column dropped from a table that still exists: the table was not dropped with it. The
  -- tables the guarantees cover, as app.audit_tenant_tables() finds them.
  SELECT c.oid::regclass::text INTO dropped
    FROM pg_event_trigger_dropped_objects() d
    JOIN pg_class c ON c.oid = d.objid AND c.relkind IN ('r', 'p')
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE d.object_type = 'table column' AND d.address_names[3] = 'tenant_id'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
    ORDER BY 1 LIMIT 1;
  IF dropped IS NOT NULL THEN
    RAISE EXCEPTION '%: dropping its tenant_id column leaves its rows with no tenant: the '
                    'tenant policy goes with the column, nothing guards the table any more, '
                    'and which tenant each row belonged to cannot be recovered', dropped
      USING HINT = 'To retire the table, DROP TABLE it. To make shared data of some of its '
                   'rows, create a new table without tenant_id and copy in only rows every '
                   'tenant may read.';
  END IF;
END
$$;

DROP EVENT TRIGGER IF EXISTS boom_keep_tenant_id_columns;
CREATE EVENT TRIGGER boom_keep_tenant_id_columns ON sql_drop
  EXECUTE FUNCTION app.keep_tenant_id_columns();

-- A function the bootstrap ships (0012).
INSERT INTO boom_meta.shipped_functions (signature) VALUES ('app.keep_tenant_id_columns()');
