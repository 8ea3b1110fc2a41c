-- 0006: no session state carries one tenant's rows to the next pooled client.
-- Under transaction pooling a server connection serves another client (another tenant) as
-- soon as a transaction ends. Two kinds of session state hold rows past that point, and the
-- tenant policy never sees them again:
-- - A temporary table. A copy without tenant_id has no policy (a copy with tenant_id is
--   protected by the event trigger, temporary or not). The next client reads it by name.
-- - A WITH HOLD cursor. Its rows are computed at COMMIT, under the tenant of the transaction
--   that declared it, and FETCH reads them back in any later transaction.
-- So app_user may not create temporary tables in this database (boom_owner, the migrator,
-- keeps the right: it logs in directly, not through the application's pools). And
-- app.set_tenant() closes every WITH HOLD cursor left over from an earlier transaction on its
-- connection, with a WARNING naming it; cursors of the current transaction stay open. Cost:
-- one look at the session's cursors per set_tenant() (benchmarks/ANALYSIS.md).
-- app.audit_database() reports a TEMPORARY privilege granted again later; every bootstrap run
-- refuses to finish while it does.

DO $$
BEGIN
  EXECUTE pg_catalog.format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, app_user',
                            pg_catalog.current_database());
  EXECUTE pg_catalog.format('GRANT TEMPORARY ON DATABASE %I TO boom_owner',
                            pg_catalog.current_database());
END
$$;

CREATE OR REPLACE FUNCTION app.audit_database() RETURNS TABLE (problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT 'app_user may create temporary tables in database ' || quote_ident(current_database())
         || ', which outlive a pooled transaction: the next client on that server connection '
         || '(another tenant) could read them. REVOKE TEMPORARY ON DATABASE '
         || quote_ident(current_database()) || ' FROM PUBLIC, app_user, and from any role '
         || 'app_user belongs to'
  WHERE has_database_privilege('app_user', current_database(), 'TEMPORARY')
$$;
ALTER FUNCTION app.audit_database() OWNER TO boom_owner;
REVOKE ALL ON FUNCTION app.audit_database() FROM PUBLIC;

DO $$
BEGIN
  IF EXISTS (SELECT FROM app.audit_database()) THEN
    RAISE EXCEPTION '%', (SELECT problem FROM app.audit_database());
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION app.set_tenant(tenant uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  leftover pg_catalog.text;
BEGIN
  IF tenant IS NULL THEN
    RAISE EXCEPTION 'app.set_tenant: tenant must not be NULL';
  END IF;
  -- The cheap test first: most transactions find no WITH HOLD cursor at all.
  IF EXISTS (SELECT FROM pg_catalog.pg_cursor() c WHERE c.is_holdable) THEN
    FOR leftover IN SELECT c.name FROM pg_catalog.pg_cursor() c
                    WHERE c.is_holdable AND c.creation_time OPERATOR(pg_catalog.<)
                          pg_catalog.transaction_timestamp()
    LOOP
      EXECUTE pg_catalog.format('CLOSE %I', leftover);
      RAISE WARNING 'app.set_tenant closed cursor % held from an earlier transaction on this '
                    'connection', pg_catalog.quote_ident(leftover)
        USING HINT = 'Through a transaction pooler a WITH HOLD cursor reaches whichever '
                     'client the connection serves next: close it before COMMIT.';
    END LOOP;
  END IF;
  PERFORM pg_catalog.set_config('boom.tenant_id', tenant::pg_catalog.text, true),
          pg_catalog.set_config('boom.tenant_tx', (pg_catalog.date_part(
            'epoch', pg_catalog.transaction_timestamp()) OPERATOR(pg_catalog.*)
            1000000::pg_catalog.float8)::pg_catalog.int8::pg_catalog.text, true);
  RETURN tenant;
END
$$;

-- CREATE OR REPLACE keeps 0001's owner (boom_owner) and grants (EXECUTE for app_user only).
