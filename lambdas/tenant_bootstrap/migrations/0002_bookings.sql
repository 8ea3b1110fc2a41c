-- 0002: the seed's first tenant table. RLS and tenant_bookings_isolation come from the event
-- trigger of 0001; protect_tenant_table() is called again so the outcome does not depend on it.
SET LOCAL ROLE boom_owner;

CREATE TABLE IF NOT EXISTS app.bookings (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id uuid NOT NULL DEFAULT app.current_tenant_id(),
  resource text NOT NULL,
  starts_at timestamptz NOT NULL,
  ends_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (ends_at > starts_at)
);
CREATE INDEX IF NOT EXISTS bookings_tenant_starts_idx ON app.bookings (tenant_id, starts_at);
SELECT app.protect_tenant_table('app.bookings');

RESET ROLE;
